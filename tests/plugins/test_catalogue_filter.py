"""Unit tests of the catalogue filters (plugins/filter/catalogue.py) on the shipped catalogue."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.errors import AnsibleFilterError

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("catalogue", ROOT / "plugins/filter/catalogue.py")
assert _spec and _spec.loader
catalogue = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(catalogue)

DEFAULTS: dict[str, Any] = yaml.safe_load((ROOT / "roles/mlops/defaults/main.yml").read_text())
SERVICES: dict[str, Any] = DEFAULTS["mlops_services"]
IMAGES: dict[str, str] = DEFAULTS["mlops_images"]
DIGEST = "@sha256:" + "a" * 64
# What roles prometheus, grafana, alertmanager and model_release export (their vars/main.yml), with literal values.
EXPORTS = {
    "model_release": {
        "environment": {"MODEL_DIR": "/srv/mlops/models"},
        "config": [{"name": "model", "source": "/var/lib/mlops/models/m-1", "target": "/srv/mlops/models/m-1"}],
    },
    "prometheus": {
        "command": ["--config.file=/etc/prometheus/prometheus.yml"],
        "config": [{"name": "config", "source": "/etc/mlops/prometheus", "target": "/etc/prometheus"}],
    },
    "grafana": {
        "environment": {"GF_USERS_ALLOW_SIGN_UP": "false"},
        "config": [{"name": "provisioning", "source": "/etc/mlops/grafana/provisioning", "target": "/p"}],
        "secrets": [{"name": "grafana-admin-password", "env": "GF_SECURITY_ADMIN_PASSWORD__FILE",
                     "source": "/etc/mlops/grafana/secrets/admin-password", "value_var": "grafana_admin_password"}],
    },
    "alertmanager": {
        "command": ["--config.file=/run/secrets/alertmanager-config", "--web.listen-address=:9093"],
        "secrets": [{"name": "alertmanager-config", "env": "ALERTMANAGER_CONFIG_FILE",
                     "source": "/etc/mlops/alertmanager/alertmanager.yml", "value_var": "alertmanager_config_content"}],
    },
}  # fmt: skip


def services() -> dict[str, Any]:
    return copy.deepcopy(SERVICES)


def test_enabled_services_leave_out_disabled_ones_and_their_dependencies() -> None:
    enabled = catalogue.enabled_services(services(), ["inference-api"])
    assert list(enabled) == ["alertmanager", "frontend", "grafana", "node-exporter", "prometheus"]
    assert enabled["frontend"]["depends_on"] == []
    assert enabled["grafana"]["depends_on"] == ["prometheus"]


def test_overrides_merge_recursively_and_keep_the_rest() -> None:
    enabled = catalogue.enabled_services(
        services(), [], {"frontend": {"port": 8443, "resources": {"memory_limit_mib": 256}}}
    )
    assert enabled["frontend"]["port"] == 8443
    assert enabled["frontend"]["resources"]["memory_limit_mib"] == 256
    assert (
        enabled["frontend"]["resources"]["cpu_limit_millicores"]
        == SERVICES["frontend"]["resources"]["cpu_limit_millicores"]
    )
    assert SERVICES["frontend"]["port"] == 8080  # the catalogue itself is untouched


def test_the_shipped_catalogue_has_no_error() -> None:
    assert catalogue.catalogue_errors(services(), [], {}, IMAGES, "edge") == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"disabled": ["grafanna"]}, "mlops_disabled_services names ['grafanna']"),
        ({"overrides": {"nginx": {"port": 1}}}, "mlops_service_overrides names ['nginx']"),
        ({"overrides": {"frontend": {"user": "0:0"}}}, "mlops_services.frontend.user is '0:0'"),
        ({"overrides": {"frontend": {"user": "nginx"}}}, "must be a numeric uid:gid"),
        ({"overrides": {"frontend": {"port": 8000}}}, "port 8000 is used by more than one enabled service"),
        ({"overrides": {"frontend": {"port": "eighty"}}}, "mlops_services.frontend.port is 'eighty'"),
        ({"overrides": {"frontend": {"publish": "public"}}}, "publish must be loopback or all"),
        ({"overrides": {"frontend": {"health_probe": "curl"}}}, "mlops_services.frontend.health_probe is 'curl'"),
        ({"overrides": {"frontend": {"links": {"X": "nope"}}}}, "links.X names 'nope'"),
        ({"images": {"frontend": "mlops/frontend:1.0.0"}}, "mlops_images has no image for"),
        ({"environment": "production"}, "production refuses a tag without a digest"),
        ({"disabled": list(SERVICES)}, "leaves no service"),
        ({"overrides": {"frontend": {"platforms": ["edge", "moon"]}}}, "mlops_services.frontend.platforms is"),
        ({"overrides": {"frontend": {"platforms": []}}}, "mlops_services.frontend.platforms is"),
        (
            {"overrides": {"node-exporter": {"platforms": ["edge", "kubernetes"]}}},
            "mlops_services.node-exporter.host_paths: a service that mounts host directories runs on edge hosts only",
        ),
        (
            {"overrides": {"frontend": {"host_paths": [{"source": "proc", "target": "/p"}], "platforms": ["edge"]}}},
            "needs an absolute source",
        ),
    ],
)
def test_each_mistake_is_reported_naming_the_variable(change: dict[str, Any], message: str) -> None:
    errors = catalogue.catalogue_errors(
        services(),
        change.get("disabled", []),
        change.get("overrides", {}),
        change.get("images", IMAGES),
        change.get("environment", "edge"),
    )
    assert any(message in e for e in errors), errors


def test_production_accepts_digests() -> None:
    pinned = {name: ref + DIGEST for name, ref in IMAGES.items()}
    assert catalogue.catalogue_errors(services(), [], {}, pinned, "production") == []


def specs(**kwargs: Any) -> dict[str, dict[str, Any]]:
    enabled = catalogue.enabled_services(services(), kwargs.pop("disabled", []), kwargs.pop("overrides", {}))
    return {s["name"]: s for s in catalogue.container_specs(enabled, IMAGES, exports=EXPORTS, **kwargs)}


def test_ports_reach_the_processes_through_the_environment() -> None:
    found = specs(overrides={"inference-api": {"port": 8001}, "frontend": {"port": 8081}, "grafana": {"port": 3001}})
    assert found["inference-api"]["environment"]["PORT"] == "8001"
    assert found["frontend"]["environment"]["LISTEN_PORT"] == "8081"
    assert found["frontend"]["environment"]["API_UPSTREAM"] == "http://inference-api:8001"
    assert found["grafana"]["environment"]["GF_SERVER_HTTP_PORT"] == "3001"
    assert "8001" in found["inference-api"]["healthcheck"][-1]


def test_workers_follow_the_cpu_limit() -> None:
    found = specs(overrides={"inference-api": {"resources": {"cpu_limit_millicores": 2500}}})
    assert found["inference-api"]["environment"]["WEB_CONCURRENCY"] == "2"
    assert specs()["inference-api"]["environment"]["WEB_CONCURRENCY"] == "1"


def test_owner_roles_supply_command_config_environment_and_secrets() -> None:
    found = specs()
    assert found["prometheus"]["command"] == EXPORTS["prometheus"]["command"]
    assert found["prometheus"]["config"][0]["target"] == "/etc/prometheus"
    grafana = found["grafana"]
    assert grafana["environment"]["GF_USERS_ALLOW_SIGN_UP"] == "false"
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/grafana-admin-password"
    assert grafana["secrets"][0]["target"] == "/run/secrets/grafana-admin-password"
    # Secrets carry the name of the variable with the value, never the value.
    assert "value" not in grafana["secrets"][0]


def test_a_missing_owner_role_is_named() -> None:
    enabled = catalogue.enabled_services(services(), [])
    with pytest.raises(AnsibleFilterError, match="no grafana_service was given"):
        catalogue.container_specs(enabled, IMAGES, exports={k: v for k, v in EXPORTS.items() if k != "grafana"})


def test_bundles_run_the_tag_and_registries_the_digest() -> None:
    pinned = {name: ref + DIGEST for name, ref in IMAGES.items()}
    enabled = catalogue.enabled_services(services(), ["grafana"])
    bundle = catalogue.container_specs(enabled, pinned, "bundle", exports=EXPORTS)
    registry = catalogue.container_specs(enabled, pinned, "registry", exports=EXPORTS)
    assert [s["image"] for s in bundle] == [IMAGES[s["name"]] for s in bundle]
    assert [s["image"] for s in registry] == [pinned[s["name"]] for s in registry]


def test_binds_set_their_environment() -> None:
    enabled = catalogue.enabled_services(services(), ["grafana"])
    binds = {"inference-api": [{"source": "/var/lib/mlops/models", "target": "/srv/models", "env": "MODEL_DIR"}]}
    found = {s["name"]: s for s in catalogue.container_specs(enabled, IMAGES, binds=binds, exports=EXPORTS)}
    assert found["inference-api"]["environment"]["MODEL_DIR"] == "/srv/models"
    assert found["inference-api"]["binds"] == binds["inference-api"]


@pytest.mark.parametrize("probe", ["python3", "promtool", "bash", "wget"])
def test_every_probe_asks_the_port_and_path(probe: str) -> None:
    test = catalogue.healthcheck_test(probe, 9999, "/live")
    assert test[0] == "CMD" and "9999" in " ".join(test)
    if probe != "promtool":
        assert "/live" in " ".join(test)
    assert catalogue.healthcheck_test("image", 1, "/") is None


def test_config_maps_lay_out_the_staged_files_again() -> None:
    found = specs(disabled=["grafana"])
    contents = {
        "/etc/mlops/prometheus/prometheus.yml": "global: {}\n",
        "/etc/mlops/prometheus/rules/a.yml": "groups: []\n",
        "/elsewhere/x.yml": "no",
    }
    maps = {m["name"]: m for m in catalogue.config_maps(list(found.values()), contents)}
    assert sorted(maps) == ["inference-api-model", "prometheus-config"]
    assert maps["inference-api-model"]["data"] == {}  # no staged file under its source
    cm = maps["prometheus-config"]
    assert cm["target"] == "/etc/prometheus"
    assert cm["data"] == {"prometheus.yml": "global: {}\n", "rules_a.yml": "groups: []\n"}
    assert {i["path"] for i in cm["items"]} == {"prometheus.yml", "rules/a.yml"}


def test_a_string_boolean_from_the_command_line_is_understood() -> None:
    found = specs(overrides={"frontend": {"read_only": "true"}})
    assert found["frontend"]["read_only"] is True
    with pytest.raises(AnsibleFilterError, match="read_only is 'maybe'"):
        specs(overrides={"frontend": {"read_only": "maybe"}})


def test_platforms_choose_where_a_service_runs() -> None:
    enabled = catalogue.enabled_services(services(), [])
    assert "node-exporter" not in catalogue.on_platform(enabled, "kubernetes")
    assert "node-exporter" in catalogue.on_platform(enabled, "edge")
    assert set(catalogue.on_platform(enabled, "kubernetes")) == set(enabled) - {"node-exporter"}
    edge = [s["name"] for s in catalogue.container_specs(enabled, IMAGES, exports=EXPORTS, platform="edge")]
    k8s = [s["name"] for s in catalogue.container_specs(enabled, IMAGES, exports=EXPORTS, platform="kubernetes")]
    everything = [s["name"] for s in catalogue.container_specs(enabled, IMAGES, exports=EXPORTS)]
    assert edge == everything and k8s == [n for n in everything if n != "node-exporter"]
    with pytest.raises(AnsibleFilterError, match="platform 'mars'"):
        catalogue.on_platform(enabled, "mars")


def test_node_exporter_reads_the_host_read_only_through_its_host_paths() -> None:
    found = specs()["node-exporter"]
    assert {b["source"]: b["target"] for b in found["binds"]} == {
        "/proc": "/host/proc",
        "/sys": "/host/sys",
        "{{ mlops_textfile_dir }}": "/var/lib/node-exporter/textfile",
    }
    # Its listen address from the catalogue's port (port_flag): an override reaches the process.
    assert found["command"][-1] == "--web.listen-address=:9100"
    moved = specs(overrides={"node-exporter": {"port": 9101}})["node-exporter"]
    assert moved["command"][-1] == "--web.listen-address=:9101"
    assert "--path.procfs=/host/proc" in found["command"]
    assert found["read_only"] is True and found["publish"] == "loopback"
    # A user of its own: through the host's /proc it must not reach other containers' files.
    others = {s["user"] for n, s in specs().items() if n != "node-exporter"}
    assert found["user"] not in others and "65534" not in found["user"].split(":")
    assert not any(b["source"] == "/" for b in found["binds"])


def test_alertmanager_gets_its_configuration_as_a_secret_and_receives_alerts() -> None:
    found = specs()
    am = found["alertmanager"]
    assert am["receives_alerts"] and am["external_egress"]
    assert not any(s["receives_alerts"] for n, s in found.items() if n != "alertmanager")
    assert am["secrets"][0]["target"] == "/run/secrets/alertmanager-config"
    assert am["config"] == []  # never a ConfigMap: the file holds receiver credentials
    assert am["command"] == EXPORTS["alertmanager"]["command"]


def test_extra_hosts_reach_the_container_description() -> None:
    found = specs(overrides={"alertmanager": {"extra_hosts": {"receiver.test": "host-gateway"}}})
    assert found["alertmanager"]["extra_hosts"] == {"receiver.test": "host-gateway"}
    assert specs()["frontend"]["extra_hosts"] == {}
