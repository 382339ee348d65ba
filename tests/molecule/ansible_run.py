"""Runs a playbook of the current Molecule scenario from its verifier tests.

Every scenario's tests/ links this file, so the tests that run converge.yml again (check
mode, bad input, a changed option) share one way to call ansible-playbook with the
scenario's inventory and Ansible configuration, which Molecule exports to the verifier.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")
RECAP = re.compile(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


@dataclass(frozen=True)
class PlaybookRun:
    returncode: int
    output: str

    @property
    def recaps(self) -> list[tuple[str, int, int, int]]:
        """(host, changed, unreachable, failed) of each host in the play recap."""
        return [(h, int(c), int(u), int(f)) for h, c, u, f in RECAP.findall(self.output)]

    @property
    def changed(self) -> dict[str, int]:
        return {host: changed for host, changed, _u, _f in self.recaps}


def run_playbook(playbook: str = "converge.yml", *args: str, timeout: int = 900) -> PlaybookRun:
    """ansible-playbook PLAYBOOK (a file of the scenario) ARGS against the scenario's hosts."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    # Plain output with a recap: the verifier parses it, so no timing callback in between.
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.builtin.default"
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    run = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], *args, str(scenario / playbook)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    return PlaybookRun(run.returncode, ANSI.sub("", run.stdout + run.stderr))
