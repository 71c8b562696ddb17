"""Writing files so that a crash or power cut at any moment leaves the old file or the new one, never half.

One helper for every file ketqua writes that someone relies on (the archive of
received bytes, certificates, quarantine copies and their reasons, the puller's
state, export manifests, demo drops). The bytes go to a hidden temporary name
in the same folder (which intake never takes), are fsynced, renamed into place,
and the folder is fsynced so the rename itself survives. ``signing/pki.py``
keeps its own copy because ``signing/`` imports nothing from the engine.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["fsync_dir", "write_atomically"]


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make the renames and creations in ``folder`` durable (a no-op where folders cannot be fsynced)."""
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


def write_atomically(path: str | os.PathLike[str], data: bytes, *, sync_folder: bool = True) -> Path:
    """Write ``data`` to ``path`` durably and atomically; returns the path.

    ``sync_folder=False`` leaves the folder's fsync to the caller, who writes a
    batch of files into one folder and then calls :func:`fsync_dir` once.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_folder:
        fsync_dir(target.parent)
    return target
