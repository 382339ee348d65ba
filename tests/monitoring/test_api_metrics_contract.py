"""The names the alert rules and the dashboard query are the names the inference API exports.

The API's own metrics registry (services/inference-api, mlops_inference.observability) is
exercised once and its exposition parsed; the roles' variables must match it.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import pytest
import yaml
from conftest import ROOT, Render, run_metric_names

API_SRC = ROOT / "services/inference-api/src"
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{")


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Sample name -> label names, from the API's real registry."""
    sys.path.insert(0, str(API_SRC))
    try:
        from mlops_inference.observability import Metrics
        from prometheus_client import generate_latest
        from prometheus_client.parser import text_string_to_metric_families
    finally:
        sys.path.remove(str(API_SRC))
    m = Metrics()
    m.requests.labels("POST", "/predict", "200").inc()
    m.latency.labels("POST", "/predict", "200").observe(0.01)
    m.predictions.labels("1.0.0", "benign").inc()
    m.model_info.labels("breast-cancer-lr", "1.0.0", "0" * 64).set(1)  # a gauge of 1: works with workers
    m.model_ready.set(1)
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(generate_latest(m.registry).decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


def role_defaults(role: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / f"roles/{role}/defaults/main.yml").read_text())


@pytest.mark.parametrize("role", ["prometheus", "grafana"])
def test_role_metric_names_are_exported_by_the_api(role: str, exported: dict[str, set[str]]) -> None:
    defaults = role_defaults(role)
    metrics = defaults[f"{role}_api_metrics"]
    labels = defaults[f"{role}_api_labels"]
    for key, name in metrics.items():
        assert name in exported, f"{role}_api_metrics.{key} = {name} is not exported by the API"
    request_labels = exported[metrics["requests_total"]]
    for key in ("endpoint", "method", "status"):
        assert labels[key] in request_labels, f"{role}_api_labels.{key}"
        assert labels[key] in exported[metrics["request_duration_bucket"]]
    assert labels["class"] in exported[metrics["predictions_total"]]
    if role == "grafana":
        assert {labels["model_name"], labels["model_version"]} <= exported[metrics["model_info"]]


def test_both_roles_agree_on_the_names() -> None:
    prometheus, grafana = role_defaults("prometheus"), role_defaults("grafana")
    assert prometheus["prometheus_api_metrics"] == grafana["grafana_api_metrics"]
    shared = prometheus["prometheus_api_labels"]
    assert {k: grafana["grafana_api_labels"][k] for k in shared} == shared
    assert prometheus["prometheus_api_job"] == grafana["grafana_api_job"]
    assert prometheus["prometheus_api_probe_endpoints"] == grafana["grafana_api_probe_endpoints"]


def rendered_selectors(default_render: Render) -> set[str]:
    rules = yaml.safe_load((default_render.prometheus / "rules/mlops-alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    board = json.loads((default_render.grafana / "dashboards/inference-api.json").read_text())
    exprs += [t["expr"] for p in board["panels"] for t in p["targets"]]
    return {name for e in exprs for name in SELECTOR.findall(e)}


def test_rules_and_dashboard_query_only_exported_series(default_render: Render, exported: dict[str, set[str]]) -> None:
    queried = rendered_selectors(default_render)
    # `up` is Prometheus' own series for every scrape target; the dashboard's fleet panels read
    # the run metrics node-exporter exports (checked against their writer).
    assert queried - {"up"} - run_metric_names() <= set(exported), queried - set(exported)
    assert len(queried) >= 6


def test_probe_endpoints_are_routes_of_the_api() -> None:
    source = (API_SRC / "mlops_inference/app.py").read_text()
    for path in role_defaults("prometheus")["prometheus_api_probe_endpoints"]:
        assert f'"{path}"' in source, path
