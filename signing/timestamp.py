"""RFC 3161 time-stamping for PAdES B-T: the client protocol, a synchronous fetch, and a development TSA.

A B-T signature carries a time-stamp token over its signature value, so the
token is fetched while a certificate is being signed, often from inside a
pipeline coroutine: :func:`fetch_token` works with or without a running event
loop. :class:`DevelopmentTimeStamper` answers locally with the development
PKI's TSA key (tests and demos), so B-T needs no network there.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from datetime import datetime
from typing import Any, Protocol

from asn1crypto import algos, cms, core, tsp
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from signing.errors import SigningError

__all__ = ["TimeStamperLike", "fetch_token", "DevelopmentTimeStamper", "development_timestamper", "build_development_stamper"]


class TimeStamperLike(Protocol):
    """An RFC 3161 client: pyHanko's ``TimeStamper`` family (HTTP, aiohttp, dummy) fits."""

    async def async_timestamp(self, message_digest: bytes, md_algorithm: str) -> cms.ContentInfo: ...


def fetch_token(timestamper: TimeStamperLike, digest: bytes) -> bytes:
    """The DER token over a SHA-256 ``digest``, fetched synchronously, also from inside a running event loop."""

    async def fetch() -> bytes:
        token = await timestamper.async_timestamp(digest, "sha256")
        return token.dump()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        running = False
    else:
        running = True
    try:
        if not running:
            return asyncio.run(fetch())
        # A pipeline coroutine called us: do the round trip on a helper thread's own loop.
        box: dict[str, Any] = {}

        def worker() -> None:
            try:
                box["token"] = asyncio.run(fetch())
            except BaseException as exc:  # re-raised in the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=worker, name="ketqua-tsa")
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["token"]
    except SigningError:
        raise
    except Exception as exc:
        raise SigningError(f"the time-stamp authority did not return a token ({type(exc).__name__}: {exc})") from exc


class DevelopmentTimeStamper:
    """An in-process RFC 3161 TSA over the development PKI's TSA key (EC or RSA), for B-T without a network.

    pyHanko's ``DummyTimeStamper`` answers requests locally but signs with RSA
    only; the development TSA key is EC P-256, so the token's SignerInfo is
    signed here with ECDSA-SHA256. Tokens are as a real TSA returns them
    (TSTInfo with nonce, ESS signing-certificate-v2, TSA certificate embedded),
    so pyHanko validates them against the development root. Picklable (it
    keeps the PEM bytes and builds the stamper on first use), so a
    ``CertificateWriter`` can hand it to its workers. Not for production: a
    real TSA is an independent party.
    """

    def __init__(self, tsa_cert_pem: bytes, tsa_key_pem: bytes, chain_pem: bytes = b"") -> None:
        self._pems = (tsa_cert_pem, tsa_key_pem, chain_pem)
        self._stamper: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"_pems": self._pems, "_stamper": None}

    async def async_timestamp(self, message_digest: bytes, md_algorithm: str) -> cms.ContentInfo:
        if self._stamper is None:
            self._stamper = build_development_stamper(*self._pems)
        return await self._stamper.async_timestamp(message_digest, md_algorithm)


def development_timestamper(tsa_cert_pem: bytes, tsa_key_pem: bytes, chain_pem: bytes = b"") -> DevelopmentTimeStamper:
    """A :class:`DevelopmentTimeStamper` from PEM bytes (``keys/tsa.pem``, ``keys/tsa.key``, ``keys/ca.pem``)."""
    return DevelopmentTimeStamper(tsa_cert_pem, tsa_key_pem, chain_pem)


def build_development_stamper(tsa_cert_pem: bytes, tsa_key_pem: bytes, chain_pem: bytes = b"") -> Any:
    """A pyHanko ``DummyTimeStamper`` that also signs with an EC key (the development TSA's)."""
    from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper  # lazy: pyHanko's signer stack costs ~0.3 s to import, needed only for development B-T

    cert = asn1_x509.Certificate.load(
        x509.load_pem_x509_certificate(tsa_cert_pem).public_bytes(serialization.Encoding.DER)
    )
    key = serialization.load_pem_private_key(tsa_key_pem, password=None)
    key_info = asn1_keys.PrivateKeyInfo.load(
        key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    chain = [
        asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER))
        for c in (x509.load_pem_x509_certificates(chain_pem) if chain_pem else [])
    ]

    class _EcCapableTimeStamper(DummyTimeStamper):
        def _sign_tst_info(self, tst_info_data: bytes, md_algorithm: str, dt: datetime) -> tuple[bytes, Any]:
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                return super()._sign_tst_info(tst_info_data, md_algorithm, dt)
            attrs = cms.CMSAttributes(
                [
                    cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
                    cms.CMSAttribute(
                        {"type": "signing_time", "values": [cms.Time({"utc_time": core.UTCTime(dt)})]}
                    ),
                    cms.CMSAttribute(
                        {
                            "type": "signing_certificate_v2",
                            "values": [
                                tsp.SigningCertificateV2(
                                    {"certs": [{"cert_hash": hashlib.sha256(cert.dump()).digest()}]}
                                )
                            ],
                        }
                    ),
                    cms.CMSAttribute(
                        {"type": "message_digest", "values": [hashlib.sha256(tst_info_data).digest()]}
                    ),
                ]
            )
            return key.sign(attrs.dump(), ec.ECDSA(hashes.SHA256())), attrs

        def _build_signed_data(self, *args: Any, **kwargs: Any) -> dict:
            signed = super()._build_signed_data(*args, **kwargs)
            if isinstance(key, ec.EllipticCurvePrivateKey):
                signed["signer_infos"][0]["signature_algorithm"] = algos.SignedDigestAlgorithm(
                    {"algorithm": "sha256_ecdsa"}
                )
            return signed

    return _EcCapableTimeStamper(tsa_cert=cert, tsa_key=key_info, certs_to_embed=chain)
