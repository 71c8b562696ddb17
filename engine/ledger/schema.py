"""The ledger's schema: its tables as forward migrations, and the words its columns may hold.

Schema changes are forward migrations: :data:`MIGRATIONS` is an ordered list of
SQL scripts, ``PRAGMA user_version`` says how many have been applied. A second
backend (PostgreSQL) keeps the same tables and column names, so the rows every
reader sees are the same whichever store holds them.
"""

from __future__ import annotations

from engine.model import PERSON_FIELDS, SPECIMEN_FIELDS

__all__ = ["FILE_KINDS", "FILE_STATES", "MIGRATIONS", "PERSON_FIELDS", "RESULT_COLUMNS", "FEED_COLUMNS", "SPECIMEN_FIELDS"]

FILE_STATES = ("received", "parsed", "waiting_manifest", "done", "quarantined", "parked")
FILE_KINDS = ("analyzer", "manifest")

MIGRATIONS: list[str] = [
    # 1: the initial schema.
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    INSERT INTO meta(key, value) VALUES ('manifest_generation', '0');

    CREATE TABLE files (
        sha256       TEXT PRIMARY KEY,
        name         TEXT NOT NULL,
        size         INTEGER NOT NULL,
        received_at  TEXT NOT NULL,
        state        TEXT NOT NULL CHECK (state IN ('received','parsed','waiting_manifest','done','quarantined','parked')),
        kind         TEXT NOT NULL CHECK (kind IN ('analyzer','manifest')),
        error        TEXT,
        attempts     INTEGER NOT NULL DEFAULT 0,
        retry_at     REAL,
        updated_at   TEXT NOT NULL
    );
    CREATE INDEX files_state ON files(state);

    CREATE TABLE runs (
        run_id       TEXT PRIMARY KEY REFERENCES files(sha256),
        source       TEXT NOT NULL,
        format       TEXT,
        instrument   TEXT,
        assay        TEXT,
        metadata     TEXT NOT NULL,
        wells        INTEGER NOT NULL,
        committed_at TEXT NOT NULL
    );

    CREATE TABLE manifest_rows (
        manifest        TEXT NOT NULL REFERENCES files(sha256),
        line            INTEGER NOT NULL,
        pool_id         TEXT NOT NULL,
        specimen_id     TEXT NOT NULL,
        full_name       TEXT, date_of_birth TEXT, sex TEXT, national_id TEXT,
        phone           TEXT, address TEXT, collected_at TEXT, collection_site TEXT,
        aliquot         INTEGER NOT NULL,
        PRIMARY KEY (manifest, line)
    );

    -- The current person record of each specimen (latest manifest wins; earlier
    -- rows stay in manifest_rows, so a correction's history is never lost).
    CREATE TABLE specimens (
        specimen_id     TEXT PRIMARY KEY,
        full_name       TEXT, date_of_birth TEXT, sex TEXT, national_id TEXT,
        phone           TEXT, address TEXT, collected_at TEXT, collection_site TEXT,
        aliquot         INTEGER NOT NULL,
        manifest        TEXT NOT NULL REFERENCES files(sha256),
        updated_at      TEXT NOT NULL
    );

    CREATE TABLE pool_members (
        pool_id     TEXT NOT NULL,
        specimen_id TEXT NOT NULL,
        manifest    TEXT NOT NULL REFERENCES files(sha256),
        PRIMARY KEY (pool_id, specimen_id)
    );
    CREATE INDEX pool_members_specimen ON pool_members(specimen_id);

    CREATE TABLE pool_decisions (
        run_id   TEXT NOT NULL REFERENCES runs(run_id),
        pool_id  TEXT NOT NULL,
        well     TEXT,
        outcome  TEXT NOT NULL,
        evidence TEXT NOT NULL,
        PRIMARY KEY (run_id, pool_id, well)
    );

    CREATE TABLE specimen_decisions (
        run_id      TEXT NOT NULL REFERENCES runs(run_id),
        specimen_id TEXT NOT NULL,
        outcome     TEXT NOT NULL,
        retest      TEXT NOT NULL,
        evidence    TEXT NOT NULL,
        PRIMARY KEY (run_id, specimen_id)
    );

    CREATE TABLE results (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,
        id            TEXT NOT NULL,
        version       INTEGER NOT NULL,
        specimen_id   TEXT NOT NULL,
        status        TEXT NOT NULL CHECK (status IN ('POSITIVE','NEGATIVE','INCONCLUSIVE')),
        run_id        TEXT NOT NULL,
        payload       TEXT NOT NULL,
        jws           TEXT NOT NULL,
        hc1           TEXT NOT NULL,
        certificate   TEXT,
        supersedes    INTEGER,
        superseded_by INTEGER,
        reason        TEXT,
        created_at    TEXT NOT NULL,
        UNIQUE (id, version)
    );
    CREATE INDEX results_specimen ON results(specimen_id);
    CREATE INDEX results_pending_certificate ON results(seq) WHERE certificate IS NULL;

    CREATE TABLE retests (
        specimen_id TEXT NOT NULL,
        run_id      TEXT NOT NULL,
        kind        TEXT NOT NULL CHECK (kind IN ('rerun','recollect')),
        state       TEXT NOT NULL CHECK (state IN ('open','done')),
        pool_id     TEXT,
        reason      TEXT,
        created_at  TEXT NOT NULL,
        closed_by   INTEGER,
        PRIMARY KEY (specimen_id, run_id)
    );
    CREATE INDEX retests_open ON retests(state, specimen_id);

    CREATE TABLE api_tokens (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        token_hash  TEXT NOT NULL UNIQUE,
        scopes      TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        revoked_at  TEXT
    );

    CREATE TABLE events (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        at      TEXT NOT NULL,
        kind    TEXT NOT NULL,
        file    TEXT,
        detail  TEXT NOT NULL
    );
    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
    CREATE TRIGGER events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
    """,
    # 2: the transparency log (docs/transparency.md). Each result row gets its leaf
    # index; rows committed before this version get theirs on the first writable
    # open (engine.ledger.log.backfill: hashing needs code, not SQL).
    """
    ALTER TABLE results ADD COLUMN log_index INTEGER;
    CREATE UNIQUE INDEX results_log_index ON results(log_index) WHERE log_index IS NOT NULL;
    CREATE INDEX results_unlogged ON results(seq) WHERE log_index IS NULL;
    CREATE TRIGGER results_log_index_fixed BEFORE UPDATE OF log_index ON results WHEN OLD.log_index IS NOT NULL
        BEGIN SELECT RAISE(ABORT, 'a result keeps its transparency log index'); END;

    -- Perfect-subtree hashes of the Merkle tree: (level, idx) covers leaves
    -- [idx * 2^level, (idx + 1) * 2^level); level 0 holds the leaf hashes.
    CREATE TABLE log_nodes (
        level INTEGER NOT NULL,
        idx   INTEGER NOT NULL,
        hash  BLOB NOT NULL,
        PRIMARY KEY (level, idx)
    ) WITHOUT ROWID;
    CREATE TRIGGER log_nodes_no_update BEFORE UPDATE ON log_nodes
        BEGIN SELECT RAISE(ABORT, 'the transparency log is append-only'); END;
    CREATE TRIGGER log_nodes_no_delete BEFORE DELETE ON log_nodes
        BEGIN SELECT RAISE(ABORT, 'the transparency log is append-only'); END;

    -- Every signed tree head given out (one per size): the lab's own record of what it signed.
    CREATE TABLE log_checkpoints (
        size       INTEGER PRIMARY KEY,
        root       BLOB NOT NULL,
        note       TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    """,
    # 3: one RFC 3161 time-stamp token per checkpoint (when a TSA is configured): the DER
    # TimeStampToken over SHA-256 of the signed note's bytes.
    """
    ALTER TABLE log_checkpoints ADD COLUMN timestamp BLOB;
    """,
]

#: Every column of ``results``, in the order the store's result dicts are built from.
RESULT_COLUMNS = (
    "seq, id, version, specimen_id, status, payload, jws, hc1, certificate, supersedes, superseded_by, reason, run_id, created_at,"
    " log_index"
)
#: The columns a feed item is assembled from (:mod:`engine.ledger.feed_rows`), in that order.
FEED_COLUMNS = "seq, id, version, status, supersedes, superseded_by, created_at, payload, jws, hc1, certificate, log_index"
