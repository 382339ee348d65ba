"""Train the breast cancer diagnosis model and write it as a model release.

The data is the Wisconsin Diagnostic Breast Cancer set that ships inside scikit-learn
(`sklearn.datasets.load_breast_cancer`): nothing is downloaded. The model is a logistic
regression on standardized features, written as JSON (scaler statistics, coefficients,
intercept, the feature domain, held-out metrics): no pickle, so loading it runs no code,
and the API evaluates it with numpy alone.

The release (release.py) is the directory `<out>/<name>-<version>/`: model.json and a
manifest with its sha256 and golden records: eight rows of the held-out test split (the
first four of each diagnosis, by dataset index, among those inside the observed training
range) with the answers this model gives them. The API refuses to serve a release whose
model answers them otherwise.

Training is deterministic: the same library versions on the same machine produce the same
bytes (tests/services/test_model_artifact.py retrains and compares with the committed
release). `--c` sets the regularisation (scikit-learn's C): another valid model, for
example a 1.1.0 to test rollouts. `--model-file` packages an existing model.json as a
release instead of training (how the committed 1.0.0 was converted, its bytes unchanged).

    python services/inference-api/training/train.py --version 1.0.0 --out services/inference-api/models
    python services/inference-api/training/train.py --version 1.1.0 --c 0.5 --out /tmp/models
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from release import DEFAULT_TOLERANCE, LABELS, write_release
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

FORMAT = "mlops-logistic-regression/1"
DEFAULT_NAME = "breast-cancer-lr"
RANDOM_STATE = 42
TEST_SIZE = 0.25
C = 1.0
# Input domain policy: a value may lie outside the range observed in training by at most
# this fraction of that range (the API warns), beyond it the API refuses the record. All
# thirty measurements are non-negative by definition, so the lower bound never goes below 0.
DOMAIN_MARGIN = 0.5
DECISION_THRESHOLD = 0.5
# Golden records: this many rows of each diagnosis from the held-out test split.
GOLDEN_PER_CLASS = 4
GOLDEN_TOLERANCE = DEFAULT_TOLERANCE


def feature_key(label: str) -> str:
    """`mean radius` -> `mean_radius`: the JSON field name of a scikit-learn feature."""
    return label.strip().replace(" ", "_")


def _f(value: float) -> float:
    """A plain Python float (numpy scalars are not JSON serialisable)."""
    return float(value)


def split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x_train, x_test, y_train, y_test and the test rows' indices in the data set (the same
    stratified split for every model: it depends on the data and RANDOM_STATE alone)."""
    data = load_breast_cancer()
    x: np.ndarray = data.data
    y: np.ndarray = data.target  # 0 = malignant, 1 = benign
    x_train, x_test, y_train, y_test, _, idx_test = train_test_split(
        x, y, np.arange(len(y)), test_size=TEST_SIZE, stratify=y, random_state=RANDOM_STATE
    )
    return x_train, x_test, y_train, y_test, idx_test


def train(name: str, version: str, c: float = C) -> dict[str, Any]:
    data = load_breast_cancer()
    x: np.ndarray = data.data
    classes = [str(k) for k in data.target_names]
    labels = [str(f) for f in data.feature_names]

    x_train, x_test, y_train, y_test, _ = split()
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(C=c, max_iter=10_000).fit(scaler.transform(x_train), y_train)

    proba_benign = clf.predict_proba(scaler.transform(x_test))[:, 1]
    predicted = (proba_benign >= DECISION_THRESHOLD).astype(int)
    # Rows: true class, columns: predicted class, in the order malignant (0), benign (1).
    (mal_as_mal, mal_as_ben), (ben_as_mal, ben_as_ben) = confusion_matrix(y_test, predicted, labels=[0, 1])
    sensitivity = mal_as_mal / (mal_as_mal + mal_as_ben)  # malignant cases found
    specificity = ben_as_ben / (ben_as_ben + ben_as_mal)  # benign cases cleared
    cv = cross_val_score(
        make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=10_000)),
        x_train,
        y_train,
        cv=StratifiedKFold(n_splits=5, shuffle=True, random_state=RANDOM_STATE),
        scoring="roc_auc",
    )

    lo = x_train.min(axis=0)
    hi = x_train.max(axis=0)
    span = hi - lo
    features = []
    for i, label in enumerate(labels):
        features.append(
            {
                "name": feature_key(label),
                "label": label,
                "observed_min": _f(lo[i]),
                "observed_max": _f(hi[i]),
                "mean": _f(x_train[:, i].mean()),
                "median": _f(np.median(x_train[:, i])),
                "accepted_min": _f(max(0.0, lo[i] - DOMAIN_MARGIN * span[i])),
                "accepted_max": _f(hi[i] + DOMAIN_MARGIN * span[i]),
            }
        )

    return {
        "format": FORMAT,
        "name": name,
        "version": version,
        "task": "binary classification of a breast mass (fine needle aspirate) as malignant or benign",
        "classes": classes,
        "positive_class_index": 1,
        "decision_threshold": DECISION_THRESHOLD,
        "features": features,
        "scaler": {
            "mean": [_f(v) for v in scaler.mean_],
            "scale": [_f(v) for v in scaler.scale_],
        },
        "coefficients": [_f(v) for v in clf.coef_[0]],
        "intercept": _f(clf.intercept_[0]),
        "input_domain": {
            "margin_fraction_of_observed_range": DOMAIN_MARGIN,
            "non_negative": True,
            "policy": (
                "values inside the observed training range are used as they are; values outside it "
                "but within accepted_min..accepted_max are used and reported in `warnings`; values "
                "beyond the accepted range are refused with HTTP 422 naming the field"
            ),
        },
        "metrics": {
            "test_accuracy": _f(accuracy_score(y_test, predicted)),
            "test_roc_auc": _f(roc_auc_score(y_test, proba_benign)),
            "test_sensitivity_malignant": _f(sensitivity),
            "test_specificity_malignant": _f(specificity),
            "cv5_roc_auc_mean": _f(cv.mean()),
            "cv5_roc_auc_std": _f(cv.std()),
        },
        "training": {
            "dataset": "Wisconsin Diagnostic Breast Cancer (sklearn.datasets.load_breast_cancer)",
            "samples_total": int(x.shape[0]),
            "samples_train": int(x_train.shape[0]),
            "samples_test": int(x_test.shape[0]),
            "split": {"test_size": TEST_SIZE, "stratified": True, "random_state": RANDOM_STATE},
            "estimator": f"StandardScaler + LogisticRegression(C={c}, solver=lbfgs)",
            "scikit_learn_version": sklearn.__version__,
            "numpy_version": np.__version__,
        },
    }


