"""Root and system accounts are refused as the accounts the role manages, before any change.

Each test runs converge.yml again against the Debian 13 test host with one account name
or id that names root or a system account, expects the run to stop in the input checks
with the refusal's own message (the variable's name alone also appears in task titles),
and checks that passwd, group, shadow and the sudo drop-in are untouched. The checks are the
same on Debian 12 (variables and a getent read), so one host keeps the scenario short.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
from mlops_testkit.ansible import scenario_playbook
from testinfra.host import Host

HOST = (
    f"{os.environ.get('MLOPS_MOLECULE_PREFIX', 'mlops')}-{os.environ.get('MOLECULE_SCENARIO_NAME', 'default')}-debian13"
)
testinfra_hosts = [f"ansible://{HOST}"]
KEY = "/root/molecule_test_key"


def account_state(host: Host) -> str:
    """Everything a takeover of an account would change: passwd, group, shadow, sudoers."""
    return host.check_output("sha256sum /etc/passwd /etc/group /etc/shadow /etc/sudoers.d/mlops-hardening")


def deploy_login_works(host: Host) -> bool:
    login = host.run(
        f"ssh -i {KEY} -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
        "-o LogLevel=ERROR mlops-deploy@127.0.0.1 id -un"
    )
    return login.rc == 0 and login.stdout.strip() == "mlops-deploy"


def refused(host: Host, extra_vars: dict[str, Any], message: str) -> None:
    before = account_state(host)
    run = scenario_playbook("converge.yml", "--limit", HOST, extra_vars=extra_vars)
    assert run.returncode != 0, run.tail()
    assert message in " ".join(run.output.split()), run.tail()
    assert re.search(r"changed=0\s", run.output), run.tail()
    assert account_state(host) == before
    assert deploy_login_works(host)


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"hardening_deploy_user": "root"}, 'hardening_deploy_user is "root", an account or group the system ships'),
        ({"hardening_deploy_groups": ["sudo"]}, 'hardening_deploy_groups has "sudo", an account or group the system'),
        ({"hardening_service_user": "nobody"}, 'hardening_service_user is "nobody", an account or group the system'),
        (
            {"hardening_service_group": "systemd-journal"},
            'hardening_service_group is "systemd-journal", an account or group the system ships',
        ),
        ({"hardening_service_uid": 999}, "hardening_service_uid is 999: the service user's ids must be regular"),
        ({"hardening_service_gid": "0"}, "hardening_service_gid is 0: the service user's ids must be regular"),
    ],
    ids=["root-deploy", "sudo-group", "nobody-service", "systemd-group", "uid-999", "gid-0-string"],
)
def test_system_account_names_are_refused_before_any_change(
    host: Host, extra_vars: dict[str, Any], message: str
) -> None:
    refused(host, extra_vars, message)


def test_an_existing_system_account_of_the_host_is_refused(host: Host) -> None:
    # Not on the role's list of Debian's accounts: only the host's own uid/gid tells.
    host.check_output("getent passwd mlops-sysacct || useradd --system --no-create-home mlops-sysacct")
    try:
        uid = host.check_output("id -u mlops-sysacct")
        gid = host.check_output("id -g mlops-sysacct")
        assert int(uid) < 1000
        refused(
            host,
            {"hardening_service_user": "mlops-sysacct"},
            f'hardening_service_user is "mlops-sysacct", which this host already has as a system account (uid {uid},',
        )
        refused(
            host,
            {"hardening_deploy_groups": ["mlops-sysacct"]},
            f'hardening_deploy_groups has "mlops-sysacct", which this host already has as a system group (gid {gid},',
        )
    finally:
        host.run("userdel mlops-sysacct")
