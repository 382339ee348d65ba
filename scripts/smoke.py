"""Smoke check of a running stack through its frontend: ready, then one real prediction.

    python scripts/smoke.py http://127.0.0.1:8080

The record sent is the median patient of the model's training data, read from /api/model,
so the check follows whatever model version the stack serves.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from typing import Any


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, None


def main(base: str) -> None:
    status = 0
    for _ in range(60):  # the API may still be loading its model right after a deploy
        try:
            status, _body = get(f"{base}/api/ready")
        except (urllib.error.URLError, ConnectionError):
            status = 0
        if status == 200:
            break
        time.sleep(2)
    if status != 200:
        sys.exit(f"smoke: {base}/api/ready answered {status or 'nothing'}")
    _status, model = get(f"{base}/api/model")
    record = {f["name"]: f["median"] for f in model["features"]}
    req = urllib.request.Request(
        f"{base}/api/predict",
        data=json.dumps(record).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        answer = json.load(r)
    print(
        f"    {base}/api/predict -> {answer['prediction']} (p={answer['probability']:.3f}, "
        f"model {answer['model']['name']} {answer['model']['version']})"
    )


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:8080")
