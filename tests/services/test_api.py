"""The inference API in process (FastAPI TestClient): every endpoint, every bad input."""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

import pytest
from conftest import ASSET_TYPES, MODELS_DIR, docs_assets
from mlops_inference.app import create_app
from mlops_inference.schemas import FEATURES
from mlops_inference.settings import Settings, SettingsError

RELEASE = MODELS_DIR / "breast-cancer-lr-1.0.0"


@pytest.fixture(scope="session")
def model_doc() -> dict[str, Any]:
    """The served model, from its release directory (overrides conftest's flat-file path)."""
    return json.loads((RELEASE / "model.json").read_text())


def post_json(client: Any, body: object, path: str = "/predict") -> Any:
    return client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})


def only_error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    detail = resp.json()["detail"]
    assert isinstance(detail, list) and detail
    return detail[0]


# ---------------------------------------------------------------- probes and model


def test_health_is_ok(client: Any) -> None:
    resp = client.get("/health")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["x-request-id"])


def test_ready_names_the_verified_release(client: Any, settings: Settings) -> None:
    resp = client.get("/ready")
    assert resp.status_code == 200
    release_dir = settings.model_dir / "breast-cancer-lr-1.0.0"
    digest = hashlib.sha256((release_dir / "manifest.json").read_bytes()).hexdigest()  # the release's identity
    assert resp.json() == {
        "status": "ready",
        "model": {"name": "breast-cancer-lr", "version": "1.0.0", "sha256": digest},
        "golden": {"records": 8, "passed": True},
    }


def test_model_describes_identity_metrics_and_feature_ranges(client: Any, model_doc: dict[str, Any]) -> None:
    body = client.get("/model").json()
    assert (body["name"], body["version"]) == ("breast-cancer-lr", "1.0.0")
    assert body["sha256"] == client.get("/ready").json()["model"]["sha256"]
    model_sha = hashlib.sha256((RELEASE / "model.json").read_bytes()).hexdigest()
    assert body["release"] == {
        "format": "mlops-model-release/1",
        "files": {"model.json": model_sha},
        "golden": {"records": 8, "tolerance": 1e-6, "passed": True},
    }
    assert body["classes"] == ["malignant", "benign"]
    assert body["metrics"]["test_accuracy"] > 0.9
    assert body["metrics"]["test_roc_auc"] > 0.95
    assert [f["name"] for f in body["features"]] == list(FEATURES)
    for f in body["features"]:
        assert f["accepted_min"] <= f["observed_min"] <= f["median"] <= f["observed_max"] <= f["accepted_max"]
    assert body["max_batch_rows"] == 50


def test_prefix_api_is_served_like_the_root(client: Any) -> None:
    assert client.get("/api/health").json() == {"status": "ok"}
    assert client.get("/api/ready").status_code == 200


def test_docs_and_openapi_describe_predict(client: Any) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    refs = {item["$ref"].rsplit("/", 1)[1] for item in body["oneOf"]}
    assert refs == {"PatientFeatures", "BatchRequest"}
    assert set(spec["components"]["schemas"]["PatientFeatures"]["properties"]) == set(FEATURES)
    assert "/benchmark/constant" not in spec["paths"]


def test_docs_behind_the_api_prefix_point_at_the_prefixed_spec(client: Any) -> None:
    assert "/api/openapi.json" in client.get("/api/docs").text


