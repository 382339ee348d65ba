"""The FastAPI application: health, readiness, model description, prediction, metrics.

`/predict` reads and validates its body itself rather than through FastAPI's body
parameter: that keeps full control of the status codes (400 malformed JSON, 413 too
large, 415 wrong content type, 422 invalid field) and of the messages, which always name
the field at fault, and it keeps the single-record path short. The OpenAPI document still
describes the body (see `_openapi`).
"""

from __future__ import annotations

import html
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


def _well_formed_rows(payload: object) -> np.ndarray | None:
    """The rows of {"records": [record, ...]} when every record has exactly the thirty
    fields, each a finite JSON number (not a boolean); None when anything is off, so that
    pydantic judges the body and names the fault. Same rules as PatientFeatures, in bulk."""
    if type(payload) is not dict or payload.keys() != {"records"}:
        return None
    records = payload["records"]
    if type(records) is not list or not records:
        return None
    rows = []
    for r in records:
        if type(r) is not dict or r.keys() != _FEATURE_KEYS:
            return None
        values = _values(r)
        if not set(map(type, values)) <= _NUMBER_TYPES:
            return None
        rows.append(values)
    try:
        x = np.array(rows, dtype=np.float64)
    except OverflowError:  # an integer beyond float range
        return None
    return x if np.isfinite(x).all() else None


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

    def _result(self, p_benign: float, warnings: list[str]) -> dict[str, Any]:
        benign = p_benign >= self._threshold
        return {
            "prediction": "benign" if benign else "malignant",
            "probability": p_benign if benign else 1.0 - p_benign,
            "probabilities": {"malignant": 1.0 - p_benign, "benign": p_benign},
            "warnings": warnings,
        }

    def _count(self, n_rows: int, n_benign: int) -> None:
        if n_benign:
            self._benign.inc(n_benign)
        if n_rows - n_benign:
            self._malignant.inc(n_rows - n_benign)
        self.metrics.batch_rows.observe(n_rows)

    def classify_one(self, row: list[float]) -> JSONResponse | dict[str, Any]:
        """One record, in plain Python floats: for a single row that is several times
        faster than numpy's per-call overhead, and computes the same logit and
        probability (tests compare both paths)."""
        lo, hi = self._accepted
        refused = [c for c, v in enumerate(row) if v < lo[c] or v > hi[c]]
        if refused:
            return self._refuse([(0, c) for c in refused], lambda _r, c: row[c], [()])
        logit = self._bias + sum(map(operator.mul, row, self._weights))
        p_benign = 0.5 * (1.0 + math.tanh(0.5 * logit))
        olo, ohi = self._observed
        warnings = [self._warn[c] for c, v in enumerate(row) if v < olo[c] or v > ohi[c]]
        self._count(1, 1 if p_benign >= self._threshold else 0)
        return self._result(p_benign, warnings)

    def classify_batch(self, x: np.ndarray) -> JSONResponse | list[dict[str, Any]]:
        """Several records (rows of x) with numpy; refuses them all (422) when one lies
        outside the accepted domain."""
        model = self.model
        assert model is not None
        refused = (x < model.accepted_min) | (x > model.accepted_max)
        if refused.any():
            cells = [(int(r), int(c)) for r, c in np.argwhere(refused)]
            return self._refuse(cells, lambda r, c: float(x[r, c]), [("records", i) for i in range(len(x))])
        benign = model.predict_proba(x)
        unusual = (x < model.observed_min) | (x > model.observed_max)
        warn_rows = set(np.flatnonzero(unusual.any(axis=1)).tolist())
        self._count(len(x), int(np.count_nonzero(benign >= model.threshold)))
        return [
            self._result(p, [self._warn[c] for c in np.flatnonzero(unusual[i])] if i in warn_rows else [])
            for i, p in enumerate(benign.tolist())
        ]


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it exceeds `limit` bytes (read no further than that)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    service = Service(settings)
    metrics = service.metrics

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
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

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        return HTMLResponse(_docs_html(app.title, request.scope.get("root_path", "")))

    @app.get("/docs/swagger-init.js", include_in_schema=False)
    async def docs_init() -> Response:
        return Response(SWAGGER_INIT_JS, media_type="text/javascript")

    app.mount(SWAGGER_PATH, StaticFiles(directory=SWAGGER_DIR, check_dir=False), name="swagger-ui")

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
        model = service.model
        if model is None:
            return JSONResponse({"status": "not ready", "reason": service.model_error}, status_code=503)
        if not _is_json(request.headers.get("content-type")):
            metrics.invalid.labels("content_type").inc()
            return _error(
                415, "content-type", "unsupported_media_type", "must be application/json", ["header", "content-type"]
            )
        raw = await _read_body(request, settings.max_body_bytes)
        if raw is None:
            metrics.invalid.labels("too_large").inc()
            return _error(413, "body", "too_large", f"exceeds {settings.max_body_bytes} bytes")
        ref = {"name": model.name, "version": model.version}
        headers = {"x-model-version": model.version}

        def answer_one(record: PatientFeatures) -> JSONResponse:
            one = service.classify_one(list(_row(record)))
            if isinstance(one, JSONResponse):
                return one
            one["model"] = ref
            return JSONResponse(one, headers=headers)

        if b'"records"' not in raw:
            # One record: parsed and validated in one pass by pydantic-core, straight from bytes.
            try:
                record = PatientFeatures.model_validate_json(raw)
            except ValidationError as exc:
                return _validation_error(exc, metrics)
            return answer_one(record)
        # A batch. Well-formed batches take a fast path (parse, then check keys, types and
        # finiteness in bulk); anything else goes to pydantic, which finds and names the
        # fault. The body limit bounds the work an oversized batch causes before its length
        # is judged.
        try:
            payload = from_json(raw)
        except ValueError as exc:
            metrics.invalid.labels("malformed_json").inc()
            return _error(400, "body", "json_invalid", f"malformed JSON: {exc}")
        fast = _well_formed_rows(payload)
        if fast is not None:
            n = len(fast)
            if n > settings.max_batch_rows:
                metrics.invalid.labels("too_large").inc()
                return _error(
                    413, "records", "too_long", f"a batch holds at most {settings.max_batch_rows} records, got {n}",
                    ["body", "records"],
                )  # fmt: skip
            result = service.classify_batch(fast)
            if isinstance(result, JSONResponse):
                return result
            return JSONResponse({"model": ref, "predictions": result}, headers=headers)
        if not isinstance(payload, dict) or "records" not in payload:
            # No "records" member: the word appeared inside a value. Judge one record.
            try:
                record = PatientFeatures.model_validate(payload)
            except ValidationError as exc:
                return _validation_error(exc, metrics)
            return answer_one(record)
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
        result = service.classify_batch(np.asarray([_row(r) for r in batch.records], dtype=np.float64))
        if isinstance(result, JSONResponse):
            return result
        return JSONResponse({"model": ref, "predictions": result}, headers=headers)

    @app.get("/metrics", tags=["probes"], summary="Prometheus exposition", response_class=Response)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    if settings.benchmark_endpoint:
        # Internal benchmark baseline (ENABLE_BENCHMARK_ENDPOINT=1): the same server, middleware
        # and response class as /predict, with no work. The POST variant reads the body.
        constant = {"status": "ok", "constant": True}

        @app.get("/benchmark/constant", include_in_schema=False)
        async def constant_get() -> JSONResponse:
            return JSONResponse(constant)

        @app.post("/benchmark/constant", include_in_schema=False)
        async def constant_post(request: Request) -> JSONResponse:
            await request.body()
            return JSONResponse(constant)

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
    app.add_middleware(ObservabilityMiddleware, metrics=metrics, routes=routes, prefixes=(SWAGGER_PATH,))
    return app
