"""Access control of the inference API: the API keys of the inventory, as the API reads them.

``mlops.infra.api_keys_file(keys)``
    The content of the API's keys file (API_KEYS_FILE): one ``name:sha256`` line per key.
    A key given in clear (``{name, key}``) is hashed here, on the controller: hosts and
    Kubernetes Secrets only ever hold the hashes.

``mlops.infra.api_key_errors(keys, variable)``
    Every mistake in that list, as messages naming the variable (empty when all is well).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A key must carry at least this many characters (a 43-character random key holds 256 bits).
MIN_KEY_LENGTH = 20


def api_key_errors(keys: Any, variable: str = "mlops_api_keys") -> list[str]:
    """Messages for every malformed entry of ``keys`` (never quoting a key)."""
    if not isinstance(keys, Sequence) or isinstance(keys, (str, bytes)):
        return [f"{variable} must be a list of {{name, key}} or {{name, sha256}} entries."]
    errors: list[str] = []
    seen: set[str] = set()
    for index, entry in enumerate(keys):
        where = f"{variable}[{index}]"
        if not isinstance(entry, Mapping):
            errors.append(f"{where} must be a mapping with name and key (or sha256).")
            continue
        name = str(entry.get("name", ""))
        if not NAME.match(name):
            errors.append(f"{where}.name must match {NAME.pattern} (it names the key in logs).")
        elif name in seen:
            errors.append(f"{where}.name '{name}' is given twice.")
        seen.add(name)
        has_key, has_hash = "key" in entry, "sha256" in entry
        if has_key == has_hash:
            errors.append(f"{where} needs exactly one of key (the key itself) and sha256 (its hash).")
        elif has_key and len(str(entry["key"] or "")) < MIN_KEY_LENGTH:
            errors.append(f"{where}.key is shorter than {MIN_KEY_LENGTH} characters: use a random key.")
        elif has_hash and not SHA256.match(str(entry["sha256"]).lower()):
            errors.append(f"{where}.sha256 must be 64 hexadecimal characters.")
    return errors


def api_keys_file(keys: Sequence[Mapping[str, Any]]) -> str:
    """``name:sha256`` lines for the API (keys given in clear are hashed)."""
    errors = api_key_errors(keys)
    if errors:
        raise AnsibleFilterError(" ".join(errors))
    lines = []
    for entry in keys:
        digest = (
            str(entry["sha256"]).lower()
            if "sha256" in entry
            else hashlib.sha256(str(entry["key"]).encode()).hexdigest()
        )
        lines.append(f"{entry['name']}:{digest}\n")
    return "".join(lines)


class FilterModule:
    """The access-control filters of mlops.infra."""

    def filters(self) -> dict[str, Any]:
        return {"api_keys_file": api_keys_file, "api_key_errors": api_key_errors}
