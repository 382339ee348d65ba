"""Alert rules: promtool unit tests (rules_test.yml) and their coverage of every alert."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml
from conftest import HERE, Render, RenderFn

UNIT_TESTS = HERE / "rules_test.yml"


def run_unit_tests(promtool: str, prometheus_dir: Path) -> subprocess.CompletedProcess[str]:
    # rule_files in the unit-test file is relative to it: put it beside the rendered rules.
    shutil.copy(UNIT_TESTS, prometheus_dir / "rules_test.yml")
    return subprocess.run(
        [promtool, "test", "rules", "rules_test.yml"],
        cwd=prometheus_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def alerts(render: Render) -> set[str]:
    rules = yaml.safe_load((render.prometheus / "rules/mlops-alerts.yml").read_text())
    return {rule["alert"] for group in rules["groups"] for rule in group["rules"]}


def test_the_four_required_alerts_exist(default_render: Render) -> None:
    assert {
        "MlopsInferenceApiDown",
        "MlopsInferenceApiHighErrorRate",
        "MlopsInferenceApiHighLatency",
        "MlopsModelNotReady",
    } <= alerts(default_render)


def test_every_alert_has_a_firing_and_a_silent_case(default_render: Render) -> None:
    cases = [case for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    firing = {c["alertname"] for c in cases if c["exp_alerts"]}
    silent = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert alerts(default_render) == firing
    assert alerts(default_render) == silent


def test_promtool_unit_tests_pass(default_render: Render, promtool: str) -> None:
    run = run_unit_tests(promtool, default_render.prometheus)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_thresholds_come_from_the_variables(render: RenderFn, promtool: str) -> None:
    # With looser thresholds the same inputs must no longer fire: the unit tests then fail
    # exactly on the error rate and latency cases.
    result = render(
        {
            "prometheus_alert_error_rate_ratio": 0.2,
            "prometheus_alert_latency_seconds": 2,
            "monitoring_roles": ["prometheus"],
        }
    )
    assert result.returncode == 0, result.output[-3000:]
    run = run_unit_tests(promtool, result.prometheus)
    assert run.returncode != 0
    report = run.stdout + run.stderr
    failed = {line.split(",")[0].split(":")[1].strip() for line in report.splitlines() if "alertname:" in line}
    assert failed == {"MlopsInferenceApiHighErrorRate", "MlopsInferenceApiHighLatency"}, report
