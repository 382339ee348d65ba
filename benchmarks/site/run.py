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

With --baseline, each round also runs the no-change runs of another checkout, on the fleet
sizes of --baseline-fleets (1 by default).

With --fresh-rounds N, it measures fresh converges instead (issue 10: at most 1.5 times a
hand-written shell script doing the same irreducible work). Each round converges one brand-new
test host with `site.yml` and another with benchmarks/site/baseline.sh, both over SSH as the
deploy user, the order alternating (site.yml first in round 1: the files the shell copies are
taken from that host). Only the converge is timed, not the host's start. Before the first round
the stack's images are tagged `site-bench/...` (other jobs rebuild them under their usual tags)
and their bundle is built into the run's own bundle directory, where site.yml finds it as in a
warm cache and from where the shell streams it. After each converge the host must run every
container of the stack, healthy; the packages, the running services and the containers of the
two kinds of host are compared. Writes its section of benchmarks/RESULTS-site.md.

Usage: .venv/bin/python benchmarks/site/run.py [--fleets 1,4,8] [--rounds 3] [--keep] [--baseline DIR]
                                               [--baseline-fleets 1,4]
       .venv/bin/python benchmarks/site/run.py --fresh-rounds 3
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
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
    # As inventories/edge/hosts.yml sets it for every site.
    "mitogen_ssh_compression": False,
}


def site(inventory: Path, *args: str, checkout: Path = ROOT, env: dict[str, str] | None = None) -> PlaybookRun:
    """site.yml of CHECKOUT (its ansible.cfg and roles), against the benchmark's inventory."""
    run = run_playbook(
        checkout / "site.yml",
        *args,
        inventory=inventory,
        env={"ANSIBLE_HOST_KEY_CHECKING": "False", **(env or {})},
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


def write_section(text: str) -> None:
    """Put TEXT (a report starting with its `# ` title) into RESULTS in place of the report of
    the same kind (no-change runs, fresh converges), keeping the other."""
    kind = text.split("\n", 1)[0].split(" (")[0]
    old = RESULTS.read_text() if RESULTS.exists() else ""
    parts = re.split(r"(?m)^(?=# )", old)
    kept = [p.rstrip() + "\n" for p in parts if p.strip() and not p.startswith(kind)]
    RESULTS.write_text("\n".join([*kept, text.rstrip() + "\n"]))


# --- Fresh converges: site.yml against the shell baseline -------------------------------------

SHELL = Path(__file__).with_name("baseline.sh")
FILES_TAR = WORK / "site-files.tar"
BUNDLES = WORK / "bundles"
BENCH_REPO = "site-bench"
MARKER = "/run/site-bench.marker"
# Everything site.yml wrote (content, mode or owner: the inode changed after MARKER), except what
# packages install, what only runs produce (logs, caches, apt and dpkg state, Ansible's own
# files) and the account databases (the shell makes its users itself). -xdev leaves out
# /var/lib/docker (the test host's own volume) and Docker's bind mounts (/etc/hosts...).
CAPTURE = (
    "find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp"
    " -o -path /var/tmp -o -path /usr/bin -o -path /usr/sbin -o -path /usr/lib -o -path /usr/libexec"
    " -o -path /usr/share -o -path /usr/include -o -path /var/lib/dpkg -o -path /var/lib/apt"
    " -o -path /var/cache -o -path /var/log -o -path /var/lib/systemd -o -path /var/lib/containerd"
    " -o -path /var/lib/ucf -o -path /var/lib/sysstat -o -path /var/lib/fail2ban -o -path /root"
    " -o -path '/home/*/.ansible' -o -path '/home/*/.cache' \\) -prune"
    f" -o -cnewer {MARKER} ! -path / -print"
    " | sed 's|^/||' | grep -vxE 'etc/(passwd|group|shadow|gshadow|subuid|subgid)-?|etc/ld.so.cache'"
    " | tar -C / --numeric-owner --no-recursion -cpf - -T -"
)
HEALTH = "docker ps --all --format '{{.Names}} {{.Status}}'"
PACKAGES = "dpkg-query -W -f '${db:Status-Abbrev} ${Package}\\n' | awk '$1 == \"ii\" {print $2}'"
UNITS = "systemctl list-units --type=service --state=running --no-legend --plain | awk '{print $1}'"


def new_host(name: str, public: str) -> Path:
    """A brand-new test host reached over SSH as the deploy user; returns its inventory."""
    testhosts.start(name, reuse=False, labels=(LABEL,))
    inventory = testhosts.ssh_inventory(WORK / f"{name}.yml", [name], KEY, group="edge")
    as_deploy_user(inventory, [name], public)
    testhosts.docker_exec(name, f"touch {MARKER}")
    return inventory


def stack_state(name: str) -> dict[str, str]:
    """Each container of the host with its status; fails unless every one is up and healthy."""
    out = testhosts.docker_exec(name, HEALTH).stdout.split("\n")
    state = dict(line.split(" ", 1) for line in out if line.strip())
    bad = {c: s for c, s in state.items() if not s.startswith("Up") or "(healthy)" not in s}
    if not state or bad:
        sys.exit(f"{name}: the stack is not up and healthy: {state}")
    return state


def hosts_cpu_seconds(names: list[str]) -> float | None:
    """CPU time the test hosts NAMES have used so far, read from their containers' cgroups.

    That is each host's own work for a run (systemd, sshd, the Mitogen interpreter, dockerd), which
    a real fleet does on the hosts' machines; not the stack's containers, which the hosts' Docker
    Engine puts in cgroups of their own. None where a cgroup cannot be read (cgroup v1 or v2)."""
    total = 0.0
    for name in names:
        pid = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Pid}}", name], capture_output=True, text=True, check=True
        ).stdout.strip()
        cgroups = dict(line.split(":", 2)[1:] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines())
        v1 = next((c for c in cgroups if "cpuacct" in c.split(",")), None)
        try:
            if v1 is not None:
                usage = Path("/sys/fs/cgroup", v1, cgroups[v1].lstrip("/"), "cpuacct.usage").read_text()
                total += int(usage) / 1e9
            else:
                stat = Path("/sys/fs/cgroup", cgroups[""].lstrip("/"), "cpu.stat").read_text().split()
                total += int(stat[stat.index("usage_usec") + 1]) / 1e6
        except (OSError, KeyError, ValueError):
            return None
    return total


