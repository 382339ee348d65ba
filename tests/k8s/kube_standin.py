"""A small stand-in of the Kubernetes API: what Prometheus's Kubernetes discovery reads, no more.

No cluster can run here. To see what the real Prometheus discovers from our configuration, this
module turns the rendered manifests into the objects a cluster would hold once it ran them
(Services, the pods of each Deployment, the EndpointSlices and Endpoints the controllers
would publish for them) and serves them on 127.0.0.1 the way the API server does for a
namespaced list and watch:

    GET /version                                                     server version
    GET /api/v1/namespaces/<ns>/{services,pods,endpoints}            list (or ?watch=true)
    GET /apis/discovery.k8s.io/v1/namespaces/<ns>/endpointslices     list (or ?watch=true)

A watch is an empty event stream that stays open until the stand-in stops: the objects never
change. Pods get addresses in 127.0.1.0/24, so any scrape Prometheus attempts stays on loopback.

What it does not prove: authentication, RBAC enforcement, the real controllers' behaviour
(readiness changes, rollouts), or anything the API server would reject.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Obj = dict[str, Any]

# Pod addresses: loopback, so that a scrape of a discovered target never leaves this machine.
POD_NETWORK = "127.0.1."
NODES = ("node-a", "node-b", "node-c")
SERVER_VERSION = {"major": "1", "minor": "33", "gitVersion": "v1.33.0", "platform": "linux/amd64"}


def _uid(*parts: str) -> str:
    digest = hashlib.sha256("/".join(parts).encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def _meta(kind: str, name: str, namespace: str, labels: dict[str, str] | None = None) -> Obj:
    return {
        "name": name,
        "namespace": namespace,
        "uid": _uid(kind, namespace, name),
        "resourceVersion": "1",
        "labels": dict(labels or {}),
    }


def replicas(deployment: Obj, objects: list[Obj]) -> int:
    """Pods a Deployment runs: its replicas, or the minReplicas of the HPA that owns the count."""
    name = deployment["metadata"]["name"]
    for obj in objects:
        if obj["kind"] == "HorizontalPodAutoscaler" and obj["spec"]["scaleTargetRef"]["name"] == name:
            return int(obj["spec"]["minReplicas"])
    return int(deployment["spec"].get("replicas", 1))


def pods_of(deployment: Obj, count: int, first_ip: int) -> list[Obj]:
    """The pods the ReplicaSet of a Deployment would create, spread over NODES."""
    meta = deployment["metadata"]
    template = deployment["spec"]["template"]
    template_hash = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
    pods = []
    for index in range(count):
        name = f"{meta['name']}-{template_hash}-{index}"
        ip = f"{POD_NETWORK}{first_ip + index}"
        pods.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": _meta("Pod", name, meta["namespace"], template["metadata"].get("labels")),
                "spec": {
                    "nodeName": NODES[index % len(NODES)],
                    "containers": [
                        {"name": c["name"], "image": c["image"], "ports": c.get("ports", [])}
                        for c in template["spec"]["containers"]
                    ],
                },
                "status": {
                    "phase": "Running",
                    "podIP": ip,
                    "podIPs": [{"ip": ip}],
                    "hostIP": f"{POD_NETWORK}{250 + index % len(NODES)}",
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }
        )
    return pods


def _selected(selector: dict[str, str], pod: Obj) -> bool:
    labels = pod["metadata"]["labels"]
    return all(labels.get(k) == v for k, v in selector.items())


def _target_port(port: Obj, pod: Obj) -> int:
    """A Service port's targetPort on a pod: a number, or the name of a container port."""
    target = port.get("targetPort", port["port"])
    if isinstance(target, int):
        return target
    for container in pod["spec"]["containers"]:
        for container_port in container["ports"]:
            if container_port.get("name") == target:
                return int(container_port["containerPort"])
    raise ValueError(f"pod {pod['metadata']['name']} has no container port named {target!r}")


