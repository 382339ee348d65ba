"""Every role's public contract: defaults/main.yml against meta/argument_specs.yml.

As prometheus-community/ansible checks in CI, for every role under roles/:

- every entry point of the argument specs lists exactly the role's defaults, plus (the rule
  for catalogue variables) variables the role merely reads from role `mlops`. Such an option
  is allowed only when it is a default of role mlops, its description ends with the mark
  "(role mlops)", it carries no default of its own (the catalogue's is the one in force), and
  its type, elements and choices are role mlops's own;
- a literal default (one with no Jinja inside) equals the spec's default;
- a literal default has the spec's type (a `-e key=value` string is coerced by the spec, so
  the declared type must be the real one);
- every default carries the role's prefix (`<role>_`; role mlops: `mlops_`);
- secrets (a name ending in password, passwd, token, secret, private_key or api_key, not a
  boolean) are `no_log` in every entry point, and every task that hands one to a module has
  `no_log: true` (asserts excepted: they report their expression and message, never values).

The variable tables in docs/ are generated from the same specs (scripts/docs_vars.py); the
last test fails when a marked table is out of date.
"""

from __future__ import annotations

import importlib.util
import re
from functools import cache
from types import ModuleType
from typing import Any

import pytest
import yaml
from mlops_testkit import ROOT
from mlops_testkit.ansible import tasks_of

ROLES = sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "defaults" / "main.yml").is_file())
CATALOGUE_ROLE = "mlops"
CATALOGUE_MARK = "(role mlops)"
SECRET = re.compile(r"(password|passwd|token|secret|private_key|api_key)$")
# Names the pattern above matches that hold no secret material, each with the reason.
NOT_SECRET = {
    "k8s_topology_ingress_tls_secret": "the name of a Kubernetes Secret object, not its content",
}
# Registered results or facts that hold a secret once read, per role: tasks using them need no_log too.
SECRET_VALUES = {
    "k3s": re.compile(r"__k3s_cluster_token|__k3s_token_kept\.content|__k3s_kubeconfig\.content"),
}
SPEC_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "path": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
}


@cache
def defaults(role: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text()) or {}


@cache
def specs(role: str) -> dict[str, dict[str, Any]]:
    """{entry point: its options} of the role's meta/argument_specs.yml."""
    doc = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    return {name: entry.get("options") or {} for name, entry in doc["argument_specs"].items()}


def description(option: dict[str, Any]) -> str:
    text = option.get("description", "")
    return " ".join(text) if isinstance(text, list) else str(text)


def templated(value: Any) -> bool:
    """True when the value has Jinja anywhere inside: the spec documents it, not equals it."""
    return "{{" in yaml.safe_dump(value) or "{%" in yaml.safe_dump(value)


def prefix(role: str) -> str:
    return f"{role}_"


@pytest.mark.parametrize("role", ROLES)
def test_every_entry_point_lists_the_defaults_and_only_marked_catalogue_variables(role: str) -> None:
    own = set(defaults(role))
    problems = []
    for entry, options in specs(role).items():
        missing = sorted(own - set(options))
        if missing:
            problems.append(f"{entry}: defaults not in the spec: {missing}")
        for name in sorted(set(options) - own):
            option = options[name]
            if role == CATALOGUE_ROLE or name not in defaults(CATALOGUE_ROLE):
                problems.append(f"{entry}: {name} is in the spec but in no defaults (not even role mlops's)")
                continue
            if not description(option).rstrip(". ").endswith(CATALOGUE_MARK):
                problems.append(f"{entry}: {name} is role mlops's: its description must end with {CATALOGUE_MARK!r}")
            if "default" in option:
                problems.append(f"{entry}: {name} is role mlops's: no default of its own here")
            theirs = specs(CATALOGUE_ROLE)["main"].get(name, {})
            for key in ("type", "elements", "choices"):
                if option.get(key) != theirs.get(key):
                    problems.append(
                        f"{entry}: {name}.{key} is {option.get(key)!r}, role mlops says {theirs.get(key)!r}"
                    )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("role", ROLES)
