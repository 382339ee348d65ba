"""What the real Prometheus discovers from our configuration in a cluster, without a cluster.

The Prometheus configuration of the production rendering (laid out from its ConfigMaps as the
Prometheus pod's volume would) runs in the real Prometheus of our image against kube_standin: a local stand-in of the
Kubernetes API serving the Services of the rendering, and the pods and EndpointSlices that its
Deployments would create (replicas, or the HPA's minReplicas). The only change to the rendered
file is `api_server`, which stands in for the in-cluster configuration (service account token
and the KUBERNETES_SERVICE_* address) that a pod would use.

The same run with the rule the role used to render (role `endpoints`, kept on a port-number
label that discovery never sets) finds no target at all: the check below cannot pass by accident.
"""

from __future__ import annotations

import json
import os
import posixpath
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_rendering import Rendering, mounted_files
from kube_standin import KubeStandin, cluster_state
from mlops_testkit.docker import require_image

PROMETHEUS_IMAGE = "mlops/prometheus:2.53"
Obj = dict[str, Any]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def by_kind(objects: list[Obj], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pod_config_files(objects: list[Obj]) -> tuple[str, dict[str, str]]:
    """The file `--config.file` names, and the pod's configuration directory as its volume lays it out."""
    (container,) = by_kind(objects, "Deployment")["prometheus"]["spec"]["template"]["spec"]["containers"]
    config_file = next(a.split("=", 1)[1] for a in container["args"] if a.startswith("--config.file="))
    return posixpath.basename(config_file), mounted_files(objects, "prometheus", posixpath.dirname(config_file))


def old_rule(config: Obj, objects: list[Obj]) -> Obj:
    """The rule the template rendered before: role endpoints, kept on service name;port number."""
    services = by_kind(objects, "Service")
    for job in config["scrape_configs"]:
        name = job["job_name"]
        job["kubernetes_sd_configs"][0]["role"] = "endpoints"
        job["relabel_configs"][0] = {
            "source_labels": ["__meta_kubernetes_service_name", "__meta_kubernetes_endpoint_port_number"],
            "regex": f"{name};{services[name]['spec']['ports'][0]['port']}",
            "action": "keep",
        }
    return config


def expected_targets(objects: list[Obj], state: dict[str, list[Obj]], jobs: list[str]) -> dict[str, set[str]]:
    """Per scraped service: `pod address:port` of each of its pods, as a cluster would run them."""
    expected: dict[str, set[str]] = {}
    slices = {s["metadata"]["labels"]["kubernetes.io/service-name"]: s for s in state["endpointslices"]}
    pods = {p["metadata"]["name"]: p for p in state["pods"]}
    for job in jobs:
        endpoint_slice = slices[job]
        (port,) = endpoint_slice["ports"]
        expected[job] = {
            f"{e['targetRef']['name']}@{pods[e['targetRef']['name']]['status']['podIP']}:{port['port']}"
            for e in endpoint_slice["endpoints"]
        }
    # Replicas from the Deployment, or the HPA's minReplicas for an autoscaled one.
    deployments = by_kind(objects, "Deployment")
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in objects if h["kind"] == "HorizontalPodAutoscaler"}
    for job, targets in expected.items():
        wanted = hpas[job]["spec"]["minReplicas"] if job in hpas else deployments[job]["spec"]["replicas"]
        assert len(targets) == wanted, (job, targets)
    return expected


@dataclass
class Discovery:
    active: list[Obj]
    dropped: int
    standin: KubeStandin
    log: str

    def found(self) -> dict[str, set[str]]:
        """Per scrape pool: `pod@address` of each active target (address from its scrape URL)."""
        found: dict[str, set[str]] = {}
        for target in self.active:
            address = target["scrapeUrl"].split("/")[2]
            found.setdefault(target["scrapePool"], set()).add(f"{target['labels'].get('pod')}@{address}")
        return found


