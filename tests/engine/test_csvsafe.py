"""CSV exports neutralise cells a spreadsheet would run (OWASP CSV injection), in every CSV ketqua writes."""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path

import numpy as np
import pytest

from engine.cli.main import main
from engine.csvsafe import DictWriter, neutralise
from engine.datadir import DataDir
from engine.ledger.sqlite import Ledger, PlateCommit
from engine.pooling.designs import Design
from engine.pooling.worklist import write_worklist

HYPERLINK = '=HYPERLINK("http://evil.example/","click")'


@pytest.mark.parametrize("text", [HYPERLINK, "+1+2", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "=cmd|' /C calc'!A0"])
def test_formula_starts_get_a_quote(text: str) -> None:
    """Text starting with = + - @ TAB or CR is written with a leading single quote."""
    assert neutralise(text) == "'" + text


@pytest.mark.parametrize("value", ["Nguyễn Văn An", "SP-0001", "0901234567", "", " =1", "a=b", 5, -3, 2.5, None])
def test_ordinary_cells_are_unchanged(value: object) -> None:
    """Names, ids, numbers (a negative number is no formula) and empty cells pass untouched."""
    assert neutralise(value) == value


def test_dict_writer_neutralises_every_cell_but_reads_back_the_text() -> None:
    """The shared writer quotes formula cells; reading the CSV gives the text with one leading quote."""
    buf = io.StringIO()
    writer = DictWriter(buf, fieldnames=("a", "b"))
    writer.writeheader()
    writer.writerows([{"a": HYPERLINK, "b": "ok"}])
    writer.writerow({"a": "-1", "b": 7})
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert rows == [{"a": "'" + HYPERLINK, "b": "ok"}, {"a": "'-1", "b": "7"}]


def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(list(argv))
    return status, out.getvalue()


def test_retests_csv_does_not_write_a_live_formula(tmp_path: Path) -> None:
    """A manifest name that is a spreadsheet formula lands in `retests --csv` as inert text."""
    data = DataDir.at(tmp_path / "data").create()
    row = {"line": 2, "pool_id": "P1", "specimen_id": "S1", "full_name": HYPERLINK, "collection_site": "@SUM(1)",
           "collected_at": "2026-11-28T08:30:00+07:00", "aliquot": True}
    with Ledger.open(data.ledger) as ledger:
        ledger.receive_file("m" * 64, "m.csv", 10, "manifest")
        ledger.commit_manifest("m" * 64, [row])
        ledger.receive_file("r" * 64, "p.txt", 10, "analyzer")
        ledger.commit_plate(PlateCommit("r" * 64, "p.txt", {}, 96, [], [
            {"specimen_id": "S1", "outcome": "RETEST", "retest": "rerun", "pool_id": "P1"}]))
    target = tmp_path / "retests.csv"
    status, _ = _cli("retests", "--csv", str(target), "--data", str(data.root))
    assert status == 0
    (got,) = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8-sig"))))
    assert got["full_name"] == "'" + HYPERLINK and got["collection_site"] == "'@SUM(1)"
    assert got["specimen_id"] == "S1"


def test_worklist_csv_does_not_write_a_live_formula() -> None:
    """Specimen and pool names from a user's design file are written inert in the pipetting worklist."""
    design = Design(("=P1",), ("+S1", "S2"), np.ones((1, 2), dtype=bool), "custom", "custom")
    rows = list(csv.DictReader(io.StringIO(write_worklist(design))))
    assert [r["specimen_id"] for r in rows] == ["'+S1", "S2"]
    assert {r["pool_id"] for r in rows} == {"'=P1"}
    assert rows[0]["step"] == "1"


def test_no_module_writes_csv_around_the_shared_writer() -> None:
    """Every CSV writer in engine/ is the neutralising one: no raw csv.writer/csv.DictWriter elsewhere."""
    root = Path(__file__).resolve().parents[2] / "engine"
    raw = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if p.name != "csvsafe.py" and any(call in p.read_text(encoding="utf-8") for call in ("csv.writer(", "csv.DictWriter("))
    ]
    assert raw == []
