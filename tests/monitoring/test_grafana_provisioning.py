"""Grafana files rendered by the grafana role: shapes Grafana accepts, references that resolve,
and the admin password handled as a secret. No Grafana server runs here (none can be had
offline): the files are checked for what Grafana reads from them."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import yaml
from conftest import HERE, RUN_METRIC, Render, RenderFn, run_metric_names, run_playbook
from mlops_testkit.ansible import PlaybookRun, flat

DIGESTS = {
    "mlops_images": {
        "inference-api": "mlops/inference-api@sha256:" + "1" * 64,
        "frontend": "mlops/frontend@sha256:" + "2" * 64,
        "prometheus": "mlops/prometheus@sha256:" + "3" * 64,
        "grafana": "docker.io/grafana/grafana-oss@sha256:" + "4" * 64,
        "alertmanager": "mlops/alertmanager@sha256:" + "5" * 64,
        "node-exporter": "mlops/node-exporter@sha256:" + "6" * 64,
    }
}
PRODUCTION = {"mlops_environment": "production", **DIGESTS}


def datasource(render: Render) -> dict[str, Any]:
    files = sorted((render.grafana / "provisioning/datasources").iterdir())
    assert [f.name for f in files] == ["mlops-prometheus.yml"]
    doc = yaml.safe_load(files[0].read_text())
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    return ds


def dashboard(render: Render) -> dict[str, Any]:
    files = sorted((render.grafana / "dashboards").iterdir())
    assert [f.name for f in files] == ["inference-api.json"]
    return json.loads(files[0].read_text())


def test_datasource_shape(default_render: Render) -> None:
    ds = datasource(default_render)
    assert ds["type"] == "prometheus"
    assert ds["access"] == "proxy"
    assert ds["url"] == "http://prometheus:9090"
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", ds["uid"])
    assert ds["isDefault"] is True
    assert ds["editable"] is False
    assert set(ds) <= {"name", "type", "uid", "access", "url", "isDefault", "editable", "jsonData"}


def test_dashboard_provider_reads_the_mounted_directory(default_render: Render) -> None:
    (provider_file,) = sorted((default_render.grafana / "provisioning/dashboards").iterdir())
    doc = yaml.safe_load(provider_file.read_text())
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    assert provider["disableDeletion"] is True
    # The provider's path is where the role's config mounts (grafana_service.config, read-only
    # in both renderings) put <render dir>/dashboards.
    mounts = {m["target"]: m["source"] for m in default_render.computed()["grafana_service"]["config"]}
    assert mounts[provider["options"]["path"]].endswith("/grafana/dashboards")
    assert mounts["/etc/grafana/provisioning"].endswith("/grafana/provisioning")


def test_dashboard_shape(default_render: Render) -> None:
    board = dashboard(default_render)
    assert board["uid"] == "mlops-inference-api"
    assert board["title"]
    assert isinstance(board["schemaVersion"], int)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["type"] in {"stat", "timeseries"}
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert target["expr"].strip()


def test_dashboard_covers_what_the_issue_asks(default_render: Render) -> None:
    titles = " | ".join(p["title"].lower() for p in dashboard(default_render)["panels"])
    for wanted in (
        "request rate",
        "error rate",
        "latency quantiles",
        "predictions per class",
        "model version",
        "drift per host",
        "last run per host",
    ):
        assert wanted in titles, titles


def test_every_query_uses_the_provisioned_datasource(default_render: Render) -> None:
    uid = datasource(default_render)["uid"]
    for panel in dashboard(default_render)["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": uid}


def test_every_query_is_valid_promql(default_render: Render, promtool: str, tmp_path: Path) -> None:
    # promtool parses rule expressions: each dashboard query becomes a recording rule, with
    # Grafana's $__rate_interval replaced by a duration.
    exprs = [t["expr"] for p in dashboard(default_render)["panels"] for t in p["targets"]]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query{i}", "expr": e.replace("$__rate_interval", "1m")}
                    for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    run = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_rendering_is_byte_stable(render: RenderFn, default_render: Render) -> None:
    again = render({"monitoring_roles": ["grafana"]})
    assert again.returncode == 0, again.output[-3000:]
    for path in sorted(p for p in default_render.grafana.rglob("*") if p.is_file()):
        assert (again.grafana / path.relative_to(default_render.grafana)).read_bytes() == path.read_bytes()


def test_production_refuses_the_default_password_before_any_change(render: RenderFn) -> None:
    result = render(PRODUCTION)
    assert result.returncode != 0
    assert "grafana_admin_password is the default 'changeme' and mlops_environment is production" in result.output
    assert not any(result.directory.iterdir()), "files were rendered despite the refusal"


def test_production_accepts_a_password_from_the_environment(render: RenderFn) -> None:
    result = render({**PRODUCTION, "monitoring_roles": ["grafana"]}, env={"GRAFANA_ADMIN_PASSWORD": "a-Real-pass-0"})
    assert result.returncode == 0, result.output[-3000:]


def secrets_run(tmp_path: Path, password: str, args: list[str]) -> tuple[PlaybookRun, Path]:
    """The role's secrets tasks into tmp_path, the password from GRAFANA_ADMIN_PASSWORD."""
    password_file = tmp_path / "secrets" / "admin-password"
    run = run_playbook(
        HERE / "secrets.yml",
        {"grafana_admin_password_file": str(password_file), "grafana_config_group": str(os.getgid()), **PRODUCTION},
        env={"GRAFANA_ADMIN_PASSWORD": password},
        args=args,
    )
    return run, password_file


def test_admin_password_reaches_its_file_and_never_the_output(tmp_path: Path) -> None:
    password = "Never-Logged-7f3a9c"
    # Verbose, with diffs: the output Ansible would show an operator at its most talkative.
    run, password_file = secrets_run(tmp_path, password, ["-vvv", "--diff"])
    assert run.returncode == 0, run.tail(3000)
    assert password not in run.output
    assert password_file.read_text() == password
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o440
    # A new password changes the file (and nothing else), and still shows nowhere.
    run, password_file = secrets_run(tmp_path, password + "-2", ["-vvv", "--diff"])
    assert run.returncode == 0, run.tail(3000)
    assert run.total_changed == 1, run.tail()
    assert password not in run.output
    assert password_file.read_text() == password + "-2"


def test_password_that_breaks_its_file_is_refused(tmp_path: Path) -> None:
    run, password_file = secrets_run(tmp_path, "first-line\nsecond-line", [])
    assert run.returncode != 0
    assert "grafana_admin_password (env GRAFANA_ADMIN_PASSWORD) must be at least 8 characters" in flat(run.output)
    assert "first-line" not in run.output and "second-line" not in run.output
    assert not password_file.exists()


def test_fleet_panels_use_only_the_metrics_the_writer_names(default_render: Render) -> None:
    exprs = " ".join(t["expr"] for p in dashboard(default_render)["panels"] for t in p["targets"])
    used = set(RUN_METRIC.findall(exprs))
    assert {"mlops_ansible_drift_tasks", "mlops_ansible_run_success"} <= used
    assert used <= run_metric_names()