def host_survey(name: str) -> dict[str, set[str]]:
    return {
        "packages": set(testhosts.docker_exec(name, PACKAGES).stdout.split()),
        "running services": set(testhosts.docker_exec(name, UNITS).stdout.split()),
        "containers": set(stack_state(name)),
    }


def capture_files(name: str) -> list[str]:
    """The files site.yml wrote on host NAME, as one tar (FILES_TAR); returns their names."""
    with FILES_TAR.open("wb") as out:
        subprocess.run(["docker", "exec", name, "sh", "-c", CAPTURE], stdout=out, check=True)
    with tarfile.open(FILES_TAR) as tar:
        return tar.getnames()


def pin_images(checkout: Path) -> dict[str, str]:
    """Tag the stack's images under BENCH_REPO for the run and return mlops_images naming them.

    Other jobs on this machine rebuild the images under their usual tags; under tags of its own
    every round loads the same images, and the bundle is built once, before the first round."""
    defaults = yaml.safe_load((checkout / "roles" / "mlops" / "defaults" / "main.yml").read_text())
    pinned = {}
    for service, ref in defaults["mlops_images"].items():
        if service in GROUP_VARS["mlops_disabled_services"]:
            pinned[service] = ref
            continue
        pinned[service] = f"{BENCH_REPO}/{ref.rsplit('/', 1)[-1]}"
        subprocess.run(["docker", "tag", ref, pinned[service]], check=True)
    return pinned


def unpin_images(pinned: dict[str, str]) -> None:
    for ref in pinned.values():
        if ref.startswith(BENCH_REPO + "/"):
            subprocess.run(["docker", "rmi", ref], capture_output=True, check=False)


