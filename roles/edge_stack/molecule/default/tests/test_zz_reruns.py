"""Re-runs of the role on the converged host (named test_zz_* so they run after check mode).

Bad input stops before the host changes; a rendering Compose refuses never replaces the live
project; a re-run that recreates containers (an upgrade) keeps the data in prometheus-data,
files and stored series alike; an image on the host that is not the controller's build is
loaded again; containers stopped or removed by hand are started again.
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest
from conftest import (
    CATALOGUE,
    COMPOSE_FILE,
    DISABLED,
    ENABLED,
    OVERRIDES,
    changed,
    converge,
    inspect,
)
from mlops_testkit.ansible import task_block

MARKER = "/var/lib/docker/volumes/prometheus-data/_data/edge-stack-marker"
# Prometheus's own start time, as it scrapes itself: a series whose value names the process
# that wrote it, so a sample read back after a recreate was stored by the process before.
START_TIME = 'process_start_time_seconds{job="prometheus"}'


def series(host: Any, query: str, at: str | None = None) -> list[tuple[str, str]]:
    """(evaluation time, value) of each series of an instant query, at AT or now, asked of
    Prometheus on the test host (values as Prometheus prints them)."""
    url = f"http://127.0.0.1:{ENABLED['prometheus']['port']}/api/v1/query"
    when = f" --data-urlencode time={at}" if at else ""
    out = host.check_output(f"curl -sS -G --data-urlencode 'query={query}'{when} {url}")
    return [(str(s["value"][0]), str(s["value"][1])) for s in json.loads(out)["data"]["result"]]


def stored_start_time(host: Any, seconds: float = 120) -> tuple[str, str]:
    """A sample of START_TIME (once Prometheus has scraped itself): its time and value."""
    deadline = time.monotonic() + seconds
    while not (found := series(host, START_TIME)):
        assert time.monotonic() < deadline, f"no sample of {START_TIME}"
        time.sleep(2)
    (sample,) = found
    return sample


def snapshot(host: Any) -> tuple[str, dict[str, str]]:
    """compose.yml's content and every container's ID: what a refused run must not change."""
    ids = {s: inspect(host, v["container_name"])["Id"] for s, v in ENABLED.items()}
    return host.file(COMPOSE_FILE).sha256sum, ids


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unknown_disabled", "mlops_disabled_services"),
        ("port_clash", "used by more than one enabled service"),
        ("production_tag", "digest"),
    ],
)
def test_bad_input_fails_before_the_host_changes(host: Any, case: str, expected: str) -> None:
    extra = {
        "unknown_disabled": ["-e", json.dumps({"mlops_disabled_services": [*DISABLED, "no-such-service"]})],
        "port_clash": ["-e", json.dumps({"mlops_service_overrides": {**OVERRIDES, "frontend": {"port": 8001}}})],
        "production_tag": ["-e", '{"mlops_environment": "production", "mlops_image_delivery": "registry"}'],
    }[case]
    before = snapshot(host)
    rc, out = converge(*extra)
    assert rc != 0, out[-3000:]
    assert expected in out, out[-3000:]
    assert changed(out) == 0, out[-3000:]
    assert snapshot(host) == before


def test_a_rendering_compose_refuses_never_goes_live(host: Any) -> None:
    before = snapshot(host)
    bad = {"interval": "soon", "timeout": "5s", "retries": 3, "start_period": "60s", "start_interval": "2s"}
    rc, out = converge("-e", json.dumps({"edge_stack_healthcheck": bad}))
    assert rc != 0, out[-3000:]
    assert 'invalid duration "soon"' in out, out[-3000:]
    assert "Render compose.yml and validate it" in out.split("fatal:")[0].rsplit("TASK [", 1)[-1]
    assert snapshot(host) == before


def test_an_unhealthy_service_fails_the_run_with_its_probe_and_logs(host: Any) -> None:
    """The frontend probed with wget, which its image lacks: the run fails naming the service,
    its health, the probe's own error and its logs (the next test's runs restore the stack)."""
    overrides = {**OVERRIDES, "frontend": {**OVERRIDES["frontend"], "health_probe": "wget"}}
    # Healthy services pass within the start period (a loaded machine is slow to start Python);
    # the frontend's failures count once it is over.
    timing = {"interval": "5s", "timeout": "10s", "retries": 1, "start_period": "30s", "start_interval": "1s"}
    extra = {"mlops_service_overrides": overrides, "edge_stack_healthcheck": timing, "edge_stack_wait_timeout": 90}
    rc, out = converge("-e", json.dumps(extra))
    assert rc != 0, out[-3000:]
    report = out.split("Fail with the services that did not come up and their logs", 1)[-1]
    assert "did not become healthy" in report, out[-4000:]
    assert "- frontend (mlops-frontend): running" in report and "health unhealthy" in report, report[:4000]
    assert "wget" in report and "executable file not found" in report, report[:4000]
    assert "last probes:" in report and "logs:" in report, report[:4000]
    assert "- inference-api (" not in report, report[:4000]


def test_upgrade_keeps_data_and_reloads_a_drifted_image(host: Any) -> None:
    """One run that recreates Prometheus (new retention) while the API image on the host is not
    the controller's build (retagged): the marker in prometheus-data and a sample the old
    process stored survive, the API image is loaded again from its bundle and its container
    recreated on the built image. A second run, back to the scenario's variables, recreates
    Prometheus once more and the same sample is read back again. (That a re-run after such
    recreates changes nothing is test_rollout's test_a_rerun_of_the_live_release_changes_nothing,
    which runs after these.)"""
    prometheus = ENABLED["prometheus"]["container_name"]
    api = ENABLED["inference-api"]["container_name"]
    host.check_output(f"echo persisted > {MARKER}")
    marked_at, started = stored_start_time(host)
    ids_before = {s: inspect(host, v["container_name"])["Id"] for s, v in ENABLED.items()}
    api_image = CATALOGUE["mlops_images"]["inference-api"]
    built = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", api_image], capture_output=True, text=True, check=True
    ).stdout.strip()
    host.check_output(f"docker tag {CATALOGUE['mlops_images']['frontend']} {api_image}")
    assert inspect(host, api_image)["Id"] != built

    rc, out = converge("-e", "prometheus_retention_time=9d")
    assert rc == 0, out[-4000:]
    assert host.file(MARKER).content_string.strip() == "persisted"
    doc = inspect(host, prometheus)
    assert doc["Id"] != ids_before["prometheus"], "Prometheus was not recreated"
    assert "--storage.tsdb.retention.time=9d" in doc["Args"]
    # The old container is gone: the sample comes back from the volume, through the new process.
    assert [v for _at, v in series(host, START_TIME, at=marked_at)] == [started], f"{START_TIME} lost after a recreate"
    assert doc["State"]["Health"]["Status"] == "healthy"
    assert inspect(host, api_image)["Id"] == built
    assert inspect(host, api)["Image"] == built

    # Back to the scenario's own variables: recreated once more, data still there.
    recreated = inspect(host, prometheus)["Id"]
    rc, out = converge()
    assert rc == 0, out[-4000:]
    assert host.file(MARKER).content_string.strip() == "persisted"
    doc = inspect(host, prometheus)
    assert doc["Id"] != recreated, "Prometheus was not recreated"
    assert "--storage.tsdb.retention.time=9d" not in doc["Args"]
    assert [v for _at, v in series(host, START_TIME, at=marked_at)] == [started], f"{START_TIME} lost after the re-runs"


def test_a_rerun_starts_what_was_stopped_or_removed_by_hand(host: Any) -> None:
    """A run with nothing else to change skips `up` only where the project runs what compose.yml
    says: a container stopped by hand and another removed by hand are started again, healthy,
    the stopped one being the same container, its data volume kept."""
    stopped = ENABLED["prometheus"]["container_name"]
    removed = ENABLED["frontend"]["container_name"]
    kept = inspect(host, stopped)["Id"]
    host.check_output(f"echo stopped-by-hand > {MARKER}")
    host.check_output(f"docker stop {stopped}")
    host.check_output(f"docker rm --force {removed}")
    rc, out = converge()
    assert rc == 0, out[-4000:]
    assert "changed: [" in task_block(out, "Start the Compose project and wait until every service is healthy]")
    assert inspect(host, stopped)["Id"] == kept
    assert host.file(MARKER).content_string.strip() == "stopped-by-hand"
    for name in (stopped, removed):
        state = inspect(host, name)["State"]
        assert state["Running"] and state["Health"]["Status"] == "healthy", state
