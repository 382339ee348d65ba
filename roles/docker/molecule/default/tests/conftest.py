"""Shared fixtures of the docker role's scenario."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mlops_testkit.ansible import scenario_playbook

IMAGE = "mlops-test/busybox:latest"


def run_playbook(playbook: str, *extra: str) -> tuple[int, str, dict[str, int]]:
    """Run a playbook of this scenario against its test host; return rc, output, changed per host."""
    run = scenario_playbook(playbook, *extra)
    return run.returncode, run.output, run.changed()


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