def build_bundle(refs: list[str]) -> Path:
    """The bundle of REFS in the benchmark's bundle directory, named and checksummed as role
    edge_stack names and checksums it, so that site.yml finds it there as in a warm cache."""
    ids = {}
    for ref in refs:
        inspect = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Id}}", ref], capture_output=True, text=True, check=True
        )
        ids[ref] = inspect.stdout.strip()
    key = hashlib.sha256(json.dumps(sorted(ids.items())).encode()).hexdigest()[:16]
    archive = BUNDLES / f"mlops-images-{key}.tar.zst"
    BUNDLES.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        f"set -o pipefail; docker save {' '.join(refs)} | zstd -q -T0 -10 -o {archive}"
        f" && sha256sum {archive} | cut -d' ' -f1 > {archive}.sha256",
        shell=True,
        executable="/bin/bash",
        check=True,
    )
    return archive


def bundle_built(output: str) -> bool:
    """Whether site.yml built the bundle itself (its cache did not have it)."""
    found = re.search(r"TASK \[[^\]]*Build the bundle on the controller[^\n]*\n[^\n]*\n(\w+):", output)
    return bool(found and found[1] == "changed")


def profile(output: str, count: int = 12) -> list[str]:
    """From profile_tasks' summary at the end of a run: the time of each role (its tasks, their
    count), then the slowest tasks."""
    timed = [(m[1], m[2], float(m[3])) for m in re.finditer(r"(?m)^(?:(\S+) : )?(.*?) -+ (\d+\.\d+)s$", output)]
    roles: dict[str, list[float]] = {}
    for role, _, seconds in timed:
        roles.setdefault((role or "(play tasks)").removeprefix("mlops.infra."), []).append(seconds)
    by_role = sorted(roles.items(), key=lambda kv: -sum(kv[1]))
    heavy = [t for *_, t in timed if t >= 3]
    light = [t for *_, t in timed if t < 3]
    lines = [
        f"sum of the task times: {sum(t for *_, t in timed):.1f} s over {len(timed)} tasks (skipped ones too):"
        f" {sum(heavy):.1f} s in the {len(heavy)} tasks of 3 s or more, {sum(light):.1f} s in the other"
        f" {len(light)} ({sum(light) / max(len(light), 1):.2f} s each on average)"
    ]
    lines += [f"  {role:14s} {sum(times):6.1f} s  {len(times):3d} tasks" for role, times in by_role]
    lines += ["slowest tasks:"]
    lines += [
        f"  {seconds:6.2f} s  {role or ''} : {task}"
        for role, task, seconds in sorted(timed, key=lambda t: -t[2])[:count]
    ]
    return lines


def shell_steps(log: str) -> list[str]:
    """The duration of each step of baseline.sh, from the times it prints before each."""
    marks = re.findall(r"(?m)^(\d\d):(\d\d):(\d\d) (.*)$", log)
    secs = [(int(h) * 3600 + int(m) * 60 + int(x), step) for h, m, x, step in marks]
    return [f"  {(b[0] - a[0]) % 86400:4d} s  {a[1]}" for a, b in itertools.pairwise(secs)]


def fresh_rounds(rounds: int, keep: bool, checkout: Path) -> None:
    """Alternate fresh converges by site.yml and by the shell baseline, one new host each."""
    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "group_vars").mkdir(parents=True)
    KEY.parent.mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "site-bench", "-f", str(KEY)], check=True)
    public = KEY.with_name(KEY.name + ".pub").read_text().strip()
    pinned = pin_images(checkout)
    try:
        refs = [ref for service, ref in pinned.items() if service not in GROUP_VARS["mlops_disabled_services"]]
        bundle = build_bundle(refs)
        (WORK / "group_vars" / "edge.yml").write_text(
            json.dumps(
                {
                    **GROUP_VARS,
                    "hardening_deploy_authorized_keys": [public],
                    "mlops_images": pinned,
                    "edge_stack_bundle_dir": str(BUNDLES),
                }
            )
        )
        fresh_measure(rounds, keep, checkout, public, bundle)
    finally:
        unpin_images(pinned)


