"""JSON Web Keys and base64url: the encoding shared by JWS signing (``signing.jws``) and trust lists (``signing.trust``).

Below both, so a JWK Set can be read as a trust list without the JWS module,
and JWS verification can consult the trust list without an import cycle.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from signing.errors import VerificationError


def b64url(data: bytes) -> bytes:
    """Unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def b64url_decode(text: str | bytes) -> bytes:
    """Decode unpadded base64url strictly: one text per byte string (no padding, no stray bits)."""
    if isinstance(text, str):
        text = text.encode("ascii")
    decoded = base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))
    # Non-zero trailing bits or foreign characters would let two texts carry one value;
    # a verifier must not accept a token that differs from what was signed.
    if b64url(decoded) != text:
        raise ValueError("not canonical unpadded base64url")
    return decoded


def jwk_public_key(jwk: Mapping[str, Any]) -> object:
    """The public key a JWK (EC P-256 or RSA) describes; None for another key type, ``bad-jwks`` when malformed."""
    try:
        if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
            x = int.from_bytes(b64url_decode(jwk["x"]), "big")
            y = int.from_bytes(b64url_decode(jwk["y"]), "big")
            return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
        if jwk.get("kty") == "RSA":
            n = int.from_bytes(b64url_decode(jwk["n"]), "big")
            e = int.from_bytes(b64url_decode(jwk["e"]), "big")
            return rsa.RSAPublicNumbers(e, n).public_key()
    except (KeyError, ValueError, binascii.Error) as exc:
        raise VerificationError(f"JWK {jwk.get('kid')!r} is malformed ({exc})", reason="bad-jwks") from exc
    return None
