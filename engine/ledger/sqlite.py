"""The ledger: the single source of truth for what was received, decided, signed and published.

SQLite in WAL mode under the data folder. Durability choice: ``synchronous=FULL``.
A result that the pull API has handed to the national platform must never
vanish after a power cut, and we commit once per *plate* (not per row), so the
extra fsync per transaction costs milliseconds per plate, nothing per specimen.

Concurrency: one process writes (the asyncio engine, one connection); readers
(the API, the CLI) open their own connections and see committed snapshots only.
Because results get their ``seq`` from ``AUTOINCREMENT`` inside the single
writer's transaction, a reader paging by ``seq`` never sees a gap that is later
filled in, which is what the cursor feed relies on.

The schema and its migrations are in :mod:`engine.ledger.schema`; the records
the pipeline commits in :mod:`engine.ledger.records`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import engine.ledger.log as tlog
from engine.errors import LedgerError
from engine.ledger.migrate import apply_migrations
from engine.ledger.records import ConflictError, PlateCommit, SignedResult, utc_now
from engine.ledger.schema import (
    FILE_KINDS,
    FILE_STATES,
    MIGRATIONS,
    RESULT_COLUMNS,
    SPECIMEN_FIELDS,
)
from signing.errors import LogError
from signing.merkle import consistency_proof, inclusion_proof, root_hash


class Ledger:
    """A connection to the ledger; the writer process holds one, each reader its own."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: str | Path, *, readonly: bool = False) -> "Ledger":
        """Open (creating and migrating forward unless ``readonly``) the ledger at ``path``."""
        path = Path(path)
        try:
            if readonly:
                if not path.exists():
                    raise LedgerError(f"no ledger at {path}: run `ketqua demo` or `ketqua run` first")
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False, timeout=30)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            conn.row_factory = sqlite3.Row
            if not readonly:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the ledger {path}: {exc}") from exc
        ledger = cls(conn, path)
        version = ledger.schema_version
        if readonly and 0 < version < len(MIGRATIONS):  # 0: being created; the caller says so
            conn.close()
            raise LedgerError(
                f"the ledger {path} has schema version {version}, older than this ketqua ({len(MIGRATIONS)}): "
                "start `ketqua run` (or `ketqua ingest`) once to migrate it"
            )
        if not readonly:
            ledger._migrate()
            try:
                tlog.backfill(conn)  # results committed before the log existed (schema 1) become its first leaves
            except (sqlite3.Error, LogError) as exc:
                raise LedgerError(f"logging the existing results of {path} in the transparency log failed: {exc}") from exc
        return ledger

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        current = self.conn.execute("PRAGMA user_version").fetchone()[0]
        apply_migrations(self.conn, self.path, MIGRATIONS, current, record=lambda n: f"PRAGMA user_version={n};", what="schema")

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: take the write lock up front, no upgrade deadlocks)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    # ------------------------------------------------------------------ API tokens (hashes only)
    def insert_token(self, ident: str, name: str, token_hash: str, scopes: Sequence[str], created_at: str) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT INTO api_tokens(id, name, token_hash, scopes, created_at, revoked_at) VALUES (?,?,?,?,?,NULL)",
                (ident, name, token_hash, " ".join(scopes), created_at),
            )

    def token_rows(self, ident: str | None = None) -> list[dict[str, Any]]:
        """Token rows without their hashes (one, or all oldest first)."""
        sql = "SELECT id, name, scopes, created_at, revoked_at FROM api_tokens"
        rows = (self.conn.execute(sql + " WHERE id=?", (ident,)) if ident is not None
                else self.conn.execute(sql + " ORDER BY created_at, id")).fetchall()
        return [dict(r) for r in rows]

    def revoke_token(self, ident: str, at: str) -> None:
        """Mark a token revoked; a second revocation keeps the first time (the row stays, for the audit trail)."""
        with self.transaction():
            self.conn.execute("UPDATE api_tokens SET revoked_at=? WHERE id=? AND revoked_at IS NULL", (at, ident))

    def active_token_hashes(self) -> list[dict[str, Any]]:
        """The unrevoked tokens with their hashes: what the API's token cache authenticates against."""
        rows = self.conn.execute("SELECT id, name, token_hash, scopes FROM api_tokens WHERE revoked_at IS NULL").fetchall()
        return [dict(r) for r in rows]

    # ------------------------------------------------------------------ events
    def _event(self, kind: str, file: str | None, **detail: Any) -> None:
        self.conn.execute(
            "INSERT INTO events(at, kind, file, detail) VALUES (?,?,?,?)",
            (utc_now(), kind, file, json.dumps(detail, ensure_ascii=False, sort_keys=True)),
        )

    def event(self, kind: str, file: str | None = None, **detail: Any) -> None:
        """Append one event in its own transaction."""
        with self.transaction():
            self._event(kind, file, **detail)

    def events(self, kind: str | None = None, file: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT seq, at, kind, file, detail FROM events WHERE 1=1"
        args: list[Any] = []
        if kind:
            sql += " AND kind=?"
            args.append(kind)
        if file:
            sql += " AND file=?"
            args.append(file)
        rows = self.conn.execute(sql + " ORDER BY seq", args).fetchall()
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]

    # ------------------------------------------------------------------ files
    def receive_file(self, sha256: str, name: str, size: int, kind: str) -> bool:
        """Record a newly archived file; False when these exact bytes were received before."""
        if kind not in FILE_KINDS:
            raise LedgerError(f"unknown file kind {kind!r}")
        now = utc_now()
        with self.transaction():
            cur = self.conn.execute(
                "INSERT OR IGNORE INTO files(sha256, name, size, received_at, state, kind, updated_at) VALUES (?,?,?,?,?,?,?)",
                (sha256, name, size, now, "received", kind, now),
            )
            fresh = cur.rowcount == 1
            self._event("received" if fresh else "duplicate", sha256, name=name, size=size, file_kind=kind)
        return fresh

    def file(self, sha256: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM files WHERE sha256=?", (sha256,)).fetchone()
        return dict(row) if row else None

    def files(self, states: Sequence[str] | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM files WHERE 1=1"
        args: list[Any] = []
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args += list(states)
        if kind:
            sql += " AND kind=?"
            args.append(kind)
        return [dict(r) for r in self.conn.execute(sql + " ORDER BY received_at, sha256", args)]

    def set_file_state(self, sha256: str, state: str, *, error: str | None = None, event: str | None = None, **detail: Any) -> None:
        """Move a file to ``state`` (and log why) in one transaction."""
        if state not in FILE_STATES:
            raise LedgerError(f"unknown file state {state!r}")
        with self.transaction():
            self.conn.execute(
                "UPDATE files SET state=?, error=?, updated_at=? WHERE sha256=?", (state, error, utc_now(), sha256)
            )
            self._event(event or state, sha256, **({"error": error} if error else {}), **detail)

    def note_failure(self, sha256: str, error: str, *, max_attempts: int, backoff_s: float) -> tuple[str, float | None]:
        """Count one transient failure: schedule a retry with exponential backoff, or park the file.

        Returns the new state (``received`` to retry, ``parked`` for an operator) and the retry time.
        """
        with self.transaction():
            row = self.conn.execute("SELECT attempts FROM files WHERE sha256=?", (sha256,)).fetchone()
            attempts = (row["attempts"] if row else 0) + 1
            if attempts >= max_attempts:
                state, retry_at = "parked", None
            else:
                state, retry_at = "received", time.time() + backoff_s * (2 ** (attempts - 1))
            self.conn.execute(
                "UPDATE files SET attempts=?, state=?, error=?, retry_at=?, updated_at=? WHERE sha256=?",
                (attempts, state, error, retry_at, utc_now(), sha256),
            )
            self._event("parked" if state == "parked" else "retry", sha256, error=error, attempts=attempts)
        return state, retry_at

    # ------------------------------------------------------------------ manifests
    def unpark(self, sha256: str) -> None:
        """An operator's "try again": a parked file goes back to received with its attempts reset."""
        with self.transaction():
            self.conn.execute("UPDATE files SET attempts=0, retry_at=NULL WHERE sha256=?", (sha256,))
        self.set_file_state(sha256, "received", event="unparked")

    def manifest_generation(self) -> int:
        """Bumped by every manifest commit; plates signed against an older one are recomputed."""
        return self._generation()

    def _generation(self) -> int:
        return int(self.conn.execute("SELECT value FROM meta WHERE key='manifest_generation'").fetchone()[0])

    def corrections_for(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Specimens in ``rows`` that already have a signed result and whose person details differ.

        Each item: ``specimen_id``, ``changed`` (field names), ``record`` (the new row).
        """
        ids = sorted({r["specimen_id"] for r in rows})
        before = {row["specimen_id"]: dict(row) for row in self._select_in("SELECT * FROM specimens WHERE specimen_id IN ({})", ids)}
        signed = {row[0] for row in self._select_in("SELECT DISTINCT specimen_id FROM results WHERE specimen_id IN ({})", ids)}
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        for r in rows:
            sid = r["specimen_id"]
            if sid in seen or sid not in signed or sid not in before:
                continue
            seen.add(sid)
            old = before[sid]
            changed = [f for f in SPECIMEN_FIELDS if (old.get(f) or None) != (r.get(f) or None)]
            if changed:
                out.append({"specimen_id": sid, "changed": changed, "record": dict(r)})
        return out

    def commit_manifest(self, sha256: str, rows: Sequence[Mapping[str, Any]], corrections: Sequence[SignedResult] = ()) -> list[int]:
        """Store a manifest's rows, update the specimens' person records and commit the
        correction versions it caused, all in ONE transaction (a crash cannot separate them).

        Returns the seqs of the correction results.
        """
        now = utc_now()
        try:
            with self.transaction():
                for r in corrections:
                    latest = self.conn.execute("SELECT max(version) FROM results WHERE id=?", (r.id,)).fetchone()[0]
                    if latest != r.supersedes:
                        raise ConflictError(f"result {r.id} moved to version {latest} while its correction was signed")
                self.conn.executemany(
                    "INSERT OR REPLACE INTO manifest_rows(manifest, line, pool_id, specimen_id, full_name, date_of_birth, sex,"
                    " national_id, phone, address, collected_at, collection_site, aliquot) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [
                        (sha256, r["line"], r["pool_id"], r["specimen_id"], *(r.get(f) for f in SPECIMEN_FIELDS), int(bool(r.get("aliquot"))))
                        for r in rows
                    ],
                )
                self.conn.executemany(
                    "INSERT OR REPLACE INTO pool_members(pool_id, specimen_id, manifest) VALUES (?,?,?)",
                    [(r["pool_id"], r["specimen_id"], sha256) for r in rows],
                )
                upserts = {}
                for r in rows:  # one row per pool in combinatorial designs: same person, first row kept
                    upserts.setdefault(
                        r["specimen_id"], (r["specimen_id"], *(r.get(f) for f in SPECIMEN_FIELDS), int(bool(r.get("aliquot"))), sha256, now)
                    )
                self.conn.executemany(
                    "INSERT OR REPLACE INTO specimens(specimen_id, full_name, date_of_birth, sex, national_id, phone, address,"
                    " collected_at, collection_site, aliquot, manifest, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    list(upserts.values()),
                )
                seqs = self._insert_results(corrections, now)
                for r in corrections:
                    self._event("correction", sha256, id=r.id, version=r.version, reason=r.reason)
                self.conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='manifest_generation'")
                self.conn.execute("UPDATE files SET state='done', error=NULL, updated_at=? WHERE sha256=?", (now, sha256))
                self._event("manifest", sha256, rows=len(rows), specimens=len(upserts), corrections=len(corrections))
        except sqlite3.IntegrityError as exc:
            raise ConflictError(f"manifest {sha256[:12]}: {exc}") from exc
        except LogError as exc:
            raise LedgerError(f"manifest {sha256[:12]}: its corrections cannot be logged: {exc}") from exc
        return seqs

    def _select_in(self, sql: str, values: Sequence[Any], chunk: int = 900) -> Iterator[sqlite3.Row]:
        """Run ``sql`` with an ``IN ({})`` list, chunked under SQLite's parameter limit."""
        for start in range(0, len(values), chunk):
            part = values[start : start + chunk]
            yield from self.conn.execute(sql.format(",".join("?" * len(part))), part)

    def pool_rows(self, pool_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Manifest rows (person from the current specimen record) for the given pools."""
        sql = (
            "SELECT m.pool_id, s.* FROM pool_members m JOIN specimens s USING (specimen_id)"
            " WHERE m.pool_id IN ({}) ORDER BY m.pool_id, m.specimen_id"
        )
        return [dict(r) for r in self._select_in(sql, list(pool_ids))]

    def specimen_rows(self, specimen_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Current person records of the given specimens."""
        return [dict(r) for r in self._select_in("SELECT * FROM specimens WHERE specimen_id IN ({})", list(specimen_ids))]

    # ------------------------------------------------------------------ plates
    def commit_plate(self, plate: PlateCommit, *, state: str = "done") -> list[int]:
        """Write one plate's run, decisions and signed results in ONE transaction; returns the new seqs.

        Optimistic check: each result must supersede exactly the current latest
        version of its id (or be version 1 of a new id). If another plate got
        there first, :class:`ConflictError` is raised and nothing is written;
        the caller recomputes the plate against the new state.
        """
        now = utc_now()
        seqs: list[int] = []
        try:
            with self.transaction():
                row = self.conn.execute("SELECT state FROM files WHERE sha256=?", (plate.run_id,)).fetchone()
                if row is None:
                    raise LedgerError(f"plate {plate.source}: its file {plate.run_id[:12]}… was never received")
                if row["state"] == "done":
                    return []  # already committed (a replay): nothing twice
                if plate.manifest_generation is not None and plate.manifest_generation != self._generation():
                    raise ConflictError(f"plate {plate.source}: a manifest arrived while it was being signed")
                latest = {
                    r["id"]: r["v"]
                    for r in self._select_in(
                        "SELECT id, max(version) AS v FROM results WHERE id IN ({}) GROUP BY id", sorted({r.id for r in plate.results})
                    )
                }
                # A first version needs a specimen with no result at all (another run may have given it
                # one under its own id meanwhile); a later version needs its id still at the version it supersedes.
                already = {
                    r["specimen_id"]
                    for r in self._select_in(
                        "SELECT DISTINCT specimen_id FROM results WHERE specimen_id IN ({})",
                        sorted({r.specimen_id for r in plate.results if r.supersedes is None}),
                    )
                }
                for r in plate.results:
                    if latest.get(r.id) != r.supersedes or (r.supersedes is None and r.specimen_id in already):
                        raise ConflictError(
                            f"specimen {r.specimen_id} ({r.id}) got another result while plate {plate.source} was signed; recompute"
                        )
                self.conn.execute(
                    "INSERT OR REPLACE INTO runs(run_id, source, format, instrument, assay, metadata, wells, committed_at) VALUES (?,?,?,?,?,?,?,?)",
                    (
                        plate.run_id,
                        plate.source,
                        plate.metadata.get("format"),
                        plate.metadata.get("instrument"),
                        plate.metadata.get("assay"),
                        json.dumps(plate.metadata, ensure_ascii=False, sort_keys=True),
                        plate.wells,
                        now,
                    ),
                )
                self.conn.executemany(
                    "INSERT OR REPLACE INTO pool_decisions(run_id, pool_id, well, outcome, evidence) VALUES (?,?,?,?,?)",
                    [
                        (plate.run_id, d["pool_id"], d.get("well"), d["outcome"], json.dumps(d.get("evidence", {}), ensure_ascii=False))
                        for d in plate.pool_decisions
                    ],
                )
                self.conn.executemany(
                    "INSERT OR REPLACE INTO specimen_decisions(run_id, specimen_id, outcome, retest, evidence) VALUES (?,?,?,?,?)",
                    [
                        (plate.run_id, d["specimen_id"], d["outcome"], d.get("retest") or "", json.dumps(d.get("evidence", {}), ensure_ascii=False))
                        for d in plate.specimen_decisions
                    ],
                )
                seqs = self._insert_results(plate.results, now)
                signed = {r.specimen_id: seq for r, seq in zip(plate.results, seqs)}
                # A signed result completes every open retest of that specimen from earlier runs.
                self.conn.executemany(
                    "UPDATE retests SET state='done', closed_by=? WHERE specimen_id=? AND state='open'",
                    [(seq, sid) for sid, seq in signed.items()],
                )
                self.conn.executemany(
                    "INSERT OR IGNORE INTO retests(specimen_id, run_id, kind, state, pool_id, reason, created_at) VALUES (?,?,?,?,?,?,?)",
                    [
                        (d["specimen_id"], plate.run_id, d["retest"], "open", d.get("pool_id"), d.get("reason"), now)
                        for d in plate.specimen_decisions
                        if d.get("retest")  # INCONCLUSIVE is signed AND needs a new swab
                    ],
                )
                self.conn.execute(
                    "UPDATE files SET state=?, error=NULL, updated_at=? WHERE sha256=?", (state, now, plate.run_id)
                )
                self._event(
                    "plate",
                    plate.run_id,
                    source=plate.source,
                    results=len(plate.results),
                    specimens=len(plate.specimen_decisions),
                    retests=sum(1 for d in plate.specimen_decisions if d.get("retest")),
                )
        except sqlite3.IntegrityError as exc:
            raise ConflictError(f"plate {plate.source}: {exc}") from exc
        except (sqlite3.Error, LogError) as exc:
            raise LedgerError(f"committing plate {plate.source} failed: {exc}") from exc
        return seqs

    def _insert_results(self, results: Sequence[SignedResult], now: str) -> list[int]:
        """Insert result rows (inside the caller's transaction) and mark the versions they supersede."""
        if not results:
            return []
        # The leaves go in first, in this same transaction: a rollback takes both away, and each row
        # is inserted with its leaf index, so the log never lags or skips (engine.ledger.log).
        first = tlog.append_leaves(self.conn, [r.jws for r in results])
        self.conn.executemany(
            "INSERT INTO results(id, version, specimen_id, status, run_id, payload, jws, hc1, supersedes, reason, created_at,"
            " log_index) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (r.id, r.version, r.specimen_id, r.status, r.run_id, r.payload, r.jws, r.hc1, r.supersedes, r.reason, now, first + i)
                for i, r in enumerate(results)
            ],
        )
        # One statement inside this connection's write transaction (the only writer): AUTOINCREMENT
        # hands out consecutive seqs, so they are the last n up to last_insert_rowid().
        last = int(self.conn.execute("SELECT last_insert_rowid()").fetchone()[0])
        self.conn.executemany(
            "UPDATE results SET superseded_by=? WHERE id=? AND version=?",
            [(r.version, r.id, r.supersedes) for r in results if r.supersedes is not None],
        )
        return list(range(last - len(results) + 1, last + 1))

    def set_certificates(self, paths: Iterable[tuple[str, int, str]]) -> None:
        """Fill certificate paths (id, version, path) once the PDFs exist; one transaction per batch."""
        with self.transaction():
            self.conn.executemany("UPDATE results SET certificate=? WHERE id=? AND version=?", [(p, i, v) for i, v, p in paths])

    def pending_certificates(self, limit: int = 10_000) -> list[dict[str, Any]]:
        """Signed results whose certificate is not rendered yet (survives restarts)."""
        rows = self.conn.execute(
            f"SELECT {RESULT_COLUMNS} FROM results WHERE certificate IS NULL ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [_result_dict(r) for r in rows]

    # ------------------------------------------------------------------ transparency log (reads)
    def log_size(self) -> int:
        """Leaves in the transparency log (every signed result version so far)."""
        return tlog.SqliteHashStore(self.conn).tree_size()

    def log_root(self, size: int) -> bytes:
        """Root hash of the log's first ``size`` leaves (``LogError`` beyond the log)."""
        return root_hash(tlog.SqliteHashStore(self.conn), size)

    def log_inclusion(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 audit path of leaf ``index`` in the tree of ``size`` leaves, from stored subtree hashes."""
        return inclusion_proof(tlog.SqliteHashStore(self.conn), index, size)

    def log_consistency(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 consistency proof from ``old_size`` to ``new_size`` leaves."""
        return consistency_proof(tlog.SqliteHashStore(self.conn), old_size, new_size)

    def latest_checkpoint(self) -> dict[str, Any] | None:
        """The newest stored signed checkpoint (``size``, ``root``, ``note``, ``created_at``), or None."""
        return tlog.latest_checkpoint(self.conn)

    def store_checkpoint(self, size: int, root: bytes, note: str) -> str:
        """Keep a signed checkpoint; the note kept for that size (an earlier one wins) is returned."""
        return tlog.store_checkpoint(self.conn, size, root, note, utc_now())

    def checkpoint_timestamp(self, size: int | None = None) -> tuple[int, str, bytes | None] | None:
        """(size, note, RFC 3161 token or None) of a stored checkpoint (the newest when ``size`` is None)."""
        return tlog.checkpoint_timestamp(self.conn, size)

    def store_timestamp(self, size: int, token: bytes) -> None:
        """Keep the RFC 3161 token over the checkpoint of ``size`` (the first one kept stays)."""
        tlog.store_timestamp(self.conn, size, token)

    # ------------------------------------------------------------------ results (reads)
    def latest_versions(self, specimen_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """For each specimen, its newest signed result (id, version, run_id, payload)."""
        sql = (
            "SELECT r.specimen_id, r.id, r.version, r.run_id, r.payload FROM results r"
            " JOIN (SELECT id, max(version) AS v FROM results WHERE specimen_id IN ({}) GROUP BY id) m"
            " ON r.id = m.id AND r.version = m.v"
        )
        out: dict[str, dict[str, Any]] = {}
        for row in self._select_in(sql, list(specimen_ids)):
            out[row["specimen_id"]] = dict(row)
        return out

    def feed_page(self, after_seq: int, limit: int) -> list[dict[str, Any]]:
        """Results with ``seq > after_seq`` in seq order: the pull API's cursor feed."""
        rows = self.conn.execute(
            f"SELECT {RESULT_COLUMNS} FROM results WHERE seq > ? ORDER BY seq LIMIT ?", (int(after_seq), int(limit))
        ).fetchall()
        return [_result_dict(r) for r in rows]

    def get_result(self, id: str, version: int | None = None) -> dict[str, Any] | None:
        """One result version (the latest when ``version`` is None), or None."""
        if version is None:
            row = self.conn.execute(f"SELECT {RESULT_COLUMNS} FROM results WHERE id=? ORDER BY version DESC LIMIT 1", (id,)).fetchone()
        else:
            row = self.conn.execute(f"SELECT {RESULT_COLUMNS} FROM results WHERE id=? AND version=?", (id, int(version))).fetchone()
        return _result_dict(row) if row else None

    def result_versions(self, id: str) -> list[dict[str, Any]]:
        """Every version of one result, oldest first."""
        rows = self.conn.execute(f"SELECT {RESULT_COLUMNS} FROM results WHERE id=? ORDER BY version", (id,)).fetchall()
        return [_result_dict(r) for r in rows]

    def last_seq_before(self, instant: str) -> int:
        """The highest seq committed before ``instant`` (the ledger's UTC text form); 0 when none."""
        row = self.conn.execute("SELECT coalesce(max(seq), 0) FROM results WHERE created_at < ?", (instant,)).fetchone()
        return int(row[0])

    def last_seq(self) -> int:
        """Highest committed seq (0 when empty)."""
        return int(self.conn.execute("SELECT coalesce(max(seq), 0) FROM results").fetchone()[0])

    def results(self, *, current_only: bool = False) -> list[dict[str, Any]]:
        sql = f"SELECT {RESULT_COLUMNS} FROM results"
        if current_only:
            sql += " WHERE superseded_by IS NULL"
        return [_result_dict(r) for r in self.conn.execute(sql + " ORDER BY seq")]

    def open_retests(self) -> list[dict[str, Any]]:
        """Specimens waiting for an individual run or re-collection, with their person record."""
        rows = self.conn.execute(
            "SELECT t.specimen_id, t.kind, t.pool_id, t.reason, t.created_at, t.run_id, r.source,"
            " s.full_name, s.date_of_birth, s.collection_site, s.collected_at"
            " FROM retests t LEFT JOIN runs r USING (run_id) LEFT JOIN specimens s USING (specimen_id)"
            " WHERE t.state='open'"
            # one line per specimen: a retest that failed again (INVALID) reopens it under the newer run
            " AND t.created_at = (SELECT max(created_at) FROM retests u WHERE u.specimen_id = t.specimen_id AND u.state='open')"
            " ORDER BY t.created_at, t.specimen_id"
        ).fetchall()
        return [dict(r) for r in rows]

    def counts(self) -> dict[str, Any]:
        """Totals for summaries and health checks."""
        files = {r[0]: r[1] for r in self.conn.execute("SELECT state, count(*) FROM files GROUP BY state")}
        outcomes = {r[0]: r[1] for r in self.conn.execute("SELECT status, count(*) FROM results WHERE superseded_by IS NULL GROUP BY status")}
        return {
            "files": files,
            "results": self.conn.execute("SELECT count(*) FROM results").fetchone()[0],
            "current": outcomes,
            "open_retests": self.conn.execute("SELECT count(DISTINCT specimen_id) FROM retests WHERE state='open'").fetchone()[0],
            "specimen_decisions": self.conn.execute("SELECT count(*) FROM specimen_decisions").fetchone()[0],
            "last_seq": self.last_seq(),
        }

    # ------------------------------------------------------------------ what waits (ketqua status)
    def pools_without_plate(self) -> list[dict[str, Any]]:
        """Manifest pools no committed plate has measured yet: ``pool_id``, ``specimens``, the manifest
        (``manifest``, ``manifest_name``) and its ``received_at``, oldest first."""
        rows = self.conn.execute(
            "SELECT m.pool_id, count(*) AS specimens, m.manifest, f.name AS manifest_name, min(f.received_at) AS received_at"
            " FROM pool_members m JOIN files f ON f.sha256 = m.manifest"
            " WHERE m.pool_id NOT IN (SELECT pool_id FROM pool_decisions)"
            " GROUP BY m.pool_id ORDER BY received_at, m.pool_id"
        ).fetchall()
        return [dict(r) for r in rows]

    def latest_events(self, kind: str) -> dict[str, dict[str, Any]]:
        """The newest ``kind`` event of each file (``at``, ``detail``), in one scan instead of one per file."""
        rows = self.conn.execute(
            "SELECT file, at, detail FROM events WHERE seq IN"
            " (SELECT max(seq) FROM events WHERE kind=? AND file IS NOT NULL GROUP BY file)",
            (kind,),
        ).fetchall()
        return {r["file"]: {"at": r["at"], "detail": json.loads(r["detail"])} for r in rows}


def _result_dict(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    sup = d.get("supersedes")
    d["supersedes"] = {"id": d["id"], "version": sup} if sup is not None else None
    return d
