"""Model rollouts on the converged host, under a steady load through the frontend: a good
release goes live with no failed request; a release whose checksum, readiness or golden
records fail leaves the serving version untouched, with no failed request and a message
naming the version and the check; a rollback on demand returns to the previous release.

Marked `rerun` (run after every other test of the scenario): they change the served model.
They end where they started: the inventory's version, live again after the rollback.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import CATALOGUE, ENABLED, PKI_DIR, REPO, changed, converge
from mlops_testkit.ansible import run_playbook, scenario_groups, scenario_inventory, task_block

pytestmark = pytest.mark.rerun

HOST_DIR = "/var/lib/mlops/models"
LOAD_SCRIPT = REPO / "benchmarks/rollout/load.py"
STOP = "/tmp/rollout-load.stop"
SHIPPED = CATALOGUE["mlops_model_version"]


def host_name(host: Any) -> str:
    """The test host's container name (the scenario's one host)."""
    (name,) = scenario_groups()["test_hosts"]
    return name


def served_version(host: Any) -> str:
    api = f"http://127.0.0.1:{ENABLED['inference-api']['port']}"
    return str(json.loads(host.check_output(f"curl -sS {api}/ready"))["model"]["version"])


def state(host: Any) -> dict[str, Any]:
    return dict(json.loads(host.file(f"{HOST_DIR}/state.json").content_string))


@contextmanager
def load(host: Any, record: dict[str, float]) -> Iterator[dict[str, Any]]:
    """50 predictions a second through the frontend's HTTPS port, from inside the test host,
    for as long as the block runs; the summary lands in the yielded dict."""
    host.run(f"rm -f {STOP}")
    host.run("mkdir -p /tmp/rollout-load")
    for name, content in (("load.py", LOAD_SCRIPT.read_text()), ("record.json", json.dumps(record))):
        subprocess.run(
            ["docker", "exec", "-i", host_name(host), "sh", "-c", f"cat > /tmp/rollout-load/{name}"],
            input=content,
            text=True,
            check=True,
        )
    key_file = "/tmp/rollout-load/key"
    subprocess.run(
        ["docker", "exec", "-i", host_name(host), "sh", "-c", f"umask 077; cat > {key_file}"],
        input=(PKI_DIR / "api-key-site").read_text(),
        text=True,
        check=True,
    )
    proc = subprocess.Popen(
        ["docker", "exec", host_name(host), "python3", "/tmp/rollout-load/load.py",
         "--url", f"https://localhost:{ENABLED['frontend']['tls_port']}", "--cacert", "/etc/mlops/frontend/tls/ca.crt",
         "--api-key-file", key_file, "--rate", "50", "--stop-file", STOP, "--record", "/tmp/rollout-load/record.json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    summary: dict[str, Any] = {}
    try:
        yield summary
    finally:
        host.run(f"touch {STOP}")
        out, err = proc.communicate(timeout=120)
        summary.update(json.loads(out.strip().splitlines()[-1]) if out.strip() else {"error": err})


def rollout(*args: str) -> tuple[int, str]:
    return converge(*args)


def test_a_good_release_goes_live_without_a_failed_request(host: Any, record: dict[str, float]) -> None:
    assert served_version(host) == SHIPPED
    with load(host, record) as seen:
        rc, out = rollout("-e", "mlops_model_version=1.1.0")
    assert rc == 0, out[-4000:]
    print(f"rollout 1.1.0 under load: {json.dumps(seen)}")
    assert seen["failed"] == 0, seen
    assert seen["sent"] >= 100, seen
    assert set(seen["versions"]) == {SHIPPED, "1.1.0"}, seen
    assert served_version(host) == "1.1.0"
    assert (state(host)["live"], state(host)["previous"]) == ("1.1.0", SHIPPED)
    # Nothing of the rollout is left behind: no candidate, the frontend back on the service.
    assert host.run(f"docker container inspect {ENABLED['inference-api']['container_name']}-next").rc != 0
    upstream = host.file("/etc/mlops/frontend/live/api_upstream").content_string.strip()
    assert upstream == f"http://inference-api:{ENABLED['inference-api']['port']}"


def test_a_rerun_of_the_live_release_changes_nothing(host: Any) -> None:
    """Nor does it run `up`: the project runs what compose.yml says (tasks/rollout-check.yml)."""
    rc, out = rollout("-e", "mlops_model_version=1.1.0")
    assert rc == 0, out[-4000:]
    assert changed(out) == 0, out[-4000:]
    deploy = task_block(out, "edge_stack : Deploy the Compose project and wait until it is healthy]")
    assert "skipping: [" in deploy, deploy


@pytest.mark.parametrize(
    ("version", "check"),
    [("1.2.0-tampered", "checksum"), ("1.3.0-broken", "not ready"), ("1.4.0-golden", "golden")],
)
def test_a_bad_release_leaves_the_serving_version_untouched(
    host: Any, record: dict[str, float], version: str, check: str
) -> None:
    container = ENABLED["inference-api"]["container_name"]
    before = host.check_output(f"docker inspect --format '{{{{.Id}}}}' {container}")
    with load(host, record) as seen:
        rc, out = rollout("-e", f"mlops_model_version={version}")
    print(f"refused rollout of {version} under load: {json.dumps(seen)}")
    assert rc != 0, out[-4000:]
    assert version in out and check in out, out[-4000:]
    assert seen["failed"] == 0, seen
    assert set(seen["versions"]) == {"1.1.0"}, seen
    assert served_version(host) == "1.1.0"
    assert host.check_output(f"docker inspect --format '{{{{.Id}}}}' {container}") == before
    assert state(host)["live"] == "1.1.0"
    assert host.run(f"docker container inspect {container}-next").rc != 0


def test_rollback_on_demand_returns_to_the_previous_release(host: Any, record: dict[str, float]) -> None:
    with load(host, record) as seen:
        run = run_playbook(
            REPO / "playbooks/model-rollback.yml",
            inventory=scenario_inventory(),
            env={"ANSIBLE_COLLECTIONS_PATH": str(REPO / "collections")},
            cwd=Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]),
            timeout=1500,
        )
    print(f"rollback under load: {json.dumps(seen)}")
    assert run.returncode == 0, run.tail()
    assert seen["failed"] == 0, seen
    assert served_version(host) == SHIPPED
    assert (state(host)["live"], state(host)["previous"]) == (SHIPPED, "1.1.0")


def test_check_mode_says_what_would_roll_and_changes_nothing(host: Any) -> None:
    container = ENABLED["inference-api"]["container_name"]
    before = host.check_output(f"docker inspect --format '{{{{.Id}}}}' {container}")
    rc, out = rollout("--check", "-e", "mlops_model_version=1.1.0")
    assert rc == 0, out[-4000:]
    assert "Would roll inference-api over to breast-cancer-lr 1.1.0" in " ".join(out.split()), out[-4000:]
    assert host.check_output(f"docker inspect --format '{{{{.Id}}}}' {container}") == before
    assert served_version(host) == SHIPPED
