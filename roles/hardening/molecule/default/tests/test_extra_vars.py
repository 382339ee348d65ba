"""Public booleans and integers given on the command line work: `-e key=value` passes strings.

ansible-core 2.19 stops `when: flag` on the string "true" without naming the variable, and
a template takes the string "false" for true. The role coerces every use (`| bool`,
`| int`; tests/test_hardening_coercion.py checks the code). That every public bool and
int given as a string at its value changes nothing is the check-mode test's (test_check_mode,
shared by every scenario: one check-mode run on the converged host with all of them); here,
strings that differ from the converged values must be applied as the booleans and numbers
they name.
"""

from __future__ import annotations

from mlops_testkit.ansible import scenario_playbook
from test_check_mode import command_line_strings


def test_the_check_mode_run_gives_the_risky_values_as_strings() -> None:
    """The string "false" taken for true would grant full sudo and allow core dumps: a change
    the shared check-mode run would report, so it must give these three."""
    pairs = command_line_strings("hardening")
    assert "hardening_deploy_sudo_full=false" in pairs
    assert "hardening_sshd_max_auth_tries=3" in pairs
    assert "hardening_limits_core_dumps=false" in pairs


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
