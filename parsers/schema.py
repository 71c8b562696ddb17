"""The parsers' output contract: the canonical well table every parser returns.

Every parser returns a table with :data:`WELL_SCHEMA` built by :func:`well_table`;
every later stage of the engine reads it (``engine.model`` re-exports these names).
It lives here, below the engine, so parsers import nothing from ``engine``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from parsers.errors import ParseError


class Role(str, enum.Enum):
    """What a well holds: a specimen/pool, or one of the run's controls."""

    SAMPLE = "sample"
    NTC = "ntc"  # no-template control: must not amplify
    PC = "pc"  # positive control: must amplify
    NC = "nc"  # negative (extraction) control
    STD = "std"  # standard of a dilution series
    UNKNOWN = "unknown"


ROLE_TYPE = pa.dictionary(pa.int8(), pa.string())

#: One row per (well or tube) x target. Run metadata travels in the schema metadata.
WELL_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),  # sha256 hex of the source bytes
        pa.field("instrument", pa.string()),
        pa.field("source", pa.string(), nullable=False),  # file name
        pa.field("line", pa.int32()),  # 1-based line in the decoded text, or record number
        pa.field("well", pa.string()),  # normalised "A1"; null for tube systems
        pa.field("sample_id", pa.string()),  # as written by the instrument
        pa.field("role", ROLE_TYPE, nullable=False),
        pa.field("target", pa.string()),
        pa.field("dye", pa.string()),
        pa.field("ct", pa.float32()),  # cycles; NaN = no amplification / Undetermined
        pa.field("call", pa.string()),  # instrument's own call, if any
    ]
)

WELL_COLUMNS = tuple(WELL_SCHEMA.names)

#: Keys parsers may put in the schema metadata (all values are strings).
RUN_METADATA_KEYS = (
    "format",  # registry name of the parser that read the file
    "encoding",  # text encoding detected (utf-8, utf-8-sig, utf-16-le, cp1252, ...)
    "instrument",
    "serial",
    "operator",
    "software",
    "run_start",  # ISO 8601 as written or normalised
    "run_end",
    "assay",  # assay/kit name when the file states it
    "plate",  # plate barcode/name
    "notes",  # JSON list: wells read but left out, with why (parsers.notes; e.g. a Ct without a sample name)
)

_ROLE_VALUES = [r.value for r in Role]


def well_table(columns: Mapping[str, Any], metadata: Mapping[str, str | None] | None = None) -> pa.Table:
    """Build a canonical well table from column arrays, casting to :data:`WELL_SCHEMA`.

    ``columns`` maps canonical names to sequences, numpy arrays or Arrow arrays; a
    missing optional column is filled with nulls (``ct`` with NaN). ``role`` may be
    plain strings; values outside :class:`Role` raise ``ParseError``.
    """
    lengths = {name: len(values) for name, values in columns.items()}
    if not lengths:
        raise ParseError("no rows to build a well table from")
    n = next(iter(lengths.values()))
    if any(length != n for length in lengths.values()):
        raise ParseError(f"columns of unequal length: {lengths}")
    arrays = []
    for field in WELL_SCHEMA:
        values = columns.get(field.name)
        if values is None:
            if field.name == "ct":
                arrays.append(pa.array(np.full(n, np.nan, dtype=np.float32)))
            elif field.name == "role":
                arrays.append(pa.array([Role.UNKNOWN.value] * n).dictionary_encode().cast(ROLE_TYPE))
            elif not field.nullable:
                raise ParseError(f"required column '{field.name}' missing")
            else:
                arrays.append(pa.nulls(n, field.type))
            continue
        if field.name == "role":
            arrays.append(_role_array(values))
        elif field.name == "ct":
            ct = pa.array(values, type=pa.float32()) if not isinstance(values, pa.Array | pa.ChunkedArray) else values.cast(pa.float32())
            arrays.append(ct.fill_null(float("nan")) if ct.null_count else ct)
        else:
            arrays.append(values.cast(field.type) if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values, type=field.type))
    meta = {k: str(v) for k, v in (metadata or {}).items() if v is not None}
    return pa.Table.from_arrays(arrays, schema=WELL_SCHEMA.with_metadata(meta))


def _role_array(values: Any) -> pa.Array:
    arr = values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values, type=pa.string())
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(pa.string())
    bad = pc.invert(pc.is_in(arr, value_set=pa.array(_ROLE_VALUES)))
    if pc.any(pc.fill_null(bad, True)).as_py():
        offenders = sorted({v for v in pc.filter(arr, pc.fill_null(bad, True)).to_pylist()}, key=str)[:5]
        raise ParseError(f"unknown well role(s) {offenders}", expected=f"one of {_ROLE_VALUES}")
    return pc.dictionary_encode(arr).cast(ROLE_TYPE) if isinstance(arr, pa.Array) else arr.dictionary_encode().cast(ROLE_TYPE)


def run_metadata(table: pa.Table) -> dict[str, str]:
    """The run metadata a parser stored in the table's schema, as a plain dict."""
    raw = table.schema.metadata or {}
    return {k.decode(): v.decode() for k, v in raw.items()}
