"""The FastAPI application: health, readiness, model description, prediction, metrics.

`POST /predict` is an ordinary FastAPI route whose body is a pydantic model (one record,
or a batch {"records": [...]}, told apart by the "records" key). FastAPI and pydantic do
all the checking; the exception handlers below only shape the answer, so that every error
names the field at fault and carries the documented status: 400 malformed JSON, 413 body
or batch too large, 415 wrong content type, 422 invalid field. Answers are serialised with
orjson.
"""

from __future__ import annotations

import gc
import html
import json
import logging
import math
import operator
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, multiprocess
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__
from .model import Model, ModelError, load_model
from .observability import Metrics, ObservabilityMiddleware, exposition, multiprocess_dir
from .schemas import (
    BODY_TAGS,
    FEATURES,
    BatchPrediction,
    BatchRequest,
    ErrorResponse,
    PredictRequest,
    SinglePrediction,
)
from .settings import Settings

log = logging.getLogger("mlops_inference")
MAX_ERRORS = 20  # errors listed per response; the count says how many there were in all
_row = operator.itemgetter(*FEATURES)  # a record's values in the model's feature order

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


class OrjsonResponse(JSONResponse):
    """JSON rendered by orjson (compiled; floats printed shortest-exact, like repr).

    FastAPI's own ORJSONResponse does the same but is deprecated in FastAPI 0.165."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class JsonRequest(Request):
    """A request whose JSON body is parsed by orjson. orjson refuses a few things Python's
    json module reads (NaN, Infinity, integers beyond 64 bits): such a body is read again
    with the json module, so that pydantic judges those values and names the field (422),
    and only JSON that neither parser reads is malformed (400)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = orjson.loads(body)
            except orjson.JSONDecodeError:
                self._json = json.loads(body)
        return self._json


class JsonRoute(APIRoute):
    """FastAPI's route with JsonRequest (the "custom Request and APIRoute class" pattern)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            return await handler(JsonRequest(request.scope, request.receive))

        return route_handler


class BodyLimit:
    """Refuses request bodies over `limit` bytes: by Content-Length before reading, or once
    the bytes received pass it. The 413 is raised where the route reads the body, so the
    app's exception handler answers it like every other error. (FastAPI's own
    max_body_size answers a too-long Content-Length in plain text, whatever the handlers.)"""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit
        received = 0
        for key, value in scope["headers"]:
            if key == b"content-length":
                if value.isdigit() and int(value) > limit:
                    received = limit + 1  # refused at the first read, before any byte
                break

        async def limited() -> Message:
            nonlocal received
            if received <= limit:
                message = await receive()
                received += len(message.get("body", b""))
                if received <= limit:
                    return message
            raise HTTPException(413)

        await self.app(scope, limited, send)


class ApiError(Exception):
    """A refused request: status, the errors' detail items (capped), why (a metric label)."""

    def __init__(self, status: int, reason: str, detail: list[dict[str, Any]], total: int | None = None) -> None:
        super().__init__(status, reason)
        self.status, self.reason, self.detail, self.total = status, reason, detail, total


