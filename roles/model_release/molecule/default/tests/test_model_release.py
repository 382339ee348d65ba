"""The model_release role on a Debian 13 host: delivery, checks on the controller and on the
host, signatures, the state file, record and prune.

Converge delivered release 1.0.0 and recorded it live. The unmarked tests read that host; the
`rerun` ones (run last, in this order) deliver more releases through deliver.yml and build on
each other's state: 1.1.0 recorded, a rollback and back, 1.2.0-1.5.0 and a prune, then
refused releases that must leave the host as it was.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import HOST_DIR, NAME, RELEASES, deliver, host_state, releases, releases_on_host
from mlops_testkit.ansible import flat, task_block

SIGN = Path(__file__).resolve().parents[5] / "scripts" / "model-release-sign.sh"


def release_dir(version: str) -> str:
    return f"{HOST_DIR}/{NAME}-{version}"


def manifest(version: str) -> dict[str, Any]:
    return json.loads((RELEASES / f"{NAME}-{version}" / "manifest.json").read_text())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- the converged host ------------------------------------------------------------------


@pytest.mark.parametrize("path", [HOST_DIR, release_dir("1.0.0")])
def test_directories_are_root_owned_0755(host: Any, path: str) -> None:
    d = host.file(path)
    assert d.is_directory
    assert (d.uid, d.gid, d.mode) == (0, 0, 0o755)


@pytest.mark.parametrize("name", ["manifest.json", "model.json", "../state.json"])
def test_files_are_root_owned_and_world_readable(host: Any, name: str) -> None:
    f = host.file(f"{release_dir('1.0.0')}/{name}")
    assert f.is_file
    assert (f.uid, f.gid, f.mode) == (0, 0, 0o644)


def test_files_on_the_host_have_the_checksums_of_the_release(host: Any) -> None:
    files = manifest("1.0.0")["files"]
    for name, digest in files.items():
        assert host.file(f"{release_dir('1.0.0')}/{name}").sha256sum == digest
    controller_manifest = RELEASES / f"{NAME}-1.0.0" / "manifest.json"
    assert host.file(f"{release_dir('1.0.0')}/manifest.json").sha256sum == sha256(controller_manifest)
    # Nothing but the release's own files (no signature: 1.0.0 is unsigned).
    listed = host.check_output(f"ls -A {release_dir('1.0.0')}").split()
    assert sorted(listed) == sorted([*files, "manifest.json"])


def test_state_file_records_the_converged_release_live(host: Any) -> None:
    assert host_state(host) == {"name": NAME, "live": "1.0.0", "previous": None, "delivered": ["1.0.0"]}


def test_no_allowed_signers_file_without_signers(host: Any) -> None:
    assert not host.file(f"{HOST_DIR}/allowed_signers").exists


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"model_release_keep": 0}, "model_release_keep"),
        ({"model_release_allowed_signers": ["release@example.org not-a-key"]}, "model_release_allowed_signers[0]"),
        ({"model_release_require_signature": True}, "model_release_allowed_signers"),
    ],
    ids=["keep-0", "malformed-signer", "required-without-signers"],
)
def test_bad_variables_fail_before_the_host_is_changed_naming_the_variable(
    host: Any, tmp_path: Path, extra: dict[str, Any], variable: str
) -> None:
    before = host_state(host)
    role = deliver(tmp_path, [{"version": "1.0.0"}], **extra)
    assert role.run.returncode != 0
    assert variable in role.messages(), role.run.tail()
    assert role.run.total_changed == 0
    assert host_state(host) == before


# ---- more releases (these change the host: run last, in order) -----------------------------


@pytest.mark.rerun
def test_a_new_release_ships_its_bytes_and_record_makes_it_live(host: Any, tmp_path: Path) -> None:
    release = releases.build(RELEASES, "1.1.0")
    role = deliver(tmp_path, [{"version": "1.1.0", "record": True}])
    assert role.run.returncode == 0, role.run.tail()
    (result,) = role.results
    assert result["bytes_shipped"] == sum(p.stat().st_size for p in release.iterdir())
    assert result["path"] == release_dir("1.1.0")
    assert result["manifest_sha256"] == sha256(release / "manifest.json")
    assert result["state"] == {"name": NAME, "live": "1.1.0", "previous": "1.0.0", "delivered": ["1.0.0", "1.1.0"]}
    assert host_state(host) == result["state"]
    assert host.file(f"{release_dir('1.1.0')}/model.json").sha256sum == manifest("1.1.0")["files"]["model.json"]


@pytest.mark.rerun
def test_record_switches_live_and_previous_and_back(host: Any, tmp_path: Path) -> None:
    role = deliver(
        tmp_path,
        [
            {"version": "1.1.0", "record": True},  # live already: nothing changes, nothing shipped
            {"version": "1.0.0", "record": True},  # a rollback
            {"version": "1.1.0", "record": True},  # and forward again
        ],
    )
    assert role.run.returncode == 0, role.run.tail()
    again, rollback, forward = role.results
    assert again["bytes_shipped"] == 0
    assert (again["state"]["live"], again["state"]["previous"]) == ("1.1.0", "1.0.0")
    assert (rollback["state"]["live"], rollback["state"]["previous"]) == ("1.0.0", "1.1.0")
    assert (forward["state"]["live"], forward["state"]["previous"]) == ("1.1.0", "1.0.0")
    assert host_state(host)["delivered"] == ["1.0.0", "1.1.0"]


@pytest.mark.rerun
def test_prune_keeps_the_newest_and_never_the_live_or_previous(host: Any, tmp_path: Path) -> None:
    for version in ("1.2.0", "1.3.0", "1.4.0", "1.5.0"):
        releases.build(RELEASES, version)
    # Delivered, never live (a rollout that stopped before recording): state unchanged.
    role = deliver(tmp_path, [{"version": v} for v in ("1.2.0", "1.3.0", "1.4.0")])
    assert role.run.returncode == 0, role.run.tail()
    assert releases_on_host(host) == ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"]
    before = host_state(host)
    assert (before["live"], before["previous"]) == ("1.1.0", "1.0.0")

    # Check mode says what would change and changes nothing.
    step = {"version": "1.5.0", "record": True}
    check = deliver(tmp_path, [step], "--check", model_release_keep=2)
    assert check.run.returncode == 0, check.run.tail()
    assert check.run.total_changed > 0
    assert check.results[0]["pruned"] == ["1.0.0", "1.2.0", "1.3.0"]
    assert releases_on_host(host) == ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"]
    assert host_state(host) == before

    # Delivery order 1.0.0 1.1.0 1.2.0 1.3.0 1.4.0 1.5.0; keep 2: 1.4.0 and 1.5.0 (live), and
    # 1.1.0 (previous) however old it is.
    role = deliver(tmp_path, [step], model_release_keep=2)
    assert role.run.returncode == 0, role.run.tail()
    assert role.results[0]["pruned"] == ["1.0.0", "1.2.0", "1.3.0"]
    assert releases_on_host(host) == ["1.1.0", "1.4.0", "1.5.0"]
    assert host_state(host) == {
        "name": NAME,
        "live": "1.5.0",
        "previous": "1.1.0",
        "delivered": ["1.1.0", "1.4.0", "1.5.0"],
    }


@pytest.mark.rerun
def test_a_release_changed_after_its_check_fails_on_the_host_and_is_removed(host: Any, tmp_path: Path) -> None:
    release = releases.build(RELEASES, "1.6.0")
    before = host_state(host)
    # Checked in a first play, as the playbooks do; then its model file changes on the controller.
    role = deliver(
        tmp_path,
        [{"version": "1.6.0", "record": True}],
        model_release_test_preflight_first=True,
        model_release_test_between=["sh", "-c", 'echo tampered >>"$0"', str(release / "model.json")],
    )
    assert role.run.returncode != 0
    message = role.messages()
    assert "checksum check failed on the host" in message, role.run.tail()
    assert "mlops_model_version '1.6.0'" in message
    assert "model.json: FAILED" in message
    assert "The copy just delivered was removed" in message
    assert not host.file(release_dir("1.6.0")).exists
    assert host.file(f"{release_dir('1.5.0')}/model.json").sha256sum == manifest("1.5.0")["files"]["model.json"]
    assert host_state(host) == before


@pytest.mark.rerun
def test_a_tampered_release_is_refused_on_the_controller(host: Any, tmp_path: Path) -> None:
    release = releases.build(RELEASES, "1.7.0")
    with (release / "model.json").open("a") as f:
        f.write("tampered\n")
    role = deliver(tmp_path, [{"version": "1.7.0", "record": True}])
    assert role.run.returncode != 0
    message = flat(role.messages())
    assert "mlops_model_version '1.7.0'" in message, role.run.tail()
    assert "checksum mismatch" in message
    assert role.run.total_changed == 0
    assert not host.file(release_dir("1.7.0")).exists


@pytest.mark.rerun
def test_a_signed_release_verifies_on_the_controller_and_on_the_host(
    host: Any, tmp_path: Path, keys: dict[str, tuple[Path, str]]
) -> None:
    key, _ = keys["release"]
    release = releases.build(RELEASES, "2.0.0")
    # Signed with the collection's own script, which prints the signer's allowed_signers line.
    signed = subprocess.run([str(SIGN), str(key), str(release)], capture_output=True, text=True, check=True, timeout=60)
    line = signed.stdout.strip()
    assert line.startswith('release@mlops.test namespaces="mlops-model" ssh-ed25519 AAAA'), signed
    assert (release / "manifest.json.sig").is_file()
    stranger = keys["stranger"][1]  # a line without options: the role adds the namespace
    role = deliver(
        tmp_path,
        [{"version": "2.0.0"}],
        model_release_allowed_signers=[line, stranger],
        model_release_require_signature=True,
    )
    assert role.run.returncode == 0, role.run.tail()
    assert role.results[0]["signature_verified"] is True
    principal, kind, blob = stranger.split()
    written = host.file(f"{HOST_DIR}/allowed_signers").content_string
    assert written == f'{line}\n{principal} namespaces="mlops-model" {kind} {blob}\n'
    sig = host.file(f"{release_dir('2.0.0')}/manifest.json.sig")
    assert (sig.uid, sig.mode) == (0, 0o644)
    on_host = task_block(role.run.output, "TASK [model_release : Verify the signature of the release on the host]")
    assert re.search(r"^ok: \[", on_host, re.M), on_host
    # The host's own ssh-keygen accepts it against the file the role wrote.
    verify = host.run(
        f"ssh-keygen -Y verify -f {HOST_DIR}/allowed_signers -I release@mlops.test -n mlops-model"
        f" -s {release_dir('2.0.0')}/manifest.json.sig < {release_dir('2.0.0')}/manifest.json"
    )
    assert verify.rc == 0, verify.stderr


@pytest.mark.rerun
@pytest.mark.parametrize(
    ("version", "signer", "expected"),
    [
        ("2.1.0", None, "the release is unsigned"),
        ("2.2.0", "stranger", "is not an allowed signer"),
    ],
    ids=["unsigned", "signed-by-a-stranger"],
)
def test_a_release_without_a_good_signature_is_refused_when_required(
    host: Any, tmp_path: Path, keys: dict[str, tuple[Path, str]], version: str, signer: str | None, expected: str
) -> None:
    releases.build(RELEASES, version, key=keys[signer][0] if signer else None)
    role = deliver(
        tmp_path,
        [{"version": version}],
        model_release_allowed_signers=[keys["release"][1]],
        model_release_require_signature=True,
    )
    assert role.run.returncode != 0
    message = flat(role.messages())
    assert "signature check failed" in message, role.run.tail()
    assert expected in message
    assert f"mlops_model_version '{version}'" in message
    assert role.run.total_changed == 0
    assert not host.file(release_dir(version)).exists


@pytest.mark.rerun
def test_a_manifest_changed_after_signing_is_refused(
    host: Any, tmp_path: Path, keys: dict[str, tuple[Path, str]]
) -> None:
    release = releases.build(RELEASES, "2.3.0", key=keys["release"][0])
    doc = json.loads((release / "manifest.json").read_text())
    doc["golden_tolerance"] = 0.5
    (release / "manifest.json").write_text(json.dumps(doc, indent=2) + "\n")
    # Not required: a signature that is there is still checked when signers are given.
    role = deliver(tmp_path, [{"version": "2.3.0"}], model_release_allowed_signers=[keys["release"][1]])
    assert role.run.returncode != 0
    message = flat(role.messages())
    assert "signature check failed" in message, role.run.tail()
    assert "does not verify" in message
    assert "mlops_model_version '2.3.0'" in message
    assert not host.file(release_dir("2.3.0")).exists
