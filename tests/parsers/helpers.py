"""Shared by the parser tests: where the instrument files are, and driving ``ketqua parse`` as a user does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from engine.cli.main import main
from tests import shared

REPO = Path(__file__).resolve().parents[2]
#: Real instrument exports, read-only, next to the repository as in CI (see their SOURCES.md).
REAL = shared.REAL
#: Files written for the tests (variants the real fixtures do not cover).
DATA = REPO / "tests" / "data"


def cli_parse_json(capsys: pytest.CaptureFixture[str], path: Path, *args: str) -> tuple[int, list[dict[str, Any]]]:
    """Run ``ketqua parse PATH [ARGS] --json``: the exit code and the JSON rows it printed."""
    code = main(["parse", str(path), *args, "--json"])
    return code, [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def cli_parse_broken(capsys: pytest.CaptureFixture[str], path: Path, data: bytes, *args: str) -> tuple[int, str]:
    """Write a damaged export to ``path`` and run ``ketqua parse`` on it: the exit code and what it told stderr."""
    path.write_bytes(data)
    code = main(["parse", str(path), *args, "--json"])
    return code, capsys.readouterr().err


def well_row(table: pa.Table, well: str, target: str | None = None, *, dye: str | None = None) -> dict[str, Any]:
    """The one canonical row of ``well`` (of ``target`` / ``dye`` when given); fails unless exactly one matches."""
    rows = [
        r for r in table.to_pylist()
        if r["well"] == well and (target is None or r["target"] == target) and (dye is None or r["dye"] == dye)
    ]
    assert len(rows) == 1, rows
    return rows[0]
