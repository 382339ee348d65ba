"""Loading and verifying a model release, and evaluating its model.

A release is a directory `<MODEL_DIR>/<name>-<version>/` (written by training/release.py):

    manifest.json      {"format": "mlops-model-release/1", "name", "version",
                        "model": {"file": "model.json", "format": "mlops-logistic-regression/1"},
                        "files": {"model.json": "<sha256>"}, "golden": [...], "golden_tolerance"}
    model.json         the model artifact
    manifest.json.sig  optional ssh-keygen signature (Ansible verifies it; the API ignores it)

load_release() refuses (raises ModelError, and the API stays up but not ready) unless: the
manifest exists, hashes to MODEL_SHA256 when that pin is set (checked before it is parsed),
has the release format and names the requested model and version; every file it lists is a
plain file name of the directory whose bytes hash to the listed sha256 (all of them checked
before any is parsed); the model file is one of them and declares the same name, version
and format; its features are exactly the ones the API accepts, with finite numbers of the
right shapes; and the golden records are well formed. Whether the model gives the golden
answers is checked by the API with the code that serves /predict (app.Service).

ModelError.check says which kind of check failed: `load` (missing, unreadable or malformed
files), `checksum` (a sha256 differs from the manifest or the pin), `golden` (the golden
records). Their messages keep to those words, so a reason names its kind.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "mlops-logistic-regression/1"
RELEASE_FORMAT = "mlops-model-release/1"
MANIFEST = "manifest.json"
CLASSES = ("malignant", "benign")
# A release's file names: plain names of its directory (no `/`, no `..`, not hidden).
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
GOLDEN_ID = FILE_NAME
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# The golden tolerance absorbs floating-point noise between machines, nothing more.
MAX_GOLDEN_TOLERANCE = 1e-3
CHECKS = ("load", "checksum", "golden")


class ModelError(Exception):
    """The requested model cannot be served: the message says why, `check` which kind of
    check refused it (load, checksum or golden)."""

    def __init__(self, message: str, check: str = "load") -> None:
        super().__init__(message)
        self.check = check


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


@dataclass(frozen=True)
class GoldenRecord:
    id: str
    input: dict[str, Any]
    label: str
    p_benign: float


@dataclass(frozen=True)
class Release:
    """A verified release: its identity (the sha256 of manifest.json), the sha256 of each of
    its files, the model, and the golden records still to be checked against the model."""

    name: str
    version: str
    sha256: str
    files: dict[str, str]
    model: Model
    golden: tuple[GoldenRecord, ...]
    golden_tolerance: float


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ModelError(f"{what} not found ({path})") from None
    except OSError as exc:
        raise ModelError(f"{what} cannot be read ({path}: {exc.strerror})") from None


def _parse(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{what} is not valid JSON: {exc}") from None


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(doc: dict[str, Any], key: str, length: int) -> np.ndarray:
    values = doc.get(key)
    if not isinstance(values, list) or len(values) != length:
        raise ModelError(f"field {key!r} must be a list of {length} numbers")
    if not all(_finite(v) for v in values):
        raise ModelError(f"field {key!r} holds a value that is not a finite number")
    return np.asarray(values, dtype=np.float64)


def parse_model(raw: bytes, name: str, version: str, expected_features: tuple[str, ...]) -> Model:
    """The model of an artifact whose bytes were verified: raises ModelError (check `load`)
    unless it is a well-formed mlops-logistic-regression/1 artifact of `name` `version`."""
    doc = _parse(raw, "it")
    if not isinstance(doc, dict):
        raise ModelError("it is not a JSON object")
    if (doc.get("name"), doc.get("version"), doc.get("format")) != (name, version, FORMAT):
        raise ModelError(
            f"it declares {doc.get('name')} {doc.get('version')} ({doc.get('format')}), "
            f"the manifest {name} {version} ({FORMAT})"
        )
    if tuple(doc.get("classes", ())) != CLASSES or doc.get("positive_class_index") != 1:
        raise ModelError(f"classes must be {list(CLASSES)} with positive_class_index 1")

    features = doc.get("features")
    if not isinstance(features, list) or not all(isinstance(f, dict) for f in features):
        raise ModelError("field 'features' must be a list of objects")
    names = tuple(str(f.get("name")) for f in features)
    if names != expected_features:
        missing = sorted(set(expected_features) - set(names))
        extra = sorted(set(names) - set(expected_features))
        raise ModelError(f"features do not match the API's inputs (missing {missing}, unexpected {extra}, or order)")
    n = len(names)
    table = {
        key: [f.get(key) for f in features] for key in ("observed_min", "observed_max", "accepted_min", "accepted_max")
    }
    bounds = {key: _numbers(table, key, n) for key in table}
    mean = _numbers(doc.get("scaler") or {}, "mean", n)
    scale = _numbers(doc.get("scaler") or {}, "scale", n)
    if np.any(scale <= 0):
        raise ModelError("the scaler has a non-positive scale")
    coef = _numbers(doc, "coefficients", n)
    intercept = doc.get("intercept")
    threshold = doc.get("decision_threshold")
    for key, value in (("intercept", intercept), ("decision_threshold", threshold)):
        if not _finite(value):
            raise ModelError(f"field {key!r} must be a finite number")
    assert isinstance(intercept, (int, float)) and isinstance(threshold, (int, float))
    if not 0.0 < threshold < 1.0:
        raise ModelError("decision_threshold must lie strictly between 0 and 1")
    if np.any(bounds["accepted_min"] > bounds["observed_min"]) or np.any(
        bounds["accepted_max"] < bounds["observed_max"]
    ):
        raise ModelError("accepted ranges must contain the observed ranges")

    weights = coef / scale
    description = {key: doc[key] for key in ("task", "metrics", "training", "input_domain") if key in doc}
    description["features"] = features
    return Model(
        name=name,
        version=version,
        sha256=hashlib.sha256(raw).hexdigest(),
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


def _golden(manifest: dict[str, Any]) -> tuple[tuple[GoldenRecord, ...], float]:
    tolerance = manifest.get("golden_tolerance")
    if not _finite(tolerance) or not 0 <= tolerance <= MAX_GOLDEN_TOLERANCE:
        raise ModelError(f"golden records: golden_tolerance must be a number in 0..{MAX_GOLDEN_TOLERANCE}", "golden")
    records = manifest.get("golden")
    if not isinstance(records, list) or not records:
        raise ModelError("golden records: the manifest has none (a release must carry its golden records)", "golden")
    out = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise ModelError(f"golden records: record {i} is not an object", "golden")
        rid, inp, label, p = rec.get("id"), rec.get("input"), rec.get("label"), rec.get("p_benign")
        if not isinstance(rid, str) or not GOLDEN_ID.match(rid):
            raise ModelError(f"golden records: record {i} has no id matching {GOLDEN_ID.pattern}", "golden")
        if not isinstance(inp, dict) or label not in CLASSES or not _finite(p) or not 0.0 <= p <= 1.0:
            raise ModelError(
                f"golden records: {rid} must hold an input object, a label in {list(CLASSES)} and p_benign in 0..1",
                "golden",
            )
        out.append(GoldenRecord(rid, inp, label, float(p)))
    return tuple(out), float(tolerance)


def load_release(
    model_dir: Path,
    name: str,
    version: str,
    expected_features: tuple[str, ...],
    pinned_sha256: str | None = None,
) -> Release:
    """The release MODEL_DIR/<name>-<version>/, verified (see the module's docstring)."""
    directory = model_dir / f"{name}-{version}"
    raw = _read(directory / MANIFEST, "manifest")
    digest = hashlib.sha256(raw).hexdigest()
    if pinned_sha256 is not None and digest != pinned_sha256:
        raise ModelError(
            f"checksum of {MANIFEST} does not match MODEL_SHA256 (sha256 {digest}, pinned {pinned_sha256})", "checksum"
        )
    manifest = _parse(raw, "manifest")
    if not isinstance(manifest, dict):
        raise ModelError("manifest is not a JSON object")
    if manifest.get("format") != RELEASE_FORMAT:
        raise ModelError(f"manifest format {manifest.get('format')!r} is not supported (expected {RELEASE_FORMAT!r})")
    if (manifest.get("name"), manifest.get("version")) != (name, version):
        raise ModelError(f"manifest describes {manifest.get('name')} {manifest.get('version')}, not {name} {version}")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ModelError("manifest field 'files' must map file names to sha256 hex digests")
    for file_name, want in files.items():
        if not isinstance(file_name, str) or not FILE_NAME.match(file_name) or ".." in file_name:
            raise ModelError(f"manifest lists {file_name!r}: a release's files must be plain file names")
        if not isinstance(want, str) or not SHA256.match(want):
            raise ModelError(f"manifest lists {file_name} without a sha256 hex digest")
    entry = manifest.get("model")
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        raise ModelError("manifest field 'model' must be {'file', 'format'}")
    if entry.get("format") != FORMAT:
        raise ModelError(f"model format {entry.get('format')!r} is not supported (expected {FORMAT!r})")
    model_file = entry["file"]
    if model_file not in files:
        raise ModelError(f"model file {model_file!r} is not listed in the manifest's files")

    # Every listed file is read and hashed before anything of any of them is parsed.
    contents: dict[str, bytes] = {}
    for file_name, want in files.items():
        data = _read(directory / file_name, f"{file_name} (listed in the manifest)")
        got = hashlib.sha256(data).hexdigest()
        if got != want:
            raise ModelError(
                f"checksum of {file_name} does not match the manifest (sha256 {got}, expected {want})", "checksum"
            )
        contents[file_name] = data

    golden, tolerance = _golden(manifest)
    try:
        model = parse_model(contents[model_file], name, version, expected_features)
    except ModelError as exc:
        raise ModelError(f"cannot load {model_file}: {exc}") from None
    return Release(
        name=name,
        version=version,
        sha256=digest,
        files=dict(files),
        model=model,
        golden=golden,
        golden_tolerance=tolerance,
    )


def load_model(
    model_dir: Path,
    name: str,
    version: str,
    expected_features: tuple[str, ...],
    pinned_sha256: str | None = None,
) -> Model:
    """The model of a verified release (checksums; golden answers are the API's to check)."""
    return load_release(model_dir, name, version, expected_features, pinned_sha256).model
