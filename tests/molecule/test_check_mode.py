"""Check mode on a converged host reports no change, with every public boolean and number
given as a command-line string.

Shared by every Molecule scenario (each scenario's tests/ links here). It runs after
converge and idempotence, as part of verify, with the scenario's own inventory and
Ansible configuration that Molecule exports to the verifier.

One run checks two things. Check mode works on a converged host: it succeeds and would change
nothing. And `-e key=value` works for the booleans and numbers of the roles under test:
`-e key=value` passes strings (`-e hardening_deploy_sudo_full=true` is the string "true"),
ansible-core 2.19 refuses a string where a conditional wants a boolean, and a template takes
the string "false" for true. Each is given at its default value, so the run must still report
no change. (One run instead of two: each is a whole converge of the scenario.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from mlops_testkit import ROOT
from mlops_testkit.ansible import scenario_playbook

TYPES = {"bool", "int", "float"}


def roles_under_test() -> list[str]:
    """The role of a role scenario (roles/<role>/molecule/...), or every role for a project one."""
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]).resolve()
    if scenario.parent.name == "molecule" and scenario.parents[2].name == "roles":
        return [scenario.parents[1].name]
    return sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "meta/argument_specs.yml").is_file())


def command_line_strings(role: str) -> list[str]:
    """`key=value` for each boolean and number of the role's main entry point with a literal default."""
    spec: dict[str, Any] = yaml.safe_load((ROOT / "roles" / role / "meta/argument_specs.yml").read_text())
    pairs = []
    for name, option in spec["argument_specs"]["main"]["options"].items():
        default = option.get("default")
        if option.get("type") in TYPES and name.startswith(f"{role}_") and default is not None:
            if isinstance(default, str) and "{{" in default:
                continue
            text = str(default).lower() if isinstance(default, bool) else str(default)
            pairs.append(f"{name}={text}")
    return pairs


def set_by_the_scenario() -> str:
    """The scenario's own settings (its molecule.yml and playbooks): those keep their values."""
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    return "\n".join(p.read_text() for p in sorted(scenario.glob("*.yml")))


def test_check_mode_with_command_line_strings_reports_no_change_on_converged_host() -> None:
    own = set_by_the_scenario()
    pairs = [
        pair for role in roles_under_test() for pair in command_line_strings(role) if pair.split("=", 1)[0] not in own
    ]
    assert pairs, "no boolean or number in the roles under test"
    args = [arg for pair in pairs for arg in ("-e", pair)]
    run = scenario_playbook("converge.yml", "--check", "--diff", *args)
    assert run.returncode == 0, f"with {pairs}:\n{run.tail()}"
    assert run.recaps, run.tail()
    changed = {host: count for host, count in run.changed().items() if count}
    assert not changed, f"check mode with {pairs} would change {changed}:\n" + "\n".join(run.changed_tasks())
