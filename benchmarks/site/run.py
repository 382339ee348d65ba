#!/usr/bin/env python3
"""Site benchmark: `site.yml` with nothing to change, on fleets of 1, 4 and 8 edge hosts, over SSH.

Starts the largest fleet of fresh Debian 13 systemd test hosts (tests/mlops_testkit/testhosts.py,
the platform settings of every Molecule scenario) and converges them once with `site.yml` over
SSH (timed: the fresh converge, all hosts at once). Hardening refuses root over SSH, as on a
real site, so every run logs in as the deploy user (`hardening_deploy_user`, with the
benchmark's key and full sudo), the way a site's controller reaches its hosts: the benchmark
creates that user first, as a site's installer would, and hardening then manages it. Then, for
each round, alternating the order of the fleet sizes:

  N hosts   ansible-playbook site.yml --limit <the first N hosts>

Each run must report changed=0 on every host. Reports medians, each fleet's time as a ratio to
the 1-host time of the same run, and the cost of each extra host as a share of the first.
Writes benchmarks/RESULTS-site.md.

With --baseline, each round also runs the 1-host no-change run of another checkout.

Usage: .venv/bin/python benchmarks/site/run.py [--fleets 1,4,8] [--rounds 3] [--keep] [--baseline DIR]
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

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from mlops_testkit import ROOT, testhosts  # tests/ is put on the path just above
from mlops_testkit.ansible import PlaybookRun, run_playbook

RESULTS = ROOT / "benchmarks" / "RESULTS-site.md"
WORK = ROOT / "build" / "site-bench"
LABEL = "owner=site-bench"
KEY = WORK / "ssh" / "id_ed25519"
DEPLOY_USER = "mlops-deploy"
# The installer's sudo rule, removed once hardening wrote its own (hardening_deploy_sudo_full).
INSTALLER_SUDOERS = "/etc/sudoers.d/zz-site-bench"
GROUP_VARS = {
    "mlops_environment": "edge",
    "mlops_image_delivery": "bundle",
    # No Grafana image can be had offline; everything else of the edge stack runs.
    "mlops_disabled_services": ["grafana"],
    "docker_install_source": "distro",
    "mlops_pki_dir": str(WORK / "pki"),
    "hardening_container_runtime": "docker",
    "hardening_deploy_sudo_full": True,
    "ansible_become": True,
}


def site(inventory: Path, *args: str, checkout: Path = ROOT) -> PlaybookRun:
    """site.yml of CHECKOUT (its ansible.cfg and roles), against the benchmark's inventory."""
    run = run_playbook(
        checkout / "site.yml",
        *args,
        inventory=inventory,
        env={"ANSIBLE_HOST_KEY_CHECKING": "False"},
        timeout=5400,
        cwd=checkout,
    )
    if run.returncode != 0:
        sys.exit(f"site.yml {' '.join(args)} failed:\n{run.tail()}")
    return run


def git_head(checkout: Path) -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=checkout, capture_output=True, text=True, check=False
    )
    return out.stdout.strip() or "unknown"


