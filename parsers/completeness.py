"""Shared tests of "is this export whole?" for the per-format ``complete`` hooks.

Intake asks every file before taking it, so these look at the file's end (and
its head) with byte searches, not a parse: a line terminator at the end
(UTF-16 aware), a zip's end-of-central-directory record, a gzip trailer, the
last rows of a table compared with its first rows. Each returns a sentence a
technician understands, or None when the file looks whole.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Sequence

from parsers.text import GUNZIP_LIMIT, split_lines

__all__ = [
    "TAIL_BYTES",
    "encoding_of",
    "gunzipped",
    "head_and_tail",
    "last_line_number",
    "last_well_short",
    "mid_line",
    "tail_lines",
    "text_lines",
    "unterminated",
    "zip_incomplete",
]

#: Bytes of a file's end decoded to judge its last lines.
TAIL_BYTES = 256 * 1024

_ZIP_EOCD = b"PK\x05\x06"
_EOCD_SIZE = 22


def gunzipped(data: bytes) -> tuple[bytes | None, str | None]:
    """``(text bytes, None)``: ``data`` itself, or inflated when gzip; ``(None, reason)`` when the gzip stream is cut."""
    if not data.startswith(b"\x1f\x8b"):
        return data, None
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, GUNZIP_LIMIT)
    except zlib.error:
        return None, "the gzip-compressed file is damaged or cut short"
    if not inflater.eof:
        return None, "the gzip-compressed file stops before its end (no gzip trailer)"
    return out, None


def encoding_of(data: bytes) -> str:
    """``utf-16-le``, ``utf-16-be`` or ``bytes`` (any 8-bit or UTF-8 text): what a line end looks like."""
    if data.startswith(b"\xff\xfe"):
        return "utf-16-le"
    if data.startswith(b"\xfe\xff"):
        return "utf-16-be"
    sample = data[:4096]
    if len(sample) >= 8:
        half = len(sample) // 2
        odd, even = sample[1::2].count(0), sample[0::2].count(0)
        if odd > 0.6 * half and even < 0.05 * half:
            return "utf-16-le"
        if even > 0.6 * half and odd < 0.05 * half:
            return "utf-16-be"
    return "bytes"


def mid_line(data: bytes) -> str | None:
    """Why ``data`` does not end with a line terminator (CR or LF, as UTF-16 code units for UTF-16), or None."""
    if not data:
        return "the file is empty"
    encoding = encoding_of(data)
    if encoding == "bytes":
        return None if data[-1:] in (b"\n", b"\r") else "the file ends in the middle of a line"
    if len(data) % 2:
        return "the file ends in the middle of a character (UTF-16 text cut at an odd byte)"
    unit = data[-2:]
    ends = (b"\n\x00", b"\r\x00") if encoding == "utf-16-le" else (b"\x00\n", b"\x00\r")
    return None if unit in ends else "the file ends in the middle of a line"


def _decode(data: bytes) -> str:
    encoding = encoding_of(data)
    if encoding != "bytes":
        body = data[2:] if data[:2] in (b"\xff\xfe", b"\xfe\xff") else data
        return body[: len(body) // 2 * 2].decode(encoding, "replace")
    text = data.decode("utf-8", "replace")
    return text.removeprefix("\ufeff")


def text_lines(data: bytes) -> list[str]:
    """All lines of a (small) text file, leniently decoded (never raises)."""
    return split_lines(_decode(data))


def tail_lines(data: bytes, size: int = TAIL_BYTES) -> tuple[list[str], bool]:
    """The whole lines in the last ``size`` bytes of ``data`` and whether they are all of the file's lines."""
    if len(data) <= size:
        return text_lines(data), True
    start = len(data) - size
    encoding = encoding_of(data)
    if encoding != "bytes":
        start -= start % 2  # a BOM is one code unit, so even offsets start a character
        return split_lines(data[start:].decode(encoding, "replace"))[1:], False
    return split_lines(data[start:].decode("utf-8", "replace"))[1:], False


