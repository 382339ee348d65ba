"""Rollout benchmark on the local edge host: failed requests during a model rollout and the
rollback after it, under one bounded load through the frontend (HTTPS, API key), the time
from each command to the new version answering, and the bytes a model-only update ships.

    bash scripts/local-edge.sh                 # the local edge host, converged
    python benchmarks/rollout/run.py [--rate 50] [--threads 32]

The load (benchmarks/rollout/load.py) runs on the controller against the host's published
HTTPS port from before the rollout until 10 s after the rollback. Meanwhile
playbooks/model-rollout.yml ships release 1.1.0 (derived from the shipped 1.0.0 by
services/inference-api/training/release.py: another version, the same answers) and
playbooks/model-rollback.yml returns to 1.0.0. Writes benchmarks/RESULTS-rollout.md and
prints the same.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PKI = ROOT / "build/local-edge/pki"
WORK = ROOT / "build/rollout-bench"
SHIPPED = ROOT / "services/inference-api/models/breast-cancer-lr-1.0.0"


def playbook(name: str, *extra: str) -> tuple[float, float, str]:
    """Runs a playbook against inventories/local; returns (start, seconds, output)."""
    start = time.monotonic()
    run = subprocess.run(
        ["ansible-playbook", "-i", "inventories/local", f"playbooks/{name}", *extra],
        cwd=ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.default"},
    )  # fmt: skip
    if run.returncode != 0:
        sys.exit(f"{name} failed:\n{run.stdout[-4000:]}\n{run.stderr[-2000:]}")
    return start, time.monotonic() - start, run.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--port", type=int, default=int(os.environ.get("MLOPS_LOCAL_HTTPS_PORT", "8443")))
    args = parser.parse_args()

    releases = WORK / "releases"
    shutil.rmtree(WORK, ignore_errors=True)
    releases.mkdir(parents=True)
    shutil.copytree(SHIPPED, releases / SHIPPED.name)
    subprocess.run(
        [sys.executable, str(ROOT / "services/inference-api/training/release.py"), "derive", str(SHIPPED),
         "--version", "1.1.0", "--out", str(releases)],
        check=True, capture_output=True,
    )  # fmt: skip
    model = json.loads((SHIPPED / "model.json").read_text())
    record = WORK / "record.json"
    record.write_text(json.dumps({f["name"]: f["median"] for f in model["features"]}))
    shipped_bytes = sum(p.stat().st_size for p in (releases / "breast-cancer-lr-1.1.0").iterdir())

    stop = WORK / "stop"
    load_start = time.monotonic()
    load = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks/rollout/load.py"), "--url", f"https://localhost:{args.port}",
         "--cacert", str(PKI / "ca.crt"), "--api-key-file", str(PKI / "api-key-site"), "--rate", str(args.rate),
         "--threads", str(args.threads), "--stop-file", str(stop), "--record", str(record)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(10)
    source = f"model_release_source_dir={releases}"
    out_start, out_s, _ = playbook("model-rollout.yml", "-e", source, "-e", "mlops_model_version=1.1.0")
    time.sleep(10)
    back_start, back_s, _ = playbook("model-rollback.yml", "-e", source)
    time.sleep(10)
    stop.touch()
    stdout, _ = load.communicate(timeout=600)
    summary = json.loads(stdout.strip().splitlines()[-1])

    versions, switches = summary["versions"], summary["switches"]
    nan = float("nan")
    # The first answer of each version after its command started.
    to_new = next((t for t, v in switches if v == "1.1.0"), nan) - (out_start - load_start)
    to_old = next((t for t, v in switches if v == "1.0.0" and t > back_start - load_start), nan) - (
        back_start - load_start
    )
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    machine = f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    sent = f"{summary['sent']} at {summary['rate']}/s"
    report = f"""# Rollout benchmark (benchmarks/rollout/run.py)

Measured {when}, {machine}, local edge host (inventories/local, Docker connection), load
through the frontend's HTTPS port at {args.rate:g} requests/s, each on a new connection.

| figure | goal | measured |
|---|---|---|
| requests sent during the rollout to 1.1.0 and the rollback to 1.0.0 | at least 10,000 at 50/s or more | {sent} |
| failed requests | 0 | {summary["failed"]} {summary["errors"] or ""} |
| `model-rollout.yml`: command to 1.1.0 answering | reported | {to_new:.1f} s (the command took {out_s:.1f} s) |
| `model-rollback.yml`: command to 1.0.0 answering again | reported | {to_old:.1f} s (the command took {back_s:.1f} s) |
| bytes a model-only update ships (release 1.1.0: manifest, model, no image) | reported | {shipped_bytes:,} bytes |

Answers by version: {json.dumps(versions)}; the answering version changed at {json.dumps(switches)}
(seconds since the load started; the rollout command started at {out_start - load_start:.1f} s,
the rollback at {back_start - load_start:.1f} s).
"""
    (ROOT / "benchmarks/RESULTS-rollout.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
