"""The last step of every parser: its columns and run metadata as the canonical well table.

Parsers read different layouts but hand over the same table
(:func:`parsers.schema.well_table`); :func:`canonical_table` repeats the
run-level values (run id, instrument, source, a target written once) down the
rows without a Python object per row, and :func:`clean_metadata` keeps the
first non-empty value of each metadata key, as headers repeat some.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa

from parsers.schema import well_table

__all__ = ["canonical_table", "clean_metadata"]

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
