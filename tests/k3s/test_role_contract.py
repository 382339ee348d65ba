"""The k3s role's public contract: defaults and argument_specs agree, and the pinned
release and download URL have the shape the download step relies on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles" / "k3s"


def _load(relative: str) -> Any:
    return yaml.safe_load((ROLE / relative).read_text())


def test_every_default_is_documented_in_each_entry_point_and_nothing_else() -> None:
    defaults = _load("defaults/main.yml")
    for name, entry in _load("meta/argument_specs.yml")["argument_specs"].items():
        assert set(entry["options"]) == set(defaults), name


def test_literal_defaults_match_argument_specs() -> None:
    defaults = _load("defaults/main.yml")
    options = _load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    for name, value in defaults.items():
        if isinstance(value, str) and "{{" in value:
            continue  # templated: the spec documents the expression
        assert options[name]["default"] == value, name


def test_every_public_variable_is_prefixed_with_the_role_name() -> None:
    assert all(name.startswith("k3s_") for name in _load("defaults/main.yml"))


def test_pinned_version_is_a_release_tag_and_url_encodes_the_plus() -> None:
    defaults = _load("defaults/main.yml")
    assert re.fullmatch(r"v\d+\.\d+\.\d+\+k3s\d+", defaults["k3s_version"])
    assert "k3s_version | urlencode" in defaults["k3s_release_url"]


# Values that hold the token or the admin kubeconfig once read.
SECRETS = re.compile(r"__k3s_cluster_token|__k3s_token_kept\.content|__k3s_kubeconfig\.content")


def test_token_is_no_log_in_the_spec_and_in_every_task_that_handles_it() -> None:
    options = _load("meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    assert options["k3s_token"]["no_log"] is True
    handled = 0
    for task_file in sorted((ROLE / "tasks").glob("*.yml")):
        for task in yaml.safe_load(task_file.read_text()) or []:
            body = {key: value for key, value in task.items() if key not in ("name", "when")}
            reads = task.get("register") in ("__k3s_token_kept", "__k3s_kubeconfig")
            # An assert reports its expression text and message, never the values it compared.
            if "ansible.builtin.assert" in task:
                continue
            if reads or SECRETS.search(yaml.safe_dump(body)):
                handled += 1
                assert task.get("no_log") is True, f"{task_file.name}: {task['name']}"
    assert handled >= 5
