"""PDF syntax and incremental updates: append an invisible signature field whose value is a given dictionary.

A PAdES signature is added to an existing PDF as an incremental update (ISO
32000-1 §7.5.6): the original bytes stay as they are and a new section adds
the signature field, its widget and the signature dictionary. Two writers:

* :func:`append_signature_field_directly`, for the common case (our own
  certificates, reportlab output): no object model, a few regular expressions
  over the last trailer and the classic xref tables; it declines (returns
  None) anything unusual.
* :func:`append_signature_field_with_pyhanko` for everything else (xref
  streams, object streams, existing forms and annotations).

:func:`add_signature_field` tries the first and falls back to the second.
Both write the signature dictionary verbatim, so the caller can fill its
placeholders in place afterwards.
"""

from __future__ import annotations

import hashlib
import io
import re
from datetime import datetime, timezone
from typing import Any

from signing.errors import SigningError

__all__ = [
    "pdf_date",
    "pdf_string",
    "add_signature_field",
    "append_signature_field_directly",
    "append_signature_field_with_pyhanko",
]


def pdf_date(moment: datetime) -> str:
    """A PDF date string (``D:YYYYMMDDHHmmSS+00'00'``) in UTC, as ``/M`` wants it."""
    if moment.tzinfo is None:
        raise SigningError("signing time must carry a time zone (use UTC)")
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("D:%Y%m%d%H%M%S+00'00'")


def pdf_string(value: str) -> bytes:
    """A PDF literal string: PDFDocEncoding-safe ASCII as-is, anything else as UTF-16BE hex."""
    if value.isascii() and value.isprintable():
        escaped = value.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        return b"(" + escaped.encode("ascii") + b")"
    return b"<FEFF" + value.encode("utf-16-be").hex().upper().encode("ascii") + b">"


def add_signature_field(pdf: bytes, sig_dict: bytes, field_name: str) -> tuple[bytearray, int]:
    """``pdf`` plus an update adding an invisible signature field valued ``sig_dict``, and where ``sig_dict`` landed."""
    direct = append_signature_field_directly(pdf, sig_dict, field_name)
    if direct is not None:
        return direct
    return append_signature_field_with_pyhanko(pdf, sig_dict, field_name)


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


def append_signature_field_directly(pdf: bytes, sig_dict: bytes, field_name: str) -> tuple[bytearray, int] | None:
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
        % (pdf_string(field_name), page_num, page_gen, sig_num))
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


def append_signature_field_with_pyhanko(pdf: bytes, sig_dict: bytes, field_name: str) -> tuple[bytearray, int]:
    """The general path: pyHanko reads the document and writes the update (xref streams, existing forms).

    Returns the new bytes and the offset of ``sig_dict`` in them, as
    :func:`append_signature_field_directly` does.
    """
    from pyhanko.pdf_utils import generic  # lazy: pyHanko's PDF model costs ~0.1 s to import, needed only for PDFs the direct path declines
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter  # lazy: as above
    from pyhanko.pdf_utils.misc import PdfError  # lazy: as above

    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
        sig_ref = writer.add_object(_RawObject(sig_dict))
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
    base = signed.rfind(sig_dict)
    if base < 0:  # pragma: no cover - our object is always written verbatim
        raise SigningError("the signature dictionary was not written verbatim; cannot sign in place")
    return signed, base


class _RawObject:
    """A PDF object pyHanko writes byte for byte (our signature dictionary with placeholders)."""

    container_ref = None

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def get_object(self) -> "_RawObject":
        return self

    def write_to_stream(self, stream: Any, handler: Any = None, container_ref: Any = None) -> None:
        stream.write(self.raw)
