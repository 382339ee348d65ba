"""Structured logs, Prometheus metrics and the ASGI middleware that records both.

One JSON line per request (no request body, no feature values: the inputs are patient
data and stay out of logs). Metrics live in a registry of their own per app, so tests can
build several apps in one process.

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
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

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
access_log = logging.getLogger("mlops_inference.access")


class JsonFormatter(logging.Formatter):
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
        # The model's identity as labels of a constant 1 (what an Info metric exposes, as a
        # gauge so that it also works with several workers).
        self.model_info = Gauge(
            "inference_model_info",
            "The model this process serves (set once it is loaded and verified).",
            ["name", "version", "sha256"],
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.model_ready = Gauge(
            "inference_model_ready",
            "1 when the model is loaded and its checksum verified.",
            registry=self.registry,
            multiprocess_mode="livemin",
        )


class ObservabilityMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware: it costs a task per request on the hot path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Iterable[str], prefixes: Iterable[str] = ()) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = frozenset(routes)
        # Mounted directories (static files): one route label for everything below each.
        self.prefixes = tuple(prefixes)
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
        header = (b"x-request-id", request_id.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
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
                access_log.info(
                    "request",
                    extra={
                        "fields": {
                            "event": "request",
                            "method": scope["method"],
                            "path": path[:200],
                            "route": route,
                            "status": status,
                            "duration_ms": round(elapsed * 1000, 3),
                            "client": client[0] if client else None,
                            "request_id": request_id,
                        }
                    },
                )


def exposition(metrics: Metrics) -> bytes:
    """The text exposition: the app's registry, or all workers' values in multiprocess mode
    (plus the answering worker's process_* series)."""
    if multiprocess_dir() is None:
        return generate_latest(metrics.registry)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry) + generate_latest(metrics.process_registry)
