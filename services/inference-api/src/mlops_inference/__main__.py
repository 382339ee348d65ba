"""Entry point: `python3 -m mlops_inference` (the image's command).

Settings come from the environment (MODEL_DIR, MODEL_NAME, MODEL_VERSION, MODEL_SHA256,
LOG_LEVEL, PORT, ...). uvicorn handles SIGTERM and SIGINT: it stops accepting
connections, lets in-flight requests finish (at most GRACEFUL_TIMEOUT seconds), runs the
app's shutdown and exits 0.
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from .app import create_app
from .observability import configure_logging
from .settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=settings.graceful_timeout_s,
    )
    logging.getLogger("mlops_inference").info("exited", extra={"fields": {"event": "exited"}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
