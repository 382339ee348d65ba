"""Model rollouts across a fleet of three edge hosts, in batches with a canary first
(playbooks/model-rollout.yml, `mlops_rollout_batches` left at its default [1, '25%', '100%']):

- a release that only a host can find bad (its golden records are answered differently)
  fails on the canary, which keeps serving the version it served, and the run stops there:
  the other hosts never change, not even a delivered file;
- a good release reaches every host, one batch after the other, the canary first;
- a rollout of the release every host serves already has nothing to roll over: no canary,
  every host converges in one batch, and nothing changes.

The rollouts run playbooks/model-rollout.yml itself (converge.yml brought the fleet up in
one batch).
"""

from __future__ import annotations

import json
import re
import subprocess

from mlops_testkit.ansible import PlaybookRun, scenario_groups, scenario_playbook

MODELS = "/var/lib/mlops/models"
ROLLOUT_PLAY = "Deliver the release and roll the API over to it"
STEADY_PLAY = "Converge the hosts that serve this release already"
SHIPPED = "1.0.0"
HOSTS = scenario_groups()["edge"]
# A task line's host: `ok: [host]`, `changed: [host -> localhost]` (delegated), `fatal: [host]: ...`
TASK_HOST = re.compile(r"^(?:ok|changed|fatal|failed|skipping): \[([^\]\s]+)(?: -> [^\]]+)?\]", re.M)


def on(host: str, command: str) -> str:
    """A shell command on a test host (each is a container of that name)."""
    run = subprocess.run(["docker", "exec", host, "sh", "-c", command], capture_output=True, text=True, check=False)
    assert run.returncode == 0, f"{host}: {command}: {run.stderr}"
    return run.stdout.strip()


def served(host: str) -> str:
    """The model version the host's API answers with."""
    return str(json.loads(on(host, "curl -sS http://127.0.0.1:8000/ready"))["model"]["version"])


def footprint(host: str) -> dict[str, str]:
    """What a rollout would change on a host: the release record, the releases on disk, the
    running API container, the Compose project and the frontend's live upstream."""
    return {
        "state": on(host, f"cat {MODELS}/state.json"),
        "releases": on(host, f"ls -l --time-style=+%s {MODELS}"),
        "api": on(host, "docker inspect --format '{{.Id}}' mlops-inference-api"),
        "compose": on(host, "sha256sum /etc/mlops/compose/compose.yml"),
        "upstream": on(host, "cat /etc/mlops/frontend/live/api_upstream"),
    }


def batches(run: PlaybookRun, play: str = ROLLOUT_PLAY) -> list[list[str]]:
    """The hosts of each batch of a deploy play (the rollout's by default), in the order the
    batches ran. (A play whose hosts are none still prints its header, and ran no batch.)"""
    ran = [sorted(set(TASK_HOST.findall(body))) for name, body in run.plays() if name == play]
    return [hosts for hosts in ran if hosts]


def rollout(version: str) -> PlaybookRun:
    return scenario_playbook(
        "../../playbooks/model-rollout.yml", "-e", f"mlops_model_version={version}", timeout=1800, json_results=True
    )


def test_the_fleet_serves_the_inventorys_release() -> None:
    assert len(HOSTS) == 3
    assert {host: served(host) for host in HOSTS} == dict.fromkeys(HOSTS, SHIPPED)


def test_a_release_every_host_serves_already_goes_in_one_batch_and_changes_nothing() -> None:
    (version,) = {served(host) for host in HOSTS}
    before = {host: footprint(host) for host in HOSTS}
    run = rollout(version)
    assert run.returncode == 0, run.tail()
    # No host was sorted into the canary batches; all three converged in a single batch.
    assert batches(run) == [], run.tail()
    assert batches(run, STEADY_PLAY) == [sorted(HOSTS)], run.tail()
    assert all(run.changed().get(host, 0) == 0 for host in HOSTS), run.changed()
    assert {host: footprint(host) for host in HOSTS} == before


def test_a_bad_release_stops_after_the_canary_and_the_rest_never_change() -> None:
    before = {host: footprint(host) for host in HOSTS}
    run = rollout("1.4.0-golden")
    assert run.returncode != 0, run.tail()
    # One batch ran: the canary alone, and the run stopped before the next batch.
    ran = batches(run)
    assert len(ran) == 1 and len(ran[0]) == 1, (ran, run.tail())
    (canary,) = ran[0]
    failed = {failure.host.split(" -> ")[0] for failure in run.failures()}
    assert failed == {canary}, run.tail()
    assert "1.4.0-golden" in run.output and "golden" in run.output, run.tail()
    # The canary refused the release and kept serving (its candidate never took traffic);
    # the rest of the fleet is exactly as it was.
    assert served(canary) == SHIPPED
    after_canary = footprint(canary)
    assert after_canary["api"] == before[canary]["api"]
    assert json.loads(after_canary["state"])["live"] == SHIPPED
    for host in HOSTS:
        if host != canary:
            assert footprint(host) == before[host], host
            assert served(host) == SHIPPED
            assert "1.4.0-golden" not in before[host]["releases"]
    recap = run.changed()
    assert all(recap.get(host, 0) == 0 for host in HOSTS if host != canary), recap


def test_a_good_release_reaches_every_host_batch_after_batch() -> None:
    run = rollout("1.1.0")
    assert run.returncode == 0, run.tail()
    ran = batches(run)
    # [1, '25%', '100%'] of three hosts: one host per batch, every host in exactly one.
    assert [len(batch) for batch in ran] == [1, 1, 1], ran
    assert sorted(host for batch in ran for host in batch) == sorted(HOSTS)
    assert {host: served(host) for host in HOSTS} == dict.fromkeys(HOSTS, "1.1.0")
    for host in HOSTS:
        state = json.loads(on(host, f"cat {MODELS}/state.json"))
        assert (state["live"], state["previous"]) == ("1.1.0", SHIPPED), host
    print(f"command to every host serving 1.1.0: {run.seconds:.0f} s for {len(HOSTS)} hosts")
