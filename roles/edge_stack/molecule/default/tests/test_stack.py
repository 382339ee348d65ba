"""The converged host runs the stack as the catalogue describes it, hardened and healthy."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import CATALOGUE, COMPOSE_FILE, ENABLED, inspect

SERVICES = sorted(ENABLED)


@pytest.mark.parametrize("service", SERVICES)
def test_container_is_healthy_and_hardened(host: Any, service: str) -> None:
    svc = ENABLED[service]
    doc = inspect(host, svc["container_name"])
    hc, cfg = doc["HostConfig"], doc["Config"]
    assert doc["State"]["Status"] == "running"
    assert doc["State"]["Health"]["Status"] == "healthy"
    assert cfg["User"] == svc["user"]
    assert hc["ReadonlyRootfs"] is True
    assert hc["CapDrop"] == ["ALL"] and not hc["CapAdd"]
    assert "no-new-privileges:true" in hc["SecurityOpt"]
    assert hc["Privileged"] is False
    assert hc["RestartPolicy"]["Name"] == "unless-stopped"
    assert hc["Memory"] == svc["resources"]["memory_limit_mib"] * 1024 * 1024
    assert hc["NanoCpus"] == svc["resources"]["cpu_limit_millicores"] * 1_000_000
    assert "mlops-network" in doc["NetworkSettings"]["Networks"]
    assert sorted(hc["Tmpfs"]) == sorted(svc["tmpfs"])


@pytest.mark.parametrize("service", SERVICES)
def test_main_process_runs_unprivileged(host: Any, service: str) -> None:
    """Seen from the kernel: the container's PID 1 has the catalogue's uid and no capability."""
    status = host.check_output(f"docker exec {ENABLED[service]['container_name']} cat /proc/1/status")
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    uid, gid = ENABLED[service]["user"].split(":")
    assert fields["Uid"].split() == [uid] * 4
    assert fields["Gid"].split() == [gid] * 4
    assert int(fields["CapEff"], 16) == 0
    assert int(fields["CapPrm"], 16) == 0
    assert fields["NoNewPrivs"].strip() == "1"


@pytest.mark.parametrize("service", SERVICES)
def test_root_filesystem_refuses_writes(host: Any, service: str) -> None:
    run = host.run(f"docker exec {ENABLED[service]['container_name']} touch /usr/edge-stack-probe")
    assert run.rc != 0
    assert "Read-only file system" in run.stderr


def test_frontend_reaches_the_ready_api(host: Any) -> None:
    assert host.check_output("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8080/api/ready") == "200"


def test_prediction_through_the_frontend(host: Any, record: dict[str, float]) -> None:
    body = json.dumps(record)
    out = host.check_output(
        f"curl -sS --fail-with-body -H 'content-type: application/json' --data '{body}' http://127.0.0.1:8080/api/predict"
    )
    answer = json.loads(out)
    assert answer["prediction"] in ("malignant", "benign")
    assert answer["model"]["version"] == CATALOGUE["mlops_model_version"]


def test_prometheus_scrapes_the_api(host: Any) -> None:
    deadline = time.monotonic() + 120
    health: list[str] = []
    while time.monotonic() < deadline:
        targets = json.loads(host.check_output("curl -sS http://127.0.0.1:9090/api/v1/targets"))
        health = [t["health"] for t in targets["data"]["activeTargets"] if t["labels"].get("job") == "inference-api"]
        if health and all(h == "up" for h in health):
            return
        time.sleep(3)
    pytest.fail(f"inference-api targets never all up: {health}")


def test_only_the_frontend_listens_beyond_loopback(host: Any) -> None:
    listeners: dict[int, set[str]] = {}
    for line in host.check_output("ss -ltnH").splitlines():
        address, _, port = line.split()[3].rpartition(":")
        listeners.setdefault(int(port), set()).add(address)
    for service, svc in ENABLED.items():
        bound = listeners.get(svc["port"], set())
        if svc["publish"] == "loopback":
            assert bound == {"127.0.0.1"}, f"{service}: {bound}"
        else:
            assert bound & {"0.0.0.0", "[::]", "*"}, f"{service}: {bound}"
    assert {"0.0.0.0", "[::]", "*"} & listeners.get(8080, set())


def test_compose_file_is_valid_and_not_world_readable(host: Any) -> None:
    assert host.run(f"docker compose --file {COMPOSE_FILE} config --quiet").rc == 0
    f = host.file(COMPOSE_FILE)
    assert (f.user, f.group, f.mode) == ("root", "root", 0o640)


def test_prometheus_data_lives_in_the_named_volume(host: Any) -> None:
    doc = inspect(host, ENABLED["prometheus"]["container_name"])
    mounts = {m["Destination"]: m for m in doc["Mounts"]}
    assert mounts["/prometheus"]["Type"] == "volume" and mounts["/prometheus"]["Name"] == "prometheus-data"
    assert mounts["/etc/prometheus"]["Type"] == "bind" and mounts["/etc/prometheus"]["RW"] is False
    assert host.file("/var/lib/docker/volumes/prometheus-data/_data/wal").is_directory


@pytest.mark.parametrize("service", SERVICES)
def test_host_runs_exactly_the_bundled_image(host: Any, service: str) -> None:
    """Archive on the host == archive on the controller (sha256), loaded image == built image."""
    local = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "bundles" / f"{service}.tar"
    digest = hashlib.sha256()
    with local.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    remote = host.file(f"/var/lib/mlops/bundles/{service}.tar")
    assert remote.sha256sum == digest.hexdigest()
    ref = CATALOGUE["mlops_images"][service]
    built = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", ref], capture_output=True, text=True, check=True
    ).stdout.strip()
    running = inspect(host, ENABLED[service]["container_name"])["Image"]
    assert running == built
