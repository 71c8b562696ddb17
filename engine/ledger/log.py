"""The ledger's side of the transparency log: subtree hashes and checkpoints in SQLite, leaves appended with results.

The tree itself (hashing, proofs, verification) is :mod:`signing.merkle`; this
module stores it. ``log_nodes`` holds every perfect-subtree hash keyed
``(level, idx)`` (a ``WITHOUT ROWID`` table, so a node read is one primary-key
search), ``log_checkpoints`` every signed tree head the lab gave out.

**Leaf index rule.** Each result row stores its ``log_index``, set in the same
INSERT as the row, inside the transaction that commits it: leaf *i* is the
UTF-8 bytes of the JWS of the row with ``log_index = i``, and rows are logged in
``seq`` order. The index is stored rather than derived (``seq - 1``) because a
second backend's sequences may skip values after a rollback, and a leaf index
must never skip. Rows of a ledger written before the log existed get theirs on
the first writable open (:func:`backfill`), in ``seq`` order.

The frontier is re-read from the store at the start of each append (log₂ n
nodes in one query), so no process holds a stale one after another writer's
commit or its own rollback.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from signing.errors import LogError
from signing.merkle import HASH_SIZE, MerkleLog, NodeId, leaf_hashes

#: Leaves back-filled per transaction when an older ledger is opened the first time.
BACKFILL_BATCH = 50_000


class SqliteHashStore:
    """:class:`signing.merkle.HashStore` over the ledger's ``log_nodes`` table, on the caller's connection.

    Writes happen inside the caller's transaction (the one inserting the results),
    so a rolled-back commit leaves no node behind.
    """

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def tree_size(self) -> int:
        """Leaves in the log: one past the highest level-0 index (a primary-key seek)."""
        row = self.conn.execute("SELECT max(idx) FROM log_nodes WHERE level = 0").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def read(self, ids: Sequence[NodeId]) -> list[bytes]:
        """Hashes of ``ids`` in one query; ``LogError`` (``missing-node``) for one the table lacks."""
        if not ids:
            return []
        # An OR of (level, idx) pairs is a MULTI-INDEX OR of primary-key searches; the row-value
        # form ``(level, idx) IN (VALUES …)`` scans the whole table in SQLite 3.40.
        found: dict[NodeId, bytes] = {}
        for start in range(0, len(ids), 400):  # 800 parameters per query, under SQLite's oldest limit
            part = ids[start : start + 400]
            where = " OR ".join(["(level=? AND idx=?)"] * len(part))
            args = [x for node in part for x in node]
            for level, idx, value in self.conn.execute(f"SELECT level, idx, hash FROM log_nodes WHERE {where}", args):
                found[(int(level), int(idx))] = bytes(value)
        out = []
        for node in ids:
            value = found.get(node)
            if value is None or len(value) != HASH_SIZE:
                raise LogError(f"transparency log: subtree hash {node} is not stored in the ledger", reason="missing-node")
            out.append(value)
        return out

    def write(self, level: int, start: int, hashes: bytes) -> None:
        """Insert nodes ``(level, start…)``; a node already present is an error (the log is append-only)."""
        try:
            self.conn.executemany(
                "INSERT INTO log_nodes(level, idx, hash) VALUES (?,?,?)",
                [(level, start + j, hashes[HASH_SIZE * j : HASH_SIZE * (j + 1)]) for j in range(len(hashes) // HASH_SIZE)],
            )
        except sqlite3.IntegrityError as exc:
            raise LogError(f"transparency log: node ({level}, {start}) is already stored: {exc}", reason="not-append") from exc


def open_log(conn: sqlite3.Connection) -> MerkleLog:
    """The log over ``conn``'s ledger, frontier read now (call inside the write transaction that appends)."""
    return MerkleLog(SqliteHashStore(conn))


def append_leaves(conn: sqlite3.Connection, jws: Sequence[str]) -> int:
    """Append the leaves of result versions (their JWS compact text), in order; the first one's leaf index.

    Must run inside the transaction that inserts those results. Any row still
    without a leaf (an unfinished back-fill) is logged first, so the order stays ``seq`` order.
    """
    backfill(conn, inside=True)
    return open_log(conn).append_hashes(leaf_hashes(j.encode("utf-8") for j in jws))


def backfill(conn: sqlite3.Connection, *, inside: bool = False, batch: int = BACKFILL_BATCH) -> int:
    """Log result rows that have no leaf yet, in ``seq`` order; the number logged.

    ``inside``: the caller holds a write transaction; otherwise each batch is one
    transaction of its own, so a crash leaves a consistent, shorter log that the next open extends.
    """
    total = 0
    while True:
        if not conn.execute("SELECT 1 FROM results WHERE log_index IS NULL LIMIT 1").fetchone():
            return total
        if not inside:
            conn.execute("BEGIN IMMEDIATE")
        try:
            rows = conn.execute(
                "SELECT seq, jws FROM results WHERE log_index IS NULL ORDER BY seq LIMIT ?", (batch,)
            ).fetchall()
            log = open_log(conn)
            first = log.append_hashes(leaf_hashes(str(r[1]).encode("utf-8") for r in rows))
            conn.executemany("UPDATE results SET log_index=? WHERE seq=?", [(first + i, r[0]) for i, r in enumerate(rows)])
        except BaseException:
            if not inside:
                conn.execute("ROLLBACK")
            raise
        if not inside:
            conn.execute("COMMIT")
        total += len(rows)


def latest_checkpoint(conn: sqlite3.Connection) -> dict[str, object] | None:
    """The newest stored checkpoint (``size``, ``root``, ``note``, ``created_at``), or None."""
    row = conn.execute("SELECT size, root, note, created_at FROM log_checkpoints ORDER BY size DESC LIMIT 1").fetchone()
    return None if row is None else {"size": int(row[0]), "root": bytes(row[1]), "note": str(row[2]), "created_at": str(row[3])}


def store_checkpoint(conn: sqlite3.Connection, size: int, root: bytes, note: str, created_at: str) -> str:
    """Keep a signed checkpoint; when one of that size is stored already, that one stays and is returned.

    One note per size: a second signature over the same head would be a
    different note of equal meaning, and clients compare notes byte for byte.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "INSERT OR IGNORE INTO log_checkpoints(size, root, note, created_at) VALUES (?,?,?,?)", (size, root, note, created_at)
        )
        kept = conn.execute("SELECT note FROM log_checkpoints WHERE size=?", (size,)).fetchone()
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return str(kept[0])


def checkpoint_timestamp(conn: sqlite3.Connection, size: int | None = None) -> tuple[int, str, bytes | None] | None:
    """(size, note, DER time-stamp token or None) of the checkpoint of ``size`` (the newest when None)."""
    if size is None:
        row = conn.execute("SELECT size, note, timestamp FROM log_checkpoints ORDER BY size DESC LIMIT 1").fetchone()
    else:
        row = conn.execute("SELECT size, note, timestamp FROM log_checkpoints WHERE size=?", (size,)).fetchone()
    return None if row is None else (int(row[0]), str(row[1]), None if row[2] is None else bytes(row[2]))


def store_timestamp(conn: sqlite3.Connection, size: int, token: bytes) -> None:
    """Keep the time-stamp token of the checkpoint of ``size``; the first one kept stays."""
    conn.execute("UPDATE log_checkpoints SET timestamp=? WHERE size=? AND timestamp IS NULL", (token, size))
