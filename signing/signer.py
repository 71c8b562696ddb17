"""The one small protocol every output format signs through, and what every key store shares.

:class:`Signer` is what JWS, HC1/COSE and PAdES need from a key; key stores
(``signing.keys`` for a key file, ``signing.pkcs11`` for a token) build on
:class:`CertifiedSigner`. Below both stores and every format, so none of them
imports another to reach the protocol.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from signing.errors import SignerConfigError, SigningError
from signing.pki import is_development

Algorithm = Literal["ES256", "PS256"]


@runtime_checkable
class Signer(Protocol):
    """What every output format needs from a key: its certificate, chain, and a signature."""

    @property
    def certificate(self) -> x509.Certificate: ...

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """Issuer certificates, closest first, root last (may be empty)."""
        ...

    @property
    def algorithm(self) -> Algorithm: ...

    @property
    def kid(self) -> bytes:
        """First 8 bytes of SHA-256 over the certificate DER (the EU DCC key identifier)."""
        ...

    @property
    def development(self) -> bool: ...

    def sign(self, data: bytes) -> bytes:
        """Signature over SHA-256 of ``data``: DER ECDSA-Sig-Value for ES256, RSASSA-PSS for PS256."""
        ...


def certificate_kid(cert: x509.Certificate) -> bytes:
    """The DCC kid: first 8 bytes of SHA-256 over the certificate DER."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()[:8]


def algorithm_for(public_key: object, source: str) -> Algorithm:
    """ES256 for an EC P-256 key, PS256 for RSA ≥ 2048 bits; anything else cannot sign results."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name != "secp256r1":
            raise SigningError(f"{source}: EC key on {public_key.curve.name}; ES256 needs a P-256 (secp256r1) key")
        return "ES256"
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < 2048:
            raise SigningError(f"{source}: RSA key of {public_key.key_size} bits; PS256 needs at least 2048")
        return "PS256"
    raise SigningError(f"{source}: unsupported key type {type(public_key).__name__} (expected EC P-256 or RSA)")


#: PSS parameters of JWS/COSE PS256 (RFC 7518 §3.5: MGF1-SHA256, salt as long as the hash).
PSS_SHA256 = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


def same_public_key(a: object, b: object) -> bool:
    """True when two public keys (EC or RSA, any library object cryptography knows) are the same key."""
    def spki(key: object) -> bytes:
        return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]

    return spki(a) == spki(b)


class CertifiedSigner:
    """What every signer derives from its certificate: chain, algorithm, kid, DEVELOPMENT mark.

    Key stores (file, PKCS#11) subclass it and add only :meth:`sign`.
    """

    __slots__ = ("_cert", "_chain", "_algorithm", "_kid", "_development")

    def __init__(self, certificate: x509.Certificate, chain: tuple[x509.Certificate, ...], source: str) -> None:
        self._cert = certificate
        self._chain = tuple(chain)
        self._algorithm: Algorithm = algorithm_for(certificate.public_key(), source)
        self._kid = certificate_kid(certificate)
        self._development = is_development(certificate)

    @property
    def certificate(self) -> x509.Certificate:
        return self._cert

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        return self._chain

    @property
    def algorithm(self) -> Algorithm:
        return self._algorithm

    @property
    def kid(self) -> bytes:
        return self._kid

    @property
    def development(self) -> bool:
        return self._development


def load_certificates(path: str | os.PathLike[str]) -> list[x509.Certificate]:
    """All certificates in a PEM file (or one DER certificate)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise SignerConfigError(f"certificate file {path} cannot be read ({exc.strerror})") from exc
    try:
        if b"-----BEGIN CERTIFICATE-----" in raw:
            return x509.load_pem_x509_certificates(raw)
        return [x509.load_der_x509_certificate(raw)]
    except ValueError as exc:
        raise SignerConfigError(f"{path}: not an X.509 certificate in PEM or DER form") from exc


def order_chain(leaf: x509.Certificate, pool: list[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    """Order issuer certificates from the leaf's issuer up to the root; drop unrelated ones."""
    ordered: list[x509.Certificate] = []
    current = leaf
    remaining = [c for c in pool if c != leaf]
    while remaining and current.issuer != current.subject:
        parent = next((c for c in remaining if c.subject == current.issuer), None)
        if parent is None:
            break
        ordered.append(parent)
        remaining.remove(parent)
        current = parent
    return tuple(ordered)
