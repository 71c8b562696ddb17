"""The feed's read path: result rows as raw bytes, on a read-only connection of their own.

The pull API assembles feed items by byte concatenation (:mod:`engine.api.feed`),
so it reads with ``text_factory = bytes``: no UTF-8 decode and encode per
column. That connection and its SQL belong here, with the ledger's schema, so
the API never writes SQL of its own and a second backend has one place to fill.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from engine.ledger.schema import FEED_COLUMNS

Row = tuple[Any, ...]


class FeedRows:
    """Rows of ``results`` in :data:`~engine.ledger.schema.FEED_COLUMNS` order, text columns as ``bytes``."""

    def __init__(self, ledger_path: str | Path) -> None:
        self.conn = sqlite3.connect(ledger_path, isolation_level=None, check_same_thread=False, timeout=30)
        self.conn.text_factory = bytes
        self.conn.execute("PRAGMA busy_timeout=30000")
        self.conn.execute("PRAGMA query_only=ON")  # this connection never writes the ledger

    def close(self) -> None:
        self.conn.close()

    def last_seq(self) -> int:
        """Highest committed seq (0 when empty)."""
        return int(self.conn.execute("SELECT coalesce(max(seq), 0) FROM results").fetchone()[0])

    def upper_bound(self, after: int, limit: int) -> int:
        """The highest seq a page of ``limit`` items after ``after`` may hold.

        Read before anything is streamed: every seq up to it is committed (one
        writer, seq assigned inside its transaction), so the cursor that points
        here can never skip a row that commits later.
        """
        row = self.conn.execute(
            "SELECT seq FROM results WHERE seq > ? ORDER BY seq LIMIT 1 OFFSET ?", (after, limit - 1)
        ).fetchone()
        return int(row[0]) if row is not None else max(after, self.last_seq())

    def between(self, after: int, upto: int, limit: int) -> list[Row]:
        """Rows with ``after < seq ≤ upto``, at most ``limit``, in seq order."""
        return self.conn.execute(
            f"SELECT {FEED_COLUMNS} FROM results WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?", (after, upto, limit)
        ).fetchall()

    def one(self, rid: str, version: int | None) -> Row | None:
        """The row of one result version (the latest when ``version`` is None), or None."""
        if version is None:
            return self.conn.execute(
                f"SELECT {FEED_COLUMNS} FROM results WHERE id=? ORDER BY version DESC LIMIT 1", (rid,)
            ).fetchone()
        return self.conn.execute(f"SELECT {FEED_COLUMNS} FROM results WHERE id=? AND version=?", (rid, version)).fetchone()
