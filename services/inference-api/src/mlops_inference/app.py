"""The FastAPI application: health, readiness, model description, prediction, metrics.

`POST /predict` is an ordinary FastAPI route whose body is a pydantic model (one record,
or a batch {"records": [...]}, told apart by the "records" key). FastAPI and pydantic do
all the checking; the exception handlers below only shape the answer, so that every error
names the field at fault and carries the documented status: 400 malformed JSON, 413 body
or batch too large, 415 wrong content type, 422 invalid field, 401 without valid
credentials (AUTH_MODE api_key or client_cert), 503 while no release is served. Answers
are serialised with orjson.

The model comes from a release (model.py): its checksums are verified on load, then its
golden records are run through the Classifier below, the very code that answers /predict,
and must get the answers the manifest records. Until all of that holds the API stays up
but not ready, and /ready says why.

Access control (AUTH_MODE) guards /predict alone; /health, /ready, /model, /metrics and
/docs stay open (probes and Prometheus use them; the frontend decides what is public).
Credentials are checked before the body is read, so a client without them learns nothing
from validation errors.
"""

from __future__ import annotations

import gc
import hashlib
import hmac
import html
import itertools
import json
import logging
import math
import operator
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import orjson
from fastapi import Depends, FastAPI, HTTPException, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, multiprocess
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import __version__
from .model import RELEASE_FORMAT, Model, ModelError, Release, load_release
from .observability import NOTE, Metrics, ObservabilityMiddleware, exposition, multiprocess_dir
from .schemas import (
    BODY_TAGS,
    FEATURES,
    BatchPrediction,
    BatchRequest,
    ErrorResponse,
    PatientFeatures,
    PredictRequest,
    SinglePrediction,
)
from .settings import Settings

log = logging.getLogger("mlops_inference")
MAX_ERRORS = 20  # errors listed per response; the count says how many there were in all
_row = operator.itemgetter(*FEATURES)  # a record's values in the model's feature order


def _matrix(records: list[Any]) -> np.ndarray:
    """Records as one matrix, a row each, columns in the model's feature order (numpy reads
    the values from one flat iterator: a third faster than from a list of tuples)."""
    n = len(records)
    values = itertools.chain.from_iterable(map(_row, records))
    return np.fromiter(values, dtype=np.float64, count=n * len(FEATURES)).reshape(n, len(FEATURES))


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

    def __init__(
        self,
        status: int,
        reason: str,
        detail: list[dict[str, Any]],
        total: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, reason)
        self.status, self.reason, self.detail, self.total = status, reason, detail, total
        self.headers = headers


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


def _note(request: Request) -> dict[str, Any]:
    """The request's note for its log line (ObservabilityMiddleware): outcome, rows, who
    asked. Only values of the app's choosing go there, never what the client sent."""
    note = request.scope.get(NOTE)
    return note if isinstance(note, dict) else {}


def _rows(body: Any) -> int | None:
    """How many records a parsed body holds, without looking at any value."""
    if not isinstance(body, dict):
        return None
    if "records" in body:
        records = body["records"]
        return len(records) if isinstance(records, list) else None
    return 1


# ---------------------------------------------------------------- access control

API_KEY_HEADER = "X-API-Key"
CLIENT_VERIFY_HEADER = "X-Client-Verify"
CLIENT_DN_HEADER = "X-Client-DN"
CLIENT = "mlops.client"  # scope key: who asked, once checked
_PRINTABLE = frozenset(chr(c) for c in range(0x20, 0x7F))


class Unauthorized(ApiError):
    """401: no credentials (`missing`) or wrong ones (`invalid`)."""

    def __init__(self, header: str, why: str, kind: str, challenge: str, msg: str) -> None:
        field = header.lower()
        detail = [_item(field, f"{why}_{kind}", msg, ["header", field])]
        super().__init__(401, "unauthorized", detail, headers={"WWW-Authenticate": challenge})
        self.why = why


