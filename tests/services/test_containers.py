"""The real images, run hardened as the catalogue runs them, on 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import train
from conftest import API_RUN, ASSET_TYPES, FRONTEND_RUN, MODELS_DIR, Docker, docker, docs_assets, http, wait_for

pytestmark = pytest.mark.usefixtures("images")
JSON = {"content-type": "application/json"}


def start_api(dock: Docker, *options: str) -> Any:
    c = dock.run("mlops/inference-api:1.0.0", *API_RUN, *options, ports=(8000,))
    wait_for(c.url(8000, "/health"))
    return c


def start_stack(dock: Docker) -> tuple[Any, Any]:
    net = dock.network()
    api = dock.run("mlops/inference-api:1.0.0", *API_RUN, "--network", net, "--network-alias", "inference-api")
    fe = dock.run("mlops/frontend:1.0.0", *FRONTEND_RUN, "-e", "EXPOSE_API_DOCS=1", "--network", net, ports=(8080,))
    wait_for(fe.url(8080, "/api/ready"), timeout=90)
    return api, fe


# ---------------------------------------------------------------- inference API image


def test_api_image_metadata(images: dict[str, str]) -> None:
    cfg = json.loads(docker("image", "inspect", "-f", "{{json .Config}}", images["api"]).stdout)
    assert cfg["User"] == "10001:10001"
    assert "8000/tcp" in cfg["ExposedPorts"]
    assert cfg["Healthcheck"]["Test"][:2] == ["CMD", "python3"] and "/health" in cfg["Healthcheck"]["Test"][-1]
    assert cfg["Healthcheck"]["Interval"] == 30 * 10**9
    assert cfg["Labels"]["org.opencontainers.image.version"] == "1.0.0"
    assert {"MODEL_DIR=/opt/mlops/models", "MODEL_VERSION=1.0.0", "PORT=8000"} <= set(cfg["Env"])


def test_api_serves_hardened(dock: Docker, record: dict[str, float]) -> None:
    api = start_api(dock)
    wait_for(api.url(8000, "/ready"))
    status, _, body = http(api.url(8000, "/predict"), json.dumps(record).encode(), JSON)
    assert status == 200 and json.loads(body)["prediction"] in ("benign", "malignant")
    # Bad input through the image's own library versions (Debian's pydantic and FastAPI).
    status, _, body = http(api.url(8000, "/predict"), b'{"mean_radius": "big"}', JSON)
    assert status == 422 and b"mean_radius" in body
    nan = json.dumps({**record, "mean_area": 1.0}).replace('"mean_area": 1.0', '"mean_area": NaN').encode()
    status, _, body = http(api.url(8000, "/predict"), nan, JSON)
    assert status == 422 and json.loads(body)["detail"][0]["field"] == "mean_area"
    status, _, body = http(
        api.url(8000, "/predict"), json.dumps({"records": [record, {**record, "mean_area": 1e9}]}).encode(), JSON
    )
    assert status == 422 and json.loads(body)["detail"][0]["field"] == "records[1].mean_area"
    assert http(api.url(8000, "/predict"), b'{"records": []}', JSON)[0] == 422
    assert http(api.url(8000, "/predict"), b'{"mean_radius": 1.0,', JSON)[0] == 400
    assert http(api.url(8000, "/predict"), b"[1, 2]", JSON)[0] == 422
    assert http(api.url(8000, "/predict"), json.dumps(record).encode(), {"content-type": "text/plain"})[0] == 415
    status, _, body = http(api.url(8000, "/metrics"))
    assert status == 200 and b'mlops_model_info{name="breast-cancer-lr"' in body
    assert http(api.url(8000, "/docs"))[0] == 200
    # Who and how it runs: appuser, no capabilities, read-only root, writable /tmp only.
    assert docker("exec", api.name, "id", "-un").stdout.strip() == "appuser"
    status_file = docker("exec", api.name, "cat", "/proc/1/status").stdout
    caps = {line.split(":")[0]: line.split()[1] for line in status_file.splitlines() if line.startswith("Cap")}
    assert caps["CapEff"] == caps["CapPrm"] == "0000000000000000"
    assert "NoNewPrivs:\t1" in status_file
    assert docker("exec", api.name, "touch", "/opt/mlops/models/x", check=False).returncode != 0
    assert docker("exec", api.name, "touch", "/tmp/x", check=False).returncode == 0


def check_docs(base: str, prefix: str) -> dict[str, str]:
    """/docs under `base`: local assets only, each served with its type; the page's headers."""
    status, headers, body = http(base + prefix + "/docs")
    assert status == 200 and headers["content-type"].startswith("text/html")
    urls = docs_assets(body.decode(), prefix)
    assert len(urls) == 4
    for url in urls:
        status, asset_headers, asset = http(base + url)
        assert status == 200, url
        assert asset_headers["content-type"].split(";")[0] == ASSET_TYPES[url[url.rindex(".") :]], url
        assert len(asset) > 100, url
    status, _, spec = http(base + prefix + "/openapi.json")
    assert status == 200 and "/predict" in json.loads(spec)["paths"]
    return headers


