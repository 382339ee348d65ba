"""Reads one model release directory on the controller, for the model_release role's preflight.

    python3 inspect_release.py RELEASE_DIR

Prints one JSON object and exits 0 whatever it finds: the role's asserts decide, and say why.

    {"manifest":  {"exists", "regular", "size", "sha256", "error", "data"},
     "signature": {"exists", "regular", "size", "sha256"},
     "files": {"<name>": {"exists", "regular", "inside", "size", "sha256"}}}

`files` covers what the manifest lists (when it parses and its `files` is an object). A file
is hashed only when it is a regular file (not a symbolic link) whose resolved path stays inside
the release directory. The manifest is read as strict JSON, as the inference API reads it.
Run by a pipe lookup, in the controller's own Python: one process for everything, instead of
a module run per file.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
from typing import Any


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def describe(path: str, inside_of: str | None = None) -> dict[str, Any]:
    """exists / regular / size / sha256 of a path (sha256 only for a regular file inside inside_of)."""
    info: dict[str, Any] = {"exists": False, "regular": False, "size": 0, "sha256": None}
    if inside_of is not None:
        real = os.path.realpath(path)
        info["inside"] = real.startswith(inside_of.rstrip("/") + "/")
    try:
        st = os.lstat(path)
    except OSError:
        return info
    info.update(exists=True, regular=stat.S_ISREG(st.st_mode), size=st.st_size)
    if info["regular"] and info.get("inside", True):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        info["sha256"] = digest.hexdigest()
    return info


def inspect(release: str) -> dict[str, Any]:
    release = os.path.realpath(release)
    manifest_path = os.path.join(release, "manifest.json")
    manifest = describe(manifest_path) | {"error": None, "data": None}
    if manifest["regular"]:
        try:
            with open(manifest_path, encoding="utf-8") as f:
                manifest["data"] = json.load(f, parse_constant=_reject_constant)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            manifest["error"] = str(exc)
    files: dict[str, Any] = {}
    listed = manifest["data"].get("files") if isinstance(manifest["data"], dict) else None
    if isinstance(listed, dict):
        for name in listed:
            # Absolute names and NUL bytes never name a file of the release.
            if name and "\0" not in name and not name.startswith("/"):
                files[name] = describe(os.path.join(release, name), inside_of=release)
    return {
        "manifest": manifest,
        "signature": describe(os.path.join(release, "manifest.json.sig")),
        "files": files,
    }


if __name__ == "__main__":
    json.dump(inspect(sys.argv[1]), sys.stdout)
