"""Helpers of the model_release scenario: releases built on the controller, and role runs
through deliver.yml whose reported facts the tests read back."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mlops_testkit.ansible import PlaybookRun, scenario_playbook

SCENARIO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SCENARIO))

import releases  # noqa: E402  (the scenario's release builder, beside molecule.yml)

HOST_DIR = "/var/lib/mlops/models"
NAME = releases.NAME
# Where prepare.yml and the tests build releases: the directory converge.yml gives the role.
RELEASES = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "releases"


@dataclass(frozen=True)
class RoleRun:
    """One deliver.yml run: the playbook run, and per step what the role reported."""

    run: PlaybookRun
    results: list[dict[str, Any]]

    def messages(self) -> str:
        """Every failure message of the run, as one text."""
        return "\n".join(f.message for f in self.run.failures())


def deliver(tmp_path: Path, steps: list[dict[str, Any]], *args: str, **extra: Any) -> RoleRun:
    """Run deliver.yml (the role's main, then record where a step asks) against the test host."""
    out = tmp_path / f"results-{len(list(tmp_path.glob('results-*')))}.json"
    run = scenario_playbook(
        "deliver.yml",
        *args,
        extra_vars={
            "model_release_source_dir": str(RELEASES),
            "model_release_test_steps": steps,
            "model_release_test_results_file": str(out),
            **extra,
        },
        json_results=True,
    )
    results = json.loads(out.read_text()) if out.exists() else []
    return RoleRun(run, results)


def host_state(host: Any) -> dict[str, Any]:
    return json.loads(host.file(f"{HOST_DIR}/state.json").content_string)


def releases_on_host(host: Any) -> list[str]:
    """Versions of the releases on the host, sorted."""
    out = host.check_output(f"find {HOST_DIR} -mindepth 1 -maxdepth 1 -type d -name '{NAME}-*' -printf '%f\\n'")
    return sorted(line.removeprefix(f"{NAME}-") for line in out.split())


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """Two signing keys made for this run (never kept): the allowed one and a stranger's."""
    directory = tmp_path_factory.mktemp("keys")
    return {name: releases.keypair(directory, name) for name in ("release", "stranger")}
