"""The converged state of the hardening role, checked on every test host (Debian 12 and 13).

Expected values come from the role's own vars files where the role defines them, so these
tests follow the role rather than a copy of its lists. Logins are real SSH connections
made from inside the test host to 127.0.0.1 with the test key pair made by prepare.yml.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import jinja2
import yaml
from testinfra.host import Host

ROLE = Path(__file__).resolve().parents[3]
DEPLOY = "mlops-deploy"
SERVICE = "mlops"
PROBE = "mlops-probe"
PROBE_PASSWORD = "probe-password-1"
KEY = "/root/molecule_test_key"
DROPIN = "/etc/ssh/sshd_config.d/00-mlops-hardening.conf"
SYSCTL_FILE = "/etc/sysctl.d/90-mlops-hardening.conf"
LIMITS_FILE = "/etc/security/limits.d/90-mlops-hardening.conf"
NOFILE = "4096"  # converge.yml: below the hard limit a test host inherits from Docker
SSH_OPTIONS = [
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "ConnectTimeout=15",
    "-o", "LogLevel=ERROR",
]  # fmt: skip


def role_vars(name: str) -> dict[str, Any]:
    data = yaml.safe_load((ROLE / "vars" / name).read_text())
    assert isinstance(data, dict)
    return data


def day2_commands(runtime: str) -> list[str]:
    """The role's day-2 sudo list, rendered with the catalogue's values (role mlops's defaults)."""
    catalogue = yaml.safe_load((ROLE.parent / "mlops" / "defaults" / "main.yml").read_text())
    values = {
        "mlops_compose_dir": jinja2.Template(catalogue["mlops_compose_dir"]).render(catalogue),
        "mlops_namespace": catalogue["mlops_namespace"],
    }
    return [
        jinja2.Template(command).render(values)
        for command in role_vars("main.yml")["__hardening_sudo_day2_commands"][runtime]
    ]


def debian_major(host: Host) -> str:
    return host.file("/etc/debian_version").content_string.strip().split(".")[0]


def ssh(host: Host, user: str, *extra: str, command: str = "id -un") -> Any:
    """Run ssh inside the test host to its own sshd on 127.0.0.1."""
    args = ["ssh", *SSH_OPTIONS, *extra, f"{user}@127.0.0.1", command]
    return host.run(" ".join(f"'{a}'" for a in args))


def key_login(host: Host, user: str) -> Any:
    return ssh(host, user, "-i", KEY, "-o", "BatchMode=yes", "-o", "PasswordAuthentication=no")


def password_login(host: Host, user: str) -> Any:
    """Offer only a password (the right one for the probe user) through SSH_ASKPASS."""
    host.run(
        f"printf '#!/bin/sh\\necho {PROBE_PASSWORD}\\n' > /root/molecule_askpass && chmod 0700 /root/molecule_askpass"
    )
    args = " ".join(
        f"'{a}'"
        for a in [
            "ssh", "-v", *SSH_OPTIONS,
            "-o", "BatchMode=no",
            "-o", "PreferredAuthentications=password,keyboard-interactive",
            "-o", "PubkeyAuthentication=no",
            "-o", "NumberOfPasswordPrompts=1",
            f"{user}@127.0.0.1", "id -un",
        ]
    )  # fmt: skip
    return host.run(f"SSH_ASKPASS=/root/molecule_askpass SSH_ASKPASS_REQUIRE=force DISPLAY=:0 setsid {args} </dev/null")


def sshd_effective(host: Host) -> dict[str, str]:
    out = host.check_output(f"/usr/sbin/sshd -T -C user={DEPLOY},host=localhost,addr=127.0.0.1")
    settings: dict[str, str] = {}
    for line in out.splitlines():
        keyword, _, value = line.partition(" ")
        settings.setdefault(keyword, value)
    return settings


# --- users --------------------------------------------------------------------------------


def test_deploy_user_has_a_shell_and_a_locked_password(host: Host) -> None:
    user = host.user(DEPLOY)
    assert user.exists
    assert user.shell == "/bin/bash"
    assert user.home == f"/home/{DEPLOY}"
    assert user.groups == [DEPLOY]
    assert host.check_output(f"passwd -S {DEPLOY}").split()[1] == "L"
    assert user.password.startswith("!")


def test_deploy_user_has_exactly_the_test_key(host: Host) -> None:
    expected = (Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "deploy_key.pub").read_text().strip()
    keys = host.file(f"/home/{DEPLOY}/.ssh/authorized_keys")
    assert keys.user == DEPLOY
    assert keys.mode == 0o600
    assert [line for line in keys.content_string.splitlines() if line.strip()] == [expected]


def test_service_user_is_locked_without_login_shell(host: Host) -> None:
    user = host.user(SERVICE)
    assert user.uid == 10001
    assert user.gid == 10001
    assert user.group == SERVICE
    assert user.shell == "/usr/sbin/nologin"
    assert user.home == "/var/lib/mlops"
    assert host.check_output(f"passwd -S {SERVICE}").split()[1] == "L"
    assert host.group(SERVICE).gid == 10001


def test_service_user_owns_the_stack_data_directory(host: Host) -> None:
    data = host.file("/var/lib/mlops")
    assert data.is_directory
    assert (data.user, data.group, data.mode) == (SERVICE, SERVICE, 0o750)


# --- sudo ---------------------------------------------------------------------------------


def test_sudoers_drop_in_is_valid(host: Host) -> None:
    dropin = host.file("/etc/sudoers.d/mlops-hardening")
    assert (dropin.user, dropin.group, dropin.mode) == ("root", "root", 0o440)
    assert host.run("visudo -c").rc == 0
    assert host.run("visudo -cf /etc/sudoers.d/mlops-hardening").rc == 0


def test_sudo_lists_exactly_the_explicit_commands(host: Host) -> None:
    expected = day2_commands("docker")
    # The Compose project directory holds compose.yml: commands run from /etc/mlops found none.
    assert "/usr/bin/docker compose --project-directory /etc/mlops/compose ps" in expected
    out = host.check_output(f"sudo -l -U {DEPLOY}")
    rules = [
        line.strip() for line in out.split("may run the following commands", 1)[1].splitlines()[1:] if line.strip()
    ]
    assert len(rules) == 1, out
    runas, _, commands = rules[0].partition(" NOPASSWD: ")
    assert runas == "(root)", out
    assert [c.strip() for c in commands.split(", ")] == expected


def test_sudo_refuses_anything_else_to_the_deploy_user(host: Host) -> None:
    allowed = host.run(f"runuser -u {DEPLOY} -- sudo -n -l /usr/bin/systemctl restart docker.service")
    assert allowed.rc == 0, allowed.stderr
    for command in [
        "/usr/bin/id",
        "/usr/bin/systemctl restart ssh.service",
        "/usr/bin/systemctl restart docker.service now",
    ]:
        refused = host.run(f"runuser -u {DEPLOY} -- sudo -n -l {command}")
        assert refused.rc != 0, command
    shell = host.run(f"runuser -u {DEPLOY} -- sudo -n /bin/sh -c id")
    assert shell.rc != 0
    assert "uid=0" not in shell.stdout


# --- sshd ---------------------------------------------------------------------------------


def test_sshd_is_enabled_and_running(host: Host) -> None:
    service = host.service("ssh")
    assert service.is_enabled
    assert service.is_running


def test_sshd_drop_in_sorts_first_and_is_private(host: Host) -> None:
    dropin = host.file(DROPIN)
    assert (dropin.user, dropin.mode) == ("root", 0o600)
    dropins = sorted(host.check_output("ls /etc/ssh/sshd_config.d/").split())
    assert dropins[0] == "00-mlops-hardening.conf"


def test_sshd_effective_settings(host: Host) -> None:
    settings = sshd_effective(host)
    expected = {
        "permitrootlogin": "no",
        "passwordauthentication": "no",
        "kbdinteractiveauthentication": "no",
        "pubkeyauthentication": "yes",
        "permitemptypasswords": "no",
        "maxauthtries": "3",
        "logingracetime": "30",
        "x11forwarding": "no",
        "allowagentforwarding": "no",
        "allowtcpforwarding": "local",
        "loglevel": "VERBOSE",
        "maxsessions": "2",
        "tcpkeepalive": "no",
    }
    assert {k: settings.get(k) for k in expected} == expected
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert settings["ciphers"] == ",".join(defaults["hardening_sshd_ciphers"])
    assert settings["macs"] == ",".join(defaults["hardening_sshd_macs"])
    kex = role_vars(f"Debian-{debian_major(host)}.yml")["__hardening_sshd_kex_algorithms"]
    assert settings["kexalgorithms"] == ",".join(kex)


def test_sshd_allow_groups_only_where_converge_set_it(host: Host) -> None:
    settings = sshd_effective(host)
    if debian_major(host) == "13":
        assert settings.get("allowgroups") == DEPLOY
    else:
        assert "allowgroups" not in settings


def test_deploy_user_logs_in_with_its_key(host: Host) -> None:
    login = key_login(host, DEPLOY)
    assert login.rc == 0, login.stderr
    assert login.stdout.strip() == DEPLOY


def test_root_is_refused_even_with_a_valid_key(host: Host) -> None:
    # The test key is authorized for root (prepare.yml): only PermitRootLogin refuses it.
    authorized = host.file("/root/.ssh/authorized_keys").content_string
    public = host.check_output(f"ssh-keygen -y -f {KEY}").split()[1]
    assert public in authorized
    login = key_login(host, "root")
    assert login.rc == 255
    assert "Permission denied" in login.stderr


def test_deploy_user_password_login_is_refused(host: Host) -> None:
    login = ssh(
        host, DEPLOY, "-o", "BatchMode=yes", "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password"
    )
    assert login.rc == 255
    assert "Permission denied (publickey)" in login.stderr


def test_password_login_is_refused_with_the_right_password(host: Host) -> None:
    login = password_login(host, PROBE)
    assert login.rc == 255
    assert "Permission denied (publickey)" in login.stderr
    # The server offers public keys and nothing else: no password, no keyboard-interactive.
    offered = re.findall(r"Authentications that can continue: (\S*)", login.stderr)
    assert offered
    assert set(offered) == {"publickey"}


def test_allow_groups_refuses_a_valid_key_outside_the_group(host: Host) -> None:
    login = key_login(host, PROBE)
    if debian_major(host) == "13":
        assert login.rc == 255
        assert "Permission denied" in login.stderr
    else:
        # Without AllowGroups the same key gets in: the refusal on 13 is AllowGroups' doing.
        assert login.rc == 0, login.stderr
        assert login.stdout.strip() == PROBE


# --- sysctl -------------------------------------------------------------------------------


def expected_sysctl() -> dict[str, str]:
    main = role_vars("main.yml")
    merged = {**main["__hardening_sysctl_base"], **main["__hardening_sysctl_runtime"]["docker"]}
    return {key: str(value) for key, value in merged.items()}


def sysctl_file(host: Host) -> dict[str, str]:
    entries: dict[str, str] = {}
    for line in host.file(SYSCTL_FILE).content_string.splitlines():
        if line.strip() and not line.lstrip().startswith(("#", ";")):
            key, _, value = line.partition("=")
            entries[key.strip()] = value.strip()
    return entries


def live_sysctl(host: Host, keys: list[str]) -> dict[str, str]:
    """Live values, read in one call (each call to the host costs a second or more)."""
    live: dict[str, str] = {}
    for line in host.check_output("sysctl " + " ".join(keys)).splitlines():
        key, _, value = line.partition(" = ")
        live[key] = value
    return live


def test_sysctl_file_holds_every_key_with_forwarding_on_for_docker(host: Host) -> None:
    entries = sysctl_file(host)
    assert entries == expected_sysctl()
    assert entries["net.ipv4.ip_forward"] == "1"
    assert entries["net.ipv6.conf.all.forwarding"] == "1"
    assert entries["net.ipv4.conf.all.rp_filter"] == "2"


def test_forwarding_is_live_on_for_docker(host: Host) -> None:
    # prepare.yml turned both off: they are on because the role set them.
    assert host.check_output("sysctl -n net.ipv4.ip_forward") == "1"
    assert host.check_output("sysctl -n net.ipv6.conf.all.forwarding") == "1"


def test_network_namespace_keys_are_applied_live(host: Host) -> None:
    applied = {k: v for k, v in expected_sysctl().items() if k.startswith(("net.ipv4.", "net.ipv6."))}
    assert applied
    assert live_sysctl(host, list(applied)) == applied


def test_whole_kernel_keys_are_written_but_not_applied_in_a_container(host: Host) -> None:
    # Inside a container kernel.*/fs.* are the host machine's kernel: `auto` must leave them
    # alone. prepare.yml recorded their values before the role ran.
    before = {}
    for line in host.file("/root/molecule_kernel_sysctl_before").content_string.splitlines():
        key, _, value = line.partition(" = ")
        before[key] = value
    assert before
    assert live_sysctl(host, list(before)) == before
    assert set(before) <= set(sysctl_file(host))


# --- limits and login.defs ----------------------------------------------------------------


def test_limits_turn_core_dumps_off_and_raise_nofile_for_the_service_user(host: Host) -> None:
    limits = host.file(LIMITS_FILE)
    assert (limits.user, limits.mode) == ("root", 0o644)
    rules = {
        tuple(line.split()[:3]): line.split()[3]
        for line in limits.content_string.splitlines()
        if line and line[0] != "#"
    }
    assert rules == {
        ("*", "soft", "core"): "0",
        ("*", "hard", "core"): "0",
        (SERVICE, "soft", "nofile"): NOFILE,
        (SERVICE, "hard", "nofile"): NOFILE,
    }
    # pam_limits applies them to a PAM session of the service user (the default soft limit
    # would be 1024).
    assert host.check_output(f"runuser -s /bin/sh -l {SERVICE} -c 'ulimit -Sn; ulimit -Hn; ulimit -c'").split() == [
        NOFILE,
        NOFILE,
        "0",
    ]


def test_login_umask_is_027(host: Host) -> None:
    lines = [
        line.split() for line in host.file("/etc/login.defs").content_string.splitlines() if line.startswith("UMASK")
    ]
    assert lines == [["UMASK", "027"]]


# --- what a security scanner (lynis) looks for ---------------------------------------------


def login_defs(host: Host) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in host.file("/etc/login.defs").content_string.splitlines():
        words = line.split()
        if words and not words[0].startswith("#"):
            found.setdefault(words[0], []).append(" ".join(words[1:]))
    return found


def test_login_defs_sets_hashing_rounds_and_aging_once(host: Host) -> None:
    found = login_defs(host)
    assert {
        k: found.get(k) for k in ("SHA_CRYPT_MIN_ROUNDS", "SHA_CRYPT_MAX_ROUNDS", "PASS_MAX_DAYS", "PASS_MIN_DAYS")
    } == {
        "SHA_CRYPT_MIN_ROUNDS": ["65536"],
        "SHA_CRYPT_MAX_ROUNDS": ["65536"],
        "PASS_MAX_DAYS": ["365"],
        "PASS_MIN_DAYS": ["1"],
    }
    # Debian's other settings are still there.
    assert found.get("ENCRYPT_METHOD")


def test_key_only_accounts_never_expire(host: Host) -> None:
    # Aging would force a password change at login, which a locked account cannot make.
    for user in (DEPLOY, SERVICE):
        assert host.check_output(f"chage -l {user} | grep 'Maximum number'").split(":")[1].strip() == "-1"


def test_banners_warn_before_login(host: Host) -> None:
    for path in ("/etc/issue", "/etc/issue.net"):
        assert "Authorized access only" in host.file(path).content_string


def test_unused_modules_cannot_load(host: Host) -> None:
    content = host.file("/etc/modprobe.d/90-mlops-hardening.conf").content_string
    for module in ("usb-storage", "firewire-core", "dccp", "sctp", "rds", "tipc"):
        assert f"install {module} /bin/false" in content
        assert f"blacklist {module}" in content


def test_login_shells_time_out_and_dump_no_core(host: Host) -> None:
    out = host.check_output("bash -lc 'echo $TMOUT; readonly -p | grep -c TMOUT; ulimit -c'").split()
    assert out == ["900", "1", "0"]


def test_core_dumps_are_not_stored_by_systemd(host: Host) -> None:
    dropin = host.file("/etc/systemd/coredump.conf.d/90-mlops-hardening.conf").content_string
    assert "Storage=none" in dropin
    assert "ProcessSizeMax=0" in dropin


def test_root_only_configuration_is_private(host: Host) -> None:
    assert host.file("/etc/ssh/sshd_config").mode == 0o600
    for path in ("/etc/cron.d", "/etc/cron.daily"):
        if host.file(path).exists:
            assert host.file(path).mode == 0o700, path


def test_security_updates_are_configured_and_installed_daily(host: Host) -> None:
    sources = host.check_output(
        "grep -rh -- '-security' /etc/apt/sources.list.d /etc/apt/sources.list 2>/dev/null || true"
    )
    assert "-security" in sources
    assert host.package("unattended-upgrades").is_installed
    config = host.check_output("apt-config dump")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in config
    assert 'Unattended-Upgrade::Automatic-Reboot "false";' in config
    assert 'Unattended-Upgrade::Package-Blacklist:: "docker";' in config


def test_audit_packages_are_installed_and_configured(host: Host) -> None:
    for package in ("libpam-tmpdir", "libpam-pwquality", "debsums", "apt-show-versions", "sysstat"):
        assert host.package(package).is_installed, package
    assert "CRON_CHECK=weekly" in host.file("/etc/default/debsums").content_string
    assert 'ENABLED="true"' in host.file("/etc/default/sysstat").content_string


def test_fail2ban_watches_sshd(host: Host) -> None:
    assert host.service("fail2ban").is_running
    status = host.check_output("fail2ban-client status sshd")
    assert "Journal matches:" in status or "File list:" in status, status
    # The test logins of this module come from 127.0.0.1, which is never banned.
    # fail2ban prints the configured 127.0.0.1/8 as the network it is.
    assert "127.0.0.0/8" in host.check_output("fail2ban-client get sshd ignoreip")
