#!/usr/bin/env python3
"""Fleet rollout benchmark: the time from `playbooks/model-rollout.yml` to every host serving
the new model version, for 1 host and for a fleet of N (4 by default), over SSH.

Starts N fresh systemd test hosts (tests/mlops_testkit/testhosts.py, the platform settings of
every Molecule scenario), reached over SSH as a site's controller reaches its hosts, installs
Docker (role docker) and brings the stack up on release 1.0.0 (model-rollout.yml on fresh
hosts). Then, for each round, alternating which goes first:

  1 host    model-rollout.yml --limit <first host> -e mlops_model_version=1.1.0, then
            model-rollback.yml --limit <first host>
  N hosts   the same without --limit: the default batches [1, '25%', '100%']

Each command's time is taken until it returns; it returns once every host of the run has
switched and answers with the new version, which is then checked on every host. Reports
medians, and the N-host time as a ratio to the 1-host time measured in the same run.
Writes benchmarks/RESULTS-fleet.md.

Usage: .venv/bin/python benchmarks/fleet/run.py [--hosts 4] [--rounds 3] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from mlops_testkit import ROOT, testhosts  # tests/ is put on the path just above
from mlops_testkit.ansible import PlaybookRun, run_playbook

RESULTS = ROOT / "benchmarks" / "RESULTS-fleet.md"
WORK = ROOT / "build" / "fleet-bench"
LABEL = "owner=fleet-bench"
SHIPPED = ROOT / "services/inference-api/models/breast-cancer-lr-1.0.0"
GROUP_VARS = {
    "mlops_environment": "edge",
    "mlops_image_delivery": "bundle",
    # No Grafana image can be had offline; everything else of the edge stack runs.
    "mlops_disabled_services": ["grafana"],
    "mlops_pki_dir": str(WORK / "pki"),
    "model_release_source_dir": str(WORK / "releases"),
}
PREPARE = """\
- name: Install Docker Engine on the benchmark's hosts
  hosts: edge
  become: true
  roles:
    - role: mlops.infra.docker
"""


def playbook(name: str, inventory: Path, *args: str) -> PlaybookRun:
    path = WORK / name if name.startswith("prepare") else ROOT / "playbooks" / name
    run = run_playbook(path, *args, inventory=inventory, env={"ANSIBLE_HOST_KEY_CHECKING": "False"}, timeout=3600)
    if run.returncode != 0:
        sys.exit(f"{name} {' '.join(args)} failed:\n{run.tail()}")
    return run


def served(host: str) -> str:
    out = testhosts.docker_exec(host, "curl -sS http://127.0.0.1:8000/ready").stdout
    return str(json.loads(out)["model"]["version"])


def timed(inventory: Path, hosts: list[str], limit: list[str]) -> tuple[float, float]:
    """Rollout to 1.1.0 then rollback to 1.0.0 of the hosts in `limit`; returns both times."""
    extra = ["--limit", ",".join(limit)]
    out = playbook("model-rollout.yml", inventory, *extra, "-e", "mlops_model_version=1.1.0").seconds
    assert all(served(h) == "1.1.0" for h in limit), "rollout: a host does not serve 1.1.0"
    back = playbook("model-rollback.yml", inventory, *extra).seconds
    assert all(served(h) == "1.0.0" for h in hosts), "rollback: a host does not serve 1.0.0"
    return out, back


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the hosts running afterwards")
    args = parser.parse_args()

    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "releases").mkdir(parents=True)
    shutil.copytree(SHIPPED, WORK / "releases" / SHIPPED.name)
    subprocess.run(
        [sys.executable, str(ROOT / "services/inference-api/training/release.py"), "derive", str(SHIPPED),
         "--version", "1.1.0", "--out", str(WORK / "releases")],
        check=True, capture_output=True,
    )  # fmt: skip
    (WORK / "prepare.yml").write_text(PREPARE)

    hosts = [f"fleet-bench-{i}" for i in range(1, args.hosts + 1)]
    t0 = time.monotonic()
    try:
        for host in hosts:
            testhosts.start(host, reuse=False, labels=(LABEL,))
        inventory = testhosts.ssh_inventory(WORK / "hosts.yml", hosts, WORK / "ssh" / "id_ed25519", group="edge")
        (WORK / "group_vars").mkdir()
        (WORK / "group_vars" / "edge.yml").write_text(json.dumps(GROUP_VARS))
        playbook("prepare.yml", inventory)
        playbook("model-rollout.yml", inventory)
        assert all(served(h) == "1.0.0" for h in hosts)
        setup = time.monotonic() - t0

        one: list[tuple[float, float]] = []
        many: list[tuple[float, float]] = []
        for r in range(args.rounds):
            for size in (1, args.hosts) if r % 2 == 0 else (args.hosts, 1):
                got = timed(inventory, hosts, hosts[:size])
                (one if size == 1 else many).append(got)
                print(f"round {r + 1}: {size} host(s): rollout {got[0]:.1f} s, rollback {got[1]:.1f} s", flush=True)
    finally:
        if not args.keep:
            for host in hosts:
                testhosts.remove(host)

    def med(values: list[tuple[float, float]], i: int) -> float:
        return statistics.median(v[i] for v in values)

    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    machine = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    rows = "\n".join(
        f"| {what} | {med(one, i):.1f} s | {med(many, i):.1f} s | {med(many, i) / med(one, i):.2f}x |"
        for i, what in enumerate(("`model-rollout.yml` (1.0.0 to 1.1.0)", "`model-rollback.yml` (back to 1.0.0)"))
    )
    report = f"""# Fleet rollout benchmark (benchmarks/fleet/run.py)

Measured {when}, {machine}: {args.hosts} fresh Debian 13 systemd test hosts reached over SSH
(ControlPersist and pipelining from ansible.cfg), Docker Engine inside each, the edge stack
without Grafana, default batches `[1, '25%', '100%']`. Medians of {args.rounds} rounds, the
1-host and {args.hosts}-host runs alternating; each time is from the command until it returned,
when every host of the run answered with the new version (checked on each host afterwards).
Setup (hosts, Docker, stack up on 1.0.0) took {setup:.0f} s and is not in the figures.

| command | 1 host | {args.hosts} hosts | {args.hosts} hosts / 1 host |
|---|---|---|---|
{rows}

Every round: {
        json.dumps(
            {
                "1": [[round(a, 1), round(b, 1)] for a, b in one],
                str(args.hosts): [[round(a, 1), round(b, 1)] for a, b in many],
            }
        )
    }
(rollout, rollback seconds).
"""
    RESULTS.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
