"""Well positions as exports write them (``A01``, `` a1 ``, ``A-1``, well numbers) → ``A1``.

Every format names wells its own way, and a well outside the plate means a
damaged file or a wrong plate size, so the canonical name and the check live
here once, vectorised over a column. :func:`occupied_wells` belongs with them:
exports list every position of the plate, and which rows are wells in use
(and which unnamed results must be refused) is decided the same way for all.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from parsers.columns import BY_DICTIONARY, line_at, string_array
from parsers.errors import ParseError

__all__ = ["normalise_well", "normalise_wells", "occupied_wells", "plate_shape", "well_from_index"]

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
    values = string_array(values)
    if len(values) >= BY_DICTIONARY:
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
            line=line_at(lines, i),
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
                         line=line_at(lines, i), field=field, expected=f"1 to {rows * cols}")
    letters = pa.array([chr(ord("A") + r) for r in range(rows)]).take(pa.array((idx - 1) // cols))
    return pc.binary_join_element_wise(letters, pc.cast(pa.array((idx - 1) % cols + 1), pa.string()), "")

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
