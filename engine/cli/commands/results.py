"""``ketqua results list|show``: signed results from the ledger, every version visible."""

from __future__ import annotations

import argparse
import json
from typing import Any

FIELDS = ("seq", "id", "version", "specimen_id", "status", "payload", "jws", "hc1", "certificate", "supersedes", "superseded_by", "reason", "created_at")


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("results", parents=[common], help="list or show signed results")
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    ls = sub.add_parser("list", parents=[common], help="every signed result version, oldest first")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.add_argument("--current", action="store_true", help="only versions not superseded")
    ls.set_defaults(func=run_list)
    show = sub.add_parser("show", parents=[common], help="one result (latest version unless --version)")
    show.add_argument("id")
    show.add_argument("--version", type=int)
    show.add_argument("--json", action="store_true", help="as a JSON object")
    show.set_defaults(func=run_show)


def _object(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in FIELDS}


def _open(args: argparse.Namespace) -> Any:
    from engine.datadir import DataDir
    from engine.ledger.sqlite import Ledger

    return Ledger.open(DataDir.at(args.data).ledger, readonly=True)


def run_list(args: argparse.Namespace) -> int:
    with _open(args) as ledger:
        rows = ledger.results(current_only=args.current)
    for row in rows:
        if args.json:
            print(json.dumps(_object(row), ensure_ascii=False))
        else:
            flag = f" superseded by v{row['superseded_by']}" if row["superseded_by"] else ""
            cert = "certificate" if row["certificate"] else "no certificate yet"
            print(f"{row['seq']:>8}  {row['id']} v{row['version']}  {row['specimen_id']:<22} {row['status']:<12} {cert}{flag}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    with _open(args) as ledger:
        row = ledger.get_result(args.id, args.version)
        versions = ledger.result_versions(args.id)
    if row is None:
        from engine.errors import LedgerError

        raise LedgerError(f"no result {args.id}" + (f" version {args.version}" if args.version else "") + " in the ledger")
    obj = _object(row)
    obj["versions"] = [{"version": v["version"], "status": v["status"], "superseded_by": v["superseded_by"], "reason": v["reason"]} for v in versions]
    if args.json:
        print(json.dumps(obj, ensure_ascii=False, indent=2))
        return 0
    payload = json.loads(row["payload"])
    print(f"{row['id']} version {row['version']} ({len(versions)} version(s))  {row['status']}")
    print(f"  person      {payload['person']['full_name']}  born {payload['person']['date_of_birth']}  ID {payload['person']['national_id']}")
    print(f"  specimen    {row['specimen_id']} collected {payload['specimen']['collected_at']}")
    print(f"  test        {payload['test']['kit']} ({payload['test']['design']}, {payload['test']['decoder']})")
    print(f"  issued      {payload['issued_at']}")
    if row["supersedes"]:
        print(f"  supersedes  version {row['supersedes']['version']}: {row['reason'] or ''}")
    if row["superseded_by"]:
        print(f"  superseded by version {row['superseded_by']}")
    print(f"  certificate {row['certificate'] or '(not rendered yet)'}")
    return 0
