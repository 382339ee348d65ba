"""Structured logs, Prometheus metrics and the ASGI middleware that records both.

One JSON line per request: `event: request`, or for POST /predict `event: prediction` with
the model, the outcome (`ok` or the kind of refusal), the number of records, the latency
and, with API keys, the key's name. Never a request body, a feature value or a header value
beyond the request id (the inputs are patient data and stay out of logs): validation errors
are answered, not logged; an exception that escapes a route is logged as its type and
where it happened, without its message (a message can quote a value), and answered 500
here, so the server never logs it either; every logged traceback is reduced the same way.
Metrics live in a registry of their own per app, so tests can build several apps in one
process.

With several uvicorn workers (WEB_CONCURRENCY > 1) each worker is a process of its own:
__main__ then sets PROMETHEUS_MULTIPROC_DIR before prometheus_client is imported, every
worker writes its values to files there, and /metrics (answered by any one worker) adds up
all workers' files (prometheus_client's multiprocess mode). Gauges say how: requests in
flight add up over live workers, the model counts as ready only when every live worker has
it. The process_* series then describe the answering worker only, and python_gc_* and
python_info are left out.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Requests to /api/... are answered as if the prefix were absent, so the API works behind
# the frontend's /api/ proxy and behind an Ingress rule /api alike, with or without a
# rewrite. The prefix becomes the ASGI root_path, so /docs finds its openapi.json.
API_PREFIX = "/api"
# The scope key of a request's note: what the app tells the request's log line (outcome,
# rows, who asked). Values only of the app's choosing: never anything the client sent.
NOTE = "mlops.note"
access_log = logging.getLogger("mlops_inference.access")
error_log = logging.getLogger("mlops_inference.error")


def exception_summary(exc: BaseException) -> str:
    """An exception without its message: its type and the last frames (file:line in
    function). The message is left out because it may quote a submitted value."""
    frames = traceback.extract_tb(exc.__traceback__)[-4:]
    where = " <- ".join(f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}" for f in reversed(frames))
    return f"{type(exc).__module__}.{type(exc).__qualname__}" + (f" at {where}" if where else "")


class JsonFormatter(logging.Formatter):
    def formatException(self, ei: Any) -> str:
        """Every traceback logged, ours or a library's: type and frames, no message."""
        exc = ei[1] if isinstance(ei, tuple) else None
        return exception_summary(exc) if isinstance(exc, BaseException) else "exception"

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update(fields)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        # orjson, as for the answers: a prediction's line took 17 us with the json module, 1.5
        # with orjson (every request writes one). It refuses integers beyond 64 bits, which
        # the json module writes.
        try:
            return orjson.dumps(payload, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except orjson.JSONEncodeError:
            return json.dumps(payload, separators=(",", ":"), default=str)


def configure_logging(level: str) -> None:
    """JSON lines on stdout for our loggers and uvicorn's."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # our middleware logs requests


def multiprocess_dir() -> str | None:
    """Where the workers' metric files live when there are several workers, else None."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    def __init__(self) -> None:
        # No *_created series: they double the exposition and no dashboard uses them.
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        # With several workers the process_* series (of the answering worker) stay out of the
        # shared registry's metric files: they come from a registry of their own.
        self.process_registry = self.registry if multiprocess_dir() is None else CollectorRegistry()
        ProcessCollector(registry=self.process_registry)
        if multiprocess_dir() is None:
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        self.requests = Counter(
            "inference_http_requests",
            "HTTP requests by method, route and status code.",
            ["method", "path", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "inference_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route and status code.",
            ["method", "path", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "inference_http_requests_in_flight",
            "Requests being answered.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.predictions = Counter(
            "inference_predictions",
            "Records classified, by predicted class and model version.",
            ["model_version", "predicted_class"],
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "inference_prediction_batch_rows",
            "Records per /predict request.",
            buckets=(1, 2, 5, 10, 50, 100, 500, 1000, 5000, 10000),
            registry=self.registry,
        )
        self.invalid = Counter(
            "inference_invalid_requests",
            "Refused /predict requests, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.unauthorized = Counter(
            "mlops_inference_unauthorized",
            "Prediction requests refused for want of valid credentials (401), by reason: missing or invalid.",
            ["reason"],
            registry=self.registry,
        )
        # The release's identity as labels of a constant 1 (what an Info metric exposes, as a
        # gauge so that it also works with several workers); sha256 is the manifest's.
        self.model_info = Gauge(
            "mlops_model_info",
            "The model release this process serves (set once it is verified): sha256 of its manifest.json.",
            ["name", "version", "sha256"],
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.model_ready = Gauge(
            "inference_model_ready",
            "1 when the model release is loaded, its checksums verified and its golden records answered.",
            registry=self.registry,
            multiprocess_mode="livemin",
        )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


INTERNAL_ERROR = json.dumps(
    {"detail": [{"field": "body", "loc": ["body"], "type": "internal_error", "msg": "body: internal error"}]}
).encode()


class ObservabilityMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware: it costs a task per request on the hot path)."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        routes: Iterable[str],
        prefixes: Iterable[str] = (),
        prediction_routes: Iterable[str] = (),
        model_ref: Callable[[], tuple[str, str]] | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = frozenset(routes)
        # Mounted directories (static files): one route label for everything below each.
        self.prefixes = tuple(prefixes)
        # POSTs to these routes log `event: prediction` lines; model_ref names the model.
        self.prediction_routes = frozenset(prediction_routes)
        self.model_ref = model_ref
        # Labelled children, looked up once per (method, route, status): labels() costs a
        # lock and a dict build on every call. Bounded: known methods x routes x statuses.
        self.children: dict[tuple[str, str, str], tuple[Any, Any]] = {}

    def _route_below(self, path: str) -> str:
        for prefix in self.prefixes:
            if path.startswith(prefix + "/"):
                return prefix
        return "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path: str = scope["path"]
        if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
            scope = dict(scope, root_path=scope.get("root_path", "") + API_PREFIX)
            path = path[len(API_PREFIX) :] or "/"
        route = path if path in self.routes else self._route_below(path)
        request_id = ""
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                candidate = value.decode("latin-1")
                if REQUEST_ID.match(candidate):
                    request_id = candidate
                break
        if not request_id:
            request_id = uuid.uuid4().hex
        status = 500
        started = False
        header = (b"x-request-id", request_id.encode())
        note: dict[str, Any] = {}
        scope[NOTE] = note

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            # Logged without its message, answered here, and not raised further: the server
            # would log the message and the traceback, which may quote a submitted value.
            status = 500
            note["outcome"] = "error"
            error_log.error(
                "unhandled error",
                extra={"fields": {"event": "error", "request_id": request_id, "error": exception_summary(exc)}},
            )
            if not started:
                await send_wrapper(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", b"%d" % len(INTERNAL_ERROR)),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": INTERNAL_ERROR})
        finally:
            self.metrics.in_flight.dec()
            elapsed = time.perf_counter() - start
            method = scope["method"] if scope["method"] in METHODS else "other"
            key = (method, route, str(status))
            children = self.children.get(key)
            if children is None:
                children = (self.metrics.requests.labels(*key), self.metrics.latency.labels(*key))
                self.children[key] = children
            children[0].inc()
            children[1].observe(elapsed)
            if access_log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                fields: dict[str, Any] = {
                    "event": "request",
                    "method": scope["method"],
                    # The path only when it is one of the API's (an unknown path is whatever
                    # the client typed); never the query string.
                    "path": path[:200] if route != "unmatched" else None,
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "client": client[0] if client else None,
                    "request_id": request_id,
                }
                if route in self.prediction_routes and scope["method"] == "POST":
                    name, version = self.model_ref() if self.model_ref else (None, None)
                    fields.update(
                        event="prediction",
                        time=_iso(time.time() - elapsed),
                        model=name,
                        model_version=version,
                        outcome=note.get("outcome") or ("ok" if status < 400 else f"http_{status}"),
                        rows=note.get("rows"),
                        latency_ms=fields["duration_ms"],
                    )
                    for k in ("api_key_name", "client_dn"):
                        if k in note:
                            fields[k] = note[k]
                access_log.info(fields["event"], extra={"fields": fields})


def exposition(metrics: Metrics) -> bytes:
    """The text exposition: the app's registry, or all workers' values in multiprocess mode
    (plus the answering worker's process_* series)."""
    if multiprocess_dir() is None:
        return generate_latest(metrics.registry)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry) + generate_latest(metrics.process_registry)
