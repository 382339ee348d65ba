"""Check mode on a converged host reports no change.

Shared by every Molecule scenario (each scenario's tests/ links here). It runs after
converge and idempotence, as part of verify, with the scenario's own inventory and
Ansible configuration that Molecule exports to the verifier.
"""

from __future__ import annotations

import re

from ansible_run import run_playbook


def test_check_mode_reports_no_change_on_converged_host() -> None:
    run = run_playbook("converge.yml", "--check", "--diff")
    assert run.returncode == 0, run.output[-4000:]
    assert run.recaps, run.output[-4000:]
    changed = {host: count for host, count in run.changed.items() if count}
    assert not changed, f"check mode would change {changed}:\n" + "\n".join(changed_tasks(run.output))


def changed_tasks(output: str) -> list[str]:
    """Each task that reported a change, with its diff: what check mode would do."""
    found = []
    for block in re.split(r"^(?=TASK \[)", output, flags=re.M):
        if re.search(r"^changed: \[", block, re.M):
            found.append(block.strip()[:3000])
    return found
