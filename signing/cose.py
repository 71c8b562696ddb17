"""COSE_Sign1 (RFC 9052 §4.2) with ES256 / PS256, the envelope of an HC1 payload.

Only what EU DCC uses: a single signer, ``alg`` and ``kid`` in the protected
header, no external AAD, an attached payload. ES256 signatures are the raw
``r‖s`` concatenation (RFC 9053 §2.1), not DER. Everything that depends only
on the signer (the protected header bytes and the fixed start of the
Sig_structure) is computed once per signer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from signing.errors import VerificationError
from signing.signer import Signer

#: COSE algorithm identifiers (IANA "COSE Algorithms").
COSE_ALG = {"ES256": -7, "PS256": -37}
ALG_NAME = {v: k for k, v in COSE_ALG.items()}
HEADER_ALG, HEADER_KID = 1, 4
SIGN1_TAG = 18

_protected_cache: dict[tuple[bytes, str], tuple[bytes, bytes]] = {}


def _bstr_head(length: int) -> bytes:
    """CBOR major type 2 (byte string) head for ``length``."""
    if length < 24:
        return bytes([0x40 | length])
    if length < 0x100:
        return bytes([0x58, length])
    if length < 0x10000:
        return b"\x59" + length.to_bytes(2, "big")
    return b"\x5a" + length.to_bytes(4, "big")


def _protected(signer: Signer) -> tuple[bytes, bytes]:
    """(protected header bstr contents, Sig_structure prefix up to the payload) for ``signer``."""
    key = (signer.kid, signer.algorithm)
    cached = _protected_cache.get(key)
    if cached is None:
        protected = cbor2.dumps({HEADER_ALG: COSE_ALG[signer.algorithm], HEADER_KID: signer.kid})
        # Sig_structure = ["Signature1", protected, external_aad = h'', payload]
        prefix = b"\x84" + cbor2.dumps("Signature1") + _bstr_head(len(protected)) + protected + b"\x40"
        cached = (protected, prefix)
        _protected_cache[key] = cached
    return cached


def sign1(payload: bytes, signer: Signer) -> bytes:
    """Tagged COSE_Sign1 bytes over ``payload`` with ``signer`` (kid and alg protected)."""
    protected, prefix = _protected(signer)
    signature = signer.sign(prefix + _bstr_head(len(payload)) + payload)
    if signer.algorithm == "ES256":
        r, s = decode_dss_signature(signature)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    # 0xd2 = tag 18, 0x84 = array(4), 0xa0 = empty unprotected map
    return (
        b"\xd2\x84" + _bstr_head(len(protected)) + protected + b"\xa0"
        + _bstr_head(len(payload)) + payload + _bstr_head(len(signature)) + signature
    )


@dataclass(frozen=True)
class CoseSign1:
    """A decoded COSE_Sign1 message (structure checked, signature not yet verified)."""

    protected_bytes: bytes
    protected: Mapping[Any, Any]
    unprotected: Mapping[Any, Any]
    payload: bytes
    signature: bytes
    tagged: bool = field(default=True)

    @property
    def alg(self) -> str | None:
        """Algorithm name; protected header first, as RFC 9052 requires for alg."""
        value = self.protected.get(HEADER_ALG, self.unprotected.get(HEADER_ALG))
        return ALG_NAME.get(value) if isinstance(value, int) else None

    @property
    def kid(self) -> bytes | None:
        """Key identifier: the protected header's when present, else the unprotected one (DCC rule)."""
        value = self.protected.get(HEADER_KID)
        if value is None:
            value = self.unprotected.get(HEADER_KID)
        return bytes(value) if isinstance(value, (bytes, bytearray)) else None

    def to_be_signed(self) -> bytes:
        """The Sig_structure bytes the signature covers."""
        return cbor2.dumps(["Signature1", self.protected_bytes, b"", self.payload])


def decode_sign1(data: bytes) -> CoseSign1:
    """Parse COSE_Sign1 bytes; VerificationError(reason='bad-cbor' / 'bad-cose') on any structural fault."""
    try:
        obj = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, EOFError) as exc:
        raise VerificationError(f"the QR payload is not valid CBOR ({exc})", reason="bad-cbor") from exc
    tagged = False
    if isinstance(obj, cbor2.CBORTag):
        if obj.tag != SIGN1_TAG:
            raise VerificationError(
                f"CBOR tag {obj.tag} is not COSE_Sign1 (18); only single-signer messages are accepted",
                reason="bad-cose",
            )
        obj, tagged = obj.value, True
    if not isinstance(obj, (list, tuple)) or len(obj) != 4:
        raise VerificationError("COSE_Sign1 must be an array of 4 items", reason="bad-cose")
    protected_bytes, unprotected, payload, signature = obj
    if not isinstance(protected_bytes, bytes) or not isinstance(unprotected, Mapping):
        raise VerificationError("COSE_Sign1 headers malformed (protected bstr, unprotected map)", reason="bad-cose")
    if not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise VerificationError("COSE_Sign1 payload and signature must be byte strings", reason="bad-cose")
    try:
        protected = cbor2.loads(protected_bytes) if protected_bytes else {}
    except (cbor2.CBORDecodeError, ValueError, TypeError, EOFError) as exc:
        raise VerificationError("COSE protected header is not valid CBOR", reason="bad-cbor") from exc
    if not isinstance(protected, Mapping):
        raise VerificationError("COSE protected header is not a map", reason="bad-cose")
    return CoseSign1(protected_bytes, dict(protected), dict(unprotected), payload, signature, tagged)
