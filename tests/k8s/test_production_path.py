"""What a real cluster would break that schema checks pass: storage, spread, TLS, sizes, egress.

Each test reads the rendered manifests (or a refused rendering) as k3s would receive them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_rendering import ANSI, INVENTORIES, REPO, Rendering, run_render

Obj = dict[str, Any]
CATALOGUE = yaml.safe_load((REPO / "roles/mlops/defaults/main.yml").read_text())["mlops_services"]

# Settings that keep Grafana 11 from reaching grafana.com at start (plugins and their signing key).
GRAFANA_OFFLINE = {
    "GF_PLUGINS_PREINSTALL_DISABLED": "true",
    "GF_PLUGINS_PUBLIC_KEY_RETRIEVAL_DISABLED": "true",
    "GF_PLUGINS_PLUGIN_ADMIN_ENABLED": "false",
    "GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES": "false",
}


def by_kind(objects: list[Obj], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def refused(inventory: str, tmp_path: Path, *extra: str) -> str:
    """Render `inventory` with extra arguments; it must fail before writing any manifest."""
    out = tmp_path / "out"
    run = run_render(INVENTORIES / inventory, out, *extra)
    output = ANSI.sub("", run.stdout + run.stderr)
    assert run.returncode != 0, output[-3000:]
    assert not (out / "k8s").exists(), "a manifest was written before the input checks failed"
    return output


# --- Grafana starts offline -------------------------------------------------------------------


def test_grafana_downloads_no_plugin_in_either_rendering(prod: Rendering) -> None:
    (container,) = by_kind(prod.objects(), "Deployment")["grafana"]["spec"]["template"]["spec"]["containers"]
    k8s_env = {e["name"]: e.get("value") for e in container["env"]}
    compose_env = prod.compose()["services"]["grafana"].get("environment", {})
    if isinstance(compose_env, list):
        compose_env = dict(item.split("=", 1) for item in compose_env)
    for name, value in GRAFANA_OFFLINE.items():
        assert k8s_env.get(name) == value, (name, k8s_env)
        assert str(compose_env.get(name)).lower() == value, (name, compose_env)
    assert "GF_INSTALL_PLUGINS" not in k8s_env and "GF_INSTALL_PLUGINS" not in compose_env


# --- data kept when a claim is deleted --------------------------------------------------------


def test_data_claims_use_a_storage_class_that_retains_their_volumes(prod: Rendering) -> None:
    objects = prod.objects()
    (storage_class,) = by_kind(objects, "StorageClass").values()
    assert storage_class["metadata"]["name"] == "mlops-retain"
    assert storage_class["provisioner"] == "rancher.io/local-path"
    assert storage_class["reclaimPolicy"] == "Retain"
    # local-path creates the volume on the node the pod is scheduled to.
    assert storage_class["volumeBindingMode"] == "WaitForFirstConsumer"
    claims = by_kind(objects, "PersistentVolumeClaim")
    wanted = {v["name"] for svc in CATALOGUE.values() for v in svc["volumes"]}
    assert set(claims) == wanted == {"prometheus-data", "grafana-data", "alertmanager-data"}
    for name, claim in claims.items():
        assert claim["spec"]["storageClassName"] == "mlops-retain", name
        assert "volumeName" not in claim["spec"], name


def test_a_claim_can_be_bound_to_a_released_volume_by_name(tmp_path: Path) -> None:
    extra = tmp_path / "reattach.yml"
    extra.write_text(yaml.safe_dump({"k8s_topology_claim_volume_names": {"prometheus-data": "pvc-0123-old"}}))
    out = tmp_path / "out"
    run = run_render(INVENTORIES / "edge", out, "-e", f"@{extra}")
    assert run.returncode == 0, ANSI.sub("", run.stdout + run.stderr)[-3000:]
    claims = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all((out / "k8s/mlops-07-storage.yaml").read_text())
        if d and d["kind"] == "PersistentVolumeClaim"
    }
    assert claims["prometheus-data"]["spec"]["volumeName"] == "pvc-0123-old"
    assert claims["prometheus-data"]["spec"]["storageClassName"] == "mlops-retain"
    assert "volumeName" not in claims["grafana-data"]["spec"]


# --- replicas spread over nodes ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["frontend", "inference-api"])
def test_replicas_spread_over_nodes_when_the_cluster_has_them(prod: Rendering, name: str) -> None:
    deployment = by_kind(prod.objects(), "Deployment")[name]
    template = deployment["spec"]["template"]
    constraints = template["spec"].get("topologySpreadConstraints")
    assert constraints and len(constraints) == 1, constraints
    (constraint,) = constraints
    # Optional: counted per ReplicaSet, so that a rollout spreads the new pods too.
    assert constraint.pop("matchLabelKeys", ["pod-template-hash"]) == ["pod-template-hash"]
    assert constraint == {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        # Soft: a one-node cluster still runs every replica.
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": deployment["spec"]["selector"]["matchLabels"]},
    }, constraint
    labels = template["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in deployment["spec"]["selector"]["matchLabels"].items())


# --- production refuses an ingress without TLS ------------------------------------------------


def test_production_ingress_serves_the_tls_secret(prod: Rendering) -> None:
    ingress = by_kind(prod.objects(), "Ingress")["mlops"]
    tls_secret = yaml.safe_load((INVENTORIES / "prod/group_vars/k3s_cluster.yml").read_text())[
        "k8s_topology_ingress_tls_secret"
    ]
    assert [t["secretName"] for t in ingress["spec"]["tls"]] == [tls_secret]


def test_production_refuses_an_ingress_without_tls(tmp_path: Path) -> None:
    output = refused("prod", tmp_path, "-e", "k8s_topology_ingress_tls_secret=")
    assert "k8s_topology_ingress_tls_secret is empty: production refuses" in output, output[-3000:]


def test_edge_rendering_may_serve_plain_http(edge: Rendering) -> None:
    ingress = by_kind(edge.objects(), "Ingress")["mlops"]
    assert "tls" not in ingress["spec"]


# --- retention size against the claim ---------------------------------------------------------


@pytest.mark.parametrize("size", ["8193MB", "50GB"])
def test_a_retention_size_above_80_percent_of_the_claim_is_refused(tmp_path: Path, size: str) -> None:
    # The claim is 10 GiB; Prometheus reads GB as GiB, so 8GB is the largest accepted (the fixture).
    output = refused("prod", tmp_path, "-e", f"prometheus_retention_size={size}")
    assert f"prometheus_retention_size ({size}) is above" in output, output[-3000:]
    assert "k8s_topology_prometheus_retention_max_percent (80%)" in output
    assert "mlops_services.prometheus.volumes: size_gib 10" in output


def test_the_largest_accepted_retention_size_is_rendered(prod: Rendering) -> None:
    (container,) = by_kind(prod.objects(), "Deployment")["prometheus"]["spec"]["template"]["spec"]["containers"]
    assert "--storage.tsdb.retention.size=8GB" in container["args"]
