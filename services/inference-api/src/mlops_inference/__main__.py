"""Entry point: `python3 -m mlops_inference` (the image's command).

Settings come from the environment (MODEL_DIR, MODEL_NAME, MODEL_VERSION, MODEL_SHA256,
AUTH_MODE, API_KEYS_FILE, LOG_LEVEL, PORT, WEB_CONCURRENCY, ...); a value the API cannot
run with (an AUTH_MODE=api_key without keys in API_KEYS_FILE, say) stops it here with exit
code 2 and a message naming the variable. uvicorn serves with its compiled parts (httptools
for HTTP/1.1, uvloop for the event loop) and WEB_CONCURRENCY worker processes (default 1).
With more than one, Prometheus metrics switch to prometheus_client's multiprocess mode
(PROMETHEUS_MULTIPROC_DIR, default /tmp/mlops-metrics, emptied at start): set before
prometheus_client is imported, which is why the app is imported only in main().

uvicorn handles SIGTERM and SIGINT: it stops accepting connections, lets in-flight
requests finish (at most GRACEFUL_TIMEOUT seconds), runs the app's shutdown and exits 0.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys

from .settings import Settings, SettingsError

MULTIPROC_DIR = "/tmp/mlops-metrics"


def worker_app() -> object:
    """The app of one worker process (several workers): logging as in the parent, settings
    from the same environment."""
    from .app import create_app
    from .observability import configure_logging

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    return create_app(settings)


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if settings.workers > 1:
        path = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", MULTIPROC_DIR)
        shutil.rmtree(path, ignore_errors=True)  # no counts from an earlier run
        os.makedirs(path, mode=0o700, exist_ok=True)
    else:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)

    import uvicorn

    from .observability import configure_logging

    configure_logging(settings.log_level)
    options = {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": "httptools",
        "log_config": None,
        "log_level": settings.log_level,
        # uvicorn's access log would print every request line, query string included; the
        # app logs each request itself (observability.py), without any submitted value.
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": settings.graceful_timeout_s,
    }
    if settings.workers > 1:
        # Each worker process builds its own app (the factory), settings from the environment.
        uvicorn.run("mlops_inference.__main__:worker_app", factory=True, workers=settings.workers, **options)
    else:
        from .app import create_app

        uvicorn.run(create_app(settings), **options)
    logging.getLogger("mlops_inference").info("exited", extra={"fields": {"event": "exited"}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
