"""The inference API in process, without HTTP: where /predict's CPU goes, before an image.

Calls the ASGI app directly (a raw scope, the body in one message, logging on as in the
image, its lines to /dev/null) and measures CPU per call with time.process_time():

- batch: POST /predict with 1,000 records, alternating with the in-process limit of
  bench.py (its LIMIT_CODE, unchanged, run as bench.py runs it: a process of its own,
  median of 20 repeats); the ratio is the app's median to the limit's median;
- single record: POST /predict against GET /benchmark/constant, alternating, 200 calls
  each per round; the ratio is constant / predict (what bench.py's "throughput from
  server CPU" compares, less uvicorn's share, which both pay).

The same bodies as bench.py (the training medians, scaled). With --profile, a cProfile of
each kind of call, sorted by own time. Run it with the working tree's code in the image's
Python and wheels, as bench.py's limit runs (1 CPU):

    docker run --rm --cpus 1 --network none -v "$PWD/services/inference-api/src:/opt/mlops/app:ro" \\
      -v "$PWD/benchmarks/api:/x/benchmarks/api:ro" --entrypoint python3 mlops/inference-api:1.0.0 \\
      /x/benchmarks/api/inprocess.py

or with the project's venv: `python benchmarks/api/inprocess.py` (another Python: other figures).
Only ratios measured in the same run mean anything on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
for candidate in (HERE.parents[1] / "services" / "inference-api" / "src", Path("/opt/mlops/app")):
    if candidate.is_dir():
        sys.path.insert(0, str(candidate))
        break

from bench import LIMIT_CODE, sample_bodies  # noqa: E402


def model_dir() -> Path:
    here = HERE.parents[1] / "services" / "inference-api" / "models"
    for candidate in (Path(os.environ.get("MODEL_DIR", "/opt/mlops/models")), here):
        if (candidate / "breast-cancer-lr-1.0.0" / "model.json").is_file():
            return candidate
    raise SystemExit("no model release found (MODEL_DIR)")


def make_app(models: Path, batch_rows: int) -> Any:
    import logging

    from mlops_inference.app import create_app
    from mlops_inference.observability import configure_logging
    from mlops_inference.settings import Settings

    # Logging as in the image (one JSON line per request), written nowhere.
    stdout, sys.stdout = sys.stdout, open(os.devnull, "w")
    try:
        configure_logging("info")
    finally:
        sys.stdout = stdout
    logging.getLogger("mlops_inference").setLevel(logging.WARNING)  # not the access log
    logging.getLogger("mlops_inference.access").setLevel(logging.INFO)
    settings = dataclasses.replace(
        Settings.from_env(),
        model_dir=models,
        benchmark_endpoint=True,
        max_batch_rows=max(1000, batch_rows),
        max_body_bytes=64 * 1024 * 1024,
    )
    return create_app(settings)


def caller(app: Any) -> Any:
    async def call(method: str, path: str, body: bytes = b"", json_body: bool = True) -> tuple[int, bytes]:
        headers = [(b"host", b"127.0.0.1:8000"), (b"content-length", str(len(body)).encode())]
        if json_body:
            headers.append((b"content-type", b"application/json"))
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
            "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
            "headers": headers, "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000), "state": {},
        }  # fmt: skip
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return messages.pop() if messages else {"type": "http.disconnect"}

        out: dict[str, Any] = {"body": b""}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                out["status"] = message["status"]
            else:
                out["body"] += message.get("body", b"")

        await app(scope, receive, send)
        return out["status"], out["body"]

    return call


def limit(batch_file: Path, repeats: int = 20) -> float:
    """bench.py's in-process limit, run as bench.py runs it (its own process): median us/row."""
    out = subprocess.run(
        [sys.executable, "-c", LIMIT_CODE, str(batch_file), str(repeats)],
        capture_output=True, text=True, check=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
    )  # fmt: skip
    return float(json.loads(out.stdout.strip().splitlines()[-1])["median_us_per_row"])


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    models = model_dir()
    doc = json.loads((models / "breast-cancer-lr-1.0.0" / "model.json").read_text())
    single, batch = sample_bodies(doc, args.batch_rows)
    app = make_app(models, args.batch_rows)
    call = caller(app)
    n = args.batch_rows
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        f.write(batch)
        f.flush()
        async with app.router.lifespan_context(app):
            for method, path, body, js in (
                ("POST", "/predict", batch, True),
                ("POST", "/predict", single, True),
                ("GET", "/benchmark/constant", b"", False),
            ):
                status, answer = await call(method, path, body, js)
                if status != 200:
                    raise SystemExit(f"{method} {path}: {status} {answer[:300]!r}")
            if args.profile:
                for label, (method, path, body, js, count) in {
                    "batch": ("POST", "/predict", batch, True, 30),
                    "single": ("POST", "/predict", single, True, 3000),
                    "constant GET": ("GET", "/benchmark/constant", b"", False, 3000),
                }.items():
                    prof = cProfile.Profile()
                    prof.enable()
                    for _ in range(count):
                        await call(method, path, body, js)
                    prof.disable()
                    print(f"==== {label}: {count} calls")
                    pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile)
            rounds = []
            for _ in range(args.rounds):
                batch_cpu = []
                for _ in range(20):
                    t0 = time.process_time()
                    await call("POST", "/predict", batch)
                    batch_cpu.append((time.process_time() - t0) * 1e6 / n)
                lim = limit(Path(f.name))
                t_single = t_get = 0.0
                for _ in range(args.single_calls // 50):
                    t0 = time.process_time()
                    for _ in range(50):
                        await call("POST", "/predict", single)
                    t1 = time.process_time()
                    for _ in range(50):
                        await call("GET", "/benchmark/constant", b"", False)
                    t_single += t1 - t0
                    t_get += time.process_time() - t1
                rounds.append(
                    {
                        "batch_us_per_row": statistics.median(batch_cpu),
                        "limit_us_per_row": lim,
                        "single_us": t_single * 1e6 / args.single_calls,
                        "get_us": t_get * 1e6 / args.single_calls,
                    }
                )
    return {"rounds": rounds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch-rows", type=int, default=1000)
    p.add_argument("--single-calls", type=int, default=2000, help="calls of each kind per round (single record)")
    p.add_argument("--profile", type=int, default=0, metavar="N", help="print the N costliest functions of each call")
    args = p.parse_args(argv)
    result = asyncio.run(measure(args))
    rounds = result["rounds"]
    print("round | batch us/row | limit us/row | ratio | single us | constant GET us | GET/single")
    for i, r in enumerate(rounds, 1):
        r["batch_ratio"] = r["batch_us_per_row"] / r["limit_us_per_row"]
        r["single_ratio"] = r["get_us"] / r["single_us"]
        print(
            f"{i} | {r['batch_us_per_row']:.2f} | {r['limit_us_per_row']:.2f} | {r['batch_ratio']:.2f} | "
            f"{r['single_us']:.1f} | {r['get_us']:.1f} | {r['single_ratio']:.2f}"
        )
    summary = {
        "python": sys.version.split()[0],
        "batch_ratio": statistics.median(r["batch_ratio"] for r in rounds),
        "single_ratio": statistics.median(r["single_ratio"] for r in rounds),
        "batch_us_per_row": statistics.median(r["batch_us_per_row"] for r in rounds),
        "limit_us_per_row": statistics.median(r["limit_us_per_row"] for r in rounds),
        "load": Path("/proc/loadavg").read_text().split()[:3],
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
