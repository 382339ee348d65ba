"""Alertmanager's configuration, rendered by role alertmanager: receivers and routes from the
inventory, checked by the real `amtool check-config` of mlops/alertmanager:0.28, bad input
refused naming the variable, secrets never in the output, and Prometheus pointed at it.

The amtool checks need a Docker Engine and the image (scripts/build-images.sh alertmanager);
they are skipped where no engine answers.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import HERE, Render, RenderFn, run_playbook

IMAGE = "mlops/alertmanager:0.28"
TOKEN = "hook-T0ken-9c1e55"
SMTP_PASSWORD = "smtp-Passw0rd-4b7d21"
SITE = {
    "alertmanager_receivers": [
        {"name": "ops-webhook", "webhook_configs": [{"url": f"https://hooks.example.org/alert?token={TOKEN}"}]},
        {"name": "ops-email", "email_configs": [{"to": "oncall@example.org", "send_resolved": True}]},
    ],
    "alertmanager_route": {
        "receiver": "ops-webhook",
        "group_by": ["alertname", "job"],
        "group_wait": "10s",
        "routes": [{"matchers": ['severity="critical"'], "receiver": "ops-email", "continue": True}],
    },
    "alertmanager_smtp_smarthost": "smtp.example.org:587",
    "alertmanager_smtp_from": "mlops@example.org",
    "alertmanager_smtp_auth_username": "mlops",
    "alertmanager_smtp_auth_password": SMTP_PASSWORD,
}


def require_image() -> None:
    if (
        shutil.which("docker") is None
        or subprocess.run(["docker", "version"], capture_output=True, check=False).returncode
    ):
        pytest.skip("no Docker Engine answers here")
    if subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, check=False).returncode:
        pytest.fail(f"image {IMAGE} missing: scripts/build-images.sh alertmanager")


def amtool(config: Path) -> subprocess.CompletedProcess[str]:
    """`amtool check-config` of the image, on the file mounted read-only."""
    require_image()
    # Readable by the image's user (65534) for the check: the tests' temporary directory is private.
    copy = config.parent / "check.yml"
    shutil.copy(config, copy)
    copy.chmod(0o644)
    config.parent.chmod(0o755)
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--read-only", "--cap-drop", "ALL",
         "--volume", f"{copy}:/check/alertmanager.yml:ro", "--entrypoint", "amtool", IMAGE,
         "check-config", "/check/alertmanager.yml"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def site_render(tmp_path_factory: pytest.TempPathFactory) -> Render:
    directory = tmp_path_factory.mktemp("site-render")
    run = run_playbook(HERE / "render.yml", {"monitoring_render_dir": str(directory), **SITE}, args=["-vvv", "--diff"])
    assert run.returncode == 0, run.tail()
    return Render(directory, run.returncode, run.output)


def config(render: Render) -> dict[str, Any]:
    return yaml.safe_load((render.alertmanager / "alertmanager.yml").read_text())


def test_the_default_configuration_passes_amtool(default_render: Render) -> None:
    check = amtool(default_render.alertmanager / "alertmanager.yml")
    assert check.returncode == 0, check.stdout + check.stderr
    doc = config(default_render)
    assert doc["route"]["receiver"] == "default"
    assert [r["name"] for r in doc["receivers"]] == ["default"]


def test_site_receivers_and_routes_reach_the_file_and_pass_amtool(site_render: Render) -> None:
    doc = config(site_render)
    assert {r["name"] for r in doc["receivers"]} == {"ops-webhook", "ops-email"}
    assert doc["route"]["routes"][0]["receiver"] == "ops-email"
    assert doc["global"]["smtp_smarthost"] == "smtp.example.org:587"
    assert doc["global"]["smtp_auth_password"] == SMTP_PASSWORD
    check = amtool(site_render.alertmanager / "alertmanager.yml")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout + check.stderr


def test_amtool_refuses_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "alertmanager.yml"
    broken.write_text("route:\n  receiver: nobody\nreceivers:\n  - name: somebody\n")
    check = amtool(broken)
    assert check.returncode != 0
    assert "nobody" in check.stdout + check.stderr


def test_secrets_never_show_in_the_output_and_the_file_is_private(site_render: Render) -> None:
    assert TOKEN not in site_render.output
    assert SMTP_PASSWORD not in site_render.output
    mode = stat.S_IMODE((site_render.alertmanager / "alertmanager.yml").stat().st_mode)
    assert mode == 0o640


def test_the_configuration_reaches_the_container_as_a_secret(default_render: Render) -> None:
    computed = default_render.computed()
    service = computed["alertmanager_service"]
    (secret,) = service["secrets"]
    assert secret["name"] == "alertmanager-config"
    assert secret["source"].endswith("/alertmanager/alertmanager.yml")
    assert "config" not in service  # never a ConfigMap or a plain mount: it holds credentials
    args = computed["alertmanager_command_args"]
    assert "--config.file=/run/secrets/alertmanager-config" in args
    assert "--web.listen-address=:9093" in args
    assert "--cluster.listen-address=" in args


def test_prometheus_sends_alerts_to_alertmanager_and_scrapes_it(default_render: Render) -> None:
    prom = yaml.safe_load((default_render.prometheus / "prometheus.yml").read_text())
    (am,) = prom["alerting"]["alertmanagers"]
    assert am["static_configs"][0]["targets"] == ["alertmanager:9093"]
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    assert jobs["alertmanager"]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert jobs["node-exporter"]["static_configs"][0]["targets"] == ["node-exporter:9100"]


def test_without_alertmanager_prometheus_has_no_alerting_section(render: RenderFn) -> None:
    result = render({"mlops_disabled_services": ["alertmanager"], "monitoring_roles": ["prometheus"]})
    assert result.returncode == 0, result.output[-3000:]
    prom = yaml.safe_load((result.prometheus / "prometheus.yml").read_text())
    assert "alerting" not in prom
    assert "alertmanager" not in {job["job_name"] for job in prom["scrape_configs"]}


def test_kubernetes_prometheus_uses_the_service_dns_name_and_no_node_exporter(render: RenderFn) -> None:
    result = render({"prometheus_platform": "kubernetes", "monitoring_roles": ["prometheus"]})
    assert result.returncode == 0, result.output[-3000:]
    prom = yaml.safe_load((result.prometheus / "prometheus.yml").read_text())
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "alertmanager.mlops-system.svc:9093"
    ]
    assert "node-exporter" not in {job["job_name"] for job in prom["scrape_configs"]}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"alertmanager_receivers": []}, "alertmanager_receivers must be a non-empty list"),
        ({"alertmanager_receivers": [{"name": "a"}, {"name": "a"}]}, "receiver names must be unique"),
        (
            {"alertmanager_route": {"receiver": "default", "routes": [{"receiver": "pager"}]}},
            "alertmanager_route names receivers that alertmanager_receivers does not define: pager",
        ),
        (
            {"alertmanager_receivers": [{"name": "default", "webhook_configs": [{"url": "hooks.example/x"}]}]},
            "every webhook_configs entry needs a url (http:// or https://)",
        ),
        (
            {"alertmanager_receivers": [{"name": "default", "email_configs": [{"to": "a@example.org"}]}]},
            "alertmanager_smtp_smarthost is empty",
        ),
        ({"alertmanager_smtp_auth_password": "x"}, "alertmanager_smtp_auth_password is set without"),
        ({"alertmanager_data_retention": "five days"}, "alertmanager_data_retention is 'five days'"),
    ],
)
def test_bad_input_is_refused_naming_the_variable(render: RenderFn, extra: dict[str, Any], message: str) -> None:
    result = render(extra)
    assert result.returncode != 0
    assert message in " ".join(result.output.split()), result.output[-3000:]
    assert not (result.alertmanager / "alertmanager.yml").exists()


def test_the_role_refuses_a_file_amtool_refuses_and_keeps_its_secrets(render: RenderFn) -> None:
    """alertmanager_validate: with no amtool on this machine, the role checks the candidate with
    the image's; a refused file is not written, and the report names the variables, not values."""
    require_image()
    bad = [
        {"name": "default", "webhook_configs": [{"url": f"https://h.example/x?token={TOKEN}", "max_alerts": "many"}]}
    ]
    result = render(
        {"monitoring_roles": ["alertmanager"], "alertmanager_validate": True, "alertmanager_receivers": bad}
    )
    assert result.returncode != 0
    flat_output = " ".join(result.output.split())
    assert "alertmanager_receivers, alertmanager_route" in flat_output
    assert "was refused (amtool check-config)" in flat_output
    assert TOKEN not in result.output
    assert not (result.alertmanager / "alertmanager.yml").exists()