def _endpoint(pod: Obj) -> tuple[str, Obj, str]:
    meta = pod["metadata"]
    ref = {"kind": "Pod", "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]}
    return pod["status"]["podIP"], ref, pod["spec"]["nodeName"]


def endpoints_for(service: Obj, pods: list[Obj]) -> tuple[Obj, Obj]:
    """The EndpointSlice and the (legacy) Endpoints the controllers publish for a Service."""
    meta = service["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    members = [p for p in pods if _selected(service["spec"].get("selector", {}), p)]
    ports = (
        [
            {"name": p.get("name", ""), "port": _target_port(p, members[0]), "protocol": p.get("protocol", "TCP")}
            for p in service["spec"]["ports"]
        ]
        if members
        else []
    )
    owner = [{"apiVersion": "v1", "kind": "Service", "name": name, "uid": meta["uid"], "controller": True}]
    slice_meta = _meta(
        "EndpointSlice",
        f"{name}-{meta['uid'][:5]}",
        namespace,
        {
            "kubernetes.io/service-name": name,
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
        },
    )
    endpoint_slice = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {**slice_meta, "ownerReferences": owner},
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": [ip],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "nodeName": node,
                "targetRef": ref,
            }
            for ip, ref, node in map(_endpoint, members)
        ],
        "ports": ports,
    }
    legacy = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": _meta("Endpoints", name, namespace, meta.get("labels")),
        "subsets": [
            {
                "addresses": [
                    {"ip": ip, "nodeName": node, "targetRef": ref} for ip, ref, node in map(_endpoint, members)
                ],
                "ports": ports,
            }
        ]
        if members
        else [],
    }
    return endpoint_slice, legacy


def cluster_state(objects: list[Obj]) -> dict[str, list[Obj]]:
    """What the cluster would hold after applying `objects`, by resource name."""
    services: list[Obj] = []
    pods: list[Obj] = []
    next_ip = 1
    for obj in objects:
        if obj["kind"] == "Deployment":
            created = pods_of(obj, replicas(obj, objects), next_ip)
            next_ip += len(created)
            pods.extend(created)
    for obj in objects:
        if obj["kind"] == "Service":
            meta = obj["metadata"]
            service = {
                **obj,
                "metadata": _meta("Service", meta["name"], meta["namespace"], meta.get("labels")),
                "spec": {**obj["spec"], "clusterIP": f"10.43.0.{len(services) + 10}"},
            }
            services.append(service)
    published = [endpoints_for(s, pods) for s in services]
    return {
        "services": services,
        "pods": pods,
        "endpointslices": [endpoint_slice for endpoint_slice, _ in published],
        "endpoints": [legacy for _, legacy in published],
    }


# Where each resource is served, as in the API server: (path prefix, list kind, apiVersion).
_ROUTES = {
    "services": ("/api/v1", "ServiceList", "v1"),
    "pods": ("/api/v1", "PodList", "v1"),
    "endpoints": ("/api/v1", "EndpointsList", "v1"),
    "endpointslices": ("/apis/discovery.k8s.io/v1", "EndpointSliceList", "discovery.k8s.io/v1"),
}


class KubeStandin:
    """Serves `state` (from cluster_state) for one namespace on 127.0.0.1, in a thread."""

    def __init__(self, namespace: str, state: dict[str, list[Obj]]) -> None:
        self.namespace = namespace
        self.state = state
        self.requests: list[str] = []
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> KubeStandin:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def watched(self, resource: str) -> bool:
        return any(resource in path and "watch=" in path for path in self.requests)

    def _routes(self) -> Iterator[tuple[str, str, str, str]]:
        for resource, (prefix, kind, api_version) in _ROUTES.items():
            yield f"{prefix}/namespaces/{self.namespace}/{resource}", resource, kind, api_version

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send_json(self, status: int, body: Obj) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _watch(self) -> None:
                # Nothing ever changes: an open, empty stream of events until the stand-in stops.
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.flush()
                standin._stop.wait()
                self.wfile.write(b"0\r\n\r\n")
                self.close_connection = True

            def do_GET(self) -> None:
                standin.requests.append(self.path)
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                if url.path == "/version":
                    self._send_json(200, SERVER_VERSION)
                    return
                for path, resource, kind, api_version in standin._routes():
                    if url.path == path:
                        if query.get("watch", ["false"])[0] in ("true", "1"):
                            self._watch()
                        else:
                            items = standin.state.get(resource, [])
                            self._send_json(
                                200,
                                {
                                    "apiVersion": api_version,
                                    "kind": kind,
                                    "metadata": {"resourceVersion": "1"},
                                    "items": items,
                                },
                            )
                        return
                self._send_json(
                    404,
                    {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404},
                )

        return Handler
