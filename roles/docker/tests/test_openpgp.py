"""Unit tests of filter_plugins/openpgp.py, the fingerprint check of the upstream source.

docker-ce.asc is Docker's apt signing key as Debian ships it in extrepo-offline-data
(/usr/share/extrepo/offline-data/debian/bookworm/docker-ce.asc).
"""

from __future__ import annotations

import base64
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "filter_plugins"))

from openpgp import openpgp_primary_fingerprints  # noqa: E402

DOCKER = "9DC858229FC7DD38854AE2D88D81803C0EBFCD88"
DOCKER_SUBKEY = "D3306A018370199E527AE7997EA0A9C3F273FCD8"
ARMORED = (HERE / "docker-ce.asc").read_text()


def test_dockers_key_gives_its_primary_fingerprint_only() -> None:
    assert openpgp_primary_fingerprints(ARMORED) == [DOCKER]
    assert DOCKER_SUBKEY not in openpgp_primary_fingerprints(ARMORED)


def test_slurp_content_is_accepted() -> None:
    assert openpgp_primary_fingerprints(base64.b64encode(ARMORED.encode()).decode()) == [DOCKER]


def _gpg(home: str, *args: str, data: str | None = None) -> str:
    run = subprocess.run(
        ["gpg", "--batch", "--quiet", "--homedir", home, *args], input=data, capture_output=True, text=True, check=True
    )
    return run.stdout


def _colons_fingerprints(home: str, armored: str) -> list[str]:
    out = _gpg(home, "--show-keys", "--with-colons", data=armored)
    lines = out.splitlines()
    return [lines[i + 1].split(":")[9] for i, line in enumerate(lines[:-1]) if line.startswith("pub:")]


def test_agrees_with_gpg_on_generated_keys_and_bundles() -> None:
    with tempfile.TemporaryDirectory() as home:
        _gpg(home, "--passphrase", "", "--quick-gen-key", "One <one@example.invalid>", "ed25519")
        _gpg(home, "--passphrase", "", "--quick-gen-key", "Two <two@example.invalid>", "rsa2048")
        _gpg(home, "--import", data=ARMORED)
        bundle = _gpg(home, "--armor", "--export")
        binary = subprocess.run(
            ["gpg", "--batch", "--homedir", home, "--export"], capture_output=True, check=True
        ).stdout
        expected = _colons_fingerprints(home, bundle)
    assert len(expected) == 3 and DOCKER in expected
    assert openpgp_primary_fingerprints(bundle) == expected
    assert openpgp_primary_fingerprints(base64.b64encode(binary).decode()) == expected


def test_two_armored_blocks_in_one_file_are_both_read() -> None:
    with tempfile.TemporaryDirectory() as home:
        _gpg(home, "--passphrase", "", "--quick-gen-key", "Other <other@example.invalid>", "ed25519")
        other = _gpg(home, "--armor", "--export")
    fingerprints = openpgp_primary_fingerprints(ARMORED + other)
    assert len(fingerprints) == 2 and fingerprints[0] == DOCKER


def test_garbage_is_refused() -> None:
    with pytest.raises(AnsibleFilterError):
        openpgp_primary_fingerprints(
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!!\n-----END PGP PUBLIC KEY BLOCK-----\n"
        )
    with pytest.raises(AnsibleFilterError):
        openpgp_primary_fingerprints(base64.b64encode(b"\x00\x01\x02").decode())
