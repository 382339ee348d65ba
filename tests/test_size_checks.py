"""A retention size larger than the room its database has is refused before any host changes.

Edge: prometheus_retention_size above the free space of the filesystem holding Docker's
volumes (plus what the data volume already holds), measured on the host itself. The edge
checks run against a throwaway container of the project's test image, reached through the
Docker connection as the sample inventory's edge host: the same first play of site.yml that a
real run starts with, and nothing after it may run.

Production: prometheus_retention_size above 80% of the Prometheus data claim, refused from the
variables alone (the sample inventory's hosts are unreachable here, as in tests/test_playbooks.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from mlops_testkit.docker import require_image
from mlops_testkit.testhosts import DOCKER_CONNECTION

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")
TEST_IMAGE = "mlops-test/debian-systemd:13"
EDGE_HOST = "edge-01.clinic-a.example"


def ansible_playbook(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    env.pop("PROMETHEUS_RETENTION", None)
    venv_bin = ROOT / ".venv" / "bin"
    if venv_bin.is_dir():
        env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    run = subprocess.run(
        ["ansible-playbook", *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600, check=False
    )
    run.stdout = ANSI.sub("", run.stdout + run.stderr)
    return run


def plays(output: str) -> list[tuple[str, str]]:
    parts = re.split(r"^PLAY \[(.*?)\] \**$", output, flags=re.M)
    return list(zip(parts[1::2], parts[2::2], strict=True))


def assert_only_input_checks_ran(output: str) -> None:
    for play, body in plays(output):
        if not play.startswith("Check every input"):
            assert "TASK [" not in body, f"play {play!r} ran after bad input:\n{output[-3000:]}"


def inventory(tmp: Path, sample: str, hosts: dict[str, object]) -> str:
    """The sample inventory's group_vars with the given hosts document."""
    target = tmp / Path(sample).name
    target.mkdir()
    (target / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (target / "group_vars").symlink_to(ROOT / sample / "group_vars")
    return str(target)


@pytest.fixture(scope="module")
def edge_container() -> Iterator[str]:
    """A throwaway container of the project's test image, standing in for an edge host."""
    require_image(TEST_IMAGE, "scripts/test.sh setup")
    name = f"mlops-size-check-{os.getpid()}"
    command = ["docker", "run", "--detach", "--rm", "--name", name, "--network", "none", "--entrypoint", "sleep"]
    subprocess.run(
        [*command, TEST_IMAGE, "infinity"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    try:
        yield name
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)


def edge_inventory(tmp: Path, container: str) -> str:
    host = {"ansible_connection": DOCKER_CONNECTION, "ansible_host": container, "ansible_become": False}
    return inventory(tmp, "inventories/edge", {"edge": {"hosts": {EDGE_HOST: host}}})


def test_edge_refuses_a_retention_size_above_the_free_space(edge_container: str, tmp_path: Path) -> None:
    extra = {"mlops_image_delivery": "registry", "prometheus_retention_size": "1024PB"}
    run = ansible_playbook("site.yml", "-i", edge_inventory(tmp_path, edge_container), "-e", json.dumps(extra))
    assert run.returncode != 0, run.stdout[-3000:]
    assert_only_input_checks_ran(run.stdout)
    assert "prometheus_retention_size (1024PB) is larger than the room" in run.stdout, run.stdout[-3000:]
    assert "prometheus_docker_volumes_dir (/var/lib/docker/volumes, measured at" in run.stdout


def test_edge_accepts_a_retention_size_that_fits(edge_container: str, tmp_path: Path) -> None:
    playbook = tmp_path / "preflight.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Run the host checks of role prometheus on the edge host",
                    "hosts": "edge",
                    "gather_facts": False,
                    "tasks": [
                        {"ansible.builtin.include_role": {"name": "mlops", "public": True}},
                        {"ansible.builtin.include_role": {"name": "prometheus", "tasks_from": "preflight-host.yml"}},
                    ],
                }
            ]
        )
    )
    extra = {"prometheus_retention_size": "1MB"}
    run = ansible_playbook(str(playbook), "-i", edge_inventory(tmp_path, edge_container), "-e", json.dumps(extra))
    assert run.returncode == 0, run.stdout[-3000:]
    # The check ran on the host's measurement (it is skipped where nothing could be measured).
    for task in ("Measure the room for the Prometheus data", "Check that prometheus_retention_size fits in the room"):
        section = run.stdout.split(task, 1)[1].split("TASK [", 1)[0]
        assert f"ok: [{EDGE_HOST}]" in section, run.stdout[-3000:]


def test_production_refuses_a_retention_size_above_80_percent_of_the_claim(tmp_path: Path) -> None:
    hosts = yaml.safe_load((ROOT / "inventories/prod/hosts.yml").read_text())
    for group in hosts["k3s_cluster"]["children"].values():
        for name in group["hosts"]:
            group["hosts"][name] = {"ansible_connection": DOCKER_CONNECTION}
    hosts["k3s_cluster"]["vars"].pop("ansible_user", None)
    extra = {"grafana_admin_password": "a-real-secret-from-the-vault", "prometheus_retention_size": "50GB"}
    run = ansible_playbook("site.yml", "-i", inventory(tmp_path, "inventories/prod", hosts), "-e", json.dumps(extra))
    assert run.returncode != 0, run.stdout[-3000:]
    assert_only_input_checks_ran(run.stdout)
    assert "prometheus_retention_size (50GB) is above k8s_topology_prometheus_retention_max_percent" in run.stdout
    assert "mlops_services.prometheus.volumes: size_gib 10" in run.stdout, run.stdout[-3000:]


def test_the_sample_production_inventory_fits_its_claim() -> None:
    group_vars = yaml.safe_load((ROOT / "inventories/prod/group_vars/k3s_cluster/main.yml").read_text())
    catalogue = yaml.safe_load((ROOT / "roles/mlops/defaults/main.yml").read_text())["mlops_services"]
    (volume,) = catalogue["prometheus"]["volumes"]
    match = re.fullmatch(r"(\d+)GB", group_vars["prometheus_retention_size"])
    assert match, group_vars["prometheus_retention_size"]
    assert int(match.group(1)) * 100 <= volume["size_gib"] * 80
