"""Renders the monitoring roles' files with the real roles (ansible-playbook render.yml).

The playbook runs on the controller with connection local, the way k8s_topology renders
(include_role tasks_from preflight.yml and render.yml), in a few seconds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Render:
    directory: Path
    returncode: int
    output: str

    @property
    def prometheus(self) -> Path:
        return self.directory / "prometheus"

    @property
    def grafana(self) -> Path:
        return self.directory / "grafana"

    def computed(self) -> dict[str, Any]:
        return json.loads((self.directory / "computed.json").read_text())


def run_playbook(
    playbook: Path, extra_vars: dict[str, Any], env: dict[str, str] | None = None, args: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in {"PROMETHEUS_RETENTION", "GRAFANA_ADMIN_PASSWORD"}}
    environ.update(
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
    )
    environ.update(env or {})
    return subprocess.run(
        [
            "ansible-playbook",
            "-i",
            "localhost,",
            str(playbook),
            "-e",
            # The modules run with this Python, not whatever interpreter discovery finds.
            json.dumps({"ansible_python_interpreter": sys.executable, **extra_vars}),
            *(args or []),
        ],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


RenderFn = Callable[..., Render]


@pytest.fixture
def render(tmp_path: Path) -> RenderFn:
    """Render into a fresh directory; returns the directory, exit code and output."""
    count = 0

    def _render(extra_vars: dict[str, Any] | None = None, env: dict[str, str] | None = None) -> Render:
        nonlocal count
        count += 1
        directory = tmp_path / f"render{count}"
        directory.mkdir()
        run = run_playbook(HERE / "render.yml", {"monitoring_render_dir": str(directory), **(extra_vars or {})}, env)
        return Render(directory, run.returncode, ANSI.sub("", run.stdout + run.stderr))

    return _render


@pytest.fixture(scope="session")
def default_render(tmp_path_factory: pytest.TempPathFactory) -> Render:
    """The files with every default, rendered once for the session."""
    directory = tmp_path_factory.mktemp("default-render")
    run = run_playbook(HERE / "render.yml", {"monitoring_render_dir": str(directory)})
    output = ANSI.sub("", run.stdout + run.stderr)
    assert run.returncode == 0, output[-4000:]
    return Render(directory, run.returncode, output)


@pytest.fixture(scope="session")
def promtool() -> str:
    """Debian's promtool (package prometheus): on this machine and in CI."""
    found = os.environ.get("MLOPS_PROMTOOL") or shutil.which("promtool")
    if not found:
        pytest.fail("promtool not found: install Debian's prometheus package (or set MLOPS_PROMTOOL)")
    return found
