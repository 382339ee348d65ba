"""Loading, verifying and evaluating a model artifact.

A model version is two files in MODEL_DIR:

    <name>-<version>.manifest.json   {"name", "version", "format", "file", "sha256"}
    <name>-<version>.model.json      the artifact the manifest points to

The loader refuses (raises ModelError, and the API stays not ready) unless the manifest
names the requested model and version, the artifact's bytes hash to the manifest's sha256
(and to MODEL_SHA256 when that pin is set), the artifact declares the same name, version
and format, and its features are exactly the ones the API accepts, with finite numbers of
the right shapes. The artifact is JSON: loading it runs no code.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "mlops-logistic-regression/1"
CLASSES = ("malignant", "benign")


class ModelError(Exception):
    """The requested model cannot be served: the message says why."""


@dataclass(frozen=True)
class Model:
    name: str
    version: str
    sha256: str
    features: tuple[str, ...]
    classes: tuple[str, str]
    threshold: float
    # Standardisation folded into the weights: logit = x @ weights + bias.
    weights: np.ndarray
    bias: float
    observed_min: np.ndarray
    observed_max: np.ndarray
    accepted_min: np.ndarray
    accepted_max: np.ndarray
    description: dict[str, Any] = field(repr=False)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probability of the positive class (benign) for each row of x (n x features)."""
        logit = x @ self.weights + self.bias
        # 0.5 * (1 + tanh(z / 2)) is the logistic function without overflow for large |z|.
        return 0.5 * (1.0 + np.tanh(0.5 * logit))


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise ModelError(f"{what} {path} cannot be read: {exc.strerror}") from None


def _parse(raw: bytes, path: Path, what: str) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{what} {path} is not valid JSON: {exc}") from None


def _numbers(doc: dict[str, Any], key: str, length: int) -> np.ndarray:
    values = doc.get(key)
    if not isinstance(values, list) or len(values) != length:
        raise ModelError(f"artifact field {key!r} must be a list of {length} numbers")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        raise ModelError(f"artifact field {key!r} holds a value that is not a finite number")
    return np.asarray(values, dtype=np.float64)


def load_model(
    model_dir: Path,
    name: str,
    version: str,
    expected_features: tuple[str, ...],
    pinned_sha256: str | None = None,
) -> Model:
    manifest_path = model_dir / f"{name}-{version}.manifest.json"
    manifest = _parse(_read(manifest_path, "manifest"), manifest_path, "manifest")
    if not isinstance(manifest, dict):
        raise ModelError(f"manifest {manifest_path} is not a JSON object")
    for key in ("name", "version", "format", "file", "sha256"):
        if not isinstance(manifest.get(key), str):
            raise ModelError(f"manifest {manifest_path} lacks the string field {key!r}")
    if (manifest["name"], manifest["version"]) != (name, version):
        raise ModelError(
            f"manifest {manifest_path} describes {manifest['name']} {manifest['version']}, not {name} {version}"
        )
    if manifest["format"] != FORMAT:
        raise ModelError(f"manifest format {manifest['format']!r} is not supported (expected {FORMAT!r})")
    file_name = manifest["file"]
    if "/" in file_name or file_name in ("", ".", ".."):
        raise ModelError(f"manifest file name {file_name!r} must be a plain file name in {model_dir}")

    # The checksum comes first: nothing of an unverified artifact is parsed.
    raw = _read(model_dir / file_name, "artifact")
    digest = hashlib.sha256(raw).hexdigest()
    if digest != manifest["sha256"].lower():
        raise ModelError(
            f"artifact {file_name} has sha256 {digest}, the manifest expects {manifest['sha256']}: corrupt or replaced"
        )
    if pinned_sha256 is not None and digest != pinned_sha256:
        raise ModelError(f"artifact {file_name} has sha256 {digest}, MODEL_SHA256 pins {pinned_sha256}")
    doc = _parse(raw, model_dir / file_name, "artifact")
    if not isinstance(doc, dict):
        raise ModelError(f"artifact {file_name} is not a JSON object")
    if (doc.get("name"), doc.get("version"), doc.get("format")) != (name, version, FORMAT):
        raise ModelError(
            f"artifact {file_name} declares {doc.get('name')} {doc.get('version')} ({doc.get('format')}), "
            f"the manifest {name} {version} ({FORMAT})"
        )
    if tuple(doc.get("classes", ())) != CLASSES or doc.get("positive_class_index") != 1:
        raise ModelError(f"artifact classes must be {list(CLASSES)} with positive_class_index 1")

    features = doc.get("features")
    if not isinstance(features, list) or not all(isinstance(f, dict) for f in features):
        raise ModelError("artifact field 'features' must be a list of objects")
    names = tuple(str(f.get("name")) for f in features)
    if names != expected_features:
        missing = sorted(set(expected_features) - set(names))
        extra = sorted(set(names) - set(expected_features))
        raise ModelError(
            f"artifact features do not match the API's inputs (missing {missing}, unexpected {extra}, or order)"
        )
    n = len(names)
    table = {
        key: [f.get(key) for f in features] for key in ("observed_min", "observed_max", "accepted_min", "accepted_max")
    }
    bounds = {key: _numbers(table, key, n) for key in table}
    mean = _numbers(doc.get("scaler") or {}, "mean", n)
    scale = _numbers(doc.get("scaler") or {}, "scale", n)
    if np.any(scale <= 0):
        raise ModelError("artifact scaler has a non-positive scale")
    coef = _numbers(doc, "coefficients", n)
    intercept = doc.get("intercept")
    threshold = doc.get("decision_threshold")
    for key, value in (("intercept", intercept), ("decision_threshold", threshold)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ModelError(f"artifact field {key!r} must be a finite number")
    assert isinstance(intercept, (int, float)) and isinstance(threshold, (int, float))
    if not 0.0 < threshold < 1.0:
        raise ModelError("artifact decision_threshold must lie strictly between 0 and 1")
    if np.any(bounds["accepted_min"] > bounds["observed_min"]) or np.any(
        bounds["accepted_max"] < bounds["observed_max"]
    ):
        raise ModelError("artifact accepted ranges must contain the observed ranges")

    weights = coef / scale
    description = {key: doc[key] for key in ("task", "metrics", "training", "input_domain") if key in doc}
    description["features"] = features
    return Model(
        name=name,
        version=version,
        sha256=digest,
        features=names,
        classes=CLASSES,
        threshold=float(threshold),
        weights=weights,
        bias=float(intercept) - float(np.dot(coef, mean / scale)),
        observed_min=bounds["observed_min"],
        observed_max=bounds["observed_max"],
        accepted_min=bounds["accepted_min"],
        accepted_max=bounds["accepted_max"],
        description=description,
    )
