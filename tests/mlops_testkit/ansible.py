"""Run ansible-playbook and read what it printed: one wrapper and one recap parser for every test.

    run = run_playbook("site.yml", "-i", "inventories/edge", "--syntax-check")
    run = scenario_playbook("converge.yml", "--check", extra_vars={"x": 1})  # Molecule verifier
    run.returncode, run.output, run.recaps, run.changed(), run.total_changed, run.plays()

Output is plain text (no colour) from the default stdout callback, so the recap and the
`TASK [...]` / `PLAY [...]` lines have one known shape.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlops_testkit import ROOT

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# The one copy of the recap's shape: `host : ok=N changed=N unreachable=N failed=N skipped=N ...`
RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)"
    r"(?:\s+skipped=(?P<skipped>\d+))?(?:\s+rescued=(?P<rescued>\d+))?(?:\s+ignored=(?P<ignored>\d+))?",
    re.M,
)
PLAY = re.compile(r"^PLAY \[(.*?)\] \**$", re.M)
# A failed task's result line, as the default callback prints it with result format json:
# `fatal: [host]: FAILED! => {...}` or, for a loop item, `failed: [host] (item=...) => {...}`.
FAILURE = re.compile(r"^(?:fatal|failed): \[(?P<host>[^\]]+)\].*? => (?P<result>\{.*\})\s*$", re.M)
# Variables of the caller's shell that would change what the playbooks under test decide.
INPUT_ENV = ("PROMETHEUS_RETENTION", "GRAFANA_ADMIN_PASSWORD")


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


@dataclass(frozen=True)
class HostRecap:
    """One host's line of the play recap."""

    host: str
    ok: int
    changed: int
    unreachable: int
    failed: int
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0


def parse_recap(output: str) -> list[HostRecap]:
    """Every host line of every PLAY RECAP in the output, in order."""
    return [
        HostRecap(**{key: value if key == "host" else int(value or 0) for key, value in m.groupdict().items()})
        for m in RECAP.finditer(strip_ansi(output))
    ]


def plays(output: str) -> list[tuple[str, str]]:
    """(play name, what was printed under it) for each `PLAY [...]` header of the output."""
    parts = PLAY.split(output)
    return list(zip(parts[1::2], parts[2::2], strict=True))


@dataclass(frozen=True)
class Failure:
    """One failed task result: the host and the message(s) the task gave."""

    host: str
    message: str
    result: dict[str, Any]


def failures(output: str) -> list[Failure]:
    """Every failed task result of the output, with its message: `msg`, plus the argument errors
    of a validate_argument_spec failure. Needs result format json (`json_results=True` of
    run_playbook): then a message is one JSON string, exactly as the task wrote it."""
    found = []
    for m in FAILURE.finditer(output):
        try:
            result = json.loads(m.group("result"))
        except json.JSONDecodeError:
            continue
        parts = [str(result.get("msg", ""))] + [str(e) for e in result.get("argument_errors") or []]
        found.append(Failure(m.group("host"), " ".join(p for p in parts if p), result))
    return found


def changed_tasks(output: str) -> list[str]:
    """Each task block that reported a change, with its diff (at most 3000 characters each)."""
    found = []
    for block in re.split(r"^(?=TASK \[|RUNNING HANDLER \[|PLAY \[|PLAY RECAP)", output, flags=re.M):
        if re.search(r"^changed: \[", block, re.M):
            found.append(block.strip()[:3000])
    return found


def task_block(output: str, title: str) -> str:
    """The lines the default callback printed under one task or handler header (`TASK [role : name]`)."""
    assert title in output, output[-3000:]
    body = output.split(title, 1)[1]
    for end in ("\nTASK [", "\nRUNNING HANDLER [", "PLAY RECAP"):
        body = body.split(end, 1)[0]
    return body


def flat(output: str) -> str:
    """Output with every run of whitespace as one space: the YAML result format wraps long messages."""
    return " ".join(output.split())