def test_literal_defaults_equal_the_spec_defaults_in_every_entry_point(role: str) -> None:
    problems: dict[str, list[str]] = {}
    for entry, options in specs(role).items():
        for name, value in defaults(role).items():
            if name not in options or templated(value):
                continue
            if "default" not in options[name]:
                problem = f"{name}: no default in the spec; defaults/main.yml says {short(value)}"
            elif options[name]["default"] != value:
                problem = f"{name}: {short(options[name]['default'])} in the spec, {short(value)} in defaults/main.yml"
            else:
                continue
            problems.setdefault(problem, []).append(entry)
    assert not problems, "\n".join(f"{problem} (entry points {', '.join(e)})" for problem, e in problems.items())


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@pytest.mark.parametrize("role", ROLES)
def test_literal_defaults_have_the_declared_type(role: str) -> None:
    problems = []
    for entry, options in specs(role).items():
        for name, option in options.items():
            if "default" not in option or option["default"] is None or templated(option["default"]):
                continue
            kind = option.get("type", "str")
            allowed = SPEC_TYPES.get(kind)
            value = option["default"]
            if allowed is None:  # raw and the rarer types take anything
                continue
            if not isinstance(value, allowed) or (kind in ("int", "float") and isinstance(value, bool)):
                problems.append(f"{entry}: {name} is type {kind} but its default is {value!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("role", ROLES)
def test_every_default_carries_the_role_prefix(role: str) -> None:
    unprefixed = [name for name in defaults(role) if not name.startswith(prefix(role))]
    assert not unprefixed, f"defaults of role {role} without the prefix {prefix(role)!r}: {unprefixed}"


def secret_names(role: str) -> list[str]:
    names = set(defaults(role))
    for options in specs(role).values():
        names |= {n for n, o in options.items() if o.get("type") != "bool" and n.startswith(prefix(role))}
    return sorted(n for n in names if SECRET.search(n) and n not in NOT_SECRET)


@pytest.mark.parametrize("role", ROLES)
def test_secrets_are_no_log_in_every_entry_point(role: str) -> None:
    problems = [
        f"{entry}: {name} has no no_log: true"
        for name in secret_names(role)
        for entry, options in specs(role).items()
        if name in options and options[name].get("no_log") is not True
    ]
    assert not problems, "\n".join(problems)


# Tasks that hand no value to a module's output: an assert (and mlops.infra.assert_all, several
# asserts in one task) reports its messages, never the values it compared; an include or
# import only names a file or role.
HANDS_NOTHING = {
    "ansible.builtin.assert",
    "mlops.infra.assert_all",
    "ansible.builtin.import_tasks",
    "ansible.builtin.include_tasks",
    "ansible.builtin.import_role",
    "ansible.builtin.include_role",
}


def task_body(task: dict[str, Any]) -> str:
    """What a task passes on (its name, condition and tags left out)."""
    return yaml.safe_dump({k: v for k, v in task.items() if k not in ("name", "when", "tags")})


@pytest.mark.parametrize("role", ROLES)
def test_every_task_that_handles_a_secret_is_no_log(role: str) -> None:
    words = [re.compile(rf"\b{re.escape(name)}\b(?!_)") for name in secret_names(role)]
    if role in SECRET_VALUES:
        words.append(SECRET_VALUES[role])
    if not words:
        return
    problems = []
    for file, task, no_log in tasks_of(role):
        if no_log or HANDS_NOTHING & set(task):
            continue
        body = task_body(task)
        if any(word.search(body) for word in words):
            problems.append(f"{file}: {task.get('name', '(unnamed)')}")
    assert not problems, "tasks that handle a secret without no_log: true:\n" + "\n".join(problems)


# ---- role-specific contract ---------------------------------------------------------------


def test_k3s_pinned_version_is_a_release_tag_and_url_encodes_the_plus() -> None:
    k3s = defaults("k3s")
    assert re.fullmatch(r"v\d+\.\d+\.\d+\+k3s\d+", k3s["k3s_version"])
    assert "k3s_version | urlencode" in k3s["k3s_release_url"]


def test_k3s_token_handling_is_no_log_in_enough_tasks() -> None:
    # The generic check above passes trivially if the token moved out of sight: k3s reads,
    # writes and compares it in at least five tasks.
    words = re.compile(rf"\bk3s_token\b(?!_)|{SECRET_VALUES['k3s'].pattern}")
    handled = [
        task
        for _file, task, _no_log in tasks_of("k3s")
        if not HANDS_NOTHING & set(task)
        and (task.get("register") in ("__k3s_token_kept", "__k3s_kubeconfig") or words.search(task_body(task)))
    ]
    assert len(handled) >= 5, [t.get("name") for t in handled]


# ---- generated documentation -------------------------------------------------------------


def docs_vars() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_vars", ROOT / "scripts" / "docs_vars.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MARKED_DOCS = sorted(
    p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md") if "<!-- BEGIN VARIABLES" in p.read_text()
)


def test_the_generated_tables_cover_the_roles_with_their_own_docs() -> None:
    assert {"docs/docker.md", "docs/k3s.md", "docs/edge-stack.md"} <= set(MARKED_DOCS), MARKED_DOCS


@pytest.mark.parametrize("doc", MARKED_DOCS)
def test_marked_variable_tables_are_up_to_date(doc: str) -> None:
    text = (ROOT / doc).read_text()
    fresh = docs_vars().update(text)
    assert fresh == text, f"{doc}: a variable table is out of date: run `python scripts/docs_vars.py {doc}`"
