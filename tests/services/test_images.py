"""What the service images carry: their manifests, nothing more, and their sizes.

Each image is built by scripts/build-images.sh as a runtime root copied from Debian
packages (and, for the API, hash-pinned wheels) into an empty image. Its
services/<service>/image-manifest.txt lists every Debian package (from the image's own
dpkg status file) and every Python distribution (importlib.metadata, in the image) with
its version; these tests compare the two, so a package that creeps in, or a version that
moves, shows up in review. After a deliberate change, rewrite the manifests with

    UPDATE_MANIFESTS=1 python -m pytest tests/services/test_images.py
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, docker, engine_answers

IMAGES = {
    "inference-api": "mlops/inference-api:1.0.0",
    "frontend": "mlops/frontend:1.0.0",
    "prometheus": "mlops/prometheus:2.53",
    "alertmanager": "mlops/alertmanager:0.28",
    "node-exporter": "mlops/node-exporter:1.9",
}
# The edge bundle's budget for the images together (docker image inspect .Size): 450 MB for
# the API, the frontend and Prometheus, and 100 MB more since Alertmanager (75 MB: its binary
# and amtool) and node-exporter (42 MB) joined the stack.
TOTAL_BUDGET = 550 * 1000 * 1000
# Nothing of these belongs in a runtime image.
FORBIDDEN_PREFIXES = ("usr/share/doc/", "usr/share/man/", "usr/share/info/", "usr/share/locale/", "var/lib/apt/")
FORBIDDEN_FILES = {
    f"usr/bin/{name}" for name in "apt apt-get dpkg perl gcc cc make pip pip3 ld as g++ curl wget".split()
}


@pytest.fixture(scope="module")
def built() -> dict[str, str]:
    if not engine_answers():
        if os.environ.get("CI"):
            pytest.fail("no Docker engine answers under CI: run scripts/engine.sh docker first")
        pytest.skip("no Docker engine answers on this machine")
    run = subprocess.run(
        [str(ROOT / "scripts" / "build-images.sh"), *IMAGES],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if run.returncode != 0:
        pytest.fail(f"scripts/build-images.sh failed:\n{run.stdout}\n{run.stderr}")
    return IMAGES


@pytest.fixture(scope="module")
def exported(built: dict[str, str]) -> Iterator[dict[str, tarfile.TarFile]]:
    """Each image's file system (docker export of a created, never started, container)."""
    out: dict[str, tarfile.TarFile] = {}
    names: list[str] = []
    try:
        for service, image in built.items():
            name = f"svc-test-export-{service}"
            docker("rm", "-f", name, check=False)
            docker("create", "--name", name, image)
            names.append(name)
            data = subprocess.run(["docker", "export", name], capture_output=True, timeout=300, check=True).stdout
            out[service] = tarfile.open(fileobj=io.BytesIO(data))
        yield out
    finally:
        for name in names:
            docker("rm", "-f", name, check=False)


def dpkg_packages(fs: tarfile.TarFile) -> list[str]:
    member = fs.extractfile("var/lib/dpkg/status")
    assert member is not None
    packages, name = [], None
    for line in member.read().decode().splitlines():
        if line.startswith("Package: "):
            name = line.split(": ", 1)[1]
        elif line.startswith("Version: ") and name:
            packages.append(f"deb {name} {line.split(': ', 1)[1]}")
            name = None
    return sorted(packages)


def wheels(image: str) -> list[str]:
    code = "import importlib.metadata as m; print('\\n'.join(f'wheel {d.name} {d.version}' for d in m.distributions()))"
    run = docker("run", "--rm", "--read-only", "--network", "none", "--entrypoint", "python3", image, "-c", code)
    return sorted(line.lower().replace("_", "-") for line in run.stdout.split("\n") if line)


def manifest_path(service: str) -> Path:
    return ROOT / "services" / service / "image-manifest.txt"


@pytest.mark.parametrize("service", list(IMAGES))
def test_image_carries_exactly_its_manifest(
    service: str, built: dict[str, str], exported: dict[str, tarfile.TarFile]
) -> None:
    actual = dpkg_packages(exported[service])
    if service == "inference-api":
        actual += wheels(built[service])
    path = manifest_path(service)
    if os.environ.get("UPDATE_MANIFESTS"):
        head = [
            f"# {built[service]}: every Debian package (deb NAME VERSION) and Python distribution",
            "# (wheel NAME VERSION) in the image. Checked by tests/services/test_images.py; after a",
            "# deliberate change: UPDATE_MANIFESTS=1 python -m pytest tests/services/test_images.py",
        ]
        path.write_text("\n".join([*head, *actual]) + "\n")
    listed = sorted(line for line in path.read_text().splitlines() if line and not line.startswith("#"))
    assert actual == listed, (
        f"{built[service]} differs from {path.relative_to(ROOT)}: "
        f"not listed {sorted(set(actual) - set(listed))}, listed but absent {sorted(set(listed) - set(actual))}"
    )


