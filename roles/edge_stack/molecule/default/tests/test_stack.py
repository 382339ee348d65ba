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
from conftest import CATALOGUE, COMPOSE_FILE, ENABLED, api_key, curl, inspect

PROMETHEUS = f"http://127.0.0.1:{ENABLED['prometheus']['port']}"

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
    assert curl(host, "/api/ready")[0] == 200


def test_prediction_through_the_frontend(host: Any, record: dict[str, float]) -> None:
    body = json.dumps(record)
    status, out = curl(host, "/api/predict", "-H 'content-type: application/json'", f"--data '{body}'", key=api_key())
    assert status == 200, out
    answer = json.loads(out)
    assert answer["prediction"] in ("malignant", "benign")
    assert answer["model"]["version"] == CATALOGUE["mlops_model_version"]


def test_prometheus_scrapes_the_api(host: Any) -> None:
    deadline = time.monotonic() + 120
    health: list[str] = []
    while time.monotonic() < deadline:
        targets = json.loads(host.check_output(f"curl -sS {PROMETHEUS}/api/v1/targets"))
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
    assert {"0.0.0.0", "[::]", "*"} & listeners.get(ENABLED["frontend"]["port"], set())
    assert {"0.0.0.0", "[::]", "*"} & listeners.get(ENABLED["frontend"]["tls_port"], set())
    # Nothing listens on the catalogue's default ports: the overridden ones reached the processes.
    assert not {8000, 8080, 8443, 9090} & set(listeners)


@pytest.mark.parametrize(
    ("service", "env", "field"),
    [("inference-api", "PORT", "port"), ("frontend", "LISTEN_PORT", "port"), ("frontend", "TLS_PORT", "tls_port")],
)
def test_catalogue_port_reaches_the_process(host: Any, service: str, env: str, field: str) -> None:
    doc = inspect(host, ENABLED[service]["container_name"])
    assert f"{env}={ENABLED[service][field]}" in doc["Config"]["Env"]


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
    """The running image is the controller's build, and the bundle left no archive behind."""
    ref = CATALOGUE["mlops_images"][service]
    built = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", ref], capture_output=True, text=True, check=True
    ).stdout.strip()
    running = inspect(host, ENABLED[service]["container_name"])["Image"]
    assert running == built
    assert host.run("ls /var/lib/mlops/bundles").stdout.strip() == ""


def test_one_compressed_bundle_carries_every_image() -> None:
    """The controller's cache holds the bundle: zstd, with its sha256 beside it."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlops-infra" / "bundles"
    bundles = sorted(cache.glob("mlops-images-*.tar.zst"))
    assert bundles, f"no bundle in {cache}"
    newest = max(bundles, key=lambda p: p.stat().st_mtime)
    assert newest.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # zstd frame magic
    recorded = (newest.parent / (newest.name + ".sha256")).read_text().strip()
    digest = hashlib.sha256()
    with newest.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    assert recorded == digest.hexdigest()
