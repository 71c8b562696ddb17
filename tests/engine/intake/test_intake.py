"""Intake: only complete files are taken, bytes are archived and recorded before the inbox copy goes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from engine.config import IntakeSettings
from engine.datadir import DataDir
from engine.intake.watcher import Intake, ignored
from engine.ledger.sqlite import Ledger


class Clock:
    """A monotonic clock the test moves by hand, so no test waits on, or depends on, machine speed."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def intake(tmp_path: Path, clock: Clock) -> Intake:
    """An intake over a fresh data folder, stable time 0.2 s, its clock in the test's hand."""
    data = DataDir.at(tmp_path / "data").create()
    return Intake(data, Ledger.open(data.ledger), IntakeSettings(stable_seconds=0.2, incomplete_seconds=60), clock=clock)


def test_temporary_and_hidden_names_are_ignored() -> None:
    """Names instruments and copy tools use while writing are never taken."""
    for name in (".plate.txt", "plate.txt.part", "plate.tmp", "sub/.x.csv", "~$manifest.csv", "a.crdownload"):
        assert ignored(name), name
    assert not ignored("plate.txt") and not ignored("sub/manifest.csv")


def test_file_is_taken_only_after_it_has_been_stable(intake: Intake, clock: Clock) -> None:
    """A file is left alone while its size or mtime keeps changing and taken once stable."""
    path = intake.data.inbox / "plate.txt"
    path.write_bytes(b"part one\n")
    assert intake.scan() == []
    clock.advance(0.15)
    with open(path, "ab") as fh:
        fh.write(b"and two\n")
    clock.advance(0.15)
    assert intake.scan() == []  # 0.3 s since it appeared, but only 0.15 s since it grew
    clock.advance(0.2)
    assert intake.scan() == []  # stable for 0.2 s, but it was seen unchanged 0.3 s between changes: twice that
    clock.advance(0.4)
    (taken,) = intake.scan()
    assert taken.fresh and taken.name == "plate.txt" and taken.kind == "analyzer"
    assert (intake.data.archive / taken.sha256).read_bytes() == b"part one\nand two\n"
    assert not path.exists()
    assert intake.ledger.file(taken.sha256)["state"] == "received"


def test_same_bytes_under_another_name_produce_nothing_new(intake: Intake) -> None:
    """Re-dropping identical bytes under any name is recognised as a duplicate and removed from the inbox."""
    (intake.data.inbox / "a.csv").write_bytes(b"pool_id,specimen_id\n")
    (first,) = intake.scan(stable_seconds=0)
    (intake.data.inbox / "deep" / "er").mkdir(parents=True)
    (intake.data.inbox / "deep" / "er" / "b.csv").write_bytes(b"pool_id,specimen_id\n")
    (second,) = intake.scan(stable_seconds=0)
    assert first.fresh and not second.fresh and first.sha256 == second.sha256
    assert first.kind == "manifest"
    assert len(intake.ledger.files()) == 1
    assert list(intake.data.inbox.rglob("*.csv")) == []


def test_symlinks_are_refused_and_their_target_untouched(intake: Intake, tmp_path: Path) -> None:
    """A symbolic link in the inbox is moved aside with a note; the file it points to is neither read nor moved."""
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"not for the lab")
    os.symlink(outside, intake.data.inbox / "link.txt")
    os.symlink(tmp_path, intake.data.inbox / "folder-link")
    assert intake.scan(stable_seconds=0) == []
    assert outside.read_bytes() == b"not for the lab"
    assert not (intake.data.inbox / "link.txt").exists()
    assert "symbolic link" in (intake.data.quarantine / "link.txt.error.txt").read_text(encoding="utf-8")
    assert intake.ledger.files() == []
    assert {e["detail"]["path"] for e in intake.ledger.events(kind="refused")} == {"link.txt", "folder-link"}


