"""Shared text handling for analyzer exports: bytes → text → lines → Arrow columns.

Every parser goes through these helpers so that the quirks of real instrument PCs
are handled once: byte-order marks, UTF-16 from Windows "Unicode text" exports,
cp1252 from old software, CR-only line ends (classic Mac/SDS 2.x, LightCycler),
Vietnamese/French locales writing ``;`` separators and decimal commas, padded
well names (``A01``), and the many spellings of "no Ct" (``Undetermined``,
``NaN``, ``N/A``, empty, ``-1``).

Conversions of whole columns are vectorised with pyarrow.compute; only header
and metadata lines are handled in Python.

Large exports take fast paths that give exactly what the general path gives
(tests hold them to it): a plain UTF-8 table goes to ``pyarrow.csv`` as the
file's own bytes (:func:`utf8_head`, :func:`read_tail`), a rectangular table
in one joined read with arithmetic line numbers, sections sharing a header in
one read (:func:`read_sections`), and long Ct/well/role columns through their
dictionary of distinct cells. Anything unusual (quotes, ragged rows, damage)
falls back to the general path, so errors name the same file, line and field.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from parsers.errors import ParseError
from parsers.schema import Role, well_table

__all__ = [
    # constants
    "CT_MAX",
    "CT_MIN",
    "GUNZIP_LIMIT",
    "MAX_COLUMNS",
    "NO_CT",
    # bytes -> text -> lines
    "decode",
    "decode_lines",
    "head_lines",
    "head_text",
    "lines_starting_with",
    "skip_blank",
    "split_lines",
    "table_stop",
    # tables inside text
    "Block",
    "read_block",
    "read_sections",
    "read_tail",
    "utf8_head",
    "Utf8Head",
    "split_fields",
    # cell and column conversions
    "ct_array",
    "number_array",
    "parse_ct",
    "normalise_call",
    "normalise_calls",
    "normalise_role",
    "normalise_roles",
    "normalise_well",
    "normalise_wells",
    "plate_shape",
    "well_from_index",
    # checks and assembly
    "canonical_table",
    "clean_metadata",
    "occupied_wells",
    "require_rows",
    "require_values",
    "roles_from_names",
]

#: Accepted Ct range in cycles. Real runs stop at 40-50 cycles; anything outside
#: is a damaged file or a column mix-up, not a result.
CT_MIN = 0.0
CT_MAX = 50.0

# ---------------------------------------------------------------------------
# Bytes to text
# ---------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------
# Tables inside text: lines -> Arrow string columns
# ---------------------------------------------------------------------------


def _norm_name(name: str) -> str:
    # Applied Biosystems 7500/StepOne software writes "Cт" with a Cyrillic te (U+0442)
    # and "ΔCт" with a Greek delta; compare them as the ASCII words a person reads.
    name = name.strip().strip('"').lower().replace("\u0442", "t").replace("\u0394", "delta ").replace("\u03b4", "delta ")
    return re.sub(r"[\s_]+", " ", name).strip()


@dataclass
class Block:
    """A delimited table cut out of an export: header as written plus string columns.

    Duplicate header names are kept (QuantStudio repeats ``Target Name`` and
    ``Task``); :meth:`find` returns the first match. ``lines`` holds the 1-based
    line number of each row in the decoded text, for error messages.
    """

    header: list[str]
    columns: list[pa.Array]
    lines: np.ndarray
    header_line: int
    source: str | None = None

    @property
    def num_rows(self) -> int:
        """Rows in the table (blank rows already skipped)."""
        return len(self.lines)

    def find(self, *names: str) -> int | None:
        """Index of the first column whose name matches one of ``names`` (case/space-insensitive)."""
        wanted = [_norm_name(n) for n in names]
        normed = [_norm_name(h) for h in self.header]
        for want in wanted:
            if want in normed:
                return normed.index(want)
        return None

    def get(self, *names: str) -> pa.Array | None:
        """The first column named one of ``names``, or None."""
        idx = self.find(*names)
        return None if idx is None else self.columns[idx]

    def get_or_nulls(self, *names: str) -> pa.Array:
        """Like :meth:`get`, but an absent column is all nulls: an optional column this software version omits."""
        col = self.get(*names)
        return col if col is not None else pa.nulls(self.num_rows, pa.string())

    def require(self, *names: str) -> pa.Array:
        """Like :meth:`get`, but a missing column is a ParseError naming the header line."""
        col = self.get(*names)
        if col is None:
            raise ParseError(
                f"column '{names[0]}' is missing from the table header",
                source=self.source,
                line=self.header_line,
                field=names[0],
                expected=f"a column named {' or '.join(repr(n) for n in names)}",
            )
        return col

    def filter(self, mask: pa.Array | np.ndarray) -> Block:
        """Rows where ``mask`` is true (nulls count as false)."""
        if isinstance(mask, np.ndarray):
            mask = pa.array(mask, type=pa.bool_())
        mask = pc.fill_null(mask, False)
        keep = mask.to_numpy(zero_copy_only=False)
        columns = self.columns
        return Block(
            self.header,
            columns.filter(mask) if isinstance(columns, _CleanedOnUse) else [c.filter(mask) for c in columns],
            self.lines[keep],
            self.header_line,
            self.source,
        )


def _blank_mask(body: pa.Array, sep: str) -> pa.Array:
    stripped = pc.utf8_trim(body, characters=sep + " \t\"")
    return pc.greater(pc.utf8_length(stripped), 0)


def split_fields(line: str, sep: str) -> list[str]:
    """Fields of one header line, stripped of padding and surrounding quotes."""
    return [f.strip().strip('"').strip() for f in line.split(sep)]


def read_block(
    lines: Sequence[str],
    header_index: int,
    stop: int | None,
    sep: str,
    *,
    source: str | None = None,
    quote: bool = True,
    header: Sequence[str] | None = None,
) -> Block:
    """Read the table whose header is ``lines[header_index]`` and rows run to ``stop``.

    Rows that are empty or hold only separators are skipped (Rotor-Gene pads
    every line with ``;``; CFX puts blank lines between rows). Ragged rows are
    padded with empty fields, in one vectorised step, so a short row becomes
    nulls rather than an error. Cells are stripped; empty cells are null.
    ``header`` overrides the header line (then rows start at ``header_index``).
    """
    stop = len(lines) if stop is None else min(stop, len(lines))
    if header is None:
        names = split_fields(lines[header_index], sep)
        first = header_index + 1
    else:
        names = list(header)
        first = header_index
    fast = _read_rectangular(lines, first, stop, sep, names, header_index, source)
    if fast is not None:
        return fast
    body = pa.array(list(lines[first:stop]), type=pa.string())
    numbers = np.arange(first + 1, stop + 1, dtype=np.int32)
    if len(body):
        keep = _blank_mask(body, sep)
        body = body.filter(keep)
        numbers = numbers[keep.to_numpy(zero_copy_only=False)]
    if len(body) == 0:
        return Block(names, [pa.nulls(0, pa.string()) for _ in names], numbers, header_index + 1, source)
    counts = pc.count_substring(body, sep).to_numpy(zero_copy_only=False).astype(np.int64)
    ncol = max(len(names), int(counts.max()) + 1)
    if ncol > MAX_COLUMNS:
        i = int(np.argmax(counts))
        raise ParseError(
            f"a row has {int(counts[i]) + 1} fields",
            source=source,
            line=int(numbers[i]),
            expected=f"at most {MAX_COLUMNS} columns; the file may be damaged or not an export",
        )
    pads = pa.array([sep * k for k in range(ncol)], type=pa.string()).take(pa.array(ncol - 1 - counts))
    padded = pc.binary_join_element_wise(body, pads, "")
    columns = _read_csv(padded, sep, ncol, quote)
    if columns is None and quote:
        # An unmatched quote (e.g. a byte flip, or 3"UTR in a target name): read literally.
        columns = _read_csv(padded, sep, ncol, False)
    if columns is None or len(columns[0]) != len(numbers):
        raise ParseError(
            "the table rows cannot be split into columns",
            source=source,
            line=header_index + 1,
            expected=f"rows separated by {_sep_name(sep)} with the same columns as the header",
        )
    cleaned = []
    for col in columns:
        col = pc.utf8_trim(col, characters=" \t\u00a0\"")
        cleaned.append(pc.if_else(pc.equal(pc.utf8_length(col), 0), pa.scalar(None, pa.string()), col))
    names = names + [""] * (ncol - len(names))
    return Block(names, cleaned, numbers, header_index + 1, source)


def read_sections(lines: Sequence[str], spans: Sequence[tuple[int, int]], sep: str, *,
                  source: str | None = None) -> tuple[Block, np.ndarray] | None:
    """The rows of several tables under one identical header, read as one Block; None when they are not so simple.

    Exports with one section per channel (LightCycler, Rotor-Gene) repeat the
    same header over each section's rows. ``spans`` holds each section's
    ``(header index, stop)``. Returns the Block and, per row, the index of its
    section. None (the caller then reads section by section) when headers
    differ, a section has no rows, or a table is not rectangular.
    """
    if not spans:
        return None
    head = lines[spans[0][0]]
    if any(lines[h] != head or stop <= h + 1 for h, stop in spans):
        return None
    block = _read_rectangular(lines, [(h + 1, stop) for h, stop in spans], 0, sep, split_fields(head, sep),
                              spans[0][0], source)
    if block is None:
        return None
    starts = np.array([h + 2 for h, _ in spans])  # 1-based line of each section's first row
    section = np.searchsorted(starts, block.lines, side="right") - 1
    if len(np.unique(section)) != len(spans):
        return None  # a section of blank rows only: the section-by-section reading refuses it
    return block, section


def _read_rectangular(lines: Sequence[str], first: int | list[tuple[int, int]], stop: int, sep: str, names: list[str],
                      header_index: int, source: str | None) -> Block | None:
    """:func:`read_block` for the usual table, straight through one ``pyarrow.csv`` read; None otherwise.

    The usual table has no quote character, no BOM inside and every row with
    as many fields as the header (blank and separator-only rows included).
    Then rows map 1:1 to lines, so line numbers are arithmetic and the rows'
    text goes to Arrow in one joined buffer, without a Python object per row.
    Anything else (ragged or quoted rows, blank lines in a multi-column table)
    returns None and takes the general path, which pads rows one by one.
    """
    ranges = first if isinstance(first, list) else [(first, stop)]
    if not names or len(names) > MAX_COLUMNS or any(b <= a for a, b in ranges):
        return None
    text = "\n".join(["\n".join(lines[a:b]) for a, b in ranges])  # one C-level join per range
    if '"' in text or "\ufeff" in text:
        return None
    try:
        payload = text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    del text
    numbers = np.concatenate([np.arange(a + 1, b + 1, dtype=np.int32) for a, b in ranges])
    return _read_payload(pa.py_buffer(payload), numbers, sep, names, header_index, source)


#: Cells holding nothing but what str.isspace() calls whitespace.
_PY_SPACE = "^[\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"


def _read_payload(payload: pa.Buffer, numbers: np.ndarray | int, sep: str, names: list[str], header_index: int,
                  source: str | None, *, blank_rows: bool = True) -> Block | None:
    """Rows of UTF-8 ``payload`` (no quotes, one row per line) as a Block; None if not rectangular.

    ``numbers``: each row's line number, or the first row's when they simply count up.
    ``blank_rows`` False: a blank row gives None (it would have ended the table).
    """
    ncol = len(names)
    cols = [f"c{i}" for i in range(ncol)]
    try:
        table = pacsv.read_csv(
            pa.BufferReader(payload),
            read_options=pacsv.ReadOptions(column_names=cols, block_size=max(1 << 20, payload.size + 1)),
            parse_options=pacsv.ParseOptions(delimiter=sep, quote_char=False, newlines_in_values=False,
                                             ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in cols},
                                                 strings_can_be_null=False, null_values=[]),
        )
    except (pa.ArrowInvalid, pa.ArrowException):
        return None
    if isinstance(numbers, int):
        # Arrow ends a row at CR LF, CR or LF, as split_lines ends a line: rows are lines.
        numbers = np.arange(numbers, numbers + table.num_rows, dtype=np.int32)
    if table.num_rows != len(numbers):
        return None
    raw = [table.column(n).combine_chunks() for n in cols]
    del table
    # A blank row is one whose every field is only spaces/tabs (no quotes here): narrow the
    # candidates column by column, so a table whose first filled column has no gaps costs one pass.
    candidates = np.arange(len(numbers))
    for col in raw:
        if not len(candidates):
            break
        cells = col if len(candidates) == len(col) else col.take(pa.array(candidates))
        if blank_rows:
            empty = pc.equal(pc.utf8_length(pc.utf8_trim(cells, characters=" \t")), 0)
        else:
            # Whitespace as str.strip() sees it, since such a row would have ended the table.
            empty = pc.match_substring_regex(cells, _PY_SPACE)
        empty = empty.to_numpy(zero_copy_only=False)
        candidates = candidates[empty]
    if len(candidates):
        if not blank_rows:
            return None
        keep = np.ones(len(numbers), dtype=bool)
        keep[candidates] = False
        numbers = numbers[keep]
        mask = pa.array(keep)
        raw = [c.filter(mask) for c in raw]
    if len(numbers) == 0:
        return Block(names, [pa.nulls(0, pa.string()) for _ in names], numbers, header_index + 1, source)
    return Block(names, _CleanedOnUse(raw), numbers, header_index + 1, source)  # type: ignore[arg-type]


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
    if not names or len(names) > MAX_COLUMNS:
        return None
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
    return _read_payload(pa.py_buffer(memoryview(data)[start:stop]), header_index + 2, sep, names, header_index, source,
                         blank_rows=not until_blank)


def _clean_cells(col: pa.Array) -> pa.Array:
    """Cells stripped of padding and quotes; empty cells null (as the general path leaves them)."""
    if _may_need_trim(col):
        col = pc.utf8_trim(col, characters=" \t\u00a0\"")
    filled = pc.greater(pc.binary_length(col), 0)
    if col.null_count == 0 and col.offset == 0 and filled.offset == 0:
        # Empty cells become null by giving the trimmed strings a validity bitmap: no string copy.
        return pa.Array.from_buffers(pa.string(), len(col), [filled.buffers()[1], *col.buffers()[1:]])
    return pc.if_else(filled, col, pa.scalar(None, pa.string()))


#: First or last bytes of a cell that utf8_trim might remove: space, tab, quote, and the bytes of U+00A0.
_TRIM_BYTES = np.frombuffer(b' \t"\xc2\xa0', dtype=np.uint8)


def _may_need_trim(col: pa.Array) -> bool:
    """False when no cell starts or ends with padding, so trimming would copy the strings for nothing.

    Looks only at each cell's first and last byte, straight from the Arrow buffers.
    """
    if col.offset != 0 or col.null_count or pa.types.is_large_string(col.type) or col.buffers()[2] is None:
        return True
    offsets = np.frombuffer(col.buffers()[1], dtype=np.int32, count=len(col) + 1)
    chars = np.frombuffer(col.buffers()[2], dtype=np.uint8)
    filled = offsets[1:] > offsets[:-1]
    ends = np.concatenate([chars[offsets[:-1][filled]], chars[offsets[1:][filled] - 1]])
    return bool(np.isin(ends, _TRIM_BYTES).any())


class _CleanedOnUse(Sequence[pa.Array]):
    """A block's columns, each cleaned (:func:`_clean_cells`) when first read.

    An export has 10-40 columns and a parser reads five or six; cleaning only
    those saves most of the column work on a large file. Filtering keeps the
    raw cells, since cleaning is cell by cell and commutes with it.
    """

    def __init__(self, raw: list[pa.Array]) -> None:
        self._raw = raw
        self._clean: dict[int, pa.Array] = {}

    def __len__(self) -> int:
        return len(self._raw)

    def __getitem__(self, i):  # type: ignore[no-untyped-def, override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self._raw)))]
        i = range(len(self._raw))[i]
        if i not in self._clean:
            self._clean[i] = _clean_cells(self._raw[i])
        return self._clean[i]

    def filter(self, mask: pa.Array) -> _CleanedOnUse:
        """The same columns, rows where ``mask`` is true."""
        out = _CleanedOnUse([c.filter(mask) for c in self._raw])
        out._clean = {i: c.filter(mask) for i, c in self._clean.items()}
        return out


#: More columns than any instrument export has: a damaged file or the wrong separator.
MAX_COLUMNS = 2000


def _sep_name(sep: str) -> str:
    return {"\t": "tabs", ";": "semicolons", ",": "commas"}.get(sep, repr(sep))


def _read_csv(rows: pa.Array, sep: str, ncol: int, quote: bool) -> list[pa.Array] | None:
    blob = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(rows)], pa.int32()), rows), "\n")
    payload = blob[0].as_buffer()  # the joined rows, without a copy through Python str
    names = [f"c{i}" for i in range(ncol)]
    try:
        table = pacsv.read_csv(
            pa.BufferReader(payload),
            read_options=pacsv.ReadOptions(column_names=names, block_size=max(1 << 20, payload.size + 1)),
            parse_options=pacsv.ParseOptions(
                delimiter=sep,
                quote_char='"' if quote else False,
                double_quote=True,
                newlines_in_values=False,
                ignore_empty_lines=False,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                null_values=[],
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowException):
        return None
    return [table.column(n).combine_chunks() for n in names]


# ---------------------------------------------------------------------------
# Ct values
# ---------------------------------------------------------------------------

#: Spellings of "no amplification" written by real instruments (compared lower-case).
NO_CT = (
    "",
    "undetermined",  # QuantStudio, SDS, Diomni (upper case)
    "undet",
    "nan",  # CFX Maestro
    "n/a",  # CFX Manager
    "na",
    "n.a.",
    "-",
    "--",
    "no ct",
    "no cq",
    "no cp",
    "none",
    "not detected",
    "nd",
    "inf",
)

def _string_array(values: pa.Array | pa.ChunkedArray | Sequence[str | None]) -> pa.Array:
    """One contiguous Arrow array from whatever a parser holds: a column, a chunked column or a list of cells."""
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    if not isinstance(values, pa.Array):
        return pa.array(list(values), type=pa.string())
    return values


_NUMBER = r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$"


def _canonical_numbers(values: pa.Array, decimal: str) -> pa.Array:
    """Remove padding and thousands separators; turn a decimal comma into a point."""
    v = pc.utf8_trim_whitespace(values)
    v = pc.replace_substring(v, "\u00a0", "")
    v = pc.replace_substring(v, " ", "")
    if decimal == ",":
        # "1.234,5" -> "1234.5"; a value without comma ("35.2") is read as written.
        has_comma = pc.match_substring(v, ",")
        v = pc.if_else(has_comma, pc.replace_substring(pc.replace_substring(v, ".", ""), ",", "."), v)
    else:
        # Thousands separators (Quantity "100,000,000.000") are dropped; any other comma
        # is a decimal comma from a PC set to a Vietnamese/French locale ("35,2" = 35.2).
        grouped = pc.match_substring_regex(v, r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?$")
        v = pc.if_else(grouped, pc.replace_substring(v, ",", ""), pc.replace_substring(v, ",", "."))
    return v


def ct_array(
    values: pa.Array | pa.ChunkedArray | Sequence[str | None],
    *,
    lines: np.ndarray | Sequence[int] | None = None,
    source: str | None = None,
    field: str = "Ct",
    decimal: str = ".",
    minus_one_is_missing: bool = True,
    missing: Sequence[str] = (),
) -> np.ndarray:
    """Convert a column of Ct cells to float32 cycles, NaN for "no amplification".

    Markers for no Ct (:data:`NO_CT`, any case, plus ``-1``/``-1.00`` used by
    Abbott m2000 and RDML) become NaN. Anything else non-numeric, or a number
    outside 0-50 cycles, raises ParseError naming the line and the field.
    """
    values = _string_array(values)
    if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        values = values.cast(pa.string())
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    if n < _BY_DICTIONARY:
        ct = _ct_cycles(values, lines=lines, source=source, field=field, decimal=decimal, missing=missing)
    else:
        # Cells already a plain number (most of them) read as written in either locale, so they
        # skip the clean-up; the others (Undetermined, decimal commas, damage) are few distinct
        # spellings, converted once each through the dictionary of the column.
        filled = pc.fill_null(values, "")
        plain = pc.match_substring_regex(filled, _NUMBER)
        ct = pc.cast(pc.if_else(plain, filled, pa.scalar("nan")), pa.float64()).to_numpy(zero_copy_only=False).copy()
        rest = np.flatnonzero(~plain.to_numpy(zero_copy_only=False))
        if len(rest):
            others = values.take(pa.array(rest))
            encoded = pc.dictionary_encode(pc.fill_null(others, ""))
            try:
                converted = _ct_cycles(encoded.dictionary, lines=None, source=source, field=field, decimal=decimal,
                                       missing=missing)
            except ParseError:
                # Raise as the row-by-row reading does, naming the first bad row's line.
                _ct_cycles(others, lines=None if lines is None else [lines[i] for i in rest], source=source,
                           field=field, decimal=decimal, missing=missing)
                raise
            ct[rest] = converted[encoded.indices.to_numpy(zero_copy_only=False)]
    if minus_one_is_missing:
        ct[ct == -1.0] = np.nan
    out_of_range = (ct < CT_MIN) | (ct > CT_MAX)
    if out_of_range.any():
        i = int(np.flatnonzero(out_of_range)[0])
        raise ParseError(
            f"Ct value {values[i].as_py()} is outside {CT_MIN:g}-{CT_MAX:g} cycles",
            source=source,
            line=_line_at(lines, i),
            field=field,
            expected=f"a Ct between {CT_MIN:g} and {CT_MAX:g} cycles",
        )
    return ct.astype(np.float32)


#: Columns at least this long are normalised through their dictionary of distinct cells.
_BY_DICTIONARY = 2048


def _ct_cycles(values: pa.Array, *, lines: np.ndarray | Sequence[int] | None, source: str | None, field: str,
               decimal: str, missing: Sequence[str]) -> np.ndarray:
    """Ct cells to float64 cycles (NaN for no-Ct markers); a non-number is a ParseError naming its line."""
    v = _canonical_numbers(pc.fill_null(values, ""), decimal)
    lowered = pc.utf8_lower(v)
    # Cells were stripped of inner spaces by _canonical_numbers, so compare markers the same way.
    markers = tuple({m.strip().lower().replace(" ", "").replace("\u00a0", "") for m in (*NO_CT, *missing)})
    missing_mask = pc.is_in(lowered, value_set=pa.array(markers))
    numeric = pc.match_substring_regex(v, _NUMBER)
    bad = pc.and_(pc.invert(missing_mask), pc.invert(numeric))
    if pc.any(bad).as_py():
        i = int(np.flatnonzero(bad.to_numpy(zero_copy_only=False))[0])
        raise ParseError(
            f"Ct value '{values[i].as_py()}' is not a number",
            source=source,
            line=_line_at(lines, i),
            field=field,
            expected="a number of cycles, or Undetermined/NaN/N/A/empty for no amplification",
        )
    as_number = pc.if_else(numeric, v, pa.scalar("nan"))
    return pc.cast(as_number, pa.float64()).to_numpy(zero_copy_only=False).copy()


def parse_ct(
    value: str | None,
    *,
    source: str | None = None,
    line: int | None = None,
    field: str = "Ct",
    decimal: str = ".",
) -> float:
    """One Ct cell to cycles (NaN = no amplification); the scalar form of :func:`ct_array`."""
    return float(ct_array([value], lines=[line] if line is not None else None, source=source, field=field, decimal=decimal)[0])


def _line_at(lines: np.ndarray | Sequence[int] | None, i: int) -> int | None:
    if lines is None:
        return None
    value = lines[i]
    return None if value is None else int(value)


def number_array(values: pa.Array, decimal: str = ".") -> np.ndarray:
    """Lenient float conversion of a column (quantities, thresholds): non-numbers become NaN."""
    filled = pc.fill_null(_string_array(values).cast(pa.string()), "")
    if len(filled) >= _BY_DICTIONARY:
        # As in ct_array: plain numbers cast as written, the few other spellings once each.
        plain = pc.match_substring_regex(filled, _NUMBER)
        out = pc.cast(pc.if_else(plain, filled, pa.scalar("nan")), pa.float64()).to_numpy(zero_copy_only=False).copy()
        rest = np.flatnonzero(~plain.to_numpy(zero_copy_only=False))
        if len(rest):
            encoded = pc.dictionary_encode(filled.take(pa.array(rest)))
            out[rest] = _lenient_numbers(encoded.dictionary, decimal)[encoded.indices.to_numpy(zero_copy_only=False)]
        return out
    return _lenient_numbers(filled, decimal)


def _lenient_numbers(filled: pa.Array, decimal: str) -> np.ndarray:
    v = _canonical_numbers(filled, decimal)
    numeric = pc.match_substring_regex(v, _NUMBER)
    return pc.cast(pc.if_else(numeric, v, pa.scalar("nan")), pa.float64()).to_numpy(zero_copy_only=False)


# ---------------------------------------------------------------------------
# Wells
# ---------------------------------------------------------------------------

_PLATES = {96: (8, 12), 384: (16, 24), 48: (6, 8), 16: (2, 8), 1536: (32, 48)}


def plate_shape(size: int) -> tuple[int, int]:
    """(rows, columns) of a plate with ``size`` wells."""
    try:
        return _PLATES[size]
    except KeyError:
        raise ParseError(f"unsupported plate size {size}", expected="96 or 384 wells") from None


_WELL = r"^\s*(?P<row>[A-Za-z]{1,2})\s*[-:]?\s*0*(?P<col>\d{1,3})\s*$"


def normalise_well(well: str, *, plate: int = 384, source: str | None = None, line: int | None = None, field: str = "Well") -> str:
    """``"A01"``, ``" a1 "``, ``"A-1"`` → ``"A1"``; refuse wells outside the plate."""
    return normalise_wells([well], plate=plate, source=source, lines=[line] if line is not None else None, field=field)[0].as_py()


def normalise_wells(
    values: pa.Array | Sequence[str | None],
    *,
    plate: int = 384,
    source: str | None = None,
    lines: np.ndarray | Sequence[int | None] | None = None,
    field: str = "Well",
    allow_null: bool = False,
) -> pa.Array:
    """Vectorised :func:`normalise_well` over a column; returns a string array.

    A cell that is not a well name, or names a well outside a ``plate``-well
    plate (e.g. ``Q1`` or ``A25`` on 384), raises ParseError with its line.
    Null/empty cells raise unless ``allow_null``.
    """
    values = _string_array(values)
    if len(values) >= _BY_DICTIONARY:
        # A plate has at most 1536 distinct wells: normalise each spelling once.
        encoded = pc.dictionary_encode(pc.fill_null(values, ""))
        try:
            names = _normalise_wells(encoded.dictionary, plate=plate, source=source, lines=None, field=field,
                                     allow_null=allow_null)
        except ParseError:
            pass  # read row by row below, which names the first bad row's line
        else:
            return names.take(encoded.indices)
    return _normalise_wells(values, plate=plate, source=source, lines=lines, field=field, allow_null=allow_null)


def _normalise_wells(values: pa.Array, *, plate: int, source: str | None,
                     lines: np.ndarray | Sequence[int | None] | None, field: str, allow_null: bool) -> pa.Array:
    rows, cols = plate_shape(plate)
    n = len(values)
    if n == 0:
        return pa.array([], type=pa.string())
    filled = pc.fill_null(values, "")
    parts = pc.extract_regex(filled, _WELL)
    valid = pc.is_valid(parts)
    is_empty = pc.equal(pc.utf8_trim_whitespace(filled), "")
    letters = pc.fill_null(pc.utf8_upper(pc.struct_field(parts, [0])), "A")
    digits = pc.fill_null(pc.struct_field(parts, [1]), "1")
    col = pc.cast(digits, pa.int32()).to_numpy(zero_copy_only=False)
    lengths = pc.utf8_length(letters).to_numpy(zero_copy_only=False)
    first = pc.utf8_slice_codeunits(letters, 0, 1)
    second = pc.utf8_slice_codeunits(letters, 1, 2)
    a = ord("A")
    # Row letters are one or two ASCII characters; convert with a small lookup table.
    lut = pa.array([chr(a + i) for i in range(26)])
    r1 = pc.index_in(first, value_set=lut).to_numpy(zero_copy_only=False)
    r2 = pc.index_in(pc.if_else(pc.equal(second, ""), "A", second), value_set=lut).to_numpy(zero_copy_only=False)
    row = np.where(lengths == 2, 26 + r2, r1)
    ok = valid.to_numpy(zero_copy_only=False) & (row < rows) & (col >= 1) & (col <= cols)
    empty = is_empty.to_numpy(zero_copy_only=False)
    if allow_null:
        ok = ok | empty
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raw = values[i].as_py()
        if empty[i]:
            reason = "the well position is empty"
        elif valid[i].as_py():
            reason = f"well '{raw.strip()}' is outside a {plate}-well plate"
        else:
            reason = f"'{raw}' is not a well position"
        raise ParseError(
            reason,
            source=source,
            line=_line_at(lines, i),
            field=field,
            expected=f"a well from A1 to {chr(a + rows - 1) if rows <= 26 else 'AF'}{cols}",
        )
    out = pc.binary_join_element_wise(letters, pc.cast(pa.array(col), pa.string()), "")
    if allow_null:
        out = pc.if_else(is_empty, pa.scalar(None, pa.string()), out)
    return out


def well_from_index(index: pa.Array | np.ndarray | Sequence[int], *, plate: int = 384, source: str | None = None,
                    lines: np.ndarray | Sequence[int] | None = None, field: str = "Well") -> pa.Array:
    """Well numbers counted row by row from 1 (A1=1, A2=2, …) → ``"A1"`` names."""
    rows, cols = plate_shape(plate)
    idx = np.asarray(index, dtype=np.int64)
    bad = (idx < 1) | (idx > rows * cols)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ParseError(f"well number {idx[i]} is outside a {plate}-well plate", source=source,
                         line=_line_at(lines, i), field=field, expected=f"1 to {rows * cols}")
    letters = pa.array([chr(ord("A") + r) for r in range(rows)]).take(pa.array((idx - 1) // cols))
    return pc.binary_join_element_wise(letters, pc.cast(pa.array((idx - 1) % cols + 1), pa.string()), "")


# ---------------------------------------------------------------------------
# Roles
# ---------------------------------------------------------------------------

_ROLE_WORDS: dict[str, Role] = {}


def _words(role: Role, *words: str) -> None:
    for w in words:
        _ROLE_WORDS[w] = role


# Instrument spellings (compared lower-case, spaces collapsed).
_words(Role.SAMPLE, "unkn", "unknown", "unk", "sample", "samples", "patient", "specimen", "pool", "u",
       "target", "endogenous control", "s")  # QuantStudio/SDS "Task" UNKNOWN/Target = a specimen
_words(Role.NTC, "ntc", "no template control", "no template", "non template control", "non-template control",
       "blank", "h2o", "water", "ntc control", "reagent blank", "nac")
_words(Role.PC, "pos ctrl", "pos ctl", "positive control", "positive", "pos", "pc", "ptc", "pos control",
       "ctrl+", "control+", "+ctrl", "positive ctrl", "hpc", "lpc", "high positive control", "low positive control",
       "positive template control")
_words(Role.NC, "neg ctrl", "neg ctl", "negative control", "negative", "neg", "nc", "neg control", "ctrl-",
       "control-", "-ctrl", "negative ctrl", "extraction control", "nec", "negative extraction control")
_words(Role.STD, "std", "standard", "standards", "std curve", "calibrator", "cal")
# Vietnamese lab words (plate maps typed on site): chứng = control, dương/âm = positive/negative.
_words(Role.PC, "chứng dương", "đối chứng dương", "mẫu chứng dương", "k+", "c+")
_words(Role.NC, "chứng âm", "đối chứng âm", "mẫu chứng âm", "k-", "c-")
_words(Role.SAMPLE, "mẫu", "mẫu bệnh phẩm", "bệnh phẩm", "mẫu gộp")

_ROLE_KEYS = pa.array(list(_ROLE_WORDS))
_ROLE_VALUES = pa.array([r.value for r in _ROLE_WORDS.values()])


def _role_key(value: str) -> str:
    return re.sub(r"[\s_]+", " ", value.strip().lower())


def normalise_role(value: str | None, default: Role = Role.UNKNOWN) -> Role:
    """An instrument's well type/task/content (``Unkn``, ``NTC``, ``Pos Ctrl``, ``STANDARD``, …) as a Role.

    Numbered variants (``Std-01``, ``PC 2``) count as their base word.
    """
    if value is None or not value.strip():
        return default
    key = _role_key(value)
    if key in _ROLE_WORDS:
        return _ROLE_WORDS[key]
    base = re.sub(r"[\s\-_#]*\d+$", "", key)
    return _ROLE_WORDS.get(base, default)


def normalise_roles(
    values: pa.Array | Sequence[str | None], default: Role = Role.UNKNOWN, *, empty: Role | None = None
) -> pa.Array:
    """Vectorised :func:`normalise_role`: a string array of Role values.

    Unrecognised words become ``default``; empty cells become ``empty`` (or ``default``).
    """
    values = _string_array(values)
    if len(values) == 0:
        return pa.array([], type=pa.string())
    if len(values) >= _BY_DICTIONARY:
        # Few distinct words (or sample names repeated per target): map each once.
        encoded = pc.dictionary_encode(pc.fill_null(values, ""))
        return normalise_roles(encoded.dictionary, default, empty=empty).take(encoded.indices)
    key = pc.utf8_lower(pc.utf8_trim_whitespace(pc.fill_null(values, "")))
    key = pc.replace_substring_regex(key, r"[\s_]+", " ")  # Diomni writes POSITIVE_CONTROL
    idx = pc.index_in(key, value_set=_ROLE_KEYS)
    base = pc.replace_substring_regex(key, r"[\s\-_#]*\d+$", "")
    idx = pc.coalesce(idx, pc.index_in(base, value_set=_ROLE_KEYS))
    roles = pc.fill_null(pc.take(_ROLE_VALUES, idx), default.value)
    if empty is not None and empty != default:
        roles = pc.if_else(pc.equal(key, ""), pa.scalar(empty.value), roles)
    return roles


# ---------------------------------------------------------------------------
# Header/metadata helpers
# ---------------------------------------------------------------------------


def require_rows(block: Block, what: str, *, source: str | None) -> None:
    """A table header without any rows means a truncated or empty export."""
    if block.num_rows == 0:
        raise ParseError(
            f"the {what} table has a header but no rows",
            source=source,
            line=block.header_line,
            expected="one row per well; the file may be truncated or the export empty",
        )


def require_values(values: pa.Array, block: Block, field: str, *, source: str | None, what: str) -> None:
    """Refuse a null in a column that must be filled (e.g. a sample name), naming the row's line."""
    nulls = pc.is_null(values)
    if pc.any(nulls).as_py():
        i = int(np.flatnonzero(nulls.to_numpy(zero_copy_only=False))[0])
        raise ParseError(f"{what} is missing", source=source, line=int(block.lines[i]), field=field,
                         expected=f"a {what} on every row")


