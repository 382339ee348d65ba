"""Bad input never reaches a converged host, and a bad sshd value never reaches sshd.

Each test runs the scenario's converge.yml again against one test host with bad extra-vars,
expects the run to fail with a message naming the cause, and checks that the host still
has its old configuration and still lets the deploy user in.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mlops_testkit.ansible import scenario_playbook, task_block
from testinfra.host import Host

DROPIN = "/etc/ssh/sshd_config.d/00-mlops-hardening.conf"
KEY = "/root/molecule_test_key"


def converge(host: Host, extra_vars: dict[str, Any], *args: str) -> tuple[int, str]:
    limit = host.backend.get_hostname()
    run = scenario_playbook("converge.yml", "--limit", limit, "--extra-vars", json.dumps(extra_vars), *args)
    return run.returncode, run.output


def sshd_state(host: Host) -> tuple[str, str, str]:
    """Checksum of the drop-in, sshd's main PID and how often systemd has reloaded it."""
    checksum = host.check_output(f"sha256sum {DROPIN}").split()[0]
    pid = host.check_output("systemctl show --property MainPID --value ssh.service")
    # A reload makes sshd re-execute itself: same PID, but ExecMainStartTimestamp stays, so
    # the journal's "Reloaded"/"Reloading" lines are counted instead.
    reloads = host.check_output("journalctl --unit ssh.service --no-pager --output cat | grep -c Reload || true")
    return checksum, pid, reloads


def deploy_login_works(host: Host) -> bool:
    login = host.run(
        f"ssh -i {KEY} -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
        "-o LogLevel=ERROR mlops-deploy@127.0.0.1 id -un"
    )
    return login.rc == 0 and login.stdout.strip() == "mlops-deploy"


def test_invalid_sshd_value_fails_validation_and_leaves_sshd_alone(host: Host) -> None:
    # An option only sshd can judge: the role's checks pass it, `sshd -t` must not.
    before = sshd_state(host)
    rc, output = converge(host, {"hardening_sshd_extra_options": {"MaxStartups": "plenty"}}, "--tags", "hardening_ssh")
    assert rc != 0, output[-3000:]
    assert "failed to validate" in output, output[-3000:]
    assert "MaxStartups" not in host.file(DROPIN).content_string
    assert sshd_state(host) == before
    assert host.service("ssh").is_running
    assert deploy_login_works(host)


def test_unsupported_cipher_is_refused_before_sshd_is_touched(host: Host) -> None:
    before = sshd_state(host)
    rc, output = converge(host, {"hardening_sshd_ciphers": ["aes512-imaginary@openssh.com"]}, "--tags", "hardening_ssh")
    assert rc != 0, output[-3000:]
    assert "hardening_sshd_ciphers has ['aes512-imaginary@openssh.com']" in output, output[-3000:]
    assert sshd_state(host) == before
    assert deploy_login_works(host)


def test_deploy_user_without_keys_is_refused_before_any_change(host: Host) -> None:
    keys = host.file("/home/mlops-deploy/.ssh/authorized_keys").content_string
    rc, output = converge(host, {"hardening_deploy_authorized_keys": []})
    assert rc != 0, output[-3000:]
    assert "hardening_deploy_authorized_keys is empty" in output, output[-3000:]
    # The preflight failed before the first change: no task reported one.
    assert re.search(r"changed=0\s", output), output[-3000:]
    assert host.file("/home/mlops-deploy/.ssh/authorized_keys").content_string == keys
    assert deploy_login_works(host)


def test_wildcard_sudo_command_is_refused(host: Host) -> None:
    rc, output = converge(
        host, {"hardening_deploy_sudo_commands": ["/usr/bin/systemctl restart *"]}, "--tags", "hardening_sudo"
    )
    assert rc != 0, output[-3000:]
    assert 'hardening_deploy_sudo_commands has "/usr/bin/systemctl restart *"' in output, output[-3000:]


def test_runtime_none_would_turn_forwarding_off(host: Host) -> None:
    # Check mode only: shows the runtime switch drives forwarding without changing the host.
    rc, output = converge(
        host, {"hardening_container_runtime": "none"}, "--check", "--diff", "--tags", "hardening_sysctl"
    )
    assert rc == 0, output[-3000:]
    written = task_block(output, "TASK [hardening : Write every sysctl key to the file applied at boot]")
    assert set(re.findall(r"^\+(\S+=\S+)$", written, re.M)) == {
        "net.ipv4.ip_forward=0",
        "net.ipv6.conf.all.forwarding=0",
        "net.ipv4.conf.all.rp_filter=1",
        "net.ipv4.conf.default.rp_filter=1",
    }, written
    assert len(re.findall(r"^-(\S+=\S+)$", written, re.M)) == 4, written
    live = task_block(
        output, "TASK [hardening : Set the live values that differ, of the keys this host may set (namespaced)]"
    )
    assert re.search(r"^changed: \[", live, re.M), live
    assert host.check_output("sysctl -n net.ipv4.ip_forward") == "1"
