"""mlops.infra.assert_all (plugins/action/assert_all.py): several asserts as one task.

Real ansible-playbook runs on this machine with a local connection and the project's
ansible.cfg: each test writes one task and reads its JSON result.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

from mlops_testkit import ROOT
from mlops_testkit.ansible import PlaybookRun, run_playbook

VARS = {"retention": "15d", "dirs": ["/var/lib/a", "relative", "/srv/b", "also-relative"], "enabled": True}


def run_checks(tmp_path: Path, checks: str, *args: str) -> PlaybookRun:
    """One play on localhost whose only task is assert_all with CHECKS (YAML, indented as given)."""
    playbook = tmp_path / "checks.yml"
    playbook.write_text(
        textwrap.dedent(
            """\
            - name: Checks
              hosts: all
              gather_facts: false
              vars: {vars}
              tasks:
                - name: Check the variables
                  mlops.infra.assert_all:
                    checks:
            """
        ).format(vars=json.dumps(VARS))
        + textwrap.indent(textwrap.dedent(checks), " " * 8)
    )
    return run_playbook(
        playbook,
        *args,
        inventory="localhost,",
        extra_vars={"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
        env={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")},
        json_results=True,
        timeout=300,
    )


def result(run: PlaybookRun) -> dict[str, Any]:
    failures = run.failures()
    assert len(failures) == 1, run.tail()
    return failures[0].result


def test_passing_checks_pass_and_count_each_loop_element(tmp_path: Path) -> None:
    run = run_checks(
        tmp_path,
        """\
        - that: retention is match('^[0-9]+[smhdwy]$')
          msg: "retention is {{ retention }}"
        - that: [item is string, item | length > 0]
          msg: "dirs has {{ item }}"
          loop: "{{ dirs }}"
        """,
        "-v",
    )
    assert run.returncode == 0, run.tail()
    assert "All 5 checks passed" in run.output


def test_every_failing_check_is_reported_with_its_own_message_in_order(tmp_path: Path) -> None:
    run = run_checks(
        tmp_path,
        """\
        - that: retention == '30d'
          msg: "retention is '{{ retention }}', not 30d"
        - that: retention is string
          msg: never shown
        - that: item is match('/')
          msg: >-
            dirs[{{ position }}] is '{{ item }}':
            not an absolute path
          loop: "{{ dirs }}"
          index_var: position
        """,
    )
    assert run.returncode != 0
    failed = result(run)
    assert failed["failures"] == [
        "retention is '15d', not 30d",
        "dirs[1] is 'relative': not an absolute path",
        "dirs[3] is 'also-relative': not an absolute path",
    ]
    assert failed["msg"] == "\n".join(failed["failures"])


def test_a_check_whose_condition_is_false_is_not_templated_at_all(tmp_path: Path) -> None:
    run = run_checks(
        tmp_path,
        """\
        - that: false
          msg: "{{ no_such_variable.anywhere }}"
          when: not enabled
        - that: path is match('/')
          msg: "{{ path }} is relative"
          loop: "{{ dirs[:1] }}"
          loop_var: path
          when: [enabled, dirs | length > 1]
        """,
        "--check",
    )
    assert run.returncode == 0, run.tail()


def test_a_check_without_a_message_is_refused(tmp_path: Path) -> None:
    run = run_checks(
        tmp_path,
        """\
        - that: enabled
        """,
    )
    assert run.returncode != 0
    assert "check 1 must be a mapping with `that` and `msg`" in result(run)["msg"]


def test_after_a_failure_a_check_that_cannot_be_evaluated_is_left_out(tmp_path: Path) -> None:
    """Asserts stopped at the first failure, so later checks may rely on earlier ones."""
    run = run_checks(
        tmp_path,
        """\
        - that: no_such_variable is defined
          msg: no_such_variable must be set
        - that: no_such_variable.size > 0
          msg: no_such_variable.size must be positive
        """,
    )
    assert run.returncode != 0
    assert result(run)["failures"] == ["no_such_variable must be set"]


def test_a_check_that_cannot_be_evaluated_fails_the_task_when_nothing_failed_before(tmp_path: Path) -> None:
    run = run_checks(
        tmp_path,
        """\
        - that: no_such_variable.size > 0
          msg: never templated
        """,
    )
    assert run.returncode != 0
    failed = result(run)
    assert "failures" not in failed
    assert "no_such_variable" in failed["msg"]


def test_when_holds_for_each_element_of_the_loop(tmp_path: Path) -> None:
    """As on a looped task, `when` may name the loop's element: it is evaluated for each."""
    run = run_checks(
        tmp_path,
        """\
        - that: item is match('/')
          msg: "{{ item }} is relative"
          loop: "{{ dirs }}"
          when: item != 'relative'
        """,
    )
    assert run.returncode != 0
    assert result(run)["failures"] == ["also-relative is relative"]


def test_a_loop_that_cannot_be_templated_is_skipped_where_the_check_would_not_run(tmp_path: Path) -> None:
    run = run_checks(
        tmp_path,
        """\
        - that: item is match('/')
          msg: "{{ item }} is relative"
          loop: "{{ no_such_settings.dirs }}"
          when: not enabled
        """,
    )
    assert run.returncode == 0, run.tail()
