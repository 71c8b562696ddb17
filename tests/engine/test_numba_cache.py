"""numba's kernel cache never lands beside the installed sources (issue 12, item 10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_PROBE = """
import json, numpy as np
import engine.pooling.kernels as k
import numba.core.config as c
out = np.zeros((1, 2), np.int8); reason = np.zeros((1, 2), np.int8)
k.disjoint_batch(np.zeros((1, 1), np.int8), np.zeros(2, np.int64), np.zeros(2, np.bool_), out, reason)
print(json.dumps({"cache_dir": c.CACHE_DIR}))
"""


def _probe(tmp_path: Path, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    environ.update(PYTHONPATH=str(REPO), HOME=str(tmp_path / "home"), **env)
    done = subprocess.run([sys.executable, "-c", _PROBE], env=environ, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_kernel_cache_goes_to_the_users_cache_folder(tmp_path: Path) -> None:
    """Importing a kernel module sets numba's cache to ~/.cache/ketqua/numba, and the compiled kernel is cached there."""
    report = _probe(tmp_path)
    cache = tmp_path / "home" / ".cache" / "ketqua" / "numba"
    assert report["cache_dir"] == str(cache)
    assert any(p.suffix == ".nbi" for p in cache.rglob("*")), "the kernel was not cached in the user's folder"


def test_xdg_cache_home_and_an_explicit_choice_are_respected(tmp_path: Path) -> None:
    """XDG_CACHE_HOME moves the cache; a NUMBA_CACHE_DIR the user set is kept as is."""
    assert _probe(tmp_path, XDG_CACHE_HOME=str(tmp_path / "xdg"))["cache_dir"] == str(tmp_path / "xdg" / "ketqua" / "numba")
    assert _probe(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "mine"))["cache_dir"] == str(tmp_path / "mine")
