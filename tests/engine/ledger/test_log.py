"""The ledger's transparency log: leaves appended with the results, in seq order, never lagging, back-filled once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from engine.errors import LedgerError
from engine.ledger.log import SqliteHashStore, backfill
from engine.ledger.records import PlateCommit, SignedResult
from engine.ledger.schema import MIGRATIONS
from engine.ledger.sqlite import Ledger
from signing.errors import LogError
from signing.merkle import (
    MemoryHashStore,
    MerkleLog,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)


def _plate(ledger: Ledger, n: int, tag: str, first: int = 0) -> PlateCommit:
    run_id = f"{tag:0>64}"
    ledger.receive_file(run_id, f"{tag}.csv", 10, "analyzer")
    results = [
        SignedResult(f"kq{tag}{i}", 1, f"SP{tag}{i}", "NEGATIVE", run_id, "{}", f"hdr.{tag}-{first + i}.sig", "HC1:x")
        for i in range(n)
    ]
    return PlateCommit(run_id=run_id, source=f"{tag}.csv", metadata={}, wells=n, results=results)


def _reference(jws: list[str]) -> MerkleLog:
    log = MerkleLog(MemoryHashStore())
    log.append(j.encode() for j in jws)
    return log


def test_every_result_is_the_leaf_of_its_log_index_in_seq_order(tmp_path: Path) -> None:
    """Three plates: log_index = 0.. in seq order, roots and proofs equal those of an in-memory log of the JWSs."""
    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        for tag, n in (("a", 5), ("b", 1), ("c", 11)):
            ledger.commit_plate(_plate(ledger, n, tag))
        rows = ledger.results()
        assert [r["log_index"] for r in rows] == list(range(17))
        assert [r["seq"] for r in rows] == list(range(1, 18))
        ref = _reference([r["jws"] for r in rows])
        assert ledger.log_size() == 17
        for size in (1, 5, 6, 16, 17):
            assert ledger.log_root(size) == ref.root_at(size)
        proof = ledger.log_inclusion(7, 17)
        verify_inclusion(leaf_hash(rows[7]["jws"].encode()), 7, 17, proof, ref.root())
        verify_consistency(6, 17, ledger.log_consistency(6, 17), ref.root_at(6), ref.root())


def test_a_rolled_back_commit_leaves_no_leaf(tmp_path: Path) -> None:
    """A plate that fails inside its transaction takes its leaves with it; the next plate continues at the same index."""
    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        ledger.commit_plate(_plate(ledger, 3, "a"))
        bad = _plate(ledger, 2, "b")
        bad.results.append(bad.results[0])  # duplicate (id, version): the INSERT fails after the leaves were appended
        with pytest.raises(LedgerError):
            ledger.commit_plate(bad)
        assert ledger.log_size() == 3
        ledger.commit_plate(_plate(ledger, 2, "c"))
        rows = ledger.results()
        assert [r["log_index"] for r in rows] == [0, 1, 2, 3, 4]
        assert ledger.log_root(5) == _reference([r["jws"] for r in rows]).root()


def test_corrections_of_a_manifest_are_logged_too(tmp_path: Path) -> None:
    """commit_manifest's correction versions get the next leaves in the same transaction."""
    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        ledger.commit_plate(_plate(ledger, 2, "a"))
        ledger.receive_file("m" * 64, "m.csv", 1, "manifest")
        fix = SignedResult("kqa0", 2, "SPa0", "NEGATIVE", "a" * 64, "{}", "hdr.fix.sig", "HC1:y", supersedes=1, reason="name")
        ledger.commit_manifest("m" * 64, [], [fix])
        assert ledger.get_result("kqa0", 2)["log_index"] == 2
        assert ledger.log_size() == 3


def test_a_ledger_from_before_the_log_is_backfilled_on_first_open(tmp_path: Path) -> None:
    """A schema-1 ledger with results gets leaves 0..n-1 in seq order when opened for writing, once."""
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(f"BEGIN;\n{MIGRATIONS[0]}\nPRAGMA user_version=1;\nCOMMIT;")
    conn.execute("INSERT INTO files VALUES ('f', 'f.csv', 1, 't', 'done', 'analyzer', NULL, 0, NULL, 't')")
    for i in range(9):
        conn.execute(
            "INSERT INTO results(id, version, specimen_id, status, run_id, payload, jws, hc1, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (f"kq{i}", 1, f"S{i}", "POSITIVE", "f", "{}", f"old.{i}.sig", "HC1:", "t"),
        )
    conn.close()
    with pytest.raises(LedgerError, match="schema version 1, older than this ketqua"):
        Ledger.open(path, readonly=True)  # a reader cannot migrate: it says who can
    with Ledger.open(path) as ledger:
        assert ledger.schema_version == len(MIGRATIONS)
        rows = ledger.results()
        assert [r["log_index"] for r in rows] == list(range(9))
        assert ledger.log_root(9) == _reference([f"old.{i}.sig" for i in range(9)]).root()
        ledger.commit_plate(_plate(ledger, 2, "n"))
        assert ledger.log_size() == 11
    with Ledger.open(path) as ledger:  # a second open adds nothing
        assert ledger.log_size() == 11


def test_backfill_in_batches_equals_one_batch(tmp_path: Path) -> None:
    """Back-filling 10 rows 3 at a time (a crash between batches resumes) gives the same tree."""
    path = tmp_path / "l.sqlite"
    with Ledger.open(path) as ledger:
        ledger.commit_plate(_plate(ledger, 10, "a"))
        root = ledger.log_root(10)
        conn = ledger.conn
        conn.executescript(
            "DROP TRIGGER log_nodes_no_delete; DROP TRIGGER results_log_index_fixed;"
            " DELETE FROM log_nodes; UPDATE results SET log_index = NULL;"
        )
        assert backfill(conn, batch=3) == 10
        assert ledger.log_root(10) == root


def test_the_log_tables_are_append_only(tmp_path: Path) -> None:
    """Triggers refuse changing or deleting a subtree hash and changing a result's leaf index."""
    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        ledger.commit_plate(_plate(ledger, 2, "a"))
        for sql in ("UPDATE log_nodes SET hash = x'00'", "DELETE FROM log_nodes", "UPDATE results SET log_index = 7"):
            with pytest.raises(sqlite3.IntegrityError):
                ledger.conn.execute(sql)


def test_store_reads_in_one_query_and_names_a_missing_node(tmp_path: Path) -> None:
    """SqliteHashStore answers proofs like the memory store and raises LogError missing-node for a lost hash."""
    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        ledger.commit_plate(_plate(ledger, 6, "a"))
        store = SqliteHashStore(ledger.conn)
        ref = _reference([r["jws"] for r in ledger.results()])
        assert inclusion_proof(store, 4, 6) == ref.inclusion_proof(4, 6)
        with pytest.raises(LogError) as err:
            store.read([(0, 99)])
        assert err.value.reason == "missing-node"
        with pytest.raises(LogError) as err:
            ledger.log_inclusion(0, 7)
        assert err.value.reason == "out-of-range"


def test_checkpoints_are_kept_one_per_size(tmp_path: Path) -> None:
    """store_checkpoint keeps the first note of a size and returns it for a second one."""
    with Ledger.open(tmp_path / "l.sqlite") as ledger:
        assert ledger.latest_checkpoint() is None
        assert ledger.store_checkpoint(0, b"\0" * 32, "first\n") == "first\n"
        assert ledger.store_checkpoint(0, b"\0" * 32, "second\n") == "first\n"
        assert ledger.latest_checkpoint()["note"] == "first\n"
