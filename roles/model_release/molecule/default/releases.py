"""Builds model releases on the controller for the model_release scenario.

A release is a directory <name>-<version>/ with a model file and manifest.json (format
mlops-model-release/1, docs/model-releases.md), optionally signed with ssh-keygen. The model
file's content does not matter to the role: each release gets a different one.

    python3 releases.py ROOT VERSION [--name NAME] [--key PRIVATE_KEY]

prepare.yml calls it; the verifier's tests import it (tests/conftest.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
from pathlib import Path

NAME = "breast-cancer-lr"
NAMESPACE = "mlops-model"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(root: Path, version: str, name: str = NAME, key: Path | None = None) -> Path:
    """Write (or rewrite) release <root>/<name>-<version>/ and return its directory."""
    release = root / f"{name}-{version}"
    release.mkdir(parents=True, exist_ok=True)
    model = release / "model.json"
    model.write_text(
        json.dumps(
            {
                "format": "mlops-logistic-regression/1",
                "features": ["mean radius", "mean texture"],
                "coef": [0.5, -0.25],
                "intercept": float(len(version)),
                "version": version,
            },
            indent=1,
        )
        + "\n"
    )
    manifest = {
        "format": "mlops-model-release/1",
        "name": name,
        "version": version,
        "model": {"file": "model.json", "format": "mlops-logistic-regression/1"},
        "files": {"model.json": sha256(model)},
        "golden": [
            {"id": "g1", "input": {"mean radius": 1.0, "mean texture": 2.0}, "label": "benign", "p_benign": 0.97}
        ],
        "golden_tolerance": 1e-6,
    }
    (release / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (release / "manifest.json.sig").unlink(missing_ok=True)
    if key is not None:
        sign(release, key)
    return release


def sign(release: Path, key: Path) -> Path:
    """manifest.json.sig made with `ssh-keygen -Y sign -n mlops-model` (as scripts/model-release-sign.sh)."""
    (release / "manifest.json.sig").unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-Y", "sign", "-n", NAMESPACE, "-f", str(key), str(release / "manifest.json")],
        check=True,
        capture_output=True,
    )
    return release / "manifest.json.sig"


def keypair(directory: Path, name: str) -> tuple[Path, str]:
    """A new ed25519 key (no passphrase) and its allowed_signers line without options."""
    key = directory / name
    principal = f"{name}@mlops.test"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", principal, "-f", str(key)],
        check=True,
        capture_output=True,
    )
    kind, blob = Path(f"{key}.pub").read_text().split()[:2]
    return key, f"{principal} {kind} {blob}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path)
    parser.add_argument("version")
    parser.add_argument("--name", default=NAME)
    parser.add_argument("--key", type=Path)
    ns = parser.parse_args()
    print(build(ns.root, ns.version, ns.name, ns.key))


if __name__ == "__main__":
    main()
