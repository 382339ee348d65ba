"""A bounded load through the frontend, for rollouts: how many requests failed, and when the
new version started to answer. Standard library only, so it runs on any test host.

    python3 load.py --url https://localhost:8443 --cacert ca.crt --api-key-file key \
        --rate 50 [--requests 10000 | --stop-file /tmp/stop] [--record record.json]

Requests are single-record predictions, sent at a fixed rate by a few threads, each on a new
connection (what a fleet of browsers and scripts does). A request fails when it gets no
answer, an answer other than 200, or a body that is not a prediction. Prints one JSON object:
sent, ok, failed (with the first errors), the rate reached, per model version the count and
the time of its first and last answer, and the times the answering version changed (seconds
since the start).
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
from typing import Any


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.url = args.url.rstrip("/") + "/api/predict"
        self.context = ssl.create_default_context(cafile=args.cacert) if args.cacert else None
        with open(args.api_key_file, encoding="utf-8") as fh:
            self.key = fh.read().strip()
        self.body = json.dumps(args.record_doc).encode()
        self.interval = 1.0 / args.rate
        self.limit = args.requests
        self.stop_file = args.stop_file
        self.lock = threading.Lock()
        self.next_slot = 0
        self.sent = self.ok = self.failed = 0
        self.errors: list[str] = []
        self.versions: dict[str, dict[str, Any]] = {}
        # [seconds, version] each time the answering version changes (in completion order).
        self.switches: list[list[Any]] = []
        self.start = time.monotonic()

    def _claim(self) -> float | None:
        """The time the next request is due, or None when the load is over."""
        with self.lock:
            if self.limit is not None and self.next_slot >= self.limit:
                return None
            if self.stop_file and self.next_slot % 25 == 0 and os.path.exists(self.stop_file):
                self.limit = self.next_slot
                return None
            due = self.start + self.next_slot * self.interval
            self.next_slot += 1
            return due

    def _one(self) -> tuple[bool, str]:
        req = urllib.request.Request(
            self.url,
            data=self.body,
            method="POST",
            headers={"Content-Type": "application/json", "X-API-Key": self.key, "Connection": "close"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.context) as r:
                doc = json.load(r)
            return True, str(doc["model"]["version"])
        except urllib.error.HTTPError as e:
            return False, f"HTTP {e.code}: {e.read()[:200]!r}"
        except (OSError, ValueError, KeyError) as e:
            return False, f"{type(e).__name__}: {e}"

    def worker(self) -> None:
        while (due := self._claim()) is not None:
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            good, what = self._one()
            at = round(time.monotonic() - self.start, 3)
            with self.lock:
                self.sent += 1
                if good:
                    self.ok += 1
                    seen = self.versions.setdefault(what, {"count": 0, "first_s": at, "last_s": at})
                    seen["count"] += 1
                    seen["first_s"] = min(seen["first_s"], at)
                    seen["last_s"] = max(seen["last_s"], at)
                    if not self.switches or self.switches[-1][1] != what:
                        self.switches.append([at, what])
                else:
                    self.failed += 1
                    if len(self.errors) < 10:
                        self.errors.append(f"{at}s {what}")

    def run(self, threads: int) -> dict[str, Any]:
        pool = [threading.Thread(target=self.worker, daemon=True) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        elapsed = time.monotonic() - self.start
        return {
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "errors": self.errors,
            "seconds": round(elapsed, 1),
            "rate": round(self.sent / elapsed, 1) if elapsed else 0.0,
            "versions": self.versions,
            "switches": self.switches,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the frontend, e.g. https://localhost:8443")
    parser.add_argument("--cacert", help="the site CA (HTTPS)")
    parser.add_argument("--api-key-file", required=True)
    parser.add_argument("--rate", type=float, default=50.0, help="requests per second")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--requests", type=int, help="stop after this many requests")
    parser.add_argument("--stop-file", help="stop once this file exists")
    parser.add_argument("--record", required=True, help="JSON file of one record (feature -> value)")
    args = parser.parse_args()
    if args.requests is None and args.stop_file is None:
        parser.error("give --requests or --stop-file: the load is bounded")
    with open(args.record, encoding="utf-8") as fh:
        args.record_doc = json.load(fh)
    print(json.dumps(Load(args).run(args.threads)), flush=True)


if __name__ == "__main__":
    main()
