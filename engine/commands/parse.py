"""``ketqua parse FILE… --json``: canonical rows of analyzer files, as JSON Lines."""

from __future__ import annotations

import argparse
import json
import sys

from engine.errors import ParseError


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("parse", parents=[common], help="parse analyzer files into canonical rows")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--json", action="store_true", help="JSON Lines, one object per canonical row (default)")
    p.add_argument("--format", help="skip content sniffing and use this format (see `ketqua formats`)")
    p.set_defaults(func=run)


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
        for row in rows_as_dicts(table):
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return status
