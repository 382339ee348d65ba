"""Edge and production run the same stack: Compose and Kubernetes, rendered from one inventory.

Both renderings come from playbooks/render.yml on the edge-like fixture inventory
(tests/k8s/inventories/edge: registry delivery, all four services). They must agree on the
set of services, ports, health paths, images, CPU and memory limits and users. Negative tests
change one side in memory and check that the comparison notices.
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "k8s"))
from k8s_rendering import Rendering, mib, millicores, render

# What `promtool check healthy` probes: it takes a base URL and requests /-/healthy itself.
PROMTOOL_HEALTH_PATH = "/-/healthy"


@pytest.fixture(scope="module")
def edge() -> Rendering:
    return render("edge")


def compose_view(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per service: what the Compose project runs."""
    view: dict[str, dict[str, Any]] = {}
    for name, svc in compose["services"].items():
        ports = {int(str(p).rsplit(":", 1)[-1]) for p in svc.get("ports", [])}
        env = svc.get("environment") or {}
        if "TLS_CERT_FILE" in env:
            # The edge frontend terminates TLS on a port of its own; Kubernetes does it at the Ingress.
            ports.discard(int(env["TLS_PORT"]))
        ports = sorted(ports)
        test = svc["healthcheck"]["test"]
        command = " ".join(test[1:] if test[0] in ("CMD", "CMD-SHELL") else test)
        view[name] = {
            "ports": ports,
            "health_command": command,
            "image": svc["image"],
            "cpu_limit_m": millicores(svc["cpus"]),
            "memory_limit_mib": mib(svc["mem_limit"]),
            "memory_request_mib": mib(svc["mem_reservation"]),
            "user": str(svc["user"]),
            "read_only": svc["read_only"],
        }
    return view


def k8s_view(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per service: what the Kubernetes objects run."""
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    view: dict[str, dict[str, Any]] = {}
    for dep in (o for o in objects if o["kind"] == "Deployment"):
        name = dep["metadata"]["name"]
        pod = dep["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        sc = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
        view[name] = {
            "container_ports": sorted(p["containerPort"] for p in c["ports"]),
            "service_ports": sorted(p["port"] for p in services[name]["spec"]["ports"]) if name in services else [],
            "health_path": c["livenessProbe"]["httpGet"]["path"],
            "image": c["image"],
            "cpu_limit_m": millicores(c["resources"]["limits"]["cpu"]),
            "memory_limit_mib": mib(c["resources"]["limits"]["memory"]),
            "memory_request_mib": mib(c["resources"]["requests"]["memory"]),
            "user": f"{sc['runAsUser']}:{sc['runAsGroup']}",
            "read_only": sc["readOnlyRootFilesystem"],
        }
    return view


def probes_path(command: str, path: str) -> bool:
    if "promtool check healthy" in command:
        return path == PROMTOOL_HEALTH_PATH
    return re.search(re.escape(path) + r"(?![\w/-])", command) is not None


def differences(compose: dict[str, dict[str, Any]], k8s: dict[str, dict[str, Any]]) -> list[str]:
    """Every way the two renderings disagree, as readable lines; empty when they agree."""
    diffs: list[str] = []
    if set(compose) != set(k8s):
        diffs.append(f"services: compose {sorted(compose)} vs kubernetes {sorted(k8s)}")
    for name in sorted(set(compose) & set(k8s)):
        c, k = compose[name], k8s[name]
        if c["ports"] != k["container_ports"] or k["container_ports"] != k["service_ports"]:
            diffs.append(
                f"{name} ports: compose {c['ports']}, pod {k['container_ports']}, Service {k['service_ports']}"
            )
        if not probes_path(c["health_command"], k["health_path"]):
            diffs.append(f"{name} health: liveness {k['health_path']!r} not probed by compose {c['health_command']!r}")
        for key in ("image", "cpu_limit_m", "memory_limit_mib", "memory_request_mib", "user", "read_only"):
            if c[key] != k[key]:
                diffs.append(f"{name} {key}: compose {c[key]!r} vs kubernetes {k[key]!r}")
    return diffs


def test_compose_and_kubernetes_agree(edge: Rendering) -> None:
    compose, k8s = compose_view(edge.compose()), k8s_view(edge.objects())
    assert set(compose) == {"inference-api", "frontend", "prometheus", "grafana"}
    assert differences(compose, k8s) == []


def test_both_follow_the_catalogue(edge: Rendering) -> None:
    """Agreement alone could be two equal mistakes: both must also say what the catalogue says."""
    import yaml

    repo = Path(__file__).resolve().parents[1]
    catalogue = yaml.safe_load((repo / "roles/mlops/defaults/main.yml").read_text())
    k8s = k8s_view(edge.objects())
    for name, svc in catalogue["mlops_services"].items():
        assert k8s[name]["container_ports"] == [svc["port"]]
        assert k8s[name]["health_path"] == svc["health_path"]
        assert k8s[name]["user"] == svc["user"]
        assert k8s[name]["cpu_limit_m"] == svc["resources"]["cpu_limit_millicores"]
        assert k8s[name]["memory_limit_mib"] == svc["resources"]["memory_limit_mib"]
        assert k8s[name]["image"] == catalogue["mlops_images"][name]


def test_prometheus_runs_with_the_same_flags_on_both(edge: Rendering) -> None:
    compose = edge.compose()["services"]["prometheus"]["command"]
    (dep,) = [o for o in edge.objects() if o["kind"] == "Deployment" and o["metadata"]["name"] == "prometheus"]
    assert dep["spec"]["template"]["spec"]["containers"][0]["args"] == compose
    assert "--storage.tsdb.retention.time=15d" in compose


@pytest.mark.parametrize(
    ("side", "path", "value", "expected"),
    [
        ("k8s", ("frontend", "container_ports"), [8081], "frontend ports"),
        ("k8s", ("inference-api", "service_ports"), [80], "inference-api ports"),
        (
            "compose",
            ("grafana", "health_command"),
            "wget -q -O /dev/null http://127.0.0.1:3000/login",
            "grafana health",
        ),
        ("k8s", ("prometheus", "health_path"), "/-/ready", "prometheus health"),
        ("k8s", ("inference-api", "image"), "mlops/inference-api:9.9.9", "inference-api image"),
        ("compose", ("frontend", "cpu_limit_m"), 250, "frontend cpu_limit_m"),
        ("k8s", ("grafana", "memory_limit_mib"), 512, "grafana memory_limit_mib"),
        ("compose", ("prometheus", "user"), "65534:0", "prometheus user"),
        ("k8s", ("frontend", "read_only"), False, "frontend read_only"),
    ],
)
def test_the_comparison_detects_a_drift(
    edge: Rendering, side: str, path: tuple[str, str], value: Any, expected: str
) -> None:
    compose, k8s = compose_view(edge.compose()), k8s_view(edge.objects())
    target = copy.deepcopy(compose if side == "compose" else k8s)
    target[path[0]][path[1]] = value
    found = differences(target, k8s) if side == "compose" else differences(compose, target)
    assert any(line.startswith(expected) for line in found), found


def test_the_comparison_detects_a_missing_service(edge: Rendering) -> None:
    compose, k8s = compose_view(edge.compose()), k8s_view(edge.objects())
    del k8s["grafana"]
    assert any(line.startswith("services:") for line in differences(compose, k8s))
