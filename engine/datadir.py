"""The data folder layout (DESIGN.md): one place that knows where things live, and who may read them.

Everything the engine writes under the data folder holds personal data or keys, so
it is owner-only: :meth:`DataDir.create` sets the process umask to 0o077 (files
0600, folders 0700, for the ledger and its ``-wal``/``-shm``, archive, quarantine,
certificates written by worker processes, exports and keys alike) and tightens a
folder left readable by an older version. The inbox, and the data folder itself
that leads to it, keep the permissions the lab gives them: instrument PCs and
network shares write there as other users.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shlex
import socket
import stat
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from engine.errors import KetquaError
from engine.logs import log

#: The umask the process had before the first data folder was opened: what the lab's
#: inbox (and a new data folder above it) would have been created with.
_lab_umask: int | None = None


def private_files() -> int:
    """Make every file and folder this process creates from now on owner-only; returns the lab's umask."""
    global _lab_umask
    old = os.umask(0o077)
    if _lab_umask is None:
        _lab_umask = old
    os.umask(old | 0o077)  # a stricter umask the lab chose stays
    return _lab_umask


class DataFolderInUse(KetquaError):
    """Another ketqua process holds the data folder's instance lock."""


@dataclass(frozen=True)
class DataDir:
    """Paths under one data folder; :meth:`create` makes the folders (all but the inbox private)."""

    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike[str]) -> "DataDir":
        return cls(Path(root).expanduser().resolve())

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    @property
    def certificates(self) -> Path:
        return self.root / "certificates"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.sqlite3"

    @property
    def config(self) -> Path:
        return self.root / "ketqua.toml"

    @property
    def lock_file(self) -> Path:
        return self.root / "ketqua.lock"

    @property
    def private_folders(self) -> tuple[Path, ...]:
        """Folders whose whole content is the engine's own (personal data, keys)."""
        return (self.archive, self.quarantine, self.certificates, self.exports, self.keys)

    def create(self) -> "DataDir":
        """Make the layout, owner-only except the inbox; tighten what an older version left readable."""
        lab_umask = private_files()
        shared_mode = 0o777 & ~lab_umask
        _mkdir_shared(self.inbox, shared_mode)
        loosened = []
        for folder in self.private_folders:
            folder.mkdir(exist_ok=True, mode=0o700)
            if stat.S_IMODE(folder.stat().st_mode) & 0o077:
                loosened.append((folder, _tighten_tree(folder)))
        ledger_files = [self.root / f"{self.ledger.name}{suffix}" for suffix in ("", "-wal", "-shm", "-journal")]
        tightened_ledger = sum(_tighten(path) for path in (*ledger_files, self.lock_file))
        if loosened or tightened_ledger:
            what = ", ".join(f"{folder.name}/ ({count} entries)" for folder, count in loosened)
            if tightened_ledger:
                what = ", ".join(filter(None, (what, f"{tightened_ledger} ledger file(s)")))
            log.warning(
                f"data folder {self.root}: {what} could be read by other users; now owner-only (0600 files, 0700 folders)",
                data=str(self.root),
                folders=[folder.name for folder, _ in loosened],
                entries=sum(count for _, count in loosened) + tightened_ledger,
            )
        return self

    def secret_key(self, name: str, size: int = 32) -> bytes:
        """A random key kept in ``keys/<name>`` (0600), created on first use so what it protects survives restarts.

        The API's cursor HMAC and the console's anti-forgery tokens each have one.
        """
        path = self.keys / name
        try:
            key = path.read_bytes()
            if len(key) >= size:
                return key
        except FileNotFoundError:
            pass
        self.keys.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = secrets.token_bytes(size)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
            fh.flush()
            os.fsync(fh.fileno())
        return key

    def lock(self, command: str | None = None) -> "InstanceLock":
        """Take the data folder's single-instance lock, or raise :class:`DataFolderInUse` naming the holder.

        The lock guards what one process must own alone: the embedded SQLite
        ledger's single writer and the inbox. Read-only commands do not take it.
        (A server ledger shared by several nodes would take a per-node lock
        instead; the file holds who took it, so that stays a naming change.)
        """
        _mkdir_shared(self.root, 0o777 & ~(_lab_umask if _lab_umask is not None else _current_umask()))
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _holder(fd)
            os.close(fd)
            raise DataFolderInUse(
                f"the data folder {self.root} is in use by `{holder.get('command', 'ketqua')}` "
                f"(pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, since {holder.get('started_at', '?')}); "
                "stop it first or use another --data"
            ) from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "command": command or shlex.join(["ketqua", *sys.argv[1:]]),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode("utf-8"), 0)
        return InstanceLock(self.lock_file, fd)


def lock_holder(data: DataDir) -> dict | None:
    """Who holds ``data``'s single-instance lock right now (pid, host, command), or None when nobody does."""
    try:
        fd = os.open(data.lock_file, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _holder(fd) or {"command": "ketqua"}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class InstanceLock:
    """A held data folder lock (released at :meth:`release`, or by the OS when the process ends)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # the file stays (removing it would race a newcomer); it just names nobody
            os.close(self._fd)  # closing the last descriptor frees the flock
            self._fd = None

    def __enter__(self) -> "InstanceLock":
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.release()


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mkdir_shared(folder: Path, mode: int) -> None:
    """Create ``folder`` and missing parents with ``mode`` (the lab's), whatever the process umask is now."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue
        os.chmod(path, mode)


def _holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}


def _tighten(path: Path) -> int:
    """Drop group/other permission bits of one file or folder; 1 if it had any."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 0
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode) or not mode & 0o077:
        return 0  # a link's own bits mean nothing (quarantine keeps refused links as they came)
    os.chmod(path, mode & 0o700)
    return 1


def _tighten_tree(folder: Path) -> int:
    """:func:`_tighten` a folder and everything under it (done once: a tight folder is not walked again)."""
    count = 0
    for sub, dirs, files in os.walk(folder, followlinks=False):
        for name in (*dirs, *files):
            count += _tighten(Path(sub) / name)
    return count + _tighten(folder)
