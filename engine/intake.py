"""Intake: take complete files from the inbox, archive their exact bytes, record them, then acknowledge.

Order of operations per file (each step survives a crash before the next):
1. the file is *complete*: it appeared by rename (instrument PCs and the
   sampling platform write ``.name.part``/``*.tmp`` and rename; those names are
   ignored), or its size and mtime have been stable for ``stable_seconds``
   (SMB/NFS shares give no change events, so the inbox is polled, and a full
   rescan runs anyway because event queues overflow);
2. its bytes are copied to ``archive/<sha256>`` (temp name, fsync, rename);
3. the ledger records it (same bytes under any name → a ``duplicate`` event, nothing new);
4. only then is it removed from the inbox: that removal is the acknowledgement.

A crash between 2 and 3 re-takes the file (the archive copy is identical); a
crash between 3 and 4 re-takes it and finds it a duplicate. Symlinks, and
anything that resolves outside the inbox, are never followed: they are moved
aside into ``quarantine/`` with a note.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from engine.config import IntakeSettings
from engine.datadir import DataDir
from engine.errors import IntakeError
from engine.ledger import Ledger
from engine.logs import log

IGNORED_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial", ".error.txt")

# inotify (Linux, local disks): a file renamed into place (IN_MOVED_TO) or closed after
# writing (IN_CLOSE_WRITE) is complete now, with no stable-time wait. Network shares
# deliver no events, so polling with the stable-time rule stays, and so does the full
# rescan, because the kernel drops events when its queue overflows (IN_Q_OVERFLOW).
_IN_CLOSE_WRITE, _IN_MOVED_TO, _IN_CREATE = 0x00000008, 0x00000080, 0x00000100
_IN_Q_OVERFLOW, _IN_ISDIR, _IN_NONBLOCK, _IN_CLOEXEC = 0x00004000, 0x40000000, 0o4000, 0o2000000


class InotifyWatch:
    """Recursive inotify watch of a folder through libc (no extra dependency); Linux only."""

    def __init__(self, root: Path) -> None:
        import ctypes
        import ctypes.util

        self._libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fd = self._libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.fd = fd
        self.root = root
        self._dirs: dict[int, Path] = {}
        self.overflowed = False
        self._add_tree(root)

    def _add(self, folder: Path) -> None:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(folder), _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE)
        if wd >= 0:
            self._dirs[wd] = folder

    def _add_tree(self, folder: Path) -> None:
        self._add(folder)
        for sub, dirs, _ in os.walk(folder, followlinks=False):
            dirs[:] = [d for d in dirs if not d.startswith(".") and not os.path.islink(os.path.join(sub, d))]
            for d in dirs:
                self._add(Path(sub) / d)

    def read(self) -> list[Path]:
        """Paths of files signalled complete since the last call (new subfolders get watched)."""
        import struct

        out: list[Path] = []
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            except OSError:
                return out
            if not buf:
                return out
            offset = 0
            while offset + 16 <= len(buf):
                wd, mask, _cookie, length = struct.unpack_from("iIII", buf, offset)
                raw = buf[offset + 16 : offset + 16 + length].rstrip(b"\0")
                offset += 16 + length
                if mask & _IN_Q_OVERFLOW:
                    self.overflowed = True
                    continue
                folder = self._dirs.get(wd)
                if folder is None or not raw:
                    continue
                path = folder / os.fsdecode(raw)
                if mask & _IN_ISDIR:
                    if mask & (_IN_CREATE | _IN_MOVED_TO) and not path.name.startswith("."):
                        self._add_tree(path)
                        self.overflowed = True  # files may have landed before the watch: rescan
                    continue
                if mask & (_IN_CLOSE_WRITE | _IN_MOVED_TO):
                    out.append(path)

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


@dataclass
class Taken:
    """One file taken from the inbox."""

    sha256: str
    name: str  # path relative to the inbox
    kind: str  # analyzer | manifest
    fresh: bool  # False: these bytes were received before (a duplicate drop)


@dataclass
class _Seen:
    size: int
    mtime_ns: int
    since: float
    failures: int = 0
    retry_at: float = 0.0
    parked: bool = False


def ignored(name: str) -> bool:
    """Names intake never takes: hidden/temporary files still being written."""
    base = name.rsplit("/", 1)[-1]
    return base.startswith(".") or base.startswith("~$") or base.lower().endswith(IGNORED_SUFFIXES)


def kind_of(head: bytes) -> str:
    """``manifest`` when the first line is a manifest header, else ``analyzer`` (parsers sniff later)."""
    from engine.manifest import looks_like_manifest

    return "manifest" if looks_like_manifest(head) else "analyzer"


def write_archive(archive: Path, sha256: str, data: bytes) -> Path:
    """Store ``data`` at ``archive/<sha256>`` durably (temp file, fsync, rename, fsync the folder)."""
    target = archive / sha256
    if target.exists() and target.stat().st_size == len(data):
        return target
    archive.mkdir(parents=True, exist_ok=True)
    tmp = archive / f".{sha256}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    _fsync_dir(archive)
    return target


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class Intake:
    """Watches one inbox (by polling) and hands complete files to the ledger."""

    def __init__(self, data: DataDir, ledger: Ledger, settings: IntakeSettings | None = None) -> None:
        self.data = data
        self.ledger = ledger
        self.settings = settings or IntakeSettings()
        self.inbox = data.inbox.resolve()
        self._seen: dict[str, _Seen] = {}
        self._ready: dict[str, tuple[int, int]] = {}  # path -> (size, mtime) when inotify said complete
        self.partial_skips = 0  # files seen still changing (for tests and metrics)
        self.watch: InotifyWatch | None = None

    def start_watch(self) -> bool:
        """Use inotify when the platform has it (local disks); polling keeps working either way."""
        if self.watch is None:
            try:
                self.inbox.mkdir(parents=True, exist_ok=True)
                self.watch = InotifyWatch(self.inbox)
            except (OSError, AttributeError):
                self.watch = None
        return self.watch is not None

    def stop_watch(self) -> None:
        if self.watch is not None:
            self.watch.close()
            self.watch = None

    def events(self) -> bool:
        """Drain inotify: remember files signalled complete; True when a full rescan is due (overflow)."""
        if self.watch is None:
            return False
        for path in self.watch.read():
            try:
                st = path.stat()
            except OSError:
                continue
            self._ready[str(path)] = (st.st_size, st.st_mtime_ns)
        overflow, self.watch.overflowed = self.watch.overflowed, False
        return overflow or bool(self._ready)

    def candidates(self) -> list[Path]:
        """Files in the inbox (recursive when configured), oldest first; refused paths are moved aside."""
        found: list[Path] = []
        if not self.inbox.exists():
            return found
        walker = os.walk(self.inbox, followlinks=False) if self.settings.recursive else [(str(self.inbox), [], [e.name for e in os.scandir(self.inbox)])]
        for folder, dirs, names in walker:
            # Never descend into hidden folders or symlinked folders.
            for d in list(dirs):
                if d.startswith(".") or os.path.islink(os.path.join(folder, d)):
                    if os.path.islink(os.path.join(folder, d)):
                        self._refuse(Path(folder) / d, "is a symbolic link to a folder; links are not followed")
                    dirs.remove(d)
            for name in names:
                path = Path(folder) / name
                rel = path.relative_to(self.inbox).as_posix()
                if ignored(rel):
                    continue
                if path.is_symlink():
                    self._refuse(path, "is a symbolic link; copy the file itself into the inbox")
                    continue
                try:
                    resolved = path.resolve(strict=True)
                except OSError:
                    continue  # vanished meanwhile
                if not resolved.is_relative_to(self.inbox):
                    self._refuse(path, "leads outside the inbox")
                    continue
                if path.is_file():
                    found.append(path)
        found.sort(key=lambda p: (self._mtime(p), p.name))
        return found

    @staticmethod
    def _mtime(path: Path) -> int:
        try:
            return path.stat().st_mtime_ns
        except OSError:
            return 0

    def _refuse(self, path: Path, why: str) -> None:
        rel = path.relative_to(self.inbox).as_posix() if path.is_relative_to(self.inbox) else str(path)
        self.data.quarantine.mkdir(parents=True, exist_ok=True)
        target = self.data.quarantine / f"{rel.replace('/', '_')}.link"
        note = self.data.quarantine / f"{rel.replace('/', '_')}.error.txt"
        note.write_text(
            f"File: {rel}\nProblem: {why}.\nNothing was read from it.\n"
            "What to do: place the real file (not a link or shortcut) in the inbox.\n",
            encoding="utf-8",
        )
        try:
            os.replace(path, target)  # moves the link itself, never its target
        except OSError:
            pass
        self.ledger.event("refused", None, path=rel, reason=why)
        log.warning("refused", path=rel, reason=why)

    def is_complete(self, path: Path, now: float, stable_seconds: float) -> bool:
        """True when size and mtime have not changed for ``stable_seconds`` (0: trust what is there)."""
        try:
            st = path.stat()
        except OSError:
            return False
        key = str(path)
        ready = self._ready.pop(key, None)
        if ready is not None and ready == (st.st_size, st.st_mtime_ns):
            seen = self._seen.get(key)
            return not (seen is not None and (seen.parked or now < seen.retry_at))
        seen = self._seen.get(key)
        if seen is None or seen.size != st.st_size or seen.mtime_ns != st.st_mtime_ns:
            if seen is not None:
                self.partial_skips += 1
            self._seen[key] = _Seen(st.st_size, st.st_mtime_ns, now)
            return stable_seconds <= 0
        if seen.parked or now < seen.retry_at:
            return False
        return now - seen.since >= stable_seconds

    def scan(self, *, stable_seconds: float | None = None) -> list[Taken]:
        """One pass over the inbox: take every complete file. ``stable_seconds=0`` for backfills."""
        taken: list[Taken] = []
        for path in self.ready(stable_seconds=stable_seconds):
            try:
                item = self.take(path)
            except IntakeError as exc:
                self._failed(path, str(exc))
                continue
            if item is not None:
                taken.append(item)
        return taken

    def _failed(self, path: Path, error: str) -> None:
        seen = self._seen.get(str(path))
        if seen is None:
            return
        seen.failures += 1
        if seen.failures >= self.settings.max_attempts:
            # Left in place, never deleted: an operator sees it in the inbox and in the ledger's events.
            seen.parked = True
            self.ledger.event("parked", None, path=path.relative_to(self.inbox).as_posix(), error=error, attempts=seen.failures)
            log.error("parked", path=str(path), error=error, attempts=seen.failures)
        else:
            seen.retry_at = time.monotonic() + self.settings.backoff_seconds * 2 ** (seen.failures - 1)
            log.warning("intake retry", path=str(path), error=error, attempts=seen.failures)

    def archive(self, path: Path) -> tuple[str, int, str] | None:
        """Read one file and store its bytes in the archive: ``(sha256, size, kind)``, or None if not complete.

        Touches no ledger, so the service runs it in a thread while the event
        loop keeps serving; the ledger record is :meth:`record`.
        """
        rel = path.relative_to(self.inbox).as_posix()
        try:
            before = path.stat()
            with open(path, "rb") as fh:
                data = fh.read()
            after = path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise IntakeError(f"{rel}: cannot be read ({exc.strerror}); will retry") from exc
        if len(data) != after.st_size or before.st_mtime_ns != after.st_mtime_ns or before.st_size != after.st_size:
            self.partial_skips += 1
            self._seen.pop(str(path), None)
            return None
        if not data:
            return None  # an empty file is a file still being created; it is looked at again
        sha = hashlib.sha256(data).hexdigest()
        kind = kind_of(data[:4096])
        try:
            write_archive(self.data.archive, sha, data)
        except OSError as exc:
            raise IntakeError(f"{rel}: cannot be archived ({exc.strerror}); will retry") from exc
        return sha, len(data), kind

    def record(self, path: Path, sha: str, size: int, kind: str) -> Taken:
        """Record an archived file in the ledger, then acknowledge it by removing it from the inbox."""
        rel = path.relative_to(self.inbox).as_posix()
        fresh = self.ledger.receive_file(sha, rel, size, kind)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            # Recorded already; a later scan finds it again as a duplicate and retries the removal.
            log.warning("cannot remove from inbox", path=rel, error=str(exc))
        self._seen.pop(str(path), None)
        log.info("received" if fresh else "duplicate", file=rel, sha256=sha, kind=kind, size=size)
        return Taken(sha, rel, kind, fresh)

    def take(self, path: Path) -> Taken | None:
        """Archive, record, acknowledge one file; None if it changed while being read (not complete yet)."""
        archived = self.archive(path)
        return None if archived is None else self.record(path, *archived)

    def ready(self, *, stable_seconds: float | None = None) -> list[Path]:
        """Files complete now (cheap: stat only); forgets files that left the inbox."""
        stable = self.settings.stable_seconds if stable_seconds is None else stable_seconds
        now = time.monotonic()
        present: set[str] = set()
        out = []
        for path in self.candidates():
            present.add(str(path))
            if self.is_complete(path, now, stable):
                out.append(path)
        for table in (self._seen, self._ready):
            for key in [k for k in table if k not in present]:
                del table[key]
        return out

    async def scan_async(self) -> list[Taken]:
        """:meth:`scan` for the event loop: reading and archiving run in a thread, ledger writes stay here."""
        import asyncio

        taken: list[Taken] = []
        for path in self.ready():
            try:
                archived = await asyncio.to_thread(self.archive, path)
            except IntakeError as exc:
                self._failed(path, str(exc))
                continue
            if archived is not None:
                taken.append(self.record(path, *archived))
        return taken
