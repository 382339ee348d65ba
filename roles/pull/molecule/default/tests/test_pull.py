"""Pull mode on a Debian 13 test host: the units, their runs, and the metrics they write.

The services are fired by hand (`systemctl start`, which waits for a oneshot service to end)
rather than by waiting for the timers. The source is a git bundle of a light playbook
(tests/source_repo.py); new commits are shipped to the host as new bundles.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import source_repo
from mlops_testkit.ansible import scenario_playbook

TEXTFILE = "/var/lib/mlops/textfile"
BUNDLE = "/var/lib/mlops-pull/source.bundle"
PULL = "mlops-pull.service"
CHECK = "mlops-pull-check.service"
SOURCE = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "pull-source"
SAMPLE = re.compile(r"^(?P<key>[a-z_]+(?:\{[^}]*\})?) (?P<value>\S+)$")


def metrics(host: Any, mode: str) -> dict[str, float]:
    text = host.file(f"{TEXTFILE}/mlops_ansible_{mode}.prom").content_string
    found = {}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            found[m["key"]] = float(m["value"])
    return found


def tasks(got: dict[str, float], mode: str, result: str) -> float:
    return got[f'mlops_ansible_run_tasks{{mode="{mode}",result="{result}"}}']


def fire(host: Any, unit: str) -> Any:
    return host.run(f"systemctl start {unit}")


def journal(host: Any, unit: str) -> str:
    return host.run(f"journalctl --no-pager -n 60 -u {unit}").stdout


def ship(host: Any, playbook: str, message: str, sign: bool = True) -> None:
    """Commit the playbook, bundle the branch and copy the bundle over the host's."""
    source_repo.commit(SOURCE, playbook, message, sign=sign)
    bundle = source_repo.bundle(SOURCE, "shipped.bundle")
    result = host.ansible("ansible.builtin.copy", f"src={bundle} dest={BUNDLE} mode=0640", check=False, become=True)
    assert not result.get("failed"), result


# ---- read-only checks of the converged host ------------------------------------------------


def test_timers_are_enabled_with_a_randomised_delay(host: Any) -> None:
    for timer, delay in (("mlops-pull.timer", "15min"), ("mlops-pull-check.timer", "10min")):
        assert host.service(timer).is_enabled
        assert host.service(timer).is_running
        text = host.file(f"/etc/systemd/system/{timer}").content_string
        assert f"RandomizedDelaySec={delay}" in text
        assert "FixedRandomDelay=true" in text


@pytest.mark.parametrize("unit", [PULL, CHECK])
def test_services_take_the_lock_and_are_hardened(host: Any, unit: str) -> None:
    text = host.file(f"/etc/systemd/system/{unit}").content_string
    assert "--lock /run/lock/mlops-converge.lock" in text
    for setting in ("Type=oneshot", "NoNewPrivileges=yes", "PrivateTmp=yes", "Environment=GNUPGHOME="):
        assert setting in text, setting
    verify = host.run(f"systemd-analyze verify /etc/systemd/system/{unit}")
    assert verify.rc == 0, verify.stderr


def test_the_check_service_runs_in_check_mode_in_a_read_only_system(host: Any) -> None:
    text = host.file(f"/etc/systemd/system/{CHECK}").content_string
    assert "--mode check" in text
    assert "--check --diff" in text
    assert "ProtectSystem=full" in text


def test_the_run_script_verifies_commits_from_the_bundle(host: Any) -> None:
    text = host.file("/usr/local/lib/mlops-pull/converge.sh").content_string
    assert "bundle verify" in text
    assert "--verify-commit" in text
    assert host.run("sh -n /usr/local/lib/mlops-pull/converge.sh").rc == 0


def test_the_pushed_converge_recorded_its_result(host: Any) -> None:
    got = metrics(host, "push")
    assert got['mlops_ansible_run_success{mode="push"}'] == 1
    # The last pushed run was Molecule's idempotence run: nothing changed.
    assert tasks(got, "push", "changed") == 0
    assert tasks(got, "push", "ok") > 0


# ---- the units' runs, in order: each one starts from the state the one before left ---------


@pytest.mark.rerun
def test_first_firing_converges_the_host(host: Any) -> None:
    run = fire(host, PULL)
    assert run.rc == 0, journal(host, PULL)
    assert host.file(source_repo.MANAGED_FILE).content_string == source_repo.MANAGED_CONTENT
    got = metrics(host, "pull")
    assert got['mlops_ansible_run_success{mode="pull"}'] == 1
    assert tasks(got, "pull", "changed") > 0
    assert got['mlops_ansible_run_exit_code{mode="pull"}'] == 0


