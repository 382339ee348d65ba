"""The site's own rules (prometheus_extra_rules) reach their rules file, pass promtool, and are
unit-testable like the collection's alerts; malformed groups are refused naming the variable."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import HERE, Render, RenderFn, run_playbook

RULES = [
    {
        "name": "site",
        "rules": [
            {
                "alert": "SiteAlwaysFiring",
                "expr": "vector(1)",
                "for": "10s",
                "labels": {"severity": "warning"},
                "annotations": {"summary": "A rule that always fires ({{ $value }})"},
            }
        ],
    }
]


# Prometheus's own templates ({{ $value }}) in an inventory are marked !unsafe, or Ansible
# would read them as Jinja (docs/alerting.md): the rules come from a vars file, as from a
# site's group_vars.
VARS_FILE = """
prometheus_extra_rules:
  - name: site
    rules:
      - alert: SiteAlwaysFiring
        expr: vector(1)
        for: 10s
        labels: {severity: warning}
        annotations:
          summary: !unsafe "A rule that always fires ({{ $value }})"
"""


def render_site_rules(tmp_path: Path) -> Render:
    varsfile = tmp_path / "site.yml"
    varsfile.write_text(VARS_FILE)
    directory = tmp_path / "render"
    directory.mkdir()
    run = run_playbook(
        HERE / "render.yml",
        {"monitoring_render_dir": str(directory), "monitoring_roles": ["prometheus"]},
        args=["-e", f"@{varsfile}"],
    )
    return Render(directory, run.returncode, run.output)


def test_site_rules_are_rendered_beside_the_collections_and_promtool_accepts_them(
    tmp_path: Path, promtool: str
) -> None:
    result = render_site_rules(tmp_path)
    assert result.returncode == 0, result.output[-3000:]
    prom = yaml.safe_load((result.prometheus / "prometheus.yml").read_text())
    assert prom["rule_files"] == ["rules/mlops-alerts.yml", "rules/mlops-fleet.yml", "rules/site-rules.yml"]
    rules = yaml.safe_load((result.prometheus / "rules/site-rules.yml").read_text())
    assert rules == {"groups": RULES}
    check = subprocess.run(
        [promtool, "check", "rules", str(result.prometheus / "rules/site-rules.yml")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    # The Prometheus template syntax in annotations survives the Jinja rendering.
    assert "{{ $value }}" in (result.prometheus / "rules/site-rules.yml").read_text()


def test_site_rules_fire_in_a_promtool_unit_test(tmp_path: Path, promtool: str) -> None:
    result = render_site_rules(tmp_path)
    assert result.returncode == 0, result.output[-3000:]
    test = {
        "rule_files": ["site-rules.yml"],
        "evaluation_interval": "5s",
        "tests": [
            {
                "interval": "5s",
                "input_series": [],
                "alert_rule_test": [
                    {"eval_time": "5s", "alertname": "SiteAlwaysFiring", "exp_alerts": []},
                    {
                        "eval_time": "15s",
                        "alertname": "SiteAlwaysFiring",
                        "exp_alerts": [
                            {"exp_labels": {"severity": "warning"},
                             "exp_annotations": {"summary": "A rule that always fires (1)"}}
                        ],
                    },
                ],
            }
        ],
    }  # fmt: skip
    path = result.prometheus / "rules" / "site_test.yml"
    path.write_text(yaml.safe_dump(test))
    run = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize(
    "rules",
    [
        [{"rules": []}],
        [{"name": "a", "rules": "vector(1)"}],
        [{"name": "a", "rules": [{"alert": "X"}]}],
        [{"name": "a", "rules": [{"expr": "vector(1)"}]}],
        [{"name": "a", "rules": []}, {"name": "a", "rules": []}],
    ],
)
def test_malformed_site_rules_are_refused(render: RenderFn, rules: list[dict[str, Any]]) -> None:
    result = render({"prometheus_extra_rules": rules, "monitoring_roles": ["prometheus"]})
    assert result.returncode != 0
    assert "prometheus_extra_rules must be a list of rule groups" in " ".join(result.output.split())
