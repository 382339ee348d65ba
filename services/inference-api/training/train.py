"""Train the breast cancer diagnosis model and write its artifact and manifest.

The data is the Wisconsin Diagnostic Breast Cancer set that ships inside scikit-learn
(`sklearn.datasets.load_breast_cancer`): nothing is downloaded. The model is a logistic
regression on standardized features, written as JSON (scaler statistics, coefficients,
intercept, the feature domain, held-out metrics): no pickle, so loading it runs no code,
and the API evaluates it with numpy alone.

Training is deterministic: the same library versions produce the same bytes, so the
artifact committed in `models/` can be checked by retraining
(tests/services/test_model_artifact.py).

    python services/inference-api/training/train.py --version 1.0.0 --out services/inference-api/models
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
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


def feature_key(label: str) -> str:
    """`mean radius` -> `mean_radius`: the JSON field name of a scikit-learn feature."""
    return label.strip().replace(" ", "_")


def _f(value: float) -> float:
    """A plain Python float (numpy scalars are not JSON serialisable)."""
    return float(value)


def train(name: str, version: str) -> dict[str, Any]:
    data = load_breast_cancer()
    x: np.ndarray = data.data
    y: np.ndarray = data.target  # 0 = malignant, 1 = benign
    classes = [str(c) for c in data.target_names]
    labels = [str(f) for f in data.feature_names]

    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_SIZE, stratify=y, random_state=RANDOM_STATE
    )
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(C=C, max_iter=10_000).fit(scaler.transform(x_train), y_train)

    proba_benign = clf.predict_proba(scaler.transform(x_test))[:, 1]
    predicted = (proba_benign >= DECISION_THRESHOLD).astype(int)
    # Rows: true class, columns: predicted class, in the order malignant (0), benign (1).
    (mal_as_mal, mal_as_ben), (ben_as_mal, ben_as_ben) = confusion_matrix(y_test, predicted, labels=[0, 1])
    sensitivity = mal_as_mal / (mal_as_mal + mal_as_ben)  # malignant cases found
    specificity = ben_as_ben / (ben_as_ben + ben_as_mal)  # benign cases cleared
    cv = cross_val_score(
        make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=10_000)),
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
            "estimator": f"StandardScaler + LogisticRegression(C={C}, solver=lbfgs)",
            "scikit_learn_version": sklearn.__version__,
            "numpy_version": np.__version__,
        },
    }


def serialize(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def write(out: Path, name: str, version: str) -> tuple[Path, Path]:
    artifact = serialize(train(name, version))
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / f"{name}-{version}.model.json"
    manifest_path = out / f"{name}-{version}.manifest.json"
    model_path.write_bytes(artifact)
    manifest = {
        "name": name,
        "version": version,
        "format": FORMAT,
        "file": model_path.name,
        "sha256": hashlib.sha256(artifact).hexdigest(),
    }
    manifest_path.write_bytes(serialize(manifest))
    return model_path, manifest_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default=DEFAULT_NAME)
    parser.add_argument("--version", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    model_path, manifest_path = write(args.out, args.name, args.version)
    manifest = json.loads(manifest_path.read_text())
    print(f"wrote {model_path} ({manifest['sha256']}) and {manifest_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
