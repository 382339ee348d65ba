#!/usr/bin/env python3
"""Speed of the docker role against a hand-written shell install, on fresh Debian 13 hosts.

Each round creates fresh systemd test hosts (tests/mlops_testkit/testhosts.py: the platform
settings of .config/molecule/config.yml, as every scenario's hosts) and times, alternating which goes first:

  shell      apt-get update && apt-get install -y docker.io docker-cli docker-compose
             && systemctl enable --now docker          (docker exec, no Python, no Ansible)
  role       ansible-playbook with the docker role, defaults (recommends left out)
  role+recs  the same with docker_install_recommends: true (the shell's package set)

Only the install is timed, not the host's creation or boot. Afterwards: a re-run of the role
on a converged host (time, changed count), and check mode on fresh hosts with and without
python3-apt. The apt mirror's download time dominates every figure, so the result is the
ratio of medians measured in the same run. Writes benchmarks/RESULTS-docker.md.

Usage: .venv/bin/python benchmarks/docker/run.py [--rounds 3] [--image mlops-test/debian-systemd:13]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from mlops_testkit import ROOT, testhosts  # tests/ is put on the path just above
from mlops_testkit.ansible import PlaybookRun, run_playbook

RESULTS = ROOT / "benchmarks" / "RESULTS-docker.md"
LABEL = "owner=docker-bench"
SHELL_BASELINE = (
    "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -qq"
    " && apt-get install -y -qq docker.io docker-cli docker-compose >/dev/null"
    " && systemctl enable --now docker"
)
PLAYBOOK = """\
- name: Install Docker with the docker role
  hosts: all
  gather_facts: false
  roles:
    - role: docker
"""
ANSIBLE_CFG = f"""\
[defaults]
roles_path = {ROOT / "roles"}
interpreter_python = auto_silent
stdout_callback = ansible.builtin.default
retry_files_enabled = false
[connection]
pipelining = true
"""


def changed_of(run: PlaybookRun) -> int:
    """changed= of the recap's host, -1 when the run printed no recap."""
    return run.recaps[0].changed if run.recaps else -1


def failed_of(run: PlaybookRun) -> int:
    return run.recaps[0].failed if run.recaps else -1


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check)


