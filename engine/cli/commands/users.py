"""``ketqua users add|list|disable``: accounts of the lab console (passwords stored as Argon2id hashes)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

ROLE_HELP = "collector: sampling station only; technician: see, dismiss, correct; reviewer: also approve corrections and release plates; admin: also the audit trail"


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from engine.console.store import ROLES

    p = subparsers.add_parser("users", parents=[common], help="create, list and disable lab console accounts")
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True

    add = sub.add_parser("add", parents=[common], help="create an account (password from a prompt or --password-stdin)")
    add.add_argument("name", help="user name: lower-case letters, digits, '.', '_', '-' (e.g. nguyen.thu)")
    add.add_argument("--role", required=True, choices=ROLES, help=ROLE_HELP)
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of standard input")
    add.set_defaults(func=run_add)

    ls = sub.add_parser("list", parents=[common], help="names, roles and states of the accounts")
    ls.add_argument("--json", action="store_true", help="one JSON object per account")
    ls.set_defaults(func=run_list)

    off = sub.add_parser("disable", parents=[common], help="disable an account and end its sessions (the account stays in the audit trail)")
    off.add_argument("name", help="the user name shown by `ketqua users list`")
    off.set_defaults(func=run_disable)


def _ledger_path(args: argparse.Namespace) -> Path:
    from engine.datadir import DataDir

    return DataDir.at(args.data).create().ledger


def _password(args: argparse.Namespace) -> str:
    from engine.console.passwords import PasswordError

    if args.password_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    if not sys.stdin.isatty():
        raise PasswordError("no terminal to ask for the password; pipe it with --password-stdin")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise PasswordError("the two passwords differ; nothing was created")
    return first


def run_add(args: argparse.Namespace) -> int:
    from engine.console.accounts import add_user

    add_user(_ledger_path(args), args.name, args.role, _password(args))
    print(f"user {args.name.strip().lower()} ({args.role}) created; log in at /console/login", file=sys.stderr)
    return 0


def run_list(args: argparse.Namespace) -> int:
    from engine.console.accounts import list_users

    for user in list_users(_ledger_path(args)):
        if args.json:
            print(json.dumps(user, ensure_ascii=False))
        else:
            state = f"disabled {user['disabled_at']}" if user["disabled_at"] else "active"
            print(f"{user['name']:<24} {user['role']:<11} created {user['created_at']}  {state}")
    return 0


def run_disable(args: argparse.Namespace) -> int:
    from engine.console.accounts import disable_user

    user = disable_user(_ledger_path(args), args.name)
    print(f"user {user['name']} disabled at {user['disabled_at']}; its sessions are ended")
    return 0
