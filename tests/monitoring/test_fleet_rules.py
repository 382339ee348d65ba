"""Fleet alert rules (roles/prometheus/templates/rules/mlops-fleet.yml.j2, rendered by the real
role with its defaults): promtool checks and unit tests.

Each alert has a case where it fires and a case where it stays silent. The series are the ones
plugins/callback/run_metrics.py writes, with the labels node_exporter's scrape adds.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import RUN_METRIC, Render, RenderFn, run_metric_names

HOST = 'instance="edge-1:9100", job="node-exporter"'
LABELS = {"instance": "edge-1:9100", "job": "node-exporter"}
HOUR = 3600


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    extra = "".join(f', {k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{HOST}{extra}}}", "values": values}


def case(alertname: str, eval_time: str, *alerts: dict[str, Any]) -> dict[str, Any]:
    return {"eval_time": eval_time, "alertname": alertname, "exp_alerts": list(alerts)}


def fired(severity: str, summary: str, description: str, **labels: str) -> dict[str, Any]:
    return {
        "exp_labels": {"severity": severity, **LABELS, **labels},
        "exp_annotations": {"summary": summary, "description": description},
    }


def unfinished(mode: str) -> dict[str, Any]:
    return fired(
        "critical",
        "Ansible run started but never finished",
        f"A {mode} run started on edge-1:9100 more than 1 h ago and never recorded its end: it failed on"
        " that host (pushed runs record the end only for hosts that reach the last play), lost the host, or was"
        " killed.",
        mode=mode,
    )


# Timestamps are written in seconds since the epoch; promtool's clock starts at 0, so a run that
# ended "at 600 s" is 600. Intervals are 1m: values "600x120" hold for two hours.
TESTS: list[dict[str, Any]] = [
    # Drift: a check run found 3 tasks to change; the next check (after a pull run) finds none.
    {
        "interval": "1m",
        "input_series": [series("mlops_ansible_drift_tasks", "3x30 0x30")],
        "alert_rule_test": [
            case("MlopsFleetDriftDetected", "2m"),
            case(
                "MlopsFleetDriftDetected",
                "10m",
                fired(
                    "warning",
                    "Host drifted from its desired state",
                    "The last check-mode run on edge-1:9100 found 3 task(s) that would change: the host differs"
                    " from what its playbook describes (journalctl -u mlops-pull-check.service shows the diff).",
                ),
            ),
            case("MlopsFleetDriftDetected", "50m"),
        ],
    },
    # Failed run: the pull run fails, the check run keeps succeeding; then the pull run recovers.
    {
        "interval": "1m",
        "input_series": [
            series("mlops_ansible_run_success", "1x10 0x30 1x20", mode="pull"),
            series("mlops_ansible_run_success", "1x60", mode="check"),
        ],
        "alert_rule_test": [
            case("MlopsFleetRunFailed", "5m"),
            case(
                "MlopsFleetRunFailed",
                "20m",
                fired(
                    "critical",
                    "Ansible run failed",
                    "The last pull run on edge-1:9100 failed (exit status, failed task or refused commit:"
                    " journalctl -u mlops-pull.service for pull runs).",
                    mode="pull",
                ),
            ),
            case("MlopsFleetRunFailed", "55m"),
        ],
    },
    # Unfinished: a pushed run started at 600 s and never recorded its end (the host failed).
    {
        "interval": "1m",
        "input_series": [
            series("mlops_ansible_run_start_timestamp_seconds", "600x180", mode="push"),
            series("mlops_ansible_run_end_timestamp_seconds", "300x180", mode="push"),
            # The check runs of the same host start and end normally.
            series("mlops_ansible_run_start_timestamp_seconds", "600x180", mode="check"),
            series("mlops_ansible_run_end_timestamp_seconds", "700x180", mode="check"),
        ],
        "alert_rule_test": [
            case("MlopsFleetRunUnfinished", "30m"),
            case("MlopsFleetRunUnfinished", "80m", unfinished("push")),
        ],
    },
    # Unfinished, first run ever: a start and no end at all.
    {
        "interval": "1m",
        "input_series": [series("mlops_ansible_run_start_timestamp_seconds", "60x120", mode="pull")],
        "alert_rule_test": [
            case("MlopsFleetRunUnfinished", "50m"),
            case("MlopsFleetRunUnfinished", "70m", unfinished("pull")),
        ],
    },
    # No successful run: the last push succeeded at 600 s, the pulls fail since; a day later the
    # alert fires (one alert per host, whatever the mode).
    {
        "interval": "10m",
        "input_series": [
            series("mlops_ansible_run_last_success_timestamp_seconds", "600x200", mode="push"),
            series("mlops_ansible_run_last_success_timestamp_seconds", "300x200", mode="pull"),
            # A successful check run does not count as a converge.
            series("mlops_ansible_run_last_success_timestamp_seconds", "0+600x200", mode="check"),
        ],
        "alert_rule_test": [
            case("MlopsFleetNoSuccessfulRun", "23h"),
            case(
                "MlopsFleetNoSuccessfulRun",
                "25h",
                fired(
                    "warning",
                    "Host not converged for 24 h",
                    "No push or pull run has succeeded on edge-1:9100 for more than 24 h (last success"
                    " 1d 0h 50m 0s ago).",
                ),
            ),
        ],
    },
    # No successful run, silent: pull runs keep succeeding (their last success moves on).
    {
        "interval": "10m",
        "input_series": [series("mlops_ansible_run_last_success_timestamp_seconds", "0+600x200", mode="pull")],
        "alert_rule_test": [case("MlopsFleetNoSuccessfulRun", "30h")],
    },
]


@pytest.fixture(scope="module")
def rules(default_render: Render) -> Path:
    """The fleet rules as the prometheus role renders them with its defaults (edge: node-exporter)."""
    return default_render.prometheus / "rules" / "mlops-fleet.yml"


@pytest.fixture
def rules_dir(tmp_path: Path, rules: Path) -> Path:
    shutil.copy(rules, tmp_path / "mlops-fleet.yml")
    (tmp_path / "fleet_test.yml").write_text(
        yaml.safe_dump({"rule_files": ["mlops-fleet.yml"], "evaluation_interval": "1m", "tests": TESTS})
    )
    return tmp_path


def alerts(rules: Path) -> set[str]:
    doc = yaml.safe_load(rules.read_text())
    return {rule["alert"] for group in doc["groups"] for rule in group["rules"]}


def test_the_rules_pass_promtool_check(promtool: str, rules: Path) -> None:
    run = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_promtool_unit_tests_pass(promtool: str, rules_dir: Path) -> None:
    run = subprocess.run(
        [promtool, "test", "rules", "fleet_test.yml"], cwd=rules_dir, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_every_alert_has_a_firing_and_a_silent_case(rules: Path) -> None:
    cases = [c for test in TESTS for c in test["alert_rule_test"]]
    assert {c["alertname"] for c in cases if c["exp_alerts"]} == alerts(rules)
    assert {c["alertname"] for c in cases if not c["exp_alerts"]} == alerts(rules)
    assert {"MlopsFleetDriftDetected", "MlopsFleetRunFailed", "MlopsFleetNoSuccessfulRun"} <= alerts(rules)


def test_the_rules_use_only_the_metrics_the_writer_names(rules: Path) -> None:
    used = set(RUN_METRIC.findall(rules.read_text()))
    assert used, "no metric in the rules"
    assert used <= run_metric_names(), sorted(used - run_metric_names())


def test_thresholds_come_from_the_role_variables(render: RenderFn) -> None:
    result = render(
        {
            "monitoring_roles": ["prometheus"],
            "prometheus_alert_fleet_drift_for": "15m",
            "prometheus_alert_fleet_unfinished_after_seconds": 7200,
            "prometheus_alert_fleet_no_success_after_seconds": 172800,
        }
    )
    assert result.returncode == 0, result.output[-3000:]
    doc = yaml.safe_load((result.prometheus / "rules" / "mlops-fleet.yml").read_text())
    by_name = {rule["alert"]: rule for group in doc["groups"] for rule in group["rules"]}
    assert by_name["MlopsFleetDriftDetected"]["for"] == "15m"
    assert "> 7200)" in by_name["MlopsFleetRunUnfinished"]["expr"]
    assert "more than 2 h ago" in by_name["MlopsFleetRunUnfinished"]["annotations"]["description"]
    assert by_name["MlopsFleetNoSuccessfulRun"]["expr"].endswith("> 172800")
    assert by_name["MlopsFleetNoSuccessfulRun"]["annotations"]["summary"] == "Host not converged for 48 h"


def test_no_fleet_rules_without_node_exporter(render: RenderFn) -> None:
    result = render({"monitoring_roles": ["prometheus"], "mlops_disabled_services": ["node-exporter"]})
    assert result.returncode == 0, result.output[-3000:]
    assert not (result.prometheus / "rules" / "mlops-fleet.yml").exists()
    config = yaml.safe_load((result.prometheus / "prometheus.yml").read_text())
    assert config["rule_files"] == ["rules/mlops-alerts.yml"], "the collection's own alerts are still loaded"
