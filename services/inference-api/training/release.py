"""Model releases: write, verify and derive them. Standard library only (runs anywhere a
Python 3.9+ runs: the controller, a build host, a test).

A release is a directory `<name>-<version>/` in MODEL_DIR:

    manifest.json        what the release is, the sha256 of each file, the golden records
    model.json           the model artifact (format mlops-logistic-regression/1)
    manifest.json.sig    optional: `ssh-keygen -Y sign -n mlops-model -f KEY manifest.json`

manifest.json (format mlops-model-release/1):

    {"format": "mlops-model-release/1", "name": ..., "version": ...,
     "model": {"file": "model.json", "format": "mlops-logistic-regression/1"},
     "files": {"model.json": "<sha256 hex>"},
     "golden": [{"id", "input": {30 features}, "label", "p_benign"}, ...],
     "golden_tolerance": 1e-06}

The sha256 of manifest.json itself is the release's identity (what MODEL_SHA256 pins and
what `mlops_model_info{sha256}` reports); since the manifest lists the sha256 of every file,
it covers them all. The API refuses a release whose checksums differ or whose model gives
other answers to the golden records than the manifest records.

    python release.py verify DIR                      checksums: prints `ok NAME VERSION SHA256`
    python release.py derive DIR --version V --out MODEL_DIR [--corrupt-golden | --tamper-model | --break-model]

`derive` copies a release under a new version (name and version rewritten in model.json and
the manifest, checksums recomputed): the same answers under another version, for testing
rollouts. Its flags make the releases a rollout must refuse: `--corrupt-golden` (the golden
answers are wrong, checksums valid), `--tamper-model` (model.json changed after hashing) and
`--break-model` (checksums valid, but the model cannot load: decision_threshold 2.0).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

FORMAT = "mlops-model-release/1"
MODEL_FORMAT = "mlops-logistic-regression/1"
MANIFEST = "manifest.json"
MODEL_FILE = "model.json"
SIGNATURE = MANIFEST + ".sig"
SIGNATURE_NAMESPACE = "mlops-model"
LABELS = ("malignant", "benign")
DEFAULT_TOLERANCE = 1e-6
# The golden tolerance is about floating-point noise between machines, not a licence to
# drift: a release may not ask for more.
MAX_TOLERANCE = 1e-3
# Names and versions become directory names; file names in a release are plain names.
TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ReleaseError(Exception):
    """A release that cannot be written, verified or derived: the message says why."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def serialize(obj: Any) -> bytes:
    """Canonical JSON: sorted keys, two-space indent, a final newline (stable bytes)."""
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode()


def release_dir(models: Path, name: str, version: str) -> Path:
    return models / f"{name}-{version}"


def is_plain_file_name(name: object) -> bool:
    """A file of the release directory itself: no directory part, no `..`, no hidden name."""
    return isinstance(name, str) and bool(TOKEN.match(name)) and ".." not in name


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_golden(golden: Any, tolerance: Any) -> None:
    """Raises ReleaseError unless `golden` is a non-empty list of well-formed records."""
    if not _finite(tolerance) or not 0 <= tolerance <= MAX_TOLERANCE:
        raise ReleaseError(f"golden_tolerance must be a number in 0..{MAX_TOLERANCE}")
    if not isinstance(golden, list) or not golden:
        raise ReleaseError("golden must be a non-empty list of records")
    seen: set[str] = set()
    for i, rec in enumerate(golden):
        where = f"golden[{i}]"
        if not isinstance(rec, dict):
            raise ReleaseError(f"{where} must be an object")
        rid = rec.get("id")
        if not isinstance(rid, str) or not TOKEN.match(rid):
            raise ReleaseError(f"{where}.id must match {TOKEN.pattern}")
        if rid in seen:
            raise ReleaseError(f"{where}.id {rid} is given twice")
        seen.add(rid)
        inp = rec.get("input")
        if not isinstance(inp, dict) or not inp or not all(isinstance(k, str) and _finite(v) for k, v in inp.items()):
            raise ReleaseError(f"{where}.input must map feature names to finite numbers")
        if rec.get("label") not in LABELS:
            raise ReleaseError(f"{where}.label must be one of {', '.join(LABELS)}")
        p = rec.get("p_benign")
        if not _finite(p) or not 0.0 <= p <= 1.0:
            raise ReleaseError(f"{where}.p_benign must be a number in 0..1")


