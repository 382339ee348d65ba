"""The FastAPI application: health, readiness, model description, prediction, metrics.

`/predict` reads and validates its body itself rather than through FastAPI's body
parameter: that keeps full control of the status codes (400 malformed JSON, 413 too
large, 415 wrong content type, 422 invalid field) and of the messages, which always name
the field at fault, and it keeps the single-record path short. The OpenAPI document still
describes the body (see `_openapi`).
"""

from __future__ import annotations

import gc
import html
import itertools
import json
import logging
import math
import operator
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from pydantic_core import from_json
from starlette.types import ASGIApp, Receive, Scope, Send

from . import __version__
from .model import Model, ModelError, load_model
from .observability import Metrics, ObservabilityMiddleware
from .schemas import (
    FEATURES,
    BatchPrediction,
    BatchRequest,
    ErrorResponse,
    PatientFeatures,
    SinglePrediction,
)
from .settings import Settings

log = logging.getLogger("mlops_inference")
MAX_ERRORS = 20  # errors listed per response; the count says how many there were in all
_row = operator.attrgetter(*FEATURES)  # a record's values in the model's feature order
_values = operator.itemgetter(*FEATURES)
_FEATURE_KEYS = frozenset(FEATURES)
_NUMBER_TYPES = frozenset((float, int))

# Swagger UI's files (swagger-ui-dist, vendored by scripts/build-images.sh): in the image
# /opt/mlops/vendor/swagger-ui, in the source tree services/inference-api/vendor/swagger-ui.
SWAGGER_DIR = Path(__file__).resolve().parents[2] / "vendor" / "swagger-ui"
SWAGGER_PATH = "/static/swagger"
# /docs has no inline script or style, so it works under a strict Content-Security-Policy
# (the frontend's script-src 'self' applies to /api/docs); this script starts Swagger UI.
SWAGGER_INIT_JS = """"use strict";
(function () {
  var el = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: el.getAttribute("data-openapi-url"),
    dom_id: "#swagger-ui",
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    showCommonExtensions: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis]
  });
})();
"""


def _docs_html(title: str, root: str) -> str:
    """Swagger UI's page: every URL local and relative to the ASGI root_path (/api)."""
    r = html.escape(root, quote=True)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)} - Swagger UI</title>
<link rel="stylesheet" href="{r}{SWAGGER_PATH}/swagger-ui.css">
<link rel="icon" type="image/png" href="{r}{SWAGGER_PATH}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{r}/openapi.json"></div>
<script src="{r}{SWAGGER_PATH}/swagger-ui-bundle.js"></script>
<script src="{r}/docs/swagger-init.js"></script>
</body>
</html>
"""


def _well_formed_record(payload: object) -> list[float] | None:
    """One record's values in the model's feature order when it has exactly the thirty
    fields, each a finite JSON number (not a boolean); None when anything is off, so that
    pydantic judges the body and names the fault. Same rules as PatientFeatures."""
    if type(payload) is not dict or payload.keys() != _FEATURE_KEYS:
        return None
    values = _values(payload)
    if not _NUMBER_TYPES.issuperset(map(type, values)):
        return None
    try:
        row = list(map(float, values))
    except OverflowError:  # an integer beyond float range
        return None
    return row if all(map(math.isfinite, row)) else None


def _well_formed_rows(payload: object) -> np.ndarray | None:
    """The rows of {"records": [record, ...]} when every record has exactly the thirty
    fields, each a finite JSON number (not a boolean); None when anything is off, so that
    pydantic judges the body and names the fault. Same rules as PatientFeatures, in bulk:
    each check is one pass over all records in C (map), not a Python loop per record."""
    if type(payload) is not dict or payload.keys() != {"records"}:
        return None
    records = payload["records"]
    if type(records) is not list or not records:
        return None
    if set(map(type, records)) != {dict}:
        return None
    if not all(map(operator.eq, map(dict.keys, records), itertools.repeat(_FEATURE_KEYS))):
        return None
    rows = list(map(_values, records))
    if not all(map(_NUMBER_TYPES.issuperset, map(_types, rows))):
        return None
    try:
        x = np.fromiter(itertools.chain.from_iterable(rows), np.float64, count=len(rows) * len(FEATURES))
    except OverflowError:  # an integer beyond float range
        return None
    return x.reshape(len(rows), len(FEATURES)) if np.isfinite(x).all() else None


def _types(values: tuple[Any, ...]) -> map:  # type: ignore[type-arg]
    return map(type, values)


def _field(loc: tuple[str | int, ...]) -> str:
    """('records', 3, 'mean_radius') -> 'records[3].mean_radius'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def _error(status: int, field: str, kind: str, msg: str, loc: list[str | int] | None = None) -> JSONResponse:
    item = {"field": field, "loc": loc if loc is not None else ["body"], "type": kind, "msg": f"{field}: {msg}"}
    return JSONResponse({"detail": [item]}, status_code=status)


