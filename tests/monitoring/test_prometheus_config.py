"""Prometheus files rendered by the prometheus role: valid for promtool, faithful to the catalogue."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT, Render, RenderFn, run_playbook

PROMETHEUS_IMAGE = "mlops/prometheus:2.53"
CATALOGUE = yaml.safe_load((ROOT / "roles/mlops/defaults/main.yml").read_text())


def promtool_run(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *map(str, args)], capture_output=True, text=True, timeout=60, check=False)


def image_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """promtool of the image the stack runs (Debian 13's 2.53), the files mounted at the same path."""
    if (
        shutil.which("docker") is None
        or subprocess.run(["docker", "image", "inspect", PROMETHEUS_IMAGE], capture_output=True, check=False).returncode
    ):
        pytest.skip(f"this promtool lacks Kubernetes discovery and image {PROMETHEUS_IMAGE} is not built here")
    paths = {Path(a).parent.parent for a in args if isinstance(a, Path)}
    mounts = [f"--volume={p}:{p}:ro" for p in paths]
    return subprocess.run(
        ["docker", "run", "--rm", "--network=none", "--user=0", *mounts, "--entrypoint=promtool", PROMETHEUS_IMAGE]
        + [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def jobs(render: Render) -> dict[str, Any]:
    config = load(render.prometheus / "prometheus.yml")
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_promtool_accepts_the_config_and_its_rule_files(default_render: Render, promtool: str) -> None:
    run = promtool_run(promtool, "check", "config", default_render.prometheus / "prometheus.yml")
    assert run.returncode == 0, run.stdout + run.stderr
    # rule_files is relative to the config: promtool must have found and checked the rules
    # (the collection's alerts and, with node-exporter scraped, the fleet's).
    assert "SUCCESS: 2 rule files found" in run.stdout + run.stderr


def test_promtool_accepts_the_rules(default_render: Render, promtool: str) -> None:
    rules = sorted((default_render.prometheus / "rules").glob("*.yml"))
    assert [r.name for r in rules] == ["mlops-alerts.yml", "mlops-fleet.yml"]
    run = promtool_run(promtool, "check", "rules", *rules)
    assert run.returncode == 0, run.stdout + run.stderr


def test_one_scrape_job_per_catalogue_service_with_metrics(default_render: Render) -> None:
    services = CATALOGUE["mlops_services"]
    expected = {name for name, svc in services.items() if svc["metrics_path"]}
    assert expected, "the catalogue lists no service with metrics"
    found = jobs(default_render)
    assert set(found) == expected
    for name in expected:
        job = found[name]
        assert job["metrics_path"] == services[name]["metrics_path"]
        # Compose: the service name resolves on the project network.
        assert job["static_configs"] == [{"targets": [f"{name}:{services[name]['port']}"], "labels": {"service": name}}]


def test_disabled_services_are_not_scraped(render: RenderFn, promtool: str) -> None:
    result = render({"mlops_disabled_services": ["grafana"], "monitoring_roles": ["prometheus"]})
    assert result.returncode == 0, result.output[-3000:]
    assert "grafana" not in jobs(result)
    assert {"inference-api", "prometheus"} <= set(jobs(result))


def test_kubernetes_platform_scrapes_every_pod_of_each_service(render: RenderFn, promtool: str) -> None:
    result = render({"prometheus_platform": "kubernetes", "monitoring_roles": ["prometheus"]})
    assert result.returncode == 0, result.output[-3000:]
    run = promtool_run(promtool, "check", "config", result.prometheus / "prometheus.yml")
    if "field kubernetes_sd_configs not found" in run.stdout + run.stderr:
        # Debian 12's promtool (2.42) is built without Kubernetes discovery; Debian 13's
        # (2.53, the one in mlops/prometheus:2.53 that production runs) has it.
        run = image_promtool("check", "config", result.prometheus / "prometheus.yml")
    assert run.returncode == 0, run.stdout + run.stderr
    services = CATALOGUE["mlops_services"]
    for name, job in jobs(result).items():
        assert "static_configs" not in job
        (sd,) = job["kubernetes_sd_configs"]
        # EndpointSlices: the Endpoints API is deprecated since Kubernetes 1.33.
        assert sd == {"role": "endpointslice", "namespaces": {"names": [CATALOGUE["mlops_namespace"]]}}
        keep = job["relabel_configs"][0]
        assert keep["action"] == "keep"
        # The slice's port is named after the Service's port (`http` on every Service of the stack).
        assert keep["source_labels"] == ["__meta_kubernetes_service_name", "__meta_kubernetes_endpointslice_port_name"]
        assert keep["regex"] == f"{name};http"
        assert name in services
    # Discovery reads the slices and the Services and pods they point to: k8s_topology renders a
    # Role from these rules (tests/k8s/test_discovery.py runs Prometheus against a stand-in API).
    rules = result.computed()["prometheus_kubernetes_rbac_rules"]
    granted = {(group, resource) for rule in rules for group in rule["apiGroups"] for resource in rule["resources"]}
    assert {("discovery.k8s.io", "endpointslices"), ("", "services"), ("", "pods")} <= granted
    assert all(rule["verbs"] == ["get", "list", "watch"] for rule in rules)


def test_default_flags(default_render: Render) -> None:
    assert default_render.computed()["prometheus_command_args"] == [
        "--config.file=/etc/prometheus/prometheus.yml",
        "--storage.tsdb.path=/prometheus",
        # The catalogue's port reaches the process (DESIGN: change a port, the service follows).
        f"--web.listen-address=:{CATALOGUE['mlops_services']['prometheus']['port']}",
        "--storage.tsdb.retention.time=7d",
    ]


def test_retention_env_override_changes_the_flag(render: RenderFn) -> None:
    result = render({"monitoring_roles": ["prometheus"]}, env={"PROMETHEUS_RETENTION": "30d"})
    assert result.returncode == 0, result.output[-3000:]
    args = result.computed()["prometheus_command_args"]
    assert "--storage.tsdb.retention.time=30d" in args
    assert not any(a.startswith("--storage.tsdb.retention.size") for a in args)


def test_retention_size_adds_its_flag(render: RenderFn) -> None:
    result = render(
        {"prometheus_retention_size": "10GB", "prometheus_retention_time": "2w", "monitoring_roles": ["prometheus"]}
    )
    assert result.returncode == 0, result.output[-3000:]
    args = result.computed()["prometheus_command_args"]
    assert "--storage.tsdb.retention.size=10GB" in args
    assert "--storage.tsdb.retention.time=2w" in args


def test_bad_retention_time_fails_before_any_file_naming_the_variable(render: RenderFn) -> None:
    result = render({"monitoring_roles": ["prometheus"]}, env={"PROMETHEUS_RETENTION": "7days"})
    assert result.returncode != 0
    assert "prometheus_retention_time" in result.output
    assert "'7days'" in result.output
    assert not any(result.directory.iterdir()), "files were rendered despite the bad value"


def test_bad_retention_size_fails_naming_the_variable(render: RenderFn) -> None:
    result = render({"prometheus_retention_size": "10G", "monitoring_roles": ["prometheus"]})
    assert result.returncode != 0
    assert "prometheus_retention_size is '10G'" in result.output
    assert not any(result.directory.iterdir())


def test_bad_platform_is_refused_by_the_argument_spec(render: RenderFn) -> None:
    result = render({"prometheus_platform": "swarm", "monitoring_roles": ["prometheus"]})
    assert result.returncode != 0
    assert "prometheus_platform" in result.output
    assert not any(result.directory.iterdir())


def test_second_render_changes_nothing_but_a_stale_rule_file(tmp_path: Path) -> None:
    """A second render over the first reports one change alone: a rule file the role no longer
    renders (it would still be loaded through the rules glob) is removed. Every other file keeps
    its bytes."""
    playbook = ROOT / "tests/monitoring/render.yml"
    first = run_playbook(playbook, {"monitoring_render_dir": str(tmp_path)})
    assert first.returncode == 0, first.output[-3000:]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != "computed.json"}
    stale = tmp_path / "prometheus/rules/old-alerts.yml"
    stale.write_text("groups: []\n")
    second = run_playbook(playbook, {"monitoring_render_dir": str(tmp_path)})
    assert second.returncode == 0, second.output[-3000:]
    assert not stale.exists()
    changed = second.changed_tasks()
    assert len(changed) == 1, "\n".join(changed)
    assert changed[0].startswith("TASK [prometheus : Remove rule files the role no longer manages]"), changed[0]
    assert str(stale) in changed[0], changed[0]
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.name != "computed.json"}
    assert before == after
