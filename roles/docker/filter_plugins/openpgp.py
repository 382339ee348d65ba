"""Fingerprints of the primary keys in an OpenPGP public key file, without gpg.

The docker role checks the signing key of Docker's apt repository against a pinned
fingerprint. Computing it here, on the controller, spares the hosts a gpg install and the
~/.gnupg that `gpg --show-keys` creates as a side effect.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any

from ansible.errors import AnsibleFilterError

PUBLIC_KEY_TAG = 6


def _dearmor(data: bytes) -> bytes:
    """Return the binary packets of every ASCII-armored block in data, or data if binary."""
    text = data.decode("ascii", errors="replace")
    begin, end = "-----BEGIN PGP PUBLIC KEY BLOCK-----", "-----END PGP PUBLIC KEY BLOCK-----"
    if begin not in text:
        return data
    packets = b""
    for block in text.split(begin)[1:]:
        lines = [line.strip() for line in block.split(end, 1)[0].strip().splitlines()]
        # Armor headers ("Comment: ...") end at the first blank line, if there are any.
        if "" in lines:
            lines = lines[lines.index("") + 1 :]
        # The line starting with "=" is the CRC-24 checksum of the armor, not key data.
        payload = "".join(line for line in lines if not line.startswith("="))
        try:
            packets += base64.b64decode(payload, validate=True)
        except binascii.Error as exc:
            raise AnsibleFilterError(f"not a valid ASCII-armored OpenPGP key: {exc}") from exc
    return packets


def _packets(data: bytes) -> list[tuple[int, bytes]]:
    """Split OpenPGP data into (tag, body) packets (RFC 4880 section 4.2, RFC 9580)."""
    packets: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        header = data[pos]
        if not header & 0x80:
            raise AnsibleFilterError(f"not an OpenPGP packet at byte {pos}")
        if header & 0x40:  # new format: tag in the low six bits, variable length
            tag = header & 0x3F
            first = data[pos + 1]
            if first < 192:
                length, pos = first, pos + 2
            elif first < 224:
                length, pos = ((first - 192) << 8) + data[pos + 2] + 192, pos + 3
            elif first == 255:
                length, pos = int.from_bytes(data[pos + 2 : pos + 6], "big"), pos + 6
            else:
                raise AnsibleFilterError("partial-length packets do not occur in public keys")
        else:  # old format: tag in bits 2-5, length type in bits 0-1
            tag = (header >> 2) & 0x0F
            size = {0: 1, 1: 2, 2: 4}.get(header & 0x03)
            if size is None:
                raise AnsibleFilterError("indeterminate-length packets do not occur in public keys")
            length = int.from_bytes(data[pos + 1 : pos + 1 + size], "big")
            pos += 1 + size
        if pos + length > len(data):
            raise AnsibleFilterError("truncated OpenPGP packet")
        packets.append((tag, data[pos : pos + length]))
        pos += length
    return packets


def _fingerprint(body: bytes) -> str:
    """Fingerprint of a public-key packet body: v4 is SHA-1, v6 is SHA-256 (RFC 9580 5.5.4)."""
    version = body[0]
    if version == 4:
        return hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body, usedforsecurity=False).hexdigest().upper()
    if version == 6:
        return hashlib.sha256(b"\x9b" + len(body).to_bytes(4, "big") + body).hexdigest().upper()
    raise AnsibleFilterError(f"OpenPGP key version {version} is not supported")


def openpgp_primary_fingerprints(data: Any) -> list[str]:
    """Fingerprints (upper-case hex) of every primary key in a key file; subkeys are left out.

    Accepts the text of an armored key or the base64 content returned by `slurp`.
    """
    if isinstance(data, str) and "-----BEGIN" not in data:
        raw = base64.b64decode(data)
    elif isinstance(data, str):
        raw = data.encode("ascii", errors="replace")
    else:
        raw = bytes(data)
    return [_fingerprint(body) for tag, body in _packets(_dearmor(raw)) if tag == PUBLIC_KEY_TAG]


class FilterModule:
    """Filters of the docker role."""

    def filters(self) -> dict[str, Any]:
        return {"openpgp_primary_fingerprints": openpgp_primary_fingerprints}
