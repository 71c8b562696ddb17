"""JWS compact serialisation (RFC 7515) with ES256/PS256, and the JWKS that verifies it.

The payload is the canonical JSON (RFC 8785) of a result; the protected header
names the key three ways so any verifier can find it: ``kid`` (base64url of the
DCC kid, the first 8 bytes of SHA-256 over the signer certificate DER, so JWS,
HC1 and JWKS agree), ``x5t#S256`` (the full certificate thumbprint) and
``x5c`` (signer certificate and intermediates, without the self-signed root,
which the verifier must hold as a trust root anyway). With ``x5c`` a token can
be checked offline against a root CA alone.

Everything that depends only on the signer (the header bytes) is computed once
per signer; per call the work is base64 of the payload, one signature and the
DER → r‖s conversion.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from signing.errors import VerificationError
from signing.canonical import canonical_json
from signing.jwk import b64url, b64url_decode, jwk_public_key
from signing.signer import Signer, certificate_kid
from signing.trust import CertificateSource, as_certificates, validate_chain, verify_raw_signature

SUPPORTED_ALGORITHMS = ("ES256", "PS256")

_header_cache: dict[tuple[bytes, bytes, bool], bytes] = {}


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def protected_header(signer: Signer, *, x5c: bool = True) -> dict[str, Any]:
    """The JOSE header this module writes for ``signer``."""
    header: dict[str, Any] = {
        "alg": signer.algorithm,
        "kid": b64url(signer.kid).decode("ascii"),
        "x5t#S256": b64url(hashlib.sha256(_der(signer.certificate)).digest()).decode("ascii"),
    }
    if x5c:
        chain = [c for c in signer.chain if c.issuer != c.subject]
        header["x5c"] = [base64.b64encode(_der(c)).decode("ascii") for c in (signer.certificate, *chain)]
    return header


def _header_b64(signer: Signer, x5c: bool) -> bytes:
    key = (signer.kid, signer.certificate.signature, x5c)
    cached = _header_cache.get(key)
    if cached is None:
        cached = b64url(canonical_json(protected_header(signer, x5c=x5c)))
        _header_cache[key] = cached
    return cached


def sign_compact(payload: bytes, signer: Signer, *, x5c: bool = True) -> str:
    """Sign ``payload`` (the canonical JSON bytes) and return ``header.payload.signature``."""
    signing_input = _header_b64(signer, x5c) + b"." + b64url(payload)
    signature = signer.sign(signing_input)
    if signer.algorithm == "ES256":
        r, s = decode_dss_signature(signature)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return (signing_input + b"." + b64url(signature)).decode("ascii")


def jwks(certs: Iterable[x509.Certificate] | Signer) -> dict[str, Any]:
    """A JWK Set (RFC 7517) with one key per signer certificate, each with ``kid``, ``x5c`` and ``x5t#S256``.

    Given a Signer, publishes its certificate with its chain in ``x5c`` (so a
    relying party can check the chain to the lab's root).
    """
    if isinstance(certs, Signer):
        groups = [(certs.certificate, [c for c in certs.chain if c.issuer != c.subject])]
    else:
        groups = [(c, []) for c in certs]
    keys = []
    for cert, chain in groups:
        key = cert.public_key()
        jwk: dict[str, Any] = {"kid": b64url(certificate_kid(cert)).decode("ascii"), "use": "sig"}
        if isinstance(key, ec.EllipticCurvePublicKey):
            numbers = key.public_numbers()
            size = (key.curve.key_size + 7) // 8
            jwk.update(
                kty="EC",
                crv="P-256",
                alg="ES256",
                x=b64url(numbers.x.to_bytes(size, "big")).decode("ascii"),
                y=b64url(numbers.y.to_bytes(size, "big")).decode("ascii"),
            )
        elif isinstance(key, rsa.RSAPublicKey):
            numbers = key.public_numbers()
            jwk.update(
                kty="RSA",
                alg="PS256",
                n=b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")).decode("ascii"),
                e=b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")).decode("ascii"),
            )
        else:
            continue
        jwk["x5c"] = [base64.b64encode(_der(c)).decode("ascii") for c in (cert, *chain)]
        jwk["x5t#S256"] = b64url(hashlib.sha256(_der(cert)).digest()).decode("ascii")
        keys.append(jwk)
    return {"keys": keys}


def decode_header(token: str) -> dict[str, Any]:
    """The protected header of a compact JWS, without verifying anything."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise VerificationError(
            f"not a compact JWS: expected 3 dot-separated parts, found {len(parts)}", reason="malformed"
        )
    try:
        header = json.loads(b64url_decode(parts[0]))
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise VerificationError("the JWS header is not base64url-encoded JSON", reason="malformed") from exc
    if not isinstance(header, dict):
        raise VerificationError("the JWS header is not a JSON object", reason="malformed")
    return header


def _signing_time(payload: bytes, at: dt.datetime | None) -> dt.datetime:
    """The moment certificates must have been valid: ``at``, else the result's ``issued_at``, else now."""
    if at is not None:
        return at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)
    try:
        issued = json.loads(payload).get("issued_at")
        if isinstance(issued, str):
            return dt.datetime.fromisoformat(issued.replace("Z", "+00:00"))
    except (ValueError, AttributeError, UnicodeDecodeError):
        pass
    return dt.datetime.now(dt.timezone.utc)


