"""The service catalogue, turned once into what the renderers need.

Role mlops holds the catalogue (``mlops_services``): one entry per service of the stack.
These filters are the only place where it is interpreted:

``mlops.infra.enabled_services(services, disabled, overrides)``
    The catalogue with the site's overrides merged in (recursively) and the disabled
    services left out; ``depends_on`` keeps only enabled services. Role mlops computes it
    once, as ``mlops_enabled_services``; every other role and template reads that.

``mlops.infra.catalogue_errors(services, disabled, overrides, images, environment)``
    Every mistake in that input, as messages that name the variable at fault (empty when
    all is well). Role mlops asserts on it before any host is changed.

``mlops.infra.config_maps(containers, contents)``
    The ConfigMaps of the containers' configuration directories (Kubernetes rendering).

``mlops.infra.container_specs(enabled, images, delivery, binds, exports, platform)``
    One container description per enabled service, in name order: image, user, port and
    the environment that carries the port to the process, command, configuration and
    secret mounts, volumes, limits, health probe. The Compose template (role edge_stack)
    and the Kubernetes templates (role k8s_topology) render these and nothing else, so no
    template branches on a service's name: what differs per service is data here. Given a
    platform (edge or kubernetes), only the services that run there.

``mlops.infra.on_platform(enabled, platform)``
    The enabled services that run on a platform (edge or kubernetes): field `platforms`.

Catalogue fields read here (all but the first block optional):

    container_name, port, health_path, ready_path, metrics_path, user ("uid:gid"),
    read_only, tmpfs, replicas, resources{cpu_request_millicores, cpu_limit_millicores,
    memory_request_mib, memory_limit_mib}, environment, volumes[{name, path, size_gib}],
    depends_on, publish (loopback|all)

    autoscale{min, max, cpu_percent}
    role             the role that renders the service's configuration: what it exports
                     as `<role>_service` (command, environment, config, secrets) is merged
                     in by container_specs (argument `exports`, keyed by role name)
    command          arguments of the container's entrypoint
    port_env         environment variable that tells the process its port
    tls_port         the HTTPS port where the service terminates TLS itself (edge hosts;
                     Kubernetes terminates TLS at the Ingress), told by tls_port_env
    workers_env      environment variable that gets the worker count (one per CPU of the limit)
    links            {ENV: service}: ENV=http://<service>:<its port>
    config           [{name, source, target}] read-only configuration directories
                     (Compose: bind mounts of source; Kubernetes: ConfigMaps)
    secrets          [{name, source, env, value_var}]: a file at /run/secrets/<name>, its
                     path in ENV env; source is the file on an edge host, value_var the
                     variable holding the value for a Kubernetes Secret
    health_probe     python3 | promtool | bash | wget | image: how the container's own
                     healthcheck asks health_path, from what its image has
    kubernetes_api   true when the service talks to the Kubernetes API (token mounted)
    scrapes_metrics  true for the service that scrapes every metrics_path (network flows)
    receives_alerts  true for the service Prometheus sends its alerts to (Alertmanager)
    external_egress  true when the service sends to addresses outside the stack (Alertmanager's
                     receivers): Kubernetes lets it reach any address outside the namespace
    platforms        where the service runs: [edge, kubernetes] (the default) or one of them
    port_flag        a flag of the process that takes its listen address: `<flag>=:<port>` is
                     added to its command (for processes that read no environment variable)
    host_paths       [{source, target}] host directories mounted read-only (edge hosts:
                     node_exporter's /proc, /sys and textfile directory). A service with host
                     paths runs on edge only: the restricted Pod Security profile of the
                     Kubernetes namespace refuses hostPath volumes
    extra_hosts      {name: address} names added to the container's /etc/hosts (edge hosts;
                     `host-gateway` is the Docker host itself)

Argument ``binds`` of container_specs adds a platform's own bind mounts, by service:
[{source, target, env, environment}] (env gets the target path; environment is merged into
the container's).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

REQUIRED_FIELDS = (
    "container_name",
    "port",
    "health_path",
    "ready_path",
    "metrics_path",
    "user",
    "read_only",
    "tmpfs",
    "replicas",
    "resources",
    "environment",
    "volumes",
    "depends_on",
    "publish",
)
REQUIRED_RESOURCES = ("cpu_request_millicores", "cpu_limit_millicores", "memory_request_mib", "memory_limit_mib")
PROBES = ("python3", "promtool", "bash", "wget", "image")
PLATFORMS = ("edge", "kubernetes")
DIGEST = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
DIGEST_SUFFIX = re.compile(r"@sha256:[0-9a-f]{64}$")
TAGGED = re.compile(r"^[^@\s]+:[^/@:\s]+(@sha256:[0-9a-f]{64})?$")
USER = re.compile(r"^([0-9]+):([0-9]+)$")
SECRETS_DIR = "/run/secrets"


def _merge(base: Any, extra: Any) -> Any:
    """extra merged into base: mappings recursively, anything else replaced."""
    if isinstance(base, Mapping) and isinstance(extra, Mapping):
        merged = dict(base)
        for key, value in extra.items():
            merged[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(extra)


def _as_bool(value: Any, field: str) -> bool:
    """A boolean given as one, or as a string from the command line (-e key=true)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise AnsibleFilterError(f"{field} is {value!r}: expected true or false")


