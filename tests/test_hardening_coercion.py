"""Every public boolean and integer of role hardening is coerced wherever the role uses it.

Values given on the command line (`-e hardening_deploy_sudo_full=true`) are strings.
ansible-core 2.19 stops a conditional on a string without naming the variable, and a
template treats the string "false" as true. So every use of a public `bool` or `int`
(from meta/argument_specs.yml) in the role's tasks, handlers, vars, defaults and templates
must go through `| bool` or `| int`. The Molecule scenario runs converge with such strings
(roles/hardening/molecule/default/tests/test_extra_vars.py); this test finds the use that
would break before any host is started.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROLE = Path(__file__).resolve().parents[1] / "roles" / "hardening"
# Keys whose string value is a bare Jinja expression (no braces).
CONDITION_KEYS = {"when", "that", "changed_when", "failed_when", "until"}
JINJA_BLOCK = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.S)
STRING_LITERAL = re.compile(r"'[^']*'|\"[^\"]*\"")
FILTERS = {"bool": "bool", "int": "int"}


def public_scalars(role: Path = ROLE) -> dict[str, str]:
    """Name -> `bool` or `int`, for every option of the role's argument specs."""
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    found: dict[str, str] = {}
    for entry in specs.values():
        for name, option in entry["options"].items():
            if option.get("type") in FILTERS:
                found[name] = option["type"]
    return found


def _yaml_expressions(node: Any, key: str | None = None) -> Iterator[str]:
    if isinstance(node, dict):
        for child_key, value in node.items():
            yield from _yaml_expressions(value, str(child_key))
    elif isinstance(node, list):
        for value in node:
            yield from _yaml_expressions(value, key)
    elif isinstance(node, str):
        if key in CONDITION_KEYS:
            yield node
        else:
            for block in JINJA_BLOCK.finditer(node):
                yield block.group(1) or block.group(2) or ""


def expressions(path: Path) -> Iterator[str]:
    """The Jinja expressions of a role file: what Ansible evaluates, not its prose."""
    text = path.read_text()
    if path.suffix == ".j2":
        for block in JINJA_BLOCK.finditer(text):
            yield block.group(1) or block.group(2) or ""
    else:
        yield from _yaml_expressions(yaml.safe_load(text))


def role_files(role: Path = ROLE) -> list[Path]:
    files = [path for part in ("tasks", "handlers", "vars", "defaults") for path in (role / part).glob("*.yml")]
    return sorted(files + list((role / "templates").glob("*.j2")))


def uncoerced_uses(role: Path = ROLE) -> tuple[list[str], dict[str, int]]:
    """(each use without its filter, how many coerced uses each variable has)."""
    scalars = public_scalars(role)
    bad: list[str] = []
    coerced = dict.fromkeys(scalars, 0)
    for path in role_files(role):
        for expression in expressions(path):
            code = STRING_LITERAL.sub("''", expression)
            for name, kind in scalars.items():
                for use in re.finditer(rf"(?<![\w.]){re.escape(name)}\b", code):
                    rest = code[use.end() :]
                    if re.match(rf"\s*\|\s*(ansible\.builtin\.)?{FILTERS[kind]}\b", rest):
                        coerced[name] += 1
                    else:
                        bad.append(f"{path.relative_to(role)}: {name} ({kind}) in `{' '.join(expression.split())}`")
    return bad, coerced


def test_specs_have_public_booleans_and_integers() -> None:
    scalars = public_scalars()
    assert "hardening_deploy_sudo_full" in scalars
    assert "hardening_sshd_max_auth_tries" in scalars
    assert set(scalars.values()) == {"bool", "int"}


def test_every_use_of_a_public_bool_or_int_is_coerced() -> None:
    bad, _ = uncoerced_uses()
    assert not bad, "coerce with | bool or | int:\n" + "\n".join(bad)


def test_every_public_bool_and_int_is_used_by_the_role() -> None:
    # A switch nobody reads would pass the test above by not being there at all.
    _, coerced = uncoerced_uses()
    unused = sorted(name for name, count in coerced.items() if count == 0)
    assert not unused, f"public variables the role never reads: {unused}"


@pytest.mark.parametrize(
    ("relative", "text", "expected"),
    [
        ("tasks/main.yml", "- name: A\n  ansible.builtin.debug:\n  when: hardening_x\n", 1),
        ("tasks/main.yml", "- name: A\n  ansible.builtin.debug:\n  when: not hardening_x | bool\n", 0),
        ("tasks/main.yml", "- name: A\n  ansible.builtin.assert:\n    that: [hardening_n > 2]\n", 1),
        ("tasks/main.yml", "- name: A\n  ansible.builtin.assert:\n    that: [hardening_n | int > 2]\n", 0),
        ("tasks/main.yml", "- name: A\n  ansible.builtin.assert:\n    fail_msg: hardening_x is off\n", 0),
        ("vars/main.yml", "__v: \"{{ 'a' if hardening_x else 'b' }}\"\n", 1),
        ("vars/main.yml", '__v: "{{ hardening_n | ansible.builtin.int }}"\n', 0),
        ("templates/f.j2", "{% if hardening_x %}x{% endif %}\nN {{ hardening_n }}\n", 2),
        ("templates/f.j2", "{% if not hardening_x | bool %}x{% endif %} N {{ hardening_n | int }}\n", 0),
        ("templates/f.j2", "# hardening_x: {{ 'hardening_x' }} {{ item.hardening_x }}\n", 0),
    ],
)
def test_the_check_finds_what_it_should(tmp_path: Path, relative: str, text: str, expected: int) -> None:
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "argument_specs.yml").write_text(
        yaml.safe_dump(
            {"argument_specs": {"main": {"options": {"hardening_x": {"type": "bool"}, "hardening_n": {"type": "int"}}}}}
        )
    )
    target = tmp_path / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    bad, _ = uncoerced_uses(tmp_path)
    assert len(bad) == expected, bad
