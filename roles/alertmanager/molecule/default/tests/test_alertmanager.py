"""The alertmanager role on a Debian 13 host: the secret file, its owner and mode, its
content from the inventory, and amtool's word on it as the container user reads it."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

CONFIG_DIR = "/etc/mlops/alertmanager"
CONFIG = f"{CONFIG_DIR}/alertmanager.yml"
AS_CONTAINER_USER = "setpriv --reuid=65534 --regid=65534 --clear-groups --"


@pytest.mark.parametrize(("path", "mode"), [(CONFIG_DIR, 0o750), (CONFIG, 0o640)])
def test_the_secret_file_is_root_owned_and_readable_by_the_container_group_only(
    host: Any, path: str, mode: int
) -> None:
    f = host.file(path)
    assert f.exists
    assert (f.uid, f.gid, f.mode) == (0, 65534, mode)


def test_other_users_cannot_read_it(host: Any) -> None:
    assert host.run(f"setpriv --reuid=1234 --regid=1234 --clear-groups -- cat {CONFIG}").rc != 0


def test_receivers_routes_and_mail_come_from_the_inventory(host: Any) -> None:
    doc = yaml.safe_load(host.file(CONFIG).content_string)
    receivers = {r["name"]: r for r in doc["receivers"]}
    assert set(receivers) == {"ops-webhook", "ops-email"}
    assert receivers["ops-webhook"]["webhook_configs"][0]["url"].endswith("token=molecule-Hook-t0ken")
    assert doc["route"]["receiver"] == "ops-webhook"
    assert doc["route"]["routes"][0]["receiver"] == "ops-email"
    assert doc["global"]["smtp_auth_password"] == "molecule-Smtp-s3cret"
    assert doc["global"]["smtp_require_tls"] is True


def test_amtool_accepts_the_file_as_the_container_user_reads_it(host: Any) -> None:
    run = host.run(f"{AS_CONTAINER_USER} amtool check-config {CONFIG}")
    assert run.rc == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout + run.stderr


def test_no_stray_file_is_left_beside_it(host: Any) -> None:
    assert host.run(f"ls -A {CONFIG_DIR}").stdout.split() == ["alertmanager.yml"]