def manifest_for(
    name: str,
    version: str,
    model_bytes: bytes,
    golden: list[dict[str, Any]],
    tolerance: float,
    model_format: str = MODEL_FORMAT,
) -> dict[str, Any]:
    for what, value in (("name", name), ("version", version)):
        if not TOKEN.match(value):
            raise ReleaseError(f"{what} {value!r} must match {TOKEN.pattern}")
    check_golden(golden, tolerance)
    return {
        "format": FORMAT,
        "name": name,
        "version": version,
        "model": {"file": MODEL_FILE, "format": model_format},
        "files": {MODEL_FILE: sha256_hex(model_bytes)},
        "golden": golden,
        "golden_tolerance": tolerance,
    }


def write_release(
    out_dir: Path,
    name: str,
    version: str,
    model_bytes: bytes,
    golden: list[dict[str, Any]],
    tolerance: float = DEFAULT_TOLERANCE,
    *,
    overwrite: bool = False,
) -> Path:
    """Writes `out_dir/<name>-<version>/` (model.json and manifest.json) and returns it.

    `out_dir` is the models directory (what the API reads as MODEL_DIR). The release is
    assembled in a temporary directory beside it and renamed into place, so a reader never
    sees half a release. An existing release is replaced only with `overwrite` (its old
    signature, if any, goes with it: it signed another manifest)."""
    manifest = manifest_for(name, version, model_bytes, golden, tolerance)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = release_dir(out_dir, name, version)
    if target.exists() and not overwrite:
        raise ReleaseError(f"{target} exists already (a release is never changed in place)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=out_dir))
    try:
        (tmp / MODEL_FILE).write_bytes(model_bytes)
        (tmp / MANIFEST).write_bytes(serialize(manifest))
        tmp.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read_manifest(path: Path) -> tuple[dict[str, Any], bytes]:
    """(manifest, its bytes) of a release directory; checks the manifest's shape."""
    mpath = Path(path) / MANIFEST
    try:
        raw = mpath.read_bytes()
    except FileNotFoundError:
        raise ReleaseError(f"{mpath}: manifest not found") from None
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ReleaseError(f"{mpath} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise ReleaseError(f"{mpath} is not a JSON object")
    if manifest.get("format") != FORMAT:
        raise ReleaseError(f"{mpath}: format {manifest.get('format')!r} is not {FORMAT!r}")
    for key in ("name", "version"):
        if not isinstance(manifest.get(key), str) or not TOKEN.match(manifest[key]):
            raise ReleaseError(f"{mpath}: {key} must match {TOKEN.pattern}")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ReleaseError(f"{mpath}: files must map file names to sha256 hex digests")
    for fname, digest in files.items():
        if not is_plain_file_name(fname) or fname in (MANIFEST, SIGNATURE):
            raise ReleaseError(f"{mpath}: {fname!r} is not a plain file name of the release")
        if not isinstance(digest, str) or not SHA256.match(digest):
            raise ReleaseError(f"{mpath}: files[{fname!r}] is not a sha256 hex digest")
    model = manifest.get("model")
    if (
        not isinstance(model, dict)
        or not isinstance(model.get("file"), str)
        or not isinstance(model.get("format"), str)
    ):
        raise ReleaseError(f"{mpath}: model must be {{'file', 'format'}}")
    if model["file"] not in files:
        raise ReleaseError(f"{mpath}: the model file {model['file']!r} is not listed in files")
    try:
        check_golden(manifest.get("golden"), manifest.get("golden_tolerance"))
    except ReleaseError as exc:
        raise ReleaseError(f"{mpath}: {exc}") from None
    return manifest, raw


def verify(path: Path) -> tuple[dict[str, Any], str]:
    """Checks a release directory: the manifest's shape and every listed file's sha256.
    Returns (manifest, sha256 of manifest.json). The golden answers need the model's code:
    the API checks those when it loads the release."""
    path = Path(path)
    manifest, raw = read_manifest(path)
    if path.name != f"{manifest['name']}-{manifest['version']}":
        raise ReleaseError(f"{path} holds {manifest['name']} {manifest['version']}: the directory name differs")
    for fname, want in manifest["files"].items():
        try:
            got = sha256_hex((path / fname).read_bytes())
        except FileNotFoundError:
            raise ReleaseError(f"{path / fname}: listed in the manifest, not found") from None
        if got != want:
            raise ReleaseError(f"checksum of {fname} does not match the manifest (sha256 {got}, expected {want})")
    return manifest, sha256_hex(raw)


def derive(src: Path, version: str, out: Path, mode: str | None = None) -> Path:
    """A copy of release `src` as `version` in `out` (the models directory).

    mode None: the same model and golden records (the answers do not change).
    "corrupt-golden": every golden answer inverted (label swapped, p_benign -> 1 - p_benign).
    "tamper-model": model.json changed after the checksums were taken (intercept + 1).
    "break-model": model.json holds decision_threshold 2.0 (checksums valid, load fails)."""
    if mode not in (None, "corrupt-golden", "tamper-model", "break-model"):
        raise ReleaseError(f"unknown derive mode {mode!r}")
    manifest, _ = verify(src)
    name = manifest["name"]
    doc = json.loads((Path(src) / manifest["model"]["file"]).read_bytes())
    if not isinstance(doc, dict):
        raise ReleaseError(f"{src}: the model file is not a JSON object")
    doc["name"], doc["version"] = name, version
    if mode == "break-model":
        doc["decision_threshold"] = 2.0
    golden = [dict(rec) for rec in manifest["golden"]]
    if mode == "corrupt-golden":
        for rec in golden:
            rec["label"] = LABELS[1 - LABELS.index(rec["label"])]
            rec["p_benign"] = 1.0 - rec["p_benign"]
    target = write_release(Path(out), name, version, serialize(doc), golden, manifest["golden_tolerance"])
    if mode == "tamper-model":
        doc["intercept"] = doc["intercept"] + 1.0
        (target / MODEL_FILE).write_bytes(serialize(doc))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="release.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_verify = sub.add_parser("verify", help="check a release's manifest and checksums")
    p_verify.add_argument("release", type=Path, help="the release directory <name>-<version>")
    p_derive = sub.add_parser("derive", help="copy a release under a new version (for rollout tests)")
    p_derive.add_argument("release", type=Path, help="the source release directory")
    p_derive.add_argument("--version", required=True, help="version of the new release")
    p_derive.add_argument("--out", type=Path, required=True, help="models directory to write <name>-<version>/ into")
    damage = p_derive.add_mutually_exclusive_group()
    damage.add_argument(
        "--corrupt-golden",
        dest="mode",
        action="store_const",
        const="corrupt-golden",
        help="invert every golden answer (checksums valid): the API finds the golden records differ",
    )
    damage.add_argument(
        "--tamper-model",
        dest="mode",
        action="store_const",
        const="tamper-model",
        help="change model.json after hashing: the checksum of model.json no longer matches",
    )
    damage.add_argument(
        "--break-model", dest="mode", action="store_const", const="break-model",
        help="decision_threshold 2.0 (checksums valid): the model cannot load",
    )  # fmt: skip
    args = parser.parse_args(argv)
    try:
        if args.command == "verify":
            manifest, digest = verify(args.release)
            print(f"ok {manifest['name']} {manifest['version']} {digest}")
        else:
            target = derive(args.release, args.version, args.out, args.mode)
            print(f"wrote {target} ({args.mode or 'good'})")
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
