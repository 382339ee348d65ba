"""Systemd test host containers outside Molecule (the local edge host, benchmarks, tests).

The container settings come from the shared Molecule configuration (.config/molecule/config.yml,
first platform), so every test host boots the way every scenario's hosts do (DESIGN.md
section 4: no --privileged, systempaths=unconfined, an anonymous /var/lib/docker).

    host = start("bench-1", image="mlops-test/debian-systemd:13", publish=["127.0.0.1::8080"])
    docker_exec(host.name, "systemctl is-active docker")
    remove(host.name)

or `with fresh_host("bench-1") as host: ...`, which removes it with its volumes afterwards.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlops_testkit import ROOT

CONFIG = ROOT / ".config" / "molecule" / "config.yml"
LABEL = "owner=mlops-testhost"
BOOTED = ("running", "degraded")
STARTING = ("", "offline")
# The Docker connection by its short name: Mitogen (the strategy of ansible.cfg) takes over
# `docker`, not `community.docker.docker`; without Mitogen, Ansible routes the one to the other.
DOCKER_CONNECTION = "docker"


class HostBootError(RuntimeError):
    """A test host did not start or boot."""


@dataclass(frozen=True)
class SystemdHost:
    name: str
    state: str
    """What `systemctl is-system-running` answered once booted (running or degraded)."""
    reused: bool = False


def platform_settings(config: Path = CONFIG) -> dict[str, Any]:
    """The first platform of the shared Molecule configuration."""
    data = yaml.safe_load(config.read_text())
    return dict(data["platforms"][0])


def docker_run_args(
    name: str,
    image: str | None = None,
    publish: Sequence[str] = (),
    labels: Sequence[str] = (LABEL,),
    settings: dict[str, Any] | None = None,
) -> list[str]:
    """`docker run` for a detached systemd test host named (and with hostname) NAME."""
    p = settings if settings is not None else platform_settings()
    args = ["docker", "run", "--detach", "--name", name, "--hostname", name]
    args += [f"--label={label}" for label in labels]
    args += [f"--cap-add={c}" for c in p.get("capabilities", [])]
    args += [f"--security-opt={o}" for o in p.get("security_opts", [])]
    if "cgroupns_mode" in p:
        args.append(f"--cgroupns={p['cgroupns_mode']}")
    args += [f"--volume={v}" for v in p.get("volumes", [])]
    args += [f"--tmpfs={t}" for t in p.get("tmpfs", [])]
    args += [f"--publish={port}" for port in publish]
    args.append(image or p["image"])
    args += str(p.get("command", "")).split()
    return args


def running(name: str) -> bool:
    state = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Running}}", name], capture_output=True, text=True, check=False
    )
    return state.returncode == 0 and state.stdout.strip() == "true"


def wait_for_boot(name: str, timeout: float = 120) -> str:
    """Wait until systemd in the container has finished booting; returns its state.

    Right after `docker run`, systemd may not answer on its bus yet (nothing, or `offline`
    before PID 1 is systemd's manager): ask again until it does, up to `timeout` seconds (a
    deadline, not a count of tries: a loaded machine is slower).
    """
    deadline = time.monotonic() + timeout
    state, error = "", ""
    while True:
        probe = subprocess.run(
            ["docker", "exec", name, "systemctl", "is-system-running", "--wait"],
            capture_output=True,
            text=True,
            check=False,
        )
        state, error = probe.stdout.strip(), probe.stderr.strip()
        if state in BOOTED:
            return state
        if state not in STARTING or time.monotonic() > deadline:
            raise HostBootError(f"test host {name} did not boot: systemd says {state!r} {error}")
        time.sleep(1)


def start(
    name: str,
    image: str | None = None,
    publish: Sequence[str] = (),
    *,
    reuse: bool = True,
    labels: Sequence[str] = (LABEL,),
    boot_timeout: float = 120,
) -> SystemdHost:
    """Start a systemd test host and wait for it to boot; with `reuse`, a running one is kept."""
    if reuse and running(name):
        return SystemdHost(name, wait_for_boot(name, boot_timeout), reused=True)
    remove(name)
    subprocess.run(docker_run_args(name, image, publish, labels), check=True, stdout=subprocess.DEVNULL)
    try:
        return SystemdHost(name, wait_for_boot(name, boot_timeout))
    except HostBootError:
        remove(name)
        raise


def remove(name: str) -> None:
    """Remove the container with its anonymous volumes (nested images live in /var/lib/docker)."""
    subprocess.run(["docker", "rm", "--force", "--volumes", name], capture_output=True, check=False)


@contextmanager
def fresh_host(
    name: str, image: str | None = None, publish: Sequence[str] = (), **options: Any
) -> Iterator[SystemdHost]:
    """A fresh test host for the `with` block, removed with its volumes afterwards."""
    host = start(name, image, publish, reuse=False, **options)
    try:
        yield host
    finally:
        remove(name)


def docker_exec(name: str, command: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`sh -c COMMAND` inside a container (a test host, or a container Molecule created)."""
    return subprocess.run(["docker", "exec", name, "sh", "-c", command], capture_output=True, text=True, check=check)


def docker_inventory(path: Path, hosts: Sequence[str]) -> Path:
    """Write an inventory reaching these containers through the Docker connection; returns it."""
    path.write_text(yaml.safe_dump({"all": {"hosts": {h: {"ansible_connection": DOCKER_CONNECTION} for h in hosts}}}))
    return path


def address(name: str) -> str:
    """The test host's address on Docker's default bridge (reachable from this machine)."""
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", name],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    if not out:
        raise HostBootError(f"test host {name} has no address")
    return out[0]


def ssh_inventory(path: Path, hosts: Sequence[str], key: Path, group: str = "all") -> Path:
    """Write an inventory reaching these hosts over SSH as root with KEY (an ed25519 pair made
    here if missing), the way a site's controller reaches its hosts: the public key is
    authorized on each host and sshd started. Returns the inventory's path."""
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mlops-testhost", "-f", str(key)], check=True
        )
    public = key.with_name(key.name + ".pub").read_text().strip()
    entries: dict[str, dict[str, Any]] = {}
    for name in hosts:
        docker_exec(
            name,
            f"install -d -m 0700 /root/.ssh && echo '{public}' > /root/.ssh/authorized_keys"
            " && chmod 0600 /root/.ssh/authorized_keys && systemctl start ssh",
        )
        entries[name] = {
            "ansible_host": address(name),
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(key),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
            "ansible_python_interpreter": "/usr/bin/python3",
        }
    inventory = {"all": {"children": {group: {"hosts": entries}}}} if group != "all" else {"all": {"hosts": entries}}
    path.write_text(yaml.safe_dump(inventory))
    return path
