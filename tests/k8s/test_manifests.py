"""The rendered Kubernetes manifests: schema-valid, complete, and held to the stack's policy.

Rendered on the controller with playbooks/render.yml from fixture inventories; no cluster is
involved (none can run here). Each test reads the files exactly as k3s would receive them.
"""

from __future__ import annotations

import base64
import re
import stat
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_rendering import ANSI, INVENTORIES, REPO, Rendering, mounted_files, run_render

CATALOGUE = yaml.safe_load((REPO / "roles/mlops/defaults/main.yml").read_text())["mlops_services"]
# The catalogue's services that run on Kubernetes (field `platforms`: node-exporter is edge-only).
SERVICES = sorted(n for n, s in CATALOGUE.items() if "kubernetes" in s.get("platforms", ["edge", "kubernetes"]))
DIGEST = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    spec = deployment["spec"]["template"]["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


# --- schema ---------------------------------------------------------------------------------


def test_every_manifest_passes_kubernetes_validate_strict(prod: Rendering, kubernetes_validate: str) -> None:
    files = prod.manifest_files()
    assert len(files) >= 8, files
    for path in files:
        run = subprocess.run(
            [kubernetes_validate, "--strict", "--kubernetes-version", "1.37", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        out = run.stdout + run.stderr
        assert run.returncode == 0, f"{path.name}:\n{out}"
        assert "passed" in out and "ERROR" not in out, f"{path.name}:\n{out}"


def test_kubernetes_validate_catches_an_unknown_field(
    tmp_path: Path, prod: Rendering, kubernetes_validate: str
) -> None:
    """The validator is strict for real: a field the schema lacks fails the file."""
    docs = [d for d in yaml.safe_load_all((prod.k8s / "mlops-02-service.yaml").read_text()) if d]
    docs[0]["spec"]["portz"] = docs[0]["spec"].pop("ports")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all(docs))
    run = subprocess.run([kubernetes_validate, "--strict", str(bad)], capture_output=True, text=True, check=False)
    assert run.returncode != 0, run.stdout + run.stderr


def test_the_rendering_has_every_kind_of_object(prod: Rendering) -> None:
    kinds = Counter(o["kind"] for o in prod.objects())
    n = len(SERVICES)
    assert kinds["Namespace"] == 1
    assert kinds["Deployment"] == n
    assert kinds["Service"] == n
    assert kinds["ServiceAccount"] == n
    assert kinds["Ingress"] == 1
    assert kinds["HorizontalPodAutoscaler"] == 1
    assert kinds["PodDisruptionBudget"] == 2  # the two services running two or more pods
    assert kinds["NetworkPolicy"] == n + 2  # default deny, DNS, one per service
    # A configuration directory each: Prometheus's, Grafana's two, the model release the API serves.
    assert kinds["ConfigMap"] == 4
    assert kinds["Secret"] == 3  # Grafana's admin password, the API keys' hashes, Alertmanager's config
    assert kinds["PersistentVolumeClaim"] == 3
    assert kinds["StorageClass"] == 1  # reclaimPolicy Retain, for the claims
    assert kinds["Role"] == 1 and kinds["RoleBinding"] == 1


CLUSTER_SCOPED = {"Namespace", "StorageClass"}


def test_every_namespaced_object_is_in_the_stack_namespace(prod: Rendering) -> None:
    for obj in prod.objects():
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in obj["metadata"], obj["metadata"]
            assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "mlops"
            if obj["kind"] == "Namespace":
                assert obj["metadata"]["name"] == "mlops-system"
            continue
        assert obj["metadata"]["namespace"] == "mlops-system", obj["metadata"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "mlops"


def test_manifest_files_are_private(prod: Rendering) -> None:
    for path in prod.manifest_files():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(prod.k8s.stat().st_mode) == 0o700


# --- pod policy -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SERVICES)
def test_pods_run_non_root_read_only_without_capabilities(prod: Rendering, name: str) -> None:
    dep = by_kind(prod.objects(), "Deployment")[name]
    pod = dep["spec"]["template"]["spec"]
    uid, gid = (int(x) for x in CATALOGUE[name]["user"].split(":"))
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid != 0
    assert pod["securityContext"]["runAsGroup"] == gid != 0
    assert pod["securityContext"]["fsGroup"] == gid
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod.get("hostNetwork", False) is False and pod.get("hostPID", False) is False
    for c in containers(dep):
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == uid
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc.get("privileged", False) is False
        assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
        assert sc["seccompProfile"]["type"] == "RuntimeDefault"
        assert all("hostPort" not in p for p in c["ports"])


@pytest.mark.parametrize("name", SERVICES)
def test_containers_have_limits_probes_and_digests(prod: Rendering, name: str) -> None:
    dep = by_kind(prod.objects(), "Deployment")[name]
    res = CATALOGUE[name]["resources"]
    (c,) = containers(dep)
    assert c["resources"]["requests"] == {
        "cpu": f"{res['cpu_request_millicores']}m",
        "memory": f"{res['memory_request_mib']}Mi",
    }
    assert c["resources"]["limits"] == {
        "cpu": f"{res['cpu_limit_millicores']}m",
        "memory": f"{res['memory_limit_mib']}Mi",
    }
    assert c["livenessProbe"]["httpGet"]["path"] == CATALOGUE[name]["health_path"]
    assert c["readinessProbe"]["httpGet"]["path"] == CATALOGUE[name]["ready_path"]
    assert c["livenessProbe"]["httpGet"]["port"] == "http"
    assert c["ports"] == [{"name": "http", "containerPort": CATALOGUE[name]["port"], "protocol": "TCP"}]
    assert DIGEST.match(c["image"]), c["image"]


@pytest.mark.parametrize("name", SERVICES)
def test_only_prometheus_gets_a_service_account_token(prod: Rendering, name: str) -> None:
    objects = prod.objects()
    pod = by_kind(objects, "Deployment")[name]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == name
    assert pod["automountServiceAccountToken"] is (name == "prometheus")
    assert by_kind(objects, "ServiceAccount")[name]["automountServiceAccountToken"] is (name == "prometheus")


def test_pod_templates_carry_a_config_checksum_that_follows_the_config(edge: Rendering, prod: Rendering) -> None:
    """Prometheus's config differs (retention, external labels): its checksum must differ too."""

    def checksums(r: Rendering) -> dict[str, str]:
        return {
            n: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for n, d in by_kind(r.objects(), "Deployment").items()
        }

    edge_sums, prod_sums = checksums(edge), checksums(prod)
    assert all(re.fullmatch(r"[0-9a-f]{64}", s) for s in prod_sums.values())
    assert edge_sums["prometheus"] != prod_sums["prometheus"]
    assert edge_sums["frontend"] == prod_sums["frontend"]


def test_prometheus_runs_with_the_inventory_retention_and_its_data_claim(prod: Rendering) -> None:
    objects = prod.objects()
    dep = by_kind(objects, "Deployment")["prometheus"]
    (c,) = containers(dep)
    assert "--storage.tsdb.retention.time=30d" in c["args"]
    assert "--storage.tsdb.retention.size=8GB" in c["args"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in c["args"]
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["prometheus-data"]["persistentVolumeClaim"]["claimName"] == "prometheus-data"
    pvc = by_kind(objects, "PersistentVolumeClaim")["prometheus-data"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_monitoring_config_maps_carry_the_files_the_roles_render(prod: Rendering) -> None:
    """The pods read, byte for byte and at the same paths, the files roles prometheus and grafana staged."""
    stage = prod.root / ".stage"
    objects = prod.objects()
    expected = {
        ("prometheus", "/etc/prometheus"): stage / "prometheus",
        ("grafana", "/etc/grafana/provisioning"): stage / "grafana/provisioning",
        ("grafana", "/etc/grafana/dashboards"): stage / "grafana/dashboards",
    }
    for (deployment, mount_path), directory in expected.items():
        staged = {str(f.relative_to(directory)): f.read_text() for f in directory.rglob("*") if f.is_file()}
        assert staged, f"nothing staged in {directory}"
        assert mounted_files(objects, deployment, mount_path) == staged, (deployment, mount_path)
    # Prometheus discovers pods in the namespace: the config the pod reads says so.
    assert "kubernetes_sd_configs" in mounted_files(objects, "prometheus", "/etc/prometheus")["prometheus.yml"]


def test_the_api_serves_the_release_from_a_config_map_and_keys_as_hashes(prod: Rendering) -> None:
    """The pods mount the controller's release (a new version changes the pod template) and
    read the API keys' hashes from a Secret; no key in clear reaches the manifests."""
    objects = prod.objects()
    (c,) = containers(by_kind(objects, "Deployment")["inference-api"])
    env = {e["name"]: e.get("value") for e in c["env"]}
    release = f"{env['MODEL_NAME']}-{env['MODEL_VERSION']}"
    files = mounted_files(objects, "inference-api", f"{env['MODEL_DIR']}/{release}")
    shipped = REPO / "services/inference-api/models" / release
    assert files["manifest.json"] == (shipped / "manifest.json").read_text()
    assert files["model.json"] == (shipped / "model.json").read_text()
    assert env["AUTH_MODE"] == "api_key"
    keys = base64.b64decode(by_kind(objects, "Secret")["api-keys"]["data"]["value"]).decode()
    assert keys and all(len(line.split(":")[1]) == 64 for line in keys.splitlines())


def test_grafana_password_is_only_in_the_secret_and_read_from_a_file(prod: Rendering) -> None:
    password = yaml.safe_load((INVENTORIES / "prod/group_vars/k3s_cluster.yml").read_text())["grafana_admin_password"]
    objects = prod.objects()
    secret = by_kind(objects, "Secret")["grafana-admin-password"]
    assert [base64.b64decode(v).decode() for v in secret["data"].values()] == [password]
    for path in prod.manifest_files():
        if "secret" not in path.name:
            assert password not in path.read_text(), path
    (c,) = containers(by_kind(objects, "Deployment")["grafana"])
    env = {e["name"]: e for e in c["env"]}
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    # The file Grafana is told to read is the Secret's value, mounted read-only.
    file = env["GF_SECURITY_ADMIN_PASSWORD__FILE"]["value"]
    mount = next(m for m in c["volumeMounts"] if file.startswith(m["mountPath"].rstrip("/") + "/"))
    assert mount.get("readOnly") is True
    files = mounted_files(objects, "grafana", mount["mountPath"])
    assert files[file[len(mount["mountPath"].rstrip("/")) + 1 :]] == password


# --- scaling, ingress, network --------------------------------------------------------------


def test_api_autoscales_on_cpu_and_replicated_services_have_budgets(prod: Rendering) -> None:
    objects = prod.objects()
    hpa = by_kind(objects, "HorizontalPodAutoscaler")["inference-api"]
    auto = CATALOGUE["inference-api"]["autoscale"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "inference-api"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (auto["min"], auto["max"])
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    deps = by_kind(objects, "Deployment")
    assert "replicas" not in deps["inference-api"]["spec"], "the HPA owns the API's replica count"
    assert deps["frontend"]["spec"]["replicas"] == CATALOGUE["frontend"]["replicas"]
    assert set(by_kind(objects, "PodDisruptionBudget")) == {"inference-api", "frontend"}


def test_ingress_routes_root_to_frontend_and_api_path_to_the_api(prod: Rendering) -> None:
    ing = by_kind(prod.objects(), "Ingress")["mlops"]
    (rule,) = ing["spec"]["rules"]
    routes = {p["path"]: p["backend"]["service"]["name"] for p in rule["http"]["paths"]}
    assert routes == {"/": "frontend", "/api": "inference-api"}
    services = by_kind(prod.objects(), "Service")
    for name in routes.values():
        assert services[name]["spec"]["ports"][0]["name"] == "http"


def _allowed(policies: dict[str, dict[str, Any]], client: str, server: str, port: int) -> bool:
    """Whether the policies let pods of `client` open TCP `port` on pods of `server`."""

    def selects(policy: dict[str, Any], name: str) -> bool:
        labels = policy["spec"]["podSelector"].get("matchLabels", {})
        return all(
            {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "mlops"}.get(k) == v
            for k, v in labels.items()
        )

    def peer_ok(peers: list[dict[str, Any]], name: str) -> bool:
        return any(
            "namespaceSelector" not in p
            and p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") == name
            for p in peers
        )

    def port_ok(rule: dict[str, Any]) -> bool:
        return any(p.get("port") == port for p in rule.get("ports", [])) or not rule.get("ports")

    ingress = any(
        peer_ok(rule.get("from", []), client) and port_ok(rule)
        for p in policies.values()
        if selects(p, server)
        for rule in p["spec"].get("ingress", [])
    )
    egress = any(
        peer_ok(rule.get("to", []), server) and port_ok(rule)
        for p in policies.values()
        if selects(p, client)
        for rule in p["spec"].get("egress", [])
    )
    return ingress and egress


def test_network_policies_deny_by_default_and_allow_only_the_topology(prod: Rendering) -> None:
    policies = by_kind(prod.objects(), "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in deny and "egress" not in deny
    wanted = {
        ("frontend", "inference-api"),
        ("prometheus", "inference-api"),
        ("prometheus", "grafana"),
        ("prometheus", "prometheus"),
        ("prometheus", "alertmanager"),
        ("grafana", "prometheus"),
    }
    for client in SERVICES:
        for server in SERVICES:
            allowed = _allowed(policies, client, server, CATALOGUE[server]["port"])
            assert allowed is ((client, server) in wanted), f"{client} -> {server}: allowed={allowed}"
    # Only the API and the frontend take traffic from the ingress controller.
    from_controller = {
        name
        for name, p in policies.items()
        for rule in p["spec"].get("ingress", [])
        for peer in rule.get("from", [])
        if "namespaceSelector" in peer
    }
    assert from_controller == {"inference-api", "frontend"}


# --- preflight ------------------------------------------------------------------------------


def test_production_render_refuses_an_image_tag_without_digest(tmp_path: Path) -> None:
    prod_vars = yaml.safe_load((INVENTORIES / "prod/group_vars/k3s_cluster.yml").read_text())
    images = dict(prod_vars["mlops_images"], frontend="r.invalid/frontend:1.0.0")
    extra = tmp_path / "tagged.yml"
    extra.write_text(yaml.safe_dump({"mlops_images": images}))
    out = tmp_path / "out"
    run = run_render(INVENTORIES / "prod", out, "-e", f"@{extra}")
    output = ANSI.sub("", run.stdout + run.stderr)
    assert run.returncode != 0, output[-3000:]
    assert "mlops_images['frontend']" in output and "digest" in output, output[-3000:]
    assert not (out / "k8s").exists(), "a manifest was written before the input checks failed"


def test_production_render_refuses_the_default_grafana_password(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = run_render(INVENTORIES / "prod", out, "-e", "grafana_admin_password=changeme")
    output = ANSI.sub("", run.stdout + run.stderr)
    assert run.returncode != 0, output[-3000:]
    assert "grafana_admin_password" in output, output[-3000:]
    assert not (out / "k8s").exists(), "a manifest was written before the input checks failed"


def test_autoscale_bounds_are_checked(tmp_path: Path) -> None:
    services = yaml.safe_load((REPO / "roles/mlops/defaults/main.yml").read_text())["mlops_services"]
    services["inference-api"]["autoscale"] = {"min": 4, "max": 3, "cpu_percent": 70}
    extra = tmp_path / "bad.yml"
    extra.write_text(yaml.safe_dump({"mlops_services": services}))
    run = run_render(INVENTORIES / "edge", tmp_path / "out", "-e", f"@{extra}")
    output = ANSI.sub("", run.stdout + run.stderr)
    assert run.returncode != 0, output[-3000:]
    assert "mlops_services.inference-api.autoscale" in output, output[-3000:]
