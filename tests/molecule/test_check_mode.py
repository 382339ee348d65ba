"""Check mode on a converged host reports no change.

Shared by every Molecule scenario (each scenario's tests/ links here). It runs after
converge and idempotence, as part of verify, with the scenario's own inventory and
Ansible configuration that Molecule exports to the verifier.
"""

from __future__ import annotations

from mlops_testkit.ansible import scenario_playbook


def test_check_mode_reports_no_change_on_converged_host() -> None:
    run = scenario_playbook("converge.yml", "--check", "--diff")
    assert run.returncode == 0, run.tail()
    assert run.recaps, run.tail()
    changed = {host: count for host, count in run.changed().items() if count}
    assert not changed, f"check mode would change {changed}:\n" + "\n".join(run.changed_tasks())
