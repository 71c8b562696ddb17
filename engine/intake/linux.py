"""What Linux tells intake about the inbox: inotify wake-ups and write leases (who still holds a file open).

Both are optional: without inotify the watcher polls, and without a lease
(another file system, another OS) ``open_for_writing`` answers ``None`` and the
stability rules alone decide.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import os
import signal
import struct
from pathlib import Path

# inotify (Linux, local disks): a file renamed into place (IN_MOVED_TO) is complete now,
# with no stable-time wait. A close after writing (IN_CLOSE_WRITE) only wakes the
# scanner: a writer appending one chunk per open closes the file after every chunk.
# Network shares deliver no events, so polling with the stable-time rule stays, and so
# does the full rescan, because the kernel drops events when its queue overflows (IN_Q_OVERFLOW).
# inotify(7) event bits and inotify_init1 flags.
_IN_CLOSE_WRITE, _IN_MOVED_TO, _IN_CREATE = 0x00000008, 0x00000080, 0x00000100
_IN_Q_OVERFLOW, _IN_ISDIR, _IN_NONBLOCK, _IN_CLOEXEC = 0x00004000, 0x40000000, 0o4000, 0o2000000

class InotifyWatch:
    """Recursive inotify watch of a folder through libc (no extra dependency); Linux only."""

    def __init__(self, root: Path) -> None:
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
        """Paths of files renamed into place since the last call (new subfolders get watched)."""
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
                if mask & _IN_MOVED_TO:
                    out.append(path)

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


_F_SETLEASE = getattr(fcntl, "F_SETLEASE", None)
_F_SETSIG = getattr(fcntl, "F_SETSIG", None)


def open_for_writing(fd: int) -> bool | None:
    """Whether some process holds the file open for writing; None when the filesystem cannot tell.

    A read lease (Linux) is refused with EAGAIN/EBUSY while any descriptor is
    open for writing; it is released at once. EINVAL (NFS, SMB, overlay) and
    EACCES (not the owner, no CAP_LEASE) mean no answer: the stable-time rule
    decides alone. The lease-break signal is set to SIGURG, whose default is
    to be ignored: the default SIGIO would kill the engine if a writer opened
    the file in the microseconds the lease is held.
    """
    if _F_SETLEASE is None:
        return None
    try:
        if _F_SETSIG is not None:
            fcntl.fcntl(fd, _F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, _F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EBUSY):
            return True
        return None
    try:
        fcntl.fcntl(fd, _F_SETLEASE, fcntl.F_UNLCK)
    except OSError:
        pass
    return False


