"""The ledger: migrations, per-plate transactions, the cursor feed and its guarantees."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from engine.errors import LedgerError
from engine.ledger.sqlite import (
    MIGRATIONS,
    ConflictError,
    Ledger,
    PlateCommit,
    SignedResult,
)


def _result(rid: str, version: int = 1, specimen: str = "S1", run: str = "r" * 64, supersedes: int | None = None) -> SignedResult:
    return SignedResult(rid, version, specimen, "NEGATIVE", run, f'{{"id":"{rid}","version":{version}}}', f"jws-{rid}-{version}", f"HC1:{rid}", supersedes)


def _plate(ledger: Ledger, run: str, results: list[SignedResult], retests: list[str] = ()) -> PlateCommit:
    ledger.receive_file(run, f"{run[:6]}.txt", 10, "analyzer")
    decisions = [{"specimen_id": r.specimen_id, "outcome": r.status, "retest": ""} for r in results]
    decisions += [{"specimen_id": s, "outcome": "RETEST", "retest": "rerun", "pool_id": "P1"} for s in retests]
    return PlateCommit(run, f"{run[:6]}.txt", {"format": "quantstudio"}, 96, [{"pool_id": "P1", "well": "A1", "outcome": "detected"}], decisions, results)


def test_open_migrates_to_latest_and_reopens(tmp_path: Path) -> None:
    """A new ledger is migrated to the newest schema version, and reopening does not migrate again."""
    path = tmp_path / "l.sqlite3"
    with Ledger.open(path) as ledger:
        assert ledger.schema_version == len(MIGRATIONS)
        assert ledger.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with Ledger.open(path) as ledger:
        assert ledger.schema_version == len(MIGRATIONS)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A ledger written by a newer ketqua is refused rather than misread."""
    path = tmp_path / "l.sqlite3"
    Ledger.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    conn.close()
    with pytest.raises(LedgerError, match="newer"):
        Ledger.open(path)