def discover(
    config: Obj, files: dict[str, str], config_name: str, state: dict[str, list[Obj]], namespace: str, tmp: Path
) -> Discovery:
    """Run the real Prometheus on `config` against a stand-in API serving `state`."""
    with KubeStandin(namespace, state) as standin:
        for job in config["scrape_configs"]:
            for sd in job.get("kubernetes_sd_configs", []):
                # Stands in for the in-cluster configuration (token and API address of the pod).
                sd["api_server"] = standin.url
        config_dir = tmp / "etc-prometheus"
        config_dir.mkdir()
        # The container runs as 65534 (nobody), as in the cluster: world-readable copies.
        config_dir.chmod(0o755)
        for relative, text in {**files, config_name: yaml.safe_dump(config, sort_keys=False)}.items():
            path = config_dir / relative
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            path.parent.chmod(0o755)
            path.write_text(text)
            path.chmod(0o644)
        port = free_port()
        name = f"mlops-discovery-test-{os.getpid()}-{port}"
        started = subprocess.run(
            [
                "docker", "run", "--detach", "--name", name,
                "--network", "host", "--user", "65534:65534", "--read-only",
                "--tmpfs", "/prometheus:rw,uid=65534,gid=65534,size=64m",
                "--volume", f"{config_dir}:/etc/prometheus:ro",
                PROMETHEUS_IMAGE,
                f"--config.file=/etc/prometheus/{config_name}",
                "--storage.tsdb.path=/prometheus",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        try:
            result = wait_for_targets(port, candidates(config, state))
        finally:
            log = subprocess.run(["docker", "logs", name], capture_output=True, text=True, check=False).stderr
            subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)
    if isinstance(result, str):
        pytest.fail(f"{result}\nPrometheus log:\n{log[-3000:]}\nrequests: {standin.requests[:20]}")
    active, dropped = result
    return Discovery(active, dropped, standin, log)


def candidates(config: Obj, state: dict[str, list[Obj]]) -> int:
    """Targets discovery hands to relabelling: each job sees every endpoint of the namespace."""
    per_job = sum(len(s["endpoints"]) * len(s["ports"]) for s in state["endpointslices"])
    return per_job * len(config["scrape_configs"])


def wait_for_targets(port: int, wanted: int, timeout: float = 90.0) -> tuple[list[Obj], int] | str:
    """Active targets and the number dropped, once relabelling has seen every candidate (or why not)."""
    deadline = time.monotonic() + timeout
    data: Obj = {}
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets?state=any", timeout=5) as r:
                data = json.load(r)["data"]
        except OSError:
            data = {}
        if data and len(data["activeTargets"]) + len(data["droppedTargets"]) >= wanted:
            return data["activeTargets"], len(data["droppedTargets"])
        time.sleep(1)
    return f"Prometheus saw fewer than {wanted} candidate targets in {timeout}s: {json.dumps(data)[:2000]}"


@pytest.mark.docker
@pytest.mark.parametrize("rule", ["rendered", "old-endpoints-rule"])
def test_prometheus_discovers_one_target_per_pod_of_each_scraped_service(
    prod: Rendering, tmp_path: Path, rule: str
) -> None:
    require_image(PROMETHEUS_IMAGE, "scripts/build-images.sh")
    objects = prod.objects()
    (namespace,) = {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"}
    config_name, files = pod_config_files(objects)
    config = yaml.safe_load(files[config_name])
    if rule == "old-endpoints-rule":
        config = old_rule(config, objects)
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    assert set(jobs) == {"inference-api", "prometheus", "grafana", "alertmanager"}
    state = cluster_state(objects)
    expected = expected_targets(objects, state, jobs)

    seen = discover(config, files, config_name, state, namespace, tmp_path)
    found = seen.found()
    counts = {j: len(found.get(j, ())) for j in jobs}
    print(f"{rule}: targets per service {counts}, dropped {seen.dropped}")

    if rule == "old-endpoints-rule":
        # Discovery saw every endpoint, and the keep rule dropped them all.
        assert seen.standin.watched("/endpoints"), seen.standin.requests
        assert found == {}, found
        assert seen.dropped == candidates(config, state)
        assert found != expected
        return

    # The discovery reads what its Role allows: slices, Services and pods, listed then watched.
    for resource in ("/endpointslices", "/services", "/pods"):
        assert seen.standin.watched(resource), (resource, seen.standin.requests)
    assert found == expected, f"{found} != {expected}\n{seen.log[-3000:]}"
    for target in seen.active:
        job = target["scrapePool"]
        pod = target["labels"]["pod"]
        assert target["labels"] == {"job": job, "service": job, "pod": pod, "instance": pod}, target
        assert target["scrapeUrl"].endswith(
            next(j for j in config["scrape_configs"] if j["job_name"] == job)["metrics_path"]
        ), target