def fresh_measure(rounds: int, keep: bool, checkout: Path, public: str, bundle: Path) -> None:
    times: dict[str, list[float]] = {"site.yml": [], "shell": []}
    loads: list[float] = [os.getloadavg()[0]]
    surveys: dict[str, dict[str, set[str]]] = {}
    tops: list[list[str]] = []
    recaps: list[str] = []
    captured: list[str] = []
    rebuilt: list[int] = []
    bundle_note = f"{bundle.name} ({bundle.stat().st_size / 1e6:.0f} MB), built before the first round"
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    hosts: list[str] = []
    try:
        for r in range(rounds):
            order = ["site.yml", "shell"] if r % 2 == 0 else ["shell", "site.yml"]
            for kind in order:
                name = f"site-bench-{'a' if kind == 'site.yml' else 's'}{r + 1}"
                hosts.append(name)
                inventory = new_host(name, public)
                loads.append(os.getloadavg()[0])
                if kind == "site.yml":
                    # profile_tasks (ansible.cfg) lists every task's time, not only the 20 slowest.
                    run = site(inventory, checkout=checkout, env={"PROFILE_TASKS_TASK_OUTPUT_LIMIT": "all"})
                    seconds = run.seconds
                    (WORK / f"{name}.log").write_text(run.output)
                    tops.append([f"site.yml, round {r + 1}:", *profile(run.output)])
                    recaps += [f"{h.host}: ok={h.ok} changed={h.changed}" for h in run.recaps]
                    if bundle_built(run.output):
                        rebuilt.append(r + 1)
                    if not captured:
                        captured = capture_files(name)
                else:
                    address = yaml.safe_load(inventory.read_text())["all"]["children"]["edge"]["hosts"][name]
                    t0 = time.monotonic()
                    shell = subprocess.run(
                        ["bash", str(SHELL), address["ansible_host"], str(KEY), str(FILES_TAR), str(bundle)],
                        capture_output=True,
                        text=True,
                        check=False,
                        timeout=5400,
                    )
                    seconds = time.monotonic() - t0
                    (WORK / f"{name}.log").write_text(shell.stdout + shell.stderr)
                    tops.append([f"{SHELL.name}, round {r + 1}:", *shell_steps(shell.stderr)])
                    if shell.returncode != 0:
                        sys.exit(f"{SHELL.name} failed on {name}:\n{(shell.stdout + shell.stderr)[-3000:]}")
                surveys.setdefault(kind, host_survey(name))
                times[kind].append(seconds)
                loads.append(os.getloadavg()[0])
                print(f"round {r + 1}: {kind}: {seconds:.1f} s, load {os.getloadavg()[0]:.1f}", flush=True)
                if not keep:
                    testhosts.remove(name)
                    hosts.remove(name)
    finally:
        if not keep:
            for name in hosts:
                testhosts.remove(name)
    if rebuilt:
        bundle_note += f"; site.yml built it again in round(s) {rebuilt}, its cache missing it"
    else:
        bundle_note += ", found there by site.yml in every round"
    write_fresh_report(rounds, times, loads, surveys, tops, recaps, bundle_note, captured, started, checkout)


