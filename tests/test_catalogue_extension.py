"""Adding a service is one catalogue entry: both renderings carry it, with no template edit.

A service that is not in the shipped catalogue (a blackbox exporter, say) is
given to playbooks/render.yml as one more entry of mlops_services, with its image; the
Compose project and the Kubernetes manifests both run it with the catalogue's port, user,
limits, environment and probe.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "k8s"))
from k8s_rendering import INVENTORIES, REPO, ansible_env, run_render

NEW = {
    "container_name": "mlops-blackbox-exporter",
    "port": 9115,
    "port_env": "LISTEN_PORT",
    "health_path": "/",
    "ready_path": "/",
    "metrics_path": "/metrics",
    "health_probe": "wget",
    "user": "65534:65534",
    "read_only": True,
    "tmpfs": ["/tmp"],
    "replicas": 1,
    "resources": {
        "cpu_request_millicores": 50,
        "cpu_limit_millicores": 200,
        "memory_request_mib": 32,
        "memory_limit_mib": 64,
    },
    "environment": {"MODULES": "http_2xx"},
    "volumes": [],
    "depends_on": [],
    "publish": "loopback",
}


def test_a_new_catalogue_entry_reaches_both_renderings(tmp_path: Path) -> None:
    defaults = yaml.safe_load((REPO / "roles/mlops/defaults/main.yml").read_text())
    inventory_vars = yaml.safe_load((INVENTORIES / "prod/group_vars/k3s_cluster.yml").read_text())
    services: dict[str, Any] = {**defaults["mlops_services"], "blackbox-exporter": NEW}
    new_image = "r.invalid/blackbox-exporter:0.25@sha256:" + "7" * 64
    images = {**inventory_vars["mlops_images"], "blackbox-exporter": new_image}
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"mlops_services": services, "mlops_images": images}))
    run = run_render(INVENTORIES / "prod", tmp_path / "out", "-e", f"@{extra}")
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    assert ansible_env()  # the same environment as every rendering test

    compose = yaml.safe_load((tmp_path / "out/compose/compose.yml").read_text())["services"]["blackbox-exporter"]
    assert compose["container_name"] == "mlops-blackbox-exporter"
    assert compose["user"] == "65534:65534" and compose["read_only"] is True
    assert compose["environment"] == {"MODULES": "http_2xx", "LISTEN_PORT": "9115"}
    assert compose["ports"] == ["127.0.0.1:9115:9115"]
    assert compose["healthcheck"]["test"] == ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9115/"]

    objects = [d for f in sorted((tmp_path / "out/k8s").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    named = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    deployment = named[("Deployment", "blackbox-exporter")]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"] == [{"name": "http", "containerPort": 9115, "protocol": "TCP"}]
    assert {e["name"]: e["value"] for e in container["env"]} == {"MODULES": "http_2xx", "LISTEN_PORT": "9115"}
    assert container["resources"]["limits"] == {"cpu": "200m", "memory": "64Mi"}
    assert ("Service", "blackbox-exporter") in named and ("NetworkPolicy", "blackbox-exporter") in named
    # Prometheus scrapes it on both platforms: the catalogue's metrics_path is enough.
    config = named[("ConfigMap", "prometheus-config")]["data"]["prometheus.yml"]
    assert '"blackbox-exporter"' in config