@pytest.mark.parametrize("prefix", ["", "/api"])
def test_docs_load_only_local_assets_that_are_served(client: Any, swagger_assets: Any, prefix: str) -> None:
    resp = client.get(prefix + "/docs")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    urls = docs_assets(resp.text, prefix)
    assert {u.rsplit("/", 1)[1] for u in urls} == {
        "swagger-ui.css", "favicon-32x32.png", "swagger-ui-bundle.js", "swagger-init.js",
    }  # fmt: skip
    for url in urls:
        asset = client.get(url)
        assert asset.status_code == 200, url
        suffix = url[url.rindex(".") :]
        assert asset.headers["content-type"].split(";")[0] == ASSET_TYPES[suffix], url
        assert len(asset.content) > 100, url
    bundle = client.get(prefix + "/static/swagger/swagger-ui-bundle.js").content
    assert b"SwaggerUIBundle" in bundle and len(bundle) > 500_000
    init = client.get(prefix + "/docs/swagger-init.js").text
    assert "SwaggerUIBundle(" in init and "validatorUrl: null" in init and "http" not in init
    spec = client.get(prefix + "/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    # FastAPI's own CDN page is gone; unknown files are 404.
    assert client.get(prefix + "/redoc").status_code == 404
    assert client.get(prefix + "/static/swagger/nope.js").status_code == 404


def test_static_files_share_one_metric_route(client: Any, swagger_assets: Any) -> None:
    client.get("/static/swagger/swagger-ui.css")
    client.get("/api/static/swagger/swagger-ui-bundle.js")
    text = client.get("/metrics").text
    assert 'inference_http_requests_total{method="GET",path="/static/swagger",status="200"} 2.0' in text


# ---------------------------------------------------------------- predictions


def test_predict_one_record(client: Any, record: dict[str, float]) -> None:
    resp = post_json(client, record)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["prediction"] in ("malignant", "benign")
    assert math.isclose(body["probabilities"]["malignant"] + body["probabilities"]["benign"], 1.0)
    assert body["probability"] == body["probabilities"][body["prediction"]] >= 0.5
    assert body["model"] == {"name": "breast-cancer-lr", "version": "1.0.0"}
    assert resp.headers["x-model-version"] == "1.0.0"


def test_predictions_match_the_training_labels(client: Any) -> None:
    """The served model agrees with the real diagnoses on the data set it came from."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    records = [dict(zip(FEATURES, map(float, row), strict=True)) for row in data.data[:50]]
    resp = post_json(client, {"records": records})
    assert resp.status_code == 200, resp.text
    predicted = [p["prediction"] for p in resp.json()["predictions"]]
    truth = [str(data.target_names[t]) for t in data.target[:50]]
    agree = sum(p == t for p, t in zip(predicted, truth, strict=True))
    assert agree >= 46, (agree, predicted, truth)
    assert {"malignant", "benign"} <= set(predicted)


def test_predict_batch_keeps_order(client: Any, record: dict[str, float], model_doc: dict[str, Any]) -> None:
    worst = {f["name"]: f["observed_max"] for f in model_doc["features"]}  # large, irregular: malignant
    resp = post_json(client, {"records": [record, worst, record]})
    assert resp.status_code == 200, resp.text
    preds = resp.json()["predictions"]
    assert [p["prediction"] for p in preds] == ["benign", "malignant", "benign"]
    assert resp.json()["model"]["version"] == "1.0.0"


def test_value_outside_observed_but_accepted_range_warns(
    client: Any, record: dict[str, float], model_doc: dict[str, Any]
) -> None:
    f = model_doc["features"][0]
    value = f["observed_max"] + 0.25 * (f["observed_max"] - f["observed_min"])
    resp = post_json(client, {**record, f["name"]: value})
    assert resp.status_code == 200, resp.text
    assert resp.json()["warnings"] == [f"{f['name']}: outside the range observed in training"]


def test_integers_are_numbers(client: Any, record: dict[str, float]) -> None:
    resp = post_json(client, {**record, "mean_texture": 20})
    assert resp.status_code == 200, resp.text


# ---------------------------------------------------------------- bad input: never a 500


def test_missing_field_is_named(client: Any, record: dict[str, float]) -> None:
    body = dict(record)
    del body["worst_area"]
    err = only_error(post_json(client, body), 422)
    assert err["field"] == "worst_area" and err["type"] == "missing"
    assert err["msg"].startswith("worst_area:")


def test_missing_field_in_batch_names_row_and_field(client: Any, record: dict[str, float]) -> None:
    broken = {k: v for k, v in record.items() if k != "mean_area"}
    err = only_error(post_json(client, {"records": [record, broken]}), 422)
    assert err["field"] == "records[1].mean_area"
    assert err["loc"] == ["body", "records", 1, "mean_area"]


@pytest.mark.parametrize("value", ["12.5", "abc", True, None, [1.0], {"v": 1}])
def test_wrong_type_is_named(client: Any, record: dict[str, float], value: object) -> None:
    err = only_error(post_json(client, {**record, "mean_texture": value}), 422)
    assert err["field"] == "mean_texture"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinite_values_are_refused(client: Any, record: dict[str, float], literal: str) -> None:
    text = json.dumps({**record, "mean_smoothness": 0.1}).replace(
        '"mean_smoothness": 0.1', f'"mean_smoothness": {literal}'
    )
    resp = client.post("/predict", content=text, headers={"content-type": "application/json"})
    err = only_error(resp, 422)
    assert err["field"] == "mean_smoothness" and err["type"] == "finite_number"


@pytest.mark.parametrize("side", ["high", "negative"])
def test_value_far_outside_training_range_is_refused(
    client: Any, record: dict[str, float], model_doc: dict[str, Any], side: str
) -> None:
    f = next(f for f in model_doc["features"] if f["name"] == "worst_area")
    value = f["accepted_max"] * 3 if side == "high" else -1.0
    err = only_error(post_json(client, {**record, "worst_area": value}), 422)
    assert err["field"] == "worst_area" and err["type"] == "out_of_range"
    assert "accepted range" in err["msg"]


def test_out_of_range_in_batch_names_row(client: Any, record: dict[str, float]) -> None:
    err = only_error(post_json(client, {"records": [record, record, {**record, "mean_radius": 1e6}]}), 422)
    assert err["field"] == "records[2].mean_radius"


def test_unknown_field_is_named(client: Any, record: dict[str, float]) -> None:
    err = only_error(post_json(client, {**record, "mean_radiuss": 10.0}), 422)
    assert err["field"] == "mean_radiuss" and err["type"] == "extra_forbidden"


def test_empty_batch_is_refused(client: Any) -> None:
    err = only_error(post_json(client, {"records": []}), 422)
    assert err["field"] == "records" and err["type"] == "too_short"


def test_oversized_batch_is_refused(client: Any, record: dict[str, float]) -> None:
    err = only_error(post_json(client, {"records": [record] * 51}), 413)
    assert err["field"] == "records" and "at most 50" in err["msg"]


def test_oversized_body_is_refused(client: Any) -> None:
    resp = client.post("/predict", content=b" " * (300 * 1024), headers={"content-type": "application/json"})
    err = only_error(resp, 413)
    assert err["field"] == "body"


def test_records_not_a_list_is_named(client: Any) -> None:
    err = only_error(post_json(client, {"records": "all of them"}), 422)
    assert err["field"] == "records"


@pytest.mark.parametrize("body", [b'{"mean_radius": 1.0,', b"{'mean_radius': 1}", b"\xff\xfe", b""])
def test_malformed_json_is_400(client: Any, body: bytes) -> None:
    err = only_error(client.post("/predict", content=body, headers={"content-type": "application/json"}), 400)
    assert err["field"] == "body" and err["type"] == "json_invalid"


@pytest.mark.parametrize("body", [[1, 2, 3], 42, "text", None])
def test_json_that_is_not_an_object_is_named(client: Any, body: object) -> None:
    err = only_error(post_json(client, body), 422)
    assert err["field"] == "body"


@pytest.mark.parametrize(
    "ctype", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)
def test_wrong_content_type_is_415(client: Any, record: dict[str, float], ctype: str | None) -> None:
    headers = {"content-type": ctype} if ctype else {}
    resp = client.post("/predict", content=json.dumps(record).encode(), headers=headers)
    err = only_error(resp, 415)
    assert err["field"] == "content-type"


def test_json_content_type_with_charset_is_accepted(client: Any, record: dict[str, float]) -> None:
    resp = client.post(
        "/predict", content=json.dumps(record), headers={"content-type": "application/json; charset=utf-8"}
    )
    assert resp.status_code == 200


def test_many_errors_are_capped_and_counted(client: Any) -> None:
    resp = post_json(client, {"records": [{}] * 3})
    assert resp.status_code == 422
    body = resp.json()
    assert len(body["detail"]) == 20 and body["errors_total"] == 90


def test_wrong_method_and_unknown_path_are_4xx(client: Any) -> None:
    assert client.get("/predict").status_code == 405
    assert client.get("/nope").status_code == 404


# ---------------------------------------------------------------- readiness refusals


def test_unknown_version_is_not_ready_but_alive(settings: Settings) -> None:
    from fastapi.testclient import TestClient

    app = create_app(Settings(model_dir=settings.model_dir, model_version="9.9.9"))
    with TestClient(app) as c:
        assert c.get("/health").status_code == 200
        resp = c.get("/ready")
        assert resp.status_code == 503
        body = resp.json()
        assert body["reason"].startswith("model breast-cancer-lr 9.9.9: manifest not found"), body
        assert body["check"] == "load"
        assert c.post("/predict", json={}).status_code == 503
        assert c.get("/model").status_code == 503
        assert "inference_model_ready 0.0" in c.get("/metrics").text


def test_sha256_pin_mismatch_is_not_ready(settings: Settings) -> None:
    from fastapi.testclient import TestClient

    app = create_app(Settings(model_dir=settings.model_dir, model_sha256="0" * 64))
    with TestClient(app) as c:
        resp = c.get("/ready")
        assert resp.status_code == 503 and "MODEL_SHA256" in resp.json()["reason"]
        assert resp.json()["check"] == "checksum" and "checksum of manifest.json" in resp.json()["reason"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODEL_VERSION": "../../etc/passwd"}, "MODEL_VERSION"),
        ({"PORT": "eighty"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"MODEL_SHA256": "abc"}, "MODEL_SHA256"),
        ({"ENABLE_BENCHMARK_ENDPOINT": "maybe"}, "ENABLE_BENCHMARK_ENDPOINT"),
        ({"AUTH_MODE": "password"}, "AUTH_MODE"),
        ({"AUTH_MODE": "api_key"}, "API_KEYS_FILE"),
    ],
)
def test_bad_settings_are_refused_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_settings_from_env() -> None:
    s = Settings.from_env({"MODEL_DIR": "/models", "MODEL_VERSION": "1.2.0", "PORT": "9000", "LOG_LEVEL": "WARNING"})
    assert (str(s.model_dir), s.model_version, s.port, s.log_level) == ("/models", "1.2.0", 9000, "warning")
    assert s.benchmark_endpoint is False
    assert (s.auth_mode, s.api_keys) == ("none", ())


# ---------------------------------------------------------------- metrics


def sample(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """The value of one sample in a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and (labels is None or all(s.labels.get(k) == v for k, v in labels.items())):
                return float(s.value)
    raise KeyError(f"{name}{labels} not in the exposition")


def test_metrics_count_requests_latency_classes_and_model(
    client: Any, record: dict[str, float], model_doc: dict[str, Any]
) -> None:
    worst = {f["name"]: f["observed_max"] for f in model_doc["features"]}
    assert post_json(client, {"records": [record, record, worst]}).status_code == 200
    assert post_json(client, record).status_code == 200
    assert post_json(client, {**record, "mean_radius": "x"}).status_code == 422
    client.get("/nope/at/all")
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    ok = {"method": "POST", "path": "/predict", "status": "200"}
    assert sample(text, "inference_http_requests_total", ok) == 2
    assert sample(text, "inference_http_request_duration_seconds_count", ok) == 2
    assert sample(text, "inference_http_request_duration_seconds_bucket", {**ok, "le": "+Inf"}) == 2
    assert sample(text, "inference_http_requests_total", {"path": "/predict", "status": "422"}) == 1
    assert sample(text, "inference_http_requests_total", {"path": "unmatched", "status": "404"}) == 1
    assert sample(text, "inference_predictions_total", {"predicted_class": "benign", "model_version": "1.0.0"}) == 3
    assert sample(text, "inference_predictions_total", {"predicted_class": "malignant"}) == 1
    assert sample(text, "inference_invalid_requests_total", {"reason": "validation"}) == 1
    info = {"name": "breast-cancer-lr", "version": "1.0.0", "sha256": client.get("/ready").json()["model"]["sha256"]}
    assert sample(text, "mlops_model_info", info) == 1
    assert "inference_model_info" not in text  # renamed: one name for the release's identity
    assert sample(text, "inference_model_ready") == 1
    assert sample(text, "process_resident_memory_bytes") > 0


def test_request_log_line_is_structured_and_free_of_patient_data(
    settings: Settings, record: dict[str, float], capsys: pytest.CaptureFixture[str]
) -> None:
    from fastapi.testclient import TestClient
    from mlops_inference.observability import configure_logging

    configure_logging("info")
    with TestClient(create_app(settings)) as c:
        capsys.readouterr()
        c.post("/predict", json=record, headers={"x-request-id": "req-42"})
        c.get("/health", headers={"x-request-id": "req-43"})
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"request_id":"req-4' in line]
    assert [line["event"] for line in lines] == ["prediction", "request"]  # one line per request
    line = lines[0]
    assert line["method"] == "POST" and line["path"] == "/predict" and line["status"] == 200
    assert line["request_id"] == "req-42" and line["duration_ms"] > 0 and line["outcome"] == "ok"
    assert str(record["mean_radius"]) not in json.dumps(line)
    assert lines[1]["path"] == "/health" and lines[1]["status"] == 200


def test_benchmark_endpoint_is_off_by_default_and_constant_when_on(settings: Settings) -> None:
    from fastapi.testclient import TestClient

    with TestClient(create_app(settings)) as c:
        assert c.get("/benchmark/constant").status_code == 404
    on = Settings(model_dir=settings.model_dir, benchmark_endpoint=True)
    with TestClient(create_app(on)) as c:
        assert c.get("/benchmark/constant").json() == {"status": "ok", "constant": True}
        assert (
            c.post("/benchmark/constant", content=b"{}", headers={"content-type": "application/json"}).status_code
            == 200
        )


def test_single_record_path_equals_the_batch_path(client: Any, model_doc: dict[str, Any]) -> None:
    """One record is evaluated in plain Python, a batch with numpy: same numbers."""
    from sklearn.datasets import load_breast_cancer

    rows = [dict(zip(FEATURES, map(float, r), strict=True)) for r in load_breast_cancer().data[::57]]
    batch = post_json(client, {"records": rows}).json()["predictions"]
    for row, b in zip(rows, batch, strict=True):
        one = post_json(client, row).json()
        assert one["prediction"] == b["prediction"] and one["warnings"] == b["warnings"]
        assert math.isclose(one["probabilities"]["benign"], b["probabilities"]["benign"], rel_tol=1e-12, abs_tol=1e-15)


def test_the_word_records_inside_a_value_is_judged_as_one_record(client: Any, record: dict[str, float]) -> None:
    err = only_error(post_json(client, {**record, "mean_radius": "records"}), 422)
    assert err["field"] == "mean_radius"


def test_unknown_http_method_does_not_grow_metric_labels(client: Any) -> None:
    client.request("PROPFIND", "/health")
    assert 'method="PROPFIND"' not in client.get("/metrics").text


@pytest.mark.parametrize("literal", ["true", '"1.5"', "null", "NaN", "-Infinity", "1e999", "1" + "0" * 400, "[1]"])
def test_bad_value_in_a_batch_is_named(client: Any, record: dict[str, float], literal: str) -> None:
    """A batch with one bad cell leaves the bulk fast path; pydantic names row and field."""
    second = json.dumps({**record, "mean_symmetry": 0.5}).replace('"mean_symmetry": 0.5', f'"mean_symmetry": {literal}')
    text = '{"records": [' + json.dumps(record) + ", " + second + "]}"
    err = only_error(client.post("/predict", content=text, headers={"content-type": "application/json"}), 422)
    assert err["field"] == "records[1].mean_symmetry", err


def test_batch_with_integers_and_an_unknown_top_level_key(client: Any, record: dict[str, float]) -> None:
    assert post_json(client, {"records": [{**record, "mean_texture": 20}]}).status_code == 200
    err = only_error(post_json(client, {"records": [record], "note": "x"}), 422)
    assert err["field"] == "note" and err["type"] == "extra_forbidden"


def test_misspelt_field_in_a_batch_is_named_as_unknown_and_missing(client: Any, record: dict[str, float]) -> None:
    """Thirty keys, one of them misspelt: both faults are named."""
    typo = {("mean_radiuss" if k == "mean_radius" else k): v for k, v in record.items()}
    resp = post_json(client, {"records": [record, typo]})
    assert resp.status_code == 422, resp.text
    found = {(e["field"], e["type"]) for e in resp.json()["detail"]}
    assert found == {("records[1].mean_radius", "missing"), ("records[1].mean_radiuss", "extra_forbidden")}


def test_extra_field_in_a_batch_is_named(client: Any, record: dict[str, float]) -> None:
    err = only_error(post_json(client, {"records": [record, {**record, "patient_id": 7.0}]}), 422)
    assert err["field"] == "records[1].patient_id" and err["type"] == "extra_forbidden"


def test_predict_is_an_ordinary_fastapi_route(settings: Settings) -> None:
    """No dispatcher ahead of FastAPI: /predict is an APIRoute whose body is the pydantic
    union (one record or a batch), and the OpenAPI document describes that body."""
    from fastapi.routing import APIRoute

    app = create_app(settings)
    route = next(r for r in app.routes if isinstance(r, APIRoute) and r.path == "/predict")
    assert route.methods == {"POST"} and route.body_field is not None
    assert {m.cls.__name__ for m in app.user_middleware} == {"ObservabilityMiddleware", "BodyLimit"}
    body = app.openapi()["paths"]["/predict"]["post"]["requestBody"]
    assert body["required"] is True


def test_body_limit_without_content_length_is_413(client: Any) -> None:
    """A chunked body (no Content-Length) is counted as it arrives."""

    def chunks() -> Any:
        for _ in range(300):
            yield b" " * 1024

    resp = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
    err = only_error(resp, 413)
    assert err["field"] == "body" and err["type"] == "too_large"


def test_answers_are_orjson_and_equal_the_model(client: Any, record: dict[str, float]) -> None:
    """The answer's floats are exactly the model's: single path (plain Python) and its JSON."""
    import orjson

    resp = post_json(client, record)
    assert resp.content == orjson.dumps(orjson.loads(resp.content))
    assert resp.headers["content-type"] == "application/json"
