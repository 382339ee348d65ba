"""Access control of the inference API (AUTH_MODE): none, api_key, client_cert.

Only POST /predict (and /api/predict) is guarded; probes, /model, /metrics and /docs stay
open. Credentials are checked before the body is read: without them every request is a 401,
whatever its body."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import API_DIR, MODELS_DIR
from fastapi.testclient import TestClient
from mlops_inference import app as app_module
from mlops_inference.app import create_app
from mlops_inference.settings import Settings, SettingsError

KEY = "Zq3-ward-3-key-0123456789abcdefghij"  # what a client sends
OTHER_KEY = "Yp2-lab-key-9876543210zyxwvutsrqpo"
KEYS = (("ward-3", hashlib.sha256(KEY.encode()).hexdigest()), ("lab", hashlib.sha256(OTHER_KEY.encode()).hexdigest()))
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="session")
def model_doc() -> dict[str, Any]:
    """The served model, from its release directory (overrides conftest's flat-file path)."""
    return json.loads((MODELS_DIR / "breast-cancer-lr-1.0.0" / "model.json").read_text())


def app_client(**kwargs: Any) -> TestClient:
    return TestClient(create_app(Settings(model_dir=MODELS_DIR, max_body_bytes=64 * 1024, **kwargs)))


@pytest.fixture
def keyed() -> Iterator[TestClient]:
    with app_client(auth_mode="api_key", api_keys=KEYS) as c:
        yield c


@pytest.fixture
def cert() -> Iterator[TestClient]:
    with app_client(auth_mode="client_cert") as c:
        yield c


def sample(client: TestClient, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def refused(resp: Any, challenge: str, kind: str) -> dict[str, Any]:
    assert resp.status_code == 401, resp.text
    assert resp.headers["www-authenticate"] == challenge
    (item,) = resp.json()["detail"]
    assert item["type"] == kind
    return dict(item)


# ---------------------------------------------------------------- settings


def write_keys(tmp_path: Path, text: str) -> str:
    path = tmp_path / "api-keys"
    path.write_text(text)
    return str(path)


def test_api_keys_file_is_read_with_comments_blank_lines_and_uppercase_hex(tmp_path: Path) -> None:
    text = f"# site keys\n\nward-3:{KEYS[0][1].upper()}\n  lab : {KEYS[1][1]}  \n"
    s = Settings.from_env({"AUTH_MODE": "api_key", "API_KEYS_FILE": write_keys(tmp_path, text)})
    assert s.auth_mode == "api_key" and s.api_keys == KEYS
    assert KEYS[0][1] not in repr(s)  # hashes stay out of reprs


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no key"),
        ("# nothing but comments\n\n", "holds no key"),
        (f"{KEY}\n", "line 1 is not `name:sha256`"),  # a key pasted in clear, never quoted back
        ("ward-3:abc\n", "line 1 is not `name:sha256`"),
        (f"bad name:{KEYS[0][1]}\n", "line 1 is not `name:sha256`"),
        (f"a:{KEYS[0][1]}\na:{KEYS[1][1]}\n", "line 2: the name a is given twice"),
    ],
    ids=["empty", "comments-only", "clear-key", "short-hash", "bad-name", "duplicate"],
)
def test_bad_api_keys_file_is_refused_by_name(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SettingsError, match="API_KEYS_FILE") as err:
        Settings.from_env({"AUTH_MODE": "api_key", "API_KEYS_FILE": write_keys(tmp_path, text)})
    assert message in str(err.value) and KEY not in str(err.value)


def test_api_keys_file_missing_or_unset_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="API_KEYS_FILE"):
        Settings.from_env({"AUTH_MODE": "api_key"})
    with pytest.raises(SettingsError, match=r"API_KEYS_FILE=.*cannot be read"):
        Settings.from_env({"AUTH_MODE": "api_key", "API_KEYS_FILE": str(tmp_path / "nope")})
    # Other modes do not read it.
    assert Settings.from_env({"AUTH_MODE": "client_cert", "API_KEYS_FILE": str(tmp_path / "nope")}).api_keys == ()


