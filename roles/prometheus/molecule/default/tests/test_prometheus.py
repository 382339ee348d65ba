"""The prometheus role on a Debian 13 host: files, ownership, modes, content, validity."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

CONFIG_DIR = "/etc/mlops/prometheus"
# Run as the container user: the files must be readable by it and by nobody else but root.
AS_CONTAINER_USER = "setpriv --reuid=65534 --regid=65534 --clear-groups --"


@pytest.mark.parametrize(
    ("path", "mode"),
    [
        (CONFIG_DIR, 0o750),
        (f"{CONFIG_DIR}/rules", 0o750),
        (f"{CONFIG_DIR}/prometheus.yml", 0o640),
        (f"{CONFIG_DIR}/rules/mlops-alerts.yml", 0o640),
        (f"{CONFIG_DIR}/rules/mlops-fleet.yml", 0o640),
    ],
)
def test_rendered_files_are_owned_by_root_and_readable_by_the_container_group(host: Any, path: str, mode: int) -> None:
    f = host.file(path)
    assert f.exists
    assert f.user == "root"
    assert f.uid == 0
    assert f.gid == 65534
    assert f.mode == mode


def test_shared_config_dir_is_root_owned(host: Any) -> None:
    f = host.file("/etc/mlops")
    assert f.is_directory
    assert (f.uid, f.gid, f.mode) == (0, 0, 0o755)


def test_scrape_jobs_follow_the_catalogue(host: Any) -> None:
    config = yaml.safe_load(host.file(f"{CONFIG_DIR}/prometheus.yml").content_string)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    # Every catalogue service with a metrics path; the frontend (nginx) exports none.
    assert set(jobs) == {"inference-api", "prometheus", "grafana", "alertmanager", "node-exporter"}
    assert jobs["node-exporter"]["static_configs"][0]["targets"] == ["node-exporter:9100"]
    # Alerts go to the catalogue's Alertmanager by its Compose service name.
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert jobs["inference-api"]["static_configs"][0]["targets"] == ["inference-api:8000"]
    assert jobs["inference-api"]["metrics_path"] == "/metrics"
    assert config["rule_files"] == ["rules/mlops-alerts.yml", "rules/mlops-fleet.yml"]
    assert config["global"]["external_labels"] == {"environment": "edge"}


def test_container_user_can_read_and_promtool_accepts_the_config(host: Any) -> None:
    run = host.run(f"{AS_CONTAINER_USER} promtool check config {CONFIG_DIR}/prometheus.yml")
    assert run.rc == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout + run.stderr


def test_other_users_cannot_read_the_config(host: Any) -> None:
    run = host.run(f"setpriv --reuid=1234 --regid=1234 --clear-groups -- cat {CONFIG_DIR}/prometheus.yml")
    assert run.rc != 0


def test_alert_rules_cover_the_four_failure_modes(host: Any) -> None:
    rules = yaml.safe_load(host.file(f"{CONFIG_DIR}/rules/mlops-alerts.yml").content_string)
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert {
        "MlopsInferenceApiDown",
        "MlopsInferenceApiHighErrorRate",
        "MlopsInferenceApiHighLatency",
        "MlopsModelNotReady",
    } <= set(alerts)
    check = host.run(f"{AS_CONTAINER_USER} promtool check rules {CONFIG_DIR}/rules/mlops-alerts.yml")
    assert check.rc == 0, check.stdout + check.stderr
