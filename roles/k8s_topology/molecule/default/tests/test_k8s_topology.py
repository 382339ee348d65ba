"""The k8s_topology role on a stand-in k3s server: the manifests in the auto-deploy directory."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml

DIR = "/var/lib/rancher/k3s/server/manifests/mlops"
EXPECTED = {
    "mlops-00-namespace.yaml": {"Namespace"},
    "mlops-01-deployment.yaml": {"Deployment", "ServiceAccount"},
    "mlops-02-service.yaml": {"Service"},
    "mlops-03-config.yaml": {"ConfigMap", "Role", "RoleBinding"},
    "mlops-03-secrets.yaml": {"Secret"},
    "mlops-04-ingress.yaml": {"Ingress"},
    "mlops-05-autoscaling.yaml": {"HorizontalPodAutoscaler", "PodDisruptionBudget"},
    "mlops-06-networkpolicy.yaml": {"NetworkPolicy"},
    "mlops-07-storage.yaml": {"PersistentVolumeClaim", "StorageClass"},
}


def load(host: Any, name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(host.file(f"{DIR}/{name}").content_string) if d]


def test_the_directory_is_root_only(host: Any) -> None:
    d = host.file(DIR)
    assert d.is_directory and d.user == "root" and d.group == "root" and d.mode == 0o700


def test_exactly_the_expected_files_are_there(host: Any) -> None:
    assert set(host.file(DIR).listdir()) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_file_is_private_and_holds_its_kinds(host: Any, name: str) -> None:
    f = host.file(f"{DIR}/{name}")
    assert f.is_file and f.user == "root" and f.group == "root" and f.mode == 0o600
    docs = load(host, name)
    assert {d["kind"] for d in docs} == EXPECTED[name]
    assert all(d["metadata"].get("namespace", "mlops-system") == "mlops-system" for d in docs)


def test_the_converge_variables_reached_the_manifests(host: Any) -> None:
    deployments = {
        d["metadata"]["name"]: d for d in load(host, "mlops-01-deployment.yaml") if d["kind"] == "Deployment"
    }
    # node-exporter is edge-only (catalogue `platforms`): no Deployment of it here.
    assert set(deployments) == {"inference-api", "frontend", "prometheus", "grafana", "alertmanager"}
    args = deployments["prometheus"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--storage.tsdb.retention.time=21d" in args
    image = deployments["inference-api"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "mlops/inference-api@sha256:" + "1" * 64
    secrets = {s["metadata"]["name"]: s for s in load(host, "mlops-03-secrets.yaml")}
    assert sorted(secrets) == ["alertmanager-config", "api-keys", "grafana-admin-password"]
    assert base64.b64decode(secrets["grafana-admin-password"]["data"]["value"]).decode() == "molecule-Grafana-s3cret"
    am_config = yaml.safe_load(base64.b64decode(secrets["alertmanager-config"]["data"]["value"]).decode())
    assert am_config["receivers"][0]["webhook_configs"][0]["url"].endswith("token=molecule-Hook-t0ken")
    # The token is in the Secret only (base64): no manifest carries it in clear.
    assert host.run(f"grep -l molecule-Hook-t0ken {DIR}/*.yaml").stdout.split() == []
    # The API keys reach the cluster as hashes: one `name:sha256` line per key.
    (line,) = base64.b64decode(secrets["api-keys"]["data"]["value"]).decode().splitlines()
    name, digest = line.split(":")
    assert name == "site" and len(digest) == 64


def test_nothing_was_written_outside_the_auto_deploy_directory(host: Any) -> None:
    """The monitoring files are staged on the controller, never on the server."""
    out = host.run("find / -xdev -name 'mlops-alerts.yml' -not -path '/proc/*' 2>/dev/null")
    assert out.stdout.strip() == ""