@dataclass(frozen=True)
class PlaybookRun:
    """What one ansible-playbook run returned and printed (stdout then stderr, no colour)."""

    returncode: int
    output: str
    seconds: float = 0.0
    # CPU time (user + system) of ansible-playbook and every process it waited for: its
    # workers, Mitogen's, the ssh clients. Not the test hosts' own work, nor a ControlPersist
    # master left running. On a machine that also runs the hosts, this is the controller's share.
    cpu_seconds: float = 0.0
    # The kernel's part of cpu_seconds (system time): forks, page faults, I/O.
    cpu_system_seconds: float = 0.0

    @property
    def recaps(self) -> list[HostRecap]:
        return parse_recap(self.output)

    def changed(self) -> dict[str, int]:
        """changed= of each host in the recap (the last recap's, if the output holds several)."""
        return {r.host: r.changed for r in self.recaps}

    @property
    def total_changed(self) -> int:
        """Sum of changed= over every recap line; fails the test if there is no recap at all."""
        recaps = self.recaps
        assert recaps, f"no play recap in the output:\n{self.tail()}"
        return sum(r.changed for r in recaps)

    @property
    def total_failed(self) -> int:
        return sum(r.failed + r.unreachable for r in self.recaps)

    def plays(self) -> list[tuple[str, str]]:
        return plays(self.output)

    def changed_tasks(self) -> list[str]:
        return changed_tasks(self.output)

    def failures(self) -> list[Failure]:
        return failures(self.output)

    def tail(self, chars: int = 4000) -> str:
        return self.output[-chars:]


def ansible_env(env: Mapping[str, str] | None = None, unset: Iterable[str] = ()) -> dict[str, str]:
    """The environment for ansible-playbook: no colour, the default stdout callback, no timing
    callback in between (tests parse the output), `unset` removed, then `env` applied."""
    run_env = {k: v for k, v in os.environ.items() if k not in set(unset)}
    run_env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default")
    run_env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    run_env.update(env or {})
    return run_env


def run_playbook(
    playbook: str | Path,
    *args: str,
    inventory: str | Path | None = None,
    extra_vars: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    unset_env: Iterable[str] = (),
    cwd: str | Path = ROOT,
    timeout: float = 900,
    json_results: bool = False,
) -> PlaybookRun:
    """ansible-playbook [-i INVENTORY] [-e JSON(extra_vars)] ARGS PLAYBOOK, never raising on failure.

    Runs from the repository root by default, so its ansible.cfg applies unless `env` names
    another ANSIBLE_CONFIG (a Molecule verifier's environment already does). `json_results`
    prints each task result as one line of JSON (what `failures()` reads) instead of YAML.
    """
    command = ["ansible-playbook"]
    if inventory is not None:
        command += ["-i", str(inventory)]
    if extra_vars:
        command += ["-e", json.dumps(extra_vars)]
    command += [*args, str(playbook)]
    start = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        env=ansible_env(
            {**({"ANSIBLE_CALLBACK_RESULT_FORMAT": "json"} if json_results else {}), **(env or {})}, unset_env
        ),
        timeout=timeout,
        check=False,
    )
    seconds = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    system = after.ru_stime - before.ru_stime
    cpu = (after.ru_utime - before.ru_utime) + system
    return PlaybookRun(done.returncode, strip_ansi(done.stdout + done.stderr), seconds, cpu, system)


# ---- Molecule verifiers -------------------------------------------------------------------


def scenario_directory() -> Path:
    """The running Molecule scenario's directory (exported by Molecule to the verifier)."""
    return Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])


def scenario_inventory() -> Path:
    return Path(os.environ["MOLECULE_INVENTORY_FILE"])


def scenario_groups() -> dict[str, list[str]]:
    """The scenario inventory's groups and their hosts (`all` left out)."""
    data = yaml.safe_load(scenario_inventory().read_text())
    return {name: list((group or {}).get("hosts") or {}) for name, group in data.items() if name != "all"}


def scenario_playbook(
    playbook: str = "converge.yml",
    *args: str,
    extra_vars: Mapping[str, Any] | None = None,
    timeout: float = 900,
    json_results: bool = False,
) -> PlaybookRun:
    """A playbook of the current scenario, against the scenario's hosts, with the inventory and
    Ansible configuration Molecule exports to the verifier (extra `-i` in ARGS add to it)."""
    return run_playbook(
        scenario_directory() / playbook,
        *args,
        inventory=scenario_inventory(),
        extra_vars=extra_vars,
        cwd=scenario_directory(),
        timeout=timeout,
        json_results=json_results,
    )


def tasks_of(role: str) -> list[tuple[str, dict[str, Any], bool]]:
    """(file, task, no_log inherited from an enclosing block) for every task of tasks/ and handlers/."""
    found: list[tuple[str, dict[str, Any], bool]] = []

    def walk(file: str, tasks: list[dict[str, Any]], inherited: bool) -> None:
        for task in tasks or []:
            no_log = inherited or task.get("no_log") is True
            if any(key in task for key in ("block", "rescue", "always")):
                for key in ("block", "rescue", "always"):
                    walk(file, task.get(key) or [], no_log)
            else:
                found.append((file, task, no_log))

    for directory in ("tasks", "handlers"):
        for path in sorted((ROOT / "roles" / role / directory).glob("*.yml")):
            walk(f"{directory}/{path.name}", yaml.safe_load(path.read_text()) or [], False)
    return found
