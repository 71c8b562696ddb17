"""Base45 (RFC 9285): the QR-alphanumeric encoding that carries HC1 payloads.

QR codes in alphanumeric mode store 45 symbols at 5.5 bits each; Base45 maps
two bytes to three of those symbols, which is why EU DCC chose it over Base64.
The codec is table-driven over whole byte strings (numpy), not per character.
"""

from __future__ import annotations

import numpy as np

from signing.errors import VerificationError

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_ENCODE = np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)
_DECODE = np.full(256, 255, dtype=np.uint8)
_DECODE[_ENCODE] = np.arange(45, dtype=np.uint8)
# Every two-byte value's three symbols, precomputed (192 KiB): encoding is then one gather.
_PAIR = np.arange(65536, dtype=np.uint32)
_PAIRS = np.ascontiguousarray(
    np.stack([_ENCODE[_PAIR % 45], _ENCODE[(_PAIR // 45) % 45], _ENCODE[_PAIR // 2025]], axis=1)
).view("V3").ravel()  # one 3-byte item per pair value: a 1-D take is the cheapest gather
del _PAIR


def b45encode(data: bytes) -> str:
    """Base45 text of ``data`` (RFC 9285 §4)."""
    even = len(data) & ~1
    text = _PAIRS.take(np.frombuffer(data, dtype=">u2", count=even // 2)).tobytes()
    if even != len(data):
        last = data[-1]
        text += bytes((_ENCODE[last % 45], _ENCODE[last // 45]))
    return text.decode("ascii")


def b45decode(text: str | bytes) -> bytes:
    """Bytes of a Base45 string; VerificationError(reason='bad-base45') when it is not valid Base45."""
    if isinstance(text, str):
        try:
            text = text.encode("ascii")
        except UnicodeEncodeError as exc:
            raise VerificationError("Base45 text contains a non-ASCII character", reason="bad-base45") from exc
    symbols = _DECODE[np.frombuffer(text, dtype=np.uint8)]
    if (symbols == 255).any():
        bad = chr(text[int(np.argmax(symbols == 255))])
        raise VerificationError(f"{bad!r} is not a Base45 character", reason="bad-base45")
    if len(symbols) % 3 == 1:
        raise VerificationError("Base45 text has a dangling character (length ≡ 1 mod 3)", reason="bad-base45")
    triples = len(symbols) // 3
    s = symbols[: triples * 3].reshape(-1, 3).astype(np.uint32)
    n = s[:, 0] + s[:, 1] * 45 + s[:, 2] * 2025
    tail = b""
    if len(symbols) % 3 == 2:
        v = int(symbols[-2]) + int(symbols[-1]) * 45
        if v > 0xFF:
            raise VerificationError("Base45 text ends with a value above one byte", reason="bad-base45")
        tail = bytes([v])
    if (n > 0xFFFF).any():
        raise VerificationError("Base45 text has a triplet above two bytes", reason="bad-base45")
    out = np.empty((triples, 2), dtype=np.uint8)
    out[:, 0] = n >> 8
    out[:, 1] = n & 0xFF
    return out.tobytes() + tail
