"""Shared helpers of the k3s scenario's tests.

The controller-side tests run the scenario's own converge.yml again with extra variables
(a tampered release, bad inputs) and compare the test hosts before and after. They use
the inventory and Ansible configuration Molecule exports to the verifier.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from mlops_testkit import testhosts
from mlops_testkit.ansible import PlaybookRun, scenario_groups, scenario_playbook

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


@pytest.fixture(scope="session")
def groups() -> dict[str, list[str]]:
    return scenario_groups()


def cluster_inventory() -> list[str]:
    """Servers (first server first), then agents: the order of the converge play."""
    groups = scenario_groups()
    return groups["k3s_servers"] + groups["k3s_agents"]


@pytest.fixture(scope="session")
def cluster_hosts() -> list[str]:
    return cluster_inventory()


def docker_exec(name: str, command: str) -> str:
    """Run a shell command in a test host container (the inventory names the containers)."""
    return testhosts.docker_exec(name, command).stdout


@pytest.fixture
def host_state(cluster_hosts: list[str]) -> Callable[[], dict[str, str]]:
    def snapshot() -> dict[str, str]:
        return {name: docker_exec(name, STATE_COMMAND) for name in cluster_hosts}

    return snapshot


@pytest.fixture(scope="session")
def converge() -> Callable[..., PlaybookRun]:
    """Run the scenario's converge.yml with extra variables and return its output."""

    def run(extra_vars: dict[str, object] | None = None, *args: str) -> PlaybookRun:
        return scenario_playbook("converge.yml", *args, extra_vars=extra_vars)

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
