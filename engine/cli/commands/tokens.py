"""``ketqua tokens add|list|revoke``: bearer tokens for the pull API (stored hashed in the ledger)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from engine.api.tokens import SCOPES

    p = subparsers.add_parser("tokens", parents=[common], help="create, list and revoke pull-API tokens")
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True

    add = sub.add_parser("add", parents=[common], help="create a token and print it once")
    add.add_argument("--name", required=True, help="who uses the token, e.g. national-platform")
    add.add_argument(
        "--scope",
        action="append",
        required=True,
        choices=sorted(SCOPES),
        help="repeat for several; " + "; ".join(f"{k}: {v}" for k, v in SCOPES.items()),
    )
    add.add_argument("--json", action="store_true", help="print the token and its row as one JSON object")
    add.set_defaults(func=run_add)

    ls = sub.add_parser("list", parents=[common], help="names, scopes and ids of the tokens (never the tokens)")
    ls.add_argument("--json", action="store_true", help="one JSON object per token")
    ls.set_defaults(func=run_list)

    rv = sub.add_parser("revoke", parents=[common], help="revoke a token by id (takes effect within a second)")
    rv.add_argument("id", help="the token id shown by `ketqua tokens list`")
    rv.set_defaults(func=run_revoke)


def _ledger_path(args: argparse.Namespace) -> Path:
    """The ledger file of ``--data`` (the folder is created, private: tokens may come before the first run)."""
    from engine.datadir import DataDir

    return DataDir.at(args.data).create().ledger


def run_add(args: argparse.Namespace) -> int:
    from engine.api.tokens import add_token

    token, info = add_token(_ledger_path(args), args.name, args.scope)
    if args.json:
        print(json.dumps({"token": token, **info.as_dict()}))
    else:
        print(token)
        print(
            f"token {info.id} for {info.name!r} with scope {' '.join(info.scopes)}: "
            "store it now, it is not shown again (only its hash is kept)",
            file=sys.stderr,
        )
    return 0


def run_list(args: argparse.Namespace) -> int:
    from engine.api.tokens import list_tokens

    for info in list_tokens(_ledger_path(args)):
        if args.json:
            print(json.dumps(info.as_dict()))
        else:
            state = f"revoked {info.revoked_at}" if info.revoked_at else "active"
            print(f"{info.id}  {info.name:<24} {' '.join(info.scopes):<28} created {info.created_at}  {state}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    from engine.api.tokens import revoke_token

    info = revoke_token(_ledger_path(args), args.id)
    print(f"token {info.id} ({info.name}) revoked at {info.revoked_at}")
    return 0
