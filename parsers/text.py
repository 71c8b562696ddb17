"""Bytes → text → lines for analyzer exports, and the home of the shared text helpers' names.

Every parser reads its file through :func:`decode` / :func:`decode_lines` (or
:func:`head_text` / :func:`head_lines` when sniffing) so that the quirks of
real instrument PCs are handled once: byte-order marks, UTF-16 from Windows
"Unicode text" exports, cp1252 from old software, gzipped archives, CR-only
line ends (classic Mac/SDS 2.x, LightCycler), binary files sent by mistake.
Line numbers are counted as a technician's editor counts them, since every
error names one.

A large plain UTF-8 export takes a fast path that gives exactly what the
general path gives (tests hold them to it): only its head becomes Python
strings (:func:`utf8_head`) and the table below goes to ``pyarrow.csv`` as the
file's own bytes (:func:`read_tail`). Anything unusual gets None and the
caller decodes the whole file, so errors name the same file, line and field.

What comes after the lines lives in one module per concern: tables
(:mod:`parsers.blocks`), Ct values and numbers (:mod:`parsers.numeric`),
wells (:mod:`parsers.wells`), roles (:mod:`parsers.roles`), calls
(:mod:`parsers.calls`) and the canonical table (:mod:`parsers.canonical`).
This module hands their functions on under the names parsers have always
imported from it (``from parsers.text import read_block, ct_array``), so a
parser needs one import line for its helpers. ``__all__`` lists what is
defined here.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

# Besides what it uses itself, this module hands on (noqa: F401) the names parsers import from it;
# the modules that define them say why they are so shaped.
from parsers.blocks import (  # noqa: F401
    Block,
    _clean_cells,  # tests check the cell clean-up on its own
    read_block,
    read_payload,
    read_sections,
    require_rows,
    require_values,
    split_fields,
)
from parsers.calls import normalise_call, normalise_calls  # noqa: F401
from parsers.canonical import canonical_table, clean_metadata  # noqa: F401
from parsers.columns import BY_DICTIONARY as _BY_DICTIONARY  # noqa: F401  (tests size long columns by it)
from parsers.errors import ParseError
from parsers.numeric import ct_array, number_array, parse_ct  # noqa: F401
from parsers.roles import normalise_role, normalise_roles, roles_from_names  # noqa: F401
from parsers.wells import (  # noqa: F401
    normalise_well,
    normalise_wells,
    occupied_wells,
    plate_shape,
    well_from_index,
)

#: What is defined here; the names handed on are in the ``__all__`` of the module that defines them.
__all__ = [
    "GUNZIP_LIMIT",
    "Utf8Head",
    "decode",
    "decode_lines",
    "head_lines",
    "head_text",
    "lines_starting_with",
    "read_tail",
    "skip_blank",
    "split_lines",
    "table_stop",
    "utf8_head",
]

_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


def _sniff_utf16_without_bom(data: bytes) -> str | None:
    """Some exports write UTF-16 without a BOM; ASCII text then has NUL every other byte."""
    sample = data[:4096]
    if len(sample) < 8:
        return None
    even_nul = sample[0::2].count(0)
    odd_nul = sample[1::2].count(0)
    half = len(sample) // 2
    if odd_nul > 0.6 * half and even_nul < 0.05 * half:
        return "utf-16-le"
    if even_nul > 0.6 * half and odd_nul < 0.05 * half:
        return "utf-16-be"
    return None


def decode(data: bytes, source: str | None = None, encoding: str | None = None) -> tuple[str, str]:
    """Decode an analyzer export to text; return ``(text, encoding)``.

    Order: BOM (UTF-8, UTF-16 LE/BE), UTF-16 without BOM, strict UTF-8 (covers
    Vietnamese names written by current software), then cp1252 (old Windows
    software), then latin-1 which never fails. The BOM is removed from the text.
    Binary files (NUL bytes, control characters) raise ParseError. An explicit
    ``encoding`` (e.g. ``cp1258`` for legacy Vietnamese Windows, from a mapping
    profile) skips detection.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ParseError("expected file contents as bytes", source=source)
    data = _gunzip(bytes(data), source)
    if not data.strip():
        raise ParseError("the file is empty", source=source, line=1, expected="an analyzer export")
    if encoding is not None:
        return _decode_as(data, encoding, source), encoding
    body = data
    for bom, name in _BOMS:
        if data.startswith(bom):
            encoding, body = name, data[len(bom) :]
            break
    if encoding is None:
        encoding = _sniff_utf16_without_bom(data)
    if encoding in ("utf-16-le", "utf-16-be"):
        if len(body) % 2:
            # A file cut in the middle of a UTF-16 character: keep what is whole.
            body = body[:-1]
        try:
            text = body.decode(encoding)
        except UnicodeDecodeError as exc:
            raise ParseError(
                f"damaged UTF-16 text at byte {exc.start}",
                source=source,
                line=_line_of_offset(body[: exc.start].decode(encoding, "replace")),
                expected="a complete export saved by the instrument software",
            ) from None
    else:
        try:
            text, encoding = body.decode("utf-8"), encoding or "utf-8"
        except UnicodeDecodeError as exc:
            if encoding == "utf-8-sig" or _UTF8_SEQUENCE.search(body):
                # Real UTF-8 elsewhere in the file: a damaged byte, not an old code page.
                # Guessing cp1252 here would silently garble sample names.
                raise ParseError(
                    f"damaged UTF-8 text (invalid byte 0x{body[exc.start]:02X})",
                    source=source,
                    line=_line_of_offset(body[: exc.start].decode("utf-8", "replace")),
                    expected="a complete export saved by the instrument software",
                ) from None
            try:
                text, encoding = body.decode("cp1252"), "cp1252"
            except UnicodeDecodeError:
                text, encoding = body.decode("latin-1"), "latin-1"
    _refuse_binary(text, source)
    return text, encoding