def test_api_wheels_are_the_locked_ones(built: dict[str, str]) -> None:
    lock = (ROOT / "services/inference-api/requirements.lock").read_text()
    locked = sorted("wheel " + line.split(" ")[0].replace("==", " ") for line in lock.splitlines() if "==" in line)
    assert wheels(built["inference-api"]) == locked


@pytest.mark.parametrize("service", list(IMAGES))
def test_image_has_no_docs_package_tools_or_compilers(service: str, exported: dict[str, tarfile.TarFile]) -> None:
    names = exported[service].getnames()
    docs = [n for n in names if n.startswith(FORBIDDEN_PREFIXES)]
    assert docs == [], docs[:10]
    assert sorted(FORBIDDEN_FILES & set(names)) == []
    assert not [n for n in names if "/site/" in n and n.endswith(("/tests", "/tests/"))]


def test_the_images_fit_the_budget(built: dict[str, str]) -> None:
    sizes = {s: int(docker("image", "inspect", "-f", "{{.Size}}", i).stdout) for s, i in built.items()}
    assert sum(sizes.values()) <= TOTAL_BUDGET, sizes


def test_prometheus_runs_read_only_and_its_healthcheck_probe_works(built: dict[str, str]) -> None:
    name = "svc-test-prometheus"
    docker("rm", "-f", name, check=False)
    try:
        docker(
            "run", "-d", "--name", name, "--read-only", "--cap-drop", "ALL", "--security-opt",
            "no-new-privileges", "--user", "65534:65534", "--tmpfs", "/prometheus:uid=65534,gid=65534",
            built["prometheus"],
        )  # fmt: skip
        probe = ["exec", name, "/usr/bin/promtool", "check", "healthy", "--url=http://127.0.0.1:9090"]
        for _ in range(60):
            if docker(*probe, check=False).returncode == 0:
                break
            subprocess.run(["sleep", "0.5"], check=True)
        run = docker(*probe, check=False)
        assert run.returncode == 0, run.stdout + run.stderr + docker("logs", name, check=False).stderr
    finally:
        docker("rm", "-f", name, check=False)


NE_HOST = ["--volume", "/proc:/host/proc:ro", "--volume", "/sys:/host/sys:ro"]
NE_FLAGS = ["--path.procfs=/host/proc", "--path.sysfs=/host/sys"]


@pytest.mark.parametrize(
    ("service", "port", "path", "options", "flags"),
    [
        ("alertmanager", 9093, "/-/healthy", ["--user", "65534:65534", "--tmpfs", "/alertmanager:uid=65534"], []),
        # As the catalogue runs it: a uid of its own, the host's /proc and /sys read-only.
        ("node-exporter", 9100, "/", ["--user", "65532:65532", *NE_HOST], NE_FLAGS),
    ],
)
def test_exporters_run_read_only_and_their_healthcheck_probe_works(
    built: dict[str, str], service: str, port: int, path: str, options: list[str], flags: list[str]
) -> None:
    """The image's own HEALTHCHECK (bash's /dev/tcp: no curl or wget in these images) passes
    on a container run the way the stack runs it: read-only, no capabilities, non-root."""
    name = f"svc-test-{service}"
    docker("rm", "-f", name, check=False)
    try:
        docker(
            "run", "-d", "--name", name, "--read-only", "--cap-drop", "ALL", "--security-opt",
            "no-new-privileges", *options, built[service], *flags,
        )  # fmt: skip
        test = json.loads(docker("image", "inspect", "-f", "{{json .Config.Healthcheck.Test}}", built[service]).stdout)
        assert test[0] == "CMD" and str(port) in " ".join(test) and path in " ".join(test)
        for _ in range(60):
            if docker("exec", name, *test[1:], check=False).returncode == 0:
                break
            subprocess.run(["sleep", "0.5"], check=True)
        run = docker("exec", name, *test[1:], check=False)
        assert run.returncode == 0, run.stdout + run.stderr + docker("logs", name, check=False).stderr
    finally:
        docker("rm", "-f", name, check=False)


def test_alertmanager_image_checks_configurations_with_amtool(built: dict[str, str]) -> None:
    """`amtool check-config` of the image, as the role and operators use it (docs/alerting.md)."""
    run = docker(
        "run", "--rm", "--network", "none", "--read-only", "--entrypoint", "amtool", built["alertmanager"],
        "check-config", "/etc/alertmanager/alertmanager.yml", check=False,
    )  # fmt: skip
    assert run.returncode == 0 and "SUCCESS" in run.stdout + run.stderr, run.stdout + run.stderr
