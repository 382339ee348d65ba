"""The entry points: syntax of every path, and bad input refused before any host changes.

The refusal tests run the real playbooks with the sample inventories' group_vars, on hosts
of the same names and groups reached through the Docker connection, where no such container
exists: the input checks run on the controller alone, and if one wrongly let a run through,
the run would stop at its first host contact on this machine instead of a real address.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlops_testkit import ROOT
from mlops_testkit.ansible import INPUT_ENV, PlaybookRun, run_playbook, tasks_of
from mlops_testkit.testhosts import DOCKER_CONNECTION


def ansible_playbook(playbook: str, *args: str, env: dict[str, str] | None = None) -> PlaybookRun:
    """A playbook of the repository, none of the caller's PROMETHEUS_RETENTION or
    GRAFANA_ADMIN_PASSWORD, each task result one line of JSON (the refusal messages, verbatim)."""
    return run_playbook(playbook, *args, env=env, unset_env=INPUT_ENV, timeout=600, json_results=True)


@pytest.mark.parametrize("inventory", ["inventories/edge", "inventories/prod", "inventories/local"])
def test_site_syntax(inventory: str) -> None:
    run = ansible_playbook("site.yml", "-i", inventory, "--syntax-check")
    assert run.returncode == 0, run.output


def offline_inventory(inventory: str, tmp: Path, drop: tuple[str, ...] = ()) -> str:
    """The sample inventory's hosts and group_vars, every host reached through Docker; the
    variables named in `drop` are left out of its group_vars (the role defaults apply)."""
    hosts = yaml.safe_load((ROOT / inventory / "hosts.yml").read_text())

    def rewrite(group: dict[str, Any]) -> None:
        for name in group.get("hosts") or {}:
            group["hosts"][name] = {"ansible_connection": DOCKER_CONNECTION}
        group.get("vars", {}).pop("ansible_user", None)
        for child in (group.get("children") or {}).values():
            rewrite(child)

    for group in hosts.values():
        rewrite(group)
    target = tmp / Path(inventory).name
    target.mkdir()
    (target / "hosts.yml").write_text(yaml.safe_dump(hosts))
    if not drop:
        (target / "group_vars").symlink_to(ROOT / inventory / "group_vars")
        return str(target)
    for source in (ROOT / inventory / "group_vars").rglob("*.yml"):
        data = {k: v for k, v in (yaml.safe_load(source.read_text()) or {}).items() if k not in drop}
        copy = target / "group_vars" / source.relative_to(ROOT / inventory / "group_vars")
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(yaml.safe_dump(data))
    return str(target)


def refused(inventory: str, extra: dict[str, object], env: dict[str, str] | None = None) -> PlaybookRun:
    """Run site.yml with bad input; it must fail in an input-check play, before any other play."""
    if inventory == "inventories/edge":
        # The sample edge inventory ships bundles of images this machine may not have built
        # (Grafana's cannot be had offline): the checks under test do not depend on delivery.
        extra = {"mlops_image_delivery": "registry", **extra}
    # The environment's retention reaches only a run whose inventory does not set its own.
    drop = ("prometheus_retention_time",) if env and "PROMETHEUS_RETENTION" in env else ()
    with tempfile.TemporaryDirectory() as tmp:
        run = ansible_playbook(
            "site.yml", "-i", offline_inventory(inventory, Path(tmp), drop), "-e", json.dumps(extra), env=env
        )
    assert run.returncode != 0, run.output
    # The failure is in an input-check play: no task of any other play ran on a host.
    for play, body in run.plays():
        if not play.startswith("Check every input"):
            assert "TASK [" not in body, f"play {play!r} ran after bad input:\n{run.tail(3000)}"
    return run


def assert_refused_with(run: PlaybookRun, expected: str | tuple[str, ...]) -> None:
    """Some failed task's own message (not a task title, not another failure) holds every
    fragment of `expected`: the refusal is the one the test provoked, for the reason it gave."""
    fragments = (expected,) if isinstance(expected, str) else expected
    messages = [f.message for f in run.failures()]
    assert messages, f"no failed task result in the output:\n{run.tail(3000)}"
    assert any(all(fragment in message for fragment in fragments) for message in messages), (
        f"no refusal says {fragments!r}; the failures said:\n" + "\n".join(sorted(set(messages)))
    )


PROD_OK = {"grafana_admin_password": "a-real-secret-from-the-vault"}


# Each case names its refusal by fragments of the message the check gives (the assert's
# fail_msg in roles/<role>/tasks/preflight.yml, the catalogue filter's error, or
# validate_argument_spec's "value of ... must be one of"), with the bad value where the message
# quotes it: a variable's name alone also appears in task titles and in other refusals.
# A case's last element may be one fragment or a tuple of fragments that must all appear.
@pytest.mark.parametrize(
    ("inventory", "extra", "env", "expected"),
    [
        (
            "inventories/prod",
            {},
            None,
            "grafana_admin_password is the default 'changeme' and mlops_environment is production",
        ),
        (
            "inventories/prod",
            {**PROD_OK, "mlops_images": {"inference-api": "mlops/inference-api:1.0.0"}},
            None,
            ("mlops/inference-api:1.0.0", "production refuses a tag without a digest"),
        ),
        (
            "inventories/edge",
            {"prometheus_retention_time": "7days"},
            None,
            "prometheus_retention_time (or env PROMETHEUS_RETENTION) is '7days': expected a Prometheus duration",
        ),
        (
            "inventories/edge",
            {},
            {"PROMETHEUS_RETENTION": "a week"},
            "prometheus_retention_time (or env PROMETHEUS_RETENTION) is 'a week': expected a Prometheus duration",
        ),
        (
            "inventories/edge",
            {"prometheus_retention_size": "lots"},
            None,
            "prometheus_retention_size is 'lots': expected 0 (off) or a size",
        ),
        (
            "inventories/edge",
            {"docker_install_source": "snap"},
            None,
            "value of docker_install_source must be one of: distro, upstream, got: snap",
        ),
        (
            "inventories/edge",
            {"mlops_image_delivery": "usb"},
            None,
            "value of mlops_image_delivery must be one of: registry, bundle, got: usb",
        ),
        (
            "inventories/edge",
            {"mlops_disabled_services": ["grafanna"]},
            None,
            ("mlops_disabled_services names ['grafanna']", "which the catalogue (mlops_services) does not have"),
        ),
        (
            "inventories/prod",
            {**PROD_OK, "k3s_version": "latest"},
            None,
            "k3s_version 'latest' is not a k3s release tag",
        ),
    ],
)
def test_bad_input_is_refused_before_any_host_changes(
    inventory: str, extra: dict[str, object], env: dict[str, str] | None, expected: str | tuple[str, ...]
) -> None:
    assert_refused_with(refused(inventory, extra, env), expected)


def test_a_root_user_in_the_catalogue_is_refused() -> None:
    services = yaml.safe_load((ROOT / "roles/mlops/defaults/main.yml").read_text())["mlops_services"]
    services["frontend"]["user"] = "0:0"
    run = refused("inventories/edge", {"mlops_services": services})
    assert_refused_with(run, ("mlops_services.frontend.user is '0:0'", "neither of them 0"))


def test_a_bundle_of_an_image_the_controller_lacks_is_refused() -> None:
    """edge_stack asks the controller's Docker Engine for every bundled image; a missing one is
    named with the way to build it (and any other error of the engine fails that task)."""
    images = yaml.safe_load((ROOT / "roles/mlops/defaults/main.yml").read_text())["mlops_images"]
    images["inference-api"] = "mlops/inference-api:0.0.0-never-built"
    run = refused("inventories/edge", {"mlops_image_delivery": "bundle", "mlops_images": images})
    assert_refused_with(run, ("mlops/inference-api:0.0.0-never-built", "Build them first with scripts/build-images.sh"))


def test_valid_input_passes_every_check_that_reads_only_variables(tmp_path: Path) -> None:
    run = ansible_playbook("site.yml", "-i", offline_inventory("inventories/prod", tmp_path), "-e", json.dumps(PROD_OK))
    # Every check that reads variables passes; then the host checks begin (hardening reads the
    # accounts of each host): the only failure is that contact, with no such container here.
    checks = dict(run.plays())["Check every input of the production path before any host is changed"]
    before_contact, _, contact = checks.partition("TASK [Run the host checks of each production role]")
    assert "ok: [k3s-server-1.hospital.example]" in before_contact, run.tail(3000)
    assert "failed:" not in before_contact and "fatal:" not in before_contact, before_contact[-3000:]
    assert "UNREACHABLE" in contact, contact[-3000:]


# ------------------------------------------------- which host checks the input of which role


def roles_run_by(role: str) -> set[str]:
    """ROLE and every role its tasks include or import by a literal name, all the way down."""
    found, todo = set(), [role]
    while todo:
        name = todo.pop().removeprefix("mlops.infra.")
        if name in found:
            continue
        found.add(name)
        for _file, task, _no_log in tasks_of(name):
            for key in ("ansible.builtin.include_role", "ansible.builtin.import_role"):
                included = (task.get(key) or {}).get("name", "")
                if included and "{{" not in included:
                    todo.append(included)
    return found


def role_imports(play: dict[str, Any]) -> list[dict[str, Any]]:
    """The arguments of every `import_role` among the play's tasks."""
    sections = ("pre_tasks", "tasks", "post_tasks")
    return [
        t["ansible.builtin.import_role"]
        for s in sections
        for t in play.get(s, [])
        if "ansible.builtin.import_role" in t
    ]