def _decode_as(data: bytes, encoding: str, source: str | None) -> str:
    try:
        text = data.decode(encoding)
    except LookupError:
        raise ParseError(f"unknown text encoding '{encoding}'", source=source,
                         expected="an encoding name such as utf-8, cp1258 or utf-16") from None
    except UnicodeDecodeError as exc:
        raise ParseError(
            f"the file is not valid {encoding} text (byte {exc.start})",
            source=source,
            line=data[: exc.start].count(b"\n") + 1,
            expected=f"a file saved as {encoding}",
        ) from None
    text = text.removeprefix("\ufeff")
    _refuse_binary(text, source)
    return text


_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
#: A well-formed multi-byte UTF-8 sequence (Vietnamese letters, "Cт", "™" …).
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")


def _refuse_binary(text: str, source: str | None) -> None:
    nul = text.find("\x00")
    if nul >= 0:
        raise ParseError(
            "the file contains binary data (NUL bytes), it is not a text export",
            source=source,
            line=_line_of_offset(text[:nul]),
            expected="a text export from the instrument software",
        )
    sample = text[:65536]
    controls = len(_CONTROL.findall(sample))
    if controls > max(8, len(sample) // 100):
        first = _CONTROL.search(sample)
        raise ParseError(
            "the file contains binary data (control characters), it is not a text export",
            source=source,
            line=_line_of_offset(text[: first.start()]) if first else 1,
            expected="a text export from the instrument software",
        )


def _line_of_offset(prefix: str) -> int:
    return len(_LINE_BREAK.findall(prefix)) + 1


#: Largest decompressed size accepted from a gzipped export (a 1536-well run is a few MiB).
GUNZIP_LIMIT = 256 * 1024 * 1024


def _gunzip(data: bytes, source: str | None) -> bytes:
    """Exports are sometimes archived gzipped (LightCycler files in R packages, LIS archives)."""
    if not data.startswith(b"\x1f\x8b"):
        return data
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, GUNZIP_LIMIT)
    except zlib.error as exc:
        raise ParseError(f"the gzip-compressed file is damaged ({exc})", source=source, line=1,
                         expected="a complete .gz file") from None
    if inflater.unconsumed_tail:
        raise ParseError("the gzip-compressed file is too large", source=source, line=1,
                         expected=f"at most {GUNZIP_LIMIT // (1024 * 1024)} MiB of text")
    if not inflater.eof:
        raise ParseError("the gzip-compressed file is truncated", source=source,
                         line=out.count(b"\n") + 1, expected="a complete .gz file")
    return out


