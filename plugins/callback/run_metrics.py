#!/usr/bin/env python3
# Copyright: mlops.infra maintainers
# Apache License 2.0 (see galaxy.yml)
"""Run and drift metrics of mlops.infra: the one place their names, help texts and files live.

One file, three uses (it needs nothing but the Python standard library outside Ansible):

1. The callback plugin ``mlops.infra.run_metrics`` (or ``run_metrics`` from a callback plugins
   directory). It counts task results per host and, at the end of the playbook, writes them
   as JSON to the file named by ``MLOPS_RUN_METRICS_STATE`` (set by the wrapper below). On a
   controller (push runs) it also hands the counts so far to any play that declares the
   variable ``mlops_run_metrics_counts`` (playbooks/run-metrics-end.yml).
2. The wrapper of local runs (the pull and check units of role pull)::

       run_metrics.py run --mode pull --dir /var/lib/mlops/textfile --lock /run/lock/x.lock -- CMD...

   It takes the lock, records the start, runs CMD with this file enabled as a callback, and
   writes the result for node_exporter's textfile collector, whatever happened: a command
   that fails before the playbook starts (a refused commit, a broken bundle) is a failed run.
3. The writer the push plays call on each host (ansible.builtin.script)::

       run_metrics.py start --mode push --dir DIR
       run_metrics.py result --mode push --dir DIR --success 1 --tasks '{"changed": 3, ...}'

Files are written atomically (a hidden temporary file in the same directory, then a rename),
so the collector never reads half a file. docs/fleet.md documents every metric.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    from ansible.plugins.callback import CallbackBase
except ImportError:  # run as a script on a host without Ansible (push mode)
    CallbackBase = object  # type: ignore[assignment,misc]

DOCUMENTATION = r"""
name: run_metrics
type: aggregate
short_description: Per-host task counts for the run and drift metrics of mlops.infra
description:
  - Counts ok, changed, failed, unreachable, skipped, rescued and ignored task results per host.
  - At the end of the playbook, writes the counts as JSON to O(state_file) when it is set (the
    C(run_metrics.py run) wrapper of role pull's units sets it), from which the wrapper writes
    the node_exporter textfile metrics of the run.
  - Hands the counts so far to a play that declares the variable C(mlops_run_metrics_counts)
    (playbooks/run-metrics-end.yml), so that pushed runs report their changed tasks on each host.
  - The metric names, labels and files are documented in docs/fleet.md.
requirements:
  - enable it in callbacks_enabled (ANSIBLE_CALLBACKS_ENABLED)
options:
  state_file:
    description: JSON file the per-host counts are written to at the end of the playbook.
    type: path
    env:
      - name: MLOPS_RUN_METRICS_STATE
"""

# ---- the metrics: names, help, labels ---------------------------------------------------

MODES = ("push", "pull", "check")
RESULTS = ("ok", "changed", "failed", "unreachable", "skipped", "rescued", "ignored")
# The variable a play declares to receive the counts of the run so far (push runs).
COUNTS_VAR = "mlops_run_metrics_counts"
# Environment the wrapper gives its command: the push plays skip themselves under it.
MODE_ENV = "MLOPS_RUN_METRICS_MODE"
STATE_ENV = "MLOPS_RUN_METRICS_STATE"
# Exit code of the wrapper when another run holds the lock for longer than --lock-wait.
EX_TEMPFAIL = 75


@dataclass(frozen=True)
class Metric:
    name: str
    help: str
    labels: tuple[str, ...] = ("mode",)
    type: str = "gauge"


START = Metric(
    "mlops_ansible_run_start_timestamp_seconds",
    "Unix time the last run of this mode started on this host.",
)
END = Metric(
    "mlops_ansible_run_end_timestamp_seconds",
    "Unix time the last run of this mode ended (successful or not).",
)
SUCCESS = Metric(
    "mlops_ansible_run_success",
    "1 if the last run of this mode succeeded on this host, 0 if it failed.",
)
LAST_SUCCESS = Metric(
    "mlops_ansible_run_last_success_timestamp_seconds",
    "Unix time the last successful run of this mode ended.",
)
DURATION = Metric(
    "mlops_ansible_run_duration_seconds",
    "Wall-clock duration of the last run of this mode.",
)
EXIT_CODE = Metric(
    "mlops_ansible_run_exit_code",
    "Exit status of the command of the last local run (pull and check units only).",
)
TASKS = Metric(
    "mlops_ansible_run_tasks",
    "Task results of the last run of this mode on this host, by result.",
    labels=("mode", "result"),
)
DRIFT = Metric(
    "mlops_ansible_drift_tasks",
    "Tasks the last successful check-mode run would change (0: no drift). Absent after a failed check run.",
    labels=(),
)
METRICS = (START, END, SUCCESS, LAST_SUCCESS, DURATION, EXIT_CODE, TASKS, DRIFT)


def result_file(mode: str) -> str:
    return f"mlops_ansible_{mode}.prom"


def start_file(mode: str) -> str:
    return f"mlops_ansible_{mode}_start.prom"


# ---- rendering and writing ---------------------------------------------------------------


@dataclass
class RunResult:
    """One finished run of a mode on this host."""

    mode: str
    success: bool
    end: float
    start: float | None = None
    exit_code: int | None = None
    # Summed over the hosts of the run (a local run has one); None when unknown.
    tasks: dict[str, int] | None = None
    last_success: float | None = None
    check: bool = field(default=False)

    @property
    def drift(self) -> int | None:
        """Tasks a check run would change; None unless the run was a successful check run."""
        if self.check and self.success and self.tasks is not None:
            return self.tasks.get("changed", 0)
        return None


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _sample(metric: Metric, value: float, **labels: str) -> str:
    if not labels:
        return f"{metric.name} {_number(value)}"
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{metric.name}{{{inner}}} {_number(value)}"


def _family(metric: Metric, samples: Sequence[str]) -> list[str]:
    if not samples:
        return []
    return [f"# HELP {metric.name} {metric.help}", f"# TYPE {metric.name} {metric.type}", *samples]


def check_mode_name(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode is {mode!r}: expected one of {', '.join(MODES)}")
    return mode


def render_start(mode: str, start: float) -> str:
    check_mode_name(mode)
    return "\n".join(_family(START, [_sample(START, start, mode=mode)])) + "\n"


def render_result(run: RunResult) -> str:
    mode = check_mode_name(run.mode)
    lines: list[str] = []
    lines += _family(END, [_sample(END, run.end, mode=mode)])
    lines += _family(SUCCESS, [_sample(SUCCESS, 1 if run.success else 0, mode=mode)])
    last_success = run.end if run.success else run.last_success
    if last_success is not None:
        lines += _family(LAST_SUCCESS, [_sample(LAST_SUCCESS, last_success, mode=mode)])
    if run.start is not None:
        lines += _family(DURATION, [_sample(DURATION, max(0.0, round(run.end - run.start, 3)), mode=mode)])
    if run.exit_code is not None:
        lines += _family(EXIT_CODE, [_sample(EXIT_CODE, run.exit_code, mode=mode)])
    if run.tasks is not None:
        lines += _family(TASKS, [_sample(TASKS, run.tasks.get(r, 0), mode=mode, result=r) for r in RESULTS])
    if run.drift is not None:
        lines += _family(DRIFT, [_sample(DRIFT, run.drift)])
    return "\n".join(lines) + "\n"


def read_sample(path: Path, metric: Metric, **labels: str) -> float | None:
    """The value of one sample in a textfile written earlier, or None."""
    try:
        text = path.read_text()
    except OSError:
        return None
    wanted = _sample(metric, 0, **labels).rsplit(" ", 1)[0]
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == wanted:
            with contextlib.suppress(ValueError):
                return float(value)
    return None


def write_atomic(directory: Path, name: str, text: str) -> Path:
    """Write directory/name through a hidden temporary file and a rename (same filesystem)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, directory / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return directory / name


def record_start(directory: Path, mode: str, start: float | None = None) -> float:
    start = time.time() if start is None else start
    write_atomic(directory, start_file(mode), render_start(mode, start))
    return start


def record_result(directory: Path, run: RunResult) -> Path:
    """Write the result file; a failed run keeps the time of the last success from the old file."""
    if run.start is None:
        run.start = read_sample(directory / start_file(run.mode), START, mode=run.mode)
    if not run.success and run.last_success is None:
        run.last_success = read_sample(directory / result_file(run.mode), LAST_SUCCESS, mode=run.mode)
    return write_atomic(directory, result_file(run.mode), render_result(run))


def summed(hosts: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    return {r: sum(int(counts.get(r, 0)) for counts in hosts.values()) for r in RESULTS}


# ---- the wrapper of local runs -----------------------------------------------------------


@contextlib.contextmanager
def locked(path: Path, wait: float):
    """Hold an exclusive flock on path, waiting up to `wait` seconds; yields False on timeout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(1)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def child_env(mode: str, state: Path, base: Mapping[str, str]) -> dict[str, str]:
    """The command's environment: this file enabled as the callback `run_metrics`."""
    env = dict(base)
    here = str(Path(__file__).resolve().parent)
    env["ANSIBLE_CALLBACK_PLUGINS"] = os.pathsep.join(p for p in (here, env.get("ANSIBLE_CALLBACK_PLUGINS")) if p)
    enabled = [c for c in env.get("ANSIBLE_CALLBACKS_ENABLED", "").split(",") if c.strip()]
    env["ANSIBLE_CALLBACKS_ENABLED"] = ",".join([*enabled, "run_metrics"])
    env[STATE_ENV] = str(state)
    env[MODE_ENV] = mode
    return env


def run(mode: str, directory: Path, command: Sequence[str], lock: Path | None = None, lock_wait: float = 0) -> int:
    """Run the command under the lock and record its result; returns its exit status."""
    check_mode_name(mode)
    if not command:
        raise ValueError("no command to run")
    with contextlib.ExitStack() as stack:
        if lock is not None and not stack.enter_context(locked(lock, lock_wait)):
            print(f"run_metrics: {lock} is held by another run for over {lock_wait:g}s; skipping", file=sys.stderr)
            return EX_TEMPFAIL
        start = record_start(directory, mode)
        state = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mlops-run-metrics-"))) / "state.json"
        try:
            code = subprocess.run(list(command), env=child_env(mode, state, os.environ), check=False).returncode
        except OSError as error:
            print(f"run_metrics: cannot run {command[0]}: {error}", file=sys.stderr)
            code = 127
        counts = read_state(state)
        tasks = summed(counts["hosts"]) if counts else None
        # Success needs all three: exit 0, a playbook that reached its end, no failed host.
        success = code == 0 and tasks is not None and tasks["failed"] + tasks["unreachable"] == 0
        record_result(
            directory,
            RunResult(
                mode=mode,
                success=success,
                start=start,
                end=time.time(),
                exit_code=code,
                tasks=tasks,
                check=mode == "check" or bool(counts and counts.get("check")),
            ),
        )
    return code if code != 0 or success else 1


def read_state(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("hosts"), dict) else None


# ---- the callback ------------------------------------------------------------------------


class CallbackModule(CallbackBase):  # type: ignore[misc,valid-type]
    """Counts task results per host; see the module docstring."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "mlops.infra.run_metrics"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counts: dict[str, dict[str, int]] = {}
        self.check = False

    def _count(self, result: Any, *keys: str) -> None:
        host = result._host.get_name()
        counts = self.counts.setdefault(host, dict.fromkeys(RESULTS, 0))
        for key in keys:
            counts[key] += 1

    def v2_playbook_on_start(self, playbook: Any) -> None:
        with contextlib.suppress(Exception):
            from ansible import context

            self.check = bool(context.CLIARGS.get("check"))

    def v2_playbook_on_play_start(self, play: Any) -> None:
        # A play that declares the variable receives the counts so far (hosts that reach the
        # last play of a pushed run have no unrescued failure: their changed count is what matters).
        variables = getattr(play, "vars", None)
        if isinstance(variables, dict) and COUNTS_VAR in variables:
            variables[COUNTS_VAR] = {host: dict(counts) for host, counts in self.counts.items()}

    def v2_runner_on_ok(self, result: Any) -> None:
        if result._result.get("changed", False):
            self._count(result, "ok", "changed")
        else:
            self._count(result, "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        if ignore_errors:
            self._count(result, "ok", "ignored")
        else:
            self._count(result, "failed")

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._count(result, "unreachable")

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._count(result, "skipped")

    def v2_playbook_on_stats(self, stats: Any) -> None:
        # The recap's own numbers are the authority at the end (rescues included).
        hosts: dict[str, dict[str, int]] = {}
        for host in sorted(stats.processed):
            s = stats.summarize(host)
            hosts[host] = {
                "ok": s["ok"],
                "changed": s["changed"],
                "failed": s["failures"],
                "unreachable": s["unreachable"],
                "skipped": s["skipped"],
                "rescued": s.get("rescued", 0),
                "ignored": s.get("ignored", 0),
            }
        path = self.get_option("state_file") if hasattr(self, "get_option") else None
        if path:
            write_atomic(Path(path).parent, Path(path).name, json.dumps({"check": self.check, "hosts": hosts}))


# ---- command line ------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run and drift metrics of mlops.infra (docs/fleet.md).")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "result", "run"):
        p = sub.add_parser(name)
        p.add_argument("--mode", required=True, choices=MODES)
        p.add_argument("--dir", required=True, type=Path, help="node_exporter's textfile directory")
        if name == "result":
            p.add_argument("--success", required=True, type=int, choices=(0, 1))
            p.add_argument("--tasks", default="", help="JSON object of task counts by result, or empty")
        if name == "run":
            p.add_argument("--lock", type=Path, default=None)
            p.add_argument("--lock-wait", type=float, default=0)
            p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- the command to run")
    args = parser.parse_args(argv)
    if args.command == "start":
        print(_number(record_start(args.dir, args.mode)))
        return 0
    if args.command == "result":
        tasks = json.loads(args.tasks) if args.tasks.strip() else None
        if tasks is not None and not isinstance(tasks, dict):
            parser.error("--tasks must be a JSON object")
        # An empty object: the controller ran without the callback, so the counts are unknown.
        clean = {r: int(tasks.get(r, 0)) for r in RESULTS} if tasks else None
        record_result(
            args.dir,
            RunResult(
                mode=args.mode, success=bool(args.success), end=time.time(), tasks=clean, check=args.mode == "check"
            ),
        )
        return 0
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    return run(args.mode, args.dir, command, lock=args.lock, lock_wait=args.lock_wait)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["METRICS", "MODES", "RESULTS", "RunResult", "main", "render_result", "render_start", "run"]