def roles_of(play: dict[str, Any]) -> set[str]:
    """The roles a play runs (its `roles:` and the roles its tasks import), with those they include."""
    named = [r["role"] for r in play.get("roles", [])] + [i["name"] for i in role_imports(play)]
    return set().union(*(roles_run_by(name) for name in named))


def plays_of(playbook: Path) -> list[dict[str, Any]]:
    """The plays of PLAYBOOK with those of the playbooks it imports, in order."""
    plays: list[dict[str, Any]] = []
    for play in yaml.safe_load(playbook.read_text()):
        imported = play.get("ansible.builtin.import_playbook")
        plays += plays_of(playbook.parent / imported) if imported else [play]
    return plays


@pytest.mark.parametrize("playbook", ["playbooks/edge.yml", "playbooks/prod.yml"])
def test_every_role_a_host_runs_has_its_input_checked_on_that_host(playbook: str) -> None:
    """The input-check play runs the checks of every role (and of the roles it includes) that a
    later play runs: for all of its hosts, or, under `when: inventory_hostname in groups['G']`,
    for group G, where every later play that runs the role has exactly G as its hosts."""
    checks, *later = plays_of(ROOT / playbook)
    checked: dict[str | None, set[str]] = {}
    for task in checks["tasks"]:
        if task.get("ansible.builtin.include_tasks") == "tasks/preflight-roles.yml":
            when = task.get("when")
            group = None
            if when:
                match = re.fullmatch(r"inventory_hostname in groups\['(\w+)'\]", when)
                assert match, f"{playbook}: a condition the test cannot read: {when!r}"
                group = match[1]
            checked.setdefault(group, set()).update(task["vars"]["mlops_preflight_roles"])
    assert checked.get(None), f"{playbook}: no input check runs on every host"
    has_checks = {p.parent.parent.name for p in (ROOT / "roles").glob("*/tasks/preflight.yml")} - {"mlops"}
    for play in later:
        # A role imported with rolespec_validate: false relies on the first play for its argument_specs.
        unvalidated = {
            i["name"].removeprefix("mlops.infra.") for i in role_imports(play) if i.get("rolespec_validate") is False
        }
        for role in sorted(roles_of(play) & has_checks | unvalidated):
            assert any(role in checked.get(g, set()) for g in (None, play["hosts"])), (
                f"{playbook}: play {play['name']!r} runs role {role} on {play['hosts']}, "
                f"which no input check of the first play covers"
            )
    # And the converse: no host checks a role that no later play runs on it.
    for group, roles in checked.items():
        ran_there = set().union(*(roles_of(p) for p in later if group is None or p["hosts"] == group))
        assert roles <= ran_there, f"{playbook}: {group or 'every host'} checks {sorted(roles - ran_there)}, never run"