def as_deploy_user(inventory: Path, hosts: list[str], public_key: str) -> None:
    """Create the deploy user with the key and sudo on each host, and log in as it."""
    for name in hosts:
        testhosts.docker_exec(
            name,
            f"useradd --create-home --shell /bin/bash {DEPLOY_USER}"
            f" && install -d -m 0700 -o {DEPLOY_USER} -g {DEPLOY_USER} /home/{DEPLOY_USER}/.ssh"
            f" && echo '{public_key}' > /home/{DEPLOY_USER}/.ssh/authorized_keys"
            f" && chown {DEPLOY_USER}: /home/{DEPLOY_USER}/.ssh/authorized_keys"
            f" && echo '{DEPLOY_USER} ALL=(ALL) NOPASSWD: ALL' > {INSTALLER_SUDOERS}",
        )
    doc = yaml.safe_load(inventory.read_text())
    for host in doc["all"]["children"]["edge"]["hosts"].values():
        host["ansible_user"] = DEPLOY_USER
    inventory.write_text(yaml.safe_dump(doc))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleets", default="1,4,8", help="fleet sizes, comma separated (1 first)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the hosts running afterwards")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (git worktree) whose 1-host no-change run is measured in each round too",
    )
    args = parser.parse_args()
    fleets = [int(n) for n in args.fleets.split(",")]
    if fleets[0] != 1:
        sys.exit("--fleets must start with 1: the other sizes are measured against it")

    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "group_vars").mkdir(parents=True)
    hosts = [f"site-bench-{i}" for i in range(1, max(fleets) + 1)]
    times: dict[int, list[float]] = {n: [] for n in fleets}
    baseline: list[float] = []
    try:
        for host in hosts:
            testhosts.start(host, reuse=False, labels=(LABEL,))
        inventory = testhosts.ssh_inventory(WORK / "hosts.yml", hosts, KEY, group="edge")
        public = KEY.with_name(KEY.name + ".pub").read_text().strip()
        (WORK / "group_vars" / "edge.yml").write_text(
            json.dumps({**GROUP_VARS, "hardening_deploy_authorized_keys": [public]})
        )
        as_deploy_user(inventory, hosts, public)
        t0 = time.monotonic()
        first = site(inventory)
        fresh = time.monotonic() - t0
        print(f"fresh converge of {len(hosts)} hosts: {fresh:.1f} s, changed {first.changed()}", flush=True)
        for name in hosts:
            testhosts.docker_exec(name, f"rm {INSTALLER_SUDOERS}")
        for r in range(args.rounds):
            for n in fleets if r % 2 == 0 else list(reversed(fleets)):
                run = site(inventory, "--limit", ",".join(hosts[:n]))
                changed = {h: c for h, c in run.changed().items() if c}
                assert not changed, f"a no-change run changed {changed}:\n" + "\n".join(run.changed_tasks())
                assert len(run.recaps) == n, run.tail()
                times[n].append(run.seconds)
                print(f"round {r + 1}: {n} host(s): {run.seconds:.1f} s, changed=0", flush=True)
            if args.baseline:
                old = site(inventory, "--limit", hosts[0], checkout=args.baseline)
                baseline.append(old.seconds)
                print(f"round {r + 1}: baseline, 1 host: {old.seconds:.1f} s, changed {old.total_changed}", flush=True)
        tasks = max(recap.ok for recap in run.recaps)
    finally:
        if not args.keep:
            for host in hosts:
                testhosts.remove(host)

    one = statistics.median(times[1])
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    machine = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    rows = "\n".join(
        f"| {n} | {statistics.median(times[n]):.1f} s | {statistics.median(times[n]) / one:.2f}x | "
        + ("-" if n == 1 else f"{(statistics.median(times[n]) - one) / (n - 1) / one * 100:.0f}%")
        + " |"
        for n in fleets
    )
    report = f"""# Site benchmark: no-change runs (benchmarks/site/run.py)

Measured {when}, {machine}: {len(hosts)} fresh Debian 13 systemd test hosts reached over SSH
(ControlPersist and pipelining from ansible.cfg) as the deploy user with sudo, Docker Engine
inside each, the edge stack without Grafana. `site.yml` converged them first (all at once,
{fresh:.0f} s, not in the table); then each fleet ran `site.yml --limit` its first hosts with
nothing to change (changed=0 checked on every host, {tasks} tasks ok per host), medians of
{args.rounds} rounds, the fleet sizes alternating their order.

| hosts | no-change `site.yml` | / 1 host | each extra host, share of the first |
|---|---|---|---|
{rows}

Every round (seconds): {json.dumps({str(n): [round(t, 1) for t in times[n]] for n in fleets})}
"""
    if baseline:
        report += f"""
Baseline, 1 host, in the same rounds: `site.yml` of {args.baseline} (commit
{git_head(args.baseline)}), median {statistics.median(baseline):.1f} s; this checkout (commit
{git_head(ROOT)}) took {one / statistics.median(baseline):.2f}x of it. Every round: {[round(t, 1) for t in baseline]}
"""
    RESULTS.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
