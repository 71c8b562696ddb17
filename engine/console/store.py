"""The console's tables in the ledger, and every SQL statement the console runs.

The console keeps its own tables (accounts, sessions, audit trail, dismissed
quarantine files, corrections waiting for a reviewer) in the ledger file, so a
backup of the ledger is a backup of who did what. They are created by the same
mechanism as the ledger's own schema (an ordered list of forward migrations,
each applied in one ``BEGIN IMMEDIATE … COMMIT``) with their own counter, the
``console_schema`` row of the ledger's ``meta`` table, so the console's schema
moves independently of the engine's ``PRAGMA user_version``.

Writes go through :meth:`Ledger.transaction`. Reads of the engine's tables
(files, runs, specimens, results, retests) are here too, read-only, so that no
other console module holds SQL.

The audit trail is append-only (triggers refuse UPDATE and DELETE), like the
ledger's event log.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.console.text import digits, fold, like_pattern
from engine.errors import LedgerError
from engine.ledger.migrate import apply_migrations
from engine.ledger.sqlite import Ledger

#: Roles, least to most. ``collector`` works at the sampling station and has no console page.
ROLES = ("collector", "technician", "reviewer", "admin")
USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")

CONSOLE_MIGRATIONS: list[str] = [
    # 1: accounts, sessions, audit trail, dismissals, corrections waiting for review.
    """
    CREATE TABLE console_users (
        name          TEXT PRIMARY KEY,
        role          TEXT NOT NULL CHECK (role IN ('collector','technician','reviewer','admin')),
        password_hash TEXT NOT NULL,
        created_at    TEXT NOT NULL,
        disabled_at   TEXT
    );
    CREATE TABLE console_sessions (
        id_hash     TEXT PRIMARY KEY,          -- SHA-256 of the cookie; the cookie itself is never stored
        user        TEXT NOT NULL REFERENCES console_users(name),
        created_at  TEXT NOT NULL,
        expires_at  TEXT NOT NULL,
        last_seen   TEXT NOT NULL,
        ended_at    TEXT
    );
    CREATE TABLE console_audit (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        at      TEXT NOT NULL,
        user    TEXT,                          -- null for a login under a name that does not exist
        action  TEXT NOT NULL,
        target  TEXT,
        client  TEXT,
        detail  TEXT NOT NULL
    );
    CREATE INDEX console_audit_action ON console_audit(action, target, at);
    CREATE TRIGGER console_audit_no_update BEFORE UPDATE ON console_audit
        BEGIN SELECT RAISE(ABORT, 'the console audit trail is append-only'); END;
    CREATE TRIGGER console_audit_no_delete BEFORE DELETE ON console_audit
        BEGIN SELECT RAISE(ABORT, 'the console audit trail is append-only'); END;
    CREATE TABLE console_dismissals (
        file    TEXT PRIMARY KEY REFERENCES files(sha256),
        user    TEXT NOT NULL,
        reason  TEXT NOT NULL,
        at      TEXT NOT NULL
    );
    CREATE TABLE console_corrections (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        result_id     TEXT NOT NULL,
        based_on      INTEGER NOT NULL,        -- the version the technician saw
        specimen_id   TEXT NOT NULL,
        fields        TEXT NOT NULL,           -- JSON: the person fields as they should become
        reason        TEXT NOT NULL,
        requested_by  TEXT NOT NULL,
        requested_at  TEXT NOT NULL,
        state         TEXT NOT NULL CHECK (state IN ('pending','applied','rejected')),
        decided_by    TEXT,
        decided_at    TEXT,
        version       INTEGER                  -- the signed version it became
    );
    CREATE INDEX console_corrections_state ON console_corrections(state);
    """,
    # 2: a search index of the specimens' person records, folded as people type them (see search()).
    """
    CREATE TABLE console_search (
        specimen_id   TEXT PRIMARY KEY,
        id_folded     TEXT NOT NULL,
        name_folded   TEXT NOT NULL,
        national_id   TEXT NOT NULL,
        phone_digits  TEXT NOT NULL,
        manifest      TEXT NOT NULL            -- the manifest file the folded record came from
    );
    CREATE INDEX console_search_id ON console_search(id_folded);
    CREATE INDEX console_search_national ON console_search(national_id);
    CREATE INDEX console_search_phone ON console_search(phone_digits);
    """,
]

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def stamp(at: datetime) -> str:
    """The ledger's timestamp format (UTC, microseconds, ``Z``): strings sort as instants."""
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