class Guard:
    """Who may ask for predictions (AUTH_MODE).

    api_key: the X-API-Key header, read by FastAPI's APIKeyHeader (so the OpenAPI document
    declares it and Swagger UI shows an Authorize button); its sha256 is compared with
    every known hash (hmac.compare_digest, all of them: no early exit). The API knows the
    hashes alone. client_cert: the frontend verified a client certificate against the site
    CA and says so in X-Client-Verify (nginx's $ssl_client_verify, SUCCESS); the API must
    then be reachable through the frontend alone, which replaces that header on every
    request. Refusals count in mlops_inference_unauthorized_total{reason}."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.mode = settings.auth_mode
        self.metrics = metrics
        self.keys = tuple((name, bytes.fromhex(digest)) for name, digest in settings.api_keys)
        self.scheme = APIKeyHeader(
            name=API_KEY_HEADER,
            scheme_name="ApiKey",
            description="An API key of this site (its sha256 is in the API's API_KEYS_FILE).",
            auto_error=False,
        )

    def _refuse(self, why: str, header: str, kind: str, challenge: str, msg: str) -> NoReturn:
        self.metrics.unauthorized.labels(why).inc()
        raise Unauthorized(header, why, kind, challenge, msg)

    async def authorize(self, request: Request) -> str | None:
        """The name of who asks (an API key's name, a certificate's subject DN), None when
        AUTH_MODE is none; raises Unauthorized. Checked once per request."""
        scope = request.scope
        if CLIENT in scope:
            who: str | None = scope[CLIENT]
            return who
        if self.mode == "api_key":
            who = await self._api_key(request)
        elif self.mode == "client_cert":
            who = self._certificate(request)
        else:
            who = None
        scope[CLIENT] = who
        return who

    async def _api_key(self, request: Request) -> str:
        presented = await self.scheme(request)  # the header's value, or None
        if not presented:
            self._refuse(
                "missing", API_KEY_HEADER, "api_key", "ApiKey", f"missing: send an API key in {API_KEY_HEADER}"
            )
        # Starlette decodes header values as latin-1: encoding back gives the bytes sent.
        digest = hashlib.sha256(presented.encode("latin-1")).digest()
        who = None
        for name, known in self.keys:
            if hmac.compare_digest(digest, known):
                who = name
        if who is None:
            self._refuse("invalid", API_KEY_HEADER, "api_key", "ApiKey", "not a valid API key of this site")
        _note(request)["api_key_name"] = who
        return who

    def _certificate(self, request: Request) -> str:
        verify = request.headers.get(CLIENT_VERIFY_HEADER, "")
        if verify in ("", "NONE"):
            self._refuse(
                "missing", CLIENT_VERIFY_HEADER, "client_certificate", "Certificate",
                "missing: present a client certificate issued by the site CA",
            )  # fmt: skip
        if verify != "SUCCESS":
            self._refuse(
                "invalid", CLIENT_VERIFY_HEADER, "client_certificate", "Certificate",
                "the client certificate did not verify against the site CA",
            )  # fmt: skip
        dn = "".join(c for c in request.headers.get(CLIENT_DN_HEADER, "")[:256] if c in _PRINTABLE)
        _note(request)["client_dn"] = dn
        return dn or "certificate"

    def dependency(self) -> Callable[..., Awaitable[str | None]]:
        """The guarded routes' dependency: what the OpenAPI document shows, and the check
        itself when a route did not make it before reading the body (GuardedRoute does)."""
        if self.mode == "api_key":
            scheme = self.scheme

            async def api_key_client(request: Request, _key: str | None = Security(scheme)) -> str | None:
                return await self.authorize(request)

            return api_key_client

        async def certificate_client(request: Request) -> str | None:
            return await self.authorize(request)

        return certificate_client


class GuardedRoute(JsonRoute):
    """A JsonRoute that checks the credentials before FastAPI reads the body: without valid
    ones the answer is 401 whatever the body (FastAPI itself parses the body first and would
    answer 400 or 413 before its dependencies run)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            guard: Guard = request.app.state.guard
            await guard.authorize(request)
            return await handler(request)

        return route_handler


