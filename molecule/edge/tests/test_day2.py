"""The deploy user's day-2 sudo commands work on the converged edge host.

Role hardening gives the deploy user an explicit list of commands (vars/main.yml, built from
the catalogue: the Compose project directory and the Kubernetes namespace). Each command
of the list the host's sudo reports is run here as the deploy user, through `sudo -n`
(no password: the account has none), and must succeed: `docker compose ... ps` once
answered "no configuration file provided" because it named /etc/mlops, not the Compose
project directory. The restarts run last, and the test waits until the stack is healthy
again so the tests after it find it as converge left it.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

HOST = f"{os.environ.get('MLOPS_MOLECULE_PREFIX', 'mlops')}-edge-site"
testinfra_hosts = [f"ansible://{HOST}"]
DEPLOY = "mlops-deploy"
PROJECT_DIR = "/etc/mlops/compose"


def day2_commands(host: Any) -> list[str]:
    """The commands `sudo -l` lists for the deploy user (one rule: `(root) NOPASSWD: a, b, ...`)."""
    out = host.check_output(f"sudo -l -U {DEPLOY}")
    rules = [line.strip() for line in out.split("may run the following commands", 1)[1].splitlines()[1:]]
    rules = [rule for rule in rules if rule]
    assert len(rules) == 1, out
    runas, _, commands = rules[0].partition(" NOPASSWD: ")
    assert runas == "(root)", out
    return [command.strip() for command in commands.split(", ")]


def as_deploy(host: Any, command: str) -> Any:
    """COMMAND through sudo, as the deploy user would type it (never asking for a password)."""
    return host.run(f"runuser -u {DEPLOY} -- sudo -n {command}")


def wait_until_healthy(host: Any, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while True:
        ids = host.run(f"docker compose --project-directory {PROJECT_DIR} ps --all --quiet").stdout.split()
        states = [json.loads(host.check_output(f"docker inspect {i}"))[0]["State"] for i in ids]
        health = [s.get("Health", {}).get("Status", s["Status"]) for s in states]
        if ids and all(h == "healthy" for h in health):
            return
        assert time.monotonic() < deadline, f"the stack is not healthy again: {health}"
        time.sleep(3)


def test_the_day2_list_names_the_compose_project_directory(host: Any) -> None:
    commands = day2_commands(host)
    assert f"/usr/bin/docker compose --project-directory {PROJECT_DIR} ps" in commands
    assert all(" --project-directory /etc/mlops " not in command for command in commands)
    assert host.file(f"{PROJECT_DIR}/compose.yml").exists


def test_every_day2_command_runs_as_the_deploy_user(host: Any) -> None:
    commands = day2_commands(host)
    # Looking first, restarting last.
    for command in sorted(commands, key=lambda c: "restart" in c.split()):
        result = as_deploy(host, command)
        assert result.rc == 0, f"{command}: rc={result.rc} {result.stderr}"
        if command.endswith(" ps"):
            for name in ("mlops-inference-api", "mlops-frontend", "mlops-prometheus"):
                assert name in result.stdout, result.stdout
        if " logs " in command:
            assert "mlops-inference-api" in result.stdout or "inference-api" in result.stdout, result.stdout[-2000:]
        if "status" in command.split():
            assert "active (running)" in result.stdout, result.stdout
        wait_until_healthy(host)


def test_anything_else_is_refused_to_the_deploy_user(host: Any) -> None:
    for command in (
        f"/usr/bin/docker compose --project-directory {PROJECT_DIR} down",
        "/usr/bin/docker ps",
        "/bin/sh -c id",
    ):
        result = as_deploy(host, command)
        assert result.rc != 0, command
        assert "uid=0" not in result.stdout
