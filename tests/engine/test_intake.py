"""Intake: only complete files are taken, bytes are archived and recorded before the inbox copy goes."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from pathlib import Path

import pytest

from engine.config import IntakeSettings
from engine.datadir import DataDir
from engine.intake import Intake, ignored
from engine.ledger import Ledger


@pytest.fixture
def intake(tmp_path: Path) -> Intake:
    """An intake over a fresh data folder, stable time 0.2 s."""
    data = DataDir.at(tmp_path / "data").create()
    return Intake(data, Ledger.open(data.ledger), IntakeSettings(stable_seconds=0.2))


def test_temporary_and_hidden_names_are_ignored() -> None:
    """Names instruments and copy tools use while writing are never taken."""
    for name in (".plate.txt", "plate.txt.part", "plate.tmp", "sub/.x.csv", "~$manifest.csv", "a.crdownload"):
        assert ignored(name), name
    assert not ignored("plate.txt") and not ignored("sub/manifest.csv")


def test_file_is_taken_only_after_it_has_been_stable(intake: Intake) -> None:
    """A file is left alone while its size or mtime keeps changing and taken once stable."""
    path = intake.data.inbox / "plate.txt"
    path.write_bytes(b"part one")
    assert intake.scan() == []
    with open(path, "ab") as fh:
        fh.write(b" and two")
    assert intake.scan() == []
    time.sleep(0.25)
    (taken,) = intake.scan()
    assert taken.fresh and taken.name == "plate.txt" and taken.kind == "analyzer"
    assert (intake.data.archive / taken.sha256).read_bytes() == b"part one and two"
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
    path.write_bytes(b"run bytes")
    real = intake.ledger.receive_file

    def crash(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("power cut")

    monkeypatch.setattr(intake.ledger, "receive_file", crash)
    with pytest.raises(RuntimeError):
        intake.scan(stable_seconds=0)
    sha = hashlib.sha256(b"run bytes").hexdigest()
    assert path.exists() and (intake.data.archive / sha).read_bytes() == b"run bytes"
    monkeypatch.setattr(intake.ledger, "receive_file", real)
    (taken,) = intake.scan(stable_seconds=0)
    assert taken.fresh and not path.exists()


def test_disk_full_is_retried_then_parked_never_deleted(intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that cannot be archived (disk full) is retried with backoff, then parked with an event, and stays in the inbox."""
    import errno

    import engine.intake as intake_module

    calls = []

    def disk_full(*args: object) -> None:
        calls.append(time.monotonic())
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(intake_module, "write_archive", disk_full)
    intake.settings = IntakeSettings(stable_seconds=0, max_attempts=3, backoff_seconds=0.05)
    path = intake.data.inbox / "plate.txt"
    path.write_bytes(b"x")
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        intake.scan(stable_seconds=0)
        time.sleep(0.005)
    assert path.exists() and len(calls) == 3
    assert calls[2] - calls[1] > calls[1] - calls[0] >= 0.05  # backoff doubles
    (event,) = intake.ledger.events(kind="parked")
    assert event["detail"]["path"] == "plate.txt" and "No space left" in event["detail"]["error"]


@pytest.mark.slow
def test_slow_chunked_and_renamed_writes_are_never_taken_half_written(tmp_path: Path) -> None:
    """Hundreds of files written slowly in chunks (or under a temporary name then renamed) are only ever taken whole."""
    data = DataDir.at(tmp_path / "data").create()
    intake = Intake(data, Ledger.open(data.ledger), IntakeSettings(stable_seconds=0.25))
    rng = random.Random(7)
    contents = {f"f{i:04d}.txt": os.urandom(rng.randrange(200, 6000)) for i in range(300)}
    names = list(contents)

    def writer(part: list[str], seed: int) -> None:
        r = random.Random(seed)
        for name in part:
            body = contents[name]
            via_rename = r.random() < 0.3
            target = data.inbox / name
            path = target.with_name(f".{name}.part") if via_rename else target
            with open(path, "wb") as fh:
                cuts = sorted(r.sample(range(1, len(body)), 4))
                for a, b in zip([0, *cuts], [*cuts, len(body)]):
                    fh.write(body[a:b])
                    fh.flush()
                    time.sleep(r.uniform(0, 0.06))  # pauses well under the stable time
            if via_rename:
                os.replace(path, target)

    threads = [threading.Thread(target=writer, args=(names[i::6], i)) for i in range(6)]
    for t in threads:
        t.start()
    taken = []
    while any(t.is_alive() for t in threads) or len(taken) < len(contents):
        taken += intake.scan()
        time.sleep(0.01)
        if len(taken) >= len(contents) and not any(t.is_alive() for t in threads):
            break
    expected = {hashlib.sha256(body).hexdigest() for body in contents.values()}
    got = {t.sha256 for t in taken}
    assert got == expected  # every file taken, and only whole files (a partial has another hash)
    assert len(taken) == len(contents)
    assert intake.partial_skips > 0  # the trials did exercise files seen mid-write


def test_inotify_takes_renamed_files_at_once_and_never_open_ones(intake: Intake) -> None:
    """With inotify, a file renamed into place (also in a subfolder) is taken without the stable wait; one still open is not."""
    from engine.demo import write_atomically

    intake.settings = IntakeSettings(stable_seconds=30)
    (intake.data.inbox / "site-a").mkdir()
    if not intake.start_watch():
        pytest.skip("no inotify on this platform")
    try:
        write_atomically(intake.data.inbox / "site-a" / "plate.txt", b"complete bytes")
        with open(intake.data.inbox / "writing.txt", "wb") as fh:
            fh.write(b"half")
            fh.flush()
            intake.events()
            assert [t.name for t in intake.scan()] == ["site-a/plate.txt"]
        intake.events()
        (closed,) = intake.scan()  # closed after writing: complete
        assert closed.name == "writing.txt"
        # A folder created later is watched from then on; what landed in it before the watch
        # existed falls back to the stable-time rule (nothing proves it complete).
        write_atomically(intake.data.inbox / "site-b" / "early.txt", b"early")
        intake.events()
        assert intake.scan() == []
        write_atomically(intake.data.inbox / "site-b" / "later.txt", b"later")
        intake.events()
        assert [t.name for t in intake.scan()] == ["site-b/later.txt"]
    finally:
        intake.stop_watch()