# ------------------------------------------------------------------ facts, gathered once


def facts_the_roles_read() -> set[str]:
    """Every `ansible_facts.NAME` / `ansible_facts['NAME']` in the roles' tasks, vars, defaults
    and templates, but those their own tasks or the connection set (getent, the interpreter)."""
    pattern = re.compile(r"ansible_facts(?:\.|\[['\"])(\w+)")
    names = {
        name
        for path in (ROOT / "roles").rglob("*")
        if path.suffix in {".yml", ".j2"} and "molecule" not in path.parts
        for name in pattern.findall(path.read_text())
    }
    return {n for n in names if not n.startswith("getent_")} - {"discovered_interpreter_python"}


def host_checks_setup() -> dict[str, Any]:
    """The arguments of the one `setup` task of the first play's host checks."""
    host_checks = yaml.safe_load((ROOT / "playbooks/tasks/preflight-hosts.yml").read_text())
    (setup,) = [t["ansible.builtin.setup"] for t in host_checks if "ansible.builtin.setup" in t]
    return setup


@pytest.mark.parametrize("playbook", ["playbooks/edge.yml", "playbooks/prod.yml"])
def test_no_play_gathers_facts_and_the_first_play_runs_the_host_checks(playbook: str) -> None:
    """A full gathering takes several times as long as the subset: no play gathers, and the
    first play's host checks, which gather the subset once, run in every path."""
    checks, *later = plays_of(ROOT / playbook)
    gathering = [p["name"] for p in [checks, *later] if p.get("gather_facts", True) is not False]
    assert gathering == [], f"{playbook}: these plays gather facts: {gathering}"
    assert any(t.get("ansible.builtin.include_tasks") == "tasks/preflight-hosts.yml" for t in checks["tasks"])
    assert host_checks_setup()


