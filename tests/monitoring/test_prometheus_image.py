"""mlops/prometheus:2.53 runs the role's files with the role's flags, read-only, as 65534; and
the role's handler brings a changed configuration into the running container.

A real Prometheus container (ports published on 127.0.0.1 only). Needs a Docker Engine, the
image (docker build -t mlops/prometheus:2.53 services/prometheus) and root (the role sets
owner root, group 65534 on the files, as on an edge host).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import HERE, run_playbook
from mlops_testkit.ansible import parse_recap, task_block

IMAGE = "mlops/prometheus:2.53"
pytestmark = pytest.mark.docker


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=check)


@pytest.fixture(scope="module")
def engine() -> None:
    if shutil.which("docker") is None or docker("version", check=False).returncode:
        pytest.skip("no Docker Engine answers here")
    if docker("image", "inspect", IMAGE, check=False).returncode:
        pytest.fail(f"image {IMAGE} missing: docker build -t {IMAGE} services/prometheus")
    if os.geteuid() != 0:
        pytest.skip("the role sets root ownership on the files: run as root")


def apply_role(config_dir: Path, container: str, extra: dict[str, Any] | None = None) -> str:
    run = run_playbook(
        HERE / "edge.yml",
        {
            "mlops_config_dir": str(config_dir),
            "prometheus_container_name": container,
            "monitoring_computed_file": str(config_dir / "computed.json"),
            **(extra or {}),
        },
        env={"PROMETHEUS_RETENTION": "30d"},
    )
    assert run.returncode == 0, run.tail()
    return run.output


def api(port: int, path: str) -> Any:
    response = requests.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    response.raise_for_status()
    return response.json()["data"]


def latency_rule(port: int) -> str:
    groups = api(port, "/api/v1/rules")["groups"]
    return next(r["query"] for g in groups for r in g["rules"] if r["name"] == "MlopsInferenceApiHighLatency")


@pytest.fixture(scope="module")
def prometheus(engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, int, str]]:
    config_dir = tmp_path_factory.mktemp("edge") / "mlops"
    container = f"mlops-monitoring-test-{uuid.uuid4().hex[:8]}"
    # First deploy: no container yet. The handler must find none and change nothing else.
    first = apply_role(config_dir, container)
    computed = json.loads((config_dir / "computed.json").read_text())
    # The role's configuration directories, mounted read-only as the catalogue renders them.
    mounts = [f"--volume={m['source']}:{m['target']}:ro" for m in computed["prometheus_service"]["config"]]
    docker(
        "run",
        "--detach",
        f"--name={container}",
        "--label=owner=tests-monitoring",
        "--read-only",
        "--tmpfs=/tmp",
        # Stands in for the prometheus-data named volume.
        "--tmpfs=/prometheus:uid=65534,gid=65534,mode=0755",
        "--publish=127.0.0.1::9090",
        *mounts,
        IMAGE,
        *computed["prometheus_command_args"],
    )
    try:
        port = int(docker("port", container, "9090/tcp").stdout.split(":")[-1])
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/-/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail("Prometheus never became ready:\n" + docker("logs", container, check=False).stderr[-3000:])
            time.sleep(1)
        yield config_dir, container, port, first
    finally:
        docker("rm", "--force", "--volumes", container, check=False)


def test_first_deploy_without_container_runs_the_handler_harmlessly(prometheus: tuple[Path, str, int, str]) -> None:
    first = prometheus[3]
    assert "ok: [localhost]" in task_block(
        first, "RUNNING HANDLER [prometheus : Find the running Prometheus container]"
    )
    block = task_block(first, "RUNNING HANDLER [prometheus : Send SIGHUP to the Prometheus container]")
    assert "skipping: [localhost]" in block
    assert "changed:" not in block


def test_container_runs_as_nobody_with_the_role_flags(prometheus: tuple[Path, str, int, str]) -> None:
    _config_dir, container, port, _ = prometheus
    assert docker("exec", container, "id", "-u").stdout.strip() == "65534"
    flags = api(port, "/api/v1/status/flags")
    assert flags["storage.tsdb.retention.time"] == "30d"
    assert flags["config.file"] == "/etc/prometheus/prometheus.yml"
    assert flags["storage.tsdb.path"] == "/prometheus"


def test_rules_and_targets_are_loaded(prometheus: tuple[Path, str, int, str]) -> None:
    port = prometheus[2]
    alerts = {r["name"] for g in api(port, "/api/v1/rules")["groups"] for r in g["rules"]}
    assert {"MlopsInferenceApiDown", "MlopsInferenceApiHighErrorRate", "MlopsModelNotReady"} <= alerts
    # Targets appear once the scrape manager has synced its first discovery (a few seconds; a
    # deadline, not a fixed wait, with room for a loaded machine).
    deadline = time.monotonic() + 90
    while not (jobs := {t["labels"]["job"] for t in api(port, "/api/v1/targets")["activeTargets"]}):
        assert time.monotonic() < deadline, "no scrape target appeared"
        time.sleep(1)
    assert jobs == {"inference-api", "prometheus", "grafana", "alertmanager", "node-exporter"}


def test_image_healthcheck_command_works(prometheus: tuple[Path, str, int, str]) -> None:
    container = prometheus[1]
    health = json.loads(docker("inspect", "--format", "{{json .Config.Healthcheck.Test}}", container).stdout)
    run = docker("exec", container, *health[1:], check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_changed_rules_reach_the_running_container(prometheus: tuple[Path, str, int, str]) -> None:
    config_dir, container, port, _ = prometheus
    assert "> 0.5" in latency_rule(port)
    output = apply_role(config_dir, container, {"prometheus_alert_latency_seconds": 0.75})
    assert "RUNNING HANDLER [prometheus : Send SIGHUP to the Prometheus container]" in output
    deadline = time.monotonic() + 90
    while "> 0.75" not in latency_rule(port):
        assert time.monotonic() < deadline, latency_rule(port)
        time.sleep(1)
    # Same input again: nothing changes, nothing is reloaded.
    again = apply_role(config_dir, container, {"prometheus_alert_latency_seconds": 0.75})
    assert [r.changed for r in parse_recap(again)] == [0], again[-3000:]
    assert "Send SIGHUP" not in again
