"""Ct values and other numbers as analyzer exports write them: text cells to float arrays.

Instruments spell "no amplification" many ways (``Undetermined``, ``NaN``,
``N/A``, empty, ``-1``), and PCs set to a Vietnamese or French locale write
decimal commas, so every Ct column goes through :func:`ct_array`: one place
that knows the spellings, refuses a non-number or a Ct outside 0-50 cycles with
the file, line and field, and stays vectorised (plain numbers are cast as
written; the few other spellings are converted once each through the column's
dictionary). :func:`number_array` is the lenient form for quantities and
thresholds, where a stray word is not an error.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from parsers.columns import BY_DICTIONARY, line_at, string_array
from parsers.errors import ParseError

__all__ = ["CT_MAX", "CT_MIN", "NO_CT", "ct_array", "number_array", "parse_ct"]

#: Accepted Ct range in cycles. Real runs stop at 40-50 cycles; anything outside
#: is a damaged file or a column mix-up, not a result.
CT_MIN = 0.0
CT_MAX = 50.0

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
    values = string_array(values)
    if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        values = values.cast(pa.string())
    n = len(values)
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    if n < BY_DICTIONARY:
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
            line=line_at(lines, i),
            field=field,
            expected=f"a Ct between {CT_MIN:g} and {CT_MAX:g} cycles",
        )
    return ct.astype(np.float32)

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
            line=line_at(lines, i),
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

def number_array(values: pa.Array, decimal: str = ".") -> np.ndarray:
    """Lenient float conversion of a column (quantities, thresholds): non-numbers become NaN."""
    filled = pc.fill_null(string_array(values).cast(pa.string()), "")
    if len(filled) >= BY_DICTIONARY:
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
