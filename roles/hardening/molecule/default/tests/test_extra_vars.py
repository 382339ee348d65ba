"""Public booleans and integers given on the command line work: `-e key=value` passes strings.

ansible-core 2.19 stops `when: flag` on the string "true" without naming the variable, and
a template takes the string "false" for true. The role coerces every use (`| bool`,
`| int`; tests/test_hardening_coercion.py checks the code); these tests run converge.yml
with every public bool and int of meta/argument_specs.yml given as `-e key=value` strings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from mlops_testkit.ansible import scenario_playbook

ROLE = Path(__file__).resolve().parents[3]
# converge.yml's own values where they differ from the defaults.
CONVERGE = {"hardening_limits_service_nofile": 4096}


def spec_options() -> dict[str, Any]:
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())
    options: dict[str, Any] = specs["argument_specs"]["main"]["options"]
    return options


def as_strings() -> list[str]:
    """`-e name=value` for every public bool and int, with the value converge.yml uses."""
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    args: list[str] = []
    for name, option in spec_options().items():
        value = CONVERGE.get(name, defaults[name])
        if option.get("type") == "bool":
            args += ["-e", f"{name}={'true' if value else 'false'}"]
        elif option.get("type") == "int":
            args += ["-e", f"{name}={value}"]
    return args


def test_every_public_bool_and_int_is_given_as_a_string() -> None:
    args = as_strings()
    assert "hardening_deploy_sudo_full=false" in args
    assert "hardening_sshd_max_auth_tries=3" in args
    assert "hardening_limits_core_dumps=false" in args
    typed = [name for name, o in spec_options().items() if o.get("type") in ("bool", "int")]
    assert len(args) == 2 * len(typed)


def test_string_values_on_a_converged_host_change_nothing() -> None:
    # "false" taken for true would grant full sudo and allow core dumps: a change, and a failure.
    run = scenario_playbook("converge.yml", *as_strings())
    assert run.returncode == 0, run.tail()
    assert run.recaps, run.tail()
    assert run.total_changed == 0, "\n".join(run.changed_tasks())


def test_string_true_and_numbers_are_applied_as_booleans_and_numbers() -> None:
    run = scenario_playbook(
        "converge.yml",
        "--check",
        "--diff",
        "--tags",
        "hardening_sudo,hardening_ssh,hardening_limits",
        "-e",
        "hardening_deploy_sudo_full=true",
        "-e",
        "hardening_sshd_max_auth_tries=4",
        "-e",
        "hardening_limits_core_dumps=true",
    )
    assert run.returncode == 0, run.tail()
    assert "+mlops-deploy ALL=(ALL:ALL) NOPASSWD: ALL" in run.output, run.tail()
    assert "+MaxAuthTries 4" in run.output, run.tail()
    assert "-*               hard    core     0" in run.output, run.tail()