def clean_metadata(values: Iterable[tuple[str, str | None]]) -> dict[str, str]:
    """Drop empty values; keep the first value seen for a key."""
    out: dict[str, str] = {}
    for key, value in values:
        if value is None:
            continue
        value = value.strip()
        if value and key not in out:
            out[key] = value
    return out



# ---------------------------------------------------------------------------
# Instrument calls and empty wells
# ---------------------------------------------------------------------------

def occupied_wells(
    sample: pa.Array,
    role: pa.Array,
    ct: np.ndarray,
    lines: np.ndarray,
    *,
    source: str | None,
    field: str = "Sample Name",
) -> np.ndarray:
    """Mask of rows to keep: empty plate positions are dropped, unnamed results refused.

    Exports list unused wells too (CFX writes every well of the plate with an
    empty Sample and Cq NaN). A row with neither a sample name nor a Ct, that is
    not a control, is such an empty well. A row with a Ct but no sample name
    cannot be attributed to a person: that is a ParseError naming its line.
    Controls (NTC, PC, NC, standards) may be unnamed.
    """
    no_name = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(pc.fill_null(sample, ""))), 0), True)
    no_name_np = no_name.to_numpy(zero_copy_only=False)
    is_patient = pc.is_in(role, value_set=pa.array(["sample", "unknown"])).to_numpy(zero_copy_only=False)
    amplified = ~np.isnan(ct)
    orphan = no_name_np & is_patient & amplified
    if orphan.any():
        i = int(np.flatnonzero(orphan)[0])
        raise ParseError(
            "a well has a Ct value but no sample name",
            source=source,
            line=int(lines[i]),
            field=field,
            expected="a sample name (specimen or pool id) for every well with a result",
        )
    return ~(no_name_np & is_patient)