def _gunzip_head(head: bytes) -> bytes:
    if not head.startswith(b"\x1f\x8b"):
        return head
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 65536)
    except zlib.error:
        return b""


def head_text(head: bytes) -> str:
    """Lenient decoding of the first bytes of a file, for sniffers (never raises)."""
    head = _gunzip_head(head)
    for bom, name in _BOMS:
        if head.startswith(bom):
            return head[len(bom) :].decode(name.replace("-sig", ""), "replace")
    utf16 = _sniff_utf16_without_bom(head)
    if utf16:
        return head.decode(utf16, "replace")
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start > len(head) - 4:  # a multi-byte character cut by the 64 KiB head
            return head[: exc.start].decode("utf-8", "replace")
        return head.decode("cp1252", "replace")


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def split_lines(text: str) -> list[str]:
    """Split on CRLF, LF or CR alone (SDS 2.x and LightCycler write CR only).

    ``str.splitlines`` is not used: it also breaks on form feeds and U+2028,
    which would shift the line numbers a technician is told about. The empty
    string after a final line break is dropped.
    """
    if "\r" not in text:
        lines = text.split("\n")  # str.split in C: several times faster than the regex on 100 MB
    elif "\n" not in text:
        lines = text.split("\r")  # CR-only (SDS 2.x, LightCycler)
    else:
        lines = text.split("\r\n")  # Windows CRLF throughout, unless a lone CR or LF is left over:
        if not len(lines) - 1 == text.count("\r") == text.count("\n"):
            lines = _LINE_BREAK.split(text)  # mixed line ends
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def decode_lines(data: bytes, source: str | None = None, encoding: str | None = None) -> tuple[list[str], str]:
    """:func:`decode` then :func:`split_lines`: an export's lines (numbered as a technician sees them) and encoding."""
    text, encoding = decode(data, source, encoding)
    return split_lines(text), encoding


def head_lines(head: bytes) -> list[str]:
    """The lines of a file's first bytes, leniently decoded: what a sniffer looks at (never raises)."""
    return split_lines(head_text(head))


def _is_blank(line: str) -> bool:
    return not line.strip()


def lines_starting_with(lines: Sequence[str], first: bytes, *, empty: bool = False) -> np.ndarray:
    """Indices of the lines whose first UTF-8 byte is one of ``first`` (and of empty lines when ``empty``).

    A cheap sieve for section titles and blank lines in exports of millions of
    lines: the first bytes come from Arrow's buffers in one vectorised step,
    and only the few lines it keeps are then looked at in Python.
    """
    column = pa.array(lines, pa.string())
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32, count=len(column) + 1)
    data = column.buffers()[2]
    chars = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    filled = np.diff(offsets) > 0
    head = np.zeros(len(column), dtype=np.uint8)
    head[filled] = chars[offsets[:-1][filled]]
    keep = filled & np.isin(head, np.frombuffer(first, dtype=np.uint8))
    return np.flatnonzero(keep | ~filled if empty else keep)


def skip_blank(lines: Sequence[str], start: int, stop: int | None = None, *,
               blank: Callable[[str], bool] = _is_blank) -> int:
    """Index of the first line from ``start`` that is not ``blank``; ``stop`` (default: the end) when none is.

    Exports leave blank lines (Rotor-Gene: separator-only lines) between a
    section title and its table header; ``blank`` says what counts as empty.
    """
    stop = len(lines) if stop is None else stop
    i = start
    while i < stop and blank(lines[i]):
        i += 1
    return i


def table_stop(lines: Sequence[str], header: int, stop: int | None = None, *,
               ends: Callable[[str], bool] = _is_blank) -> int:
    """End (exclusive) of the table whose header is ``lines[header]``: the first later line that ``ends`` it.

    Most exports close a table with a blank line, after which come things that
    are not rows (QuantStudio's results metadata, the SDS plate trailer).
    Returns ``stop`` (default: the end) when no line ends the table before it.
    """
    stop = len(lines) if stop is None else stop
    if ends is _is_blank:
        # The common case, without a Python call per row: the first line that strips to nothing.
        return next((i for i, line in enumerate(lines[header + 1 : stop], header + 1) if not line.strip()), stop)
    i = header + 1
    while i < stop and not ends(lines[i]):
        i += 1
    return i