def _validation_error(exc: ValidationError, metrics: Metrics) -> JSONResponse:
    errors = exc.errors(include_url=False)
    first = errors[0] if errors else {"type": "", "loc": ()}
    if first["type"] == "json_invalid":
        metrics.invalid.labels("malformed_json").inc()
        return _error(400, "body", "json_invalid", f"malformed JSON: {first['msg']}")
    metrics.invalid.labels("validation").inc()
    if first["type"] in ("model_type", "model_attributes_type", "dict_type") and not first["loc"]:
        return _error(422, "body", "object_type", 'must be a JSON object: one record, or {"records": [record, ...]}')
    detail = []
    for e in errors[:MAX_ERRORS]:
        loc = tuple(e["loc"])
        field = _field(loc)
        detail.append({"field": field, "loc": ["body", *loc], "type": e["type"], "msg": f"{field}: {e['msg']}"})
    body: dict[str, Any] = {"detail": detail}
    if len(errors) > MAX_ERRORS:
        body["errors_total"] = len(errors)
    return JSONResponse(body, status_code=422)


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class Service:
    """State shared by the handlers: settings, metrics and the model (None when not ready)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.model: Model | None = None
        self.model_error: str | None = None
        self.model_json: dict[str, Any] = {}
        self.load()

    def load(self) -> None:
        s = self.settings
        try:
            model = load_model(s.model_dir, s.model_name, s.model_version, FEATURES, s.model_sha256)
        except ModelError as exc:
            self.model, self.model_error = None, str(exc)
            self.metrics.model_ready.set(0)
            log.error("model refused", extra={"fields": {"event": "model_refused", "reason": str(exc)}})
            return
        self.model, self.model_error = model, None
        self.model_json = self._describe(model)
        self._weights = model.weights.tolist()
        self._bias = model.bias
        self._threshold = model.threshold
        self._accepted = (model.accepted_min.tolist(), model.accepted_max.tolist())
        self._observed = (model.observed_min.tolist(), model.observed_max.tolist())
        self._warn = [f"{name}: outside the range observed in training" for name in model.features]
        self._warn_json = [json.dumps(w) for w in self._warn]
        ref = json.dumps({"name": model.name, "version": model.version}, separators=(",", ":"))
        self._one_tail = ',"model":' + ref + "}"
        self._batch_head = '{"model":' + ref + ',"predictions":['
        self.response_headers = [(b"content-type", b"application/json"), (b"x-model-version", model.version.encode())]
        self._benign = self.metrics.predictions.labels(model.version, "benign")
        self._malignant = self.metrics.predictions.labels(model.version, "malignant")
        self.metrics.model_info.info({"name": model.name, "version": model.version, "sha256": model.sha256})
        self.metrics.model_ready.set(1)
        log.info(
            "model loaded",
            extra={
                "fields": {
                    "event": "model_loaded",
                    "model": model.name,
                    "version": model.version,
                    "sha256": model.sha256,
                }
            },
        )

    def _describe(self, model: Model) -> dict[str, Any]:
        d = model.description
        return {
            "name": model.name,
            "version": model.version,
            "sha256": model.sha256,
            "task": d.get("task"),
            "classes": list(model.classes),
            "decision_threshold": model.threshold,
            "metrics": d.get("metrics", {}),
            "training": d.get("training", {}),
            "input_domain": d.get("input_domain", {}),
            "max_batch_rows": self.settings.max_batch_rows,
            "features": [
                {
                    key: f.get(key)
                    for key in (
                        "name",
                        "label",
                        "observed_min",
                        "observed_max",
                        "mean",
                        "median",
                        "accepted_min",
                        "accepted_max",
                    )
                }
                for f in d.get("features", [])
            ],
        }

    def _refuse(self, cells: list[tuple[int, int]], value: Any, locs: list[tuple[str | int, ...]]) -> JSONResponse:
        """422 for values beyond the accepted domain: (row, feature) cells, value(row, feature)."""
        model = self.model
        assert model is not None
        self.metrics.invalid.labels("out_of_range").inc()
        detail = []
        for r, c in cells[:MAX_ERRORS]:
            loc = (*locs[r], model.features[c])
            field = _field(loc)
            detail.append(
                {
                    "field": field,
                    "loc": ["body", *loc],
                    "type": "out_of_range",
                    "msg": (
                        f"{field}: {value(r, c):g} is outside the accepted range "
                        f"{model.accepted_min[c]:g}..{model.accepted_max[c]:g} "
                        f"(observed in training: {model.observed_min[c]:g}..{model.observed_max[c]:g})"
                    ),
                }
            )
        body: dict[str, Any] = {"detail": detail}
        if len(cells) > MAX_ERRORS:
            body["errors_total"] = len(cells)
        return JSONResponse(body, status_code=422)

    # One prediction as JSON text, built by formatting: json.dumps of a dict per row costs
    # more than the whole model. Floats print as repr, exactly as json.dumps prints them
    # (and they are finite: 0 <= p <= 1). Key order as before: prediction, probability,
    # probabilities, warnings (then model, for a single record).
    _BENIGN = '{"prediction":"benign","probability":%r,"probabilities":{"malignant":%r,"benign":%r},"warnings":%s'
    _MALIGNANT = '{"prediction":"malignant","probability":%r,"probabilities":{"malignant":%r,"benign":%r},"warnings":%s'

    def _result(self, p_benign: float, p_malignant: float, warnings: str) -> str:
        if p_benign >= self._threshold:
            return self._BENIGN % (p_benign, p_malignant, p_benign, warnings)
        return self._MALIGNANT % (p_malignant, p_malignant, p_benign, warnings)

    def _warnings(self, columns: Any) -> str:
        return "[" + ",".join([self._warn_json[c] for c in columns]) + "]"

    def _count(self, n_rows: int, n_benign: int) -> None:
        if n_benign:
            self._benign.inc(n_benign)
        if n_rows - n_benign:
            self._malignant.inc(n_rows - n_benign)
        self.metrics.batch_rows.observe(n_rows)

    def classify_one(self, row: list[float]) -> JSONResponse | bytes:
        """One record, in plain Python floats (for a single row several times faster than
        numpy's per-call overhead; the same logit and probability, tests compare both paths).
        The answer's JSON body, or a 422 when a value lies outside the accepted domain."""
        # Range checks as C-level passes (map); which columns are off is worked out only
        # when one is.
        lo, hi = self._accepted
        if any(map(operator.lt, row, lo)) or any(map(operator.gt, row, hi)):
            refused = [c for c, v in enumerate(row) if v < lo[c] or v > hi[c]]
            return self._refuse([(0, c) for c in refused], lambda _r, c: row[c], [()])
        logit = self._bias + sum(map(operator.mul, row, self._weights))
        p_benign = 0.5 * (1.0 + math.tanh(0.5 * logit))
        self._count(1, 1 if p_benign >= self._threshold else 0)
        olo, ohi = self._observed
        warnings = "[]"
        if any(map(operator.lt, row, olo)) or any(map(operator.gt, row, ohi)):
            warnings = self._warnings([c for c, v in enumerate(row) if v < olo[c] or v > ohi[c]])
        return (self._result(p_benign, 1.0 - p_benign, warnings) + self._one_tail).encode()

    def classify_batch(self, x: np.ndarray) -> JSONResponse | bytes:
        """Several records (rows of x) with numpy: one matrix product for all rows. The
        answer's JSON body; a 422 refusing them all when one lies outside the accepted domain."""
        model = self.model
        assert model is not None
        refused = (x < model.accepted_min) | (x > model.accepted_max)
        if refused.any():
            cells = [(int(r), int(c)) for r, c in np.argwhere(refused)]
            return self._refuse(cells, lambda r, c: float(x[r, c]), [("records", i) for i in range(len(x))])
        benign = model.predict_proba(x)
        unusual = (x < model.observed_min) | (x > model.observed_max)
        warn_rows = np.flatnonzero(unusual.any(axis=1)).tolist()
        self._count(len(x), int(np.count_nonzero(benign >= model.threshold)))
        warnings = ["[]"] * len(x)
        for i in warn_rows:
            warnings[i] = self._warnings(np.flatnonzero(unusual[i]).tolist())
        b_fmt, m_fmt = self._BENIGN, self._MALIGNANT
        parts = [
            b_fmt % (b, m, b, w) if is_b else m_fmt % (m, m, b, w)
            for is_b, b, m, w in zip(
                (benign >= self._threshold).tolist(), benign.tolist(), (1.0 - benign).tolist(), warnings, strict=True
            )
        ]
        return (self._batch_head + "},".join(parts) + "}]}").encode()


class _Disconnected(Exception):
    """The client went away before its body arrived."""


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The body, or None when it exceeds `limit` bytes (read no further than that)."""
    for key, value in scope["headers"]:
        if key == b"content-length":
            if value.isdigit() and int(value) > limit:
                return None
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        if chunk:
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                return None
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _send_json(send: Send, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [*headers, (b"content-length", b"%d" % len(body))]}
    )
    await send({"type": "http.response.body", "body": body})


class _Delegate(Response):
    """A response that runs an ASGI handler: FastAPI's route for /predict hands over to the
    same handler that FastPaths calls directly."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handler(scope, receive, send)


class FastPaths:
    """Answers the hot routes (POST /predict, and the benchmark baselines on the same
    footing) as plain ASGI handlers, without FastAPI's routing and dependency solving:
    that machinery costs more per request than the model. Everything else, and every
    other method on these paths, goes to the FastAPI app unchanged. Under the /api prefix
    the path is matched without it (ObservabilityMiddleware sets root_path)."""

    def __init__(self, app: ASGIApp, handlers: dict[tuple[str, str], Any]) -> None:
        self.app = app
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            handler = self.handlers.get((scope["method"], path))
            if handler is not None:
                try:
                    await handler(scope, receive, send)
                except _Disconnected:
                    pass
                return
        await self.app(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    service = Service(settings)
    metrics = service.metrics

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Everything built so far (FastAPI, pydantic, numpy, the model) lives as long as the
        # process: out of the collector's sight, a full collection no longer walks it while
        # a request waits.
        gc.freeze()
        log.info(
            "started", extra={"fields": {"event": "started", "port": settings.port, "ready": service.model is not None}}
        )
        yield
        log.info("shutting down: in-flight requests finished", extra={"fields": {"event": "stopped"}})

    app = FastAPI(
        title="mlops inference API",
        version=__version__,
        description=(
            "Classifies a breast mass as malignant or benign from the thirty measurements of a fine "
            "needle aspirate (Wisconsin Diagnostic Breast Cancer features). Decision support only."
        ),
        lifespan=lifespan,
        # FastAPI's own /docs and /redoc load their scripts from a CDN: blank pages offline.
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service

    @app.get("/health", tags=["probes"], summary="Liveness: the process answers")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/ready",
        tags=["probes"],
        summary="Readiness: the model is loaded and its checksum verified",
        responses={503: {"description": "model not loaded, with the reason"}},
    )
    async def ready() -> JSONResponse:
        model = service.model
        if model is None:
            return JSONResponse({"status": "not ready", "reason": service.model_error}, status_code=503)
        return JSONResponse(
            {"status": "ready", "model": {"name": model.name, "version": model.version, "sha256": model.sha256}}
        )

    @app.get(
        "/model",
        tags=["model"],
        summary="The served model: identity, checksum, training metrics, features and their ranges",
        responses={503: {"description": "model not loaded"}},
    )
    async def model_info() -> JSONResponse:
        if service.model is None:
            return JSONResponse({"status": "not ready", "reason": service.model_error}, status_code=503)
        return JSONResponse(service.model_json)

    @app.post(
        "/predict",
        tags=["model"],
        summary='Classify one record, or a batch {"records": [...]}',
        responses={
            200: {"model": SinglePrediction, "description": "one record: SinglePrediction; a batch: BatchPrediction"},
            400: {"model": ErrorResponse, "description": "malformed JSON"},
            413: {"model": ErrorResponse, "description": "body or batch too large"},
            415: {"model": ErrorResponse, "description": "content type is not application/json"},
            422: {"model": ErrorResponse, "description": "a field is missing, mistyped, not finite or out of range"},
            503: {"description": "model not loaded"},
        },
    )
    async def predict(request: Request) -> Response:
        return _Delegate(predict_asgi)

    async def predict_asgi(scope: Scope, receive: Receive, send: Send) -> None:
        answer = await predict_answer(scope, receive)
        if isinstance(answer, bytes):
            await _send_json(send, answer, service.response_headers)
        else:
            await answer(scope, receive, send)

    def judge_one(payload: object, raw: bytes) -> JSONResponse | bytes:
        """One record (a parsed body without "records"): the fast check, else pydantic
        (from the bytes, as ever, unless the word "records" is in them: then from the
        parsed body, so the messages stay exactly what they were)."""
        row = _well_formed_record(payload)
        if row is None:
            try:
                if b'"records"' in raw:
                    record = PatientFeatures.model_validate(payload)
                else:
                    record = PatientFeatures.model_validate_json(raw)
            except ValidationError as exc:
                return _validation_error(exc, metrics)
            row = list(_row(record))
        return service.classify_one(row)

    async def predict_answer(scope: Scope, receive: Receive) -> Response | bytes:
        if service.model is None:
            return JSONResponse({"status": "not ready", "reason": service.model_error}, status_code=503)
        if not _is_json(_header(scope, b"content-type")):
            metrics.invalid.labels("content_type").inc()
            return _error(
                415, "content-type", "unsupported_media_type", "must be application/json", ["header", "content-type"]
            )
        raw = await _read_body(scope, receive, settings.max_body_bytes)
        if raw is None:
            metrics.invalid.labels("too_large").inc()
            return _error(413, "body", "too_large", f"exceeds {settings.max_body_bytes} bytes")
        # Parse once (pydantic-core, from bytes); well-formed bodies take the fast checks
        # (keys, types and finiteness in bulk); anything else goes to pydantic, which finds
        # and names the fault. The body limit bounds the work an oversized batch causes
        # before its length is judged.
        try:
            payload = from_json(raw)
        except ValueError as exc:
            metrics.invalid.labels("malformed_json").inc()
            # Worded as before: pydantic's "Invalid JSON: ..." where it judged the bytes.
            reason = f"Invalid JSON: {exc}" if b'"records"' not in raw else str(exc)
            return _error(400, "body", "json_invalid", f"malformed JSON: {reason}")
        if type(payload) is not dict or "records" not in payload:
            # One record (or not an object): "records" may still appear inside a value.
            return judge_one(payload, raw)
        fast = _well_formed_rows(payload)
        if fast is not None:
            n = len(fast)
            if n > settings.max_batch_rows:
                metrics.invalid.labels("too_large").inc()
                return _error(
                    413, "records", "too_long", f"a batch holds at most {settings.max_batch_rows} records, got {n}",
                    ["body", "records"],
                )  # fmt: skip
            return service.classify_batch(fast)
        try:
            batch = BatchRequest.model_validate(payload)
        except ValidationError as exc:
            return _validation_error(exc, metrics)
        if not batch.records:
            metrics.invalid.labels("empty_batch").inc()
            return _error(422, "records", "too_short", "a batch holds at least 1 record", ["body", "records"])
        if len(batch.records) > settings.max_batch_rows:
            metrics.invalid.labels("too_large").inc()
            return _error(
                413,
                "records",
                "too_long",
                f"a batch holds at most {settings.max_batch_rows} records, got {len(batch.records)}",
                ["body", "records"],
            )
        return service.classify_batch(np.asarray([_row(r) for r in batch.records], dtype=np.float64))

    fast_paths: dict[tuple[str, str], Any] = {("POST", "/predict"): predict_asgi}

    @app.get("/metrics", tags=["probes"], summary="Prometheus exposition", response_class=Response)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if settings.benchmark_endpoint:
        # Internal benchmark baseline (ENABLE_BENCHMARK_ENDPOINT=1): the same server,
        # middleware, dispatch (FastPaths) and way of answering as /predict, with no work.
        # The POST variant reads the body and discards it.
        constant = b'{"status":"ok","constant":true}'
        constant_headers = [(b"content-type", b"application/json")]

        async def constant_get(scope: Scope, receive: Receive, send: Send) -> None:
            await _send_json(send, constant, constant_headers)

        async def constant_post(scope: Scope, receive: Receive, send: Send) -> None:
            await _read_body(scope, receive, settings.max_body_bytes)
            await _send_json(send, constant, constant_headers)

        fast_paths[("GET", "/benchmark/constant")] = constant_get
        fast_paths[("POST", "/benchmark/constant")] = constant_post

        @app.get("/benchmark/constant", include_in_schema=False)
        async def constant_get_route() -> Response:
            return _Delegate(constant_get)

        @app.post("/benchmark/constant", include_in_schema=False)
        async def constant_post_route() -> Response:
            return _Delegate(constant_post)

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        return HTMLResponse(_docs_html(app.title, request.scope.get("root_path", "")))

    @app.get("/docs/swagger-init.js", include_in_schema=False)
    async def docs_init() -> Response:
        return Response(SWAGGER_INIT_JS, media_type="text/javascript")

    app.mount(SWAGGER_PATH, StaticFiles(directory=SWAGGER_DIR, check_dir=False), name="swagger-ui")

    def _openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model_cls in (PatientFeatures, BatchRequest, BatchPrediction):
            js = model_cls.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(js.pop("$defs", {}))
            components[model_cls.__name__] = js
        schema["paths"]["/predict"]["post"]["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/PatientFeatures"},
                            {"$ref": "#/components/schemas/BatchRequest"},
                        ]
                    }
                }
            },
        }
        app.openapi_schema = schema
        return schema

    app.openapi = _openapi  # type: ignore[method-assign]
    routes = [getattr(r, "path", "") for r in app.routes]
    app.add_middleware(FastPaths, handlers=fast_paths)  # inside ObservabilityMiddleware: measured and logged
    app.add_middleware(ObservabilityMiddleware, metrics=metrics, routes=routes, prefixes=(SWAGGER_PATH,))
    return app