def verify_compact(
    token: str,
    jwks_or_certs: Mapping[str, Any] | Iterable[CertificateSource] | CertificateSource,
    *,
    payload: bytes | None = None,
    at: dt.datetime | None = None,
) -> bytes:
    """Verify a compact JWS and return its payload bytes; raise VerificationError(reason=...) otherwise.

    ``jwks_or_certs``: a JWK Set (trusted as published), or trust-root
    certificates (a root CA, or the signer certificate itself). With roots, the
    signer comes from a root with the header's ``kid`` or from ``x5c``, whose
    chain must lead to a root; certificates must be valid at ``at`` (default:
    the payload's ``issued_at``). ``payload`` verifies a detached JWS
    (``header..signature``).
    """
    return verify_compact_report(token, jwks_or_certs, payload=payload, at=at)[0]


def verify_compact_report(
    token: str,
    jwks_or_certs: Mapping[str, Any] | Iterable[CertificateSource] | CertificateSource,
    *,
    payload: bytes | None = None,
    at: dt.datetime | None = None,
) -> tuple[bytes, dict[str, Any], list[x509.Certificate]]:
    """As :func:`verify_compact`, also returning the header and the certificate path (signer first; empty via JWKS)."""
    header = decode_header(token)
    head_b64, payload_b64, sig_b64 = token.strip().split(".")
    alg = header.get("alg")
    if alg not in SUPPORTED_ALGORITHMS:
        raise VerificationError(
            f"JWS algorithm {alg!r} is not accepted (expected one of {', '.join(SUPPORTED_ALGORITHMS)})",
            reason="unsupported-algorithm",
        )
    if "crit" in header:
        raise VerificationError(f"JWS header marks {header['crit']!r} critical; not understood", reason="malformed")
    if payload_b64 == "":
        if payload is None:
            raise VerificationError("detached JWS: the payload must be supplied to verify it", reason="malformed")
        payload_b64 = b64url(payload).decode("ascii")
        body = payload
    else:
        try:
            body = b64url_decode(payload_b64)
        except (ValueError, binascii.Error) as exc:
            raise VerificationError("the JWS payload is not base64url", reason="malformed") from exc
        if payload is not None and payload != body:
            raise VerificationError("the JWS carries a different payload than the one supplied", reason="payload-mismatch")
    try:
        signature = b64url_decode(sig_b64)
    except (ValueError, binascii.Error) as exc:
        raise VerificationError("the JWS signature is not base64url", reason="malformed") from exc
    signing_input = f"{head_b64}.{payload_b64}".encode("ascii")
    kid = header.get("kid")

    if isinstance(jwks_or_certs, Mapping):
        candidates = [k for k in jwks_or_certs.get("keys", []) if kid is None or k.get("kid") == kid]
        if not candidates:
            raise VerificationError(f"no key with kid {kid!r} in the JWKS", reason="unknown-kid")
        for jwk in candidates:
            key = jwk_public_key(jwk)
            if key is not None and verify_raw_signature(key, alg, signature, signing_input):
                return body, header, []
        raise VerificationError("the JWS signature does not verify with the published key", reason="bad-signature")

    roots = as_certificates(jwks_or_certs)
    when = _signing_time(body, at)
    # 1. a trust root that is itself the signer (matched by kid)
    direct = [c for c in roots if kid is not None and b64url(certificate_kid(c)).decode("ascii") == kid]
    # 2. the signer certificate carried in x5c, chained to a root
    carried: list[x509.Certificate] = []
    if "x5c" in header:
        try:
            carried = [x509.load_der_x509_certificate(base64.b64decode(c, validate=True)) for c in header["x5c"]]
        except (ValueError, TypeError, binascii.Error, x509.InvalidVersion) as exc:
            raise VerificationError("the JWS x5c header is not a list of base64 DER certificates", reason="malformed") from exc
    if carried:
        leaf = carried[0]
        thumb = header.get("x5t#S256")
        if thumb is not None and thumb != b64url(hashlib.sha256(_der(leaf)).digest()).decode("ascii"):
            raise VerificationError("x5t#S256 does not match the first x5c certificate", reason="kid-mismatch")
        if kid is not None and kid != b64url(certificate_kid(leaf)).decode("ascii"):
            raise VerificationError("kid does not match the first x5c certificate", reason="kid-mismatch")
        if leaf not in direct:
            direct.append(leaf)
    if not direct:
        raise VerificationError(
            f"no trusted certificate has kid {kid!r} and the JWS carries no x5c chain", reason="unknown-kid"
        )
    failure: VerificationError | None = None
    for cert in direct:
        if not verify_raw_signature(cert.public_key(), alg, signature, signing_input):
            failure = failure or VerificationError(
                f"the JWS signature does not verify with '{cert.subject.rfc4514_string()}'", reason="bad-signature"
            )
            continue
        try:
            path = validate_chain(cert, carried[1:], roots, when)
        except VerificationError as exc:
            failure = exc
            continue
        return body, header, path
    assert failure is not None
    raise failure
