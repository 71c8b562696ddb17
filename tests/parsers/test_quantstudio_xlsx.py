"""QuantStudio Design & Analysis / Diomni .xlsx: real fixture, calls, damaged workbooks, CLI."""

from __future__ import annotations

import importlib.util
import io
import math
from pathlib import Path

import openpyxl
import pytest

from engine.errors import ParseError
from engine.model import WELL_COLUMNS, run_metadata
from parsers import detect, parse_bytes, parse_file
from parsers.notes import run_notes
from tests.parsers import helpers
from tests.parsers.helpers import DATA, cli_parse_broken, cli_parse_json, well_row

XLSX = (
    helpers.REAL / "quantstudio_design_analysis_xlsx"
    / "appbio_quantstudio_designandanalysis_Diomni_v4.3_Presence_Absence.xlsx"
)

#: The project's own Design & Analysis workbook, written by tests/data/make_quantstudio_xlsx.py.
OWN = DATA / "quantstudio_xlsx_da_pools.xlsx"
#: The project's own "Primary Analysis" export (no Sample, no Target column), written by the same script.
PRIMARY = DATA / "refused" / "quantstudio_xlsx_primary_analysis.xlsx"


def _edited(edit) -> bytes:  # type: ignore[no-untyped-def]
    """The real workbook with one edit applied to its Primary_result sheet, as bytes."""
    book = openpyxl.load_workbook(XLSX)
    edit(book["Primary_result"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_diomni_presence_absence_values() -> None:
    """8 well x target rows: A01 → A1, UNDETERMINED → NaN, Cq 39.54, calls from Target Call."""
    table = parse_file(XLSX)
    assert table.num_rows == 8
    t4 = well_row(table, "A1", "T4")
    assert (t4["sample_id"], t4["dye"], t4["role"], t4["line"], t4["call"]) == ("Sample001", "ABY", "sample", 31, "detected")
    assert t4["ct"] == pytest.approx(39.54)
    globin = well_row(table, "A1", "Globin")
    assert math.isnan(globin["ct"]) and globin["call"] == "not_detected"
    assert well_row(table, "C3", "T4")["role"] == "ntc"
    assert well_row(table, "O23", "Globin")["role"] == "pc"  # Task POSITIVE_CONTROL


def test_run_metadata() -> None:
    """Key | Value rows become run metadata (including Diomni's 'Run End Data/Time')."""
    meta = run_metadata(parse_file(XLSX))
    assert meta["instrument"] == "QuantStudio™ 7 Pro System"
    assert meta["serial"] == "000000000001"
    assert meta["operator"] == "TestUser"
    assert meta["software"] == "Diomni 4.3.0"
    assert meta["run_start"] == "2026-02-13 01:14:45 PM EST"
    assert meta["run_end"] == "2026-02-13 02:39:53 PM EST"
    assert meta["format"] == "quantstudio-xlsx"


def test_sniffer_picks_xlsx() -> None:
    """Content sniffing picks quantstudio-xlsx for the workbook, even without its extension."""
    assert detect(XLSX.read_bytes(), "export").name == "quantstudio-xlsx"


def test_truncated_workbook() -> None:
    """A workbook cut in the middle is refused as unreadable, not crashed on."""
    with pytest.raises(ParseError, match=r"cut\.xlsx.*workbook"):
        parse_bytes(XLSX.read_bytes()[:20000], "cut.xlsx", format="quantstudio-xlsx")


def test_non_numeric_cq_names_row() -> None:
    """A text Cq that is not UNDETERMINED is refused naming the sheet row and the Cq field."""
    data = _edited(lambda ws: ws.cell(row=31, column=8, value="39.5x"))
    with pytest.raises(ParseError, match=r"line 31, field 'Cq'"):
        parse_bytes(data, "edited.xlsx")


def test_missing_sample_with_cq() -> None:
    """A row with a Cq but no sample is left out and noted at its row; the workbook's other wells parse."""
    data = _edited(lambda ws: setattr(ws.cell(row=31, column=3), "value", None))
    table = parse_bytes(data, "edited.xlsx")
    assert table.num_rows == 7 and 31 not in table.column("line").to_pylist()
    (note,) = run_notes(table)
    assert (note["well"], note["line"]) == ("A01", 31) and "Ct 39.54 (T4) but no sample name" in note["text"]


def test_omitted_well_is_invalid() -> None:
    """Omit = TRUE turns the row's call into 'invalid'."""
    table = parse_bytes(_edited(lambda ws: ws.cell(row=32, column=2, value="TRUE")), "edited.xlsx")
    assert well_row(table, "A2", "Globin")["call"] == "invalid"


def test_cli_parse_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`ketqua parse` prints canonical JSON rows for the workbook."""
    code, rows = cli_parse_json(capsys, XLSX)
    assert code == 0
    assert len(rows) == 8 and tuple(rows[0]) == WELL_COLUMNS


def test_cli_parse_broken_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A workbook with a well outside the plate exits non-zero naming file and row."""
    damaged = _edited(lambda ws: ws.cell(row=34, column=1, value="Z03"))
    code, err = cli_parse_broken(capsys, tmp_path / "broken.xlsx", damaged)
    assert code != 0
    assert "broken.xlsx" in err and "line 34" in err


def _design_analysis_workbook() -> bytes:
    """A Design & Analysis 2.x style workbook: Results sheet with Well number + Well Position, numeric Cq."""
    book = openpyxl.Workbook()
    ws = book.active
    ws.title = "Results"
    for key, value in [("File Name", "covid_run_12.eds"), ("Operator", "Đỗ Văn Nam"),
                       ("Instrument Type", "QuantStudio™ 5 System"), ("Instrument Serial Number", "272510123"),
                       ("Run Start Date/Time", "2021-10-02 08:01:12 AM ICT"), ("Software name", "Design & Analysis"),
                       ("Software version", "2.6.0"), ("Block Type", "96-Well 0.2-mL Block")]:
        ws.append([key, value])
    ws.append([])
    ws.append(["Well", "Well Position", "Omit", "Sample", "Target", "Task", "Reporter", "Quencher", "Cq", "Cq Mean"])
    ws.append([1, "A1", False, "VN-0001", "ORF1ab", "UNKNOWN", "FAM", "None", 23.125, 23.125])
    ws.append([1, "A1", False, "VN-0001", "MS2", "UNKNOWN", "JUN", "None", 25.5, 25.5])
    ws.append([12, "A12", False, "NTC", "ORF1ab", "NTC", "FAM", "None", "Undetermined", None])
    ws.append([13, "B1", False, None, "ORF1ab", "UNKNOWN", "FAM", "None", "Undetermined", None])  # empty well
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_design_and_analysis_results_sheet() -> None:
    """Well Position is preferred over the running Well number; numeric Cq cells are read as cycles."""
    table = parse_bytes(_design_analysis_workbook(), "da.xlsx")
    assert table.column("well").to_pylist() == ["A1", "A1", "A12"]
    assert table.column("ct").to_pylist()[:2] == [pytest.approx(23.125), pytest.approx(25.5)]
    assert table.column("role").to_pylist() == ["sample", "sample", "ntc"]
    assert table.column("line").to_pylist() == [11, 12, 13]
    meta = run_metadata(table)
    assert meta["operator"] == "Đỗ Văn Nam" and meta["software"] == "Design & Analysis 2.6.0"


def test_well_numbers_only() -> None:
    """Without Well Position, running well numbers are mapped onto the 96-well block (12 → A12)."""
    book = openpyxl.load_workbook(io.BytesIO(_design_analysis_workbook()))
    book["Results"].delete_cols(2)
    out = io.BytesIO()
    book.save(out)
    assert parse_bytes(out.getvalue(), "da.xlsx").column("well").to_pylist() == ["A1", "A1", "A12"]


# ---------------------------------------------------------------------------
# The project's own workbook (tests/data): runs in a clone without ../shared
# ---------------------------------------------------------------------------


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("make_quantstudio_xlsx", DATA / "make_quantstudio_xlsx.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _cells(data: bytes) -> dict[str, list[tuple[object, ...]]]:
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    try:
        return {ws.title: list(ws.iter_rows(values_only=True)) for ws in book.worksheets}
    finally:
        book.close()


def test_own_workbook_matches_its_generator() -> None:
    """The committed .xlsx is what the committed script writes, and the script's bytes never vary."""
    generator = _generator()
    first = generator.build()
    assert generator.build() == first  # fixed document dates and zip member times
    assert _cells(OWN.read_bytes()) == _cells(first)
    book = openpyxl.load_workbook(OWN)
    assert book.properties.created == book.properties.modified == generator.EXPORTED
    assert book.sheetnames == ["Sample Setup", "Amplification Data", "Results"]


def test_own_workbook_values() -> None:
    """Results rows: Well Position used, numeric Cq read, UNDETERMINED → NaN, empty position dropped, Omit → invalid."""
    table = parse_file(OWN)
    assert table.num_rows == 21  # 7 named wells x 3 targets; A6 has no sample
    orf = well_row(table, "A1", "ORF1ab")
    assert (orf["sample_id"], orf["role"], orf["dye"], orf["line"], orf["call"]) == ("P001", "sample", "FAM", 27, None)
    assert orf["ct"] == pytest.approx(23.418)
    assert well_row(table, "A1", "RNase P")["ct"] == pytest.approx(26.733)
    p002 = well_row(table, "A2", "N gene")
    assert p002["sample_id"] == "P002" and math.isnan(p002["ct"]) and p002["line"] == 31
    omitted = well_row(table, "A4", "RNase P")
    assert omitted["sample_id"] == "P004" and omitted["call"] == "invalid"
    assert well_row(table, "A5", "ORF1ab")["sample_id"] == "220506-0112"
    pc = well_row(table, "H11", "N gene")
    assert (pc["role"], pc["line"]) == ("pc", 46) and pc["ct"] == pytest.approx(27.911)  # Task POSITIVE_CONTROL
    ntc = well_row(table, "H12", "ORF1ab")
    assert ntc["role"] == "ntc" and math.isnan(ntc["ct"]) and ntc["line"] == 48
    assert "A6" not in table.column("well").to_pylist()
    # A6 was set up (task UNKNOWN, three targets) but has no sample name: reported, not dropped without a word.
    (note,) = run_notes(table)
    assert (note["well"], note["lines"], note["task"]) == ("A6", [42, 43, 44], "UNKNOWN")
    assert note["ct"] == {"ORF1ab": None, "N gene": None, "RNase P": None}


def test_own_workbook_metadata() -> None:
    """Key | Value rows of the Results sheet: instrument, serial, Vietnamese operator, software, run times, barcode."""
    meta = run_metadata(parse_file(OWN))
    assert meta["instrument"] == "QuantStudio™ 5 System" and meta["serial"] == "272511087"
    assert meta["operator"] == "Võ Thị Mai"
    assert meta["software"] == "Design & Analysis 2.6.0"
    assert meta["run_start"] == "2022-05-06 01:58:31 PM ICT" and meta["run_end"] == "2022-05-06 03:11:47 PM ICT"
    assert meta["plate"] == "PL-220506-03"


def test_own_workbook_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`ketqua parse --json` prints 21 rows: Cq as written, UNDETERMINED as null, sheet rows as lines."""
    code, rows = cli_parse_json(capsys, OWN)
    assert code == 0 and len(rows) == 21 and tuple(rows[0]) == WELL_COLUMNS
    by_line = {r["line"]: r for r in rows}
    assert (by_line[39]["well"], by_line[39]["sample_id"], by_line[39]["target"]) == ("A5", "220506-0112", "ORF1ab")
    assert by_line[39]["ct"] == pytest.approx(18.07)
    assert by_line[30]["ct"] is None and by_line[30]["sample_id"] == "P002"
    assert by_line[50]["role"] == "ntc" and by_line[50]["target"] == "RNase P"


def test_own_workbook_damaged_cq(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A text Cq that is not a number names the file, the sheet row and the Cq field."""
    book = openpyxl.load_workbook(OWN)
    book["Results"].cell(row=33, column=12, value="36.9O5")  # P003 ORF1ab, letter O for zero
    out = io.BytesIO()
    book.save(out)
    with pytest.raises(ParseError, match=r"line 33, field 'Cq'"):
        parse_bytes(out.getvalue(), "edited.xlsx")
    code, err = cli_parse_broken(capsys, tmp_path / "plate03.xlsx", out.getvalue())
    assert code != 0
    assert "plate03.xlsx" in err and "line 33" in err and "'Cq'" in err


def _own_edited(edit) -> bytes:  # type: ignore[no-untyped-def]
    book = openpyxl.load_workbook(OWN)
    edit(book["Results"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_own_workbook_unnamed_well_with_ct_is_noted_and_the_plate_parses() -> None:
    """One well with Cq values but its Sample erased: its rows are left out and noted; every named well is read."""
    def erase(ws) -> None:  # type: ignore[no-untyped-def]
        for row in (39, 40, 41):  # A5, sample 220506-0112
            ws.cell(row=row, column=4).value = None
    table = parse_bytes(_own_edited(erase), "plate03.xlsx")
    assert table.num_rows == 18 and "A5" not in table.column("well").to_pylist()
    notes = {n["well"]: n for n in run_notes(table)}
    assert sorted(notes) == ["A5", "A6"]
    assert notes["A5"]["lines"] == [39, 40, 41] and notes["A5"]["ct"] == {"ORF1ab": 18.07, "N gene": 18.64, "RNase P": 27.05}
    assert "its pool cannot be matched" in notes["A5"]["text"]


def test_own_workbook_without_any_named_well_is_refused_at_the_first_unnamed_row() -> None:
    """Every Sample erased and every task UNKNOWN: nothing to decide; refused at the first unnamed row, field Sample."""
    def erase(ws) -> None:  # type: ignore[no-untyped-def]
        for row in range(27, 51):
            ws.cell(row=row, column=4).value = None
            ws.cell(row=row, column=6).value = "UNKNOWN"
    with pytest.raises(ParseError, match=r"line 27, field 'Sample': the sheet 'Results' holds no well with a sample name"):
        parse_bytes(_own_edited(erase), "plate03.xlsx")


def test_primary_analysis_workbook_matches_its_generator() -> None:
    """The committed Primary Analysis export is what the script writes; its table header is row 25."""
    generator = _generator()
    assert generator.build_primary_analysis() == generator.build_primary_analysis()
    assert _cells(PRIMARY.read_bytes()) == _cells(generator.build_primary_analysis())
    rows = _cells(PRIMARY.read_bytes())["Results"]
    assert rows[24][:7] == ("Well Position", "Task", "Reporter", "Cq", "Threshold", "Baseline Start", "Baseline End")


def test_primary_analysis_export_is_refused_at_its_header_row_naming_what_is_missing() -> None:
    """Design & Analysis "Primary Analysis": no Sample and no Target column; said at row 25, not 'line 1: no sheet'."""
    with pytest.raises(ParseError) as info:
        parse_file(PRIMARY)
    message = str(info.value)
    assert "line 25, field 'Sample'" in message
    assert "sheet 'Results' (a Primary Analysis v1.6.1 export) has no Sample and no Target column" in message
    assert "Well Position, Task, Reporter, Cq" in message
    assert "found Results" not in message


def test_workbook_without_any_cq_table_names_its_sheets() -> None:
    """A workbook with no results table at all is refused at line 1, listing the sheets it has."""
    book = openpyxl.Workbook()
    book.active.title = "Notes"
    book.active.append(["just", "text"])
    out = io.BytesIO()
    book.save(out)
    with pytest.raises(ParseError, match=r"line 1: no results table with Well, Sample and Cq columns.*sheets found: Notes"):
        parse_bytes(out.getvalue(), "notes.xlsx", format="quantstudio-xlsx")
