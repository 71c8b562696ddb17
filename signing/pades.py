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
  incremental update with an invisible signature field (pyHanko writes the PDF
  objects; the CMS is ours).
* :meth:`PadesSigner.signature_dictionary` + :meth:`PadesSigner.fill` let a
  PDF writer that lays out its own bytes (``engine.certificates``) place the
  signature dictionary itself and sign in place: no parsing at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization

from signing.errors import SigningError
from signing.signer import Signer

__all__ = ["PadesSigner", "SignatureSlot", "TimeStamperLike", "pdf_date", "DevelopmentTimeStamper", "development_timestamper"]

#: Width of the ``/ByteRange`` array text, written over in place once offsets are known.
_BYTE_RANGE_WIDTH = 40
#: Room reserved for an RFC 3161 token (TSA certificate chain included) on B-T signatures.
_TIMESTAMP_RESERVE = 8192
#: The most an ECDSA P-256 DER signature can take (two 33-byte INTEGERs + headers).
_ECDSA_P256_MAX = 72


class TimeStamperLike(Protocol):
    """An RFC 3161 client: pyHanko's ``TimeStamper`` family (HTTP, aiohttp, dummy) fits."""

    async def async_timestamp(self, message_digest: bytes, md_algorithm: str) -> cms.ContentInfo: ...


@dataclass(frozen=True, slots=True)
class SignatureSlot:
    """Where a reserved signature sits inside a PDF being written (absolute byte offsets)."""

    byte_range_at: int  #: offset of the ``[`` of the ``/ByteRange`` placeholder
    contents_at: int  #: offset of the ``<`` opening the ``/Contents`` hex string
    contents_end: int  #: offset just after the closing ``>``


def pdf_date(moment: datetime) -> str:
    """A PDF date string (``D:YYYYMMDDHHmmSS+00'00'``) in UTC, as ``/M`` wants it."""
    if moment.tzinfo is None:
        raise SigningError("signing time must carry a time zone (use UTC)")
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("D:%Y%m%d%H%M%S+00'00'")


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + _der_length(len(body)) + body


_OID_DATA = core.ObjectIdentifier("1.2.840.113549.1.7.1").dump()
_OID_SIGNED_DATA = core.ObjectIdentifier("1.2.840.113549.1.7.2").dump()
_OID_TST_ATTRIBUTE = core.ObjectIdentifier("1.2.840.113549.1.9.16.2.14").dump()
_INTEGER_1 = core.Integer(1).dump()


def _pdf_text(value: str) -> bytes:
    """A PDF literal string: PDFDocEncoding-safe ASCII as-is, anything else as UTF-16BE hex."""
    if value.isascii() and value.isprintable():
        escaped = value.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        return b"(" + escaped.encode("ascii") + b")"
    return b"<FEFF" + value.encode("utf-16-be").hex().upper().encode("ascii") + b">"