def test_the_host_checks_gather_every_fact_the_roles_read(tmp_path: Path) -> None:
    """The subset the host checks gather (gathered here, on this machine) holds every fact a
    role reads."""
    setup = host_checks_setup()
    facts = tmp_path / "facts.json"
    (tmp_path / "gather.yml").write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Gather the host checks' subset",
                    "hosts": "localhost",
                    "gather_facts": False,
                    "tasks": [
                        {"name": "Gather", "ansible.builtin.setup": setup},
                        {
                            "name": "Keep the names",
                            "ansible.builtin.copy": {
                                "content": "{{ ansible_facts | list | to_json }}",
                                "dest": str(facts),
                            },
                        },
                    ],
                }
            ]
        )
    )
    run = run_playbook(
        tmp_path / "gather.yml",
        inventory="localhost,",
        extra_vars={"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
    )
    assert run.returncode == 0, run.tail()
    read = facts_the_roles_read()
    assert {"distribution", "architecture", "virtualization_type"} <= read  # the pattern finds them
    missing = read - set(json.loads(facts.read_text()))
    assert not missing, f"the roles read facts the subset {setup['gather_subset']} lacks: {sorted(missing)}"


def test_the_monitoring_handlers_run_before_the_stack_converges() -> None:
    """The monitoring roles' handlers restart or reload their running container. Flushed at the
    end of the deploy play, they restarted on a fresh host the containers Compose had just
    started, and the run ended with Alertmanager unhealthy; flushed before edge_stack, they find
    no container on a fresh host, and `up --wait` waits for those they restart on a later run."""
    (play,) = plays_of(ROOT / "playbooks/deploy.yml")
    steps = [
        "flush" if t.get("ansible.builtin.meta") == "flush_handlers" else t["ansible.builtin.import_role"]["name"]
        for t in play["tasks"]
    ]
    flush = steps.index("flush")
    for role in ("prometheus", "grafana", "alertmanager"):
        assert steps.index(f"mlops.infra.{role}") < flush, steps
    assert flush < steps.index("mlops.infra.edge_stack"), steps


# ------------------------------------------ one apt transaction for hardening, Docker and the stack


def kept_fact(role: str, tasks_file: str, fact: str) -> None:
    """Fail unless ROLE's TASKS_FILE keeps FACT as a fact for the later plays of the run."""
    kept = [
        t for file, t, _ in tasks_of(role) if file == tasks_file and fact in (t.get("ansible.builtin.set_fact") or {})
    ]
    assert kept, f"{role}'s {tasks_file} no longer keeps {fact} as a fact"


def hardening_packages_given_by_the_edge_path(tmp_path: Path, inventory_list: list[str] | None) -> list[str]:
    """What playbooks/edge.yml gives role hardening as hardening_packages_extra, on a host whose
    docker and edge_stack input checks kept their packages as facts and whose inventory lists
    INVENTORY_LIST (or nothing) for hardening_packages_extra."""
    kept_fact("docker", "tasks/preflight-host.yml", "docker_distro_packages")
    kept_fact("edge_stack", "tasks/preflight.yml", "edge_stack_host_packages")
    hardening_play = next(p for p in plays_of(ROOT / "playbooks/edge.yml") if roles_of(p) == {"hardening"})
    (imported,) = [t for t in hardening_play["tasks"] if "ansible.builtin.import_role" in t]
    (tmp_path / "group_vars").mkdir(parents=True)
    if inventory_list is not None:
        (tmp_path / "group_vars" / "all.yml").write_text(yaml.safe_dump({"hardening_packages_extra": inventory_list}))
    kept = {
        "docker_distro_packages": ["docker.io", "docker-cli"],
        "edge_stack_host_packages": ["python3-requests", "zstd"],
    }
    plays = [
        {
            "name": "The input checks",
            "hosts": "all",
            "gather_facts": False,
            "tasks": [{"ansible.builtin.set_fact": kept}],
        },
        {
            "name": "Role hardening's play",
            "hosts": "all",
            "gather_facts": False,
            "tasks": [
                {
                    "ansible.builtin.debug": {"msg": "packages {{ hardening_packages_extra | to_json }}"},
                    "vars": {"hardening_packages_extra": imported["vars"]["hardening_packages_extra"]},
                }
            ],
        },
    ]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(plays, sort_keys=False))
    run = run_playbook(
        tmp_path / "play.yml",
        inventory="localhost,",
        extra_vars={"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
    )
    assert run.returncode == 0, run.tail()
    line = next(line for line in run.output.splitlines() if "packages [" in line)
    return json.loads(line.split("packages ", 1)[1].rstrip("\"'"))


def test_docker_s_and_the_stack_s_packages_go_in_hardening_s_apt_transaction(tmp_path: Path) -> None:
    """A fresh host installs Docker's Debian packages, Python's requests and zstd with
    hardening's (roles docker and edge_stack install only what is still missing), after what
    the inventory lists for hardening_packages_extra; role docker's play adds nothing."""
    given = ["docker.io", "docker-cli", "python3-requests", "zstd"]
    assert hardening_packages_given_by_the_edge_path(tmp_path / "none", None) == given
    assert hardening_packages_given_by_the_edge_path(tmp_path / "listed", ["aide"]) == ["aide", *given]
    docker_play = next(p for p in plays_of(ROOT / "playbooks/edge.yml") if roles_of(p) == {"docker"})
    assert all("docker_packages_extra" not in t.get("vars", {}) for t in docker_play["tasks"])
