"""Benchmark of the inference API on loopback: single-record and batch /predict.

Starts the real image as the catalogue runs it (read-only, no capabilities, 1 CPU,
512 MiB, uid 10001, request logging on) with the internal constant endpoint enabled
(ENABLE_BENCHMARK_ENDPOINT=1), publishes it on 127.0.0.1 only, and drives it with wrk.

Single record, 32 connections: POST /predict is measured in the same run, round after
round, as POST /benchmark/constant with the same body (same server, middleware and
transport, no parsing or model) and GET /benchmark/constant; the ratios are the figures
that survive a noisy machine. Batch: POST /predict with 1,000 records per request.

    python benchmarks/api/bench.py            # writes benchmarks/RESULTS-api.md
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
IMAGE = "mlops/inference-api:1.0.0"
NAME = "svc-test-bench-api"
LUA = HERE / "wrk-report.lua"
GOALS = {"throughput_ratio": 0.8, "p99_ratio": 2.0, "batch_rows_per_s": 50_000}


def sh(*cmd: str, timeout: float = 600, check: bool = True, env: dict[str, str] | None = None) -> str:
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env)
    if check and run.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    return run.stdout


def wait_ready(base: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{base}/ready did not answer 200 within {timeout}s")


def wrk(url: str, connections: int, seconds: int, method: str, body: Path | None, threads: int = 2) -> dict[str, Any]:
    env = dict(os.environ, WRK_METHOD=method, WRK_BODY=str(body) if body else "")
    out = sh(
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
        env=env,
        timeout=seconds + 60,
    )
    line = next(line for line in out.splitlines() if line.startswith("{"))
    r = json.loads(line)
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    bad = sum(r["errors"].values())
    if bad:
        raise SystemExit(f"wrk {method} {url}: {r['errors']} errors: the figures would be meaningless")
    return r


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=10, help="duration of each wrk run")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of the single-record comparison")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--batch-rows", type=int, default=1000)
    p.add_argument("--batch-connections", type=int, default=4)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS-api.md")
    args = p.parse_args(argv)
    if not 1 <= args.seconds <= 60 or not 1 <= args.rounds <= 10:
        raise SystemExit("--seconds must be 1..60 and --rounds 1..10 (bounded load)")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    sh(str(ROOT / "scripts" / "build-images.sh"), "inference-api", timeout=1800)

    doc = json.loads((ROOT / "services/inference-api/models/breast-cancer-lr-1.0.0.model.json").read_text())
    record = {f["name"]: f["median"] for f in doc["features"]}
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    single = tmp / "single.json"
    single.write_text(json.dumps(record))
    batch = tmp / "batch.json"
    # Distinct rows: the training medians scaled within the observed ranges.
    rows = []
    for i in range(args.batch_rows):
        k = 0.8 + 0.4 * (i % 101) / 100
        rows.append({f["name"]: min(f["observed_max"], f["median"] * k) for f in doc["features"]})
    batch.write_text(json.dumps({"records": rows}))

    sh("docker", "rm", "-f", NAME, check=False)
    run_opts = [
        "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--user", "10001:10001", "--cpus", "1", "--memory", "512m",
        "-e", "ENABLE_BENCHMARK_ENDPOINT=1", "-e", f"MAX_BATCH_ROWS={max(1000, args.batch_rows)}",
        "-p", "127.0.0.1::8000",
    ]  # fmt: skip
    sh("docker", "run", "-d", "--name", NAME, *run_opts, IMAGE)
    try:
        port = sh("docker", "port", NAME, "8000").splitlines()[0].rsplit(":", 1)[1]
        base = f"http://127.0.0.1:{port}"
        wait_ready(base)
        c, s = args.connections, args.seconds
        # Warm-up (not recorded).
        wrk(base + "/predict", c, 3, "POST", single)
        wrk(base + "/benchmark/constant", c, 3, "POST", single)
        rounds: list[dict[str, dict[str, Any]]] = []
        for _ in range(args.rounds):
            rounds.append(
                {
                    "predict": wrk(base + "/predict", c, s, "POST", single),
                    "constant_post": wrk(base + "/benchmark/constant", c, s, "POST", single),
                    "constant_get": wrk(base + "/benchmark/constant", c, s, "GET", None),
                }
            )
        batch_runs = [wrk(base + "/predict", args.batch_connections, s, "POST", batch) for _ in range(2)]
        cpu = sh("docker", "stats", "--no-stream", "--format", "{{.CPUPerc}} {{.MemUsage}}", NAME).strip()
    finally:
        sh("docker", "rm", "-f", NAME, check=False)
        shutil.rmtree(tmp, ignore_errors=True)

    def med(key: str, f: Any) -> float:
        return statistics.median(f(r[key]) for r in rounds)

    tput_ratio_post = statistics.median(r["predict"]["rps"] / r["constant_post"]["rps"] for r in rounds)
    tput_ratio_get = statistics.median(r["predict"]["rps"] / r["constant_get"]["rps"] for r in rounds)
    p99_ratio_post = statistics.median(
        r["predict"]["latency_us"]["p99"] / r["constant_post"]["latency_us"]["p99"] for r in rounds
    )
    p99_ratio_get = statistics.median(
        r["predict"]["latency_us"]["p99"] / r["constant_get"]["latency_us"]["p99"] for r in rounds
    )
    batch_rows_s = max(b["rps"] * args.batch_rows for b in batch_runs)
    ms = lambda us: f"{us / 1000:.2f}"  # noqa: E731

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    lines = [
        "# Inference API benchmark",
        "",
        f"Measured {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} on this machine ({os.cpu_count()} cores, shared with other jobs),",
        f"image `{IMAGE}` run as the catalogue runs it (read-only, `--cap-drop ALL`, uid 10001,",
        "`--cpus 1 --memory 512m`, one uvicorn process, one JSON log line per request), published on",
        "127.0.0.1, driven by wrk (Debian package) with `benchmarks/api/wrk-report.lua`.",
        "",
        "Command:",
        "",
        "```",
        f"python benchmarks/api/bench.py --seconds {s} --rounds {args.rounds} --connections {c} "
        f"--batch-rows {args.batch_rows} --batch-connections {args.batch_connections}",
        "```",
        "",
        f"## Single record, {c} connections ({args.rounds} alternating rounds of {s} s each; medians)",
        "",
        "| endpoint | req/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
        f"| `POST /predict` (one record) | {med('predict', lambda r: r['rps']):.0f} | "
        f"{ms(med('predict', lambda r: r['latency_us']['p50']))} | {ms(med('predict', lambda r: r['latency_us']['p99']))} |",
        f"| `POST /benchmark/constant` (same body, not parsed) | {med('constant_post', lambda r: r['rps']):.0f} | "
        f"{ms(med('constant_post', lambda r: r['latency_us']['p50']))} | {ms(med('constant_post', lambda r: r['latency_us']['p99']))} |",
        f"| `GET /benchmark/constant` | {med('constant_get', lambda r: r['rps']):.0f} | "
        f"{ms(med('constant_get', lambda r: r['latency_us']['p50']))} | {ms(med('constant_get', lambda r: r['latency_us']['p99']))} |",
        "",
        "| ratio (median of per-round ratios) | vs POST constant | vs GET constant | goal |",
        "|---|---:|---:|---|",
        f"| throughput /predict / constant | {tput_ratio_post:.2f} | {tput_ratio_get:.2f} | >= {GOALS['throughput_ratio']} |",
        f"| p99 /predict / constant | {p99_ratio_post:.2f} | {p99_ratio_get:.2f} | <= {GOALS['p99_ratio']} |",
        "",
        f"Throughput goal: {verdict(tput_ratio_post >= GOALS['throughput_ratio'])} against the POST baseline, "
        f"{verdict(tput_ratio_get >= GOALS['throughput_ratio'])} against GET. "
        f"p99 goal: {verdict(p99_ratio_post <= GOALS['p99_ratio'])} against POST, {verdict(p99_ratio_get <= GOALS['p99_ratio'])} against GET.",
        "",
        "Per round (req/s predict / constant POST / constant GET):",
        "",
        *[
            f"- round {i + 1}: {r['predict']['rps']:.0f} / {r['constant_post']['rps']:.0f} / {r['constant_get']['rps']:.0f}"
            for i, r in enumerate(rounds)
        ],
        "",
        f"## Batch: {args.batch_rows} records per request, {args.batch_connections} connections",
        "",
        "| run | req/s | rows/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
        *[
            f"| {i + 1} | {b['rps']:.1f} | {b['rps'] * args.batch_rows:.0f} | {ms(b['latency_us']['p50'])} | {ms(b['latency_us']['p99'])} |"
            for i, b in enumerate(batch_runs)
        ],
        "",
        f"Best: {batch_rows_s:,.0f} rows/s; goal >= {GOALS['batch_rows_per_s']:,} rows/s: "
        f"{verdict(batch_rows_s >= GOALS['batch_rows_per_s'])}.",
        "",
        f"Container at the end of the run (docker stats): {cpu}.",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    summary = {
        "throughput_ratio_vs_post": tput_ratio_post,
        "throughput_ratio_vs_get": tput_ratio_get,
        "p99_ratio_vs_post": p99_ratio_post,
        "p99_ratio_vs_get": p99_ratio_get,
        "batch_rows_per_s": batch_rows_s,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
