"""The committed model artifact: reproducible from its training script, verified on load."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import train  # services/inference-api/training/train.py (on sys.path via conftest)
from conftest import MODELS_DIR
from fastapi.testclient import TestClient
from mlops_inference.app import create_app
from mlops_inference.model import ModelError, load_model
from mlops_inference.schemas import FEATURES
from mlops_inference.settings import Settings

NAME = "breast-cancer-lr"


def copy_models(dst: Path) -> Path:
    shutil.copytree(MODELS_DIR, dst, dirs_exist_ok=True)
    return dst


def test_manifest_checksum_matches_the_committed_artifact() -> None:
    manifest = json.loads((MODELS_DIR / f"{NAME}-1.0.0.manifest.json").read_text())
    artifact = (MODELS_DIR / manifest["file"]).read_bytes()
    assert hashlib.sha256(artifact).hexdigest() == manifest["sha256"]
    assert (manifest["name"], manifest["version"]) == (NAME, "1.0.0")


def test_retraining_reproduces_the_committed_artifact(tmp_path: Path) -> None:
    """Retraining gives the committed model up to floating-point noise. Results differ in the
    last bits between CPUs and BLAS kernels, even with the same scikit-learn, so the numbers
    are compared within a tolerance that holds across machines; byte-exactness belongs to the
    artifact's sha256 (the test above), not to retraining."""
    model_path, _manifest_path = train.write(tmp_path, NAME, "1.0.0")
    committed = json.loads((MODELS_DIR / model_path.name).read_text())
    fresh = json.loads(model_path.read_text())
    np.testing.assert_allclose(fresh["coefficients"], committed["coefficients"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fresh["intercept"], committed["intercept"], rtol=1e-4, atol=1e-6)
    for key in committed["scaler"]:
        np.testing.assert_allclose(fresh["scaler"][key], committed["scaler"][key], rtol=1e-9, atol=1e-12)
    assert [f["name"] for f in fresh["features"]] == [f["name"] for f in committed["features"]]
    for got, want in zip(fresh["features"], committed["features"], strict=True):
        for key in ("mean", "median", "observed_min", "observed_max"):
            assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-12), (got["name"], key)


def test_the_served_model_matches_scikit_learn(tmp_path: Path) -> None:
    """numpy evaluation of the JSON artifact == the scikit-learn estimator it came from."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    x_train, _, y_train, _ = train_test_split(
        data.data, data.target, test_size=train.TEST_SIZE, stratify=data.target, random_state=train.RANDOM_STATE
    )
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(C=train.C, max_iter=10_000).fit(scaler.transform(x_train), y_train)
    model = load_model(MODELS_DIR, NAME, "1.0.0", FEATURES)
    np.testing.assert_allclose(
        model.predict_proba(data.data), clf.predict_proba(scaler.transform(data.data))[:, 1], rtol=1e-6, atol=1e-6
    )


def tamper(models: Path, edit: Any) -> None:
    path = models / f"{NAME}-1.0.0.model.json"
    path.write_bytes(edit(path.read_bytes()))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda m: tamper(m, lambda b: b.replace(b'"intercept": ', b'"intercept": 1')), "sha256"),
        (lambda m: tamper(m, lambda b: b[: len(b) // 2]), "sha256"),
        (lambda m: (m / f"{NAME}-1.0.0.model.json").unlink(), "does not exist"),
        (lambda m: (m / f"{NAME}-1.0.0.manifest.json").write_text("{not json"), "not valid JSON"),
        (
            lambda m: (m / f"{NAME}-1.0.0.manifest.json").write_text(
                json.dumps({**json.loads((m / f"{NAME}-1.0.0.manifest.json").read_text()), "version": "2.0.0"})
            ),
            "not breast-cancer-lr 1.0.0",
        ),
        (
            lambda m: (m / f"{NAME}-1.0.0.manifest.json").write_text(
                json.dumps({**json.loads((m / f"{NAME}-1.0.0.manifest.json").read_text()), "file": "../../etc/passwd"})
            ),
            "plain file name",
        ),
    ],
    ids=["changed-byte", "truncated", "missing-artifact", "bad-manifest", "manifest-other-version", "path-traversal"],
)
def test_corrupt_or_mismatched_artifact_is_never_ready(tmp_path: Path, damage: Any, reason: str) -> None:
    models = copy_models(tmp_path / "models")
    damage(models)
    with pytest.raises(ModelError, match=reason):
        load_model(models, NAME, "1.0.0", FEATURES)
    with TestClient(create_app(Settings(model_dir=models))) as c:
        resp = c.get("/ready")
        assert resp.status_code == 503 and reason in resp.json()["reason"]
        assert c.get("/health").status_code == 200


def write_version(models: Path, version: str, edit: Any = None) -> str:
    """A new model version delivered as two files, with a correct manifest."""
    doc = train.train(NAME, version)
    if edit:
        edit(doc)
    raw = json.dumps(doc, indent=2).encode()  # allow_nan: a broken artifact may hold Infinity
    (models / f"{NAME}-{version}.model.json").write_bytes(raw)
    digest = hashlib.sha256(raw).hexdigest()
    manifest = {
        "name": NAME,
        "version": version,
        "format": train.FORMAT,
        "file": f"{NAME}-{version}.model.json",
        "sha256": digest,
    }
    (models / f"{NAME}-{version}.manifest.json").write_bytes(train.serialize(manifest))
    return digest


def test_new_version_delivered_as_a_file_is_selected_by_configuration(tmp_path: Path, record: dict[str, float]) -> None:
    models = copy_models(tmp_path / "models")
    digest = write_version(models, "1.1.0")
    with TestClient(create_app(Settings(model_dir=models, model_version="1.1.0", model_sha256=digest))) as c:
        assert c.get("/ready").json()["model"] == {"name": NAME, "version": "1.1.0", "sha256": digest}
        resp = c.post("/predict", json=record)
        assert resp.json()["model"]["version"] == "1.1.0"
        assert 'model_version="1.1.0"' in c.get("/metrics").text
    with TestClient(create_app(Settings(model_dir=models))) as c:  # the default stays 1.0.0
        assert c.get("/ready").json()["model"]["version"] == "1.0.0"


def test_artifact_with_other_features_is_refused(tmp_path: Path) -> None:
    models = copy_models(tmp_path / "models")
    write_version(models, "3.0.0", lambda d: d["features"][0].update(name="tumour_size"))
    with pytest.raises(ModelError, match="features do not match"):
        load_model(models, NAME, "3.0.0", FEATURES)


def test_artifact_with_non_finite_coefficient_is_refused(tmp_path: Path) -> None:
    models = copy_models(tmp_path / "models")
    write_version(models, "3.0.1", lambda d: d["coefficients"].__setitem__(4, 1e400))
    with pytest.raises(ModelError, match="finite"):
        load_model(models, NAME, "3.0.1", FEATURES)