def _as_int(value: Any, field: str) -> int:
    if isinstance(value, bool):
        raise AnsibleFilterError(f"{field} is {value!r}: expected a whole number")
    try:
        return int(str(value).strip())
    except ValueError:
        raise AnsibleFilterError(f"{field} is {value!r}: expected a whole number") from None


def _names(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _platforms(svc: Mapping[str, Any]) -> list[str]:
    value = svc.get("platforms")
    return list(PLATFORMS) if value is None else _names(value)


def on_platform(enabled: Mapping[str, Any], platform: str) -> dict[str, Any]:
    """The services of ``enabled`` that run on ``platform`` (edge or kubernetes), in name order."""
    if platform not in PLATFORMS:
        raise AnsibleFilterError(f"platform '{platform}' is not one of {', '.join(PLATFORMS)}")
    return {name: svc for name, svc in sorted(enabled.items()) if platform in _platforms(svc)}


def enabled_services(
    services: Mapping[str, Any], disabled: Any = (), overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The catalogue with overrides merged and disabled services left out (name order)."""
    if not isinstance(services, Mapping):
        raise AnsibleFilterError("mlops_services must be a dictionary of services")
    off = set(_names(disabled))
    merged = _merge(dict(services), dict(overrides or {}))
    enabled = {name: dict(svc) for name, svc in sorted(merged.items()) if name not in off}
    for svc in enabled.values():
        svc["depends_on"] = [d for d in _names(svc.get("depends_on")) if d in enabled]
    return enabled


def catalogue_errors(
    services: Mapping[str, Any],
    disabled: Any = (),
    overrides: Mapping[str, Any] | None = None,
    images: Mapping[str, Any] | None = None,
    environment: str = "edge",
) -> list[str]:
    """Every mistake in the catalogue input, each naming the variable at fault."""
    errors: list[str] = []
    known = sorted(services)
    unknown = sorted(set(_names(disabled)) - set(known))
    if unknown:
        errors.append(
            f"mlops_disabled_services names {unknown}, which the catalogue (mlops_services) does not have; "
            f"known: {known}."
        )
    unknown = sorted(set(overrides or {}) - set(known))
    if unknown:
        errors.append(f"mlops_service_overrides names {unknown}, which the catalogue does not have; known: {known}.")
    enabled = enabled_services(services, disabled, overrides)
    if not enabled:
        errors.append("mlops_disabled_services leaves no service of mlops_services to deploy.")
    ports: dict[int, list[str]] = {}
    for name, svc in enabled.items():
        where = f"mlops_services.{name}"
        missing = [f for f in REQUIRED_FIELDS if f not in svc]
        missing += [f"resources.{f}" for f in REQUIRED_RESOURCES if f not in (svc.get("resources") or {})]
        if missing:
            errors.append(f"{where} lacks {missing}.")
            continue
        user = USER.match(str(svc["user"]))
        if not user or int(user.group(1)) == 0 or int(user.group(2)) == 0:
            errors.append(
                f"{where}.user is '{svc['user']}': it must be a numeric uid:gid, neither of them 0, "
                "so that nothing in the stack runs as root."
            )
        try:
            port = _as_int(svc["port"], f"{where}.port")
            replicas = _as_int(svc["replicas"], f"{where}.replicas")
            res = {k: _as_int(svc["resources"][k], f"{where}.resources.{k}") for k in REQUIRED_RESOURCES}
            _as_bool(svc["read_only"], f"{where}.read_only")
        except AnsibleFilterError as exc:
            errors.append(f"{exc.message}.")
            continue
        ports.setdefault(port, []).append(name)
        if (
            svc["publish"] not in ("loopback", "all")
            or not 0 < port < 65536
            or replicas < 1
            or res["cpu_request_millicores"] > res["cpu_limit_millicores"]
            or res["memory_request_mib"] > res["memory_limit_mib"]
            or not str(svc["health_path"]).startswith("/")
            or not str(svc["ready_path"]).startswith("/")
        ):
            errors.append(
                f"{where}: publish must be loopback or all, port 1-65535, replicas >= 1, requests no greater "
                "than limits, and health/ready paths absolute."
            )
        if svc.get("health_probe", "image") not in PROBES:
            errors.append(f"{where}.health_probe is '{svc.get('health_probe')}' ({', '.join(PROBES)}).")
        for env, target in (svc.get("links") or {}).items():
            if target not in services:
                errors.append(f"{where}.links.{env} names '{target}', which is not a catalogue service.")
        for secret in svc.get("secrets") or []:
            if not {"name", "env", "source", "value_var"} <= set(secret):
                errors.append(f"{where}.secrets: each secret needs name, env, source and value_var.")
        for cfg in svc.get("config") or []:
            if not {"name", "source", "target"} <= set(cfg):
                errors.append(f"{where}.config: each entry needs name, source and target.")
        platforms = _platforms(svc)
        if not platforms or set(platforms) - set(PLATFORMS):
            errors.append(f"{where}.platforms is {platforms}: a non-empty list of {', '.join(PLATFORMS)}.")
        for path in svc.get("host_paths") or []:
            source = str(path.get("source", ""))
            # (Unrendered Jinja only in unit tests of the raw catalogue: Ansible renders it first.)
            if not {"source", "target"} <= set(path) or not source.startswith(("/", "{{")):
                errors.append(f"{where}.host_paths: each entry needs an absolute source and a target.")
        if svc.get("host_paths") and "kubernetes" in platforms:
            errors.append(
                f"{where}.host_paths: a service that mounts host directories runs on edge hosts only "
                "(platforms: [edge]); the restricted Pod Security profile refuses hostPath volumes."
            )
    for port, users in sorted(ports.items()):
        if len(users) > 1:
            errors.append(f"mlops_services: port {port} is used by more than one enabled service: {users}.")
    images = images or {}
    lacking = sorted(set(enabled) - set(images))
    if lacking:
        errors.append(f"mlops_images has no image for {lacking}.")
    if environment == "production":
        for name in sorted(set(enabled) & set(images)):
            if not DIGEST.match(str(images[name])):
                errors.append(
                    f"mlops_images['{name}'] is '{images[name]}': production refuses a tag without a digest. "
                    "Pin it as name@sha256:<digest> (a tag may precede the digest)."
                )
    return errors


def image_ref(reference: str, delivery: str = "registry") -> str:
    """The reference a host runs: a bundle carries the image under its tag (an archive loaded
    by `docker load` has no registry digest), so the digest part is dropped for bundles."""
    return DIGEST_SUFFIX.sub("", str(reference)) if delivery == "bundle" else str(reference)


def healthcheck_test(probe: str, port: int, path: str) -> list[str] | None:
    """The container's own healthcheck command asking http://127.0.0.1:<port><path>, with a
    tool its image has; None keeps the image's HEALTHCHECK."""
    url = f"http://127.0.0.1:{port}{path}"
    if probe == "python3":
        code = (
            "import sys, urllib.request; "
            f"sys.exit(0 if urllib.request.urlopen({url!r}, timeout=4).status == 200 else 1)"
        )
        return ["CMD", "python3", "-c", code]
    if probe == "promtool":
        return ["CMD", "promtool", "check", "healthy", f"--url=http://127.0.0.1:{port}"]
    if probe == "bash":
        request = f'exec 3<>/dev/tcp/127.0.0.1/{port} && printf "GET {path} HTTP/1.0\\r\\n\\r\\n" >&3'
        return ["CMD", "bash", "-c", f'{request} && head -n 1 <&3 | grep -q " 200 "']
    if probe == "wget":
        return ["CMD", "wget", "-q", "-O", "/dev/null", url]
    if probe == "image":
        return None
    raise AnsibleFilterError(f"health probe '{probe}' is not one of {', '.join(PROBES)}")


def container_specs(
    enabled: Mapping[str, Any],
    images: Mapping[str, Any],
    delivery: str = "registry",
    binds: Mapping[str, Any] | None = None,
    exports: Mapping[str, Any] | None = None,
    platform: str | None = None,
) -> list[dict[str, Any]]:
    """One container description per enabled service (see the module's docstring); given a
    platform, only the services that run there."""
    specs = []
    if platform is not None:
        enabled = on_platform(enabled, platform)
    for name, entry in sorted(enabled.items()):
        where = f"mlops_services.{name}"
        svc = dict(entry)
        if svc.get("role"):
            export = (exports or {}).get(svc["role"])
            if export is None:
                raise AnsibleFilterError(
                    f"{where}.role is '{svc['role']}', but no {svc['role']}_service was given: "
                    f"role {svc['role']} must be part of the play that renders the stack"
                )
            for field in ("command", "config", "secrets"):
                if field in export:
                    svc[field] = export[field]
            svc["environment"] = {**(svc.get("environment") or {}), **(export.get("environment") or {})}
        user = USER.match(str(svc["user"]))
        if not user:
            raise AnsibleFilterError(f"{where}.user is '{svc['user']}': expected a numeric uid:gid")
        port = _as_int(svc["port"], f"{where}.port")
        res = {k: _as_int(svc["resources"][k], f"{where}.resources.{k}") for k in REQUIRED_RESOURCES}
        env = {str(k): str(v) for k, v in (svc.get("environment") or {}).items()}
        if svc.get("port_env"):
            env[svc["port_env"]] = str(port)
        tls_port = _as_int(svc["tls_port"], f"{where}.tls_port") if svc.get("tls_port") else None
        if tls_port and svc.get("tls_port_env"):
            env[svc["tls_port_env"]] = str(tls_port)
        if svc.get("workers_env"):
            env[svc["workers_env"]] = str(max(1, res["cpu_limit_millicores"] // 1000))
        for var, target in sorted((svc.get("links") or {}).items()):
            if target in enabled:  # a link to a disabled service leaves the image's default
                env[var] = f"http://{target}:{_as_int(enabled[target]['port'], f'mlops_services.{target}.port')}"
        own_binds = [{"source": p["source"], "target": p["target"]} for p in svc.get("host_paths") or []]
        own_binds += [dict(b) for b in (binds or {}).get(name, [])]
        for bind in own_binds:
            if bind.get("env"):
                env[bind["env"]] = bind["target"]
            env.update({str(k): str(v) for k, v in (bind.get("environment") or {}).items()})
        secrets = []
        for secret in svc.get("secrets") or []:
            target = f"{SECRETS_DIR}/{secret['name']}"
            env[secret["env"]] = target
            secrets.append({**secret, "target": target, "service": name})
        probe = svc.get("health_probe", "image")
        autoscale = svc.get("autoscale")
        command = [str(a) for a in svc.get("command") or []]
        if svc.get("port_flag"):
            command.append(f"{svc['port_flag']}=:{port}")
        specs.append(
            {
                "name": name,
                "container_name": svc["container_name"],
                "image": image_ref(images[name], delivery),
                "port": port,
                "tls_port": tls_port,
                "user": f"{user.group(1)}:{user.group(2)}",
                "uid": int(user.group(1)),
                "gid": int(user.group(2)),
                "read_only": _as_bool(svc["read_only"], f"{where}.read_only"),
                "tmpfs": list(svc.get("tmpfs") or []),
                "command": command,
                "environment": dict(sorted(env.items())),
                "config": [dict(c) for c in svc.get("config") or []],
                "secrets": secrets,
                "volumes": [dict(v) for v in svc.get("volumes") or []],
                "binds": own_binds,
                "health_path": svc["health_path"],
                "ready_path": svc["ready_path"],
                "metrics_path": svc["metrics_path"],
                "health_probe": probe,
                "healthcheck": healthcheck_test(probe, port, svc["health_path"]),
                "resources": res,
                "replicas": _as_int(svc["replicas"], f"{where}.replicas"),
                "autoscale": dict(autoscale) if autoscale else None,
                "publish": svc["publish"],
                "depends_on": [d for d in _names(svc.get("depends_on")) if d in enabled],
                "kubernetes_api": _as_bool(svc.get("kubernetes_api", False), f"{where}.kubernetes_api"),
                "scrapes_metrics": _as_bool(svc.get("scrapes_metrics", False), f"{where}.scrapes_metrics"),
                "receives_alerts": _as_bool(svc.get("receives_alerts", False), f"{where}.receives_alerts"),
                "external_egress": _as_bool(svc.get("external_egress", False), f"{where}.external_egress"),
                "platforms": _platforms(svc),
                "extra_hosts": {str(k): str(v) for k, v in sorted((svc.get("extra_hosts") or {}).items())},
                # What the container's configuration depends on: a change rolls its pods.
                "fingerprint": json.dumps([env, command], sort_keys=True),
            }
        )
    return specs


def config_maps(containers: list[Mapping[str, Any]], contents: Mapping[str, str]) -> list[dict[str, Any]]:
    """A ConfigMap per configuration directory of the containers (Kubernetes rendering).

    ``contents`` maps the path of every file staged on the controller to its text; each
    config's files are those under its ``source``. A key holds the file's path below the
    directory with ``/`` written as ``_`` (keys cannot hold ``/``), and ``items`` lays the
    files out again as the directory the Compose project mounts.
    """
    maps = []
    for c in containers:
        for cfg in c.get("config") or []:
            root = str(cfg["source"]).rstrip("/") + "/"
            files = sorted((path[len(root) :], text) for path, text in contents.items() if path.startswith(root))
            data: dict[str, str] = {}
            items = []
            for relative, text in files:
                key = relative.replace("/", "_")
                if key in data:
                    raise AnsibleFilterError(f"{c['name']} config {cfg['name']}: two files map to key {key}")
                data[key] = text
                items.append({"key": key, "path": relative})
            maps.append(
                {"name": f"{c['name']}-{cfg['name']}", "service": c["name"], "config": cfg["name"],
                 "target": cfg["target"], "data": data, "items": items}
            )  # fmt: skip
    return maps


class FilterModule:
    """The catalogue filters of mlops.infra."""

    def filters(self) -> dict[str, Any]:
        return {
            "enabled_services": enabled_services,
            "catalogue_errors": catalogue_errors,
            "container_specs": container_specs,
            "config_maps": config_maps,
            "on_platform": on_platform,
            "image_ref": image_ref,
            "healthcheck_test": healthcheck_test,
        }