def _field(loc: tuple[str | int, ...] | list[str | int]) -> str:
    """('records', 3, 'mean_radius') -> 'records[3].mean_radius'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def _item(field: str, kind: str, msg: str, loc: list[str | int] | None = None) -> dict[str, Any]:
    return {"field": field, "loc": loc if loc is not None else ["body"], "type": kind, "msg": f"{field}: {msg}"}


def _body_error(status: int, reason: str, kind: str, msg: str) -> ApiError:
    """An error about the body as a whole (field `body`)."""
    return ApiError(status, reason, [_item("body", kind, msg)])


NOT_JSON = ApiError(
    415,
    "content_type",
    [_item("content-type", "unsupported_media_type", "must be application/json", ["header", "content-type"])],
)


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
        self._ref = {"name": model.name, "version": model.version}
        self.response_headers = {"x-model-version": model.version}
        self._benign = self.metrics.predictions.labels(model.version, "benign")
        self._malignant = self.metrics.predictions.labels(model.version, "malignant")
        self.metrics.model_info.labels(model.name, model.version, model.sha256).set(1)
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

    def _refuse(
        self, cells: list[tuple[int, int]], value: Callable[[int, int], float], locs: list[tuple[Any, ...]]
    ) -> ApiError:
        """422 for values beyond the accepted domain: (row, feature) cells, value(row, feature)."""
        model = self.model
        assert model is not None
        detail = []
        for r, c in cells[:MAX_ERRORS]:
            loc = (*locs[r], model.features[c])
            detail.append(
                _item(
                    _field(loc),
                    "out_of_range",
                    f"{value(r, c):g} is outside the accepted range "
                    f"{model.accepted_min[c]:g}..{model.accepted_max[c]:g} "
                    f"(observed in training: {model.observed_min[c]:g}..{model.observed_max[c]:g})",
                    ["body", *loc],
                )
            )
        return ApiError(422, "out_of_range", detail, len(cells) if len(cells) > MAX_ERRORS else None)

    def _result(self, p_benign: float, warnings: list[str]) -> dict[str, Any]:
        p_malignant = 1.0 - p_benign
        benign = p_benign >= self._threshold
        return {
            "prediction": "benign" if benign else "malignant",
            "probability": p_benign if benign else p_malignant,
            "probabilities": {"malignant": p_malignant, "benign": p_benign},
            "warnings": warnings,
        }

    def _count(self, n_rows: int, n_benign: int) -> None:
        if n_benign:
            self._benign.inc(n_benign)
        if n_rows - n_benign:
            self._malignant.inc(n_rows - n_benign)
        self.metrics.batch_rows.observe(n_rows)

    def classify_one(self, row: list[float]) -> dict[str, Any]:
        """One record, in plain Python floats (for one row several times faster than numpy's
        per-call overhead; the same logit and probability: tests compare both paths).
        Raises ApiError (422) when a value lies outside the accepted domain."""
        # Range checks as C-level passes (map); which columns are off is worked out only
        # when one is.
        lo, hi = self._accepted
        if any(map(operator.lt, row, lo)) or any(map(operator.gt, row, hi)):
            refused = [c for c, v in enumerate(row) if v < lo[c] or v > hi[c]]
            raise self._refuse([(0, c) for c in refused], lambda _r, c: row[c], [()])
        logit = self._bias + sum(map(operator.mul, row, self._weights))
        p_benign = 0.5 * (1.0 + math.tanh(0.5 * logit))
        self._count(1, 1 if p_benign >= self._threshold else 0)
        olo, ohi = self._observed
        warnings: list[str] = []
        if any(map(operator.lt, row, olo)) or any(map(operator.gt, row, ohi)):
            warnings = [self._warn[c] for c, v in enumerate(row) if v < olo[c] or v > ohi[c]]
        return {**self._result(p_benign, warnings), "model": self._ref}

    def classify_batch(self, x: np.ndarray) -> dict[str, Any]:
        """Several records (rows of x) with numpy: one matrix product for all rows. Raises
        ApiError (422, refusing them all) when one lies outside the accepted domain."""
        model = self.model
        assert model is not None
        refused = (x < model.accepted_min) | (x > model.accepted_max)
        if refused.any():
            cells = [(int(r), int(c)) for r, c in np.argwhere(refused)]
            raise self._refuse(cells, lambda r, c: float(x[r, c]), [("records", i) for i in range(len(x))])
        benign = model.predict_proba(x)
        unusual = (x < model.observed_min) | (x > model.observed_max)
        is_benign = benign >= model.threshold
        self._count(len(x), int(np.count_nonzero(is_benign)))
        no_warnings: list[str] = []  # shared by every row without one (only serialised)
        warnings = [no_warnings] * len(x)
        for i in np.flatnonzero(unusual.any(axis=1)).tolist():
            warnings[i] = [self._warn[c] for c in np.flatnonzero(unusual[i]).tolist()]
        return {
            "model": self._ref,
            "predictions": [
                {
                    "prediction": "benign" if b else "malignant",
                    "probability": pb if b else pm,
                    "probabilities": {"malignant": pm, "benign": pb},
                    "warnings": w,
                }
                for b, pb, pm, w in zip(
                    is_benign.tolist(), benign.tolist(), (1.0 - benign).tolist(), warnings, strict=True
                )
            ],
        }


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
        if multiprocess_dir() is not None:  # this worker's live gauges leave the sums
            multiprocess.mark_process_dead(os.getpid())
        log.info("shutting down: in-flight requests finished", extra={"fields": {"event": "stopped"}})

    app = FastAPI(
        title="mlops inference API",
        version=__version__,
        description=(
            "Classifies a breast mass as malignant or benign from the thirty measurements of a fine "
            "needle aspirate (Wisconsin Diagnostic Breast Cancer features). Decision support only."
        ),
        lifespan=lifespan,
        default_response_class=OrjsonResponse,
        # FastAPI's OpenTelemetry hooks: the API exports Prometheus metrics of its own.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # FastAPI's own /docs and /redoc load their scripts from a CDN: blank pages offline.
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    app.router.route_class = JsonRoute

    # ------------------------------------------------------------ errors, in one shape

    def refused(exc: ApiError) -> OrjsonResponse:
        metrics.invalid.labels(exc.reason).inc()
        body: dict[str, Any] = {"detail": exc.detail}
        if exc.total is not None:
            body["errors_total"] = exc.total
        return OrjsonResponse(body, status_code=exc.status)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> Response:
        return refused(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> Response:
        """Why FastAPI could not judge the body, in the order a client should fix it: the
        model is not loaded (503), the body is not declared JSON (415: FastAPI then leaves
        it unparsed), it is not JSON (400), a field is wrong (422)."""
        if service.model is None:
            return not_ready()
        if not _is_json(request.headers.get("content-type")):
            return refused(NOT_JSON)
        errors = exc.errors()
        first = errors[0] if errors else {"type": "", "loc": ()}
        if first["type"] == "json_invalid":
            reason = first.get("ctx", {}).get("error") or first.get("msg", "")
            return refused(_body_error(400, "malformed_json", "json_invalid", f"malformed JSON: {reason}"))
        if first["type"] == "missing" and tuple(first["loc"]) == ("body",) and exc.body in (None, b""):
            # No body at all (FastAPI reads an empty body as a missing one).
            return refused(_body_error(400, "malformed_json", "json_invalid", "malformed JSON: empty body"))
        detail = []
        for e in errors[:MAX_ERRORS]:
            loc = list(e["loc"])
            if loc[:1] == ["body"]:
                loc = loc[1:]
            if loc[:1] and loc[0] in BODY_TAGS:  # the union's tag: which shape was meant
                loc = loc[1:]
            if not loc:  # the body itself: not a JSON object
                detail.append(
                    _item("body", "object_type", 'must be a JSON object: one record, or {"records": [record, ...]}')
                )
                continue
            field = _field(loc)
            detail.append({"field": field, "loc": ["body", *loc], "type": e["type"], "msg": f"{field}: {e['msg']}"})
        reason = "empty_batch" if first["type"] == "too_short" and detail[0]["field"] == "records" else "validation"
        return refused(ApiError(422, reason, detail, len(errors) if len(errors) > MAX_ERRORS else None))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 413:  # BodyLimit
            return refused(_body_error(413, "too_large", "too_large", f"exceeds {settings.max_body_bytes} bytes"))
        if exc.status_code == 400:  # a body FastAPI could not read at all (not UTF-8 JSON)
            return refused(_body_error(400, "malformed_json", "json_invalid", f"malformed JSON: {exc.detail}"))
        return OrjsonResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    # ------------------------------------------------------------ routes

    @app.get("/health", tags=["probes"], summary="Liveness: the process answers")
    async def health() -> OrjsonResponse:
        return OrjsonResponse({"status": "ok"})

    def not_ready() -> OrjsonResponse:
        return OrjsonResponse({"status": "not ready", "reason": service.model_error}, status_code=503)

    @app.get(
        "/ready",
        tags=["probes"],
        summary="Readiness: the model is loaded and its checksum verified",
        responses={503: {"description": "model not loaded, with the reason"}},
    )
    async def ready() -> OrjsonResponse:
        model = service.model
        if model is None:
            return not_ready()
        return OrjsonResponse(
            {"status": "ready", "model": {"name": model.name, "version": model.version, "sha256": model.sha256}}
        )

    @app.get(
        "/model",
        tags=["model"],
        summary="The served model: identity, checksum, training metrics, features and their ranges",
        responses={503: {"description": "model not loaded"}},
    )
    async def model_info() -> OrjsonResponse:
        return not_ready() if service.model is None else OrjsonResponse(service.model_json)

    @app.post(
        "/predict",
        tags=["model"],
        summary='Classify one record, or a batch {"records": [...]}',
        response_model=None,
        responses={
            200: {
                "model": SinglePrediction | BatchPrediction,
                "description": "one record: SinglePrediction; a batch: BatchPrediction",
            },
            400: {"model": ErrorResponse, "description": "malformed JSON"},
            413: {"model": ErrorResponse, "description": "body or batch too large"},
            415: {"model": ErrorResponse, "description": "content type is not application/json"},
            422: {"model": ErrorResponse, "description": "a field is missing, mistyped, not finite or out of range"},
            503: {"description": "model not loaded"},
        },
    )
    async def predict(body: PredictRequest) -> OrjsonResponse:
        if service.model is None:
            return not_ready()
        if not isinstance(body, BatchRequest):
            answer = service.classify_one(list(_row(body)))
        else:
            n = len(body.records)
            if n > settings.max_batch_rows:
                raise ApiError(
                    413,
                    "too_large",
                    [
                        _item(
                            "records", "too_long", f"a batch holds at most {settings.max_batch_rows} records, got {n}",
                            ["body", "records"],
                        )
                    ],
                )  # fmt: skip
            answer = service.classify_batch(np.array(list(map(_row, body.records)), dtype=np.float64))
        return OrjsonResponse(answer, headers=service.response_headers)

    @app.get("/metrics", tags=["probes"], summary="Prometheus exposition", response_class=Response)
    async def prometheus_metrics() -> Response:
        return Response(exposition(metrics), media_type=CONTENT_TYPE_LATEST)

    if settings.benchmark_endpoint:
        # Internal benchmark baseline (ENABLE_BENCHMARK_ENDPOINT=1): the same server,
        # middleware, routing and response class as /predict, with no work. The POST variant
        # reads the body and discards it.
        constant = {"status": "ok", "constant": True}

        @app.get("/benchmark/constant", include_in_schema=False)
        async def constant_get() -> OrjsonResponse:
            return OrjsonResponse(constant)

        @app.post("/benchmark/constant", include_in_schema=False)
        async def constant_post(request: Request) -> OrjsonResponse:
            await request.body()
            return OrjsonResponse(constant)

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        return HTMLResponse(_docs_html(app.title, request.scope.get("root_path", "")))

    @app.get("/docs/swagger-init.js", include_in_schema=False)
    async def docs_init() -> Response:
        return Response(SWAGGER_INIT_JS, media_type="text/javascript")

    app.mount(SWAGGER_PATH, StaticFiles(directory=SWAGGER_DIR, check_dir=False), name="swagger-ui")

    routes = [getattr(r, "path", "") for r in app.routes]
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)  # inside ObservabilityMiddleware
    app.add_middleware(ObservabilityMiddleware, metrics=metrics, routes=routes, prefixes=(SWAGGER_PATH,))
    return app