def write_fresh_report(
    rounds: int,
    times: dict[str, list[float]],
    loads: list[float],
    surveys: dict[str, dict[str, set[str]]],
    tops: list[list[str]],
    recaps: list[str],
    bundle_note: str,
    captured: list[str],
    started: str,
    checkout: Path,
) -> None:
    medians = {kind: statistics.median(values) for kind, values in times.items()}
    ratio = medians["site.yml"] / medians["shell"]
    rows = "\n".join(
        f"| {kind} | " + " | ".join(f"{t:.1f} s" for t in values) + f" | {medians[kind]:.1f} s |"
        for kind, values in times.items()
    )
    diffs = []
    for what in ("packages", "running services", "containers"):
        a, s = surveys["site.yml"][what], surveys["shell"][what]
        diffs.append(
            f"- {what}: {len(a)} after site.yml, {len(s)} after the shell;"
            f" only site.yml's: {sorted(a - s) or 'none'}; only the shell's: {sorted(s - a) or 'none'}"
        )
    top = "\n".join(line for lines in tops for line in lines)
    dirs = sorted({"/" + n.split("/")[0] for n in captured})
    option = "" if checkout == ROOT else f" --checkout <worktree of {git_head(checkout)}>"
    section = f"""# Site benchmark: fresh converge against a shell baseline (benchmarks/site/run.py --fresh-rounds)

Measured {started} to {time.strftime("%H:%M UTC", time.gmtime())} with
`python benchmarks/site/run.py --fresh-rounds {rounds}{option}`, on {os.cpu_count()} cores shared with other
jobs: load average (1 min) {min(loads):.1f} to {max(loads):.1f} over the run, {statistics.median(loads):.1f} median.
Each converge ran on its own brand-new Debian 13 systemd test host, over SSH as the deploy user
with sudo, the two kinds alternating (site.yml first in odd rounds). Only the converge is
timed; after each, every container of the stack was up and healthy.

| converge | {" | ".join(f"round {i + 1}" for i in range(rounds))} | median |
|---|{"---|" * rounds}---|
{rows}

**site.yml / shell: {ratio:.2f}x on the medians** (goal: at most 1.5x).

- site.yml: `ansible-playbook site.yml` of commit {git_head(checkout)} with the benchmark's edge
  group_vars (bundle delivery, no Grafana); recap {", ".join(recaps)}.
- shell: `benchmarks/site/baseline.sh` (read its header for what it does and leaves out). The
  files it copies are the {len(captured)} paths site.yml wrote on round 1's host (under
  {", ".join(dirs)}), taken as one tar before the shell's first run, untimed. Image bundle, the same archive for
  both: {bundle_note}. The images are tagged `{BENCH_REPO}/...` for the run (mlops_images), so that
  other jobs rebuilding them under their usual tags change nothing here.

What the two kinds of host ended with (first host of each kind):
{chr(10).join(diffs)}

Where each converge spent its time: site.yml from profile_tasks (its wall time also holds Ansible's
work between tasks, which no task's time shows), the shell from the times it prints per step:

```
{top}
```
"""
    write_section(section)
    print(section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleets", default="1,4,8", help="fleet sizes, comma separated (1 first)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the hosts running afterwards")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (git worktree) whose no-change runs are measured in each round too",
    )
    parser.add_argument(
        "--baseline-fleets",
        default="1",
        help="with --baseline: the fleet sizes the other checkout runs (each one of --fleets)",
    )
    parser.add_argument(
        "--fresh-rounds",
        type=int,
        default=0,
        metavar="N",
        help="instead: N rounds of a fresh converge by site.yml against one by baseline.sh, alternating",
    )
    parser.add_argument(
        "--checkout",
        type=Path,
        default=ROOT,
        help="with --fresh-rounds: the checkout (git worktree) whose site.yml converges; default this one",
    )
    args = parser.parse_args()
    if args.fresh_rounds:
        fresh_rounds(args.fresh_rounds, args.keep, args.checkout)
        return
    fleets = [int(n) for n in args.fleets.split(",")]
    if fleets[0] != 1:
        sys.exit("--fleets must start with 1: the other sizes are measured against it")

    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "group_vars").mkdir(parents=True)
    hosts = [f"site-bench-{i}" for i in range(1, max(fleets) + 1)]
    times: dict[int, list[float]] = {n: [] for n in fleets}
    cpus: dict[int, list[float]] = {n: [] for n in fleets}
    kernel: dict[int, list[float]] = {n: [] for n in fleets}
    hosts_cpu: dict[int, list[float]] = {n: [] for n in fleets}
    baseline_fleets = [int(n) for n in args.baseline_fleets.split(",")] if args.baseline else []
    baseline: dict[int, list[float]] = {n: [] for n in baseline_fleets}
    baseline_cpus: dict[int, list[float]] = {n: [] for n in baseline_fleets}
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
                before = hosts_cpu_seconds(hosts[:n])
                run = site(inventory, "--limit", ",".join(hosts[:n]))
                after = hosts_cpu_seconds(hosts[:n])
                changed = {h: c for h, c in run.changed().items() if c}
                assert not changed, f"a no-change run changed {changed}:\n" + "\n".join(run.changed_tasks())
                assert len(run.recaps) == n, run.tail()
                times[n].append(run.seconds)
                cpus[n].append(run.cpu_seconds)
                kernel[n].append(run.cpu_system_seconds)
                used = None if before is None or after is None else after - before
                if used is not None:
                    hosts_cpu[n].append(used)
                print(
                    f"round {r + 1}: {n} host(s): {run.seconds:.1f} s, controller CPU {run.cpu_seconds:.1f} s "
                    f"({run.cpu_system_seconds:.1f} s kernel), test hosts' CPU "
                    f"{'-' if used is None else f'{used:.1f} s'}, changed=0",
                    flush=True,
                )
            for n in baseline_fleets:
                old = site(inventory, "--limit", ",".join(hosts[:n]), checkout=args.baseline)
                baseline[n].append(old.seconds)
                baseline_cpus[n].append(old.cpu_seconds)
                print(
                    f"round {r + 1}: baseline, {n} host(s): {old.seconds:.1f} s, "
                    f"controller CPU {old.cpu_seconds:.1f} s, changed {old.total_changed}",
                    flush=True,
                )
        tasks = max(recap.ok for recap in run.recaps)
    finally:
        if not args.keep:
            for host in hosts:
                testhosts.remove(host)

    one = statistics.median(times[1])
    one_cpu = statistics.median(cpus[1])
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    machine = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"

    def extra(median: float, first: float, n: int) -> str:
        return "-" if n == 1 else f"{(median - first) / (n - 1) / first * 100:.0f}%"

    def median(values: list[float]) -> str:
        return f"{statistics.median(values):.1f} s" if values else "-"

    rows = "\n".join(
        f"| {n} | {statistics.median(times[n]):.1f} s | {statistics.median(times[n]) / one:.2f}x | "
        f"{extra(statistics.median(times[n]), one, n)} | {statistics.median(cpus[n]):.1f} s | "
        f"{extra(statistics.median(cpus[n]), one_cpu, n)} | {median(kernel[n])} | {median(hosts_cpu[n])} |"
        for n in fleets
    )
    header = (
        "| hosts | no-change `site.yml` | / 1 host | each extra host, share of the first | controller CPU "
        "| each extra host | of it, kernel | test hosts' CPU |\n" + "|---" * 8 + "|"
    )
    report = f"""# Site benchmark: no-change runs (benchmarks/site/run.py)

Measured {when}, {machine}: {len(hosts)} fresh Debian 13 systemd test hosts reached over SSH
(ControlPersist and pipelining from ansible.cfg) as the deploy user with sudo, Docker Engine
inside each, the edge stack without Grafana. `site.yml` converged them first (all at once,
{fresh:.0f} s, not in the table); then each fleet ran `site.yml --limit` its first hosts with
nothing to change (changed=0 checked on every host, {tasks} tasks ok per host), medians of
{args.rounds} rounds, the fleet sizes alternating their order.

{header}
{rows}

Controller CPU: user and system time of ansible-playbook and every process it waited for
(workers, Mitogen, ssh clients), not the test hosts' own work, which shares this machine's
cores with the controller here but has machines of its own in a real fleet. Of it, kernel: its
system time (forking a worker per task and host, the page faults of copy-on-write, I/O).
Test hosts' CPU: what the hosts' own containers used during the run (their cgroups: systemd,
sshd, the Mitogen interpreter, dockerd), all hosts of the fleet together.

Every round (seconds): {json.dumps({str(n): [round(t, 1) for t in times[n]] for n in fleets})}
Controller CPU of every round (seconds): {json.dumps({str(n): [round(t, 1) for t in cpus[n]] for n in fleets})}
Test hosts' CPU of every round (seconds): {json.dumps({str(n): [round(t, 1) for t in hosts_cpu[n]] for n in fleets})}
"""
    for n, old in baseline.items():
        mine = statistics.median(times[n])
        mine_cpu = statistics.median(cpus[n])
        old_cpu = statistics.median(baseline_cpus[n])
        report += f"""
Baseline, {n} host(s), in the same rounds: `site.yml` of {args.baseline} (commit
{git_head(args.baseline)}), median {statistics.median(old):.1f} s and {old_cpu:.1f} s of controller CPU;
this checkout (commit {git_head(ROOT)}) took {mine / statistics.median(old):.2f}x of its time and
{mine_cpu / old_cpu:.2f}x of its controller CPU.
Every round: {[round(t, 1) for t in old]}; controller CPU {[round(t, 1) for t in baseline_cpus[n]]}
"""
    write_section(report)
    print(report)


if __name__ == "__main__":
    main()
