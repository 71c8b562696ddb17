"""The console's tables in the ledger: forward migrations with their own counter, an append-only audit trail."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.console.store import CONSOLE_MIGRATIONS, ConsoleStore
from engine.errors import LedgerError
from engine.ledger import Ledger
from engine.ledger.schema import MIGRATIONS


def test_console_schema_migrates_forward_beside_the_ledgers(tmp_path: Path) -> None:
    """A fresh ledger gets every console step, counted in meta.console_schema; the engine's user_version is untouched."""
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        store = ConsoleStore(ledger)
        assert store.schema_version == len(CONSOLE_MIGRATIONS) and ledger.schema_version == len(MIGRATIONS)
        ledger.conn.execute("UPDATE meta SET value='1' WHERE key='console_schema'")
        ledger.conn.execute("DROP TABLE console_search")
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:  # an older console schema: the missing step is applied
        assert ConsoleStore(ledger).schema_version == len(CONSOLE_MIGRATIONS)
        assert ledger.conn.execute("SELECT count(*) FROM console_search").fetchone()[0] == 0


def test_a_newer_console_schema_is_refused(tmp_path: Path) -> None:
    """A ledger written by a newer ketqua's console is not opened by an older one."""
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        ConsoleStore(ledger)
        ledger.conn.execute("UPDATE meta SET value='99' WHERE key='console_schema'")
        with pytest.raises(LedgerError, match="newer than this ketqua"):
            ConsoleStore(ledger)


def test_audit_trail_is_append_only(tmp_path: Path) -> None:
    """The audit trail refuses UPDATE and DELETE, like the ledger's event log."""
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        store = ConsoleStore(ledger)
        store.audit("tech", "login", "tech", "127.0.0.1")
        for sql in ("UPDATE console_audit SET user='x'", "DELETE FROM console_audit"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                ledger.conn.execute(sql)
        assert [r["action"] for r in store.audit_trail()] == ["login"]