# ---------------------------------------------------------------- classification

_record = TypeAdapter(PatientFeatures)  # one record, judged as /predict judges it


class Classifier:
    """What /predict computes for one model: refusals beyond the accepted domain, the
    probability of benign, the label and the warnings. A release's golden records are run
    through it (check_golden) before the release is served: they prove the code that
    answers, not a copy of it. It counts nothing; Service does."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.weights = model.weights.tolist()
        self.bias = model.bias
        self.threshold = model.threshold
        self.accepted = (model.accepted_min.tolist(), model.accepted_max.tolist())
        self.observed = (model.observed_min.tolist(), model.observed_max.tolist())
        self.warn = [f"{name}: outside the range observed in training" for name in model.features]
        self.ref = {"name": model.name, "version": model.version}

    def refuse(
        self, cells: list[tuple[int, int]], value: Callable[[int, int], float], locs: list[tuple[Any, ...]]
    ) -> ApiError:
        """422 for values beyond the accepted domain: (row, feature) cells, value(row, feature)."""
        model = self.model
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

    def one(self, row: list[float]) -> tuple[dict[str, Any], bool]:
        """One record, in plain Python floats (for one row several times faster than numpy's
        per-call overhead; the same logit and probability: tests compare both paths).
        (answer, benign); raises ApiError (422) when a value lies outside the accepted domain."""
        # Range checks as C-level passes (map); which columns are off is worked out only
        # when one is. The accepted ranges contain the observed ones (load_release checks),
        # so a record within the observed ranges, the usual case, needs two passes, not four.
        olo, ohi = self.observed
        warnings: list[str] = []
        if any(map(operator.lt, row, olo)) or any(map(operator.gt, row, ohi)):
            lo, hi = self.accepted
            if any(map(operator.lt, row, lo)) or any(map(operator.gt, row, hi)):
                refused = [c for c, v in enumerate(row) if v < lo[c] or v > hi[c]]
                raise self.refuse([(0, c) for c in refused], lambda _r, c: row[c], [()])
            warnings = [self.warn[c] for c, v in enumerate(row) if v < olo[c] or v > ohi[c]]
        logit = self.bias + sum(map(operator.mul, row, self.weights))
        p_benign = 0.5 * (1.0 + math.tanh(0.5 * logit))
        p_malignant = 1.0 - p_benign
        benign = p_benign >= self.threshold
        answer = {
            "prediction": "benign" if benign else "malignant",
            "probability": p_benign if benign else p_malignant,
            "probabilities": {"malignant": p_malignant, "benign": p_benign},
            "warnings": warnings,
            "model": self.ref,
        }
        return answer, benign

    def batch(self, x: np.ndarray) -> tuple[dict[str, Any], int]:
        """Several records (rows of x) with numpy: one matrix product for all rows.
        (answer, number classified benign); raises ApiError (422, refusing them all) when
        one lies outside the accepted domain."""
        model = self.model
        refused = (x < model.accepted_min) | (x > model.accepted_max)
        if refused.any():
            cells = [(int(r), int(c)) for r, c in np.argwhere(refused)]
            raise self.refuse(cells, lambda r, c: float(x[r, c]), [("records", i) for i in range(len(x))])
        benign = model.predict_proba(x)
        unusual = (x < model.observed_min) | (x > model.observed_max)
        is_benign = benign >= model.threshold
        no_warnings: list[str] = []  # shared by every row without one (only serialised)
        warnings = [no_warnings] * len(x)
        for i in np.flatnonzero(unusual.any(axis=1)).tolist():
            warnings[i] = [self.warn[c] for c in np.flatnonzero(unusual[i]).tolist()]
        answer = {
            "model": self.ref,
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
        return answer, int(np.count_nonzero(is_benign))


def _numbers(expected: float, got: float) -> tuple[str, str]:
    """Two probabilities printed so that they differ when they do (6 digits, more if needed)."""
    for digits in (6, 10, 17):
        a, b = f"{expected:.{digits}g}", f"{got:.{digits}g}"
        if a != b:
            break
    return a, b


def check_golden(classifier: Classifier, release: Release) -> None:
    """Every golden record through the code that serves /predict (validation, domain check,
    the single-record path and the batch path): label equal, p_benign within the release's
    tolerance. Raises ModelError (check `golden`) naming how many differ and the first."""
    tol = release.golden_tolerance
    failures: dict[str, str] = {}  # record id -> what went wrong (first failure per record)
    valid = []
    for rec in release.golden:
        try:
            values = _record.validate_python(rec.input)
            answer, _ = classifier.one(list(_row(values)))
        except ValidationError as exc:
            fields = sorted({_field(e["loc"]) for e in exc.errors()})
            failures[rec.id] = f"{rec.id} input refused ({', '.join(fields[:3])}: invalid)"
            continue
        except ApiError as exc:
            fields = [d["field"] for d in exc.detail]
            failures[rec.id] = f"{rec.id} input refused ({', '.join(fields[:3])}: out of range)"
            continue
        valid.append((rec, values))
        label, p = answer["prediction"], answer["probabilities"]["benign"]
        if label != rec.label or not abs(p - rec.p_benign) <= tol:
            want, got = _numbers(rec.p_benign, p)
            failures[rec.id] = f"{rec.id} expected {rec.label} {want}, got {label} {got}"
    if valid:
        try:
            answer, _ = classifier.batch(_matrix([values for _, values in valid]))
        except ApiError:  # the rows passed the single path's domain check: cannot happen
            raise ModelError(
                "golden records: the batch path refused inputs the single path accepted", "golden"
            ) from None
        for (rec, _), pred in zip(valid, answer["predictions"], strict=True):
            label, p = pred["prediction"], pred["probabilities"]["benign"]
            if rec.id not in failures and (label != rec.label or not abs(p - rec.p_benign) <= tol):
                want, got = _numbers(rec.p_benign, p)
                failures[rec.id] = f"{rec.id} expected {rec.label} {want}, got {label} {got} (batch path)"
    if failures:
        first = next(iter(failures.values()))
        counted = f"{len(failures)} of {len(release.golden)}"
        raise ModelError(f"golden records: {counted} answers differ from the manifest (first: {first})", "golden")


class Service:
    """State shared by the handlers: settings, metrics and the release (None when not ready)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.model: Model | None = None
        self.classifier: Classifier | None = None
        self.release: Release | None = None
        self.model_error: str | None = None
        self.model_check: str | None = None
        self.model_json: dict[str, Any] = {}
        self.ready_json: dict[str, Any] = {}
        self.response_headers: dict[str, str] = {}
        self.load()

    def model_ref(self) -> tuple[str, str]:
        """(name, version) served, or asked for while none is."""
        if self.release is not None:
            return self.release.name, self.release.version
        return self.settings.model_name, self.settings.model_version

    def load(self) -> None:
        s = self.settings
        what = f"model {s.model_name} {s.model_version}"
        try:
            release = load_release(s.model_dir, s.model_name, s.model_version, FEATURES, s.model_sha256)
            classifier = Classifier(release.model)
            check_golden(classifier, release)
        except ModelError as exc:
            self.model = self.classifier = self.release = None
            self.model_error, self.model_check = f"{what}: {exc}", exc.check
            self.metrics.model_ready.set(0)
            log.error(
                "model refused",
                extra={
                    "fields": {
                        "event": "model_refused",
                        "model": s.model_name,
                        "version": s.model_version,
                        "check": exc.check,
                        "reason": self.model_error,
                    }
                },
            )
            return
        model = release.model
        self.model, self.classifier, self.release = model, classifier, release
        self.model_error = self.model_check = None
        self.model_json = self._describe(release)
        self.ready_json = {
            "status": "ready",
            "model": {"name": release.name, "version": release.version, "sha256": release.sha256},
            "golden": {"records": len(release.golden), "passed": True},
        }
        self.response_headers = {"x-model-version": model.version}
        self._benign = self.metrics.predictions.labels(model.version, "benign")
        self._malignant = self.metrics.predictions.labels(model.version, "malignant")
        self.metrics.model_info.labels(release.name, release.version, release.sha256).set(1)
        self.metrics.model_ready.set(1)
        log.info(
            "model loaded",
            extra={
                "fields": {
                    "event": "model_loaded",
                    "model": release.name,
                    "version": release.version,
                    "sha256": release.sha256,
                    "files": release.files,
                    "golden_records": len(release.golden),
                }
            },
        )

    def _describe(self, release: Release) -> dict[str, Any]:
        model = release.model
        d = model.description
        return {
            "name": model.name,
            "version": model.version,
            "sha256": release.sha256,
            "release": {
                "format": RELEASE_FORMAT,
                "files": release.files,
                "golden": {"records": len(release.golden), "tolerance": release.golden_tolerance, "passed": True},
            },
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

    def _count(self, n_rows: int, n_benign: int) -> None:
        if n_benign:
            self._benign.inc(n_benign)
        if n_rows - n_benign:
            self._malignant.inc(n_rows - n_benign)
        self.metrics.batch_rows.observe(n_rows)

    def classify_one(self, row: list[float]) -> dict[str, Any]:
        """One record (Classifier.one), counted. Raises ApiError (422) beyond the domain."""
        assert self.classifier is not None
        answer, benign = self.classifier.one(row)
        self._count(1, 1 if benign else 0)
        return answer

    def classify_batch(self, x: np.ndarray) -> dict[str, Any]:
        """Several records (Classifier.batch), counted. Raises ApiError (422) beyond the domain."""
        assert self.classifier is not None
        answer, n_benign = self.classifier.batch(x)
        self._count(len(x), n_benign)
        return answer


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    settings.check()
    service = Service(settings)
    metrics = service.metrics
    guard = Guard(settings, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Everything built so far (FastAPI, pydantic, numpy, the model) lives as long as the
        # process: out of the collector's sight, a full collection no longer walks it while
        # a request waits.
        gc.freeze()
        log.info(
            "started",
            extra={
                "fields": {
                    "event": "started",
                    "port": settings.port,
                    "ready": service.model is not None,
                    "auth_mode": settings.auth_mode,
                }
            },
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
    app.state.guard = guard
    app.router.route_class = JsonRoute

    # ------------------------------------------------------------ errors, in one shape

    def refused(exc: ApiError) -> OrjsonResponse:
        if exc.status != 401:  # refusals for want of credentials count on their own
            metrics.invalid.labels(exc.reason).inc()
        body: dict[str, Any] = {"detail": exc.detail}
        if exc.total is not None:
            body["errors_total"] = exc.total
        return OrjsonResponse(body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        _note(request)["outcome"] = exc.reason
        return refused(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> Response:
        """Why FastAPI could not judge the body, in the order a client should fix it: the
        model is not loaded (503), the body is not declared JSON (415: FastAPI then leaves
        it unparsed), it is not JSON (400), a field is wrong (422)."""
        note = _note(request)
        note["rows"] = _rows(exc.body)
        if service.model is None:
            note["outcome"] = "not_ready"
            return not_ready()
        if not _is_json(request.headers.get("content-type")):
            note["outcome"] = NOT_JSON.reason
            return refused(NOT_JSON)
        errors = exc.errors()
        first = errors[0] if errors else {"type": "", "loc": ()}
        if first["type"] == "json_invalid":
            reason = first.get("ctx", {}).get("error") or first.get("msg", "")
            note["outcome"] = "malformed_json"
            return refused(_body_error(400, "malformed_json", "json_invalid", f"malformed JSON: {reason}"))
        if first["type"] == "missing" and tuple(first["loc"]) == ("body",) and exc.body in (None, b""):
            # No body at all (FastAPI reads an empty body as a missing one).
            note["outcome"] = "malformed_json"
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
        note["outcome"] = reason
        return refused(ApiError(422, reason, detail, len(errors) if len(errors) > MAX_ERRORS else None))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 413:  # BodyLimit
            _note(request)["outcome"] = "too_large"
            return refused(_body_error(413, "too_large", "too_large", f"exceeds {settings.max_body_bytes} bytes"))
        if exc.status_code == 400:  # a body FastAPI could not read at all (not UTF-8 JSON)
            _note(request)["outcome"] = "malformed_json"
            return refused(_body_error(400, "malformed_json", "json_invalid", f"malformed JSON: {exc.detail}"))
        return OrjsonResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    # ------------------------------------------------------------ routes

    @app.get("/health", tags=["probes"], summary="Liveness: the process answers")
    async def health() -> OrjsonResponse:
        return OrjsonResponse({"status": "ok"})

    def not_ready() -> OrjsonResponse:
        return OrjsonResponse(
            {"status": "not ready", "reason": service.model_error, "check": service.model_check}, status_code=503
        )

    @app.get(
        "/ready",
        tags=["probes"],
        summary="Readiness: the model release is loaded, its checksums verified, its golden records answered",
        responses={503: {"description": "no release served: the reason, and the check (load, checksum, golden)"}},
    )
    async def ready() -> OrjsonResponse:
        return not_ready() if service.model is None else OrjsonResponse(service.ready_json)

    @app.get(
        "/model",
        tags=["model"],
        summary="The served model: identity, checksums, training metrics, features and their ranges",
        responses={503: {"description": "model not loaded"}},
    )
    async def model_info() -> OrjsonResponse:
        return not_ready() if service.model is None else OrjsonResponse(service.model_json)

    # /predict, guarded by AUTH_MODE: its route checks credentials before the body is read
    # (GuardedRoute), and its dependency declares the scheme in the OpenAPI document.
    guarded = guard.mode != "none"
    unauthorized_doc: dict[int | str, dict[str, Any]] = (
        {401: {"model": ErrorResponse, "description": f"no valid credentials (AUTH_MODE {settings.auth_mode})"}}
        if guarded
        else {}
    )

    async def predict(request: Request, body: PredictRequest) -> OrjsonResponse:
        note = _note(request)
        if service.model is None:
            note["outcome"] = "not_ready"
            return not_ready()
        if not isinstance(body, BatchRequest):
            note["rows"] = 1
            answer = service.classify_one(list(_row(body)))
        else:
            n = len(body.records)
            note["rows"] = n
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
            answer = service.classify_batch(_matrix(body.records))
        note["outcome"] = "ok"
        return OrjsonResponse(answer, headers=service.response_headers)

    app.router.add_api_route(
        "/predict",
        predict,
        methods=["POST"],
        tags=["model"],
        summary='Classify one record, or a batch {"records": [...]}',
        response_model=None,
        responses={
            200: {
                "model": SinglePrediction | BatchPrediction,
                "description": "one record: SinglePrediction; a batch: BatchPrediction",
            },
            400: {"model": ErrorResponse, "description": "malformed JSON"},
            **unauthorized_doc,
            413: {"model": ErrorResponse, "description": "body or batch too large"},
            415: {"model": ErrorResponse, "description": "content type is not application/json"},
            422: {"model": ErrorResponse, "description": "a field is missing, mistyped, not finite or out of range"},
            503: {"description": "model not loaded"},
        },
        dependencies=[Depends(guard.dependency())] if guarded else None,
        route_class_override=GuardedRoute if guarded else None,
    )

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
    app.add_middleware(
        ObservabilityMiddleware,
        metrics=metrics,
        routes=routes,
        prefixes=(SWAGGER_PATH,),
        prediction_routes=("/predict",),
        model_ref=service.model_ref,
    )
    return app