# ---------------------------------------------------------------------------
# Instrument calls
# ---------------------------------------------------------------------------

# Order matters: "NOT DETECTED" contains "detected", so the negative words are
# tried before the positive ones. "Presumptive positive" (Xpert Xpress: only N2
# amplified) is deliberately no call: the assay rule decides from the Ct values.
_CALL_INVALID = re.compile(r"\b(invalid|inv|error|err|fail(?:ed)?|no result|aborted|indeterminate)\b")
_CALL_NEGATIVE = re.compile(r"\b(not detected|target not detected|undetected|negative|neg|non[- ]?reactive|nd)\b")
_CALL_POSITIVE = re.compile(r"\b(detected|positive|pos|reactive)\b")
_CALL_NONE = re.compile(r"\bpresumptive\b")


def normalise_call(value: str | None) -> str | None:
    """An instrument's own interpretation (``NOT DETECTED``, ``Pos``, ``NEG``, ``INVALID``) as a canonical call.

    Returns ``detected``, ``not_detected``, ``invalid`` or None when the text is
    no detection call (``PASS``, ``Valid``, ``ValueNotSet``, a number, a
    presumptive result). Used by the LIS parsers (ASTM, HL7), where the call is
    free text chosen by each vendor.
    """
    if value is None:
        return None
    key = re.sub(r"[\s_]+", " ", value.strip().lower())
    if not key or _CALL_NONE.search(key):
        return None
    if _CALL_INVALID.search(key):
        return "invalid"
    if _CALL_NEGATIVE.search(key):
        return "not_detected"
    if _CALL_POSITIVE.search(key):
        return "detected"
    return None


