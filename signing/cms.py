"""Detached CAdES ``SignedData`` (RFC 5652, ETSI EN 319 122-1) for one signer, encoded once and filled per digest.

Every document a lab signs uses the same key and chain, so almost all of the
CMS is constant. :class:`DetachedSignedData` encodes that constant part once
(certificates, signer identifier, the signed-attribute template with the
message digest's offset found) and per document only splices in the digest,
the signature and, for B-T, the time-stamp token. Signed attributes:
content-type, message-digest and ESS signing-certificate-v2; no signing time
(PAdES B-B forbids it as a signed attribute).
"""

from __future__ import annotations

import hashlib

from asn1crypto import algos, core, tsp
from asn1crypto import cms as asn1_cms
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization

from signing.errors import SigningError
from signing.signer import Signer
from signing.timestamp import TimeStamperLike, fetch_token

__all__ = ["DetachedSignedData"]

#: The most an ECDSA P-256 DER signature can take (two 33-byte INTEGERs + headers).
_ECDSA_P256_MAX = 72

_OID_DATA = core.ObjectIdentifier("1.2.840.113549.1.7.1").dump()
_OID_SIGNED_DATA = core.ObjectIdentifier("1.2.840.113549.1.7.2").dump()
_OID_TST_ATTRIBUTE = core.ObjectIdentifier("1.2.840.113549.1.9.16.2.14").dump()
_INTEGER_1 = core.Integer(1).dump()


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + _der_length(len(body)) + body


class DetachedSignedData:
    """The constant part of a detached ``ContentInfo(SignedData)`` for ``signer``; :meth:`sign_digest` fills it."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer
        cert_der = signer.certificate.public_bytes(serialization.Encoding.DER)
        chain_der = [c.public_bytes(serialization.Encoding.DER) for c in signer.chain]
        leaf = asn1_x509.Certificate.load(cert_der)

        if signer.algorithm == "ES256":
            sig_alg = algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"})
            #: The longest signature value the key can produce (bytes), for reserving room.
            self.max_signature = _ECDSA_P256_MAX
        elif signer.algorithm == "PS256":
            sig_alg = algos.SignedDigestAlgorithm(
                {
                    "algorithm": "rsassa_pss",
                    "parameters": algos.RSASSAPSSParams(
                        {
                            "hash_algorithm": {"algorithm": "sha256"},
                            "mask_gen_algorithm": {
                                "algorithm": "mgf1",
                                "parameters": {"algorithm": "sha256"},
                            },
                            "salt_length": 32,
                        }
                    ),
                }
            )
            self.max_signature = (signer.certificate.public_key().key_size + 7) // 8  # type: ignore[union-attr]
        else:  # pragma: no cover - Signer.algorithm is a closed set
            raise SigningError(f"PAdES cannot use signature algorithm {signer.algorithm!r} (expected ES256 or PS256)")

        digest_alg = algos.DigestAlgorithm({"algorithm": "sha256"}).dump()
        sid = asn1_cms.IssuerAndSerialNumber({"issuer": leaf.issuer, "serial_number": leaf.serial_number}).dump()

        # Signed attributes, DER SET OF order (sorted by encoding). The message
        # digest has a fixed length, so the order found with a marker holds for
        # every real digest, and the marker's offset is where digests go.
        marker = hashlib.sha256(b"ketqua message-digest placeholder").digest()
        ess = tsp.SigningCertificateV2(
            {
                "certs": [
                    tsp.ESSCertIDv2(
                        {
                            # sha256 is the DEFAULT hash algorithm: DER omits it.
                            "cert_hash": hashlib.sha256(cert_der).digest(),
                            "issuer_serial": {
                                "issuer": [asn1_x509.GeneralName({"directory_name": leaf.issuer})],
                                "serial_number": leaf.serial_number,
                            },
                        }
                    )
                ]
            }
        )
        attributes = sorted(
            asn1_cms.CMSAttribute({"type": kind, "values": [value]}).dump()
            for kind, value in (
                ("content_type", "data"),
                ("message_digest", marker),
                ("signing_certificate_v2", ess),
            )
        )
        body = b"".join(attributes)
        at = body.index(marker)
        self._attrs_head, self._attrs_tail = body[:at], body[at + len(marker):]

        # Everything before and after the variable parts of SignerInfo / SignedData.
        self._signer_info_head = _INTEGER_1 + sid + digest_alg
        self._signature_algorithm = sig_alg.dump()
        certificates = b"".join(sorted([cert_der, *chain_der]))
        self._signed_data_head = (
            _INTEGER_1
            + _tlv(0x31, digest_alg)
            + _tlv(0x30, _OID_DATA)  # detached: no eContent
            + _tlv(0xA0, certificates)
        )

    def max_size(self) -> int:
        """The longest DER this signer's ``SignedData`` takes without a time-stamp token (bytes)."""
        return len(self.assemble(b"\x00" * 32, b"\x00" * self.max_signature, b""))

    def assemble(self, digest: bytes, signature: bytes, unsigned: bytes) -> bytes:
        """The DER ``ContentInfo`` from the variable parts (``unsigned``: encoded unsigned attributes, or empty)."""
        attrs = self._attrs_head + digest + self._attrs_tail
        signer_info = _tlv(
            0x30,
            self._signer_info_head
            + _tlv(0xA0, attrs)  # [0] IMPLICIT SET OF Attribute
            + self._signature_algorithm
            + _tlv(0x04, signature)
            + (_tlv(0xA1, unsigned) if unsigned else b""),
        )
        signed_data = _tlv(0x30, self._signed_data_head + _tlv(0x31, signer_info))
        return _tlv(0x30, _OID_SIGNED_DATA + _tlv(0xA0, signed_data))

    def sign_digest(self, digest: bytes, timestamper: TimeStamperLike | None = None) -> bytes:
        """DER ``ContentInfo(SignedData)`` over a 32-byte SHA-256 document digest, time-stamped when asked."""
        signed_attrs = self._attrs_head + digest + self._attrs_tail
        # The signature covers the attributes as a DER SET (tag 0x31), not as the [0] they travel in.
        try:
            signature = self.signer.sign(_tlv(0x31, signed_attrs))
        except SigningError:
            raise
        except Exception as exc:  # a token or key failure, translated for the operator
            raise SigningError(f"the signing key refused to sign ({type(exc).__name__}: {exc})") from exc
        unsigned = b""
        if timestamper is not None:
            token = fetch_token(timestamper, hashlib.sha256(signature).digest())
            unsigned = _tlv(0x30, _OID_TST_ATTRIBUTE + _tlv(0x31, token))
        return self.assemble(digest, signature, unsigned)
