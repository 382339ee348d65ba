"""Fixtures of the Kubernetes rendering tests: each fixture inventory is rendered once."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from k8s_rendering import REPO, Rendering, render


@pytest.fixture(scope="session")
def prod() -> Rendering:
    """The production-like inventory: images by digest, retention 30d/8GB, ingress TLS."""
    return render("prod")


@pytest.fixture(scope="session")
def edge() -> Rendering:
    """The edge-like inventory: registry delivery, tags, all four services."""
    return render("edge")


def _tool(env_name: str, venv: str, name: str) -> str | None:
    explicit = os.environ.get(env_name)
    if explicit:
        return explicit
    candidate = REPO / venv / "bin" / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)


@pytest.fixture(scope="session")
def checkov() -> str:
    """checkov: $CHECKOV_BIN, then .venv-checkov, then PATH. Missing fails under CI."""
    found = _tool("CHECKOV_BIN", ".venv-checkov", "checkov")
    if found is None or (not Path(found).exists() and shutil.which(found) is None):
        if os.environ.get("CI"):
            pytest.fail("checkov is missing: set CHECKOV_BIN or run scripts/engine.sh toolchain (.venv-checkov)")
        pytest.skip("checkov is not installed (CHECKOV_BIN, .venv-checkov or PATH)")
    return found


@pytest.fixture(scope="session")
def kubernetes_validate() -> str:
    found = _tool("KUBERNETES_VALIDATE_BIN", ".venv", "kubernetes-validate")
    if found is None:
        pytest.fail("kubernetes-validate is missing: it is pinned in requirements.txt")
    return found