class PadesSigner:
    """Signs PDFs with one :class:`~signing.keys.Signer`, at PAdES B-B (or B-T with a time-stamper).

    Build one per process and reuse it: construction encodes the certificate
    chain, the signer identifier and the signed-attribute template.
    """

    def __init__(self, signer: Signer, timestamper: TimeStamperLike | None = None) -> None:
        self.signer = signer
        self.timestamper = timestamper
        cert_der = signer.certificate.public_bytes(serialization.Encoding.DER)
        chain_der = [c.public_bytes(serialization.Encoding.DER) for c in signer.chain]
        leaf = asn1_x509.Certificate.load(cert_der)

        if signer.algorithm == "ES256":
            sig_alg = algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"})
            self._max_signature = _ECDSA_P256_MAX
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
            self._max_signature = (signer.certificate.public_key().key_size + 7) // 8  # type: ignore[union-attr]
        else:  # pragma: no cover - Signer.algorithm is a closed set
            raise SigningError(f"PAdES cannot use signature algorithm {signer.algorithm!r} (expected ES256 or PS256)")

        digest_alg = algos.DigestAlgorithm({"algorithm": "sha256"}).dump()
        sid = cms.IssuerAndSerialNumber({"issuer": leaf.issuer, "serial_number": leaf.serial_number}).dump()

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
            cms.CMSAttribute({"type": kind, "values": [value]}).dump()
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

        worst = self._assemble(b"\x00" * 32, b"\x00" * self._max_signature, b"")
        reserve = len(worst) + 64 + (_TIMESTAMP_RESERVE if timestamper is not None else 0)
        #: Bytes reserved for the CMS blob; ``/Contents`` is twice this many hex digits.
        self.reserved_size = (reserve + 255) // 256 * 256

    # -- CMS -----------------------------------------------------------------

    def _assemble(self, digest: bytes, signature: bytes, unsigned: bytes) -> bytes:
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

    def cms_for_digest(self, digest: bytes) -> bytes:
        """DER ``ContentInfo(SignedData)`` over a SHA-256 document digest (detached CAdES)."""
        if len(digest) != 32:
            raise SigningError(f"PAdES needs a 32-byte SHA-256 digest of the byte ranges, got {len(digest)} bytes")
        signed_attrs = self._attrs_head + digest + self._attrs_tail
        # The signature covers the attributes as a DER SET (tag 0x31), not as the [0] they travel in.
        try:
            signature = self.signer.sign(_tlv(0x31, signed_attrs))
        except SigningError:
            raise
        except Exception as exc:  # a token or key failure, translated for the operator
            raise SigningError(f"the signing key refused to sign ({type(exc).__name__}: {exc})") from exc
        unsigned = b""
        if self.timestamper is not None:
            token = _run_timestamp(self.timestamper, hashlib.sha256(signature).digest())
            unsigned = _tlv(0x30, _OID_TST_ATTRIBUTE + _tlv(0x31, token))
        return self._assemble(digest, signature, unsigned)

    # -- in-place signing for writers that lay out their own PDF ------------------

    def signature_dictionary(self, signed_at: datetime, *, name: str | None = None) -> tuple[bytes, int, int]:
        """The signature dictionary with placeholders: ``(bytes, byte_range_offset, contents_offset)``.

        The offsets are relative to the start of the returned bytes; add where the
        writer puts them to get a :class:`SignatureSlot` for :meth:`fill`.
        """
        head = (
            b"<< /Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached /M "
            + _pdf_text(pdf_date(signed_at))
            + (b" /Name " + _pdf_text(name) if name else b"")
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
        fast = _append_signature_field(pdf, raw, field_name)
        if fast is not None:
            signed, base = fast
            self.fill(signed, self.slot(base, byte_range_at, contents_at))
            return bytes(signed)
        return self._sign_with_pyhanko(pdf, raw, byte_range_at, contents_at, field_name)

    def _sign_with_pyhanko(self, pdf: bytes, raw: bytes, byte_range_at: int, contents_at: int, field_name: str) -> bytes:
        """The general path: pyHanko reads the document and writes the update (xref streams, existing forms)."""
        from pyhanko.pdf_utils import generic
        from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
        from pyhanko.pdf_utils.misc import PdfError

        try:
            writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
            sig_ref = writer.add_object(_RawObject(raw))
            page_ref, _resources = writer.find_page_for_modification(0)
            page = page_ref.get_object()
            widget = generic.DictionaryObject(
                {
                    generic.NameObject("/Type"): generic.NameObject("/Annot"),
                    generic.NameObject("/Subtype"): generic.NameObject("/Widget"),
                    generic.NameObject("/FT"): generic.NameObject("/Sig"),
                    generic.NameObject("/T"): generic.TextStringObject(field_name),
                    generic.NameObject("/F"): generic.NumberObject(132),  # print + locked
                    generic.NameObject("/Rect"): generic.ArrayObject([generic.NumberObject(0)] * 4),
                    generic.NameObject("/P"): page_ref,
                    generic.NameObject("/V"): sig_ref,
                }
            )
            widget_ref = writer.add_object(widget)
            annots = page.get("/Annots")
            if annots is None:
                page[generic.NameObject("/Annots")] = generic.ArrayObject([widget_ref])
                writer.update_container(page)
            else:
                annots = annots.get_object()
                annots.append(widget_ref)
                writer.update_container(annots)
            root = writer.root
            form = root.get("/AcroForm")
            if form is None:
                root[generic.NameObject("/AcroForm")] = generic.DictionaryObject(
                    {
                        generic.NameObject("/Fields"): generic.ArrayObject([widget_ref]),
                        generic.NameObject("/SigFlags"): generic.NumberObject(3),
                    }
                )
                writer.update_root()
            else:
                form = form.get_object()
                fields = form.get("/Fields")
                if fields is None:
                    form[generic.NameObject("/Fields")] = generic.ArrayObject([widget_ref])
                else:
                    fields.get_object().append(widget_ref)
                    writer.update_container(fields.get_object())
                form[generic.NameObject("/SigFlags")] = generic.NumberObject(3)
                writer.update_container(form)
                writer.update_root()
            out = io.BytesIO()
            writer.write(out)
        except (PdfError, KeyError, ValueError, TypeError) as exc:
            raise SigningError(f"cannot add a signature to this PDF ({exc})") from exc
        signed = bytearray(out.getvalue())
        base = signed.rfind(raw[:byte_range_at])
        if base < 0:  # pragma: no cover - our object is always written verbatim
            raise SigningError("the signature dictionary was not written verbatim; cannot sign in place")
        self.fill(signed, self.slot(base, byte_range_at, contents_at))
        return bytes(signed)


# -- a direct incremental update for the common case ---------------------------------------------------
#
# Most PDFs we sign (our own certificates, reportlab output) end in a classic
# cross-reference table, have no form yet and a page without annotations. For
# those, the signature field is appended here without building an object model:
# read the last trailer, locate the catalogue and the first page through the
# xref tables, re-emit both with one key added, and write a new xref section.
# Anything else (xref streams, object streams, encryption, existing AcroForm or
# /Annots) returns None and goes through pyHanko.

_STARTXREF = re.compile(rb"startxref\s+(\d+)\s+%%EOF", re.S)
_REF = rb"\s+(\d+)\s+(\d+)\s+R"
_WS = b" \t\r\n\x0c\x00"


def _dict_end(data: bytes, start: int) -> int:
    """Index just after the ``>>`` closing the dictionary that opens at ``start`` (strings and hex strings skipped)."""
    depth = 0
    i, n = start, len(data)
    while i < n:
        ch = data[i]
        if ch == 0x3C:  # <
            if data[i + 1:i + 2] == b"<":
                depth += 1
                i += 2
                continue
            close = data.find(b">", i + 1)  # hex string
            if close < 0:
                raise ValueError("unterminated hex string")
            i = close + 1
            continue
        if ch == 0x3E and data[i + 1:i + 2] == b">":  # >>
            depth -= 1
            i += 2
            if depth == 0:
                return i
            continue
        if ch == 0x28:  # ( literal string, balanced parentheses, backslash escapes
            level = 1
            i += 1
            while i < n and level:
                c = data[i]
                if c == 0x5C:
                    i += 2
                    continue
                if c == 0x28:
                    level += 1
                elif c == 0x29:
                    level -= 1
                i += 1
            continue
        if ch == 0x25:  # % comment
            end = data.find(b"\n", i)
            i = n if end < 0 else end + 1
            continue
        i += 1
    raise ValueError("unterminated dictionary")


def _xref_offsets(pdf: bytes, startxref: int, wanted: set[int]) -> dict[int, tuple[int, int]] | None:
    """(offset, generation) of the wanted objects from classic xref tables, newest section first."""
    found: dict[int, tuple[int, int]] = {}
    offset: int | None = startxref
    seen = set()
    while offset is not None and wanted - set(found):
        if offset in seen or not pdf.startswith(b"xref", offset):
            return None  # a loop, or an xref stream: not for the direct path
        seen.add(offset)
        pos = offset + 4
        while True:
            line_end = pdf.find(b"\n", pos + 1)
            header = pdf[pos:line_end].strip()
            if header.startswith(b"trailer"):
                break
            if not header:
                pos = line_end
                continue
            first, count = (int(x) for x in header.split())
            entries = line_end + 1
            for k in range(count):
                num = first + k
                if num in wanted and num not in found:
                    entry = pdf[entries + 20 * k:entries + 20 * k + 18]
                    if entry[17:18] == b"n":
                        found[num] = (int(entry[:10]), int(entry[11:16]))
                    else:
                        found[num] = (-1, 0)  # freed in this revision: treat as absent
            pos = entries + 20 * count
        trailer_at = pdf.find(b"<<", pos)
        trailer = pdf[trailer_at:_dict_end(pdf, trailer_at)]
        prev = re.search(rb"/Prev\s+(\d+)", trailer)
        if re.search(rb"/XRefStm\b", trailer):
            return None  # hybrid file: some objects live in streams
        offset = int(prev.group(1)) if prev else None
    if wanted - set(found) or any(off < 0 for off, _ in found.values()):
        return None
    return found


def _object_dict(pdf: bytes, num: int, where: tuple[int, int]) -> bytes | None:
    """The dictionary text of a (non-stream) indirect object, or None when it is not one."""
    offset, gen = where
    head = re.compile(rb"\s*%d\s+%d\s+obj\s*" % (num, gen))
    match = head.match(pdf, offset)
    if match is None or not pdf.startswith(b"<<", match.end()):
        return None
    end = _dict_end(pdf, match.end())
    if not pdf[end:end + 16].lstrip(_WS).startswith(b"endobj"):
        return None  # a stream, or something odd after the dictionary
    return pdf[match.end():end]


def _append_signature_field(pdf: bytes, sig_dict: bytes, field_name: str) -> tuple[bytearray, int] | None:
    """``pdf`` plus an update adding an invisible signature field whose value is ``sig_dict``.

    Returns the new bytes and the offset of ``sig_dict`` in them, or None when
    the document needs the general path.
    """
    try:
        match = _STARTXREF.search(pdf, max(0, len(pdf) - 2048))
        if match is None:
            return None
        startxref = int(match.group(1))
        trailer_at = pdf.find(b"trailer", startxref)
        if not pdf.startswith(b"xref", startxref) or trailer_at < 0:
            return None
        trailer_start = pdf.find(b"<<", trailer_at)
        trailer = pdf[trailer_start:_dict_end(pdf, trailer_start)]
        if b"/Encrypt" in trailer or b"/XRefStm" in trailer:
            return None
        root = re.search(rb"/Root" + _REF, trailer)
        size = re.search(rb"/Size\s+(\d+)", trailer)
        if root is None or size is None:
            return None
        info = re.search(rb"/Info" + _REF, trailer)
        ids = re.search(rb"/ID\s*\[\s*<([0-9A-Fa-f]*)>", trailer)
        root_num = int(root.group(1))

        where = _xref_offsets(pdf, startxref, {root_num})
        if where is None:
            return None
        catalog = _object_dict(pdf, root_num, where[root_num])
        if catalog is None or b"/AcroForm" in catalog:
            return None
        pages = re.search(rb"/Pages" + _REF, catalog)
        if pages is None:
            return None
        node_num = int(pages.group(1))
        for _ in range(32):  # walk down the page tree to the first page
            where = _xref_offsets(pdf, startxref, {node_num})
            if where is None:
                return None
            node = _object_dict(pdf, node_num, where[node_num])
            if node is None:
                return None
            if re.search(rb"/Type\s*/Page(?![A-Za-z])", node):
                break
            kid = re.search(rb"/Kids\s*\[\s*(\d+)\s+(\d+)\s+R", node)
            if kid is None:
                return None
            node_num = int(kid.group(1))
        else:
            return None
        page_num, page, page_gen = node_num, node, where[node_num][1]
        if b"/Annots" in page:
            return None
    except (ValueError, IndexError):
        return None

    widget_num, sig_num = int(size.group(1)), int(size.group(1)) + 1
    out = bytearray(pdf)
    if not out.endswith(b"\n"):
        out += b"\n"
    offsets: dict[int, tuple[int, int]] = {}

    def put(num: int, gen: int, body: bytes) -> int:
        offsets[num] = (len(out), gen)
        out.extend(b"%d %d obj\n" % (num, gen))
        start = len(out)
        out.extend(body)
        out.extend(b"\nendobj\n")
        return start

    put(root_num, int(root.group(2)),
        catalog[:-2].rstrip(_WS) + b" /AcroForm << /Fields [%d 0 R] /SigFlags 3 >> >>" % widget_num)
    put(page_num, page_gen, page[:-2].rstrip(_WS) + b" /Annots [%d 0 R] >>" % widget_num)
    put(widget_num, 0,
        b"<< /Type /Annot /Subtype /Widget /FT /Sig /T %s /F 132 /Rect [0 0 0 0] /P %d %d R /V %d 0 R >>"
        % (_pdf_text(field_name), page_num, page_gen, sig_num))
    base = put(sig_num, 0, sig_dict)

    xref_at = len(out)
    out.extend(b"xref\n0 1\n0000000000 65535 f\r\n")  # free-list head first, as strict readers expect
    for num in sorted(offsets):
        offset, gen = offsets[num]
        out.extend(b"%d 1\n%010d %05d n\r\n" % (num, offset, gen))
    first_id = ids.group(1) if ids else hashlib.md5(pdf[:4096]).hexdigest().encode("ascii")
    new_id = hashlib.md5(bytes(out[-4096:])).hexdigest().encode("ascii")
    out.extend(b"trailer\n<< /Size %d /Root %s %s R" % (sig_num + 1, root.group(1), root.group(2)))
    if info is not None:
        out.extend(b" /Info %s %s R" % (info.group(1), info.group(2)))
    out.extend(b" /ID [<%s> <%s>] /Prev %d >>\nstartxref\n%d\n%%%%EOF\n" % (first_id, new_id, startxref, xref_at))
    return out, base


class _RawObject:
    """A PDF object pyHanko writes byte for byte (our signature dictionary with placeholders)."""

    container_ref = None

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def get_object(self) -> "_RawObject":
        return self

    def write_to_stream(self, stream: Any, handler: Any = None, container_ref: Any = None) -> None:
        stream.write(self.raw)


def _run_timestamp(timestamper: TimeStamperLike, digest: bytes) -> bytes:
    """Fetch an RFC 3161 token synchronously, also when called from inside a running event loop."""

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
            self._stamper = _build_development_stamper(*self._pems)
        return await self._stamper.async_timestamp(message_digest, md_algorithm)


def development_timestamper(tsa_cert_pem: bytes, tsa_key_pem: bytes, chain_pem: bytes = b"") -> DevelopmentTimeStamper:
    """A :class:`DevelopmentTimeStamper` from PEM bytes (``keys/tsa.pem``, ``keys/tsa.key``, ``keys/ca.pem``)."""
    return DevelopmentTimeStamper(tsa_cert_pem, tsa_key_pem, chain_pem)


def _build_development_stamper(tsa_cert_pem: bytes, tsa_key_pem: bytes, chain_pem: bytes = b"") -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives import hashes
    from cryptography import x509 as pyca_x509
    from asn1crypto import keys as asn1_keys
    from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper

    cert = asn1_x509.Certificate.load(
        pyca_x509.load_pem_x509_certificate(tsa_cert_pem).public_bytes(serialization.Encoding.DER)
    )
    key = serialization.load_pem_private_key(tsa_key_pem, password=None)
    key_info = asn1_keys.PrivateKeyInfo.load(
        key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    chain = [
        asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER))
        for c in (pyca_x509.load_pem_x509_certificates(chain_pem) if chain_pem else [])
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