#: Bare symbols some instruments write for a call (no word boundary to match on).
_CALL_SYMBOLS = {"+": "detected", "-": "not_detected", "amp": "detected", "no amp": "not_detected", "noamp": "not_detected"}


def normalise_calls(values: pa.Array | Sequence[str | None]) -> pa.Array:
    """Vectorised :func:`normalise_call` over a call column (``POSITIVE``, ``Negative``, ``Invalid``…).

    Same words and precedence as the scalar form (invalid, then negative, then
    positive); anything else, ``Inconclusive`` or empty becomes null so the
    assay rule decides from the Ct values.
    """
    values = _string_array(values)
    if len(values) == 0:
        return pa.array([], type=pa.string())
    key = pc.replace_substring_regex(pc.utf8_lower(pc.utf8_trim_whitespace(pc.fill_null(values, ""))), r"[\s_]+", " ")

    def matches(pattern: re.Pattern[str]) -> pa.Array:
        return pc.match_substring_regex(key, pattern.pattern)

    symbol = pc.take(pa.array(list(_CALL_SYMBOLS.values())), pc.index_in(key, value_set=pa.array(list(_CALL_SYMBOLS))))
    null = pa.scalar(None, pa.string())
    call = pc.if_else(
        matches(_CALL_INVALID),
        pa.scalar("invalid"),
        pc.if_else(matches(_CALL_NEGATIVE), pa.scalar("not_detected"),
                   pc.if_else(matches(_CALL_POSITIVE), pa.scalar("detected"), symbol)),
    )
    return pc.if_else(pc.or_(matches(_CALL_NONE), pc.equal(key, "")), null, call)