def test_constructed_settings_are_checked_by_create_app() -> None:
    with pytest.raises(SettingsError, match="API_KEYS_FILE"):
        create_app(Settings(model_dir=MODELS_DIR, auth_mode="api_key"))
    with pytest.raises(SettingsError, match="AUTH_MODE"):
        create_app(Settings(model_dir=MODELS_DIR, auth_mode="basic"))


def test_process_exits_at_start_naming_the_variable(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(API_DIR / "src"),
        "MODEL_DIR": str(MODELS_DIR),
        "AUTH_MODE": "api_key",
        "API_KEYS_FILE": write_keys(tmp_path, "# no key yet\n"),
    }
    run = subprocess.run(
        [sys.executable, "-m", "mlops_inference"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 2
    assert "configuration error" in run.stderr and "API_KEYS_FILE" in run.stderr


# ---------------------------------------------------------------- none


def test_none_is_the_default_and_asks_nothing(record: dict[str, float]) -> None:
    assert Settings().auth_mode == "none" and Settings.from_env({}).auth_mode == "none"
    with app_client() as c:
        assert c.post("/predict", json=record).status_code == 200
        spec = c.get("/openapi.json").json()
        assert "securitySchemes" not in spec.get("components", {})
        assert "security" not in spec["paths"]["/predict"]["post"]
        assert "401" not in spec["paths"]["/predict"]["post"]["responses"]


# ---------------------------------------------------------------- api_key


@pytest.mark.parametrize("path", ["/predict", "/api/predict"])
def test_api_key_mode_refuses_without_a_key(keyed: TestClient, record: dict[str, float], path: str) -> None:
    item = refused(keyed.post(path, json=record), "ApiKey", "missing_api_key")
    assert item["field"] == "x-api-key" and item["loc"] == ["header", "x-api-key"]
    assert item["msg"].startswith("x-api-key: ") and "X-API-Key" in item["msg"]
    refused(keyed.post(path, json=record, headers={"X-API-Key": ""}), "ApiKey", "missing_api_key")


def test_api_key_mode_refuses_a_wrong_key_and_the_hash_itself(keyed: TestClient, record: dict[str, float]) -> None:
    for wrong in ("not-a-key-" * 3, KEY + " ", KEY.upper(), KEYS[0][1]):
        item = refused(keyed.post("/predict", json=record, headers={"X-API-Key": wrong}), "ApiKey", "invalid_api_key")
        assert wrong not in json.dumps(item)  # the answer never quotes what was sent
    assert sample(keyed, "mlops_inference_unauthorized_total", reason="invalid") == 4


@pytest.mark.parametrize("key", [KEY, OTHER_KEY])
def test_api_key_mode_serves_every_known_key(keyed: TestClient, record: dict[str, float], key: str) -> None:
    resp = keyed.post("/predict", json=record, headers={"X-API-Key": key})
    assert resp.status_code == 200 and resp.json()["prediction"] in ("benign", "malignant")
    resp = keyed.post("/api/predict", json={"records": [record, record]}, headers={"X-API-Key": key})
    assert resp.status_code == 200 and len(resp.json()["predictions"]) == 2


def test_every_known_hash_is_compared_in_constant_time(
    keyed: TestClient, record: dict[str, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """hmac.compare_digest against every known hash, even after a match (no early exit)."""
    calls: list[tuple[bytes, bytes]] = []
    real = app_module.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(app_module.hmac, "compare_digest", spy)
    assert keyed.post("/predict", json=record, headers={"X-API-Key": KEY}).status_code == 200
    assert len(calls) == len(KEYS)
    assert {b.hex() for _, b in calls} == {h for _, h in KEYS}
    assert all(a == hashlib.sha256(KEY.encode()).digest() for a, _ in calls)


def test_credentials_come_before_anything_about_the_body(keyed: TestClient, record: dict[str, float]) -> None:
    """Without a key: 401 for a malformed, oversized, mistyped or invalid body alike (the
    body is not even read); with a key, the usual 400, 413, 415 and 422."""
    bodies: list[tuple[bytes, dict[str, str], int]] = [
        (b"{not json", JSON, 400),
        (b" " * (80 * 1024), JSON, 413),
        (json.dumps(record).encode(), {"content-type": "text/plain"}, 415),
        (json.dumps({**record, "mean_radius": "x"}).encode(), JSON, 422),
        (json.dumps({**record, "mean_radius": 1e9}).encode(), JSON, 422),
        (b'{"records": []}', JSON, 422),
    ]
    for content, headers, status in bodies:
        assert keyed.post("/predict", content=content, headers=headers).status_code == 401
        with_key = keyed.post("/predict", content=content, headers={**headers, "X-API-Key": KEY})
        assert with_key.status_code == status, with_key.text
    assert sample(keyed, "mlops_inference_unauthorized_total", reason="missing") == len(bodies)
    # 401s are not counted again as invalid requests; the other refusals are, once each.
    text = keyed.get("/metrics").text
    assert 'reason="unauthorized"' not in text
    assert sample(keyed, "inference_invalid_requests_total", reason="validation") == 1
    assert sample(keyed, "inference_invalid_requests_total", reason="out_of_range") == 1


def test_open_endpoints_need_no_key(keyed: TestClient) -> None:
    for path in ("/health", "/ready", "/model", "/metrics", "/docs", "/openapi.json", "/api/ready", "/api/docs"):
        assert keyed.get(path).status_code == 200, path


def test_openapi_declares_the_api_key_for_swagger_ui(keyed: TestClient) -> None:
    spec = keyed.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": spec["components"]["securitySchemes"]["ApiKey"]["description"],
    }
    post = spec["paths"]["/predict"]["post"]
    assert post["security"] == [{"ApiKey": []}]
    assert "401" in post["responses"]
    for path in ("/health", "/ready", "/model", "/metrics"):
        assert "security" not in spec["paths"][path]["get"], path
    # The body is still the union of one record or a batch (the guard adds no parameter).
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert {item["$ref"].rsplit("/", 1)[1] for item in body["oneOf"]} == {"PatientFeatures", "BatchRequest"}
    assert all(p["in"] != "query" for p in post.get("parameters", []))


# ---------------------------------------------------------------- client_cert


@pytest.mark.parametrize(
    ("headers", "kind", "reason"),
    [
        ({}, "missing_client_certificate", "missing"),
        ({"X-Client-Verify": "NONE"}, "missing_client_certificate", "missing"),
        ({"X-Client-Verify": "FAILED:certificate has expired"}, "invalid_client_certificate", "invalid"),
        ({"X-Client-Verify": "success"}, "invalid_client_certificate", "invalid"),
        ({"X-Client-DN": "CN=ward-3"}, "missing_client_certificate", "missing"),
    ],
    ids=["absent", "none", "failed", "lowercase", "dn-without-verify"],
)
def test_client_cert_mode_refuses_without_a_verified_certificate(
    cert: TestClient, record: dict[str, float], headers: dict[str, str], kind: str, reason: str
) -> None:
    item = refused(cert.post("/predict", json=record, headers=headers), "Certificate", kind)
    assert item["field"] == "x-client-verify" and item["loc"] == ["header", "x-client-verify"]
    assert sample(cert, "mlops_inference_unauthorized_total", reason=reason) == 1
    assert cert.post("/predict", content=b"{not json", headers={**JSON, **headers}).status_code == 401


def test_client_cert_mode_serves_a_verified_certificate(cert: TestClient, record: dict[str, float]) -> None:
    headers = {"X-Client-Verify": "SUCCESS", "X-Client-DN": "CN=ward-3,O=Clinic"}
    assert cert.post("/api/predict", json=record, headers=headers).status_code == 200
    assert cert.post("/predict", content=b"{not json", headers={**JSON, **headers}).status_code == 400
    assert cert.get("/ready").status_code == 200 and cert.get("/metrics").status_code == 200
    spec = cert.get("/openapi.json").json()
    assert "401" in spec["paths"]["/predict"]["post"]["responses"]
    # No API key scheme in this mode: Swagger UI would offer a header nobody may set.
    assert "ApiKey" not in spec.get("components", {}).get("securitySchemes", {})
