"""HC1 QR payloads: an EU DCC in a CWT, in COSE_Sign1, zlib-compressed, Base45, ``HC1:`` prefix.

Layers (EU eHealth Network, "Electronic Health Certificates" technical spec v1.3):

    "HC1:" + Base45( zlib( COSE_Sign1( CWT{1: iss, 4: exp, 6: iat, -260: {1: DCC}} ) ) )

Decoding is split into the same steps so a failure names the layer that is
wrong (prefix, Base45, compression, CBOR), which is what a verifier must print.
"""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any

import cbor2

from signing.errors import VerificationError
from signing.base45 import b45decode, b45encode
from signing.cose import CoseSign1, decode_sign1, sign1
from signing.signer import Signer

PREFIX = "HC1:"
CLAIM_ISS, CLAIM_EXP, CLAIM_IAT, CLAIM_HCERT = 1, 4, 6, -260
HCERT_DCC = 1


def _seconds(when: dt.datetime | int | float) -> int:
    if isinstance(when, dt.datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        return int(when.timestamp())
    return int(when)


def sign_hc1(
    dcc: dict[str, Any],
    signer: Signer,
    *,
    issued_at: dt.datetime | int,
    expires_at: dt.datetime | int,
    issuer: str = "VN",
) -> str:
    """The ``HC1:`` string of ``dcc`` signed by ``signer`` (times UTC; CWT seconds since the epoch)."""
    claims = {
        CLAIM_ISS: issuer,
        CLAIM_EXP: _seconds(expires_at),
        CLAIM_IAT: _seconds(issued_at),
        CLAIM_HCERT: {HCERT_DCC: dcc},
    }
    cose = sign1(cbor2.dumps(claims), signer)
    return PREFIX + b45encode(_zlib(cose))


# zlib stream header 0x78 0xDA: deflate, 32 KiB window declared, maximum compression.
# EU DCC readers test for the 0x78 first byte to decide whether to inflate.
_ZLIB_HEADER = b"\x78\xda"


def _zlib(data: bytes) -> bytes:
    """RFC 1950 zlib stream of ``data``, cheaper to make than ``zlib.compress`` for QR-sized payloads.

    Deflates with a 512-byte window and small hash tables (an HC1 payload is
    ~400 bytes, so nothing is lost: measured 378 vs 381 bytes for
    ``zlib.compress(level=9)``) and writes the zlib header and Adler-32 trailer
    itself. The header declares the standard 32 KiB window, an upper bound any
    inflater honours, so the first byte stays 0x78.
    """
    deflater = zlib.compressobj(9, zlib.DEFLATED, -9, 2)
    return _ZLIB_HEADER + deflater.compress(data) + deflater.flush() + zlib.adler32(data).to_bytes(4, "big")


@dataclass(frozen=True)
class Hc1Content:
    """The decoded layers of an HC1 string (nothing verified yet but the structure)."""

    cose: CoseSign1
    claims: dict[Any, Any]

    @property
    def dcc(self) -> dict[str, Any]:
        return self.claims[CLAIM_HCERT][HCERT_DCC]

    @property
    def issuer(self) -> str | None:
        value = self.claims.get(CLAIM_ISS)
        return value if isinstance(value, str) else None

    @property
    def issued_at(self) -> dt.datetime | None:
        return _instant(self.claims.get(CLAIM_IAT))

    @property
    def expires_at(self) -> dt.datetime | None:
        return _instant(self.claims.get(CLAIM_EXP))


def _instant(value: Any) -> dt.datetime | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    return None


def thaw(value: Any) -> Any:
    """Plain dicts and lists from cbor2's immutable containers (cbor2 ≥ 6 returns frozendict/tuple)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


def unprefix(text: str) -> str:
    """The Base45 part of an HC1 string; VerificationError(reason='bad-prefix') for another context."""
    text = text.strip()
    if not text.startswith(PREFIX):
        seen = text.split(":", 1)[0][:8] + ":" if ":" in text[:9] else repr(text[:8])
        raise VerificationError(
            f"QR content does not start with {PREFIX!r} (found {seen}); only HC1 health certificates are accepted",
            reason="bad-prefix",
        )
    return text[len(PREFIX):]


def decode_hc1(text: str) -> Hc1Content:
    """Undo prefix, Base45, zlib and CBOR; check the CWT and DCC structure. No signature check here."""
    raw = b45decode(unprefix(text))
    # RFC 1950 header: compression method 8 (deflate) and a check value divisible by 31.
    if len(raw) < 6 or raw[0] & 0x0F != 8 or (raw[0] << 8 | raw[1]) % 31:
        raise VerificationError("the HC1 payload is not zlib-compressed (no RFC 1950 header)", reason="bad-compression")
    try:
        cose_bytes = zlib.decompress(raw)
    except zlib.error as exc:
        raise VerificationError(f"the HC1 payload does not inflate ({exc})", reason="bad-compression") from exc
    cose = decode_sign1(cose_bytes)
    try:
        claims = cbor2.loads(cose.payload)
    except (cbor2.CBORDecodeError, ValueError, TypeError, EOFError) as exc:
        raise VerificationError(f"the CWT claims are not valid CBOR ({exc})", reason="bad-cbor") from exc
    if not isinstance(claims, Mapping):
        raise VerificationError("the CWT payload is not a CBOR map", reason="bad-cbor")
    claims = thaw(claims)
    hcert = claims.get(CLAIM_HCERT)
    if not isinstance(hcert, dict) or not isinstance(hcert.get(HCERT_DCC), dict):
        raise VerificationError("the CWT has no health certificate (claim -260 {1: DCC})", reason="bad-cbor")
    for claim, name in ((CLAIM_IAT, "iat"), (CLAIM_EXP, "exp")):
        value = claims.get(claim)
        if value is not None and (
            not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 2**37
        ):
            raise VerificationError(f"CWT claim {name} is not a number of seconds since 1970", reason="bad-cbor")
    return Hc1Content(cose, claims)