def test_api_serves_swagger_ui_from_the_image(dock: Docker) -> None:
    api = start_api(dock)
    for prefix in ("", "/api"):
        check_docs(api.url(8000), prefix)
    listing = docker("exec", api.name, "ls", "/opt/mlops/vendor/swagger-ui").stdout.split()
    assert sorted(listing) == sorted(
        ["LICENSE", "NOTICE", "favicon-32x32.png", "swagger-ui-bundle.js", "swagger-ui.css"]
    )


def test_frontend_proxies_api_docs_under_its_csp(dock: Docker) -> None:
    _, fe = start_stack(dock)
    headers = check_docs(fe.url(8080), "/api")
    # The page and its assets pass the frontend's CSP: no inline script (checked above), same origin.
    assert "script-src 'self'" in headers["content-security-policy"]


def test_api_logs_one_json_line_per_request(dock: Docker) -> None:
    api = start_api(dock)
    for _ in range(3):
        http(api.url(8000, "/health"), headers={"X-Request-ID": "probe-1"})

    def logged() -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in api.logs().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("event") == "request" and line.get("request_id") == "probe-1"]

    # The log lines may trail the answers: wait until the third shows up (bounded), no fixed sleep.
    deadline = time.monotonic() + 30
    while len(logged()) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    requests = logged()
    assert len(requests) == 3 and all(r["path"] == "/health" and r["status"] == 200 for r in requests)
    assert all(line.get("level") and line.get("ts") for line in requests)


def test_api_healthcheck_turns_healthy(dock: Docker) -> None:
    # The image's own HEALTHCHECK command, run every second instead of every 30 s.
    api = start_api(dock, "--health-interval", "1s", "--health-start-period", "0s")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and api.inspect("{{.State.Health.Status}}") != "healthy":
        time.sleep(0.5)
    assert api.inspect("{{.State.Health.Status}}") == "healthy"


def test_api_stops_gracefully_on_sigterm(dock: Docker) -> None:
    api = start_api(dock)
    docker("stop", "--time", "20", api.name, timeout=60)
    # 0, not 137: the process ended by itself on SIGTERM, before docker's SIGKILL would have.
    assert api.inspect("{{.State.ExitCode}}") == "0"
    assert api.inspect("{{.State.OOMKilled}}") == "false"
    events = [json.loads(line).get("event") for line in api.logs().splitlines() if line.startswith("{")]
    assert "stopped" in events and events[-1] == "exited"


