"""The rendered Compose project held to the policy checkov applies to the manifests.

checkov has no Compose framework (see test_checkov.py), so these are the equivalent checks,
written here: non-root numeric user, cap_drop ALL, no-new-privileges, read-only root
filesystem, CPU and memory limits, a healthcheck, never privileged, never the host network,
PID or IPC namespace, no added capabilities, and only the frontend published beyond loopback.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from k8s_rendering import REPO, Rendering

CATALOGUE = yaml.safe_load((REPO / "roles/mlops/defaults/main.yml").read_text())["mlops_services"]


def violations(compose: dict[str, Any]) -> list[str]:
    """Every policy breach of a Compose project, as `service: what` lines."""
    found: list[str] = []
    for name, svc in compose["services"].items():

        def bad(what: str, name: str = name) -> None:
            found.append(f"{name}: {what}")

        user = str(svc.get("user", ""))
        parts = user.split(":")
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or "0" in {str(int(p)) for p in parts}:
            bad(f"user {user!r} is not a numeric non-root uid:gid")
        if svc.get("cap_drop") != ["ALL"]:
            bad("cap_drop is not [ALL]")
        if svc.get("cap_add"):
            bad("adds capabilities")
        if "no-new-privileges:true" not in svc.get("security_opt", []):
            bad("no-new-privileges is not set")
        if svc.get("read_only") is not True:
            bad("root filesystem is writable")
        if svc.get("privileged"):
            bad("privileged")
        for key in ("network_mode", "pid", "ipc"):
            if svc.get(key) == "host":
                bad(f"{key}: host")
        limits = svc.get("deploy", {}).get("resources", {}).get("limits", {})
        if not (svc.get("cpus") or limits.get("cpus")) or not (svc.get("mem_limit") or limits.get("memory")):
            bad("no CPU or memory limit")
        health = svc.get("healthcheck", {})
        if not health.get("test") or health.get("disable"):
            bad("no healthcheck")
        for port in svc.get("ports", []):
            spec = str(port) if not isinstance(port, dict) else f"{port.get('host_ip', '')}:{port.get('published')}"
            host_ip = spec.rsplit(":", 2)[0] if spec.count(":") >= 2 else ""
            if host_ip != "127.0.0.1" and name != "frontend":
                bad(f"port {spec} published beyond loopback")
        for volume in svc.get("volumes", []):
            source = str(volume).split(":")[0] if not isinstance(volume, dict) else str(volume.get("source"))
            if source in ("/", "/var/run/docker.sock", "/run/docker.sock"):
                bad(f"mounts {source}")
    return found


def test_the_compose_project_meets_the_policy(edge: Rendering) -> None:
    compose = edge.compose()
    assert set(compose["services"]) == set(CATALOGUE)
    assert violations(compose) == []


@pytest.mark.parametrize(
    ("service", "mutate", "expected"),
    [
        ("inference-api", lambda s: s.update(user="0:0"), "not a numeric non-root"),
        ("frontend", lambda s: s.update(cap_drop=["NET_RAW"]), "cap_drop"),
        ("grafana", lambda s: s.update(security_opt=[]), "no-new-privileges"),
        ("prometheus", lambda s: s.update(read_only=False), "writable"),
        ("grafana", lambda s: s.update(privileged=True), "privileged"),
        ("inference-api", lambda s: s.update(network_mode="host"), "network_mode: host"),
        ("frontend", lambda s: s.pop("mem_limit"), "no CPU or memory limit"),
        ("prometheus", lambda s: s.pop("healthcheck"), "no healthcheck"),
        ("prometheus", lambda s: s.update(ports=["0.0.0.0:9090:9090"]), "beyond loopback"),
    ],
)
def test_each_policy_check_can_fail(edge: Rendering, service: str, mutate: Any, expected: str) -> None:
    compose = copy.deepcopy(edge.compose())
    mutate(compose["services"][service])
    found = violations(compose)
    assert any(line.startswith(f"{service}:") and expected in line for line in found), found
