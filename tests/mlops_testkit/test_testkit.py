"""The helper package itself: recap and failure parsing, test host arguments, the skip policy."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from xml.etree import ElementTree

import pytest

from mlops_testkit import ROOT, testhosts
from mlops_testkit.ansible import HostRecap, PlaybookRun, failures, parse_recap, plays, run_playbook, task_block

OUTPUT = textwrap.dedent(
    """\
    PLAY [Check every input] *******************************************************

    TASK [prometheus : Check the retention] ****************************************
    Sunday 29 November 2026  23:09:43 +0000 (0:00:00.881)       0:00:06.476 *******
    ok: [edge-1]
    failed: [edge-2] (item=prometheus_scrape_interval) => {ITEM}
    fatal: [edge-3]: FAILED! => {SPEC}

    RUNNING HANDLER [prometheus : Reload] ******************************************
    changed: [edge-1]

    PLAY [Deploy] ******************************************************************

    PLAY RECAP *********************************************************************
    edge-1                     : ok=12   changed=3    unreachable=0    failed=0    skipped=2    rescued=0    ignored=1
    edge-2                     : ok=1    changed=0    unreachable=0    failed=1    skipped=0    rescued=0    ignored=0
    edge-3                     : ok=0    changed=0    unreachable=1    failed=0
    """
).format(
    ITEM=json.dumps({"changed": False, "msg": "prometheus_scrape_interval is '5 min': expected a duration"}),
    SPEC=json.dumps(
        {
            "argument_errors": ["value of x must be one of: a, b, got: c"],
            "changed": False,
            "msg": "Validation of arguments failed",
        }
    ),
)


def test_recap_lines_are_parsed_with_every_counter() -> None:
    assert parse_recap("\x1b[0;33m" + OUTPUT) == [
        HostRecap("edge-1", ok=12, changed=3, unreachable=0, failed=0, skipped=2, rescued=0, ignored=1),
        HostRecap("edge-2", ok=1, changed=0, unreachable=0, failed=1),
        HostRecap("edge-3", ok=0, changed=0, unreachable=1, failed=0),
    ]
    run = PlaybookRun(2, OUTPUT)
    assert run.changed() == {"edge-1": 3, "edge-2": 0, "edge-3": 0}
    assert run.total_changed == 3
    assert run.total_failed == 2


def test_a_run_without_recap_has_no_total() -> None:
    with pytest.raises(AssertionError, match="no play recap"):
        _ = PlaybookRun(1, "ERROR! the playbook could not be found").total_changed


def test_failures_carry_the_task_message_and_argument_errors() -> None:
    found = {f.host: f.message for f in failures(OUTPUT)}
    assert found == {
        "edge-2": "prometheus_scrape_interval is '5 min': expected a duration",
        "edge-3": "Validation of arguments failed value of x must be one of: a, b, got: c",
    }


def test_a_run_reports_the_cpu_time_of_the_controller(tmp_path: Path) -> None:
    """The site benchmark tells the controller's work from the test hosts' by this figure: it
    holds the CPU time of the processes a task starts on the controller, not only Ansible's, and
    the kernel's part of it (the system time of reading /dev/zero here, of forks in a fleet)."""
    spin = (
        "import os; zero = os.open('/dev/zero', os.O_RDONLY); sum(range(10**7)); "
        "[os.read(zero, 1 << 20) for _ in range(2000)]; t = os.times(); print(t.user + t.system, t.system)"
    )
    playbook = tmp_path / "spin.yml"
    playbook.write_text(
        textwrap.dedent(
            f"""\
            - hosts: localhost
              gather_facts: false
              tasks:
                - ansible.builtin.command: python3 -c "{spin}"
                  register: spin
                  changed_when: false
                - ansible.builtin.debug:
                    msg: "spin cpu {{{{ spin.stdout }}}}"
            """
        )
    )
    run = run_playbook(playbook, env={"ANSIBLE_PYTHON_INTERPRETER": sys.executable})
    assert run.returncode == 0, run.tail()
    found = re.search(r"spin cpu ([0-9.]+) ([0-9.]+)", run.output)
    assert found, run.tail()
    cpu, system = float(found.group(1)), float(found.group(2))
    assert cpu > 0 and system > 0
    assert run.cpu_seconds > cpu
    assert system <= run.cpu_system_seconds < run.cpu_seconds


def test_plays_and_task_blocks_split_the_output() -> None:
    assert [name for name, _body in plays(OUTPUT)] == ["Check every input", "Deploy"]
    block = task_block(OUTPUT, "TASK [prometheus : Check the retention]")
    assert "ok: [edge-1]" in block and "changed: [edge-1]" not in block
    assert PlaybookRun(0, OUTPUT).changed_tasks() == [
        "RUNNING HANDLER [prometheus : Reload] " + "*" * 42 + "\nchanged: [edge-1]"
    ]


def test_test_hosts_boot_like_every_scenario_host() -> None:
    settings = testhosts.platform_settings()
    args = testhosts.docker_run_args("h1", publish=["127.0.0.1::8080"])
    assert args[:6] == ["docker", "run", "--detach", "--name", "h1", "--hostname"]
    assert {f"--cap-add={c}" for c in settings["capabilities"]} <= set(args)
    assert "--security-opt=systempaths=unconfined" in args
    assert "--volume=/var/lib/docker" in args
    assert "--publish=127.0.0.1::8080" in args
    assert args[-2:] == [settings["image"], "/lib/systemd/systemd"]
    assert "--privileged" not in args


POLICY_TESTS = """
import pytest

def test_skips():
    pytest.skip("no tool here")

@pytest.mark.allow_skip(reason="may skip on every machine")
def test_allowed():
    pytest.skip("allowed")

@pytest.mark.xfail(reason="known")
def test_expected_failure():
    assert False

@pytest.mark.rerun
def test_first_defined_runs_last():
    pass

def test_plain():
    pass
"""


def run_pytest(tmp_path: Path, ci: str | None) -> list[tuple[str, str]]:
    """(test name, outcome) in the order the tests ran, under a pytest with only the plugin."""
    (tmp_path / "test_policy.py").write_text(POLICY_TESTS)
    junit = tmp_path / "junit.xml"
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(ROOT / "tests")
    if ci is not None:
        env["CI"] = ci
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "mlops_testkit.pytest_plugin"]
    command += ["-c", os.devnull, "--rootdir", str(tmp_path), "-q", f"--junitxml={junit}", str(tmp_path)]
    subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120, check=False)
    outcomes = []
    for case in ElementTree.parse(junit).iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        outcome = kinds[0] if kinds else "passed"
        if outcome == "skipped" and "xfail" in (case.find("skipped").get("type") or "").lower():  # type: ignore[union-attr]
            outcome = "xfail"
        outcomes.append((case.get("name", ""), outcome))
    return outcomes


def test_skips_fail_under_ci_unless_allowed_and_reruns_run_last(tmp_path: Path) -> None:
    assert run_pytest(tmp_path, "1") == [
        ("test_skips", "failure"),
        ("test_allowed", "skipped"),
        ("test_expected_failure", "xfail"),
        ("test_plain", "passed"),
        ("test_first_defined_runs_last", "passed"),
    ]


def test_skips_stay_skips_off_ci(tmp_path: Path) -> None:
    assert dict(run_pytest(tmp_path, "false"))["test_skips"] == "skipped"