def test_api_refuses_ready_with_corrupt_model(dock: Docker, tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(MODELS_DIR, models)
    artifact = models / "breast-cancer-lr-1.0.0" / "model.json"
    artifact.write_bytes(artifact.read_bytes().replace(b'"intercept": ', b'"intercept": -'))
    for p in [models, *models.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    api = start_api(dock, "-v", f"{models}:/srv/models:ro", "-e", "MODEL_DIR=/srv/models")
    status, _, body = http(api.url(8000, "/ready"))
    assert status == 503 and json.loads(body)["check"] == "checksum"
    assert http(api.url(8000, "/predict"), b"{}", JSON)[0] == 503
    assert any('"event":"model_refused"' in line for line in api.logs().splitlines())


def test_api_serves_a_delivered_version_selected_by_env(dock: Docker, tmp_path: Path, record: dict[str, float]) -> None:
    models = tmp_path / "models"
    release = train.write(models, "breast-cancer-lr", "1.1.0")
    for p in [models, *models.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    digest = hashlib.sha256((release / "manifest.json").read_bytes()).hexdigest()
    api = start_api(dock, "-v", f"{models}:/srv/models:ro", "-e", "MODEL_DIR=/srv/models", "-e", "MODEL_VERSION=1.1.0")
    wait_for(api.url(8000, "/ready"))
    assert json.loads(http(api.url(8000, "/ready"))[2])["model"] == {
        "name": "breast-cancer-lr",
        "version": "1.1.0",
        "sha256": digest,
    }
    body = json.loads(http(api.url(8000, "/predict"), json.dumps(record).encode(), JSON)[2])
    assert body["model"]["version"] == "1.1.0"


def test_api_refuses_a_bad_setting_at_start(dock: Docker) -> None:
    c = dock.run("mlops/inference-api:1.0.0", *API_RUN, "-e", "MODEL_VERSION=../../etc")
    docker("wait", c.name, timeout=60)
    assert c.inspect("{{.State.ExitCode}}") == "2"
    assert "MODEL_VERSION" in c.logs()


# ---------------------------------------------------------------- frontend image


def test_frontend_image_metadata(images: dict[str, str]) -> None:
    cfg = json.loads(docker("image", "inspect", "-f", "{{json .Config}}", images["frontend"]).stdout)
    assert cfg["User"] == "101:101"
    assert "8080/tcp" in cfg["ExposedPorts"]
    assert cfg["Healthcheck"]["Test"][0] == "CMD"
    assert cfg["Labels"]["org.opencontainers.image.title"] == "mlops frontend"


def test_frontend_config_passes_nginx_t(dock: Docker) -> None:
    run = docker("run", "--rm", *FRONTEND_RUN, "mlops/frontend:1.0.0", "check", check=False)
    assert run.returncode == 0, run.stderr
    assert "syntax is ok" in run.stderr and "test is successful" in run.stderr


def test_frontend_refuses_an_upstream_with_a_path(dock: Docker) -> None:
    run = docker(
        "run",
        "--rm",
        *FRONTEND_RUN,
        "-e",
        "API_UPSTREAM=http://api:8000/x",
        "mlops/frontend:1.0.0",
        "check",
        check=False,
    )
    assert run.returncode == 2 and "API_UPSTREAM" in run.stderr


def test_frontend_qualifies_a_short_name_with_a_kubernetes_search_domain(dock: Docker) -> None:
    run = docker(
        "run",
        "--rm",
        *FRONTEND_RUN,
        "--dns-search",
        "mlops-system.svc.cluster.local",
        "mlops/frontend:1.0.0",
        "check",
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "-> http://inference-api.mlops-system.svc.cluster.local:8000" in run.stderr


def test_frontend_starts_before_the_api_exists_and_proxies_once_it_does(dock: Docker, record: dict[str, float]) -> None:
    net = dock.network()
    fe = dock.run("mlops/frontend:1.0.0", *FRONTEND_RUN, "-e", "EXPOSE_API_DOCS=1", "--network", net, ports=(8080,))
    wait_for(fe.url(8080, "/health"))
    status, _, _ = http(fe.url(8080, "/api/health"))
    assert status in (502, 503, 504)  # nginx answers; the API is not there yet
    dock.run("mlops/inference-api:1.0.0", *API_RUN, "--network", net, "--network-alias", "inference-api")
    wait_for(fe.url(8080, "/api/ready"), timeout=90)
    status, _, body = http(fe.url(8080, "/api/predict"), json.dumps(record).encode(), JSON)
    assert status == 200 and json.loads(body)["model"]["version"] == "1.0.0"


def test_frontend_headers_gzip_and_ui(dock: Docker) -> None:
    _, fe = start_stack(dock)
    status, headers, body = http(fe.url(8080, "/health"))
    assert status == 200 and json.loads(body) == {"status": "ok"}
    assert headers["server"] == "nginx"  # server_tokens off: no version
    for name in ("content-security-policy", "x-content-type-options", "x-frame-options", "referrer-policy"):
        assert name in headers, name
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    status, headers, body = http(fe.url(8080, "/"))
    assert status == 200 and b'id="predict-form"' in body
    status, headers, body = http(fe.url(8080, "/app.js"), headers={"Accept-Encoding": "gzip"})
    assert headers.get("content-encoding") == "gzip" and b"/predict" in gzip.decompress(body)
    status, headers, body = http(fe.url(8080, "/api/model"), headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("content-encoding") == "gzip"
    assert len(json.loads(gzip.decompress(body))["features"]) == 30
    # Errors carry the headers too, and the API's 4xx come through unchanged.
    status, headers, _ = http(fe.url(8080, "/nope"))
    assert status == 404 and "x-frame-options" in headers
    status, _, body = http(fe.url(8080, "/api/predict"), b"not json", JSON)
    assert status == 400 and json.loads(body)["detail"][0]["field"] == "body"


def test_frontend_runs_as_nginx_without_privileges(dock: Docker) -> None:
    _, fe = start_stack(dock)
    ps = docker("exec", fe.name, "ps", "-eo", "user,comm", check=False)
    if ps.returncode != 0:  # no procps in the image: read /proc instead
        uids = docker("exec", fe.name, "sh", "-c", "grep -h '^Uid:' /proc/[0-9]*/status").stdout
        assert uids and all(line.split()[1] == "101" for line in uids.splitlines())
    assert docker("exec", fe.name, "id", "-un").stdout.strip() == "nginx"
    assert docker("exec", fe.name, "touch", "/usr/share/mlops-frontend/x", check=False).returncode != 0


def test_frontend_stops_gracefully(dock: Docker) -> None:
    fe = dock.run("mlops/frontend:1.0.0", *FRONTEND_RUN, ports=(8080,))
    wait_for(fe.url(8080, "/health"))
    docker("stop", "--time", "20", fe.name, timeout=60)
    # 0, not 137: nginx quit by itself on SIGQUIT, before docker's SIGKILL would have.
    assert fe.inspect("{{.State.ExitCode}}") == "0"


def test_api_with_two_workers_counts_every_request_once(dock: Docker, record: dict[str, float]) -> None:
    """WEB_CONCURRENCY=2: two uvicorn workers; /metrics (from either) adds up both."""
    api = dock.run("mlops/inference-api:1.0.0", *API_RUN, "-e", "WEB_CONCURRENCY=2", ports=(8000,))
    wait_for(api.url(8000, "/ready"), timeout=90)

    def started() -> int:
        return sum('"event":"started"' in line for line in api.logs().splitlines())

    # /ready answers once one worker is up; the other may still be loading its model (a busy
    # machine): wait for both, so that both can take requests.
    deadline = time.monotonic() + 120
    while started() < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert started() == 2, api.logs()
    for _ in range(30):
        assert http(api.url(8000, "/predict"), json.dumps(record).encode(), JSON)[0] == 200
    ok = 'inference_http_requests_total{method="POST",path="/predict",status="200"} 30.0'
    # A request is counted once its response has gone out (the middleware's `finally`), so the
    # last ones may be counted a moment after the client has its answer, more so on a busy
    # machine: wait until the sum is there, then every answer must show it.
    deadline = time.monotonic() + 60
    while ok not in http(api.url(8000, "/metrics"))[2].decode() and time.monotonic() < deadline:
        time.sleep(0.2)
    for _ in range(6):  # whichever worker answers, the sums are the same
        text = http(api.url(8000, "/metrics"))[2].decode()
        assert ok in text
        assert 'inference_predictions_total{model_version="1.0.0",predicted_class="benign"} 30.0' in text
        assert "inference_model_ready 1.0" in text and 'mlops_model_info{name="breast-cancer-lr"' in text


def test_frontend_listens_on_listen_port(dock: Docker) -> None:
    fe = dock.run("mlops/frontend:1.0.0", *FRONTEND_RUN, "-e", "LISTEN_PORT=9080", ports=(9080,))
    wait_for(fe.url(9080, "/health"))
    health = docker("inspect", "-f", "{{json .Config.Healthcheck.Test}}", fe.name).stdout
    assert "LISTEN_PORT" in health
    probe = json.loads(health)[1:]
    assert docker("exec", fe.name, *probe, check=False).returncode == 0
    run = docker("run", "--rm", *FRONTEND_RUN, "-e", "LISTEN_PORT=http", "mlops/frontend:1.0.0", "check", check=False)
    assert run.returncode == 2 and "LISTEN_PORT" in run.stderr
