"""Online backups of a data folder, and their restore into a fresh one.

A backup runs beside ``ketqua run`` (it takes no lock): the ledger is copied with
SQLite's online backup API in one step, which holds a single read transaction
for the whole copy, so the copy is the ledger exactly as it was at one commit
while the writer goes on (WAL mode: a reader never blocks the writer). The
files come after the ledger, and that order is what makes the set consistent:
an archived file is written before the ledger records it, a certificate PDF
before the ledger names it, and neither is ever rewritten, so every file the
copied ledger refers to is already on disk when the folders are copied. Files
written after the snapshot are copied too and are harmless: an archive entry or
PDF the restored ledger does not name is never read (a result without its PDF
in the restored ledger gets it rendered again).

The backup folder holds ``backup-manifest.json``: every copied file with its
size and SHA-256, the ledger's schema version, last feed seq and result count,
and whether keys/ was included. :func:`restore` checks every hash before it
writes anything, and refuses a target that is not empty.

PostgreSQL is not handled here: a server ledger is backed up with ``pg_dump``
(docs/operations.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.datadir import DataDir, private_files
from engine.errors import KetquaError

MANIFEST = "backup-manifest.json"
FORMAT = "ketqua-backup/1"
#: The folders of a data folder a backup copies; keys/ only when asked (it holds private keys).
FOLDERS = ("archive", "certificates", "quarantine")
KEYS = "keys"
#: Single files next to the ledger.
FILES = ("ketqua.toml",)


class BackupError(KetquaError):
    """A backup cannot be taken, or a backup folder cannot be restored (named file, what to do)."""


@dataclass(frozen=True)
class BackupReport:
    """What one backup or restore copied."""

    target: Path
    files: int
    bytes: int
    last_seq: int
    results: int
    keys: bool


def snapshot_ledger(source: Path, target: Path) -> dict[str, int]:
    """Copy the SQLite ledger at ``source`` to ``target`` as of one commit; returns its schema version and feed position.

    ``Connection.backup`` with the default ``pages=-1`` copies every page in one
    step under one read transaction: a consistent snapshot, never a mix of two commits.
    """
    if not source.exists():
        raise BackupError(f"no ledger at {source}: nothing to back up (is --data the lab's data folder?)")
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
        try:
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file (no -wal beside it)
                info = {
                    "schema_version": int(dst.execute("PRAGMA user_version").fetchone()[0]),
                    "last_seq": int(dst.execute("SELECT coalesce(max(seq), 0) FROM results").fetchone()[0]),
                    "results": int(dst.execute("SELECT count(*) FROM results").fetchone()[0]),
                }
                check = dst.execute("PRAGMA quick_check").fetchone()[0]
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy the ledger {source} to {target}: {exc}") from exc
    if check != "ok":
        raise BackupError(f"the copy of the ledger {target} fails SQLite's integrity check ({check}); the backup is not usable")
    return info


def backup(data: DataDir, dest: str | os.PathLike[str], *, keys: bool = False, now: datetime | None = None) -> BackupReport:
    """Copy ``data``'s ledger (online snapshot), archive, certificates, quarantine, ketqua.toml (and keys/) into ``dest``.

    ``dest`` must not exist or be empty. Everything written is owner-only
    (0700 folders, 0600 files): a backup holds personal data, and keys when asked.
    """
    private_files()
    target = _fresh_folder(Path(dest).expanduser().resolve(), "backup")
    info = snapshot_ledger(data.ledger, target / data.ledger.name)
    entries = [_entry(target, target / data.ledger.name)]
    for name in FILES:
        if (data.root / name).is_file():
            shutil.copy2(data.root / name, target / name)
            entries.append(_entry(target, target / name))
    for folder in (*FOLDERS, *((KEYS,) if keys else ())):
        entries += _copy_tree(data.root / folder, target / folder, target)
    manifest = {
        "format": FORMAT,
        "created_at": (now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "source": str(data.root),
        "ledger": {"file": data.ledger.name, **info},
        "keys": keys,
        "files": entries,
    }
    (target / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return BackupReport(target, len(entries), sum(e["size"] for e in entries), info["last_seq"], info["results"], keys)


def read_manifest(src: Path) -> dict[str, Any]:
    """The manifest of the backup folder ``src``, checked for its form."""
    path = src / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(f"{src} is not a ketqua backup: it has no {MANIFEST}") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"{path} cannot be read ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(manifest.get("files"), list):
        raise BackupError(f"{path}: not a {FORMAT} manifest (made by another version of ketqua?)")
    return manifest


def verify_backup(src: str | os.PathLike[str]) -> dict[str, Any]:
    """Check every file of a backup against its manifest (size and SHA-256); returns the manifest."""
    root = Path(src).expanduser().resolve()
    manifest = read_manifest(root)
    problems = []
    for entry in manifest["files"]:
        rel = _safe_relative(entry.get("path"), root)
        path = root / rel
        if not path.is_file():
            problems.append(f"{rel}: missing")
        elif path.stat().st_size != entry.get("size") or _sha256(path) != entry.get("sha256"):
            problems.append(f"{rel}: changed since the backup (size or SHA-256 differs)")
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise BackupError(f"the backup {root} is damaged, nothing was restored: {shown}")
    return manifest


def restore(src: str | os.PathLike[str], data: DataDir) -> BackupReport:
    """Restore the backup folder ``src`` into ``data`` (which must not exist or be empty), after checking every hash.

    Certificate paths in the ledger name the backed-up folder; they are moved
    to the restored one, so the API serves the restored PDFs.
    """
    manifest = verify_backup(src)
    root = Path(src).expanduser().resolve()
    private_files()
    _fresh_folder(data.root, "restore")
    data.create()
    total = 0
    for entry in manifest["files"]:
        rel = _safe_relative(entry["path"], root)
        target = data.root / rel
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        shutil.copy2(root / rel, target)
        os.chmod(target, 0o600)
        total += entry["size"]
    _move_certificate_paths(data.ledger, Path(manifest.get("source", "")) / "certificates", data.certificates)
    ledger = manifest.get("ledger", {})
    return BackupReport(data.root, len(manifest["files"]), total, int(ledger.get("last_seq", 0)), int(ledger.get("results", 0)), bool(manifest.get("keys")))


def _move_certificate_paths(ledger: Path, old: Path, new: Path) -> None:
    if old == new:
        return
    prefix = f"{old}{os.sep}"
    try:
        conn = sqlite3.connect(ledger, isolation_level=None)
        try:
            conn.execute(
                "UPDATE results SET certificate = ? || substr(certificate, ?) WHERE substr(certificate, 1, ?) = ?",
                (f"{new}{os.sep}", len(prefix) + 1, len(prefix), prefix),
            )
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise BackupError(f"the restored ledger {ledger} cannot be updated: {exc}") from exc


def _fresh_folder(path: Path, what: str) -> Path:
    """``path`` created (owner-only) if missing; refused when it holds anything."""
    if path.exists():
        if not path.is_dir():
            raise BackupError(f"{what} target {path} exists and is not a folder")
        if any(path.iterdir()):
            raise BackupError(f"{what} target {path} is not empty; give a new or empty folder (nothing is overwritten)")
    else:
        path.mkdir(parents=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def _copy_tree(source: Path, target: Path, root: Path) -> list[dict[str, Any]]:
    """Copy regular files under ``source`` (links are not followed); their manifest entries."""
    entries = []
    if not source.is_dir():
        return entries
    target.mkdir(mode=0o700, exist_ok=True)
    for folder, dirs, names in os.walk(source, followlinks=False):
        dirs.sort()
        out = target / Path(folder).relative_to(source)
        out.mkdir(mode=0o700, exist_ok=True)
        for name in sorted(names):
            path = Path(folder) / name
            if path.is_symlink() or not path.is_file() or (name.startswith(".") and name.endswith(".part")):
                continue  # refused links stay behind; a .part file is half of an atomic write (engine.files)
            try:
                shutil.copy2(path, out / name)
            except FileNotFoundError:
                continue  # removed meanwhile (an export cleaned up)
            entries.append(_entry(root, out / name))
    return entries


def _entry(root: Path, path: Path) -> dict[str, Any]:
    os.chmod(path, 0o600)
    return {"path": path.relative_to(root).as_posix(), "size": path.stat().st_size, "sha256": _sha256(path)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _safe_relative(value: Any, root: Path) -> Path:
    """A manifest path that stays inside the backup (no absolute path, no ``..``)."""
    rel = Path(str(value))
    if not value or rel.is_absolute() or ".." in rel.parts:
        raise BackupError(f"{root / MANIFEST}: file entry {value!r} points outside the backup")
    return rel
