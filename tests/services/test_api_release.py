"""Model releases as a rollout meets them: training/release.py (verify, derive) and what the
API makes of each release it derives: served, or up but not ready with a reason that names
the version and the check (load, checksum, golden)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import API_DIR, MODELS_DIR
from fastapi.testclient import TestClient
from mlops_inference import app as app_module
from mlops_inference.app import create_app
from mlops_inference.settings import Settings

NAME = "breast-cancer-lr"
RELEASE = MODELS_DIR / f"{NAME}-1.0.0"
RELEASE_PY = API_DIR / "training" / "release.py"


@pytest.fixture(scope="session")
def model_doc() -> dict[str, Any]:
    """The served model, from its release directory (overrides conftest's flat-file path)."""
    return json.loads((RELEASE / "model.json").read_text())


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """release.py as a rollout runs it: a plain interpreter, no third-party package needed."""
    return subprocess.run(
        [sys.executable, "-I", str(RELEASE_PY), *args], capture_output=True, text=True, timeout=60, check=False
    )


def derive(models: Path, version: str, *flags: str) -> Path:
    run = cli("derive", str(RELEASE), "--version", version, "--out", str(models), *flags)
    assert run.returncode == 0, run.stderr
    return models / f"{NAME}-{version}"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """A models directory holding the committed 1.0.0, as a host's MODEL_DIR would."""
    shutil.copytree(RELEASE, tmp_path / RELEASE.name)
    return tmp_path


def serve(models: Path, version: str, **kwargs: Any) -> TestClient:
    return TestClient(create_app(Settings(model_dir=models, model_version=version, **kwargs)))


def not_ready(client: TestClient) -> dict[str, Any]:
    resp = client.get("/ready")
    assert resp.status_code == 503, resp.text
    body = resp.json()
    assert set(body) == {"status", "reason", "check"} and body["status"] == "not ready"
    assert client.get("/health").status_code == 200  # up, just not ready
    assert client.post("/predict", json={}).status_code == 503
    metrics = client.get("/metrics").text
    assert "inference_model_ready 0.0" in metrics and "mlops_model_info{" not in metrics
    return dict(body)


# ---------------------------------------------------------------- release.py verify


def test_verify_prints_the_release_identity() -> None:
    run = cli("verify", str(RELEASE))
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["ok", NAME, "1.0.0", sha256(RELEASE / "manifest.json")]


def test_verify_refuses_a_changed_file_and_a_wrong_directory_name(models: Path) -> None:
    moved = models / f"{NAME}-9.9.9"
    shutil.copytree(models / RELEASE.name, moved)
    run = cli("verify", str(moved))
    assert run.returncode == 1 and "directory name differs" in run.stderr
    model = models / RELEASE.name / "model.json"
    model.write_bytes(model.read_bytes().replace(b'"intercept": ', b'"intercept": 1'))
    run = cli("verify", str(models / RELEASE.name))
    assert run.returncode == 1 and "checksum of model.json does not match the manifest" in run.stderr
    run = cli("verify", str(models / "nothing-here"))
    assert run.returncode == 1 and "manifest not found" in run.stderr


# ---------------------------------------------------------------- derived releases, served


def test_a_good_derived_release_is_served_with_the_same_answers(models: Path, record: dict[str, float]) -> None:
    target = derive(models, "1.1.0")
    assert cli("verify", str(target)).returncode == 0
    doc = json.loads((target / "model.json").read_text())
    base = json.loads((RELEASE / "model.json").read_text())
    assert (doc["name"], doc["version"]) == (NAME, "1.1.0")
    assert {k: v for k, v in doc.items() if k != "version"} == {k: v for k, v in base.items() if k != "version"}
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["golden"] == json.loads((RELEASE / "manifest.json").read_text())["golden"]
    batch = {"records": [record, *(g["input"] for g in manifest["golden"])]}
    with serve(models, "1.0.0") as old, serve(models, "1.1.0") as new:
        ready = new.get("/ready").json()
        assert ready["model"] == {"name": NAME, "version": "1.1.0", "sha256": sha256(target / "manifest.json")}
        assert ready["golden"] == {"records": 8, "passed": True}
        assert ready["model"]["sha256"] != old.get("/ready").json()["model"]["sha256"]
        a, b = old.post("/predict", json=batch).json(), new.post("/predict", json=batch).json()
        assert a["predictions"] == b["predictions"] and b["model"]["version"] == "1.1.0"


def test_a_release_with_wrong_golden_answers_is_not_ready(models: Path) -> None:
    target = derive(models, "1.1.1", "--corrupt-golden")
    assert cli("verify", str(target)).returncode == 0  # its checksums are valid
    with serve(models, "1.1.1") as c:
        body = not_ready(c)
    assert body["check"] == "golden"
    assert body["reason"].startswith(f"model {NAME} 1.1.1: golden records: 8 of 8 answers differ from the manifest")
    # The first record: what the manifest claims, and what the model answered.
    first = json.loads((RELEASE / "manifest.json").read_text())["golden"][0]
    assert f"(first: {first['id']} expected benign" in body["reason"] and ", got malignant " in body["reason"]
    assert "checksum" not in body["reason"]


def test_a_tampered_model_is_not_ready(models: Path) -> None:
    target = derive(models, "1.1.2", "--tamper-model")
    run = cli("verify", str(target))
    assert run.returncode == 1 and "checksum of model.json" in run.stderr
    with serve(models, "1.1.2") as c:
        body = not_ready(c)
    assert body["check"] == "checksum"
    assert body["reason"].startswith(f"model {NAME} 1.1.2: checksum of model.json does not match the manifest")
    assert "sha256" in body["reason"] and "golden" not in body["reason"]


def test_a_model_that_cannot_load_is_not_ready(models: Path) -> None:
    target = derive(models, "1.1.3", "--break-model")
    assert cli("verify", str(target)).returncode == 0  # its checksums are valid
    with serve(models, "1.1.3") as c:
        body = not_ready(c)
    assert body["check"] == "load"
    assert body["reason"] == (
        f"model {NAME} 1.1.3: cannot load model.json: decision_threshold must lie strictly between 0 and 1"
    )


def test_a_missing_release_is_not_ready(models: Path) -> None:
    with serve(models, "2.0.0") as c:
        body = not_ready(c)
    assert body["check"] == "load" and body["reason"].startswith(f"model {NAME} 2.0.0: manifest not found")


def test_the_three_refusals_are_told_apart_by_their_words(models: Path) -> None:
    reasons = {}
    for version, flag in (("3.0.0", "--corrupt-golden"), ("3.0.1", "--tamper-model"), ("3.0.2", "--break-model")):
        derive(models, version, flag)
        with serve(models, version) as c:
            reasons[flag] = not_ready(c)["reason"]
    assert ["golden" in r for r in reasons.values()] == [True, False, False]
    assert ["checksum" in r for r in reasons.values()] == [False, True, False]
    assert "cannot load" in reasons["--break-model"]


def test_derive_refuses_to_overwrite_a_release(models: Path) -> None:
    derive(models, "1.2.0")
    run = cli("derive", str(RELEASE), "--version", "1.2.0", "--out", str(models))
    assert run.returncode == 1 and "exists already" in run.stderr
    run = cli("derive", str(RELEASE), "--version", "1.2.1", "--out", str(models), "--tamper-model", "--break-model")
    assert run.returncode == 2  # one kind of damage at a time


# ---------------------------------------------------------------- pin, signature, stray files


def test_model_sha256_pins_the_manifest(models: Path) -> None:
    target = derive(models, "1.3.0")
    digest = sha256(target / "manifest.json")
    with serve(models, "1.3.0", model_sha256=digest) as c:
        assert c.get("/ready").json()["model"]["sha256"] == digest
    # The pin of the model file alone is not the release's identity.
    with serve(models, "1.3.0", model_sha256=sha256(target / "model.json")) as c:
        body = not_ready(c)
    assert body["check"] == "checksum" and "checksum of manifest.json does not match MODEL_SHA256" in body["reason"]


def test_a_pinned_manifest_is_checked_before_it_is_parsed(models: Path) -> None:
    target = derive(models, "1.3.1")
    digest = sha256(target / "manifest.json")
    (target / "manifest.json").write_text("{not json")
    with serve(models, "1.3.1", model_sha256=digest) as c:
        body = not_ready(c)
    assert body["check"] == "checksum" and "MODEL_SHA256" in body["reason"]


def test_signature_and_unlisted_files_are_ignored(models: Path) -> None:
    """manifest.json.sig is Ansible's to verify; files the manifest does not list are never read."""
    target = derive(models, "1.4.0")
    (target / "manifest.json.sig").write_text("-----BEGIN SSH SIGNATURE-----\nnot checked here\n")
    (target / "README").write_text("notes")
    with serve(models, "1.4.0") as c:
        assert c.get("/ready").status_code == 200


def rewrite(target: Path, edit_model: Any = None, edit_manifest: Any = None) -> None:
    """Edits a release and recomputes its checksums (a release that is consistent but wrong)."""
    model_path, manifest_path = target / "model.json", target / "manifest.json"
    if edit_model:
        doc = json.loads(model_path.read_text())
        edit_model(doc)
        model_path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    manifest = json.loads(manifest_path.read_text())
    if edit_manifest:
        edit_manifest(manifest)
    manifest["files"]["model.json"] = sha256(model_path)
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def test_model_naming_another_version_than_its_manifest_is_not_ready(models: Path) -> None:
    target = derive(models, "1.5.0")
    rewrite(target, edit_model=lambda d: d.update(version="1.0.0"))
    with serve(models, "1.5.0") as c:
        body = not_ready(c)
    assert body["check"] == "load" and "declares breast-cancer-lr 1.0.0" in body["reason"]


def test_accepted_ranges_narrower_than_observed_are_not_ready(models: Path) -> None:
    """Classifier.one checks the accepted range only for values outside the observed one:
    that holds because a release whose accepted range leaves out observed values never loads."""
    target = derive(models, "1.5.1")

    def narrow(d: dict[str, Any]) -> None:
        f = d["features"][3]
        f["accepted_max"] = (f["observed_min"] + f["observed_max"]) / 2

    rewrite(target, edit_model=narrow)
    with serve(models, "1.5.1") as c:
        body = not_ready(c)
    assert body["check"] == "load" and "accepted ranges must contain the observed ranges" in body["reason"]


def test_golden_answer_beyond_the_tolerance_is_named(models: Path) -> None:
    target = derive(models, "1.6.0")

    def nudge(m: dict[str, Any]) -> None:
        m["golden"][2]["p_benign"] += 2e-6  # twice the tolerance, same label

    rewrite(target, edit_manifest=nudge)
    with serve(models, "1.6.0") as c:
        body = not_ready(c)
    rec = json.loads((target / "manifest.json").read_text())["golden"][2]
    assert body["check"] == "golden" and "1 of 8 answers differ" in body["reason"]
    assert f"(first: {rec['id']} expected {rec['label']} " in body["reason"]


def test_golden_input_the_api_would_refuse_is_named(models: Path) -> None:
    target = derive(models, "1.7.0")

    def refuse(m: dict[str, Any]) -> None:
        m["golden"][0]["input"]["mean_area"] = 1e9  # beyond the accepted domain
        m["golden"][1]["input"]["mean_texture"] = "12"  # a string: /predict refuses it too

    rewrite(target, edit_manifest=refuse)
    # release.py refuses to pass it as a release (its inputs must be numbers) ...
    assert "golden[1].input" in cli("verify", str(target)).stderr
    # ... and the API, which judges inputs as /predict does, counts both and names the first.
    golden = json.loads((target / "manifest.json").read_text())["golden"]
    with serve(models, "1.7.0") as c:
        body = not_ready(c)
    assert body["check"] == "golden" and "2 of 8 answers differ" in body["reason"]
    assert f"(first: {golden[0]['id']} input refused (mean_area: out of range))" in body["reason"]
    assert "1000000000" not in body["reason"] and "1e+09" not in body["reason"]


def test_golden_records_go_through_the_code_that_serves_predict(
    models: Path, monkeypatch: pytest.MonkeyPatch, record: dict[str, float]
) -> None:
    """A change to the classification code that serves /predict is caught by the golden
    records: they are answered by it, not by a copy of the formula."""
    real = app_module.Classifier.one

    def drifted(self: Any, row: list[float]) -> tuple[dict[str, Any], bool]:
        answer, benign = real(self, row)
        probabilities = {**answer["probabilities"], "benign": answer["probabilities"]["benign"] + 1e-3}
        return {**answer, "probabilities": probabilities}, benign

    monkeypatch.setattr(app_module.Classifier, "one", drifted)
    with serve(models, "1.0.0") as c:
        body = not_ready(c)
    assert body["check"] == "golden" and "8 of 8 answers differ" in body["reason"]


def test_the_batch_path_is_checked_as_well(models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = app_module.Classifier.batch

    def drifted(self: Any, x: Any) -> tuple[dict[str, Any], int]:
        answer, n = real(self, x)
        answer["predictions"][-1]["prediction"] = "malignant"
        answer["predictions"][-1]["probabilities"]["benign"] = 0.0
        return answer, n

    monkeypatch.setattr(app_module.Classifier, "batch", drifted)
    with serve(models, "1.0.0") as c:
        body = not_ready(c)
    assert body["check"] == "golden" and "1 of 8 answers differ" in body["reason"] and "(batch path)" in body["reason"]


def test_model_loaded_log_names_the_release(models: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="mlops_inference")
    target = derive(models, "1.8.0", "--corrupt-golden")
    with serve(models, "1.0.0"), serve(models, "1.8.0"):
        pass
    events = [getattr(r, "fields", {}) for r in caplog.records]
    loaded = next(e for e in events if e.get("event") == "model_loaded")
    assert loaded["sha256"] == sha256(RELEASE / "manifest.json") and loaded["golden_records"] == 8
    refused = next(e for e in events if e.get("event") == "model_refused")
    assert (refused["model"], refused["version"], refused["check"]) == (NAME, "1.8.0", "golden")
    assert target.name == f"{NAME}-1.8.0" and refused["reason"].startswith(f"model {NAME} 1.8.0: golden records")


def test_an_empty_models_directory_is_not_ready(tmp_path: Path) -> None:
    with serve(tmp_path / "empty", "1.0.0") as c:
        assert not_ready(c)["reason"].startswith(f"model {NAME} 1.0.0: manifest not found")
