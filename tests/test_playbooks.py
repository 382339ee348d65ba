"""The entry points: syntax of every path, and bad input refused before any host changes.

The refusal tests run the real playbooks with the sample inventories' group_vars, on hosts
of the same names and groups reached through the Docker connection, where no such container
exists: the input checks run on the controller alone, and if one wrongly let a run through,
the run would stop at its first host contact on this machine instead of a real address.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def ansible_playbook(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    run_env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", **(env or {}))
    run_env.pop("PROMETHEUS_RETENTION", None)
    run_env.setdefault("GRAFANA_ADMIN_PASSWORD", "")
    run = subprocess.run(
        ["ansible-playbook", *args], cwd=ROOT, capture_output=True, text=True, env=run_env, timeout=600, check=False
    )
    run.stdout = ANSI.sub("", run.stdout + run.stderr)
    return run


@pytest.mark.parametrize("inventory", ["inventories/edge", "inventories/prod", "inventories/local"])
def test_site_syntax(inventory: str) -> None:
    run = ansible_playbook("site.yml", "-i", inventory, "--syntax-check")
    assert run.returncode == 0, run.stdout


def offline_inventory(inventory: str, tmp: Path) -> str:
    """The sample inventory's hosts and group_vars, every host reached through Docker."""
    hosts = yaml.safe_load((ROOT / inventory / "hosts.yml").read_text())

    def rewrite(group: dict[str, Any]) -> None:
        for name in group.get("hosts") or {}:
            group["hosts"][name] = {"ansible_connection": "community.docker.docker"}
        group.get("vars", {}).pop("ansible_user", None)
        for child in (group.get("children") or {}).values():
            rewrite(child)

    for group in hosts.values():
        rewrite(group)
    target = tmp / Path(inventory).name
    target.mkdir()
    (target / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (target / "group_vars").symlink_to(ROOT / inventory / "group_vars")
    return str(target)


def refused(inventory: str, extra: dict[str, object], env: dict[str, str] | None = None) -> str:
    if inventory == "inventories/edge":
        # The sample edge inventory ships bundles of images this machine may not have built
        # (Grafana's cannot be had offline): the checks under test do not depend on delivery.
        extra = {"mlops_image_delivery": "registry", **extra}
    with tempfile.TemporaryDirectory() as tmp:
        run = ansible_playbook(
            "site.yml", "-i", offline_inventory(inventory, Path(tmp)), "-e", json.dumps(extra), env=env
        )
    assert run.returncode != 0, run.stdout
    # The failure is in an input-check play: no task of any other play ran on a host.
    for play, body in plays(run.stdout):
        if not play.startswith("Check every input"):
            assert "TASK [" not in body, f"play {play!r} ran after bad input:\n{run.stdout[-3000:]}"
    return run.stdout


def plays(output: str) -> list[tuple[str, str]]:
    parts = re.split(r"^PLAY \[(.*?)\] \**$", output, flags=re.M)
    return list(zip(parts[1::2], parts[2::2], strict=True))


PROD_OK = {"grafana_admin_password": "a-real-secret-from-the-vault"}


@pytest.mark.parametrize(
    ("inventory", "extra", "env", "variable"),
    [
        ("inventories/prod", {}, None, "grafana_admin_password"),
        (
            "inventories/prod",
            {**PROD_OK, "mlops_images": {"inference-api": "mlops/inference-api:1.0.0"}},
            None,
            "mlops_images",
        ),
        ("inventories/edge", {"prometheus_retention_time": "7days"}, None, "prometheus_retention_time"),
        ("inventories/edge", {}, {"PROMETHEUS_RETENTION": "a week"}, "prometheus_retention_time"),
        ("inventories/edge", {"prometheus_retention_size": "lots"}, None, "prometheus_retention_size"),
        ("inventories/edge", {"docker_install_source": "snap"}, None, "docker_install_source"),
        ("inventories/edge", {"mlops_image_delivery": "usb"}, None, "mlops_image_delivery"),
        ("inventories/edge", {"mlops_disabled_services": ["grafanna"]}, None, "mlops_disabled_services"),
        ("inventories/prod", {**PROD_OK, "k3s_version": "latest"}, None, "k3s_version"),
    ],
)
def test_bad_input_is_refused_before_any_host_changes(
    inventory: str, extra: dict[str, object], env: dict[str, str] | None, variable: str
) -> None:
    output = refused(inventory, extra, env)
    assert variable in output, output[-3000:]


def test_a_root_user_in_the_catalogue_is_refused() -> None:
    catalogue = subprocess.run(
        [
            "python3",
            "-c",
            "import yaml,json,sys; print(json.dumps(yaml.safe_load(open(sys.argv[1]))['mlops_services']))",
            str(ROOT / "roles/mlops/defaults/main.yml"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    services = json.loads(catalogue.stdout)
    services["frontend"]["user"] = "0:0"
    output = refused("inventories/edge", {"mlops_services": services})
    assert "mlops_services.frontend.user" in output


def test_valid_input_passes_every_check_that_reads_only_variables(tmp_path: Path) -> None:
    run = ansible_playbook("site.yml", "-i", offline_inventory("inventories/prod", tmp_path), "-e", json.dumps(PROD_OK))
    # Every check passes up to the first that reads the host itself (k3s gathers the
    # architecture): the only failure is that contact, with no such container here.
    checks = dict(plays(run.stdout))["Check every input of the production path before any host is changed"]
    before_contact, _, contact = checks.partition("TASK [k3s : Gather the architecture")
    assert "ok: [k3s-server-1.hospital.example]" in before_contact, run.stdout[-3000:]
    assert "failed:" not in before_contact and "fatal:" not in before_contact, before_contact[-3000:]
    assert "UNREACHABLE" in contact, contact[-3000:]
