"""`ketqua status`: what waits in a data folder (inbox, plates, pools, quarantine, retests), with ages."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.cli.commands.status import collect, human_age, render
from engine.cli.main import main
from engine.datadir import DataDir
from engine.demo import manifest_csv, quantstudio_text, simulate_plate
from engine.files import write_atomically
from engine.ledger.sqlite import Ledger
from engine.pipeline.engine import Engine


def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(list(argv))
    return status, out.getvalue()


def _stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (59.9, "59 s"), (60, "1 min"), (3599, "59 min"), (3600, "1 h"), (3 * 3600 + 12 * 60 + 5, "3 h 12 min"),
     (86400, "1 d"), (2 * 86400 + 4 * 3600 + 59, "2 d 4 h"), (-5, "0 s")],
)
def test_human_age(seconds: float, text: str) -> None:
    """Ages read the way a technician says them: seconds, minutes, hours and minutes, days and hours."""
    assert human_age(seconds) == text


def test_fresh_data_folder_shows_nothing_waiting(tmp_path: Path) -> None:
    """A data folder that does not exist yet, or is empty, reports nothing waiting and exits 0 (text and JSON)."""
    for root in (tmp_path / "missing", DataDir.at(tmp_path / "empty").create().root):
        status, out = _cli("status", "--json", "--data", str(root))
        snapshot = json.loads(out)
        assert status == 0
        assert snapshot["inbox"] == snapshot["plates_waiting_manifest"] == snapshot["pools_waiting_plate"] == []
        assert snapshot["quarantined"] == snapshot["parked"] == [] and snapshot["retests"]["open"] == 0
        status, out = _cli("status", "--data", str(root))
        assert status == 0 and "Retests: none" in out


def test_empty_unmigrated_ledger_is_not_an_error(tmp_path: Path) -> None:
    """A ledger file that exists but has no schema yet (ketqua run just starting) reads as nothing waiting."""
    data = DataDir.at(tmp_path / "d").create()
    sqlite3.connect(data.ledger).close()
    snapshot = collect(data, now=datetime(2026, 11, 29, tzinfo=UTC))
    assert snapshot["pools_waiting_plate"] == [] and any("being created" in n for n in snapshot["notes"])


@pytest.fixture
def busy(data_dir: DataDir) -> DataDir:
    """A data folder where one plate is done (with retests), one waits for its manifest, one manifest
    waits for its plate, and one file was quarantined."""
    done = simulate_plate(41, pool_size=2, prevalence=0.1)
    waiting = simulate_plate(42, pool_size=2)
    lonely = simulate_plate(43, pool_size=2)
    write_atomically(data_dir.inbox / "done-manifest.csv", manifest_csv(done.manifest))
    write_atomically(data_dir.inbox / "done.txt", quantstudio_text(done))
    write_atomically(data_dir.inbox / "waiting.txt", quantstudio_text(waiting))
    write_atomically(data_dir.inbox / "lonely-manifest.csv", manifest_csv(lonely.manifest))
    write_atomically(data_dir.inbox / "junk.txt", b"this is not an analyzer export\n")
    with Engine(data_dir, workers=0, certificates=False) as engine:
        engine.run_once()
    assert not list(data_dir.inbox.iterdir())
    return data_dir


def test_status_lists_every_kind_of_wait_with_ages(busy: DataDir) -> None:
    """Plates without manifest, manifest pools without plate, quarantined files, retests and inbox files
    each appear with their age measured against the injected clock."""
    with Ledger.open(busy.ledger, readonly=True) as ledger:
        waiting_row = ledger.files(["waiting_manifest"])[0]
    now = _stamp(waiting_row["received_at"]) + timedelta(hours=3, minutes=12, seconds=30)
    cut = busy.inbox / "cut.txt"
    cut.write_bytes(quantstudio_text(simulate_plate(44))[:5000])  # ends mid-line
    (busy.inbox / ".next.txt.part").write_bytes(b"partial")
    (busy.inbox / "~$open.xlsx").write_bytes(b"excel lock")  # never taken, never waiting
    for path, minutes in ((cut, 12), (busy.inbox / ".next.txt.part", 2)):
        os.utime(path, ((now - timedelta(minutes=minutes)).timestamp(),) * 2)

    snapshot = collect(busy, now=now)

    assert [f["name"] for f in snapshot["inbox"]] == ["cut.txt", ".next.txt.part"]
    cut_item, part_item = snapshot["inbox"]
    assert cut_item["age_seconds"] == 12 * 60 and "middle of a line" in cut_item["waiting_for"]
    assert cut_item["size"] == 5000 and "temporary name" in part_item["waiting_for"]

    (plate,) = snapshot["plates_waiting_manifest"]
    assert plate["name"] == "waiting.txt" and plate["age_seconds"] == 3 * 3600 + 12 * 60 + 30
    lonely = simulate_plate(43, pool_size=2)
    waiting_pools = {w.pool_id for w in simulate_plate(42, pool_size=2).wells if w.pool_id}
    assert plate["missing"] == len(waiting_pools) and set(plate["missing_pools"]) <= waiting_pools
    assert plate["quarantine_in_seconds"] == 72 * 3600 - plate["age_seconds"]

    pools = snapshot["pools_waiting_plate"]
    assert {p["pool_id"] for p in pools} == {r["pool_id"] for r in lonely.manifest}
    assert {p["manifest"] for p in pools} == {"lonely-manifest.csv"}
    assert sum(p["specimens"] for p in pools) == len(lonely.manifest)
    assert all(p["age_seconds"] > 3 * 3600 for p in pools)

    (bad,) = snapshot["quarantined"]
    assert bad["name"] == "junk.txt" and bad["error"] and bad["report"] == "quarantine/junk.txt.error.txt"
    assert (busy.root / bad["report"]).exists() and bad["age_seconds"] > 3 * 3600

    done = simulate_plate(41, pool_size=2, prevalence=0.1)
    retests = snapshot["retests"]
    assert retests["open"] == sum(1 for o in done.expected.values() if o == "RETEST") > 0
    assert retests["oldest"]["age_seconds"] > 3 * 3600 and retests["oldest"]["created_at"].endswith("Z")

    text = render(snapshot)
    assert "waiting.txt  for 3 h 12 min" in text
    assert "cut.txt  5 KB, for 12 min: not complete yet" in text
    assert "lonely-manifest.csv  for 3 h" in text and f"{len(pools)} pool(s)" in text
    assert "junk.txt  for 3 h" in text and "quarantine/junk.txt.error.txt" in text
    assert f"Retests: {retests['open']} open" in text


def test_inbox_links_and_subfolders_are_listed_read_only(tmp_path: Path) -> None:
    """A symlink is listed as one intake will move aside, a file in a subfolder by its relative name; nothing moves."""
    data = DataDir.at(tmp_path / "d").create()
    (data.inbox / "site-2").mkdir()
    whole = quantstudio_text(simulate_plate(45))
    (data.inbox / "site-2" / "run.txt").write_bytes(whole)
    (tmp_path / "elsewhere.txt").write_bytes(whole)
    (data.inbox / "link.txt").symlink_to(tmp_path / "elsewhere.txt")
    moment = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
    for path in (data.inbox / "site-2" / "run.txt", data.inbox / "link.txt"):
        os.utime(path, ((moment - timedelta(hours=1)).timestamp(),) * 2, follow_symlinks=False)
    items = {f["name"]: f for f in collect(data, now=moment)["inbox"]}
    assert set(items) == {"site-2/run.txt", "link.txt"}
    assert "symbolic link" in items["link.txt"]["waiting_for"]
    assert "nothing is taking files" in items["site-2/run.txt"]["waiting_for"] and items["site-2/run.txt"]["age_seconds"] == 3600
    assert (data.inbox / "link.txt").is_symlink() and (data.inbox / "site-2" / "run.txt").exists()


def test_status_reads_while_the_ledger_is_being_written(busy: DataDir) -> None:
    """status opens the ledger read-only: it works while another connection holds the write lock."""
    with Ledger.open(busy.ledger) as writer:
        with writer.transaction():
            writer._event("test", None)
            status, out = _cli("status", "--json", "--data", str(busy.root))
    assert status == 0 and json.loads(out)["plates_waiting_manifest"]


def test_a_committed_plate_takes_its_pools_off_the_waiting_list(busy: DataDir) -> None:
    """Once the plate of the lonely manifest is processed, its pools no longer wait for a plate."""
    write_atomically(busy.inbox / "lonely.txt", quantstudio_text(simulate_plate(43, pool_size=2)))
    with Engine(busy, workers=0, certificates=False) as engine:
        engine.run_once()
    snapshot = collect(busy, now=datetime.now(UTC))
    assert snapshot["pools_waiting_plate"] == []


def test_a_complete_inbox_file_names_the_running_engine_that_will_take_it(tmp_path: Path) -> None:
    """While `ketqua run` holds the data folder, a complete file waits for it, and status names it instead of asking whether it runs."""
    from engine.cli.commands.status import collect
    from engine.datadir import DataDir

    data = DataDir.at(tmp_path / "d").create()
    (data.inbox / "run.txt").write_bytes((Path(__file__).resolve().parents[2] / "data" / "quantstudio_7500_results.txt").read_bytes())
    now = datetime.fromtimestamp((data.inbox / "run.txt").stat().st_mtime + 3600, UTC)
    with data.lock("ketqua run --data d"):
        (item,) = collect(data, now=now)["inbox"]
        assert "`ketqua run --data d` (pid" in item["waiting_for"]
    (item,) = collect(data, now=now)["inbox"]
    assert "start `ketqua run`" in item["waiting_for"]
