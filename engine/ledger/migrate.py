"""Forward migrations, applied one step per transaction so a failed step leaves the previous version whole.

The ledger's own tables count their steps in ``PRAGMA user_version``; a part
that adds its tables to the same file (the console) counts its own in a
``meta`` row, so neither can be mistaken for the other.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from engine.errors import LedgerError


def apply_migrations(conn: sqlite3.Connection, path: Path, steps: Sequence[str], current: int, *,
                     record: Callable[[int], str], what: str) -> None:
    """Run ``steps[current:]``; ``record(n)`` is the SQL that notes version ``n`` inside step n's transaction."""
    if current > len(steps):
        raise LedgerError(f"the ledger {path} has {what} version {current}, newer than this ketqua ({len(steps)}); upgrade ketqua")
    for version in range(current, len(steps)):
        # executescript runs the whole step inside our own BEGIN…COMMIT: never half-migrated.
        try:
            conn.executescript(f"BEGIN IMMEDIATE;\n{steps[version]}\n{record(version + 1)}\nCOMMIT;")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise LedgerError(f"migrating the ledger {path} ({what}) to version {version + 1} failed: {exc}") from exc
