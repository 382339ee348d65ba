"""A changed daemon option is live when the role ends, and running containers survive it.

Runs converge.yml again with other docker_daemon_options (extra vars), checks the running
daemon, then converges back so that the host ends as the scenario left it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import docker_info, run_playbook
from mlops_testkit.ansible import flat

CHANGED = {"labels": ["mlops.test=changed"], "log-driver": "local"}
SURVIVOR = "mlops-test-survivor"


@pytest.fixture
def running_container(host: Any, busybox_image: str) -> Iterator[str]:
    host.run(f"docker rm --force {SURVIVOR}")
    host.check_output(f"docker run --detach --name {SURVIVOR} {busybox_image} sleep 600")
    started = host.check_output(f"docker inspect --format '{{{{.State.StartedAt}}}}' {SURVIVOR}")
    yield started
    host.run(f"docker rm --force {SURVIVOR}")


def test_changed_option_is_live_and_containers_survive(host: Any, running_container: str) -> None:
    pid_before = host.check_output("systemctl show --property MainPID --value docker")
    try:
        rc, output, changed = run_playbook(
            "converge.yml", "--extra-vars", json.dumps({"docker_daemon_options": CHANGED})
        )
        assert rc == 0, output[-4000:]
        assert all(count > 0 for count in changed.values()), output[-4000:]

        config = json.loads(host.file("/etc/docker/daemon.json").content_string)
        assert config["log-driver"] == "local"
        assert config["labels"] == ["mlops.test=changed"]

        # The daemon was restarted by the role itself, before it ended, and runs the new options.
        assert host.check_output("systemctl show --property MainPID --value docker") != pid_before
        info = docker_info(host)
        assert info["LoggingDriver"] == "local"
        assert info["Labels"] == ["mlops.test=changed"]
        assert info["LiveRestoreEnabled"] is True

        # live-restore: the container started before the restart is the same one, still running.
        state = json.loads(host.check_output(f"docker inspect --format '{{{{json .State}}}}' {SURVIVOR}"))
        assert state["Running"] is True
        assert state["StartedAt"] == running_container
    finally:
        rc, output, _changed = run_playbook("converge.yml")
    assert rc == 0, output[-4000:]
    info = docker_info(host)
    assert info["LoggingDriver"] == "json-file"
    assert info["Labels"] == ["mlops.test=converge"]


def test_invalid_option_is_refused_before_the_file_changes(host: Any) -> None:
    before = host.file("/etc/docker/daemon.json").content_string
    pid_before = host.check_output("systemctl show --property MainPID --value docker")
    rc, output, _changed = run_playbook(
        "converge.yml", "--extra-vars", json.dumps({"docker_daemon_options": {"no-such-option": 1}})
    )
    assert rc != 0
    assert "no-such-option" in flat(output)
    assert host.file("/etc/docker/daemon.json").content_string == before
    assert host.check_output("systemctl show --property MainPID --value docker") == pid_before


def test_numeric_log_option_is_refused_naming_the_variables(host: Any) -> None:
    rc, output, _changed = run_playbook(
        "converge.yml", "--extra-vars", json.dumps({"docker_daemon_options": {"log-opts": {"max-file": 3}}})
    )
    assert rc != 0
    assert "docker_daemon_options" in flat(output) and "only strings" in flat(output)


def test_missing_docker_user_is_refused(host: Any) -> None:
    rc, output, _changed = run_playbook("converge.yml", "--extra-vars", json.dumps({"docker_users": ["nosuchaccount"]}))
    assert rc != 0
    assert "docker_users lists accounts that do not exist on this host: nosuchaccount" in flat(output)
    assert "nosuchaccount" not in host.check_output("getent group docker")


@pytest.mark.parametrize("account", ["root", "daemon", "www-data"])
def test_root_or_system_account_in_docker_users_is_refused(host: Any, account: str) -> None:
    """The docker group is root: no uid below 1000 joins it, and the host is left unchanged."""
    before = host.check_output("getent group docker")
    rc, output, _changed = run_playbook("converge.yml", "--extra-vars", json.dumps({"docker_users": [account]}))
    assert rc != 0
    assert f"docker_users names {account} (uid" in flat(output), output[-4000:]
    assert "never join the docker group" in flat(output)
    assert host.check_output("getent group docker") == before


def test_missing_compose_plugin_fails_the_role(host: Any) -> None:
    plugin = "/usr/libexec/docker/cli-plugins/docker-compose"
    host.check_output(f"mv {plugin} {plugin}.aside")
    try:
        rc, output, _changed = run_playbook("converge.yml")
    finally:
        host.check_output(f"mv {plugin}.aside {plugin}")
    assert rc != 0
    assert "the Compose plugin found is 'none'" in flat(output), output[-4000:]


def test_listed_account_is_added_to_the_docker_group(host: Any) -> None:
    account = "mlops-test-operator"
    host.check_output(f"useradd --no-create-home {account}")
    try:
        rc, output, changed = run_playbook("converge.yml", "--extra-vars", json.dumps({"docker_users": [account]}))
        assert rc == 0, output[-4000:]
        assert all(count == 1 for count in changed.values()), output[-4000:]
        assert "docker" in host.user(account).groups
    finally:
        host.run(f"userdel {account}")
    assert host.check_output("getent group docker").split(":")[3] == ""
