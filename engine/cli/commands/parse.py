"""``ketqua parse FILE… --json``: canonical rows of analyzer files, as JSON Lines."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from engine.errors import ParseError

if TYPE_CHECKING:
    import pyarrow as pa


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("parse", parents=[common], help="parse analyzer files into canonical rows")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--json", action="store_true", help="JSON Lines, one object per canonical row (default)")
    p.add_argument("--format", help="skip content sniffing and use this format (see `ketqua formats`)")
    p.set_defaults(func=run)


def _ct_as_written(table: "pa.Table") -> "pa.Table":
    """Ct as float64 values that print as the instrument wrote them (37.42, not 37.41999816894531).

    Ct is float32 in the canonical table; the shortest decimal that round-trips to that
    float32 is what the export said. numpy's float32 -> str conversion is exactly that
    shortest form, and parsing it back as float64 gives a number JSON prints the same way.
    """
    import numpy as np
    import pyarrow as pa

    index = table.schema.get_field_index("ct")
    if index < 0:
        return table
    ct = table.column(index).to_numpy(zero_copy_only=False).astype(np.float32)
    shortest = ct.astype(str).astype(np.float64)  # vectorised: NaN stays NaN (rows_as_dicts makes it null)
    return table.set_column(index, pa.field("ct", pa.float64()), pa.array(shortest, pa.float64()))


def run(args: argparse.Namespace) -> int:
    from engine.model import rows_as_dicts, run_metadata
    from parsers import parse_file

    status = 0
    out = sys.stdout
    for path in args.files:
        try:
            table = parse_file(path, args.format)
        except ParseError as exc:
            print(f"ketqua parse: {exc}", file=sys.stderr)
            status = 1
            continue
        meta = run_metadata(table)
        print(f"# {path}: {table.num_rows} rows, format {meta.get('format')}, encoding {meta.get('encoding', '?')}", file=sys.stderr)
        for row in rows_as_dicts(_ct_as_written(table)):
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return status
