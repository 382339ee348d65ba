"""Smoke check of a running stack through its frontend: ready, then one real prediction.

    python scripts/smoke.py https://localhost:8443 --cacert PKI/ca.crt --api-key-file PKI/api-key-site

The record sent is the median patient of the model's training data, read from /api/model,
so the check follows whatever model version the stack serves. The frontend's certificate is
checked against the given CA (the site CA of mlops_pki_dir) and nothing else.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import time
import urllib.error
import urllib.request
from typing import Any

CONTEXT: ssl.SSLContext | None = None


def get(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10, context=CONTEXT) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, None


def main(base: str, api_key: str) -> None:
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
        headers={"Content-Type": "application/json", "X-API-Key": api_key},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10, context=CONTEXT) as r:
        answer = json.load(r)
    print(
        f"    {base}/api/predict -> {answer['prediction']} (p={answer['probability']:.3f}, "
        f"model {answer['model']['name']} {answer['model']['version']})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the frontend, e.g. https://localhost:8443")
    parser.add_argument("--cacert", required=True, help="the site CA that signed the frontend's certificate")
    parser.add_argument("--api-key-file", required=True, help="a file holding an API key of the site")
    args = parser.parse_args()
    CONTEXT = ssl.create_default_context(cafile=args.cacert)
    with open(args.api_key_file, encoding="utf-8") as fh:
        key = fh.read().strip()
    main(args.base.rstrip("/"), key)
