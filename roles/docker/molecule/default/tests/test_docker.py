"""The converged host: Docker Engine, Compose v2, daemon.json live, nobody in the docker group."""

from __future__ import annotations

import json
from typing import Any

from conftest import docker_info

EXPECTED_DAEMON_JSON = {
    "log-driver": "json-file",
    "log-opts": {"max-size": "10m", "max-file": "3"},
    "live-restore": True,
    "no-new-privileges": True,
    "labels": ["mlops.test=converge"],
}


def test_distribution_packages_are_installed(host: Any) -> None:
    for name in ("docker.io", "docker-cli", "docker-compose"):
        assert host.package(name).is_installed, name


def test_recommended_packages_are_left_out(host: Any) -> None:
    # docker_install_recommends is false by default: apt's recommends of docker.io stay out.
    for name in ("git", "needrestart", "dbus-user-session"):
        assert not host.package(name).is_installed, name


def test_service_is_enabled_and_running(host: Any) -> None:
    service = host.service("docker")
    assert service.is_enabled
    assert service.is_running


def test_daemon_json_is_the_merged_dict(host: Any) -> None:
    config = host.file("/etc/docker/daemon.json")
    assert config.user == "root"
    assert config.group == "root"
    assert config.mode == 0o644
    assert json.loads(config.content_string) == EXPECTED_DAEMON_JSON


def test_running_daemon_uses_daemon_json(host: Any) -> None:
    info = docker_info(host)
    assert info["LoggingDriver"] == "json-file"
    assert info["LiveRestoreEnabled"] is True
    assert "name=no-new-privileges" in info["SecurityOptions"]
    assert "mlops.test=converge" in info["Labels"]
    assert info["Driver"] == "overlay2"


def test_compose_is_v2(host: Any) -> None:
    version = host.check_output("docker compose version --short").lstrip("v")
    assert int(version.split(".")[0]) == 2, version


def test_nobody_is_in_the_docker_group(host: Any) -> None:
    entry = host.check_output("getent group docker").split(":")
    assert entry[3] == "", f"docker group members: {entry[3]}"
    gid = entry[2]
    primary = host.check_output(f"getent passwd | awk -F: '$4 == {gid} {{print $1}}'")
    assert primary == "", f"accounts whose primary group is docker: {primary}"


def test_a_container_runs_without_new_privileges(host: Any, busybox_image: str) -> None:
    out = host.check_output(f"docker run --rm {busybox_image} sh -c 'echo hello; grep NoNewPrivs /proc/self/status'")
    assert out.splitlines()[0] == "hello"
    assert out.splitlines()[1].split() == ["NoNewPrivs:", "1"]


def test_container_logs_are_rotated(host: Any, busybox_image: str) -> None:
    cid = host.check_output(f"docker create {busybox_image} true")
    try:
        log_config = json.loads(
            host.check_output(f"docker inspect --format '{{{{json .HostConfig.LogConfig}}}}' {cid}")
        )
    finally:
        host.run(f"docker rm {cid}")
    assert log_config == {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}}
