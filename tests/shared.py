"""Where the read-only real fixtures live (``../shared/fixtures`` beside the clone), and how tests skip without them.

The real instrument exports and DCC test vectors are not part of the project
(their SOURCES.md says where each came from); CI lays them beside the clone.
A clone alone still installs and passes: every test that reads them is
skipped with :data:`REASON`, found by :func:`uses_shared` (so no test has to
remember a marker), and ``.ci/run`` fails when the folder is missing.
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
#: The shared fixtures folder, as CI lays it out: ``<clone>/../shared/fixtures``.
SHARED = (REPO.parent / "shared" / "fixtures").resolve()
REAL = SHARED / "real"
VECTORS = SHARED / "vectors"
PRESENT = SHARED.is_dir()
REASON = f"{SHARED} is absent: real instrument files and DCC vectors live beside the clone (CI provides them; .ci/run fails without them)"

#: Explicit form, for a test whose use of the fixtures the collector cannot see.
requires_shared = pytest.mark.skipif(not PRESENT, reason=REASON)


def _is_shared(value: Any) -> bool:
    if isinstance(value, Path):
        try:
            return value.resolve().is_relative_to(SHARED)
        except OSError:
            return False
    if isinstance(value, str):
        return "shared/fixtures" in value or value.startswith(str(SHARED))
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_is_shared(v) for v in value)
    if isinstance(value, dict):
        return any(_is_shared(k) or _is_shared(v) for k, v in value.items())
    return False


def _code_uses_shared(code: types.CodeType, module_globals: dict[str, Any], seen: set[int], depth: int) -> bool:
    if id(code) in seen or depth > 3:
        return False
    seen.add(id(code))
    for const in code.co_consts:
        if isinstance(const, str) and const == "shared":
            return True
        if isinstance(const, types.CodeType) and _code_uses_shared(const, module_globals, seen, depth):
            return True
    for name in code.co_names:
        value = module_globals.get(name)
        if isinstance(value, types.ModuleType) and value.__name__ == __name__:
            return True
        if _is_shared(value):
            return True
        if isinstance(value, types.FunctionType) and value.__module__.startswith("tests"):
            if _code_uses_shared(value.__code__, value.__globals__, seen, depth + 1):
                return True
    return False


def uses_shared(function: types.FunctionType, params: Iterable[Any] = ()) -> bool:
    """True when a test reads the shared fixtures: through its parameters, a module constant or a test helper it calls."""
    if any(_is_shared(p) for p in params):
        return True
    return _code_uses_shared(function.__code__, function.__globals__, set(), 0)
