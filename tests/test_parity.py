"""Edge and production run the same stack: Compose and Kubernetes, rendered from one inventory.

Both renderings come from playbooks/render.yml on the edge-like fixture inventory
(tests/k8s/inventories/edge: registry delivery, every service). They must agree on the set of
services, ports, health paths, images, CPU and memory limits and users. Negative tests change
one side in memory and check that the comparison notices.

The one rule on the set of services: a catalogue service runs on both platforms unless its
`platforms` field says otherwise, and then only where it says (node-exporter: edge hosts
only, docs/kubernetes.md). A service missing from a platform it is meant for, or present on
one it is not meant for, is a difference.
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
REPO = Path(__file__).resolve().parents[1]


def catalogue() -> dict[str, Any]:
    import yaml

    return yaml.safe_load((REPO / "roles/mlops/defaults/main.yml").read_text())


def platforms() -> dict[str, set[str]]:
    """Where each catalogue service runs: its `platforms`, both when it names none."""
    return {
        name: set(svc.get("platforms") or ["edge", "kubernetes"]) for name, svc in catalogue()["mlops_services"].items()
    }


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


def differences(
    compose: dict[str, dict[str, Any]], k8s: dict[str, dict[str, Any]], where: dict[str, set[str]] | None = None
) -> list[str]:
    """Every way the two renderings disagree, as readable lines; empty when they agree.
    `where` (service -> platforms: the catalogue's, by default) says where each service must be
    and excuses it from the platforms it is not meant for."""
    diffs: list[str] = []
    where = where if where is not None else platforms()
    services = set(compose) | set(k8s) | set(where)
    meant = {name: where.get(name, {"edge", "kubernetes"}) for name in services}
    expected_k8s = {name for name in services if "kubernetes" in meant[name]}
    expected_compose = {name for name in services if "edge" in meant[name]}
    if expected_k8s != set(k8s) or expected_compose != set(compose):
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
    both = {"inference-api", "frontend", "prometheus", "grafana", "alertmanager"}
    assert set(compose) == both | {"node-exporter"}
    assert set(k8s) == both
    assert differences(compose, k8s) == []


def test_edge_only_services_are_said_so_in_the_catalogue() -> None:
    """The rule the comparison applies: node-exporter (host /proc, /sys: hostPath volumes the
    restricted Pod Security profile refuses) runs on edge hosts only, and says so."""
    where = platforms()
    assert where["node-exporter"] == {"edge"}
    assert catalogue()["mlops_services"]["node-exporter"]["host_paths"]
    assert all(p == {"edge", "kubernetes"} for name, p in where.items() if name != "node-exporter")


def test_both_follow_the_catalogue(edge: Rendering) -> None:
    """Agreement alone could be two equal mistakes: both must also say what the catalogue says."""
    import yaml

    shipped = yaml.safe_load((REPO / "roles/mlops/defaults/main.yml").read_text())
    k8s, compose = k8s_view(edge.objects()), compose_view(edge.compose())
    for name, svc in shipped["mlops_services"].items():
        assert compose[name]["ports"] == [svc["port"]]
        assert compose[name]["user"] == svc["user"]
        if "kubernetes" not in (svc.get("platforms") or ["kubernetes"]):
            assert name not in k8s
            continue
        assert k8s[name]["container_ports"] == [svc["port"]]
        assert k8s[name]["health_path"] == svc["health_path"]
        assert k8s[name]["user"] == svc["user"]
        assert k8s[name]["cpu_limit_m"] == svc["resources"]["cpu_limit_millicores"]
        assert k8s[name]["memory_limit_mib"] == svc["resources"]["memory_limit_mib"]
        assert k8s[name]["image"] == shipped["mlops_images"][name]


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


def test_the_comparison_detects_an_edge_only_service_on_kubernetes(edge: Rendering) -> None:
    compose, k8s = compose_view(edge.compose()), k8s_view(edge.objects())
    k8s["node-exporter"] = copy.deepcopy(k8s["alertmanager"])
    assert any(line.startswith("services:") for line in differences(compose, k8s))
    # ... and an edge-only service missing from the edge hosts.
    compose, k8s = compose_view(edge.compose()), k8s_view(edge.objects())
    del compose["node-exporter"]
    assert any(line.startswith("services:") for line in differences(compose, k8s))
    # Without the catalogue's word, the same renderings disagree.
    compose = compose_view(edge.compose())
    assert differences(compose, k8s_view(edge.objects()), where={}) != []


def test_alertmanager_reads_its_configuration_as_the_same_secret_on_both(edge: Rendering) -> None:
    """Receiver credentials: a Compose secret on edge hosts, a Secret on Kubernetes, never a
    ConfigMap or an environment value; both mounted at the path the flags name."""
    compose = edge.compose()
    am = compose["services"]["alertmanager"]
    assert am["secrets"] == ["alertmanager-config"]
    assert compose["secrets"]["alertmanager-config"]["file"].endswith("/alertmanager/alertmanager.yml")
    assert "--config.file=/run/secrets/alertmanager-config" in am["command"]
    objects = edge.objects()
    (dep,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "alertmanager"]
    assert dep["spec"]["template"]["spec"]["containers"][0]["args"] == am["command"]
    secrets = {o["metadata"]["name"] for o in objects if o["kind"] == "Secret"}
    assert "alertmanager-config" in secrets
    assert not [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("alertmanager")]
    # It may send to its receivers outside the cluster, and only it.
    policies = {o["metadata"]["name"]: o for o in objects if o["kind"] == "NetworkPolicy"}
    outside = {
        name
        for name, p in policies.items()
        for rule in p["spec"].get("egress", [])
        for peer in rule.get("to", [])
        if peer.get("ipBlock", {}).get("cidr") == "0.0.0.0/0"
    }
    assert outside == {"alertmanager"}


def test_prometheus_sends_alerts_to_alertmanager_by_each_platforms_name(edge: Rendering) -> None:
    import yaml

    # The Compose side is rendered on the edge host (tests/monitoring checks `alertmanager:9093`).
    (cm,) = [o for o in edge.objects() if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "prometheus-config"]
    config = yaml.safe_load(cm["data"]["prometheus.yml"])
    targets = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert targets == ["alertmanager.mlops-system.svc:9093"]
    assert "node-exporter" not in {j["job_name"] for j in config["scrape_configs"]}
