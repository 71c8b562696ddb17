"""Delimited tables inside analyzer exports: lines → a :class:`Block` of Arrow string columns.

Every text format (QuantStudio, SDS, CFX, LightCycler, Rotor-Gene, m2000,
generic CSV) has one or more tables under a header line, among run lines,
section titles and trailers. Cutting a table out and splitting it into columns
is done here once, with the quirks of real files: duplicate header names,
``Cт`` with a Cyrillic te, rows padded with separators or left ragged, blank
lines between rows, stray quotes. Cells are stripped and empty cells null.

The usual table (no quotes, every row as wide as the header) takes a fast
path that gives exactly what the general one gives: one joined ``pyarrow.csv``
read with arithmetic line numbers (:func:`read_payload`), sections sharing a
header in one read (:func:`read_sections`), columns cleaned only when a
parser reads them. Anything unusual falls back to the general path, so errors
name the same file, line and field.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from parsers.errors import ParseError

__all__ = [
    "MAX_COLUMNS",
    "Block",
    "read_block",
    "read_payload",
    "read_sections",
    "require_rows",
    "require_values",
    "split_fields",
]

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
    return read_payload(pa.py_buffer(payload), numbers, sep, names, header_index, source)


#: Cells holding nothing but what str.isspace() calls whitespace.
_PY_SPACE = "^[\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"


def read_payload(payload: pa.Buffer, numbers: np.ndarray | int, sep: str, names: list[str], header_index: int,
                 source: str | None, *, blank_rows: bool = True) -> Block | None:
    """Rows of UTF-8 ``payload`` (no quotes, one row per line) as a Block; None if not rectangular.

    The fast path of :func:`read_block`, and of :func:`parsers.text.read_tail`
    for rows still in the file's bytes. ``names``: the header's fields (none,
    or more than :data:`MAX_COLUMNS`, gives None). ``numbers``: each row's line
    number, or the first row's when they simply count up. ``blank_rows``
    False: a blank row gives None (it would have ended the table).
    """
    if not names or len(names) > MAX_COLUMNS:
        return None
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
