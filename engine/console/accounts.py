"""Console accounts for the command line: open the ledger, hash the password, write the row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from argon2 import PasswordHasher

from engine.console.passwords import DEFAULT_HASHER, hash_password
from engine.console.store import ConsoleStore
from engine.ledger.sqlite import Ledger


def add_user(ledger_path: str | Path, name: str, role: str, password: str, hasher: PasswordHasher = DEFAULT_HASHER) -> None:
    """Create a console account (PasswordError for a weak password, LedgerError for a taken or bad name)."""
    digest = hash_password(password, hasher)
    with Ledger.open(ledger_path) as ledger:
        ConsoleStore(ledger).add_user(name.strip().lower(), role, digest)


def list_users(ledger_path: str | Path) -> list[dict[str, Any]]:
    """Every account: name, role, created_at, disabled_at (never a hash)."""
    with Ledger.open(ledger_path) as ledger:
        return ConsoleStore(ledger).users()


def disable_user(ledger_path: str | Path, name: str) -> dict[str, Any]:
    """Disable an account and end its sessions; returns its row."""
    with Ledger.open(ledger_path) as ledger:
        return ConsoleStore(ledger).disable_user(name.strip().lower())
