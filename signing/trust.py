"""Offline trust decisions shared by the JWS and HC1 verifiers.

A verifier is given trust roots: a root CA, or (as EU DCC test data does) the
signer certificate itself. This module builds the path from a signer
certificate to one of those roots, checks each certificate's validity at the
signing time and the signer's key usage, and checks raw JOSE/COSE signatures.
(PAdES validation uses pyHanko's full validator instead; see signing.verify.)

Trust can also come as a JWK Set, the way a lab publishes its keys at
``/v1/keys`` (:func:`load_trust`): each key's certificate (``x5c``) is then
trusted as published, like a signer certificate given directly.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from signing.errors import VerificationError
from signing.jwk import jwk_public_key
from signing.signer import PSS_SHA256, same_public_key

_MAX_DEPTH = 6

CertificateSource = x509.Certificate | bytes | str | os.PathLike[str]


def as_certificates(items: Iterable[CertificateSource] | CertificateSource) -> list[x509.Certificate]:
    """Certificates from objects, PEM/DER bytes, or paths of PEM/DER files (a PEM file may hold several)."""
    if isinstance(items, (x509.Certificate, bytes, str, os.PathLike)):
        items = [items]
    certs: list[x509.Certificate] = []
    for item in items:
        if isinstance(item, x509.Certificate):
            certs.append(item)
            continue
        raw = item if isinstance(item, bytes) else Path(item).read_bytes()
        try:
            if b"-----BEGIN CERTIFICATE-----" in raw:
                certs.extend(x509.load_pem_x509_certificates(raw))
            else:
                certs.append(x509.load_der_x509_certificate(raw))
        except (ValueError, x509.InvalidVersion) as exc:
            name = "certificate bytes" if isinstance(item, bytes) else str(item)
            raise VerificationError(f"{name}: not an X.509 certificate (PEM or DER)", reason="bad-trust-root") from exc
    return certs


@dataclass
class TrustSet:
    """What ``--trust`` files give: certificates trusted as given, and published keys that carry no certificate."""

    #: Trust roots: CA or signer certificates from PEM/DER files, and the ``x5c`` certificates of JWKS keys.
    roots: list[x509.Certificate] = field(default_factory=list)
    #: JWKs without ``x5c`` (a bare public key can check a JWS, not an HC1 or a PDF).
    bare_keys: list[dict[str, Any]] = field(default_factory=list)

    def jwks_for(self, kid: object) -> dict[str, Any] | None:
        """A JWK Set of the bare keys named ``kid``, or None when none is."""
        keys = [k for k in self.bare_keys if k.get("kid") == kid]
        return {"keys": keys} if keys else None


def load_trust(paths: Iterable[str | os.PathLike[str]]) -> TrustSet:
    """Trust from files: PEM/DER certificates, or a JWK Set JSON file (as ``/v1/keys`` publishes).

    A JWKS key's certificate (first ``x5c`` entry) must hold the key the JWK
    states, else the file is refused (``bad-jwks``); intermediates after it add
    nothing, since the published certificate itself is trusted.
    """
    trust = TrustSet()
    for path in paths:
        raw = Path(path).read_bytes()
        if raw.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"{"):
            try:
                document = json.loads(raw.decode("utf-8-sig"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise VerificationError(f"{path}: not valid JSON ({exc})", reason="bad-jwks") from exc
            roots, bare = certificates_from_jwks(document, str(path))
            trust.roots.extend(c for c in roots if c not in trust.roots)
            trust.bare_keys.extend(bare)
        else:
            trust.roots.extend(c for c in as_certificates(path) if c not in trust.roots)
    return trust


def certificates_from_jwks(document: object, source: str = "JWKS") -> tuple[list[x509.Certificate], list[dict[str, Any]]]:
    """The ``x5c`` signer certificates of a JWK Set, and the keys that have none; ``bad-jwks`` when malformed."""
    keys = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(keys, list) or not keys or not all(isinstance(k, Mapping) for k in keys):
        raise VerificationError(f"{source}: not a JWK Set (expected a JSON object with a non-empty \"keys\" list)", reason="bad-jwks")
    certs: list[x509.Certificate] = []
    bare: list[dict[str, Any]] = []
    for jwk in keys:
        name = f"{source}: key {jwk.get('kid')!r}"
        public = jwk_public_key(jwk)
        if public is None:
            raise VerificationError(f"{name} is not an EC P-256 or RSA key", reason="bad-jwks")
        x5c = jwk.get("x5c")
        if x5c is None:
            bare.append(dict(jwk))
            continue
        try:
            cert = x509.load_der_x509_certificate(base64.b64decode(x5c[0], validate=True))
        except (ValueError, TypeError, IndexError, KeyError, binascii.Error) as exc:
            raise VerificationError(f"{name}: x5c is not a list of base64 DER certificates", reason="bad-jwks") from exc
        if not same_public_key(cert.public_key(), public):
            raise VerificationError(f"{name}: the x5c certificate holds another key than the JWK states", reason="bad-jwks")
        certs.append(cert)
    return certs, bare


def _utc(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def check_validity(cert: x509.Certificate, at: dt.datetime) -> None:
    """Refuse a certificate that was not valid at ``at`` (the signing time)."""
    at = _utc(at)
    if at < cert.not_valid_before_utc:
        raise VerificationError(
            f"certificate '{cert.subject.rfc4514_string()}' was not yet valid at {at.isoformat()} "
            f"(valid from {cert.not_valid_before_utc.isoformat()})",
            reason="certificate-not-yet-valid",
        )
    if at > cert.not_valid_after_utc:
        raise VerificationError(
            f"certificate '{cert.subject.rfc4514_string()}' had expired at {at.isoformat()} "
            f"(valid until {cert.not_valid_after_utc.isoformat()})",
            reason="certificate-expired",
        )


def check_signer_usage(cert: x509.Certificate) -> None:
    """A result signer must be allowed digitalSignature or nonRepudiation, and must not be a CA."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None  # DCC DSCs often carry no key usage; absence places no restriction (RFC 5280).
    if usage is not None and not (usage.digital_signature or usage.content_commitment):
        raise VerificationError(
            f"certificate '{cert.subject.rfc4514_string()}' is not allowed to sign documents "
            "(key usage lacks digitalSignature and nonRepudiation)",
            reason="bad-key-usage",
        )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not bc.ca:
        return False
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return bool(usage.key_cert_sign)


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def validate_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    at: dt.datetime,
) -> list[x509.Certificate]:
    """The path leaf → … → trusted root, every certificate valid at ``at``; else VerificationError.

    A root may be the leaf itself (the signer certificate given as trust, as in
    DCC test data). Intermediates must be CAs; the root is trusted as given.
    """
    if not roots:
        raise VerificationError("no trust roots were given (use --trust PEM)", reason="no-trust-roots")
    check_validity(leaf, at)
    check_signer_usage(leaf)
    if leaf in roots:
        return [leaf]
    path = [leaf]
    current = leaf
    pool = [c for c in intermediates if c != leaf]
    for _ in range(_MAX_DEPTH):
        for root in roots:
            if root.subject == current.issuer and _issued_by(current, root):
                check_validity(root, at)
                path.append(root)
                return path
        parent = next(
            (c for c in pool if c.subject == current.issuer and _is_ca(c) and _issued_by(current, c)), None
        )
        if parent is None:
            break
        check_validity(parent, at)
        path.append(parent)
        pool.remove(parent)
        current = parent
    names = "; ".join(r.subject.rfc4514_string() for r in roots)
    raise VerificationError(
        f"signer '{leaf.subject.rfc4514_string()}' (issued by '{current.issuer.rfc4514_string()}') "
        f"does not chain to a trusted root ({names})",
        reason="untrusted-chain",
    )


def verify_raw_signature(public_key: object, algorithm: str, signature: bytes, data: bytes) -> bool:
    """Check a JOSE/COSE signature (ES256 raw r‖s, or PS256) over ``data``; False when it does not verify."""
    try:
        if algorithm == "ES256":
            if not isinstance(public_key, ec.EllipticCurvePublicKey) or public_key.curve.name != "secp256r1":
                return False
            if len(signature) != 64:
                return False
            der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
            public_key.verify(der, data, ec.ECDSA(hashes.SHA256()))
            return True
        if algorithm == "PS256":
            if not isinstance(public_key, rsa.RSAPublicKey):
                return False
            public_key.verify(signature, data, PSS_SHA256, hashes.SHA256())
            return True
    except InvalidSignature:
        return False
    return False