class Bench:
    def __init__(self, image: str, workdir: Path) -> None:
        self.image = image
        self.workdir = workdir
        self.counter = 0
        (workdir / "ansible.cfg").write_text(ANSIBLE_CFG)
        (workdir / "playbook.yml").write_text(PLAYBOOK)

    def create_host(self, tag: str) -> str:
        """Start a fresh systemd test host and wait until it has booted."""
        self.counter += 1
        name = f"docker-bench-{os.getpid()}-{self.counter}-{tag}"
        return testhosts.start(name, self.image, reuse=False, labels=[LABEL]).name

    @staticmethod
    def destroy_host(name: str) -> None:
        testhosts.remove(name)

    def shell_install(self, host: str) -> float:
        start = time.monotonic()
        run = sh("docker", "exec", host, "sh", "-c", SHELL_BASELINE, check=False)
        seconds = time.monotonic() - start
        if run.returncode != 0:
            raise RuntimeError(f"shell baseline failed on {host}: {run.stderr[-2000:]}")
        return seconds

    def playbook(self, host: str, *extra: str) -> PlaybookRun:
        inventory = testhosts.docker_inventory(self.workdir / f"{host}.yml", [host])
        return run_playbook(
            self.workdir / "playbook.yml",
            *extra,
            inventory=inventory,
            env={"ANSIBLE_CONFIG": str(self.workdir / "ansible.cfg")},
            cwd=self.workdir,
        )

    def role_install(self, host: str, *extra: str) -> float:
        result = self.playbook(host, *extra)
        if result.returncode != 0:
            raise RuntimeError(f"role failed on {host}:\n{result.output[-4000:]}")
        return result.seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image", default="mlops-test/debian-systemd:13")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="docker-bench-") as tmp:
        bench = Bench(args.image, Path(tmp))
        recs = ("--extra-vars", '{"docker_install_recommends": true}')
        variants: dict[str, Callable[[str], float]] = {
            "shell": bench.shell_install,
            "role": bench.role_install,
            "role+recs": lambda host: bench.role_install(host, *recs),
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        reruns: list[PlaybookRun] = []
        hosts: list[str] = []
        try:
            for round_no in range(args.rounds):
                # Rotate the order each round so that a slow or fast moment of the shared
                # machine and the mirror does not always fall on the same variant.
                order = list(variants)[round_no % 3 :] + list(variants)[: round_no % 3]
                for name in order:
                    host = bench.create_host(name.replace("+", "-"))
                    hosts.append(host)
                    seconds = variants[name](host)
                    times[name].append(seconds)
                    print(f"round {round_no + 1} {name:10s} {seconds:6.1f} s", flush=True)
                    if name == "role" and round_no == args.rounds - 1:
                        for _ in range(3):
                            reruns.append(bench.playbook(host))
                            run = reruns[-1]
                            print(
                                f"re-run     {run.seconds:6.1f} s changed={changed_of(run)} rc={run.returncode}",
                                flush=True,
                            )
                    bench.destroy_host(host)
                    hosts.remove(host)

            check_runs: dict[str, PlaybookRun] = {}
            for label, prepare in (
                ("fresh host (python3-apt, no package lists: the test image)", ""),
                ("fresh host with package lists (apt-get update first)", "apt-get update -qq"),
                ("fresh host without python3-apt", "dpkg --purge python3-apt"),
            ):
                host = bench.create_host("check")
                hosts.append(host)
                if prepare:
                    sh("docker", "exec", host, "sh", "-c", prepare)
                check_runs[label] = bench.playbook(host, "--check")
                touched = sh(
                    "docker",
                    "exec",
                    host,
                    "sh",
                    "-c",
                    "dpkg-query -W docker.io 2>/dev/null; ls /etc/docker 2>&1",
                    check=False,
                )
                run = check_runs[label] = dataclasses.replace(
                    check_runs[label],
                    output=check_runs[label].output + "\n[after check mode] " + touched.stdout + touched.stderr,
                )
                print(
                    f"check mode {label}: rc={run.returncode} changed={changed_of(run)} failed={failed_of(run)}"
                    f" {run.seconds:.1f} s",
                    flush=True,
                )
                bench.destroy_host(host)
                hosts.remove(host)
        finally:
            for host in hosts:
                bench.destroy_host(host)

    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["role"] / medians["shell"]
    ratio_recs = medians["role+recs"] / medians["shell"]
    assert reruns
    rerun_median = statistics.median(run.seconds for run in reruns)
    rerun_changed = sorted({changed_of(run) for run in reruns})
    lines = [
        "# docker role: speed against a shell install",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on this project's 2-core machine, shared with",
        "other test runs; fresh Debian 13 systemd test host for every install; Debian's apt mirror.",
        "",
        "Command: `.venv/bin/python benchmarks/docker/run.py"
        + (f" --rounds {args.rounds}" if args.rounds != 3 else "")
        + "`",
        "",
        "| variant | what runs | " + " | ".join(f"round {i + 1}" for i in range(args.rounds)) + " | median |",
        "|---|---|" + "---|" * args.rounds + "---|",
    ]
    what = {
        "shell": "`apt-get update && apt-get install -y docker.io docker-cli docker-compose"
        " && systemctl enable --now docker`",
        "role": "`ansible-playbook` with the docker role, defaults (no recommends: 12 packages)",
        "role+recs": "the same with `docker_install_recommends: true` (the shell's 49 packages)",
    }
    for name, values in times.items():
        lines.append(
            f"| {name} | {what[name]} | " + " | ".join(f"{v:.1f} s" for v in values) + f" | {medians[name]:.1f} s |"
        )
    lines += [
        "",
        f"- **Fresh converge / shell baseline: {ratio:.2f}x** (goal: at most 1.3x).",
        f"- With recommends (same packages as the shell): {ratio_recs:.2f}x.",
        f"- **Re-run on the converged host: median {rerun_median:.1f} s of "
        + ", ".join(f"{run.seconds:.1f}" for run in reruns)
        + f" s; changed={'/'.join(map(str, rerun_changed))}** (goal: at most 5 s, changed=0),"
        " including ansible-playbook's own start-up.",
    ]
    for label, run in check_runs.items():
        verdict = "ran to the end" if run.returncode == 0 and failed_of(run) == 0 else f"FAILED (rc {run.returncode})"
        lines.append(f"- Check mode on a {label}: {verdict}, changed={changed_of(run)}, {run.seconds:.1f} s.")
    lines += [
        "",
        "Rounds rotate the order of the three variants. Only the install is timed (not the",
        "host's creation and boot); the apt mirror's download time dominates every figure, hence",
        "a ratio of medians from the same run.",
        "",
        "## Check-mode output",
    ]
    for label, run in check_runs.items():
        shown: list[str] = []
        task = ""
        for line in run.output.splitlines():
            if line.startswith("TASK"):
                task = line
            elif line.startswith(("changed", "fatal")):
                shown += [task, line]
            elif re.match(r'^(\S+\s+:\s+ok=|\[after|\s+"?msg"?:)', line):
                shown.append(line)
        tail = "\n".join(shown)
        lines += ["", f"### {label}", "", "```", tail.strip(), "```"]
    RESULTS.write_text("\n".join(lines) + "\n")
    print(
        f"shell median {medians['shell']:.1f} s, role median {medians['role']:.1f} s,"
        f" ratio {ratio:.2f}; wrote {RESULTS}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
