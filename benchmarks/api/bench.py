"""Benchmark of the inference API on loopback: single-record and batch /predict.

Starts the real image as the catalogue runs it (read-only, no capabilities, 1 CPU,
512 MiB, uid 10001, one uvicorn worker, request logging on) with the internal constant
endpoints enabled (ENABLE_BENCHMARK_ENDPOINT=1), publishes it on 127.0.0.1 only, and
drives it with wrk.

Single record, 32 connections: POST /predict is measured in the same run, round after
round, alternating with GET /benchmark/constant (same server, middleware, routing and
response class, no body and no work) and POST /benchmark/constant (the same body, read
and discarded); the ratios are the figures that survive a noisy machine.

Batch: POST /predict with 1,000 records per request, alternating with the in-process
limit: in a container of the same image (same Python, same libraries, 1 CPU), the same
body parsed with the fastest JSON parser in the image (orjson) into a matrix, plus one
matrix product; CPU per row of the server (from the container's cgroup) is compared
with that limit.

Idle memory: the three images of the stack started side by side as the catalogue runs
them, left idle, then their cgroups' memory (what `docker stats` shows) and their
processes' resident sets.

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
NAME = "perf-bench-api"
LUA = HERE / "wrk-report.lua"
GOALS = {"throughput_ratio": 0.8, "p99_ratio": 2.0, "batch_cpu_ratio": 2.0, "idle_mib": 300}
FRONTEND = "mlops/frontend:1.0.0"
PROMETHEUS = "mlops/prometheus:2.53"

# The in-process limit of a batch, run in the API image: parse the body with orjson, one
# matrix of the thirty features in the model's order, one matrix product. Prints the best
# (least disturbed) CPU time per row over the repeats, in microseconds.
LIMIT_CODE = """
import json, operator, sys, time
import numpy as np, orjson
from mlops_inference.schemas import FEATURES
body = open(sys.argv[1], "rb").read()
weights = np.linspace(-1.0, 1.0, len(FEATURES))
values = operator.itemgetter(*FEATURES)
def once():
    records = orjson.loads(body)["records"]
    x = np.array(list(map(values, records)), dtype=np.float64)
    return x @ weights, len(records)
once()
best = []
for _ in range(int(sys.argv[2])):
    t0 = time.process_time()
    _, n = once()
    best.append((time.process_time() - t0) * 1e6 / n)
