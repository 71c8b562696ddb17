"""Intake: take complete files from the inbox, archive their exact bytes, record them, then acknowledge.

Order of operations per file (each step survives a crash before the next):
1. the file is *complete*. Every rule must hold:
   - its size, mtime, inode and device have been unchanged for ``stable_seconds``
     (SMB/NFS shares give no change events, so the inbox is polled, and a full
     rescan runs anyway because event queues overflow), or it was renamed into
     place (inotify ``IN_MOVED_TO``; instrument PCs and the sampling platform
     write ``.name.part``/``*.tmp`` and rename; those names are ignored). A
     close after writing (``IN_CLOSE_WRITE``) only wakes the scanner: writers
     that reopen the file for every chunk close it many times;
   - a file seen growing must stay unchanged for twice its writer's longest
     pause so far (at most ``incomplete_seconds``): a writer that pauses longer
     than ``stable_seconds`` at a record boundary leaves a prefix no format
     test can tell from a whole file;
   - no process holds it open for writing (a read lease, Linux local disks;
     where leases are unavailable the stable-time rule alone decides);
   - its format does not look cut short (:func:`parsers.incomplete`: empty,
     ends mid-line, or fails its format's structure test). Such a file waits in
     the inbox; once unchanged for ``incomplete_seconds`` it is taken and
     quarantined as "appears truncated" (an empty one is set aside unread);
2. its bytes are read through one descriptor opened without following links
   and copied to ``archive/<sha256>`` (temp name, fsync, rename);
3. the ledger records it (same bytes under any name → a ``duplicate`` event, nothing new);
4. only then is it removed from the inbox: that removal is the acknowledgement.

Size, mtime, inode and device are compared again after reading, after
archiving, before recording and before removing: any change means the file is
still arriving, so nothing is recorded and nothing removed. A crash between 2
and 3 re-takes the file (the archive copy is identical); a crash between 3 and
4 re-takes it and finds it a duplicate. Links (symbolic, or a file with other
hard links, which may be a file from outside the inbox) are never read: they
are moved aside into ``quarantine/`` with a note.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config import IntakeSettings
from engine.datadir import DataDir
from engine.errors import IntakeError
from engine.files import write_atomically
from engine.intake.linux import InotifyWatch, open_for_writing
from engine.intake.manifest import looks_like_manifest
from engine.ledger.sqlite import Ledger
from engine.logs import log
from parsers import incomplete

IGNORED_SUFFIXES = (".part", ".tmp", ".crdownload", ".partial", ".error.txt")

CHANGED = "it changed while it was being read"
OPEN_FOR_WRITING = "another program still has it open for writing"

Signature = tuple[int, int, int, int]  # size, mtime_ns, inode, device: any change = still arriving


def signature(st: os.stat_result) -> Signature:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


@dataclass
class Taken:
    """One file taken from the inbox."""

    sha256: str
    name: str  # path relative to the inbox
    kind: str  # analyzer | manifest
    fresh: bool  # False: these bytes were received before (a duplicate drop)
    quarantined: bool = False  # recorded, then quarantined at once (appears truncated)


@dataclass
class Archived:
    """What reading one inbox file found; computed off the event loop, acted on by :meth:`Intake.record`."""

    sig: Signature | None  # None: not read at all (it became a symbolic link)
    sha256: str = ""
    size: int = 0
    kind: str = "analyzer"
    wait: str | None = None  # not complete yet, and why: nothing recorded, nothing removed
    judged: bool = False  # ``wait`` came from the format test: not read again until ``incomplete_seconds``
    truncated: str | None = None  # complete by patience but cut short: recorded, then quarantined
    refuse: str | None = None  # moved aside: a link (never read) or an empty file
    link: bool = False


@dataclass
class _Seen:
    sig: Signature
    since: float  # when this signature was first seen (intake clock)
    failures: int = 0
    retry_at: float = 0.0
    parked: bool = False
    judged: bool = False  # read at this signature and found cut short
    overdue: bool = False  # unchanged for incomplete_seconds: a cut-short file is taken now
    said: str | None = None  # last waiting reason logged (each reason is logged once)
    gap: float = 0.0  # longest time the file stayed unchanged between two of its changes (its writer's pauses)


def ignored(name: str) -> bool:
    """Names intake never takes: hidden/temporary files still being written."""
    base = name.rsplit("/", 1)[-1]
    return base.startswith(".") or base.startswith("~$") or base.lower().endswith(IGNORED_SUFFIXES)


def kind_of(head: bytes) -> str:
    """``manifest`` when the first line is a manifest header, else ``analyzer`` (parsers sniff later)."""
    return "manifest" if looks_like_manifest(head) else "analyzer"


def write_archive(archive: Path, sha256: str, data: bytes) -> Path:
    """Store ``data`` at ``archive/<sha256>`` durably (:func:`engine.files.write_atomically`)."""
    target = archive / sha256
    if target.exists() and target.stat().st_size == len(data):
        return target
    return write_atomically(target, data)


def _read_all(fd: int, size: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, max(size, 1 << 20))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


class Intake:
    """Watches one inbox (by polling, woken by inotify) and hands complete files to the ledger.

    ``quarantine(file_row, error, kind)`` is how a file recorded but cut short
    is quarantined (the engine passes :meth:`engine.pipeline.Engine.quarantine`,
    which writes the copy and its ``.error.txt``); ``clock`` is a monotonic
    time source in seconds, injectable for tests.
    """

    def __init__(
        self,
        data: DataDir,
        ledger: Ledger,
        settings: IntakeSettings | None = None,
        *,
        quarantine: Callable[[dict[str, Any], str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.data = data
        self.ledger = ledger
        self.settings = settings or IntakeSettings()
        self.inbox = data.inbox.resolve()
        self.quarantine = quarantine or self._quarantine
        self.clock = clock
        self._seen: dict[str, _Seen] = {}
        self._ready: dict[str, Signature] = {}  # path -> signature when inotify saw it renamed into place
        self._mentioned: set[str] = set()  # ignored names already logged
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
        """Drain inotify: remember files renamed into place; True when a full rescan is due (overflow)."""
        if self.watch is None:
            return False
        for path in self.watch.read():
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError:
                continue
            self._ready[str(path)] = signature(st)
        overflow, self.watch.overflowed = self.watch.overflowed, False
        return overflow or bool(self._ready)

    # ------------------------------------------------------------------ finding files
    def _entries(self) -> list[tuple[Path, os.stat_result]]:
        """Regular files in the inbox with their lstat, oldest first; links are moved aside, ignored names logged once."""
        found: list[tuple[Path, os.stat_result]] = []
        if not self.inbox.exists():
            return found
        mentioned, self._mentioned = self._mentioned, set()  # names that left the inbox are forgotten
        walker = os.walk(self.inbox, followlinks=False) if self.settings.recursive else [(str(self.inbox), [], [e.name for e in os.scandir(self.inbox)])]
        for folder, dirs, names in walker:
            # Never descend into hidden folders or symlinked folders.
            for d in list(dirs):
                sub = Path(folder) / d
                if os.path.islink(sub):
                    self._set_aside(sub, "is a symbolic link to a folder; links are not followed", link=True)
                    dirs.remove(d)
                elif d.startswith("."):
                    self._mention(sub, mentioned)
                    dirs.remove(d)
            for name in names:
                path = Path(folder) / name
                rel = path.relative_to(self.inbox).as_posix()
                if ignored(rel):
                    self._mention(path, mentioned)
                    continue
                try:
                    st = os.stat(path, follow_symlinks=False)
                except OSError:
                    continue  # vanished meanwhile
                if stat.S_ISLNK(st.st_mode):
                    self._set_aside(path, "is a symbolic link; copy the file itself into the inbox", link=True)
                elif stat.S_ISREG(st.st_mode):
                    found.append((path, st))
        found.sort(key=lambda e: (e[1].st_mtime_ns, e[0].name))
        return found

    def candidates(self) -> list[Path]:
        """Files in the inbox (recursive when configured), oldest first; refused paths are moved aside."""
        return [path for path, _ in self._entries()]

    def _mention(self, path: Path, before: set[str]) -> None:
        rel = path.relative_to(self.inbox).as_posix()
        self._mentioned.add(rel)
        if rel not in before:
            log.info("ignored", path=rel, why="hidden or temporary name (a file still being written); rename it to take it in")

    def _set_aside(self, path: Path, why: str, *, link: bool) -> None:
        """Move ``path`` itself (never a link's target) into quarantine/ with a note; a ``refused`` event."""
        rel = path.relative_to(self.inbox).as_posix() if path.is_relative_to(self.inbox) else str(path)
        self.data.quarantine.mkdir(parents=True, exist_ok=True)
        flat = stem = rel.replace("/", "_")
        n = 1
        while any(os.path.lexists(self.data.quarantine / (stem + end)) for end in (".link", "", ".error.txt")):
            n += 1
            stem = f"{n}-{flat}"
        target = self.data.quarantine / (stem + (".link" if link else ""))
        what = (
            "Nothing was read from it.\nWhat to do: place the real file (not a link or shortcut) in the inbox.\n"
            if link
            else "What to do: export or copy the file again; if the instrument writes an empty file first, "
            "raise [intake] incomplete_seconds in ketqua.toml.\n"
        )
        try:
            os.replace(path, target)  # moves the link itself, never its target
        except OSError as exc:
            log.warning("cannot set aside", path=rel, error=str(exc))
            return
        write_atomically(self.data.quarantine / (stem + ".error.txt"), f"File: {rel}\nProblem: {why}.\n{what}".encode("utf-8"))
        self._seen.pop(str(path), None)
        self.ledger.event("refused", None, path=rel, reason=why, copy=target.name)
        log.warning("refused", path=rel, reason=why, copy=target.name)

    def _quarantine(self, row: dict[str, Any], error: str, kind: str) -> None:
        # Intake on its own (tests): the ledger state and event; the engine also writes the copy and its report.
        self.ledger.set_file_state(row["sha256"], "quarantined", error=error, event="quarantined", reason=kind)
        log.warning("quarantined", file=row["name"], reason=kind, error=error)

    # ------------------------------------------------------------------ deciding
    def _patience(self, stable_seconds: float | None) -> tuple[float, float]:
        """``(stable, incomplete)`` seconds; ``stable_seconds=0`` (backfill: trust what is there) waits for neither."""
        if stable_seconds is None:
            return self.settings.stable_seconds, self.settings.incomplete_seconds
        return stable_seconds, (0.0 if stable_seconds <= 0 else self.settings.incomplete_seconds)

    def is_complete(self, path: Path, now: float, stable_seconds: float, incomplete_seconds: float | None = None,
                    st: os.stat_result | None = None) -> bool:
        """Worth reading now: unchanged for ``stable_seconds`` (or renamed into place), not backing off.

        A file read before at this same signature and found cut short is not
        read again until it has been unchanged for ``incomplete_seconds``.
        """
        if st is None:
            try:
                st = os.stat(path, follow_symlinks=False)
            except OSError:
                return False
        patience = self.settings.incomplete_seconds if incomplete_seconds is None else incomplete_seconds
        key, sig = str(path), signature(st)
        ready = self._ready.pop(key, None)
        seen = self._seen.get(key)
        if seen is None or seen.sig != sig:
            gap = 0.0
            if seen is not None:
                self.partial_skips += 1  # grew or was replaced: still arriving, every clock restarts
                gap = max(seen.gap, now - seen.since)
            seen = self._seen[key] = _Seen(sig, now, said=seen.said if seen else None, gap=gap)
        seen.overdue = now - seen.since >= patience
        if seen.parked or now < seen.retry_at:
            return False
        if seen.judged:
            return seen.overdue
        # A writer seen pausing (cat >> per chunk, a slow share copy) may pause that long again
        # at a record boundary, where no format test can tell: wait twice its longest pause.
        quiet = min(max(stable_seconds, 2 * seen.gap), patience) if stable_seconds > 0 else 0.0
        return ready == sig or now - seen.since >= quiet

    def ready(self, *, stable_seconds: float | None = None) -> list[Path]:
        """Files worth reading now (cheap: lstat only); forgets files that left the inbox."""
        stable, patience = self._patience(stable_seconds)
        now = self.clock()
        present: set[str] = set()
        out = []
        for path, st in self._entries():
            present.add(str(path))
            if self.is_complete(path, now, stable, patience, st):
                out.append(path)
        for table in (self._seen, self._ready):
            for key in [k for k in table if k not in present]:
                del table[key]
        return out

    # ------------------------------------------------------------------ taking
    def archive(self, path: Path) -> Archived | None:
        """Read one file through one descriptor and store its bytes in the archive; None when it vanished.

        Touches no ledger and no intake state, so the service runs it in a
        thread while the event loop keeps serving; :meth:`record` acts on the
        result.
        """
        rel = path.relative_to(self.inbox).as_posix()
        seen = self._seen.get(str(path))
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # became a symbolic link since it was listed
                return Archived(None, refuse="is a symbolic link; copy the file itself into the inbox", link=True)
            raise IntakeError(f"{rel}: cannot be read ({exc.strerror}); will retry") from exc
        try:
            st = os.fstat(fd)
            sig = signature(st)
            if not stat.S_ISREG(st.st_mode):
                return None
            if seen is not None and seen.sig != sig:
                return Archived(sig, wait=CHANGED)
            if st.st_nlink > 1:
                # Another name for the same bytes, possibly outside the inbox (and not ours to read).
                return Archived(
                    sig, refuse=f"has {st.st_nlink - 1} other hard link(s), so it may be a file from outside the inbox; links are not followed", link=True
                )
            if open_for_writing(fd):
                return Archived(sig, wait=OPEN_FOR_WRITING)
            data = _read_all(fd, st.st_size)
            after = os.fstat(fd)
            if signature(after) != sig or len(data) != after.st_size:
                return Archived(sig, wait=CHANGED)
            if open_for_writing(fd):  # opened by a writer while it was read
                return Archived(sig, wait=OPEN_FOR_WRITING)
        except OSError as exc:
            raise IntakeError(f"{rel}: cannot be read ({exc.strerror}); will retry") from exc
        finally:
            os.close(fd)
        why = incomplete(data, rel)
        overdue = seen is not None and seen.overdue
        if why is not None and not overdue:
            return Archived(sig, wait=why, judged=True)
        if not data:
            return Archived(sig, refuse="is empty (0 bytes), and nothing was written to it while intake waited")
        sha = hashlib.sha256(data).hexdigest()
        kind = kind_of(data[:4096])
        try:
            write_archive(self.data.archive, sha, data)
        except OSError as exc:
            raise IntakeError(f"{rel}: cannot be archived ({exc.strerror}); will retry") from exc
        if self._signature(path) != sig:
            return Archived(sig, wait=CHANGED)
        return Archived(sig, sha, len(data), kind, truncated=why)

    @staticmethod
    def _signature(path: Path) -> Signature | None:
        try:
            return signature(os.stat(path, follow_symlinks=False))
        except OSError:
            return None

    def _waiting(self, path: Path, found: Archived) -> None:
        """Not complete yet: restart the clock when it changed; say why once."""
        key = str(path)
        seen = self._seen.get(key)
        if seen is None:
            return
        rel = path.relative_to(self.inbox).as_posix()
        if found.wait == CHANGED:
            self.partial_skips += 1
            now = self._signature(path)
            if now is None:
                del self._seen[key]
            else:  # every clock starts again from what is there now
                t = self.clock()
                self._seen[key] = _Seen(now, t, said=seen.said, gap=max(seen.gap, t - seen.since))
            return
        seen.judged = found.judged
        if found.wait != seen.said:
            seen.said = found.wait
            wait_s = self.settings.incomplete_seconds if found.judged else None
            log.info("waiting", file=rel, why=found.wait, **({"quarantine_after_s": wait_s} if wait_s is not None else {}))

    def record(self, path: Path, found: Archived | None) -> Taken | None:
        """Record an archived file in the ledger, then acknowledge it by removing it from the inbox.

        Nothing is recorded or removed when the file is not complete, or when
        its signature no longer matches the bytes that were read.
        """
        if found is None:
            return None
        if found.wait is not None:
            self._waiting(path, found)
            return None
        rel = path.relative_to(self.inbox).as_posix()
        if found.refuse is not None:
            if found.sig is None or self._signature(path) == found.sig:
                self._set_aside(path, found.refuse, link=found.link)
            return None
        if self._signature(path) != found.sig:
            self._waiting(path, Archived(found.sig, wait=CHANGED))
            return None
        fresh = self.ledger.receive_file(found.sha256, rel, found.size, found.kind)
        quarantined = False
        if found.truncated is not None and fresh:
            row = self.ledger.file(found.sha256)
            assert row is not None
            self.quarantine(row, f"appears truncated: {found.truncated}", "truncated")
            quarantined = True
        log.info("received" if fresh else "duplicate", file=rel, sha256=found.sha256, kind=found.kind, size=found.size)
        if self._signature(path) != found.sig:
            # Recorded as read; the file moved on since (a writer came back): it stays to be taken again.
            log.warning("changed after it was recorded; left in the inbox", file=rel, sha256=found.sha256)
            self._waiting(path, Archived(found.sig, wait=CHANGED))
            return Taken(found.sha256, rel, found.kind, fresh, quarantined)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            # Recorded already; a later scan finds it again as a duplicate and retries the removal.
            log.warning("cannot remove from inbox", path=rel, error=str(exc))
        self._seen.pop(str(path), None)
        return Taken(found.sha256, rel, found.kind, fresh, quarantined)

    def take(self, path: Path) -> Taken | None:
        """Archive, record, acknowledge one file; None if it is not complete (yet)."""
        return self.record(path, self.archive(path))

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

    async def scan_async(self) -> list[Taken]:
        """:meth:`scan` for the event loop: reading and archiving run in a thread, ledger writes stay here."""
        taken: list[Taken] = []
        for path in self.ready():
            try:
                found = await asyncio.to_thread(self.archive, path)
            except IntakeError as exc:
                self._failed(path, str(exc))
                continue
            item = self.record(path, found)
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
            seen.retry_at = self.clock() + self.settings.backoff_seconds * 2 ** (seen.failures - 1)
            log.warning("intake retry", path=str(path), error=error, attempts=seen.failures)
