"""Column plumbing shared by the cell converters (Ct values, wells, roles, calls).

Parsers hand over a column as an Arrow array, a chunked column or a plain list
of cells; :func:`string_array` makes one contiguous array of any of them. Long
columns repeat a few spellings (a plate has at most 1536 wells, a run a handful
of roles), so converters at least :data:`BY_DICTIONARY` long work on the
column's distinct cells once each. :func:`line_at` turns a row index into the
line a technician is told about.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

__all__ = ["BY_DICTIONARY", "line_at", "string_array"]


def string_array(values: pa.Array | pa.ChunkedArray | Sequence[str | None]) -> pa.Array:
    """One contiguous Arrow array from whatever a parser holds: a column, a chunked column or a list of cells."""
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    if not isinstance(values, pa.Array):
        return pa.array(list(values), type=pa.string())
    return values

#: Columns at least this long are normalised through their dictionary of distinct cells.
BY_DICTIONARY = 2048

def line_at(lines: np.ndarray | Sequence[int] | None, i: int) -> int | None:
    if lines is None:
        return None
    value = lines[i]
    return None if value is None else int(value)