# ---------------------------------------------------------------------------
# Assembling the canonical table
# ---------------------------------------------------------------------------


def canonical_table(
    *,
    run_id: str,
    source: str,
    line: np.ndarray | pa.Array,
    metadata: dict[str, str],
    well: pa.Array | None = None,
    sample_id: pa.Array | str | None = None,
    role: pa.Array | None = None,
    target: pa.Array | str | None = None,
    dye: pa.Array | str | None = None,
    ct: np.ndarray | pa.Array | None = None,
    call: pa.Array | str | None = None,
) -> pa.Table:
    """The canonical well table from a parser's columns; scalars are repeated down the rows.

    ``instrument`` comes from ``metadata["instrument"]``; absent columns are null.
    """
    n = len(line)

    def column(value: object) -> object:
        if value is None:
            return None
        if isinstance(value, str):
            return _repeat_string(value, n)
        return value

    columns = {
        "run_id": _repeat_string(run_id, n),
        "instrument": _repeat_string(metadata.get("instrument"), n),
        "source": _repeat_string(source, n),
        "line": line,
        "well": well,
        "sample_id": column(sample_id),
        "role": role,
        "target": column(target),
        "dye": column(dye),
        "ct": ct,
        "call": column(call),
    }
    return well_table({k: v for k, v in columns.items() if v is not None}, metadata)


