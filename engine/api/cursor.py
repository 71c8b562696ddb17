"""Feed cursors: opaque, tamper-evident, stable across restarts.

A cursor is base64url of (format version, seq) with an HMAC under a key kept in
``<data>/keys/api-cursor.key``, so a malformed or forged cursor is a 400, never
a 500 and never a silent restart from zero.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

from engine.datadir import DataDir
from engine.errors import ApiError

_CURSOR_VERSION = 1
_CURSOR_RAW = 1 + 8 + 10  # version byte, seq (uint64 big-endian), HMAC-SHA256 truncated to 80 bits
_CURSOR_TEXT = re.compile(r"^[A-Za-z0-9_-]{26}$")  # unpadded base64url of the 19 bytes: one spelling only


class CursorError(ApiError):
    """A cursor that this server did not issue (malformed, truncated, forged or from another ledger)."""


def cursor_key(data: DataDir) -> bytes:
    """The HMAC key for cursors, created once per data folder (0600) so cursors survive restarts."""
    return data.secret_key("api-cursor.key")


def encode_cursor(seq: int, key: bytes) -> str:
    """The opaque cursor meaning "everything after ``seq``"."""
    raw = bytes([_CURSOR_VERSION]) + int(seq).to_bytes(8, "big")
    mac = hmac.new(key, raw, hashlib.sha256).digest()[:10]
    return base64.urlsafe_b64encode(raw + mac).rstrip(b"=").decode("ascii")


def decode_cursor(text: str, key: bytes) -> int:
    """The seq a cursor stands for; :class:`CursorError` when it is not one of ours."""
    if not _CURSOR_TEXT.match(text):
        raise CursorError(
            "the cursor has the wrong length or characters; pass back exactly the 'next' value of a previous page"
        )
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise CursorError("the cursor is not base64url; pass back exactly the 'next' value of a previous page") from None
    if len(raw) != _CURSOR_RAW or raw[0] != _CURSOR_VERSION:
        raise CursorError("the cursor has the wrong length or format version; pass back exactly a 'next' value")
    body, mac = raw[:9], raw[9:]
    if not hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).digest()[:10]):
        raise CursorError("the cursor was not issued by this server (or was altered); restart from a cursor it gave you")
    return int.from_bytes(body[1:], "big")

