"""Helpers shared by the edge_stack scenario's tests: the catalogue, the containers, re-runs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlops_testkit.ansible import parse_recap, scenario_playbook

REPO = Path(__file__).resolve().parents[5]
CATALOGUE: dict[str, Any] = yaml.safe_load((REPO / "roles/mlops/defaults/main.yml").read_text())
# What the scenario deploys (molecule.yml): Grafana is disabled (no image can be had offline),
# and the ports are the scenario's mlops_service_overrides, not the catalogue's defaults.
SCENARIO_VARS: dict[str, Any] = yaml.safe_load((Path(__file__).resolve().parents[1] / "molecule.yml").read_text())[
    "provisioner"
]["inventory"]["group_vars"]["test_hosts"]
OVERRIDES: dict[str, Any] = SCENARIO_VARS["mlops_service_overrides"]
DISABLED: list[str] = SCENARIO_VARS["mlops_disabled_services"]
ENABLED = {k: {**v, **OVERRIDES.get(k, {})} for k, v in CATALOGUE["mlops_services"].items() if k not in DISABLED}
COMPOSE_FILE = "/etc/mlops/compose/compose.yml"
# The site CA the scenario's run created on the controller, and the API key it generated.
PKI_DIR = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "pki"
# The frontend as clients reach it: HTTPS with the site CA (on the host: the CA file the role wrote).
FRONTEND_HTTP = f"http://127.0.0.1:{ENABLED['frontend']['port']}"
FRONTEND = f"https://localhost:{ENABLED['frontend']['tls_port']}"
HOST_CA = "/etc/mlops/frontend/tls/ca.crt"


def api_key() -> str:
    return (PKI_DIR / "api-key-site").read_text().strip()


def curl(host: Any, path: str, *args: str, key: str | None = None) -> tuple[int, str]:
    """`curl` on the test host against the frontend's HTTPS port, trusting the site CA only;
    returns the status code and the body."""
    header = f"-H 'X-API-Key: {key}'" if key else ""
    out = host.check_output(
        f"curl -sS --cacert {HOST_CA} {header} {' '.join(args)} -w '\\n%{{http_code}}' {FRONTEND}{path}"
    )
    body, _, status = out.rpartition("\n")
    return int(status), body


def inspect(host: Any, name: str) -> dict[str, Any]:
    """`docker inspect` of one container or image inside the test host."""
    out = host.check_output(f"docker inspect {name}")
    (doc,) = json.loads(out)
    return doc


def converge(*extra: str) -> tuple[int, str]:
    """Runs the scenario's converge playbook again, with extra ansible-playbook arguments."""
    run = scenario_playbook("converge.yml", *extra, timeout=1500)
    return run.returncode, run.output


def changed(output: str) -> int:
    """changed= summed over every host of the recap."""
    recaps = parse_recap(output)
    assert recaps, output[-3000:]
    return sum(r.changed for r in recaps)


@pytest.fixture(scope="module")
def record() -> dict[str, float]:
    """A plausible patient: every feature of the served model at its training median."""
    doc = json.loads((REPO / "services/inference-api/models/breast-cancer-lr-1.0.0/model.json").read_text())
    return {f["name"]: f["median"] for f in doc["features"]}
