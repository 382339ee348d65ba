"""Renders the monitoring roles' files with the real roles (ansible-playbook render.yml).

The playbook runs on the controller with connection local, the way k8s_topology renders
(include_role tasks_from preflight.yml and render.yml), in a few seconds.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mlops_testkit import ROOT
from mlops_testkit.ansible import INPUT_ENV, PlaybookRun
from mlops_testkit.ansible import run_playbook as ansible_playbook

HERE = Path(__file__).resolve().parent


# Series of the fleet's run and drift metrics in a rule or query (plugins/callback/run_metrics.py).
RUN_METRIC = re.compile(r"\bmlops_ansible_[a-z_]+")


@functools.cache
def run_metric_names() -> frozenset[str]:
    """The names plugins/callback/run_metrics.py, the one writer of the run metrics, gives them."""
    spec = importlib.util.spec_from_file_location("run_metrics", ROOT / "plugins/callback/run_metrics.py")
    assert spec and spec.loader
    # Registered before it runs: its dataclasses look their module up in sys.modules.
    writer = sys.modules.setdefault("run_metrics", importlib.util.module_from_spec(spec))
    spec.loader.exec_module(writer)
    return frozenset(metric.name for metric in writer.METRICS)


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

    @property
    def alertmanager(self) -> Path:
        return self.directory / "alertmanager"

    def computed(self) -> dict[str, Any]:
        return json.loads((self.directory / "computed.json").read_text())


def run_playbook(
    playbook: Path, extra_vars: dict[str, Any], env: dict[str, str] | None = None, args: list[str] | None = None
) -> PlaybookRun:
    """A playbook of this directory on the controller (connection local), with the project's
    ansible.cfg and none of the caller's PROMETHEUS_RETENTION / GRAFANA_ADMIN_PASSWORD."""
    return ansible_playbook(
        playbook,
        *(args or []),
        inventory="localhost,",
        # The modules run with this Python, not whatever interpreter discovery finds.
        extra_vars={"ansible_python_interpreter": sys.executable, **extra_vars},
        env={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), **(env or {})},
        unset_env=INPUT_ENV,
        timeout=300,
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
        return Render(directory, run.returncode, run.output)

    return _render


@pytest.fixture(scope="session")
def default_render(tmp_path_factory: pytest.TempPathFactory) -> Render:
    """The files with every default, rendered once for the session."""
    directory = tmp_path_factory.mktemp("default-render")
    run = run_playbook(HERE / "render.yml", {"monitoring_render_dir": str(directory)})
    assert run.returncode == 0, run.tail()
    return Render(directory, run.returncode, run.output)


@pytest.fixture(scope="session")
def promtool() -> str:
    """Debian's promtool (package prometheus): on this machine and in CI."""
    found = os.environ.get("MLOPS_PROMTOOL") or shutil.which("promtool")
    if not found:
        pytest.fail("promtool not found: install Debian's prometheus package (or set MLOPS_PROMTOOL)")
    return found
