"""The upstream source's key check, with Docker's real key and with keys that must be refused.

Docker's repository is not reachable from here, so the key is served from a file:// URL:
Docker's real key from Debian's extrepo-offline-data package (installed by prepare.yml), and
keys generated on the spot with gpg. Only the key check runs (upstream_key.yml); it writes no
apt source.
"""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import run_playbook
from mlops_testkit.ansible import flat

DOCKER_FINGERPRINT = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
KEYRING = "/etc/apt/keyrings/docker.asc"


def _generated_key(with_docker_key: str = "") -> str:
    """An armored key generated now; with with_docker_key, Docker's key and it in one block."""
    with tempfile.TemporaryDirectory() as home:
        gpg = ["gpg", "--batch", "--homedir", home, "--quiet"]
        subprocess.run(
            [*gpg, "--passphrase", "", "--quick-gen-key", "Not Docker <nobody@example.invalid>", "ed25519"], check=True
        )
        if with_docker_key:
            subprocess.run([*gpg, "--import"], input=with_docker_key, text=True, check=True, capture_output=True)
        return subprocess.run([*gpg, "--armor", "--export"], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def docker_key_url(host: Any) -> str:
    path = host.check_output("ls /usr/share/extrepo/offline-data/debian/*/docker-ce.asc | tail -n 1")
    return f"file://{path}"


@pytest.fixture(autouse=True)
def no_keyring(host: Any) -> Iterator[None]:
    host.run(f"rm -f {KEYRING}")
    yield
    host.run(f"rm -f {KEYRING} /root/test-key.asc")


def _serve(host: Any, armored: str) -> str:
    encoded = base64.b64encode(armored.encode()).decode()
    host.check_output(f"echo {encoded} | base64 -d > /root/test-key.asc")
    return "file:///root/test-key.asc"


def test_dockers_real_key_is_accepted(host: Any, docker_key_url: str) -> None:
    rc, output, changed = run_playbook(
        "upstream_key.yml", "--extra-vars", json.dumps({"docker_test_key_url": docker_key_url})
    )
    assert rc == 0, output[-4000:]
    assert host.file(KEYRING).exists
    assert host.file(KEYRING).mode == 0o644
    # A second run fetches nothing and changes nothing.
    rc, output, changed = run_playbook(
        "upstream_key.yml", "--extra-vars", json.dumps({"docker_test_key_url": docker_key_url})
    )
    assert rc == 0, output[-4000:]
    assert set(changed.values()) == {0}, output[-4000:]


def test_another_key_is_refused_and_removed(host: Any) -> None:
    url = _serve(host, _generated_key())
    rc, output, _changed = run_playbook("upstream_key.yml", "--extra-vars", json.dumps({"docker_test_key_url": url}))
    assert rc != 0
    assert f"not docker_upstream_key_fingerprint {DOCKER_FINGERPRINT}" in flat(output), output[-4000:]
    assert not host.file(KEYRING).exists


def test_dockers_key_bundled_with_another_is_refused(host: Any, docker_key_url: str) -> None:
    real = host.check_output(f"cat {docker_key_url.removeprefix('file://')}")
    url = _serve(host, _generated_key(with_docker_key=real))
    rc, output, _changed = run_playbook("upstream_key.yml", "--extra-vars", json.dumps({"docker_test_key_url": url}))
    assert rc != 0
    assert DOCKER_FINGERPRINT in flat(output) and "docker_upstream_key_fingerprint" in flat(output), output[-4000:]
    assert not host.file(KEYRING).exists
