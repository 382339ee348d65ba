"""Alerts that reach someone, and the host's metrics, on the converged edge site.

- A rule of the inventory (prometheus_extra_rules: `vector(1)`, firing at once) goes from
  Prometheus to Alertmanager, which posts it to the webhook receiver prepare.yml started on
  the test host; the receiver's log must name the alert within a bounded wait.
- Prometheus scrapes node-exporter and Alertmanager (`up == 1`), and a `*.prom` file dropped
  into the textfile directory (mlops_textfile_dir) shows up in Prometheus.

Prometheus is reached on its port published on this machine's loopback; the receiver's log is
read on the test host.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any

import requests

HOST = f"{os.environ.get('MLOPS_MOLECULE_PREFIX', 'mlops')}-edge-site"
testinfra_hosts = [f"ansible://{HOST}"]

ALERT = "MlopsEdgeEndToEnd"
RECEIVER_LOG = "/var/lib/alert-receiver/alerts.jsonl"
TEXTFILE_DIR = "/var/lib/mlops/textfile"


def prometheus() -> str:
    out = subprocess.run(["docker", "port", HOST, "9090"], capture_output=True, text=True, check=True)
    address = out.stdout.splitlines()[0].strip()
    assert address.startswith("127.0.0.1:"), address
    return f"http://{address}"


def query(expr: str) -> list[dict[str, Any]]:
    session = requests.Session()
    session.trust_env = False
    r = session.get(f"{prometheus()}/api/v1/query", params={"query": expr}, timeout=10)
    r.raise_for_status()
    return r.json()["data"]["result"]


def wait_for(check: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (requests.RequestException, AssertionError) as exc:
            last = exc
        time.sleep(3)
    raise AssertionError(f"{what} not seen within {seconds:.0f}s (last: {last!r})")


def test_a_firing_rule_reaches_the_webhook_receiver(host: Any) -> None:
    def received() -> list[dict[str, Any]]:
        log = host.file(RECEIVER_LOG)
        if not log.exists:
            return []
        posts = [json.loads(line) for line in log.content_string.splitlines() if line.strip()]
        return [p for p in posts if any(a["labels"].get("alertname") == ALERT for a in p.get("alerts", []))]

    posts = wait_for(received, 180, f"a notification of {ALERT} in {RECEIVER_LOG}")
    alert = next(a for a in posts[0]["alerts"] if a["labels"]["alertname"] == ALERT)
    assert alert["status"] == "firing"
    assert posts[0]["receiver"] == "test-webhook"
    # The external labels of Prometheus travel with the alert.
    assert alert["labels"].get("environment") == "edge"


def test_alertmanager_runs_hardened_and_holds_its_configuration_as_a_secret(host: Any) -> None:
    info = json.loads(host.check_output("docker inspect mlops-alertmanager"))[0]
    assert "--config.file=/run/secrets/alertmanager-config" in info["Args"]
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert mounts["/run/secrets/alertmanager-config"]["Source"] == "/etc/mlops/alertmanager/alertmanager.yml"
    config = host.file("/etc/mlops/alertmanager/alertmanager.yml")
    assert (config.uid, config.gid, config.mode) == (0, 65534, 0o640)
    check = host.run("docker exec mlops-alertmanager amtool check-config /run/secrets/alertmanager-config")
    assert check.rc == 0, check.stdout + check.stderr


def test_prometheus_scrapes_node_exporter_and_alertmanager() -> None:
    for job in ("node-exporter", "alertmanager"):
        result = wait_for(lambda job=job: query(f'up{{job="{job}"}} == 1'), 120, f"up{{job={job!r}}} == 1")
        assert result[0]["metric"]["job"] == job


def test_node_exporter_reads_the_host_without_privileges(host: Any) -> None:
    info = json.loads(host.check_output("docker inspect mlops-node-exporter"))[0]
    hc = info["HostConfig"]
    assert hc["Privileged"] is False and hc["PidMode"] == "" and hc["NetworkMode"] != "host"
    assert all(m["RW"] is False for m in info["Mounts"]), info["Mounts"]
    assert {m["Destination"] for m in info["Mounts"]} == {"/host/proc", "/host/sys", "/var/lib/node-exporter/textfile"}
    assert info["Config"]["User"] == "65532:65532"
    # The host's view through its /proc: the host's memory and its processes, not the container's.
    assert wait_for(lambda: query('node_memory_MemTotal_bytes{job="node-exporter"} > 0'), 60, "host memory")
    procs = wait_for(lambda: query('node_procs_running{job="node-exporter"}'), 60, "host processes")
    assert procs


def test_a_textfile_metric_shows_up_in_prometheus(host: Any) -> None:
    marker = uuid.uuid4().int % 1_000_000
    # Written the way the collection's writers must: a temporary file, renamed into place.
    write = host.run(
        f"mkdir -p {TEXTFILE_DIR} && printf '# TYPE mlops_e2e_marker gauge\\nmlops_e2e_marker %d\\n' {marker}"
        f" > {TEXTFILE_DIR}/.e2e.prom.tmp && mv {TEXTFILE_DIR}/.e2e.prom.tmp {TEXTFILE_DIR}/e2e.prom"
    )
    assert write.rc == 0, write.stderr
    try:
        result = wait_for(
            lambda: [s for s in query('mlops_e2e_marker{job="node-exporter"}') if float(s["value"][1]) == marker],
            120,
            "the textfile metric mlops_e2e_marker",
        )
        assert result
    finally:
        host.run(f"rm -f {TEXTFILE_DIR}/e2e.prom")


def test_pushed_runs_report_their_result_through_node_exporter(host: Any) -> None:
    # site.yml's first and last plays write the run's metrics; Molecule's last run was the
    # idempotence run, counted by the callback mlops.infra.run_metrics (molecule.yml).
    text = host.file(f"{TEXTFILE_DIR}/mlops_ansible_push.prom").content_string
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert float(samples['mlops_ansible_run_success{mode="push"}']) == 1
    assert float(samples['mlops_ansible_run_tasks{mode="push",result="changed"}']) == 0
    assert float(samples['mlops_ansible_run_tasks{mode="push",result="ok"}']) > 100
    assert float(samples['mlops_ansible_run_tasks{mode="push",result="failed"}']) == 0
    assert wait_for(
        lambda: query('mlops_ansible_run_success{job="node-exporter",mode="push"} == 1'),
        120,
        "the pushed run's success",
    )


def test_the_fleet_alerts_are_loaded(host: Any) -> None:
    session = requests.Session()
    session.trust_env = False
    r = session.get(f"{prometheus()}/api/v1/rules", params={"type": "alert"}, timeout=10)
    r.raise_for_status()
    groups = {g["name"]: {rule["name"] for rule in g["rules"]} for g in r.json()["data"]["groups"]}
    assert groups.get("mlops-fleet") == {
        "MlopsFleetDriftDetected",
        "MlopsFleetRunFailed",
        "MlopsFleetRunUnfinished",
        "MlopsFleetNoSuccessfulRun",
    }, groups
