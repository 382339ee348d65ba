"""Render an inventory with playbooks/render.yml, once per test session, and read the result.

Shared by tests/k8s and tests/test_parity.py. Renderings are cached on disk under a directory
keyed by the pytest process, so both test modules reuse the same rendering even when pytest
imports this module under two names.
"""

from __future__ import annotations

import atexit
import base64
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
INVENTORIES = Path(__file__).resolve().parent / "inventories"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CACHE = Path(tempfile.gettempdir()) / f"mlops-k8s-render-{os.getpid()}"


def _cleanup() -> None:
    shutil.rmtree(_CACHE, ignore_errors=True)


atexit.register(_cleanup)


@dataclass(frozen=True)
class Rendering:
    root: Path

    @property
    def k8s(self) -> Path:
        return self.root / "k8s"

    @property
    def compose_file(self) -> Path:
        return self.root / "compose" / "compose.yml"

    def manifest_files(self) -> list[Path]:
        return sorted(self.k8s.glob("*.yaml"))

    def objects(self) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = []
        for path in self.manifest_files():
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
        return docs

    def compose(self) -> dict[str, Any]:
        data = yaml.safe_load(self.compose_file.read_text())
        assert isinstance(data, dict)
        return data


def ansible_env() -> dict[str, str]:
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    venv_bin = REPO / ".venv" / "bin"
    if venv_bin.is_dir():
        env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_render(inventory: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run playbooks/render.yml for an inventory into `out`; never raises on failure."""
    return subprocess.run(
        [
            "ansible-playbook",
            "playbooks/render.yml",
            "-i",
            str(inventory),
            "-e",
            f"mlops_render_dir={out}",
            # The generated API key and the site CA land beside the rendering, not in the user's home.
            "-e",
            f"mlops_pki_dir={out}/pki",
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=ansible_env(),
        timeout=900,
        check=False,
    )


def render(name: str) -> Rendering:
    """Render the fixture inventory `name` (tests/k8s/inventories/<name>), once per session."""
    out = _CACHE / name
    done = out / ".rendered"
    if not done.exists():
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        run = run_render(INVENTORIES / name, out)
        output = ANSI.sub("", run.stdout + run.stderr)
        assert run.returncode == 0, f"render of inventory {name} failed:\n{output[-6000:]}"
        done.write_text("ok\n")
    return Rendering(out)


def mounted_files(objects: list[dict[str, Any]], deployment: str, mount_path: str) -> dict[str, str]:
    """Files a Deployment's pod sees under `mount_path`, laid out from its ConfigMaps and Secrets.

    Follows the volume mounted there (configMap, secret or projected sources, with or without
    `items`), so tests compare what the container reads, whatever the objects are named.
    """
    kinds = {"configMap": "ConfigMap", "secret": "Secret"}
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    spec = by_name[("Deployment", deployment)]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == mount_path)
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    sources = volume["projected"]["sources"] if "projected" in volume else [volume]
    files: dict[str, str] = {}
    for source in sources:
        for field, kind in kinds.items():
            if field not in source:
                continue
            ref = source[field]
            obj = by_name[(kind, ref.get("name") or ref.get("secretName"))]
            data = obj.get("data", {})
            for item in ref.get("items") or [{"key": key, "path": key} for key in data]:
                value = data[item["key"]]
                files[item["path"]] = base64.b64decode(value).decode() if kind == "Secret" else value
    return files


def mib(value: str) -> int:
    """Compose memory (`512m`, `1g`) or Kubernetes quantity (`512Mi`, `1Gi`) in MiB."""
    match = re.fullmatch(r"(\d+)(m|g|Mi|Gi)", str(value))
    assert match, f"unexpected memory quantity {value!r}"
    number, unit = int(match.group(1)), match.group(2)
    return number * (1024 if unit in ("g", "Gi") else 1)


def millicores(value: str | int | float) -> int:
    """Compose cpus (`"0.5"`) or Kubernetes CPU quantity (`500m`, `1`) in millicores."""
    text = str(value)
    if text.endswith("m"):
        return int(text[:-1])
    return round(float(text) * 1000)
