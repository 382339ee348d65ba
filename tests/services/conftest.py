"""Fixtures for the service tests: the API in process, and the real images in Docker.

Container tests run the images with the catalogue's hardening (read-only root, tmpfs,
`--cap-drop ALL`, `no-new-privileges`, numeric user) on 127.0.0.1 ports that Docker
picks. They build the images with scripts/build-images.sh once per session. Without a
Docker engine they skip, except under CI (env CI set), where that is a setup failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
API_DIR = ROOT / "services" / "inference-api"
FRONTEND_DIR = ROOT / "services" / "frontend"
MODELS_DIR = API_DIR / "models"
ARTIFACTS = ROOT / "artifacts"
API_IMAGE = "mlops/inference-api:1.0.0"
FRONTEND_IMAGE = "mlops/frontend:1.0.0"
PREFIX = "svc-test-"

sys.path.insert(0, str(API_DIR / "src"))
sys.path.insert(0, str(API_DIR / "training"))

from mlops_inference.app import create_app  # noqa: E402
from mlops_inference.settings import Settings  # noqa: E402

# The catalogue's hardening (roles/mlops/defaults/main.yml) for each image.
API_RUN = [
    "--read-only",
    "--tmpfs",
    "/tmp",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--user",
    "10001:10001",
]
FRONTEND_RUN = [
    "--read-only",
    *("--tmpfs", "/tmp", "--tmpfs", "/var/cache/nginx", "--tmpfs", "/run"),
    *("--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--user", "101:101"),
]


@pytest.fixture(scope="session")
def model_doc() -> dict[str, Any]:
    return json.loads((MODELS_DIR / "breast-cancer-lr-1.0.0" / "model.json").read_text())


@pytest.fixture(scope="session")
def record(model_doc: dict[str, Any]) -> dict[str, float]:
    """A plausible patient: every feature at its training median."""
    return {f["name"]: f["median"] for f in model_doc["features"]}


@pytest.fixture(scope="session")
def swagger_assets() -> Path:
    """Swagger UI's vendored files (scripts/build-images.sh --vendor-only fetches them with npm)."""
    target = API_DIR / "vendor" / "swagger-ui"
    if not (target / "swagger-ui-bundle.js").is_file():
        if shutil.which("npm") is None:
            if os.environ.get("CI"):
                pytest.fail("npm is missing under CI: Swagger UI's files cannot be fetched")
            pytest.skip("npm is not installed: Swagger UI's files cannot be fetched")
        run = subprocess.run(
            [str(ROOT / "scripts" / "build-images.sh"), "--vendor-only"],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if run.returncode != 0:
            pytest.fail(f"scripts/build-images.sh --vendor-only failed:\n{run.stdout}\n{run.stderr}")
    return target


ASSET_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}


def docs_assets(page: str, prefix: str) -> list[str]:
    """The URLs /docs loads (scripts, stylesheets, icon), checked to be local below `prefix`,
    with no inline script or style (the frontend's CSP allows neither)."""
    import re

    urls = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert urls, page
    for url in urls:
        assert url.startswith(prefix + "/") and not url.startswith("//"), url
    assert "http:" not in page and "https:" not in page and "cdn" not in page.lower()
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page) == [], "inline script"
    assert "<style" not in page and "style=" not in page
    assert f'data-openapi-url="{prefix}/openapi.json"' in page
    return urls


@pytest.fixture
def settings() -> Settings:
    return Settings(model_dir=MODELS_DIR, max_batch_rows=50, max_body_bytes=256 * 1024)


@pytest.fixture
def client(settings: Settings) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(create_app(settings)) as c:
        yield c


# ---------------------------------------------------------------- Docker helpers


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=check)


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return docker("version", "--format", "{{.Server.Version}}", check=False, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    """Both service images, built (or confirmed up to date) by scripts/build-images.sh."""
    if not engine_answers():
        if os.environ.get("CI"):
            pytest.fail("no Docker engine answers under CI: run scripts/engine.sh docker first")
        pytest.skip("no Docker engine answers on this machine")
    run = subprocess.run(
        [str(ROOT / "scripts" / "build-images.sh"), "inference-api", "frontend"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if run.returncode != 0:
        pytest.fail(f"scripts/build-images.sh failed:\n{run.stdout}\n{run.stderr}")
    return {"api": API_IMAGE, "frontend": FRONTEND_IMAGE}


@dataclass
class Container:
    name: str
    ports: dict[int, int] = field(default_factory=dict)

    def url(self, port: int, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[port]}{path}"

    def logs(self) -> str:
        run = docker("logs", self.name, check=False)
        return run.stdout + run.stderr

    def inspect(self, fmt: str) -> str:
        return docker("inspect", "-f", fmt, self.name).stdout.strip()


def http(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request; HTTP errors are results, not exceptions."""
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def wait_for(url: str, status: int = 200, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            code, _, _ = http(url, timeout=3)
            if code == status:
                return
            last = code
        except OSError as exc:
            last = exc
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer {status} within {timeout}s (last: {last})")


class Docker:
    """Starts containers and networks named svc-test-*, and removes all of them at the end."""

    def __init__(self) -> None:
        self.containers: list[str] = []
        self.networks: list[str] = []

    def network(self) -> str:
        name = f"{PREFIX}net-{uuid.uuid4().hex[:8]}"
        docker("network", "create", name)
        self.networks.append(name)
        return name

    def run(self, image: str, *options: str, ports: tuple[int, ...] = (), command: tuple[str, ...] = ()) -> Container:
        name = f"{PREFIX}{uuid.uuid4().hex[:10]}"
        publish: list[str] = []
        for p in ports:
            publish += ["-p", f"127.0.0.1::{p}"]
        self.containers.append(name)
        docker("run", "-d", "--name", name, *publish, *options, image, *command)
        c = Container(name)
        for p in ports:
            host = docker("port", name, str(p)).stdout.splitlines()[0]
            c.ports[p] = int(host.rsplit(":", 1)[1])
        return c

    def cleanup(self) -> None:
        for name in self.containers:
            docker("rm", "-f", "-v", name, check=False)
        for name in self.networks:
            docker("network", "rm", name, check=False)


@pytest.fixture
def dock(images: dict[str, str]) -> Iterator[Docker]:
    d = Docker()
    try:
        yield d
    finally:
        d.cleanup()
