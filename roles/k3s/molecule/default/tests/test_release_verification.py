"""Controller-side runs of converge.yml that must fail before any host is changed.

Each run also asks for a change the role would make if it got that far (another TLS SAN,
so config.yaml would change), and the test hosts are compared before and after: the
failure must come first. A final run shows the converged cluster stays unchanged, keeps
its token and never prints it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ARTIFACTS, cluster_inventory, docker_exec
from mlops_testkit.ansible import PlaybookRun as Run

# Would change config.yaml on every server if the play reached the hosts.
CHANGE = {"k3s_tls_san": ["would-change.example.internal"]}


def _fails_before_hosts_change(
    converge: Callable[..., Run], host_state: Callable[[], dict[str, str]], extra: dict[str, object], *args: str
) -> Run:
    before = host_state()
    token = docker_exec(cluster_inventory()[0], "cat /etc/rancher/k3s/cluster-token").strip()
    run = converge({**CHANGE, **extra}, *args)
    assert run.returncode != 0, run.output[-3000:]
    assert host_state() == before, "a host was changed by a run that had to fail first"
    assert token not in run.output, "the cluster token appears in the output of a failed run"
    return run


def test_tampered_download_fails_the_play_before_any_host_changes(
    converge: Callable[..., Run], host_state: Callable[[], dict[str, str]], release_copy: Path, tmp_path: Path
) -> None:
    # The binary is modified, the checksum file is not: what an attacker or a broken mirror gives.
    with (release_copy / "k3s").open("a") as binary:
        binary.write("echo tampered\n")
    artifacts = tmp_path / "artifacts"
    run = _fails_before_hosts_change(
        converge, host_state, {"k3s_release_url": f"file://{release_copy}", "k3s_artifact_dir": str(artifacts)}
    )
    assert "The checksum for" in run.output and "did not match" in run.output, run.output[-3000:]
    assert "no host was changed" in run.output
    # get_url removed the tampered download: nothing unverified stays in the cache.
    assert not (artifacts / "k3s").exists()


def test_tampered_cached_artifact_is_refused_not_used(
    converge: Callable[..., Run], host_state: Callable[[], dict[str, str]], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    for artifact in ARTIFACTS.iterdir():
        (cache / artifact.name).write_bytes(artifact.read_bytes())
    (cache / "k3s").write_bytes((ARTIFACTS / "k3s").read_bytes() + b"echo tampered\n")
    run = _fails_before_hosts_change(converge, host_state, {"k3s_artifact_dir": str(cache)})
    assert "checksum mismatch, refusing to use it" in run.output, run.output[-3000:]
    # Refused, and left for the operator to inspect: not silently replaced either.
    assert (cache / "k3s").read_bytes().endswith(b"echo tampered\n")


def test_pinned_checksum_must_match_the_release(
    converge: Callable[..., Run], host_state: Callable[[], dict[str, str]]
) -> None:
    run = _fails_before_hosts_change(converge, host_state, {"k3s_expected_sha256": {"k3s": "0" * 64}})
    assert "k3s_expected_sha256['k3s'] is " + "0" * 64 in run.output, run.output[-3000:]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"k3s_version": "1.33.5"}, "k3s_version '1.33.5' is not a k3s release tag"),
        ({"k3s_role": "master"}, "k3s_role"),
        ({"k3s_server_group": "k3s_nowhere"}, "k3s_server_group 'k3s_nowhere' is not an inventory group with hosts"),
        ({"k3s_server_config": {"token": "in-clear"}}, "set k3s_token"),
        ({"k3s_token": "not-the-cluster-token"}, "k3s_token differs from the token kept on"),
    ],
    ids=["bad-version", "unknown-role", "missing-server-group", "token-in-config", "changed-token"],
)
def test_bad_input_fails_with_a_message_naming_the_variable(
    converge: Callable[..., Run], host_state: Callable[[], dict[str, str]], extra: dict[str, object], message: str
) -> None:
    run = _fails_before_hosts_change(converge, host_state, extra)
    assert message in run.output, run.output[-3000:]


def test_even_number_of_servers_is_refused(
    converge: Callable[..., Run],
    host_state: Callable[[], dict[str, str]],
    groups: dict[str, list[str]],
    tmp_path: Path,
) -> None:
    two = groups["k3s_servers"][:2]
    extra_inventory = tmp_path / "two_servers.yml"
    extra_inventory.write_text("two_servers:\n  hosts:\n" + "".join(f"    {name}:\n" for name in two))
    run = _fails_before_hosts_change(
        converge,
        host_state,
        {"k3s_server_group": "two_servers"},
        "-i",
        str(extra_inventory),
        "--limit",
        ",".join(two + groups["k3s_agents"]),
    )
    assert "k3s_server_group 'two_servers' has 2 servers: embedded etcd needs an odd number" in run.output, run.output[
        -3000:
    ]


def test_rerun_changes_nothing_keeps_the_token_and_never_prints_it(
    converge: Callable[..., Run], cluster_hosts: list[str]
) -> None:
    token = docker_exec(cluster_hosts[0], "cat /etc/rancher/k3s/cluster-token").strip()
    run = converge(None, "--diff", "-v")
    assert run.returncode == 0, run.output[-3000:]
    assert token not in run.output, "the cluster token appears in the output of a run"
    changed = run.changed()
    assert set(changed) == set(cluster_hosts)
    assert not any(changed.values()), changed
    assert docker_exec(cluster_hosts[0], "cat /etc/rancher/k3s/cluster-token").strip() == token
