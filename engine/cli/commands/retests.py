"""``ketqua retests``: specimens waiting for an individual run (Dorfman stage 2, decoder RETEST) or a new swab."""

from __future__ import annotations

import argparse
import io
import json

from engine.csvsafe import DictWriter

COLUMNS = ("specimen_id", "kind", "pool_id", "full_name", "date_of_birth", "collection_site", "collected_at", "source", "created_at", "reason")


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("retests", parents=[common], help="specimens needing an individual run or re-collection")
    p.add_argument("--csv", metavar="FILE", help="also write the list as CSV (UTF-8 with BOM, opens in Excel)")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of the table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.datadir import DataDir
    from engine.ledger.sqlite import Ledger

    with Ledger.open(DataDir.at(args.data).ledger, readonly=True) as ledger:
        rows = ledger.open_retests()
    if args.csv:
        buf = io.StringIO()
        writer = DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(rows)
        with open(args.csv, "w", encoding="utf-8-sig", newline="") as fh:
            fh.write(buf.getvalue())
    if args.json:
        for row in rows:
            print(json.dumps({k: row.get(k) for k in COLUMNS}, ensure_ascii=False))
        return 0
    rerun = sum(1 for r in rows if r["kind"] == "rerun")
    print(f"{len(rows)} specimen(s) waiting: {rerun} individual run(s) from the stored aliquot, {len(rows) - rerun} new swab(s)")
    for r in rows:
        what = "run alone" if r["kind"] == "rerun" else "re-collect"
        print(f"  {r['specimen_id']:<24} {what:<11} pool {r['pool_id'] or '-':<24} {r['full_name'] or ''}")
    if args.csv:
        print(f"written to {args.csv}")
    return 0
