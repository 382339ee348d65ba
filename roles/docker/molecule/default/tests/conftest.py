"""Shared fixtures of the docker role's scenario."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

ANSI = re.compile(r"\x1b\[[0-9;]*m")
RECAP = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
IMAGE = "mlops-test/busybox:latest"


def run_playbook(playbook: str, *extra: str) -> tuple[int, str, dict[str, int]]:
    """Run a playbook of this scenario against its test host; return rc, output, changed per host."""
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    env = dict(
        os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default"
    )
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    run = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(scenario / playbook), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    output = ANSI.sub("", run.stdout + run.stderr)
    changed = {host: int(c) for host, c, _u, _f in RECAP.findall(output)}
    return run.returncode, output, changed


def flat(output: str) -> str:
    """Output with every run of whitespace as one space: the YAML callback wraps long messages."""
    return " ".join(output.split())


def docker_info(host: Any) -> dict[str, Any]:
    """The running daemon's `docker info`, as a dict."""
    return json.loads(host.check_output("docker info --format '{{json .}}'"))


@pytest.fixture(scope="module")
def busybox_image(host: Any) -> str:
    """A one-binary image built inside the test host with `docker import` (no registry here)."""
    if host.run(f"docker image inspect {IMAGE}").rc != 0:
        host.check_output(
            "set -e; d=$(mktemp -d); mkdir -p $d/bin; cp /bin/busybox $d/bin/;"
            " for a in sh sleep cat grep echo; do ln -s busybox $d/bin/$a; done;"
            f" tar -C $d -c . | docker import --change 'CMD [\"/bin/sh\"]' - {IMAGE} >/dev/null; rm -rf $d"
        )
    return IMAGE
