"""No patient data in logs: one JSON line per prediction request, with what happened and
never what was sent.

Distinctive values go through valid and invalid requests (in range, out of range, as a
string, as a field name, in malformed JSON, in a batch, behind a wrong key, into an error
inside the code) and must appear in no log line: in process (every logger, captured at
debug level) and from the real server (`python -m mlops_inference`, uvicorn included)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import API_DIR, MODELS_DIR
from fastapi.testclient import TestClient
from mlops_inference import app as app_module
from mlops_inference.app import create_app
from mlops_inference.observability import JsonFormatter
from mlops_inference.settings import Settings

# Values no real measurement or request has: found in a log, they can only come from here.
MARKER_VALUE = 987.654321
MARKER_TEXT = "PATIENT-X-777"
MARKERS = ("987.654321", "987654321", "987.654", MARKER_TEXT)
KEY = "K3y-" + "s3cr3t-value-" * 3  # a client's API key: never logged either
WRONG_KEY = "Wr0ng-" + "guess-" * 4
KEY_NAME = "ward-3"
KEYS = ((KEY_NAME, hashlib.sha256(KEY.encode()).hexdigest()),)
JSON = {"content-type": "application/json"}
MAX_ROWS = 5


@pytest.fixture(scope="session")
def model_doc() -> dict[str, Any]:
    """The served model, from its release directory (overrides conftest's flat-file path)."""
    return json.loads((MODELS_DIR / "breast-cancer-lr-1.0.0" / "model.json").read_text())


def requests(record: dict[str, float]) -> list[tuple[str, bytes, dict[str, str], int, str, int | None]]:
    """(name, body, headers, status, outcome, rows) of requests that carry the markers; all
    but the `no-key` and `wrong-key` ones carry the right key."""
    good = {**record, "mean_area": MARKER_VALUE}  # inside the accepted range: answered 200
    far = {**record, "mean_radius": MARKER_VALUE}  # beyond it: 422 out_of_range
    text = {**record, "mean_texture": MARKER_TEXT}  # a string: 422 validation
    named = {**record, MARKER_TEXT: 1.0}  # an unknown field: 422 validation
    key = {"X-API-Key": KEY}
    return [
        ("single", json.dumps(good).encode(), {**JSON, **key}, 200, "ok", 1),
        ("batch", json.dumps({"records": [good, good, record]}).encode(), {**JSON, **key}, 200, "ok", 3),
        ("out-of-range", json.dumps(far).encode(), {**JSON, **key}, 422, "out_of_range", 1),
        ("string", json.dumps(text).encode(), {**JSON, **key}, 422, "validation", 1),
        ("field-name", json.dumps(named).encode(), {**JSON, **key}, 422, "validation", 1),
        ("bad-row", json.dumps({"records": [good, text]}).encode(), {**JSON, **key}, 422, "validation", 2),
        ("malformed", f'{{"mean_radius": {MARKER_VALUE}, "x": {MARKER_TEXT}'.encode(), {**JSON, **key}, 400,
         "malformed_json", None),
        ("text-plain", json.dumps(good).encode(), {"content-type": "text/plain", **key}, 415, "content_type", None),
        ("too-many", json.dumps({"records": [good] * (MAX_ROWS + 1)}).encode(), {**JSON, **key}, 413, "too_large",
         MAX_ROWS + 1),
        ("empty-batch", b'{"records": []}', {**JSON, **key}, 422, "empty_batch", 0),
        ("no-key", json.dumps(good).encode(), JSON, 401, "unauthorized", None),
        ("wrong-key", json.dumps(good).encode(), {**JSON, "X-API-Key": WRONG_KEY}, 401, "unauthorized", None),
    ]  # fmt: skip


def assert_clean(text: str) -> None:
    for marker in (*MARKERS, KEY, WRONG_KEY):
        assert marker not in text, f"{marker!r} reached the logs"


def check_prediction_lines(lines: list[dict[str, Any]], record: dict[str, float]) -> None:
    """One `prediction` line per request, in order, with the documented fields."""
    expected = requests(record)
    predictions = [line for line in lines if line.get("event") == "prediction"]
    assert [p["request_id"] for p in predictions] == [f"req-{name}" for name, *_ in expected]
    for line, (name, _, headers, status, outcome, rows) in zip(predictions, expected, strict=True):
        assert (line["status"], line["outcome"], line["rows"]) == (status, outcome, rows), name
        assert (line["model"], line["model_version"]) == ("breast-cancer-lr", "1.0.0"), name
        assert line["latency_ms"] >= 0 and line["time"].endswith("+00:00") and line["ts"], name
        assert line["method"] == "POST" and line["path"] == "/predict", name
        assert line.get("api_key_name") == (KEY_NAME if headers.get("X-API-Key") == KEY else None), name
    # Other requests keep their `request` line; /predict has no second one.
    assert not [line for line in lines if line.get("event") == "request" and line.get("path") == "/predict"]


# ---------------------------------------------------------------- in process


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Every record of every logger, at debug level, formatted by the API's formatter; but
    the test client's own (httpx logs the URLs it requests: the client side, not the API)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(lambda r: not r.name.startswith(("httpx", "httpcore")))
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


@pytest.fixture
def keyed() -> Iterator[TestClient]:
    settings = Settings(model_dir=MODELS_DIR, auth_mode="api_key", api_keys=KEYS, max_batch_rows=MAX_ROWS)
    with TestClient(create_app(settings)) as c:
        yield c


def test_prediction_lines_carry_no_submitted_value(
    keyed: TestClient, log_lines: io.StringIO, record: dict[str, float], capsys: pytest.CaptureFixture[str]
) -> None:
    for name, body, headers, status, *_ in requests(record):
        resp = keyed.post("/predict", content=body, headers={**headers, "X-Request-ID": f"req-{name}"})
        assert resp.status_code == status, (name, resp.text)
    text = log_lines.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert_clean(text)
    captured = capsys.readouterr()
    assert_clean(captured.out + captured.err)
    check_prediction_lines(lines, record)
    # The answers do name what is wrong, values included: that goes to the client only.
    _, body, headers, *_ = requests(record)[2]
    assert "987.654" in keyed.post("/predict", content=body, headers=headers).text
    assert_clean(log_lines.getvalue())


def test_an_error_inside_the_code_is_logged_without_its_message(
    keyed: TestClient, log_lines: io.StringIO, record: dict[str, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Any, row: list[float]) -> Any:
        raise ValueError(f"cannot classify {row[3]!r} / {MARKER_TEXT}")

    monkeypatch.setattr(app_module.Classifier, "one", broken)
    body = json.dumps({**record, "mean_area": MARKER_VALUE})
    resp = keyed.post("/predict", content=body, headers={**JSON, "X-API-Key": KEY, "X-Request-ID": "req-500"})
    assert resp.status_code == 500
    assert resp.json()["detail"][0]["type"] == "internal_error" and MARKER_TEXT not in resp.text
    text = log_lines.getvalue()
    assert_clean(text)
    lines = [json.loads(line) for line in text.splitlines()]
    error = next(line for line in lines if line.get("event") == "error")
    assert error["request_id"] == "req-500" and error["error"].startswith("builtins.ValueError at ")
    assert "app.py:" in error["error"] and " in classify_one" in error["error"]  # where, not what
    prediction = next(line for line in lines if line.get("event") == "prediction")
    assert (prediction["status"], prediction["outcome"], prediction["rows"]) == (500, "error", 1)
    # A traceback logged anywhere, by any library, is reduced the same way.
    try:
        raise RuntimeError(f"value {MARKER_VALUE}")
    except RuntimeError:
        logging.getLogger("somelib").exception("failed")
    last = json.loads(log_lines.getvalue().splitlines()[-1])
    assert last["exc"].startswith("builtins.RuntimeError at test_api_logs.py:") and "987" not in last["exc"]


def test_request_id_is_kept_only_when_it_looks_like_a_token(keyed: TestClient, log_lines: io.StringIO) -> None:
    keyed.post("/predict", content=b"{}", headers={**JSON, "X-Request-ID": "has spaces; and=more"})
    keyed.post("/predict", content=b"{}", headers={**JSON, "X-Request-ID": "x" * 65})
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    ids = [line["request_id"] for line in lines if line.get("event") == "prediction"]
    assert len(ids) == 2 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_every_log_line_is_one_json_object_whatever_its_values() -> None:
    """The formatter writes with orjson, an object of no JSON type as its str(); an integer
    beyond 64 bits, which orjson refuses, still gives a line of JSON, never a logging error."""
    formatter = JsonFormatter()
    fields: dict[Any, Any] = {"text": "Zürich", "big": 2**70, "path": Path("/x"), 3: "non-str key"}
    record = logging.LogRecord("mlops_inference", logging.INFO, __file__, 1, "naïve", None, None)
    record.fields = fields
    line = formatter.format(record)
    assert "\n" not in line
    doc = json.loads(line)
    assert (doc["msg"], doc["text"], doc["big"], doc["path"], doc["3"]) == (
        "naïve",
        "Zürich",
        2**70,
        "/x",
        "non-str key",
    )
    del fields["big"]
    assert json.loads(formatter.format(record))["path"] == "/x"


def test_unknown_paths_and_query_strings_are_not_logged(keyed: TestClient, log_lines: io.StringIO) -> None:
    assert keyed.post(f"/predict/{MARKER_TEXT}", content=b"{}", headers=JSON).status_code == 404
    keyed.get(f"/health?patient={MARKER_TEXT}")
    text = log_lines.getvalue()
    assert_clean(text)
    lines = [json.loads(line) for line in text.splitlines() if '"event":"request"' in line]
    assert [(line["route"], line["path"]) for line in lines] == [("unmatched", None), ("/health", "/health")]


# ---------------------------------------------------------------- the real server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_the_server_logs_no_submitted_value(tmp_path: Path, record: dict[str, float]) -> None:
    """`python -m mlops_inference` (uvicorn, httptools, uvloop) at LOG_LEVEL=debug: stdout
    and stderr hold one prediction line per request and none of the values."""
    keys = tmp_path / "api-keys"
    keys.write_text(f"# test\n{KEY_NAME}:{KEYS[0][1]}\n")
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(API_DIR / "src"),
        "MODEL_DIR": str(MODELS_DIR),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOG_LEVEL": "debug",
        "AUTH_MODE": "api_key",
        "API_KEYS_FILE": str(keys),
        "MAX_BATCH_ROWS": str(MAX_ROWS),
    }
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([sys.executable, "-m", "mlops_inference"], env=env, stdout=o, stderr=e)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(base + "/ready", timeout=2) as resp:
                        if resp.status == 200:
                            break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise AssertionError(f"the API did not become ready:\n{err.read_text()}") from None
                    time.sleep(0.2)
            for name, body, headers, status, *_ in requests(record):
                assert post(base + "/predict", body, {**headers, "X-Request-ID": f"req-{name}"}) == status, name
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    # uvicorn re-raises SIGTERM once it has shut down: -15 here, 0 as a container's PID 1.
    assert proc.returncode in (0, -signal.SIGTERM)
    text = out.read_text() + err.read_text()
    assert_clean(text)
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert len(lines) == len(text.splitlines()), "every line is JSON"
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]
    check_prediction_lines(lines, record)