def _repeat_string(value: str | None, n: int) -> pa.Array:
    """``value`` on ``n`` rows, its bytes laid end to end (``pa.repeat`` appends them one row at a time)."""
    if value is None:
        return pa.nulls(n, pa.string())
    raw = value.encode("utf-8")
    if not raw or len(raw) * n >= 2**31:
        return pa.repeat(pa.scalar(value, pa.string()), n)
    offsets = np.arange(n + 1, dtype=np.int32) * np.int32(len(raw))
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(raw * n)])


def roles_from_names(role: pa.Array, sample: pa.Array) -> pa.Array:
    """Promote wells named like a control (``NTC``, ``PC``, ``Neg Ctrl``) to that role.

    Many labs leave the instrument's task/type as "Unknown" for every well and
    only name the controls; a well named ``NTC`` is the no-template control
    whatever its task says. Only sample/unknown wells are changed.
    """
    if len(role) == 0:
        return role
    by_name = normalise_roles(sample, default=Role.SAMPLE)
    controls = pc.is_in(by_name, value_set=pa.array([Role.NTC.value, Role.PC.value, Role.NC.value]))
    patient = pc.is_in(role, value_set=pa.array([Role.SAMPLE.value, Role.UNKNOWN.value]))
    return pc.if_else(pc.and_(controls, patient), by_name, role)
