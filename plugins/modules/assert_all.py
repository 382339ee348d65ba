"""Documentation of the action plugin mlops.infra.assert_all (plugins/action/assert_all.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: assert_all
short_description: Several asserts in one task, every failing one reported
description:
  - Evaluates a list of checks on the controller, each like one M(ansible.builtin.assert) task
    with its own message, condition and loop, and fails with the message of every check that
    fails (not only the first).
  - One task instead of one per check: each task costs the controller a worker process and a
    round of templating per host.
version_added: 1.0.0
options:
  checks:
    description:
      - The checks, evaluated in order. Their strings are templated by the action itself,
        check by check, so a message may name the loop variable.
    type: list
    elements: dict
    required: true
    suboptions:
      that:
        description: Conditions, like C(that) of M(ansible.builtin.assert); all must hold.
        type: list
        elements: str
        required: true
      msg:
        description: The message when a condition does not hold, templated only then.
        type: str
        required: true
      when:
        description: Conditions under which the check runs at all.
        type: list
        elements: str
      loop:
        description: A list; the check runs once per element, which C(loop_var) names.
        type: raw
      loop_var:
        description: The name of the loop's element in C(that) and C(msg).
        type: str
        default: item
      index_var:
        description: A name for the element's index in the loop.
        type: str
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
author: mlops.infra
"""

EXAMPLES = r"""
- name: Check the role's variables
  mlops.infra.assert_all:
    checks:
      - that: prometheus_retention_time is match('^[0-9]+[smhdwy]$')
        msg: "prometheus_retention_time is '{{ prometheus_retention_time }}': expected a duration"
      - that: item is match('^/')
        msg: "prometheus_data_dirs has {{ item }}, which is not an absolute path"
        loop: "{{ prometheus_data_dirs }}"
        when: prometheus_enabled | bool
"""

RETURN = r"""
failures:
  description: The message of each failing check, in order.
  returned: failure
  type: list
  elements: str
evaluated:
  description: How many checks (and loop elements) were evaluated.
  returned: always
  type: int
"""
