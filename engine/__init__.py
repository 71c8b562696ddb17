"""ketqua's engine: the shared model, the ledger, assay rules, pool decoding, the pipeline and the API."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

__version__ = "0.1.0"


def numba_cache_dir() -> str:
    """Point numba's on-disk kernel cache at a per-user folder, unless the user chose one.

    Left alone, numba writes ``.nbi``/``.nbc`` files into ``__pycache__`` beside
    the sources, i.e. into site-packages; a later ``pip install`` then leaves an
    ``engine/`` folder holding only that cache, which Python takes for a namespace
    package and every ``ketqua`` command fails. Must run before numba is imported
    (numba reads ``NUMBA_CACHE_DIR`` once); every ``engine.*`` import passes here first.
    """
    chosen = os.environ.get("NUMBA_CACHE_DIR")
    if chosen:
        return chosen
    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    except RuntimeError:  # no HOME and no passwd entry (some containers)
        base = Path(tempfile.gettempdir())
    for candidate in (base / "ketqua" / "numba", Path(tempfile.gettempdir()) / f"ketqua-numba-{os.getuid()}"):
        try:
            candidate.mkdir(parents=True, exist_ok=True, mode=0o700)
            if os.access(candidate, os.W_OK | os.X_OK):
                break
        except OSError:
            continue
    os.environ["NUMBA_CACHE_DIR"] = str(candidate)
    config = sys.modules.get("numba.core.config")
    if config is not None and not getattr(config, "CACHE_DIR", ""):
        config.CACHE_DIR = str(candidate)  # numba came first (a notebook, a test): too late for the variable alone
    return str(candidate)


numba_cache_dir()

# Engine modules import pyHanko lazily in many places; the signing package holds the one
# filter for pyHanko's DSA deprecation warning, and importing it here puts it in place first.
import signing  # noqa: E402,F401