def zip_incomplete(data: bytes, what: str) -> str | None:
    """Why a zip (xlsx, zipped RDML) is cut short: its end-of-central-directory record is missing or inconsistent.

    A zip is written front to back and its directory last, so any cut loses
    the EOCD record or leaves it pointing past the end of the file.
    """
    at = data.rfind(_ZIP_EOCD, max(0, len(data) - _EOCD_SIZE - 65535))
    if at < 0 or len(data) - at < _EOCD_SIZE:
        return f"the {what} has no zip directory at its end (the archive stops before its end)"
    size, offset, comment = struct.unpack("<IIH", data[at + 12 : at + 22])
    if at + _EOCD_SIZE + comment > len(data):
        return f"the {what}'s zip directory record is cut short"
    if offset == 0xFFFFFFFF:  # ZIP64: its own locator precedes; far beyond any export, leave it to the parser
        return None
    if offset + size != at or data[offset : offset + 4] != b"PK\x01\x02":
        return f"the {what}'s zip directory does not match the archive (the file is cut or damaged)"
    return None


def last_well_short(rows: Sequence[Sequence[str]], first_rows: Sequence[Sequence[str]], well: int,
                    describe: Callable[[str, int, int], str]) -> str | None:
    """When a table lists each well's targets together, the last well must have as many rows as the first.

    ``first_rows`` are the table's first rows (from the head), ``rows`` its
    last rows (from the tail); ``well`` the index of the well column. Judged
    only when both groups are bounded (another well follows the first group and
    precedes the last one) and the first well's rows are no fewer than any
    other whole group seen: a plate whose wells carry different numbers of
    targets is not called cut. ``describe(last well, rows it has, rows
    expected)`` makes the sentence.
    """

    def cell(row: Sequence[str]) -> str:
        return row[well].strip().strip('"').upper() if len(row) > well else ""

    if len(first_rows) < 2 or len(rows) < 2:
        return None
    first = cell(first_rows[0])
    n_first = next((i for i, r in enumerate(first_rows) if cell(r) != first), None)
    if n_first is None or not first:
        return None
    last = cell(rows[-1])
    n_last = next((i for i, r in enumerate(reversed(rows)) if cell(r) != last), None)
    if n_last is None or not last or n_last >= n_first or last == first:
        return None
    # Every whole group in the tail (between the first change and the last group) must match the first group's size.
    sizes: list[int] = []
    run, prev = 0, None
    body = rows[: len(rows) - n_last]
    for r in body:
        c = cell(r)
        if c != prev:
            if prev is not None:
                sizes.append(run)
            run, prev = 0, c
        run += 1
    whole = sizes[1:]  # the tail's first group may itself start mid-group
    if prev is not None:
        whole.append(run)
    if any(s != n_first for s in whole):
        return None
    return describe(last, n_last, n_first)


def unterminated(data: bytes) -> str | None:
    """:func:`mid_line`, naming where the last line stops so the technician can compare with the original."""
    why = mid_line(data)
    if why is None or not data:
        return why
    tail, _ = tail_lines(data, 8192)
    last = tail[-1].rstrip() if tail else ""
    return f"{why}: its last line stops at '…{last[-40:]}'" if last else why


def head_and_tail(data: bytes, head_bytes: int = 64 * 1024) -> tuple[list[str], list[str], bool]:
    """(first lines, last lines, whether both are all the lines) of a text file, leniently decoded.

    The head's last line is dropped when the head does not reach the end (it may be cut by the slice).
    """
    tail, whole = tail_lines(data)
    if whole:
        return tail, tail, True
    head = text_lines(data[:head_bytes])
    return head[:-1], tail, False


def last_line_number(data: bytes) -> int:
    """1-based number of the file's last line (CRLF, LF or CR-only; UTF-16 aware): where a cut file stops."""
    encoding = encoding_of(data)
    if encoding != "bytes":
        units = data[2:] if data[:2] in (b"\xff\xfe", b"\xfe\xff") else data
        lf, cr = ((b"\n\x00", b"\r\x00") if encoding == "utf-16-le" else (b"\x00\n", b"\x00\r"))
        text_lf = units.count(lf)
        breaks = text_lf if text_lf else units.count(cr)
    else:
        breaks = data.count(b"\n") or data.count(b"\r")
    return max(1, breaks if mid_line(data) is None else breaks + 1)