@dataclass
class Utf8Head:
    """The first lines of a plain UTF-8 export, decoded, with where each starts in the file's bytes.

    For a large export only its head is turned into Python strings; the table
    below is handed to Arrow as bytes (:func:`read_tail`).
    """

    lines: list[str]
    encoding: str
    data: bytes
    starts: list[int]  # byte offset of each head line, plus the offset just after the last one


def utf8_head(data: bytes, source: str | None, *, max_lines: int) -> Utf8Head | None:
    """The head of ``data`` when it is what most exports are; None for anything else (:func:`decode` then decides).

    "What most are": UTF-8 (with or without BOM), not gzipped, not UTF-16, no
    NUL byte. The checks :func:`decode` makes on the first 64 Ki characters
    (control characters) are made here alike; a file they refuse gets None, so
    that decode reports it in its own order.
    """
    if not isinstance(data, bytes) or data.startswith((b"\x1f\x8b", b"\xff\xfe", b"\xfe\xff")):
        return None
    if not data[:4096].strip() or _sniff_utf16_without_bom(data) or b"\x00" in data:
        return None
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    prefix = data[bom : bom + 4 * 65536 + 4]
    try:
        sample = prefix.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(prefix) - 4:
            return None  # not UTF-8: decode() picks the code page
        sample = prefix[: exc.start].decode("utf-8")
    try:
        _refuse_binary(sample[:65536], source)
    except ParseError:
        return None
    starts = [bom]
    for m in _LINE_BREAK_BYTES.finditer(data, bom):
        starts.append(m.end())
        if len(starts) > max_lines:
            break
    else:
        if starts[-1] < len(data):
            starts.append(len(data))  # the last line, without a line end
    try:
        head = data[bom : starts[-1]].decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = split_lines(head)
    if len(lines) != len(starts) - 1:
        return None
    return Utf8Head(lines, "utf-8-sig" if bom else "utf-8", data, starts)


_LINE_BREAK_BYTES = re.compile(rb"\r\n|\r|\n")


def read_tail(head: Utf8Head, header_index: int, sep: str, *, source: str | None = None,
              until_blank: bool = False) -> Block | None:
    """The table whose header is head line ``header_index`` and whose rows run to the end of the file.

    The rows' bytes go to ``pyarrow.csv`` as they are (no decode, no split in
    Python); line numbers count up from the header's. ``until_blank``: the
    table ends at its first empty line (:func:`table_stop`), and a section
    title (``[…]``) or whitespace-only row before it is left to the general
    path. None when the table
    is not plain (quotes, a BOM where Arrow would drop it, ragged rows or blank lines, invalid
    UTF-8): the caller then decodes the whole file and reads it with :func:`read_block`.
    """
    if header_index + 1 >= len(head.starts):
        return None
    start = head.starts[header_index + 1]
    data = head.data
    if start >= len(data) or data.find(b'"', start) >= 0 or data.startswith(b"\xef\xbb\xbf", start):
        return None
    names = split_fields(head.lines[header_index], sep)
    stop = len(data)
    if until_blank:
        # The line end the header line was written with; an empty line is two of them in a row.
        newline = _LINE_BREAK_BYTES.search(data, head.starts[header_index + 1] - 2, start)
        if newline is None:
            return None
        end = data.find(newline.group() * 2, start - len(newline.group()))
        stop = len(data) if end < 0 else end + len(newline.group())
        if data.find(b"[", start, stop) >= 0 and (data.startswith(b"[", start) or data.find(b"\n[", start, stop) >= 0
                                                  or data.find(b"\r[", start, stop) >= 0):
            return None  # a section title inside: the whole-file path ends the table there
        if stop <= start:
            return None
    return read_payload(pa.py_buffer(memoryview(data)[start:stop]), header_index + 2, sep, names, header_index, source,
                        blank_rows=not until_blank)
