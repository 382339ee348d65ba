"""The whole edge site, verified from outside the test host (the controller's loopback).

The host's ports 8080 and 8443 (frontend) and 9090 (Prometheus) are published on random
loopback ports of this machine; everything below talks to 127.0.0.1 only. The frontend is
asked over HTTPS, trusting the site CA the run created (and nothing else), with the API key
it generated.

That a recreated Prometheus keeps its stored series is the edge_stack scenario's (its
upgrade test recreates the container twice and reads a sample of the first process back).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

HOST = f"{os.environ.get('MLOPS_MOLECULE_PREFIX', 'mlops')}-edge-site"
testinfra_hosts = [f"ansible://{HOST}"]


PKI_DIR = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "pki"


def published(port: int, scheme: str = "http") -> str:
    out = subprocess.run(["docker", "port", HOST, str(port)], capture_output=True, text=True, check=True)
    address = out.stdout.splitlines()[0].strip()
    assert address.startswith("127.0.0.1:"), f"port {port} published beyond loopback: {address}"
    return f"{scheme}://{address}"


def eventually(check: Callable[[], Any], seconds: float = 90) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return check()
        except (AssertionError, requests.RequestException):
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


@pytest.fixture(scope="module")
def frontend() -> str:
    return published(8443, "https")


@pytest.fixture(scope="module")
def site() -> requests.Session:
    """A client of the site: it trusts the site CA alone and holds the site's API key."""
    session = requests.Session()
    # Not the environment's CA bundle: REQUESTS_CA_BUNDLE would win over session.verify.
    session.trust_env = False
    session.verify = str(PKI_DIR / "ca.crt")
    session.headers["X-API-Key"] = (PKI_DIR / "api-key-site").read_text().strip()
    return session


@pytest.fixture(scope="module")
def prometheus() -> str:
    return published(9090)


def test_frontend_serves_the_web_ui(frontend: str, site: requests.Session) -> None:
    r = site.get(f"{frontend}/", timeout=10)
    assert r.status_code == 200
    assert "text/html" in r.headers["content-type"]
    assert "<form" in r.text
    assert r.headers.get("X-Content-Type-Options") == "nosniff"
    assert "nginx/" not in r.headers.get("Server", "")


def test_api_is_ready_through_the_frontend(frontend: str, site: requests.Session) -> None:
    r = site.get(f"{frontend}/api/ready", timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["model"]["version"] == "1.0.0"


def test_prediction_through_the_frontend(frontend: str, site: requests.Session) -> None:
    model = site.get(f"{frontend}/api/model", timeout=10).json()
    features = model["features"]
    benign = {f["name"]: f["median"] for f in features}
    r = site.post(f"{frontend}/api/predict", json=benign, timeout=10)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["prediction"] in {"malignant", "benign"}
    assert 0.5 <= answer["probability"] <= 1.0
    # The largest observed values of every measurement describe a malignant tumour.
    worst = {f["name"]: f["observed_max"] for f in features}
    assert site.post(f"{frontend}/api/predict", json=worst, timeout=10).json()["prediction"] == "malignant"
    # Without the key, no prediction.
    assert requests.post(f"{frontend}/api/predict", json=worst, timeout=10, verify=site.verify).status_code == 401


def test_bad_input_is_a_client_error_naming_the_field(frontend: str, site: requests.Session) -> None:
    model = site.get(f"{frontend}/api/model", timeout=10).json()
    record = {f["name"]: f["median"] for f in model["features"]}
    del record["mean_radius"]
    r = site.post(f"{frontend}/api/predict", json=record, timeout=10)
    assert r.status_code == 422
    assert "mean_radius" in r.text


def test_prometheus_scrapes_the_inference_api(prometheus: str) -> None:
    def target_up() -> dict[str, Any]:
        targets = requests.get(f"{prometheus}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        api = [t for t in targets if t["labels"].get("job") == "inference-api"]
        assert api, f"no inference-api job among {[t['labels'].get('job') for t in targets]}"
        assert all(t["health"] == "up" for t in api), api
        return api[0]

    eventually(target_up)


def test_prometheus_runs_with_the_configured_retention(prometheus: str) -> None:
    flags = requests.get(f"{prometheus}/api/v1/status/flags", timeout=10).json()["data"]
    assert flags["storage.tsdb.retention.time"] == "12d"
    # Prometheus reads sizes in powers of two and prints them so: 1GB is 1GiB.
    assert flags["storage.tsdb.retention.size"] == "1GiB"


def test_prometheus_loaded_the_alert_rules(prometheus: str) -> None:
    groups = requests.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    names = {rule["name"] for g in groups for rule in g["rules"]}
    assert len(names) >= 4, names


def test_grafana_provisioning_files_are_in_place(host: Any) -> None:
    root = "/etc/mlops/grafana"
    datasources = host.run(f"cat {root}/provisioning/datasources/*.yml")
    assert datasources.rc == 0
    ds = yaml.safe_load(datasources.stdout)
    assert ds["apiVersion"] == 1
    assert any(d["type"] == "prometheus" and d["url"] == "http://prometheus:9090" for d in ds["datasources"])
    listing = host.run(f"ls {root}/dashboards/").stdout.split()
    assert any(name.endswith(".json") for name in listing), listing
    for name in listing:
        dashboard = json.loads(host.file(f"{root}/dashboards/{name}").content_string)
        assert dashboard["panels"], name
    # The admin password reaches the host only as a secret file the container's group may read.
    secret = host.file(f"{root}/secrets/admin-password")
    assert secret.user == "root"
    assert secret.mode & 0o227 == 0, f"admin password file mode {secret.mode:o}: writable, or readable by others"


RUNNING = ["mlops-alertmanager", "mlops-frontend", "mlops-inference-api", "mlops-node-exporter", "mlops-prometheus"]


def apt_installs(host: Any) -> list[set[str]]:
    """The packages each apt transaction of the host's /var/log/apt/history.log installed."""
    transactions: list[set[str]] = []
    for line in host.file("/var/log/apt/history.log").content_string.splitlines():
        if line.startswith("Install: "):
            # "Install: zstd:amd64 (1.5.6+dfsg-2), docker.io:amd64 (26.1.5+dfsg1-9+b9, automatic)"
            entries = line.removeprefix("Install: ").split("), ")
            transactions.append({entry.split(":", 1)[0].split(" ", 1)[0] for entry in entries})
    return transactions


def test_a_fresh_host_installs_every_package_in_one_apt_transaction(host: Any) -> None:
    """Hardening's packages, Docker's (from Debian) and the stack's share one transaction:
    each further one paid its own dpkg run and triggers (playbooks/edge.yml)."""
    with_docker = [t for t in apt_installs(host) if "docker.io" in t]
    assert len(with_docker) == 1, with_docker
    assert {"sysstat", "fail2ban", "docker-cli", "docker-compose", "python3-requests", "zstd"} <= with_docker[0]


def test_grafana_is_left_out_and_nothing_else(host: Any) -> None:
    names = host.check_output("docker ps --format '{{.Names}}'").split()
    assert sorted(names) == RUNNING


def test_containers_run_as_non_root_with_nothing_extra(host: Any) -> None:
    for name in RUNNING:
        info = json.loads(host.check_output(f"docker inspect {name}"))[0]
        assert info["Config"]["User"] not in ("", "0", "root", "0:0"), name
        assert info["HostConfig"]["ReadonlyRootfs"] is True, name
        assert info["HostConfig"]["CapDrop"] == ["ALL"], name
        assert "no-new-privileges:true" in info["HostConfig"]["SecurityOpt"], name
        assert info["State"]["Health"]["Status"] == "healthy", name
