"""checkov on everything the stack deploys: the Kubernetes manifests, the Dockerfiles of the
services, and the rendered Compose project.

checkov runs in a network namespace of its own when the test can create one (root, `unshare`):
it otherwise tries to reach its vendor's API for guidelines, and tests here talk to nothing
but 127.0.0.1. `--skip-download` and BC_SKIP_MAPPING keep it offline in any case.

checkov has no framework that reads Compose files (its list: `checkov --help`, --framework);
the Compose project is held to the same policy by tests in test_compose_policy.py, and here
only checkov's secrets scan runs on it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from k8s_rendering import REPO, Rendering


def _offline_prefix() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare and os.geteuid() == 0:
        probe = subprocess.run([unshare, "--net", "true"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [unshare, "--net"]
    return []


def run_checkov(checkov: str, *args: str) -> dict[str, Any]:
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE", CKV_SKIP_PACKAGE_UPDATE_CHECK="true", LOG_LEVEL="ERROR")
    run = subprocess.run(
        [*_offline_prefix(), checkov, "--skip-download", "--output", "json", "--compact", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert run.stdout.strip(), f"checkov printed nothing (rc {run.returncode}):\n{run.stderr[-3000:]}"
    report = json.loads(run.stdout)
    # One framework gives an object, several a list; an empty scan gives a bare summary.
    reports = report if isinstance(report, list) else [report]
    return {
        "passed": sum(r.get("summary", r).get("passed", 0) for r in reports),
        "failed": [c for r in reports for c in r.get("results", {}).get("failed_checks", [])],
        "skipped": [c for r in reports for c in r.get("results", {}).get("skipped_checks", [])],
        "parsing_errors": sum(r.get("summary", r).get("parsing_errors", 0) for r in reports),
        "resources": sum(r.get("summary", r).get("resource_count", 0) for r in reports),
    }


def describe(checks: list[dict[str, Any]]) -> str:
    return "\n".join(f"{c['check_id']} {c['resource']} {c.get('file_path')}: {c.get('check_name')}" for c in checks)


def test_checkov_passes_the_kubernetes_manifests(prod: Rendering, checkov: str) -> None:
    result = run_checkov(checkov, "--framework", "kubernetes", "--directory", str(prod.k8s))
    assert result["parsing_errors"] == 0
    assert result["resources"] >= 30, result
    assert result["passed"] >= 300, result
    assert not result["failed"], describe(result["failed"])
    # Every skip carries its reason in the manifest (annotation checkov.io/skipN: ID=reason).
    allowed = {"CKV_K8S_40", "CKV_K8S_38"}
    for check in result["skipped"]:
        assert check["check_id"] in allowed, describe([check])
        reason = (check.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason) > 20, f"skip without a justification: {describe([check])}"


def test_checkov_fails_a_manifest_that_breaks_the_policy(prod: Rendering, checkov: str, tmp_path: Path) -> None:
    """The scan above can fail: the same Deployment, privileged and with a tag, fails it."""
    text = (prod.k8s / "mlops-01-deployment.yaml").read_text()
    bad = text.replace("privileged: false", "privileged: true", 1)
    assert bad != text
    (tmp_path / "bad.yaml").write_text(bad)
    result = run_checkov(checkov, "--framework", "kubernetes", "--directory", str(tmp_path))
    assert "CKV_K8S_16" in {c["check_id"] for c in result["failed"]}


def test_checkov_passes_the_service_dockerfiles(checkov: str) -> None:
    dockerfiles = sorted(p for p in (REPO / "services").glob("*/Dockerfile*") if p.is_file())
    assert dockerfiles, "no Dockerfile under services/"
    args: list[str] = []
    for path in dockerfiles:
        args += ["--file", str(path)]
    result = run_checkov(checkov, "--framework", "dockerfile", *args)
    assert result["parsing_errors"] == 0
    assert result["passed"] > 0, result
    assert not result["failed"], describe(result["failed"])
    for check in result["skipped"]:
        reason = (check.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason) > 10, f"skip without a justification: {describe([check])}"


def test_checkov_has_no_compose_framework(checkov: str) -> None:
    """If a checkov release adds one, this fails: then scan compose.yml with it here."""
    run = subprocess.run([checkov, "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert "kubernetes" in run.stdout and "dockerfile" in run.stdout
    assert "compose" not in run.stdout.lower()


def test_checkov_finds_no_secret_in_the_compose_project(edge: Rendering, checkov: str) -> None:
    result = run_checkov(checkov, "--framework", "secrets", "--file", str(edge.compose_file))
    assert not result["failed"], describe(result["failed"])
