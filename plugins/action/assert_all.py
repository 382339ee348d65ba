"""mlops.infra.assert_all: several asserts in one task, every failure reported.

Each role checks its input before a host changes, with one `ansible.builtin.assert` task per
check. Every task costs the controller a worker process and a round of templating (about
50 ms of CPU per task and host, measured), and a third of a run's tasks were checks that each
read a few variables. This action runs a role's checks as one task, with the semantics of
the asserts it replaces: each check has its conditions (`that`), its own message (`msg`,
templated only when the check fails), and may have a condition to run at all (`when`) and a
list to run over (`loop`, with `loop_var` and `index_var`). Unlike a chain of asserts it
reports every failing check, not only the first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

CHECK_KEYS = frozenset({"that", "msg", "when", "loop", "loop_var", "index_var"})


def conditions(value: Any) -> list[Any]:
    """A condition or a list of them, as given (strings keep their origin: they are trusted)."""
    return list(value) if isinstance(value, list) else [value]


class ActionModule(ActionBase):
    """Evaluate a list of checks on the controller; fail with the message of each failing one."""

    _requires_connection = False
    _supports_check_mode = True

    @classmethod
    def finalize_task_arg(cls, name: str, value: Any, templar: Any, context: Any) -> Any:
        # The checks are templated one by one in run(), each with its own loop item: templated
        # here, a message that names `item` would fail before any check ran.
        if name == "checks":
            return value
        return super().finalize_task_arg(name, value, templar, context)

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        del tmp
        checks = self._task.args.get("checks")
        if not isinstance(checks, list) or not checks:
            raise AnsibleActionFail("checks must be a non-empty list of checks, each with `that` and `msg`")

        errors: list[str] = []
        evaluated = 0
        for number, check in enumerate(checks, start=1):
            if not isinstance(check, Mapping) or not {"that", "msg"} <= check.keys() or check.keys() - CHECK_KEYS:
                raise AnsibleActionFail(
                    f"check {number} must be a mapping with `that` and `msg`, and optionally "
                    f"`when`, `loop`, `loop_var`, `index_var`; it is {check!r}"
                )
            try:
                evaluated += self._evaluate(number, check, errors)
            except AnsibleActionFail:
                raise
            except Exception:
                # A chain of asserts stopped at its first failure, so a later check could take
                # for granted what an earlier one checked. Once a check failed, a later one that
                # cannot even be evaluated is left out: the earlier failure says why.
                if not errors:
                    raise

        result["changed"] = False
        result["evaluated"] = evaluated
        if errors:
            result["failed"] = True
            result["failures"] = errors
            result["msg"] = "\n".join(errors)
        else:
            result["msg"] = f"All {evaluated} checks passed"
        return result

    def _evaluate(self, number: int, check: Mapping[str, Any], errors: list[str]) -> int:
        """Evaluates one check, as Ansible runs a task: its loop is templated first, and `when`
        holds for each element of it (it may name the element). Appends the message of each
        failure; returns how many elements (or checks) were evaluated."""
        when = conditions(check.get("when", []))
        if "loop" not in check:
            return self._run_check(self._templar, check, when, errors)
        try:
            items = self._templar.template(check["loop"])
        except Exception:
            # As in a task: a loop that cannot be templated is an error only where the check
            # would run (`when: feature_enabled` guarding a loop over the feature's settings).
            if not all(self._templar.evaluate_conditional(c) for c in when):
                return 0
            raise
        if not isinstance(items, list):
            raise AnsibleActionFail(f"check {number}: loop must give a list, not {items!r}")
        loop_var = check.get("loop_var", "item")
        index_var = check.get("index_var")
        evaluated = 0
        for index, item in enumerate(items):
            local = {loop_var: item, **({index_var: index} if index_var else {})}
            templar = self._templar.copy_with_new_env(
                available_variables={**self._templar.available_variables, **local}
            )
            evaluated += self._run_check(templar, check, when, errors)
        return evaluated

    @staticmethod
    def _run_check(templar: Any, check: Mapping[str, Any], when: list[Any], errors: list[str]) -> int:
        """One check (or one element of its loop) under TEMPLAR: 0 where `when` does not hold,
        else 1, with the templated message appended to ERRORS if a condition fails."""
        if not all(templar.evaluate_conditional(c) for c in when):
            return 0
        if not all(templar.evaluate_conditional(c) for c in conditions(check["that"])):
            errors.append(" ".join(str(templar.template(check["msg"])).split()))
        return 1