@pytest.mark.rerun
def test_second_firing_changes_nothing(host: Any) -> None:
    assert fire(host, PULL).rc == 0, journal(host, PULL)
    got = metrics(host, "pull")
    assert got['mlops_ansible_run_success{mode="pull"}'] == 1
    assert tasks(got, "pull", "changed") == 0


@pytest.mark.rerun
def test_a_hand_edit_shows_as_drift_and_is_not_undone_by_the_check(host: Any) -> None:
    assert host.run(f"echo edited by hand > {source_repo.MANAGED_FILE}").rc == 0
    assert fire(host, CHECK).rc == 0, journal(host, CHECK)
    got = metrics(host, "check")
    assert got['mlops_ansible_run_success{mode="check"}'] == 1
    assert got["mlops_ansible_drift_tasks"] >= 1
    assert host.file(source_repo.MANAGED_FILE).content_string == "edited by hand\n"


@pytest.mark.rerun
def test_a_pull_run_clears_the_drift(host: Any) -> None:
    assert fire(host, PULL).rc == 0, journal(host, PULL)
    assert host.file(source_repo.MANAGED_FILE).content_string == source_repo.MANAGED_CONTENT
    assert fire(host, CHECK).rc == 0, journal(host, CHECK)
    assert metrics(host, "check")["mlops_ansible_drift_tasks"] == 0


@pytest.mark.rerun
def test_a_failing_commit_is_reported_as_failed_never_as_no_drift(host: Any) -> None:
    last_success = metrics(host, "pull")['mlops_ansible_run_last_success_timestamp_seconds{mode="pull"}']
    ship(host, source_repo.FAILING, "A playbook that fails")
    assert fire(host, PULL).rc != 0
    assert "broken on purpose" in journal(host, PULL)
    assert host.run(f"systemctl is-failed {PULL}").stdout.strip() == "failed"
    got = metrics(host, "pull")
    assert got['mlops_ansible_run_success{mode="pull"}'] == 0
    assert tasks(got, "pull", "failed") >= 1
    assert got['mlops_ansible_run_last_success_timestamp_seconds{mode="pull"}'] == last_success
    assert fire(host, CHECK).rc != 0
    got = metrics(host, "check")
    assert got['mlops_ansible_run_success{mode="check"}'] == 0
    assert "mlops_ansible_drift_tasks" not in got


@pytest.mark.rerun
def test_an_unsigned_commit_is_refused(host: Any) -> None:
    unsigned = source_repo.GOOD.replace("managed by the pull scenario", "from an unsigned commit")
    ship(host, unsigned, "An unsigned commit", sign=False)
    assert fire(host, PULL).rc != 0
    # ansible-pull's git step refused it (the git module's message), before any playbook ran.
    assert "Failed to verify GPG signature" in journal(host, PULL)
    # The playbook never ran: no task counts, the file keeps the signed content.
    got = metrics(host, "pull")
    assert got['mlops_ansible_run_success{mode="pull"}'] == 0
    assert got['mlops_ansible_run_exit_code{mode="pull"}'] != 0
    assert not any(key.startswith("mlops_ansible_run_tasks") for key in got)
    assert host.file(source_repo.MANAGED_FILE).content_string == source_repo.MANAGED_CONTENT


@pytest.mark.rerun
def test_a_good_signed_commit_brings_the_host_back(host: Any) -> None:
    ship(host, source_repo.GOOD, "Back to the light playbook")
    assert fire(host, PULL).rc == 0, journal(host, PULL)
    assert metrics(host, "pull")['mlops_ansible_run_success{mode="pull"}'] == 1


@pytest.mark.rerun
def test_push_mode_removes_the_units_and_keeps_the_metrics(host: Any) -> None:
    run = scenario_playbook("converge.yml", extra_vars={"pull_mode": "push"})
    assert run.returncode == 0, run.tail()
    for unit in ("mlops-pull.timer", "mlops-pull-check.timer", PULL, CHECK):
        assert not host.file(f"/etc/systemd/system/{unit}").exists, unit
    assert host.run("systemctl list-timers --all --no-legend").stdout.count("mlops-pull") == 0
    assert not host.file("/usr/local/lib/mlops-pull/converge.sh").exists
    # The last pull run's result stays for Prometheus; pushed runs keep writing theirs.
    assert host.file(f"{TEXTFILE}/mlops_ansible_pull.prom").exists
    assert metrics(host, "push")['mlops_ansible_run_success{mode="push"}'] == 1
