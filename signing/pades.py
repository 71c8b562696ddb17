"""PAdES signatures (ETSI EN 319 142-1) for result certificates, built for throughput.

Every certificate a lab issues is signed by the same key, with the same chain
and the same layout, so almost all of a CMS ``SignedData`` is constant. This
module encodes that constant part once per :class:`PadesSigner` and, per PDF,
only writes the ``/ByteRange``, hashes the two signed ranges, signs the signed
attributes and splices the DER into a ``/Contents`` placeholder of a fixed
size reserved in advance (so nothing is signed twice to learn the size, as
general-purpose PDF signers do).

Levels:

* **B-B** always: SubFilter ``ETSI.CAdES.detached``; signed attributes
  content-type, message-digest and signing-certificate-v2 (ESS). The signing
  time is *not* a signed attribute (EN 319 142-1 §5.2 forbids it in B-B); it is
  the signature dictionary's ``/M``.
* **B-T** when a time-stamper is given: an RFC 3161 signature-time-stamp-token
  over the signature value, as an unsigned attribute.
* B-LT (DSS with OCSP/CRL) is not produced yet.

Two ways in:

* :meth:`PadesSigner.sign` takes any unsigned or signed PDF and appends an
  incremental update with an invisible signature field
  (:mod:`signing.pdf_incremental`: directly for classic cross-reference
  tables, through pyHanko otherwise; the CMS is ours).
* :meth:`PadesSigner.signature_dictionary` + :meth:`PadesSigner.fill` let a
  PDF writer that lays out its own bytes (``engine.certificates``) place the
  signature dictionary itself and sign in place: no parsing at all.

The pieces live one concern per module, and this module re-exports what
callers have long imported from it:

* :mod:`signing.cms`: the detached CAdES ``SignedData`` template;
* :mod:`signing.pdf_incremental`: PDF strings and dates, the incremental update adding the field;
* :mod:`signing.timestamp`: RFC 3161 client protocol, token fetch, the development TSA.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from signing.cms import DetachedSignedData
from signing.errors import SigningError
from signing.pdf_incremental import add_signature_field, pdf_date, pdf_string
from signing.pdf_incremental import append_signature_field_directly as _append_signature_field  # noqa: F401  (re-exported: tests call it)
from signing.signer import Signer
from signing.timestamp import (
    DevelopmentTimeStamper,
    TimeStamperLike,
    development_timestamper,
)
from signing.timestamp import build_development_stamper as _build_development_stamper  # noqa: F401  (re-exported: tests serve HTTP with it)

__all__ = ["PadesSigner", "SignatureSlot", "TimeStamperLike", "pdf_date", "DevelopmentTimeStamper", "development_timestamper"]

#: Width of the ``/ByteRange`` array text, written over in place once offsets are known.
_BYTE_RANGE_WIDTH = 40
#: Room reserved for an RFC 3161 token (TSA certificate chain included) on B-T signatures.
_TIMESTAMP_RESERVE = 8192


@dataclass(frozen=True, slots=True)
class SignatureSlot:
    """Where a reserved signature sits inside a PDF being written (absolute byte offsets)."""

    byte_range_at: int  #: offset of the ``[`` of the ``/ByteRange`` placeholder
    contents_at: int  #: offset of the ``<`` opening the ``/Contents`` hex string
    contents_end: int  #: offset just after the closing ``>``


class PadesSigner:
    """Signs PDFs with one :class:`~signing.keys.Signer`, at PAdES B-B (or B-T with a time-stamper).

    Build one per process and reuse it: construction encodes the certificate
    chain, the signer identifier and the signed-attribute template.
    """

    def __init__(self, signer: Signer, timestamper: TimeStamperLike | None = None) -> None:
        self.signer = signer
        self.timestamper = timestamper
        self._cms = DetachedSignedData(signer)
        reserve = self._cms.max_size() + 64 + (_TIMESTAMP_RESERVE if timestamper is not None else 0)
        #: Bytes reserved for the CMS blob; ``/Contents`` is twice this many hex digits.
        self.reserved_size = (reserve + 255) // 256 * 256

    # -- CMS -----------------------------------------------------------------

    def cms_for_digest(self, digest: bytes) -> bytes:
        """DER ``ContentInfo(SignedData)`` over a SHA-256 document digest (detached CAdES)."""
        if len(digest) != 32:
            raise SigningError(f"PAdES needs a 32-byte SHA-256 digest of the byte ranges, got {len(digest)} bytes")
        return self._cms.sign_digest(digest, self.timestamper)

    # -- in-place signing for writers that lay out their own PDF ------------------

    def signature_dictionary(self, signed_at: datetime, *, name: str | None = None) -> tuple[bytes, int, int]:
        """The signature dictionary with placeholders: ``(bytes, byte_range_offset, contents_offset)``.

        The offsets are relative to the start of the returned bytes; add where the
        writer puts them to get a :class:`SignatureSlot` for :meth:`fill`.
        """
        head = (
            b"<< /Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached /M "
            + pdf_string(pdf_date(signed_at))
            + (b" /Name " + pdf_string(name) if name else b"")
            + b" /ByteRange "
        )
        byte_range_at = len(head)
        head += b"[0 0 0 0]".ljust(_BYTE_RANGE_WIDTH) + b" /Contents "
        contents_at = len(head)
        return head + b"<" + b"0" * (2 * self.reserved_size) + b"> >>", byte_range_at, contents_at

    def slot(self, base: int, byte_range_at: int, contents_at: int) -> SignatureSlot:
        """A :class:`SignatureSlot` for a dictionary from :meth:`signature_dictionary` written at ``base``."""
        start = base + contents_at
        return SignatureSlot(base + byte_range_at, start, start + 2 * self.reserved_size + 2)

    def fill(self, pdf: bytearray, slot: SignatureSlot, *, prefix: tuple[Any, int] | None = None) -> None:
        """Write ``/ByteRange``, hash the two ranges and splice the CMS into ``/Contents``, in place.

        ``pdf`` must be complete (nothing may be appended afterwards: the second
        range runs to the end of the file). ``prefix`` is an optional
        ``(sha256 object, length)`` already fed with ``pdf[:length]`` (a
        template every document starts with); it is copied, not consumed.
        """
        total = len(pdf)
        after = total - slot.contents_end
        byte_range = f"[0 {slot.contents_at} {slot.contents_end} {after}]".encode("ascii")
        if len(byte_range) > _BYTE_RANGE_WIDTH:
            raise SigningError(f"PDF of {total} bytes is too large for the reserved /ByteRange")
        pdf[slot.byte_range_at:slot.byte_range_at + _BYTE_RANGE_WIDTH] = byte_range.ljust(_BYTE_RANGE_WIDTH)
        view = memoryview(pdf)
        try:
            if prefix is not None and prefix[1] <= slot.contents_at:
                digest = prefix[0].copy()
                digest.update(view[prefix[1]:slot.contents_at])
            else:
                digest = hashlib.sha256(view[:slot.contents_at])
            digest.update(view[slot.contents_end:])
        finally:
            view.release()
        blob = self.cms_for_digest(digest.digest()).hex().encode("ascii")
        room = slot.contents_end - slot.contents_at - 2
        if len(blob) > room:
            raise SigningError(
                f"the signature ({len(blob) // 2} bytes) does not fit the {room // 2} bytes reserved "
                "(a time-stamp token larger than expected?)"
            )
        pdf[slot.contents_at + 1:slot.contents_at + 1 + len(blob)] = blob

    # -- any PDF ---------------------------------------------------------------

    def sign(self, pdf: bytes, *, signed_at: datetime | None = None, field_name: str = "KetquaSignature") -> bytes:
        """Append an incremental update that signs ``pdf`` with an invisible signature field.

        Works on any PDF pyHanko can read (classic or stream cross-references,
        existing form fields and signatures are kept).
        """
        moment = signed_at or datetime.now(timezone.utc)
        raw, byte_range_at, contents_at = self.signature_dictionary(moment)
        signed, base = add_signature_field(pdf, raw, field_name)
        self.fill(signed, self.slot(base, byte_range_at, contents_at))
        return bytes(signed)
