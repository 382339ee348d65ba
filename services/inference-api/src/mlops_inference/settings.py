"""Runtime settings, read once from the environment; a bad value stops the process early."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

# Names and versions become file names: keep them to a safe alphabet (no path traversal).
SAFE_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
# Who may ask for predictions: anyone (none), holders of an API key (X-API-Key, checked
# against API_KEYS_FILE), or clients whose certificate the frontend verified (client_cert).
AUTH_MODES = ("none", "api_key", "client_cert")
# An API key's name: it appears in logs (never the key). The same rule as the Ansible side.
KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
TRUE = ("1", "true", "yes", "on")
FALSE = ("", "0", "false", "no", "off")


class SettingsError(ValueError):
    """An environment variable holds a value the API cannot run with."""


def _int(env: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, str(default)).strip()
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if not low <= value <= high:
        raise SettingsError(f"{name}={value} is outside {low}..{high}")
    return value


def _bool(env: dict[str, str], name: str) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw in TRUE:
        return True
    if raw in FALSE:
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean (use 1/0, true/false)")


def read_api_keys(path: str) -> tuple[tuple[str, str], ...]:
    """(name, sha256 hex) of each key in API_KEYS_FILE: one `name:sha256hex` a line, `#`
    comments and blank lines allowed. Never quotes a line (a key pasted in clear by mistake
    must not reach the logs)."""
    if not path:
        raise SettingsError("API_KEYS_FILE must name a file of `name:sha256` lines when AUTH_MODE=api_key")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise SettingsError(f"API_KEYS_FILE={path!r} cannot be read: {why}") from None
    keys: list[tuple[str, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, digest = line.partition(":")
        name, digest = name.strip(), digest.strip().lower()
        if not sep or not KEY_NAME.match(name) or not SHA256.match(digest):
            raise SettingsError(
                f"API_KEYS_FILE={path!r} line {number} is not `name:sha256` (a name matching {KEY_NAME.pattern}, "
                "the key's sha256 in 64 hexadecimal characters; never the key itself)"
            )
        if any(name == n for n, _ in keys):
            raise SettingsError(f"API_KEYS_FILE={path!r} line {number}: the name {name} is given twice")
        keys.append((name, digest))
    if not keys:
        raise SettingsError(f"API_KEYS_FILE={path!r} holds no key: AUTH_MODE=api_key would refuse every prediction")
    return tuple(keys)


@dataclass(frozen=True)
class Settings:
    model_dir: Path = Path("/opt/mlops/models")
    model_name: str = "breast-cancer-lr"
    model_version: str = "1.0.0"
    # Optional pin of the release: the sha256 of its manifest.json (which lists the sha256 of
    # every file of the release, so it pins them all).
    model_sha256: str | None = None
    log_level: str = "info"
    host: str = "0.0.0.0"
    port: int = 8000
    max_batch_rows: int = 1000
    max_body_bytes: int = 4 * 1024 * 1024
    graceful_timeout_s: int = 20
    # uvicorn worker processes (WEB_CONCURRENCY, the convention uvicorn and gunicorn share);
    # the catalogue sizes it to the container's CPU limit.
    workers: int = 1
    # Internal: a constant-response endpoint for the benchmark baseline. Off by default.
    benchmark_endpoint: bool = False
    # Access control of POST /predict (AUTH_MODES). none: the image's default.
    auth_mode: str = "none"
    # api_key mode: (name, sha256 hex of the key) from API_KEYS_FILE. Only hashes, never keys.
    api_keys: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def check(self) -> None:
        """What the environment reader checks and a constructed Settings could still get
        wrong (create_app calls it)."""
        if self.auth_mode not in AUTH_MODES:
            raise SettingsError(f"AUTH_MODE={self.auth_mode!r} must be one of {', '.join(AUTH_MODES)}")
        if self.auth_mode == "api_key" and not self.api_keys:
            raise SettingsError("API_KEYS_FILE holds no key: AUTH_MODE=api_key needs at least one")
        for name, digest in self.api_keys:
            if not KEY_NAME.match(name) or not SHA256.match(digest):
                raise SettingsError("API_KEYS_FILE: every key needs a name and the sha256 of the key")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        name = env.get("MODEL_NAME", cls.model_name).strip()
        version = env.get("MODEL_VERSION", cls.model_version).strip()
        for var, value in (("MODEL_NAME", name), ("MODEL_VERSION", version)):
            if not SAFE_TOKEN.match(value):
                raise SettingsError(f"{var}={value!r} must match {SAFE_TOKEN.pattern}")
        pin = env.get("MODEL_SHA256", "").strip().lower() or None
        if pin is not None and not SHA256.match(pin):
            raise SettingsError("MODEL_SHA256 must be 64 hexadecimal characters")
        level = env.get("LOG_LEVEL", cls.log_level).strip().lower()
        if level not in LOG_LEVELS:
            raise SettingsError(f"LOG_LEVEL={level!r} must be one of {', '.join(LOG_LEVELS)}")
        auth = env.get("AUTH_MODE", cls.auth_mode).strip().lower() or cls.auth_mode
        if auth not in AUTH_MODES:
            raise SettingsError(f"AUTH_MODE={auth!r} must be one of {', '.join(AUTH_MODES)}")
        keys = read_api_keys(env.get("API_KEYS_FILE", "").strip()) if auth == "api_key" else ()
        return cls(
            model_dir=Path(env.get("MODEL_DIR", str(cls.model_dir))),
            model_name=name,
            model_version=version,
            model_sha256=pin,
            log_level=level,
            host=env.get("HOST", cls.host).strip() or cls.host,
            port=_int(env, "PORT", cls.port, 1, 65535),
            max_batch_rows=_int(env, "MAX_BATCH_ROWS", cls.max_batch_rows, 1, 100_000),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", cls.max_body_bytes, 1024, 256 * 1024 * 1024),
            graceful_timeout_s=_int(env, "GRACEFUL_TIMEOUT", cls.graceful_timeout_s, 1, 600),
            workers=_int(env, "WEB_CONCURRENCY", cls.workers, 1, 64),
            benchmark_endpoint=_bool(env, "ENABLE_BENCHMARK_ENDPOINT"),
            auth_mode=auth,
            api_keys=keys,
        )
