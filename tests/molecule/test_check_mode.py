"""Check mode on a converged host reports no change.

Shared by every Molecule scenario (each scenario's tests/ links here). It runs after
converge and idempotence, as part of verify, with the scenario's own inventory and
Ansible configuration that Molecule exports to the verifier.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")
RECAP = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def test_check_mode_reports_no_change_on_converged_host() -> None:
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    env = dict(
        os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default"
    )
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    playbook = scenario / "converge.yml"
    run = subprocess.run(
        ["ansible-playbook", "--check", "--diff", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(playbook)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    output = ANSI.sub("", run.stdout + run.stderr)
    assert run.returncode == 0, output[-4000:]
    recaps = RECAP.findall(output)
    assert recaps, output[-4000:]
    changed = {host: int(c) for host, c, _u, _f in recaps if int(c)}
    assert not changed, f"check mode would change {changed}:\n" + "\n".join(changed_tasks(output))


def changed_tasks(output: str) -> list[str]:
    """Each task that reported a change, with its diff: what check mode would do."""
    found = []
    for block in re.split(r"^(?=TASK \[)", output, flags=re.M):
        if re.search(r"^changed: \[", block, re.M):
            found.append(block.strip()[:3000])
    return found