def test_archive_is_written_before_the_ledger_and_the_inbox_copy_removed_last(intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    """When recording fails, the inbox file stays (nothing lost) and the next scan takes it again."""
    path = intake.data.inbox / "plate.txt"
    path.write_bytes(b"run bytes\n")
    real = intake.ledger.receive_file

    def crash(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("power cut")

    monkeypatch.setattr(intake.ledger, "receive_file", crash)
    with pytest.raises(RuntimeError):
        intake.scan(stable_seconds=0)
    sha = hashlib.sha256(b"run bytes\n").hexdigest()
    assert path.exists() and (intake.data.archive / sha).read_bytes() == b"run bytes\n"
    monkeypatch.setattr(intake.ledger, "receive_file", real)
    (taken,) = intake.scan(stable_seconds=0)
    assert taken.fresh and not path.exists()


def test_disk_full_is_retried_then_parked_never_deleted(intake: Intake, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that cannot be archived (disk full) is retried with backoff, then parked with an event, and stays in the inbox."""
    import errno

    import engine.intake.watcher as intake_module

    calls = []

    def disk_full(*args: object) -> None:
        calls.append(clock())
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(intake_module, "write_archive", disk_full)
    intake.settings = IntakeSettings(stable_seconds=0, max_attempts=3, backoff_seconds=0.05)
    path = intake.data.inbox / "plate.txt"
    path.write_bytes(b"x\n")
    for _ in range(400):  # 2 s of the intake's clock
        intake.scan(stable_seconds=0)
        clock.advance(0.005)
    assert path.exists() and len(calls) == 3
    assert calls[2] - calls[1] > calls[1] - calls[0] >= 0.05 - 1e-9  # backoff doubles
    (event,) = intake.ledger.events(kind="parked")
    assert event["detail"]["path"] == "plate.txt" and "No space left" in event["detail"]["error"]


def _leases_work(folder: Path) -> bool:
    """Whether this filesystem answers read-lease requests (the open-for-writing test); else those tests skip."""
    from engine.intake.linux import open_for_writing

    probe = folder / ".lease-probe"
    probe.write_bytes(b"x")
    fd = os.open(probe, os.O_RDONLY)
    try:
        with open(probe, "ab"):
            held = open_for_writing(fd)
        return held is True and open_for_writing(fd) is False
    finally:
        os.close(fd)
        probe.unlink()


def test_inotify_rename_is_complete_at_once_but_a_close_only_wakes_the_scan(intake: Intake, clock: Clock) -> None:
    """A file renamed into place (also in a subfolder) is taken at once; a close after writing does not make a file complete."""
    from engine.files import write_atomically

    intake.settings = IntakeSettings(stable_seconds=30)
    (intake.data.inbox / "site-a").mkdir()
    if not intake.start_watch():
        pytest.skip("no inotify on this platform")
    try:
        write_atomically(intake.data.inbox / "site-a" / "plate.txt", b"complete bytes\n")
        chunked = intake.data.inbox / "chunked.txt"
        for chunk in (b"line one\n", b"line two\n"):  # the writer reopens the file for every chunk
            with open(chunked, "ab") as fh:
                fh.write(chunk)
            intake.events()
            assert [t.name for t in intake.scan()] in (["site-a/plate.txt"], [])
        assert chunked.exists() and intake.ledger.files(kind="analyzer")[0]["name"] == "site-a/plate.txt"
        clock.advance(30)
        intake.events()
        (closed,) = intake.scan()  # only once stable for stable_seconds
        assert closed.name == "chunked.txt"
        # A folder created later is watched from then on; what landed in it before the watch
        # existed falls back to the stable-time rule (nothing proves it complete).
        write_atomically(intake.data.inbox / "site-b" / "early.txt", b"early\n")
        intake.events()
        assert intake.scan() == []
        write_atomically(intake.data.inbox / "site-b" / "later.txt", b"later\n")
        intake.events()
        assert [t.name for t in intake.scan()] == ["site-b/later.txt"]
        # Renamed into place but cut mid-line: the completeness test still applies.
        write_atomically(intake.data.inbox / "cut.txt", b"whole line\nhalf a li")
        intake.events()
        assert intake.scan() == []
    finally:
        intake.stop_watch()


def test_file_held_open_for_writing_is_never_taken(intake: Intake, clock: Clock) -> None:
    """One writer, one descriptor, pauses far longer than stable_seconds at line ends: nothing is taken until it closes."""
    if not _leases_work(intake.data.inbox):
        pytest.skip("this filesystem gives no read leases")
    path = intake.data.inbox / "plate.txt"
    with open(path, "wb") as fh:
        for n in range(4):
            fh.write(f"line {n}\n".encode())
            fh.flush()
            clock.advance(3.0)
            assert intake.scan() == [] and path.exists()
        clock.advance(3600)  # longer than incomplete_seconds too: an open file is not quarantined
        assert intake.scan() == []
    (taken,) = intake.scan()  # closed, and unchanged for longer than stable_seconds
    assert (intake.data.archive / taken.sha256).read_bytes() == b"line 0\nline 1\nline 2\nline 3\n"
    assert intake.ledger.events(kind="quarantined") == []


def test_file_that_grows_while_it_is_archived_is_neither_recorded_nor_removed(intake: Intake, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that comes back while the bytes are hashed and archived: nothing recorded, the file stays, and it is taken whole later."""
    import engine.intake.watcher as intake_module

    path = intake.data.inbox / "plate.txt"
    path.write_bytes(b"first part\n")
    real = intake_module.write_archive

    def writer_returns(archive: Path, sha: str, data: bytes) -> Path:
        with open(path, "ab") as fh:
            fh.write(b"second part\n")
        return real(archive, sha, data)

    monkeypatch.setattr(intake_module, "write_archive", writer_returns)
    assert intake.scan(stable_seconds=0) == []
    assert path.exists() and intake.ledger.files() == []
    monkeypatch.setattr(intake_module, "write_archive", real)
    clock.advance(0.1)
    assert intake.scan() == []  # it changed: the stable time started again when that was seen
    clock.advance(0.1)
    (taken,) = intake.scan()
    assert (intake.data.archive / taken.sha256).read_bytes() == b"first part\nsecond part\n"
    assert len(intake.ledger.files()) == 1


def test_file_that_changes_after_recording_is_left_in_the_inbox(intake: Intake, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file whose bytes changed between recording and acknowledgement is not removed: the rest is taken later."""
    path = intake.data.inbox / "plate.txt"
    path.write_bytes(b"first part\n")
    real = intake.ledger.receive_file

    def writer_returns(*args: object, **kwargs: object) -> bool:
        fresh = real(*args, **kwargs)  # type: ignore[arg-type]
        with open(path, "ab") as fh:
            fh.write(b"second part\n")
        return fresh

    monkeypatch.setattr(intake.ledger, "receive_file", writer_returns)
    intake.scan(stable_seconds=0)
    assert path.exists()
    monkeypatch.setattr(intake.ledger, "receive_file", real)
    clock.advance(0.2)
    (taken,) = intake.scan()
    assert (intake.data.archive / taken.sha256).read_bytes() == b"first part\nsecond part\n" and not path.exists()


def test_cut_short_file_waits_then_is_quarantined_as_truncated(intake: Intake, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """A file ending mid-line waits (said once); growth restarts its clock; unchanged for incomplete_seconds it is quarantined."""
    import logging

    caplog.set_level(logging.INFO, logger="ketqua")
    path = intake.data.inbox / "plate.txt"
    path.write_bytes(b"Well\tSample\n1\tPOOL-0")
    for _ in range(5):
        clock.advance(10)
        assert intake.scan() == [] and path.exists()
    waits = [r for r in caplog.records if r.getMessage() == "waiting"]
    assert len(waits) == 1 and "middle of a line" in waits[0].fields["why"]  # type: ignore[attr-defined]
    with open(path, "ab") as fh:
        fh.write(b"01\n2\tPOOL-0")  # still arriving: the 60 s start again
    assert intake.scan() == []
    clock.advance(59)
    assert intake.scan() == []
    clock.advance(2)
    (taken,) = intake.scan()
    assert taken.quarantined and not path.exists()
    row = intake.ledger.file(taken.sha256)
    assert row["state"] == "quarantined" and row["error"].startswith("appears truncated: ")
    (event,) = intake.ledger.events(kind="quarantined")
    assert event["detail"]["reason"] == "truncated"


def test_empty_file_is_set_aside_with_a_reason(intake: Intake, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    """An empty file waits (instrument software often creates it first), then is moved to quarantine/ with a note and an event."""
    import logging

    caplog.set_level(logging.INFO, logger="ketqua")
    path = intake.data.inbox / "empty.txt"
    path.touch()
    assert intake.scan() == []
    clock.advance(30)
    assert intake.scan() == [] and path.exists()
    assert any(r.getMessage() == "waiting" and "empty" in r.fields["why"] for r in caplog.records)  # type: ignore[attr-defined]
    clock.advance(31)
    assert intake.scan() == [] and not path.exists()
    note = (intake.data.quarantine / "empty.txt.error.txt").read_text(encoding="utf-8")
    assert "File: empty.txt" in note and "empty" in note and "What to do" in note
    (event,) = intake.ledger.events(kind="refused")
    assert event["detail"]["path"] == "empty.txt" and "empty" in event["detail"]["reason"]
    assert intake.ledger.files() == []


def test_ignored_names_are_logged_once(intake: Intake, caplog: pytest.LogCaptureFixture) -> None:
    """A hidden or temporary name is never taken, and said once (not at every poll)."""
    import logging

    caplog.set_level(logging.INFO, logger="ketqua")
    (intake.data.inbox / ".plate.txt.part").write_bytes(b"x\n")
    for _ in range(3):
        assert intake.scan(stable_seconds=0) == []
    said = [r for r in caplog.records if r.getMessage() == "ignored"]
    assert len(said) == 1 and said[0].fields["path"] == ".plate.txt.part"  # type: ignore[attr-defined]


def test_hard_link_is_refused_and_its_target_never_read(intake: Intake, tmp_path: Path) -> None:
    """A hard link to a private file outside the inbox is moved aside unread; nothing of it reaches archive/."""
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"not for the lab\n")
    outside.chmod(0o600)
    os.link(outside, intake.data.inbox / "plate.txt")
    assert intake.scan(stable_seconds=0) == []
    assert outside.read_bytes() == b"not for the lab\n" and (outside.stat().st_mode & 0o777) == 0o600
    assert not (intake.data.inbox / "plate.txt").exists()
    assert not intake.data.archive.exists() or list(intake.data.archive.iterdir()) == []
    moved = intake.data.quarantine / "plate.txt.link"
    assert moved.stat().st_ino == outside.stat().st_ino and (moved.stat().st_mode & 0o777) == 0o600  # moved, not copied
    assert "hard link" in (intake.data.quarantine / "plate.txt.error.txt").read_text(encoding="utf-8")
    (event,) = intake.ledger.events(kind="refused")
    assert event["detail"]["path"] == "plate.txt" and "hard link" in event["detail"]["reason"]


def test_symlink_swapped_in_after_listing_is_not_followed(intake: Intake, tmp_path: Path) -> None:
    """A file replaced by a symbolic link between listing and reading is refused (opened without following links)."""
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"not for the lab\n")
    path = intake.data.inbox / "plate.txt"
    path.write_bytes(b"plate\n")
    (listed,) = intake.ready(stable_seconds=0)
    path.unlink()
    os.symlink(outside, path)
    assert intake.take(listed) is None
    assert not path.is_symlink() and outside.read_bytes() == b"not for the lab\n"
    assert intake.ledger.files() == [] and intake.ledger.events(kind="refused")


def test_backfill_refuses_empty_and_quarantines_cut_files(data_dir: DataDir, tmp_path: Path) -> None:
    """``ingest_paths`` says why it does not take an empty file, and quarantines a cut one as truncated."""
    from engine.pipeline.engine import Engine

    folder = tmp_path / "old-runs"
    folder.mkdir()
    (folder / "empty.txt").touch()
    whole = (Path(__file__).resolve().parents[2] / "data" / "quantstudio_7500_results.txt").read_bytes()
    (folder / "cut.txt").write_bytes(whole[: len(whole) // 2 - 3] if whole[len(whole) // 2 - 4] not in b"\r\n" else whole[:-5])
    said: list[tuple[str, str]] = []
    with Engine(data_dir, workers=0, certificates=False) as engine:
        taken = engine.ingest_paths([folder], refused=lambda path, why: said.append((path.name, why)))
        assert [(t.name, t.quarantined) for t in taken] == [("cut.txt", True)]
        assert engine.ledger.file(taken[0].sha256)["state"] == "quarantined"
        assert [e["detail"]["path"] for e in engine.ledger.events(kind="refused")] == [str(folder / "empty.txt")]
    assert dict(said)["empty.txt"].startswith("is empty") and "truncated" in dict(said)["cut.txt"]
    report = (data_dir.quarantine / "cut.txt.error.txt").read_text(encoding="utf-8")
    assert "appears truncated" in report and "Export the run again" in report


def test_engine_quarantines_a_cut_inbox_file_with_a_readable_report(data_dir: DataDir) -> None:
    """A one-shot run (nothing is still writing) quarantines a cut export at once, through the engine's quarantine report."""
    from engine.pipeline.engine import Engine

    whole = (Path(__file__).resolve().parents[2] / "data" / "quantstudio_7500_results.txt").read_bytes()
    cut = next(n for n in range(len(whole) // 2, len(whole)) if whole[n - 1 : n] not in (b"\r", b"\n"))
    (data_dir.inbox / "plate.txt").write_bytes(whole[:cut])
    with Engine(data_dir, workers=0, certificates=False) as engine:
        summary = engine.run_once()
        (row,) = engine.ledger.files()
        assert summary.quarantined == 1 and row["state"] == "quarantined"
    report = (data_dir.quarantine / "plate.txt.error.txt").read_text(encoding="utf-8")
    assert "File: plate.txt" in report and "appears truncated: the file ends in the middle of a line" in report
    assert "Export the run again" in report and not (data_dir.inbox / "plate.txt").exists()


def test_writer_seen_pausing_is_waited_on_past_its_pauses_at_record_boundaries(intake: Intake, clock: Clock) -> None:
    """A file growing by whole records with pauses longer than stable_seconds is taken only whole, once quiet for twice its longest pause."""
    body = (Path(__file__).resolve().parents[2] / "data" / "quantstudio_7500_results.txt").read_bytes()
    lines = body.splitlines(keepends=True)
    cuts = [len(b"".join(lines[:n])) for n in (len(lines) // 3, len(lines) // 2, 2 * len(lines) // 3)]
    path = intake.data.inbox / "plate.txt"
    path.write_bytes(body[:40])  # the first piece stops mid-line: seen, judged cut short
    assert intake.scan() == []
    for cut in [*cuts, len(body)]:
        clock.advance(0.5)  # the writer pauses 0.5 s, more than stable_seconds (0.2 s)
        assert intake.scan() == [], f"taken at {path.stat().st_size} of {len(body)} bytes"
        with open(path, "ab") as fh:
            fh.write(body[path.stat().st_size : cut])
        assert intake.scan() == []
    clock.advance(0.5)
    assert intake.scan() == []  # quiet for one pause only: the writer may still come back
    clock.advance(0.6)
    (taken,) = intake.scan()
    assert (intake.data.archive / taken.sha256).read_bytes() == body