def serialize(obj: dict[str, Any]) -> bytes:
    """The artifact's bytes: sorted keys, two-space indent, a final newline."""
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def p_benign(doc: dict[str, Any], row: list[float]) -> float:
    """The artifact's probability of `benign` for one row, from its JSON fields alone, in
    plain Python (written independently of the API's evaluation, which the golden records
    then check): logistic(intercept + sum(coef * (x - mean) / scale))."""
    scaler = doc["scaler"]
    z = doc["intercept"] + sum(
        w * (v - m) / s for w, v, m, s in zip(doc["coefficients"], row, scaler["mean"], scaler["scale"], strict=True)
    )
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


def golden_records(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The golden records of an artifact: GOLDEN_PER_CLASS rows of each diagnosis of the
    held-out test split (the lowest data set indices among the rows inside the observed
    training range, so no answer carries a warning), with the artifact's own answers."""
    _, x_test, _, y_test, idx_test = split()
    features = doc["features"]
    names = [f["name"] for f in features]
    lo = np.array([f["observed_min"] for f in features])
    hi = np.array([f["observed_max"] for f in features])
    inside = np.all((x_test >= lo) & (x_test <= hi), axis=1)
    chosen: list[int] = []  # positions in the test split
    for cls in (0, 1):
        rows = [i for i in np.argsort(idx_test, kind="stable").tolist() if y_test[i] == cls and inside[i]]
        chosen += rows[:GOLDEN_PER_CLASS]
    records = []
    for i in sorted(chosen, key=lambda i: int(idx_test[i])):
        row = [float(v) for v in x_test[i]]
        p = p_benign(doc, row)
        records.append(
            {
                "id": f"wdbc-{int(idx_test[i])}",
                "input": dict(zip(names, row, strict=True)),
                "label": LABELS[1] if p >= doc["decision_threshold"] else LABELS[0],
                "p_benign": p,
            }
        )
    return records


def package(out: Path, artifact: bytes, *, overwrite: bool = False) -> Path:
    """The release of an artifact (its bytes unchanged) in out/<name>-<version>/."""
    doc = json.loads(artifact)
    return write_release(
        out, doc["name"], doc["version"], artifact, golden_records(doc), GOLDEN_TOLERANCE, overwrite=overwrite
    )


def write(out: Path, name: str, version: str, c: float = C, *, overwrite: bool = False) -> Path:
    """Trains and writes the release out/<name>-<version>/; returns its directory."""
    return package(out, serialize(train(name, version, c)), overwrite=overwrite)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default=DEFAULT_NAME)
    parser.add_argument("--version", required=True)
    parser.add_argument(
        "--out", type=Path, required=True, help="models directory: the release goes to OUT/NAME-VERSION/"
    )
    parser.add_argument("--c", type=float, default=C, help=f"inverse regularisation strength (default {C})")
    parser.add_argument("--model-file", type=Path, help="package this model.json as the release instead of training")
    parser.add_argument("--force", action="store_true", help="replace an existing release directory")
    args = parser.parse_args(argv)
    if not (args.c > 0 and math.isfinite(args.c)):
        parser.error("--c must be a positive number")
    if args.model_file is not None:
        artifact = args.model_file.read_bytes()
        doc = json.loads(artifact)
        if (doc.get("name"), doc.get("version"), doc.get("format")) != (args.name, args.version, FORMAT):
            parser.error(f"{args.model_file} is {doc.get('name')} {doc.get('version')} ({doc.get('format')})")
        target = package(args.out, artifact, overwrite=args.force)
    else:
        target = write(args.out, args.name, args.version, args.c, overwrite=args.force)
    manifest = json.loads((target / "manifest.json").read_text())
    print(f"wrote {target}: model.json {manifest['files']['model.json']}, {len(manifest['golden'])} golden records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
