"""Online backups: a copy taken while plates are being committed restores to the same feed, and its results verify."""

from __future__ import annotations

import contextlib
import io
import json
import threading
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.datadir import DataDir
from engine.demo import manifest_csv, quantstudio_text, simulate_plate
from engine.files import write_atomically
from engine.ledger.backup import BackupError, backup, restore, verify_backup
from engine.ledger.sqlite import Ledger
from engine.pipeline.engine import Engine
from signing.verify import verify_jws


def _drop(data: DataDir, seed: int) -> None:
    plate = simulate_plate(seed, pool_size=2, prevalence=0.1)
    write_atomically(data.inbox / f"m{seed}.csv", manifest_csv(plate.manifest))
    write_atomically(data.inbox / f"p{seed}.txt", quantstudio_text(plate))


def _feed(data: DataDir, upto: int | None = None) -> list[dict]:
    """The feed rows, certificate paths relative to the data folder (a restored folder has its own)."""
    with Ledger.open(data.ledger, readonly=True) as ledger:
        rows = ledger.feed_page(0, 1_000_000)
    for row in rows:
        if row["certificate"]:
            row["certificate"] = str(Path(row["certificate"]).relative_to(data.root))
    return [r for r in rows if upto is None or r["seq"] <= upto]


def test_backup_during_ingest_restores_the_feed_at_the_snapshot(data_dir: DataDir, tmp_path: Path) -> None:
    """A thread commits plates while the backup runs: the restored feed is exactly the source's first rows up to the
    backup's seq, every restored result's JWS verifies against the lab CA, and certificates point into the new folder."""
    _drop(data_dir, 1)
    with Engine(data_dir, workers=0, certificates=True) as engine:
        engine.run_once()  # one plate with its PDFs before the backup
    for seed in (2, 3, 4, 5):
        _drop(data_dir, seed)
    first_plate, backing_up = threading.Event(), threading.Event()

    def progress(_: dict) -> None:
        first_plate.set()
        backing_up.wait(timeout=60)  # the next plates commit while the backup copies

    def ingest() -> None:
        with Engine(data_dir, workers=0, certificates=False) as engine:
            engine.run_once(progress=progress)

    worker = threading.Thread(target=ingest)
    worker.start()
    assert first_plate.wait(timeout=120)
    backing_up.set()
    report = backup(data_dir, tmp_path / "bk")
    worker.join()
    source = _feed(data_dir)
    assert report.last_seq > 0 and source[-1]["seq"] >= report.last_seq

    restored = DataDir.at(tmp_path / "restored")
    restore(tmp_path / "bk", restored)
    copy = _feed(restored)
    assert copy == _feed(data_dir, report.last_seq) and len(copy) == report.results
    with Ledger.open(restored.ledger, readonly=True) as ledger:
        pdfs = [r["certificate"] for r in ledger.feed_page(0, 1_000_000) if r["certificate"]]
    assert pdfs and all(Path(p).is_file() and Path(p).is_relative_to(restored.root) for p in pdfs)
    ca = str(data_dir.keys / "ca.pem")
    for row in copy:
        report_ = verify_jws(row["jws"], [ca], payload=row["payload"].encode("utf-8"))
        assert report_.content["id"] == row["id"]


def test_restore_refuses_a_damaged_backup_and_a_non_empty_target(data_dir: DataDir, tmp_path: Path) -> None:
    """One changed byte in the backup, or a target holding anything, and nothing is restored."""
    _drop(data_dir, 7)
    with Engine(data_dir, workers=0, certificates=False) as engine:
        engine.run_once()
    backup(data_dir, tmp_path / "bk")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    with pytest.raises(BackupError, match="not empty"):
        restore(tmp_path / "bk", DataDir.at(busy))
    manifest = json.loads((tmp_path / "bk" / "backup-manifest.json").read_text())
    assert not manifest["keys"] and not any(e["path"].startswith("keys/") for e in manifest["files"])
    victim = tmp_path / "bk" / next(e["path"] for e in manifest["files"] if e["path"].startswith("archive/"))
    victim.write_bytes(victim.read_bytes() + b"!")
    with pytest.raises(BackupError, match="damaged"):
        verify_backup(tmp_path / "bk")
    assert not (tmp_path / "fresh").exists() or not any((tmp_path / "fresh").iterdir())
    with pytest.raises(BackupError, match=victim.name):
        restore(tmp_path / "bk", DataDir.at(tmp_path / "fresh"))


def test_cli_backup_with_keys_keeps_them_owner_only(data_dir: DataDir, tmp_path: Path) -> None:
    """`ketqua backup DEST --keys` copies keys/ as 0600 files in 0700 folders; `restore` gives them back."""
    _drop(data_dir, 9)
    with Engine(data_dir, workers=0, certificates=False) as engine:
        engine.run_once()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["backup", str(tmp_path / "bk"), "--keys", "--json", "--data", str(data_dir.root)]) == 0
        assert main(["restore", str(tmp_path / "bk"), "--data", str(tmp_path / "back")]) == 0
    assert json.loads(out.getvalue().splitlines()[0])["keys"] is True
    for path in (tmp_path / "bk" / "keys").rglob("*"):
        assert path.stat().st_mode & 0o077 == 0
    assert (tmp_path / "back" / "keys" / "ca.pem").read_bytes() == (data_dir.keys / "ca.pem").read_bytes()