def test_event_log_is_append_only(tmp_path: Path) -> None:
    """UPDATE and DELETE on the event log are refused by triggers."""
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        ledger.event("test", None, note="x")
        for sql in ("UPDATE events SET kind='y'", "DELETE FROM events"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                ledger.conn.execute(sql)
        assert [e["kind"] for e in ledger.events()] == ["test"]


def test_same_bytes_received_twice_is_a_duplicate(tmp_path: Path) -> None:
    """Receiving a sha256 again returns False and records a duplicate event, keeping the first name."""
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        assert ledger.receive_file("a" * 64, "one.txt", 5, "analyzer") is True
        assert ledger.receive_file("a" * 64, "two.txt", 5, "analyzer") is False
        assert ledger.file("a" * 64)["name"] == "one.txt"
        assert [e["kind"] for e in ledger.events()] == ["received", "duplicate"]


def test_commit_plate_is_one_transaction_and_idempotent(tmp_path: Path) -> None:
    """A plate's results appear together with the file marked done; committing it again adds nothing."""
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        plate = _plate(ledger, "b" * 64, [_result("kqa", specimen="S1"), _result("kqb", specimen="S2")], retests=["S3"])
        seqs = ledger.commit_plate(plate)
        assert seqs == [1, 2]
        assert ledger.file("b" * 64)["state"] == "done"
        assert ledger.commit_plate(plate) == []
        assert ledger.last_seq() == 2
        assert [r["specimen_id"] for r in ledger.open_retests()] == ["S3"]


def test_failed_commit_leaves_nothing(tmp_path: Path) -> None:
    """When any row of a plate fails, none of the plate's rows are written."""
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        ledger.commit_plate(_plate(ledger, "c" * 64, [_result("kqa")]))
        # Second plate claims version 1 of an id that already exists: the optimistic check refuses it.
        bad = _plate(ledger, "d" * 64, [_result("kqz", specimen="S9"), _result("kqa", specimen="S1", run="d" * 64)])
        with pytest.raises(ConflictError):
            ledger.commit_plate(bad)
        assert ledger.last_seq() == 1
        assert ledger.file("d" * 64)["state"] == "received"
        assert ledger.get_result("kqz") is None


def test_new_version_supersedes_and_closes_retest(tmp_path: Path) -> None:
    """Version 2 names version 1 as superseded; both stay readable; the specimen's open retest closes."""
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        ledger.commit_plate(_plate(ledger, "e" * 64, [_result("kqa", specimen="S1")], retests=["S2"]))
        v2 = _result("kqb", specimen="S2", run="f" * 64)
        ledger.commit_plate(_plate(ledger, "f" * 64, [v2]))
        assert ledger.open_retests() == []
        ledger.commit_plate(_plate(ledger, "9" * 64, [_result("kqa", 2, "S1", "9" * 64, supersedes=1)]))
        versions = ledger.result_versions("kqa")
        assert [v["version"] for v in versions] == [1, 2]
        assert versions[0]["superseded_by"] == 2
        assert versions[1]["supersedes"] == {"id": "kqa", "version": 1}
        assert ledger.get_result("kqa")["version"] == 2
        assert ledger.get_result("kqa", 1)["version"] == 1


def test_feed_pages_have_no_gaps_or_duplicates_while_writing(tmp_path: Path) -> None:
    """A reader paging the feed on its own connection while plates commit sees every seq exactly once, in order."""
    path = tmp_path / "l.sqlite3"
    writer = Ledger.open(path)
    seen: list[int] = []
    done = threading.Event()

    def read() -> None:
        reader = Ledger.open(path, readonly=True)
        cursor = 0
        while True:
            finished = done.is_set()
            page = reader.feed_page(cursor, 7)
            seen.extend(r["seq"] for r in page)
            if page:
                cursor = page[-1]["seq"]
            elif finished:
                break
        reader.close()

    thread = threading.Thread(target=read)
    thread.start()
    for p in range(40):
        run = f"{p:064x}"
        writer.commit_plate(_plate(writer, run, [_result(f"kq{p}-{i}", specimen=f"S{p}-{i}", run=run) for i in range(5)]))
    done.set()
    thread.join()
    assert seen == list(range(1, 201))
    writer.close()


def test_transient_failures_back_off_then_park(tmp_path: Path) -> None:
    """Each transient failure schedules a later retry; the last allowed one parks the file for an operator."""
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        ledger.receive_file("a" * 64, "x.txt", 1, "analyzer")
        state1, at1 = ledger.note_failure("a" * 64, "disk full", max_attempts=3, backoff_s=1)
        state2, at2 = ledger.note_failure("a" * 64, "disk full", max_attempts=3, backoff_s=1)
        state3, at3 = ledger.note_failure("a" * 64, "disk full", max_attempts=3, backoff_s=1)
        assert (state1, state2, state3) == ("received", "received", "parked")
        assert at2 - at1 > 0.5 and at3 is None
        assert ledger.file("a" * 64)["attempts"] == 3


def test_readonly_open_of_missing_ledger_says_what_to_do(tmp_path: Path) -> None:
    """Reading a ledger that does not exist fails with a hint instead of creating an empty one."""
    with pytest.raises(LedgerError, match="ketqua demo"):
        Ledger.open(tmp_path / "none.sqlite3", readonly=True)
    assert not (tmp_path / "none.sqlite3").exists()


def test_a_specimen_retested_twice_is_listed_once(tmp_path: Path) -> None:
    """A specimen whose individual rerun failed again appears once in the retest list, under the newer run."""
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        ledger.commit_plate(_plate(ledger, "1" * 64, [], retests=["S7"]))
        ledger.commit_plate(_plate(ledger, "2" * 64, [], retests=["S7"]))
        (row,) = ledger.open_retests()
        assert row["specimen_id"] == "S7" and row["run_id"] == "2" * 64
        assert ledger.counts()["open_retests"] == 1