class ConsoleStore:
    """The console's view of one ledger connection (the console's own, not the pipeline's)."""

    def __init__(self, ledger: Ledger, clock: Clock = system_clock) -> None:
        self.ledger = ledger
        self.conn = ledger.conn
        self.clock = clock
        self.conn.create_function("kq_fold", 1, fold, deterministic=True)
        self.conn.create_function("kq_digits", 1, digits, deterministic=True)
        self._migrate()

    def now(self) -> str:
        return stamp(self.clock())

    # ------------------------------------------------------------------ schema
    def _migrate(self) -> None:
        row = self.conn.execute("SELECT value FROM meta WHERE key='console_schema'").fetchone()
        apply_migrations(
            self.conn, self.ledger.path, CONSOLE_MIGRATIONS, int(row[0]) if row else 0, what="console schema",
            record=lambda n: f"INSERT OR REPLACE INTO meta(key, value) VALUES ('console_schema', '{n}');",
        )

    @property
    def schema_version(self) -> int:
        row = self.conn.execute("SELECT value FROM meta WHERE key='console_schema'").fetchone()
        return int(row[0]) if row else 0

    # ------------------------------------------------------------------ accounts
    def add_user(self, name: str, role: str, password_hash: str) -> None:
        """Create an account; LedgerError when the name is taken or not a valid user name."""
        if not USER_NAME.match(name):
            raise LedgerError(f"user name {name!r}: use 2 to 64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit")
        if role not in ROLES:
            raise LedgerError(f"role {role!r}: must be one of {', '.join(ROLES)}")
        with self.ledger.transaction():
            if self.conn.execute("SELECT 1 FROM console_users WHERE name=?", (name,)).fetchone():
                raise LedgerError(f"user {name} exists already (disable it with `ketqua users disable {name}`)")
            self.conn.execute(
                "INSERT INTO console_users(name, role, password_hash, created_at) VALUES (?,?,?,?)", (name, role, password_hash, self.now())
            )
            self._audit(None, "user_added", name, None, role=role)

    def user(self, name: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM console_users WHERE name=?", (name,)).fetchone()
        return dict(row) if row else None

    def users(self) -> list[dict[str, Any]]:
        """Every account (without password hashes), by name."""
        rows = self.conn.execute("SELECT name, role, created_at, disabled_at FROM console_users ORDER BY name").fetchall()
        return [dict(r) for r in rows]

    def disable_user(self, name: str) -> dict[str, Any]:
        """Disable an account and end its sessions at once; the row stays (the audit trail names it)."""
        now = self.now()
        with self.ledger.transaction():
            row = self.conn.execute("SELECT * FROM console_users WHERE name=?", (name,)).fetchone()
            if row is None:
                raise LedgerError(f"no user {name} (see `ketqua users list`)")
            if row["disabled_at"] is None:
                self.conn.execute("UPDATE console_users SET disabled_at=? WHERE name=?", (now, name))
                self.conn.execute("UPDATE console_sessions SET ended_at=? WHERE user=? AND ended_at IS NULL", (now, name))
                self._audit(None, "user_disabled", name, None)
        return dict(self.user(name) or {})

    # ------------------------------------------------------------------ sessions
    def create_session(self, user: str, *, hours: float) -> str:
        """A new session for ``user``; returns the cookie value (only its hash is stored)."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with self.ledger.transaction():
            self.conn.execute(
                "INSERT INTO console_sessions(id_hash, user, created_at, expires_at, last_seen) VALUES (?,?,?,?,?)",
                (_token_hash(token), user, stamp(now), stamp(now + timedelta(hours=hours)), stamp(now)),
            )
        return token

    def session(self, token: str, *, idle_minutes: float) -> dict[str, Any] | None:
        """The live session of a cookie (``user``, ``role``, …), or None when unknown, ended, expired, idle or disabled.

        ``last_seen`` is written at most once a minute, not on every request.
        """
        if not token or len(token) > 100:
            return None
        row = self.conn.execute(
            "SELECT s.*, u.role, u.disabled_at FROM console_sessions s JOIN console_users u ON u.name = s.user WHERE s.id_hash=?",
            (_token_hash(token),),
        ).fetchone()
        if row is None or row["ended_at"] or row["disabled_at"]:
            return None
        now = self.clock()
        if stamp(now) >= row["expires_at"] or stamp(now - timedelta(minutes=idle_minutes)) > row["last_seen"]:
            return None
        if stamp(now - timedelta(minutes=1)) > row["last_seen"]:
            with self.ledger.transaction():
                self.conn.execute("UPDATE console_sessions SET last_seen=? WHERE id_hash=?", (stamp(now), row["id_hash"]))
        return dict(row)

    def end_session(self, token: str) -> None:
        with self.ledger.transaction():
            self.conn.execute("UPDATE console_sessions SET ended_at=? WHERE id_hash=? AND ended_at IS NULL", (self.now(), _token_hash(token)))

    # ------------------------------------------------------------------ audit and login throttling
    def _audit(self, user: str | None, action: str, target: str | None, client: str | None, **detail: Any) -> None:
        self.conn.execute(
            "INSERT INTO console_audit(at, user, action, target, client, detail) VALUES (?,?,?,?,?,?)",
            (self.now(), user, action, target, client, json.dumps(detail, ensure_ascii=False, sort_keys=True)),
        )

    def audit(self, user: str | None, action: str, target: str | None = None, client: str | None = None, **detail: Any) -> None:
        """Append one line to the audit trail (who, what, on what, from where, when) in its own transaction."""
        with self.ledger.transaction():
            self._audit(user, action, target, client, **detail)

    def audit_trail(self, limit: int = 200, user: str | None = None) -> list[dict[str, Any]]:
        """The newest audit lines first."""
        sql = "SELECT * FROM console_audit" + (" WHERE user=?" if user else "") + " ORDER BY seq DESC LIMIT ?"
        rows = self.conn.execute(sql, ((user, limit) if user else (limit,))).fetchall()
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]

    def login_failures(self, name: str, client: str | None, *, minutes: float) -> tuple[int, int]:
        """Failed logins within the last ``minutes``: (under this name, from this client address)."""
        since = stamp(self.clock() - timedelta(minutes=minutes))
        by_name = self.conn.execute(
            "SELECT count(*) FROM console_audit WHERE action='login_failed' AND target=? AND at>=?", (name, since)
        ).fetchone()[0]
        by_client = 0
        if client:
            by_client = self.conn.execute(
                "SELECT count(*) FROM console_audit WHERE action='login_failed' AND client=? AND at>=?", (client, since)
            ).fetchone()[0]
        return int(by_name), int(by_client)

    # ------------------------------------------------------------------ overview
    def day_counts(self, since: str) -> dict[str, int]:
        """What happened since ``since`` (a ledger timestamp: the start of the lab's day), plus what waits now."""
        one = lambda sql, *args: int(self.conn.execute(sql, args).fetchone()[0])  # noqa: E731
        return {
            "files_received": one("SELECT count(*) FROM files WHERE received_at>=?", since),
            "plates_done": one("SELECT count(*) FROM files WHERE kind='analyzer' AND state='done' AND updated_at>=?", since),
            "plates_waiting": one("SELECT count(*) FROM files WHERE kind='analyzer' AND state IN ('received','waiting_manifest')"),
            "specimens_decided": one(
                "SELECT count(*) FROM specimen_decisions d JOIN runs r USING (run_id) WHERE r.committed_at>=?", since
            ),
            "results_signed": one("SELECT count(*) FROM results WHERE created_at>=?", since),
            "retests_waiting": one("SELECT count(DISTINCT specimen_id) FROM retests WHERE state='open'"),
            "quarantined": one(
                "SELECT count(*) FROM files WHERE state='quarantined' AND sha256 NOT IN (SELECT file FROM console_dismissals)"
            ),
            "corrections_pending": one("SELECT count(*) FROM console_corrections WHERE state='pending'"),
            "release_waiting": one("SELECT count(*) FROM files WHERE kind='analyzer' AND state='parsed'"),
        }

    def file_states(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest files with their state, times, and for plates the results signed and certificates written."""
        rows = self.conn.execute(
            "SELECT f.sha256, f.name, f.kind, f.state, f.received_at, f.updated_at, f.error, r.committed_at,"
            " (SELECT count(*) FROM results x WHERE x.run_id = f.sha256) AS signed,"
            " (SELECT count(*) FROM results x WHERE x.run_id = f.sha256 AND x.certificate IS NOT NULL) AS certificates"
            " FROM files f LEFT JOIN runs r ON r.run_id = f.sha256"
            " ORDER BY f.received_at DESC, f.sha256 LIMIT ?",
            (limit,),
        ).fetchall()
        return [dict(r) for r in rows]

    # ------------------------------------------------------------------ quarantine
    def quarantined(self, *, dismissed: bool = False) -> list[dict[str, Any]]:
        """Quarantined files, newest first, with the newest quarantine event's reason kind and copy name."""
        events = self.ledger.latest_events("quarantined")
        sql = (
            "SELECT f.*, d.user AS dismissed_by, d.reason AS dismissed_reason, d.at AS dismissed_at"
            " FROM files f LEFT JOIN console_dismissals d ON d.file = f.sha256 WHERE f.state='quarantined'"
            + (" AND d.file IS NOT NULL" if dismissed else " AND d.file IS NULL")
            + " ORDER BY f.updated_at DESC"
        )
        out = []
        for row in self.conn.execute(sql).fetchall():
            item = dict(row)
            detail = events.get(row["sha256"], {}).get("detail", {})
            item["kind_of_problem"] = detail.get("reason")
            item["copy"] = detail.get("copy")
            out.append(item)
        return out

    def dismissal(self, sha256: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM console_dismissals WHERE file=?", (sha256,)).fetchone()
        return dict(row) if row else None

    def dismiss(self, sha256: str, user: str, reason: str, client: str | None) -> None:
        """Record that a quarantined file needs nothing more (why, by whom); the file and its copy stay."""
        with self.ledger.transaction():
            row = self.conn.execute("SELECT state FROM files WHERE sha256=?", (sha256,)).fetchone()
            if row is None or row["state"] != "quarantined":
                raise LedgerError("this file is not in quarantine")
            self.conn.execute(
                "INSERT OR REPLACE INTO console_dismissals(file, user, reason, at) VALUES (?,?,?,?)", (sha256, user, reason, self.now())
            )
            self._audit(user, "quarantine_dismissed", sha256, client, reason=reason)

    # ------------------------------------------------------------------ search and records
    def _sync_search(self) -> None:
        """Fold the person records changed since the last search into ``console_search``.

        Every manifest commit (and so every correction) bumps the ledger's manifest
        generation and points the specimens it touched at its own file: when the
        generation moved, the rows whose manifest differs from the folded one are
        folded again (a join on the primary key, no Python per unchanged row);
        otherwise nothing is done. No clock is trusted.
        """
        generation = str(self.ledger.manifest_generation())
        row = self.conn.execute("SELECT value FROM meta WHERE key='console_search_generation'").fetchone()
        if row is not None and row[0] == generation:
            return
        with self.ledger.transaction():
            self.conn.execute(
                "INSERT OR REPLACE INTO console_search(specimen_id, id_folded, name_folded, national_id, phone_digits, manifest)"
                " SELECT s.specimen_id, lower(s.specimen_id), kq_fold(s.full_name), coalesce(s.national_id, ''), kq_digits(s.phone), s.manifest"
                " FROM specimens s LEFT JOIN console_search x USING (specimen_id)"
                " WHERE x.specimen_id IS NULL OR x.manifest <> s.manifest"
            )
            self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('console_search_generation', ?)", (generation,))

    def search(self, query: str, limit: int = 50) -> list[dict[str, Any]]:
        """Specimens whose id, national id or phone equals ``query``, or whose name contains it, without diacritics or case."""
        folded = fold(query)
        if not folded:
            return []
        self._sync_search()
        phone = digits(query)
        exact = query.strip()
        rows = self.conn.execute(
            "SELECT s.* FROM specimens s WHERE s.specimen_id IN ("
            " SELECT specimen_id FROM console_search WHERE id_folded=?"
            " UNION SELECT specimen_id FROM console_search WHERE national_id=? AND national_id<>''"
            " UNION SELECT specimen_id FROM console_search WHERE length(?)>=6 AND phone_digits=?"
            " UNION SELECT specimen_id FROM console_search WHERE name_folded LIKE ? ESCAPE '\\')"
            " ORDER BY s.full_name, s.specimen_id LIMIT ?",
            (exact.lower(), exact, phone, phone, like_pattern(folded), limit),
        ).fetchall()
        return [dict(r) for r in rows]

    def results_of(self, specimen_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Every result version of each specimen, oldest first."""
        out: dict[str, list[dict[str, Any]]] = {}
        for sid in specimen_ids:
            rows = self.conn.execute(
                "SELECT seq, id, version, status, run_id, created_at, certificate, supersedes, superseded_by, reason, jws, payload"
                " FROM results WHERE specimen_id=? ORDER BY id, version",
                (sid,),
            ).fetchall()
            out[sid] = [dict(r) for r in rows]
        return out

    def specimen(self, specimen_id: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM specimens WHERE specimen_id=?", (specimen_id,)).fetchone()
        return dict(row) if row else None

    def pools_of(self, specimen_id: str) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT pool_id FROM pool_members WHERE specimen_id=? ORDER BY pool_id", (specimen_id,))]

    def incomplete(self, limit: int = 500) -> list[dict[str, Any]]:
        """Current results whose person lacks what the national platform needs for an e-certificate."""
        rows = self.conn.execute(
            "SELECT r.id, r.version, r.status, r.created_at, s.specimen_id, s.full_name, s.date_of_birth, s.national_id, s.phone"
            " FROM results r JOIN specimens s USING (specimen_id) WHERE r.superseded_by IS NULL"
            " AND (coalesce(s.national_id,'')='' OR coalesce(s.date_of_birth,'')='' OR coalesce(s.phone,'')='')"
            " ORDER BY r.created_at DESC, r.id LIMIT ?",
            (limit,),
        ).fetchall()
        return [dict(r) for r in rows]

    def retests(self) -> list[dict[str, Any]]:
        """The open retests (:meth:`Ledger.open_retests`) with the decoder's words for why, and the pool's call and Ct."""
        rows = self.ledger.open_retests()
        evidence: dict[tuple[str, str], dict[str, Any]] = {}
        keys = sorted({(r["run_id"], r["specimen_id"]) for r in rows})
        for run_id, sid in keys:
            row = self.conn.execute("SELECT evidence FROM specimen_decisions WHERE run_id=? AND specimen_id=?", (run_id, sid)).fetchone()
            evidence[(run_id, sid)] = json.loads(row[0]) if row else {}
        out = []
        for r in rows:
            ev = evidence.get((r["run_id"], r["specimen_id"]), {})
            pools = [p for p in ev.get("pools", []) if isinstance(p, dict)]
            out.append({**r, "why": ev.get("reason"), "design": ev.get("design"), "decoder": ev.get("decoder"), "pools": pools})
        return out

    # ------------------------------------------------------------------ plates
    def plates(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT run_id, source, instrument, assay, wells, committed_at FROM runs ORDER BY committed_at DESC LIMIT ?", (limit,)
        ).fetchall()
        return [dict(r) for r in rows]

    def plate(self, run_id: str) -> dict[str, Any] | None:
        """One committed run: its metadata, pool decisions (per well) and each pool's specimens with their decision."""
        run = self.conn.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if run is None:
            return None
        pools = [
            {**dict(r), "evidence": json.loads(r["evidence"])}
            for r in self.conn.execute("SELECT pool_id, well, outcome, evidence FROM pool_decisions WHERE run_id=? ORDER BY pool_id", (run_id,))
        ]
        decisions = {
            r["specimen_id"]: dict(r)
            for r in self.conn.execute("SELECT specimen_id, outcome, retest FROM specimen_decisions WHERE run_id=?", (run_id,))
        }
        members: dict[str, list[dict[str, Any]]] = {}
        ids = [p["pool_id"] for p in pools]
        for start in range(0, len(ids), 900):
            part = ids[start : start + 900]
            for r in self.conn.execute(
                f"SELECT pool_id, specimen_id FROM pool_members WHERE pool_id IN ({','.join('?' * len(part))}) ORDER BY specimen_id", part
            ):
                members.setdefault(r["pool_id"], []).append(decisions.get(r["specimen_id"], {"specimen_id": r["specimen_id"], "outcome": None}))
        return {**dict(run), "metadata": json.loads(run["metadata"]), "pools": pools, "members": members}

    # ------------------------------------------------------------------ release review
    def held_plates(self) -> list[dict[str, Any]]:
        """Plates decided under ``[results] release = "review"`` and waiting for a reviewer, oldest first, with outcome counts."""
        rows = self.conn.execute(
            "SELECT f.sha256, f.name, f.received_at, f.updated_at, r.instrument, r.assay, r.wells"
            " FROM files f JOIN runs r ON r.run_id = f.sha256 WHERE f.kind='analyzer' AND f.state='parsed' ORDER BY f.updated_at"
        ).fetchall()
        out = []
        for row in rows:
            counts = {o: n for o, n in self.conn.execute(
                "SELECT outcome, count(*) FROM specimen_decisions WHERE run_id=? GROUP BY outcome", (row["sha256"],))}
            out.append({**dict(row), "outcomes": counts})
        return out

    def release(self, sha256: str, user: str, client: str | None) -> str:
        """A reviewer releases a held plate: the file goes back to ``received`` with a ``released`` event naming
        who and when, and the pipeline signs its results with both in the payload. Returns the release time."""
        at = self.clock().astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        row = self.ledger.file(sha256)
        if row is None or row["state"] != "parsed" or row["kind"] != "analyzer":
            raise LedgerError("this plate is not waiting for release")
        self.ledger.set_file_state(sha256, "received", event="released", by=user, at=at)
        self.audit(user, "plate_released", sha256, client, at=at)
        return at

    # ------------------------------------------------------------------ corrections waiting for review
    def request_correction(self, result_id: str, based_on: int, specimen_id: str, fields: dict[str, Any], reason: str, user: str, client: str | None) -> int:
        with self.ledger.transaction():
            cur = self.conn.execute(
                "INSERT INTO console_corrections(result_id, based_on, specimen_id, fields, reason, requested_by, requested_at, state)"
                " VALUES (?,?,?,?,?,?,?, 'pending')",
                (result_id, based_on, specimen_id, json.dumps(fields, ensure_ascii=False, sort_keys=True), reason, user, self.now()),
            )
            number = int(cur.lastrowid or 0)
            self._audit(user, "correction_requested", result_id, client, request=number, fields=sorted(fields), reason=reason)
        return number

    def corrections(self, state: str = "pending") -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT * FROM console_corrections WHERE state=? ORDER BY id", (state,)).fetchall()
        return [{**dict(r), "fields": json.loads(r["fields"])} for r in rows]

    def correction(self, number: int) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT * FROM console_corrections WHERE id=?", (number,)).fetchone()
        return {**dict(row), "fields": json.loads(row["fields"])} if row else None

    def decide_correction(self, number: int, state: str, user: str, client: str | None, version: int | None = None) -> None:
        with self.ledger.transaction():
            cur = self.conn.execute(
                "UPDATE console_corrections SET state=?, decided_by=?, decided_at=?, version=? WHERE id=? AND state='pending'",
                (state, user, self.now(), version, number),
            )
            if cur.rowcount != 1:
                raise LedgerError(f"correction request {number} was decided already")
            self._audit(user, "correction_" + state, str(number), client, version=version)
