"""The grafana role on a Debian 13 host: files, ownership, modes, content, the secret."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

GRAFANA_DIR = "/etc/mlops/grafana"
DIRS = [
    GRAFANA_DIR,
    f"{GRAFANA_DIR}/provisioning",
    f"{GRAFANA_DIR}/provisioning/datasources",
    f"{GRAFANA_DIR}/provisioning/dashboards",
    f"{GRAFANA_DIR}/provisioning/plugins",
    f"{GRAFANA_DIR}/provisioning/alerting",
    f"{GRAFANA_DIR}/dashboards",
    f"{GRAFANA_DIR}/secrets",
]
FILES = [
    f"{GRAFANA_DIR}/provisioning/datasources/mlops-prometheus.yml",
    f"{GRAFANA_DIR}/provisioning/dashboards/mlops.yml",
    f"{GRAFANA_DIR}/dashboards/inference-api.json",
]
PASSWORD_FILE = f"{GRAFANA_DIR}/secrets/admin-password"
AS_GRAFANA = "setpriv --reuid=472 --regid=472 --clear-groups --"


@pytest.mark.parametrize("path", DIRS)
def test_directories_are_root_owned_and_open_to_the_grafana_group(host: Any, path: str) -> None:
    f = host.file(path)
    assert f.is_directory
    assert (f.uid, f.gid, f.mode) == (0, 472, 0o750)


@pytest.mark.parametrize("path", FILES)
def test_files_are_root_owned_and_readable_by_grafana_only(host: Any, path: str) -> None:
    f = host.file(path)
    assert f.is_file
    assert (f.uid, f.gid, f.mode) == (0, 472, 0o640)
    assert host.run(f"{AS_GRAFANA} cat {path}").rc == 0
    assert host.run(f"setpriv --reuid=1234 --regid=1234 --clear-groups -- cat {path}").rc != 0


def test_no_other_files_are_provisioned(host: Any) -> None:
    found = host.run(f"find {GRAFANA_DIR} -type f | sort").stdout.split()
    assert found == sorted([*FILES, PASSWORD_FILE])


def test_datasource_points_at_the_stack_prometheus(host: Any) -> None:
    doc = yaml.safe_load(host.file(FILES[0]).content_string)
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["type"] == "prometheus"
    assert ds["uid"] == "mlops-prometheus"
    assert ds["url"] == "http://prometheus:9090"


def test_dashboard_provider_reads_the_mounted_dashboards(host: Any) -> None:
    doc = yaml.safe_load(host.file(FILES[1]).content_string)
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/etc/grafana/dashboards"


def test_dashboard_uses_the_provisioned_datasource(host: Any) -> None:
    dashboard = json.loads(host.file(FILES[2]).content_string)
    assert dashboard["uid"] == "mlops-inference-api"
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {"mlops-prometheus"}


def test_password_file_is_readable_by_the_grafana_group_only(host: Any) -> None:
    """The secret the container gets at /run/secrets/grafana-admin-password: root owns it,
    the container's group reads it, nobody else; it holds the password and nothing more."""
    f = host.file(PASSWORD_FILE)
    assert (f.uid, f.gid, f.mode) == (0, 472, 0o440)
    assert host.run(f"{AS_GRAFANA} cat {PASSWORD_FILE}").stdout == "molecule-Grafana-s3cret"
    assert host.run(f"setpriv --reuid=1234 --regid=1234 --clear-groups -- cat {PASSWORD_FILE}").rc != 0


def test_the_password_appears_in_no_other_file(host: Any) -> None:
    hits = host.run(f"grep -rl molecule-Grafana-s3cret {GRAFANA_DIR}").stdout.split()
    assert hits == [PASSWORD_FILE]
