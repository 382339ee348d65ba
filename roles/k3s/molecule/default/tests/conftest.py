"""Shared helpers of the k3s scenario's tests.

The controller-side tests run the scenario's own converge.yml again with extra variables
(a tampered release, bad inputs) and compare the test hosts before and after. They use
the inventory and Ansible configuration Molecule exports to the verifier.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ansible_run
import pytest
import yaml

RECAP = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
EPHEMERAL = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent"))
RELEASE = EPHEMERAL / "release"
VERSION = "v1.33.5+k3s1"
ARTIFACTS = EPHEMERAL / "artifacts" / VERSION

# What a run of the role writes on a host: compared before and after a run that must fail.
STATE_COMMAND = (
    "for f in /usr/local/bin/k3s /etc/rancher/k3s/* /etc/systemd/system/k3s*.service "
    "/var/lib/rancher/k3s/agent/images/*; do "
    '[ -e "$f" ] && echo "$(sha256sum "$f") $(stat -c %Y "$f")"; done; true'
)


def _inventory() -> dict[str, list[str]]:
    data = yaml.safe_load(Path(os.environ["MOLECULE_INVENTORY_FILE"]).read_text())
    return {name: list((group or {}).get("hosts") or {}) for name, group in data.items() if name != "all"}


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str

    def changed(self) -> dict[str, int]:
        return {host: int(changed) for host, changed, _u, _f in RECAP.findall(self.output)}


@pytest.fixture(scope="session")
def groups() -> dict[str, list[str]]:
    return _inventory()


def cluster_inventory() -> list[str]:
    """Servers (first server first), then agents: the order of the converge play."""
    groups = _inventory()
    return groups["k3s_servers"] + groups["k3s_agents"]


@pytest.fixture(scope="session")
def cluster_hosts() -> list[str]:
    return cluster_inventory()


def docker_exec(name: str, command: str) -> str:
    """Run a shell command in a test host container (the inventory names the containers)."""
    done = subprocess.run(["docker", "exec", name, "sh", "-c", command], capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture
def host_state(cluster_hosts: list[str]) -> Callable[[], dict[str, str]]:
    def snapshot() -> dict[str, str]:
        return {name: docker_exec(name, STATE_COMMAND) for name in cluster_hosts}

    return snapshot


@pytest.fixture(scope="session")
def converge() -> Callable[..., Run]:
    """Run the scenario's converge.yml with extra variables and return its output."""

    def run(extra_vars: dict[str, object] | None = None, *args: str) -> Run:
        extra = ["-e", json.dumps(extra_vars)] if extra_vars else []
        done = ansible_run.run_playbook("converge.yml", *extra, *args)
        return Run(done.returncode, done.output)

    return run


@pytest.fixture
def release_copy(tmp_path: Path) -> Path:
    """A copy of the fixture release, for a test to tamper with."""
    copy = tmp_path / "release"
    shutil.copytree(RELEASE, copy)
    return copy


def release_sha256(name: str, suffix: str = "amd64") -> str:
    for line in (RELEASE / f"sha256sum-{suffix}.txt").read_text().splitlines():
        digest, _, file_name = line.partition("  ")
        if file_name == name:
            return digest
    raise AssertionError(f"{name} is not in the fixture's checksum file")
