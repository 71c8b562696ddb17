"""``ketqua backup DEST`` and ``ketqua restore SRC --data DIR``: an online copy of a data folder, and its way back.

``backup`` runs beside ``ketqua run`` (it takes no lock; the ledger is copied
with SQLite's online backup API as of one commit), then copies archive/,
certificates/, quarantine/ and ketqua.toml, and keys/ only with ``--keys``.
``restore`` checks every file against the backup's manifest and writes into a
new or empty data folder only.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "backup", parents=[common], help="copy the data folder (ledger, archive, certificates) while `ketqua run` works",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dest", metavar="DEST", help="a new or empty folder (created owner-only, 0700)")
    p.add_argument("--keys", action="store_true",
                   help="also copy keys/ (private keys: keep the backup where only the lab's administrators can read it)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    # No takes_lock: a backup runs beside `ketqua run`, which holds the lock.
    p.set_defaults(func=run_backup)
    r = subparsers.add_parser(
        "restore", parents=[common], help="restore a backup into a new or empty data folder (--data DIR)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("src", metavar="SRC", help="a folder written by `ketqua backup`")
    r.add_argument("--json", action="store_true", help="print the summary as JSON")
    r.set_defaults(func=run_restore)


def run_backup(args: argparse.Namespace) -> int:
    from engine.datadir import DataDir
    from engine.ledger.backup import backup

    report = backup(DataDir.at(args.data), args.dest, keys=args.keys)
    return _print(args, "backup", report)


def run_restore(args: argparse.Namespace) -> int:
    from engine.datadir import DataDir
    from engine.ledger.backup import restore

    report = restore(args.src, DataDir.at(args.data))
    return _print(args, "restore", report)


def _print(args: argparse.Namespace, what: str, report: object) -> int:
    import json
    from dataclasses import asdict

    fields = {k: str(v) if k == "target" else v for k, v in asdict(report).items()}  # type: ignore[call-overload]
    if args.json:
        print(json.dumps(fields, ensure_ascii=False))
        return 0
    keys = "keys/ included" if fields["keys"] else "keys/ NOT included (--keys copies them)"
    print(f"ketqua {what}: {fields['files']} files, {fields['bytes']} bytes into {fields['target']}; "
          f"ledger at feed seq {fields['last_seq']} ({fields['results']} result versions); {keys}")
    return 0
