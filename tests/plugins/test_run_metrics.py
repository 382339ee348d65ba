"""Run and drift metrics (plugins/callback/run_metrics.py): rendering, the wrapper, the callback.

The wrapper and the callback run for real here: ansible-playbook on this machine with a local
connection and a playbook that touches only a temporary directory (a few seconds each).
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "plugins/callback/run_metrics.py"
_spec = importlib.util.spec_from_file_location("run_metrics", PLUGIN)
assert _spec and _spec.loader
rm = importlib.util.module_from_spec(_spec)
sys.modules["run_metrics"] = rm
_spec.loader.exec_module(rm)

ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")
SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def samples(path: Path) -> dict[str, float]:
    """{'name{labels}': value} of a textfile."""
    found = {}
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line:
            continue
        m = SAMPLE.match(line)
        assert m, line
        key = m["name"] + (f"{{{m['labels']}}}" if m["labels"] else "")
        found[key] = float(m["value"])
    return found


def env_without_ansible() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MLOPS_RUN_METRICS"))}
    env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    return env


def playbook(tmp_path: Path, *tasks: str) -> Path:
    body = "\n".join(tasks)
    path = tmp_path / "site.yml"
    path.write_text(
        f"- name: Test\n  hosts: all\n  gather_facts: false\n  tasks:\n{body}\n",
    )
    return path


def copy_task(tmp_path: Path, content: str = "managed") -> str:
    return (
        f"    - name: Manage a file\n      ansible.builtin.copy:\n        content: {content}\n"
        f"        dest: {tmp_path}/managed\n        mode: '0644'\n"
    )


FAIL_TASK = "    - name: Fail\n      ansible.builtin.fail:\n        msg: broken\n"


def local_command(path: Path, *args: str) -> list[str]:
    return [ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", "-e",
            f"ansible_python_interpreter={sys.executable}", *args, str(path)]  # fmt: skip


def wrap(mode: str, directory: Path, command: list[str], monkeypatch: pytest.MonkeyPatch, **kw: object) -> int:
    for key, value in env_without_ansible().items():
        monkeypatch.setenv(key, value)
    for key in [k for k in os.environ if k.startswith(("ANSIBLE_CALLBACK", "MLOPS_RUN_METRICS"))]:
        monkeypatch.delenv(key)
    return rm.run(mode, directory, command, **kw)


# ---- rendering -----------------------------------------------------------------------------


def test_every_metric_has_help_type_and_documentation() -> None:
    doc = (ROOT / "docs/fleet.md").read_text()
    for metric in rm.METRICS:
        assert metric.name.startswith("mlops_ansible_"), metric
        assert metric.help and metric.type == "gauge"
        assert f"`{metric.name}`" in doc, f"{metric.name} is not documented in docs/fleet.md"


def test_a_successful_check_run_reports_its_drift() -> None:
    text = rm.render_result(
        rm.RunResult(mode="check", success=True, start=100.0, end=130.5, exit_code=0, tasks={"changed": 2}, check=True)
    )
    assert 'mlops_ansible_run_success{mode="check"} 1' in text
    assert 'mlops_ansible_run_duration_seconds{mode="check"} 30.5' in text
    assert 'mlops_ansible_run_last_success_timestamp_seconds{mode="check"} 130.5' in text
    assert "mlops_ansible_drift_tasks 2\n" in text
    assert 'mlops_ansible_run_tasks{mode="check",result="changed"} 2' in text


@pytest.mark.parametrize("tasks", [None, {"changed": 0, "failed": 1}])
def test_a_failed_check_run_never_reports_no_drift(tasks: dict[str, int] | None) -> None:
    text = rm.render_result(
        rm.RunResult(mode="check", success=False, end=10.0, tasks=tasks, last_success=5.0, check=True)
    )
    assert 'mlops_ansible_run_success{mode="check"} 0' in text
    assert "mlops_ansible_drift_tasks" not in text
    assert 'mlops_ansible_run_last_success_timestamp_seconds{mode="check"} 5' in text


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="mode is 'cron'"):
        rm.render_start("cron", 1.0)


def test_files_are_written_atomically_and_readable_by_the_collector(tmp_path: Path) -> None:
    rm.record_start(tmp_path, "push", 42.0)
    path = tmp_path / "mlops_ansible_push_start.prom"
    assert samples(path) == {'mlops_ansible_run_start_timestamp_seconds{mode="push"}': 42.0}
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "a temporary file was left behind"


def test_the_text_passes_promtool_when_it_is_installed(tmp_path: Path) -> None:
    promtool = os.environ.get("MLOPS_PROMTOOL") or shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool not installed (Debian's prometheus package)")
    text = rm.render_start("pull", 1.0) + rm.render_result(
        rm.RunResult(mode="check", success=True, start=1.0, end=2.0, exit_code=0, tasks={"changed": 1}, check=True)
    )
    run = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


# ---- the wrapper of local runs -------------------------------------------------------------


def test_a_command_that_fails_before_any_playbook_is_a_failed_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "textfile"
    rm.record_result(out, rm.RunResult(mode="pull", success=True, end=7.0))
    code = wrap("pull", out, ["sh", "-c", "echo refused >&2; exit 3"], monkeypatch)
    assert code == 3
    got = samples(out / "mlops_ansible_pull.prom")
    assert got['mlops_ansible_run_success{mode="pull"}'] == 0
    assert got['mlops_ansible_run_exit_code{mode="pull"}'] == 3
    assert got['mlops_ansible_run_last_success_timestamp_seconds{mode="pull"}'] == 7.0
    assert not any(k.startswith("mlops_ansible_run_tasks") for k in got), "no playbook ran: counts are unknown"
    assert (
        got['mlops_ansible_run_end_timestamp_seconds{mode="pull"}']
        >= samples(out / "mlops_ansible_pull_start.prom")['mlops_ansible_run_start_timestamp_seconds{mode="pull"}']
    )


def test_a_run_that_exits_zero_without_a_playbook_is_not_a_success(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert wrap("pull", tmp_path, ["true"], monkeypatch) == 1
    assert samples(tmp_path / "mlops_ansible_pull.prom")['mlops_ansible_run_success{mode="pull"}'] == 0


def test_a_held_lock_skips_the_run_without_a_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = tmp_path / "converge.lock"
    with open(lock, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        code = wrap("check", tmp_path / "out", ["true"], monkeypatch, lock=lock, lock_wait=1)
    assert code == rm.EX_TEMPFAIL
    assert not (tmp_path / "out").exists()


def test_pull_run_counts_changes_then_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "textfile"
    book = playbook(tmp_path, copy_task(tmp_path))
    for expected_changed in (1, 0):
        assert wrap("pull", out, local_command(book), monkeypatch, lock=tmp_path / "l", lock_wait=5) == 0
        got = samples(out / "mlops_ansible_pull.prom")
        assert got['mlops_ansible_run_success{mode="pull"}'] == 1
        assert got['mlops_ansible_run_tasks{mode="pull",result="changed"}'] == expected_changed
        assert got['mlops_ansible_run_tasks{mode="pull",result="ok"}'] == 1
        assert "mlops_ansible_drift_tasks" not in got


def test_check_run_reports_drift_and_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "textfile"
    (tmp_path / "managed").write_text("edited by hand")
    book = playbook(tmp_path, copy_task(tmp_path))
    assert wrap("check", out, [*local_command(book, "--check", "--diff")], monkeypatch) == 0
    got = samples(out / "mlops_ansible_check.prom")
    assert got["mlops_ansible_drift_tasks"] == 1
    assert (tmp_path / "managed").read_text() == "edited by hand"


def test_failing_playbook_is_a_failed_run_with_its_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "textfile"
    book = playbook(tmp_path, copy_task(tmp_path), FAIL_TASK)
    code = wrap("check", out, [*local_command(book, "--check")], monkeypatch)
    assert code != 0
    got = samples(out / "mlops_ansible_check.prom")
    assert got['mlops_ansible_run_success{mode="check"}'] == 0
    assert got['mlops_ansible_run_tasks{mode="check",result="failed"}'] == 1
    assert "mlops_ansible_drift_tasks" not in got, "a failed check run must not report its drift"


# ---- pushed runs: playbooks/run-metrics-*.yml with the callback on the controller -----------


def pushed(tmp_path: Path, *args: str, callback: bool = True) -> subprocess.CompletedProcess[str]:
    work = tmp_path / "work.yml"
    work.write_text(
        f"- name: Start\n  ansible.builtin.import_playbook: {ROOT}/playbooks/run-metrics-start.yml\n"
        f"- name: Work\n  hosts: all\n  gather_facts: false\n  tasks:\n{copy_task(tmp_path)}\n"
        f"- name: End\n  ansible.builtin.import_playbook: {ROOT}/playbooks/run-metrics-end.yml\n"
    )
    env = env_without_ansible()
    # The project's ansible.cfg enables the callback: each case names the callbacks it runs.
    enabled = "run_metrics" if callback else "ansible.posix.profile_tasks"
    env.update(ANSIBLE_CALLBACK_PLUGINS=str(PLUGIN.parent), ANSIBLE_CALLBACKS_ENABLED=enabled)
    command = local_command(work, "-e", "ansible_become=false", "-e", f"mlops_run_metrics_dir={tmp_path}/out", *args)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_a_pushed_run_records_start_result_and_counts(tmp_path: Path) -> None:
    run = pushed(tmp_path)
    assert run.returncode == 0, run.stdout[-3000:]
    got = samples(tmp_path / "out/mlops_ansible_push.prom")
    assert got['mlops_ansible_run_success{mode="push"}'] == 1
    assert got['mlops_ansible_run_tasks{mode="push",result="changed"}'] == 1
    start = samples(tmp_path / "out/mlops_ansible_push_start.prom")
    assert (
        start['mlops_ansible_run_start_timestamp_seconds{mode="push"}']
        <= (got['mlops_ansible_run_end_timestamp_seconds{mode="push"}'])
    )
    assert "changed=1 " in run.stdout, "the metric plays must report no change of their own"


def test_a_pushed_check_run_records_drift(tmp_path: Path) -> None:
    (tmp_path / "managed").write_text("edited by hand")
    run = pushed(tmp_path, "--check")
    assert run.returncode == 0, run.stdout[-3000:]
    assert samples(tmp_path / "out/mlops_ansible_check.prom")["mlops_ansible_drift_tasks"] == 1


def test_without_the_callback_a_pushed_run_records_no_counts(tmp_path: Path) -> None:
    run = pushed(tmp_path, callback=False)
    assert run.returncode == 0, run.stdout[-3000:]
    got = samples(tmp_path / "out/mlops_ansible_push.prom")
    assert got['mlops_ansible_run_success{mode="push"}'] == 1
    assert not any(k.startswith("mlops_ansible_run_tasks") for k in got)