best.sort()
print(json.dumps({"best_us_per_row": best[0], "median_us_per_row": best[len(best) // 2]}))
"""


def sample_bodies(doc: dict[str, Any], batch_rows: int) -> tuple[bytes, bytes]:
    """The request bodies: one record (every feature at its training median) and a batch of
    distinct rows (the training medians scaled within the observed ranges)."""
    record = {f["name"]: f["median"] for f in doc["features"]}
    rows = []
    for i in range(batch_rows):
        k = 0.8 + 0.4 * (i % 101) / 100
        rows.append({f["name"]: min(f["observed_max"], f["median"] * k) for f in doc["features"]})
    return json.dumps(record).encode(), json.dumps({"records": rows}).encode()


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


def cpu_counter(container_id: str) -> Path | None:
    """The file that counts the container's CPU time (cgroup v1 cpuacct, or v2 cpu.stat)."""
    for candidate in (
        Path(f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage"),
        Path(f"/sys/fs/cgroup/cpu,cpuacct/docker/{container_id}/cpuacct.usage"),
        Path(f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat"),
        Path(f"/sys/fs/cgroup/docker/{container_id}/cpu.stat"),
    ):
        if candidate.exists():
            return candidate
    return None


def cpu_seconds(counter: Path | None) -> float:
    if counter is None:
        return float("nan")
    text = counter.read_text()
    if counter.name == "cpuacct.usage":
        return int(text) / 1e9
    usage = next(line for line in text.splitlines() if line.startswith("usage_usec"))
    return int(usage.split()[1]) / 1e6


def wrk(
    url: str,
    connections: int,
    seconds: int,
    method: str,
    body: Path | None,
    counter: Path | None = None,
    threads: int = 2,
) -> dict[str, Any]:
    env = dict(os.environ, WRK_METHOD=method, WRK_BODY=str(body) if body else "")
    cpu0 = cpu_seconds(counter)
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
    # CPU time the server spent per request: barely moved by other load on the machine.
    r["cpu_us_per_request"] = (cpu_seconds(counter) - cpu0) * 1e6 / max(1, r["requests"])
    bad = sum(r["errors"].values())
    if bad:
        raise SystemExit(f"wrk {method} {url}: {r['errors']} errors: the figures would be meaningless")
    return r


def in_process_limit(body: Path, repeats: int, image: str = IMAGE) -> dict[str, float]:
    """The batch limit, measured in a container of the API image (1 CPU, the same Python)."""
    out = sh(
        "docker", "run", "--rm", "--read-only", "--network", "none", "--cpus", "1", "--user", "10001:10001",
        "-v", f"{body}:/tmp/batch.json:ro", "--entrypoint", "python3", image, "-c", LIMIT_CODE,
        "/tmp/batch.json", str(repeats),
    )  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def container_memory_mib(name: str) -> dict[str, float]:
    """A container's memory as `docker stats` counts it (cgroup usage less inactive page
    cache), read from the cgroup itself (docker stats shows 0 B on these cgroup v1 hosts),
    and the summed resident set size of its processes (shared pages counted per process)."""
    cid = sh("docker", "inspect", "-f", "{{.Id}}", name).strip()
    usage = float("nan")
    v1 = Path(f"/sys/fs/cgroup/memory/docker/{cid}")
    v2 = next((p for p in (Path(f"/sys/fs/cgroup/system.slice/docker-{cid}.scope"),
                           Path(f"/sys/fs/cgroup/docker/{cid}")) if p.exists()), None)  # fmt: skip
    if (v1 / "memory.usage_in_bytes").exists():
        stat = dict(line.split() for line in (v1 / "memory.stat").read_text().splitlines())
        usage = int((v1 / "memory.usage_in_bytes").read_text()) - int(stat.get("total_inactive_file", 0))
    elif v2 is not None:
        stat = dict(line.split() for line in (v2 / "memory.stat").read_text().splitlines())
        usage = int((v2 / "memory.current").read_text()) - int(stat.get("inactive_file", 0))
    rss_kib = sum(int(line.split()[1]) for line in sh("docker", "top", name, "-o", "pid,rss").splitlines()[1:])
    return {"cgroup": usage / 2**20, "rss": rss_kib / 1024}


def idle_memory(settle_s: int, image: str = IMAGE) -> dict[str, dict[str, float]]:
    """MiB used by each container of the stack, started as the catalogue runs them and idle."""
    names = {"inference-api": "perf-idle-api", "frontend": "perf-idle-frontend", "prometheus": "perf-idle-prom"}
    net = "perf-idle-net"
    for n in names.values():
        sh("docker", "rm", "-f", n, check=False)
    sh("docker", "network", "rm", net, check=False)
    sh("docker", "network", "create", net)
    hard = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--network", net]
    try:
        sh("docker", "run", "-d", "--name", names["inference-api"], *hard, "--tmpfs", "/tmp", "--user", "10001:10001",
           "--network-alias", "inference-api", image)  # fmt: skip
        sh("docker", "run", "-d", "--name", names["frontend"], *hard, "--tmpfs", "/tmp", "--tmpfs", "/var/cache/nginx",
           "--tmpfs", "/run", "--user", "101:101", FRONTEND)  # fmt: skip
        sh("docker", "run", "-d", "--name", names["prometheus"], *hard, "--user", "65534:65534",
           "--tmpfs", "/prometheus:uid=65534,gid=65534", PROMETHEUS)  # fmt: skip
        time.sleep(settle_s)
        used = {service: container_memory_mib(name) for service, name in names.items()}
    finally:
        for n in names.values():
            sh("docker", "rm", "-f", n, check=False)
        sh("docker", "network", "rm", net, check=False)
    return used


def baseline_lines(
    image: str | None,
    rounds: list[dict[str, dict[str, Any]]],
    base_rounds: list[dict[str, dict[str, Any]]],
    batch_runs: list[dict[str, Any]],
    base_batch_runs: list[dict[str, Any]],
    limits: list[dict[str, float]],
    n: int,
) -> list[str]:
    """The report's comparison with the baseline image: per round, the single-record ratio
    by server CPU (constant GET / predict) and the batch's CPU per row against the limit."""
    if not image:
        return []

    def single(r: dict[str, dict[str, Any]]) -> float:
        return float(r["constant_get"]["cpu_us_per_request"] / r["predict"]["cpu_us_per_request"])

    def batch(b: dict[str, Any], lim: dict[str, float]) -> float:
        return float(b["cpu_us_per_request"] / n / lim["median_us_per_row"])

    rows = zip(rounds, base_rounds, batch_runs, base_batch_runs, limits, strict=True)
    table = [
        f"| {i} | {single(r):.2f} | {single(br):.2f} | {b['cpu_us_per_request'] / n:.2f} | "
        f"{bb['cpu_us_per_request'] / n:.2f} | {lim['median_us_per_row']:.2f} | {batch(b, lim):.2f} | "
        f"{batch(bb, lim):.2f} |"
        for i, (r, br, b, bb, lim) in enumerate(rows, 1)
    ]
    med = statistics.median
    pairs = list(zip(batch_runs, base_batch_runs, strict=True))
    return [
        f"## Against the baseline image `{image}` (same rounds, alternating)",
        "",
        "Each round measures the baseline right after this image: single record (predict and",
        "constant GET, server CPU per request) and the batch (server CPU per row), against the",
        "same in-process limit.",
        "",
        "| round | single, GET / predict by CPU | baseline | batch CPU us/row | baseline | limit us/row "
        "| batch / limit | baseline |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *table,
        "",
        f"- Medians of the per-round figures: single {med(map(single, rounds)):.2f} against the baseline's "
        f"{med(map(single, base_rounds)):.2f}; batch {med(map(batch, batch_runs, limits)):.2f}x the limit "
        f"against {med(map(batch, base_batch_runs, limits)):.2f}x; batch CPU per row / baseline's: "
        f"{med(b['cpu_us_per_request'] / bb['cpu_us_per_request'] for b, bb in pairs):.2f}.",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=6, help="duration of each wrk run")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds of each comparison")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--batch-rows", type=int, default=1000)
    p.add_argument("--batch-connections", type=int, default=2)
    p.add_argument("--idle-seconds", type=int, default=30, help="how long the stack idles before docker stats")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS-api.md")
    p.add_argument(
        "--image",
        default=IMAGE,
        help="the API image to measure (another tag: an earlier commit's build, for a before/after)",
    )
    p.add_argument(
        "--baseline-image",
        help="another build of the API (an earlier commit's) measured in the same rounds, alternating",
    )
    args = p.parse_args(argv)
    if not 1 <= args.seconds <= 60 or not 1 <= args.rounds <= 10:
        raise SystemExit("--seconds must be 1..60 and --rounds 1..10 (bounded load)")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    sh(str(ROOT / "scripts" / "build-images.sh"), timeout=1800)

    doc = json.loads((ROOT / "services/inference-api/models/breast-cancer-lr-1.0.0/model.json").read_text())
    single_body, batch_body = sample_bodies(doc, args.batch_rows)
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    tmp.chmod(0o755)
    single = tmp / "single.json"
    single.write_bytes(single_body)
    batch = tmp / "batch.json"
    batch.write_bytes(batch_body)
    batch.chmod(0o644)

    sh("docker", "rm", "-f", NAME, check=False)
    run_opts = [
        "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--user", "10001:10001", "--cpus", "1", "--memory", "512m", "-e", "WEB_CONCURRENCY=1",
        "-e", "ENABLE_BENCHMARK_ENDPOINT=1", "-e", f"MAX_BATCH_ROWS={max(1000, args.batch_rows)}",
        "-p", "127.0.0.1::8000",
    ]  # fmt: skip
    container_id = sh("docker", "run", "-d", "--name", NAME, *run_opts, args.image).strip()
    counter = cpu_counter(container_id)
    baseline = NAME + "-baseline"
    if args.baseline_image:
        sh("docker", "rm", "-f", baseline, check=False)
        baseline_counter = cpu_counter(
            sh("docker", "run", "-d", "--name", baseline, *run_opts, args.baseline_image).strip()
        )
    limits: list[dict[str, float]] = []
    # The baseline image, when asked for: the same single-record and batch runs, in the
    # same rounds, right after the measured image's (no constant POST, no HTTP-alone run).
    base_rounds: list[dict[str, dict[str, Any]]] = []
    base_batch_runs: list[dict[str, Any]] = []
    try:
        port = sh("docker", "port", NAME, "8000").splitlines()[0].rsplit(":", 1)[1]
        base = f"http://127.0.0.1:{port}"
        wait_ready(base)
        c, s = args.connections, args.seconds
        # Warm-up (not recorded).
        wrk(base + "/predict", c, 3, "POST", single)
        wrk(base + "/benchmark/constant", c, 3, "GET", None)
        wrk(base + "/predict", args.batch_connections, 3, "POST", batch)
        if args.baseline_image:
            other = "http://127.0.0.1:" + sh("docker", "port", baseline, "8000").splitlines()[0].rsplit(":", 1)[1]
            wait_ready(other)
            wrk(other + "/predict", c, 3, "POST", single)
            wrk(other + "/benchmark/constant", c, 3, "GET", None)
            wrk(other + "/predict", args.batch_connections, 3, "POST", batch)
        rounds: list[dict[str, dict[str, Any]]] = []
        batch_runs: list[dict[str, Any]] = []
        transport: list[dict[str, Any]] = []  # the same batch body to the constant POST: HTTP alone
        for _ in range(args.rounds):
            rounds.append(
                {
                    "predict": wrk(base + "/predict", c, s, "POST", single, counter),
                    "constant_get": wrk(base + "/benchmark/constant", c, s, "GET", None, counter),
                    "constant_post": wrk(base + "/benchmark/constant", c, s, "POST", single, counter),
                }
            )
            batch_runs.append(wrk(base + "/predict", args.batch_connections, s, "POST", batch, counter))
            transport.append(wrk(base + "/benchmark/constant", args.batch_connections, s, "POST", batch, counter))
            if args.baseline_image:
                base_rounds.append(
                    {
                        "predict": wrk(other + "/predict", c, s, "POST", single, baseline_counter),
                        "constant_get": wrk(other + "/benchmark/constant", c, s, "GET", None, baseline_counter),
                    }
                )
                base_batch_runs.append(
                    wrk(other + "/predict", args.batch_connections, s, "POST", batch, baseline_counter)
                )
            limits.append(in_process_limit(batch, 20, args.image))
        load = Path("/proc/loadavg").read_text().split()[:3]
    finally:
        sh("docker", "rm", "-f", NAME, check=False)
        if args.baseline_image:
            sh("docker", "rm", "-f", baseline, check=False)
    memory = idle_memory(args.idle_seconds, args.image)
    shutil.rmtree(tmp, ignore_errors=True)

    def med(key: str, f: Any) -> float:
        return statistics.median(f(r[key]) for r in rounds)

    def ratio(num: str, den: str, f: Any) -> float:
        return statistics.median(f(r[num]) / f(r[den]) for r in rounds)

    rps = lambda r: r["rps"]  # noqa: E731
    p50 = lambda r: r["latency_us"]["p50"]  # noqa: E731
    p99 = lambda r: r["latency_us"]["p99"]  # noqa: E731
    cpu = lambda r: r["cpu_us_per_request"]  # noqa: E731
    tput_get, tput_post = ratio("predict", "constant_get", rps), ratio("predict", "constant_post", rps)
    p99_get, p99_post = ratio("predict", "constant_get", p99), ratio("predict", "constant_post", p99)
    # Throughput one core would give, from CPU per request: constant / predict.
    cpu_get, cpu_post = ratio("constant_get", "predict", cpu), ratio("constant_post", "predict", cpu)
    n = args.batch_rows
    batch_rows_s = statistics.median(b["rps"] * n for b in batch_runs)
    batch_cpu_row = statistics.median(b["cpu_us_per_request"] / n for b in batch_runs)
    # The server's figure is a mean over every request of a run; the limit's fair match is
    # the median of its repeats (its best is shown too).
    limit_row = statistics.median(lim["median_us_per_row"] for lim in limits)
    batch_cpu_ratio = statistics.median(
        (b["cpu_us_per_request"] / n) / lim["median_us_per_row"] for b, lim in zip(batch_runs, limits, strict=True)
    )
    transport_row = statistics.median(t["cpu_us_per_request"] / n for t in transport)
    idle_total = sum(m["cgroup"] for m in memory.values())
    idle_rss = sum(m["rss"] for m in memory.values())
    ms = lambda us: f"{us / 1000:.2f}"  # noqa: E731
    g_t, g_p, g_b, g_m = GOALS["throughput_ratio"], GOALS["p99_ratio"], GOALS["batch_cpu_ratio"], GOALS["idle_mib"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    def row(label: str, key: str) -> str:
        return f"| {label} | {med(key, rps):.0f} | {ms(med(key, p50))} | {ms(med(key, p99))} | {med(key, cpu):.0f} |"

    command = (
        f"python benchmarks/api/bench.py --seconds {s} --rounds {args.rounds} --connections {c} "
        f"--batch-rows {n} --batch-connections {args.batch_connections} --idle-seconds {args.idle_seconds}"
        + (f" --image {args.image}" if args.image != IMAGE else "")
        + (f" --baseline-image {args.baseline_image}" if args.baseline_image else "")
    )
    lines = [
        "# Inference API benchmark",
        "",
        f"Measured {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} on this machine ({os.cpu_count()} cores shared",
        f"with other jobs; load average at the end {' '.join(load)}). Image `{args.image}` run as the catalogue",
        "runs it (read-only, `--cap-drop ALL`, uid 10001, `--cpus 1 --memory 512m`, `WEB_CONCURRENCY=1`:",
        "one uvicorn worker with httptools and uvloop, one JSON log line per request), published on",
        "127.0.0.1 and driven by wrk (Debian package) with `benchmarks/api/wrk-report.lua`. CPU per",
        "request is read from the container's cgroup.",
        "",
        "Command:",
        "",
        "```",
        command,
        "```",
        "",
        f"## Single record, {c} connections ({args.rounds} alternating rounds of {s} s; medians)",
        "",
        "| endpoint | req/s | p50 ms | p99 ms | server CPU us/req |",
        "|---|---:|---:|---:|---:|",
        row("`POST /predict` (one record)", "predict"),
        row("`GET /benchmark/constant`", "constant_get"),
        row("`POST /benchmark/constant` (same body, read, not parsed)", "constant_post"),
        "",
        "| ratio, median of per-round ratios | vs GET constant | vs POST constant | goal |",
        "|---|---:|---:|---|",
        f"| throughput, predict / constant (wall clock) | {tput_get:.2f} | {tput_post:.2f} | >= {g_t} |",
        f"| throughput from server CPU per request | {cpu_get:.2f} | {cpu_post:.2f} | >= {g_t} |",
        f"| p99 latency, predict / constant | {p99_get:.2f} | {p99_post:.2f} | <= {g_p} |",
        "",
        f"- Throughput goal against the constant GET: {verdict(tput_get >= g_t)} (wall clock), "
        f"{verdict(cpu_get >= g_t)} (server CPU).",
        f"- p99 goal against the constant GET: {verdict(p99_get <= g_p)}.",
        "",
        "Per round, req/s (predict / constant GET / constant POST):",
        "",
        *[
            f"- round {i + 1}: {r['predict']['rps']:.0f} / {r['constant_get']['rps']:.0f} / "
            f"{r['constant_post']['rps']:.0f}"
            for i, r in enumerate(rounds)
        ],
        "",
        f"## Batch: {n} records per request, {args.batch_connections} connections",
        "",
        "Each round: one wrk run of batches against the server, then the in-process limit (same",
        "body, orjson parse + one matrix + one matrix product, median and best of 20 repeats, in a",
        "container of the same image with 1 CPU). The ratio is server CPU per row (a mean over the",
        "run) to the limit's median.",
        "",
        "| round | req/s | rows/s | p50 ms | p99 ms | server CPU us/row | limit us/row (median / best) | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {i + 1} | {b['rps']:.1f} | {b['rps'] * n:.0f} | {ms(b['latency_us']['p50'])} | "
            f"{ms(b['latency_us']['p99'])} | {b['cpu_us_per_request'] / n:.2f} | "
            f"{lim['median_us_per_row']:.2f} / {lim['best_us_per_row']:.2f} | "
            f"{b['cpu_us_per_request'] / n / lim['median_us_per_row']:.2f} |"
            for i, (b, lim) in enumerate(zip(batch_runs, limits, strict=True))
        ],
        "",
        f"- Server CPU per row {batch_cpu_row:.2f} us against the in-process limit {limit_row:.2f} us: "
        f"{batch_cpu_ratio:.2f}x (median of per-round ratios; goal <= {g_b}x): {verdict(batch_cpu_ratio <= g_b)}.",
        f"- Of the server's CPU per row, {transport_row:.2f} us is HTTP alone: the same {n}-record body",
        "  POSTed to the constant endpoint (received, read, discarded) in the same rounds.",
        f"- Measured throughput: {batch_rows_s:,.0f} rows/s (median); from server CPU, "
        f"{1e6 / batch_cpu_row:,.0f} rows/s per fully available core.",
        "",
        *baseline_lines(args.baseline_image, rounds, base_rounds, batch_runs, base_batch_runs, limits, n),
        f"## Idle memory of the stack (after {args.idle_seconds} s idle)",
        "",
        "| container | MiB (cgroup, as docker stats counts) | MiB (sum of process RSS) |",
        "|---|---:|---:|",
        *[f"| {k} | {v['cgroup']:.1f} | {v['rss']:.1f} |" for k, v in memory.items()],
        f"| **together** | **{idle_total:.1f}** | **{idle_rss:.1f}** |",
        "",
        f"- Goal <= {g_m} MiB: {verdict(idle_total <= g_m)} (cgroup), {verdict(idle_rss <= g_m)} (RSS).",
        "",
        "## Reading these figures",
        "",
        "- The constant baselines run on the same server, middleware (metrics, request log, body",
        "  limit), FastAPI routing, response class and container limits as `/predict`. predict /",
        "  GET-constant counts everything a prediction adds, receiving its body included; predict /",
        "  POST-constant isolates the parse, validation, model and larger answer.",
        "- Wall-clock figures on a machine shared with other jobs swing from round to round (see the",
        "  per-round lines); the ratios are medians of per-round ratios. Server CPU per request comes",
        "  from the container's cgroup and is far less sensitive to other load: it is the figure to",
        "  trust when the two disagree. Rows/s per core is 1e6 / (server CPU us per row).",
        "",
    ]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    summary = {
        "throughput_ratio_vs_get": tput_get,
        "cpu_throughput_ratio_vs_get": cpu_get,
        "p99_ratio_vs_get": p99_get,
        "throughput_ratio_vs_post": tput_post,
        "batch_rows_per_s": batch_rows_s,
        "batch_cpu_us_per_row": batch_cpu_row,
        "batch_limit_us_per_row": limit_row,
        "batch_cpu_ratio": batch_cpu_ratio,
        "batch_transport_cpu_us_per_row": transport_row,
        "idle_mib": memory,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
