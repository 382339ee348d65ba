"""What a test needs from this machine's Docker Engine."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def require_image(image: str, hint: str) -> None:
    """Skip unless Docker answers and has `image` (`hint` says how to build it). Under CI the
    skip policy of mlops_testkit.pytest_plugin turns that skip into a failure."""
    if shutil.which("docker") is None:
        pytest.skip("docker is not installed")
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False).returncode:
        pytest.skip(f"image {image} is not built here ({hint})")
