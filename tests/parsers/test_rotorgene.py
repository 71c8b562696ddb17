"""Qiagen Rotor-Gene Q Excel Analysed Data Export: real fixture, variants, errors, CLI."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from engine.errors import ParseError
from engine.model import WELL_COLUMNS, run_metadata
from parsers import detect, parse_bytes, parse_file
from tests.parsers import helpers
from tests.parsers.helpers import DATA, cli_parse_broken, cli_parse_json

RGQ = helpers.REAL / "rotorgene_q_csv" / "irregular_multi_assay.csv"
#: The project's own export from a Vietnamese-locale PC: ';' separators, decimal commas, BOM, CRLF, padding.
OWN = DATA / "rotorgene_vi_semicolon_decimal_comma.csv"

SARS = (
    "\ufeffExcel Analysed Data Export;;;;;\r\n"
    "File;SARS-CoV-2 2021-07-30.rex;;;;\r\nOperator;Lê Minh;;;;\r\nMachine Serial No.;R0912188;;;;\r\n;;;;;\r\n"
    "Quantitative analysis of Cycling A.Green (E gene);;;;;\r\n;;;;;\r\n"
    "No.;Colour;Name;Type;Ct;Ct Comment\r\n"
    "1;255;BN-0001;Unknown;31,42;\r\n2;255;;Unknown;;\r\n3;255;NTC;NTC;;NEG (NTC)\r\n4;255;PTC;Positive Control;28,1;\r\n"
    ";;;;;\r\n"
    "Quantitative analysis of Cycling A.Yellow;;;;;\r\n;;;;;\r\n"
    "No.;Colour;Name;Type;Ct;Ct Comment\r\n"
    "1;255;BN-0001;Unknown;33,05;\r\n3;255;NTC;NTC;;\r\n4;255;PTC;Positive Control;29,9;\r\n"
)


def test_real_export_values() -> None:
    """Three assay sections of 24 tubes each; assay names are targets, well is null."""
    table = parse_file(RGQ)
    assert table.num_rows == 72
    rows = table.to_pylist()
    first = rows[0]
    assert (first["sample_id"], first["target"], first["dye"], first["line"]) == ("NK1", "28S", "Green", 10)
    assert first["ct"] == pytest.approx(7.49) and first["well"] is None
    hnrnpl = [r for r in rows if r["target"] == "HNRNPL protein"]
    assert len(hnrnpl) == 24 and hnrnpl[2]["sample_id"] == "NK2" and hnrnpl[2]["ct"] == pytest.approx(18.0)
    assert rows[-1]["target"] == "HNRNPL NMD" and rows[-1]["ct"] == pytest.approx(22.39) and rows[-1]["line"] == 91
    meta = run_metadata(table)
    assert meta["encoding"] == "utf-8-sig"
    assert meta["plate"] == "Brilliant III Ultra Fast SYBR Green 2021-03-16 (1).rex"
    assert meta["run_start"] == "3/16/2021 10:34:20 AM"


def test_decimal_comma_controls_and_channel_without_assay() -> None:
    """Decimal commas, NTC/positive-control types, an empty tube, and a section named by channel only."""
    table = parse_bytes(SARS.encode("utf-8"), "sars.csv")
    rows = table.to_pylist()
    assert len(rows) == 6  # the unnamed tube without Ct is an empty position
    assert rows[0]["ct"] == pytest.approx(31.42) and rows[0]["target"] == "E gene"
    assert [r["role"] for r in rows[:3]] == ["sample", "ntc", "pc"]
    assert math.isnan(rows[1]["ct"])
    assert rows[3]["target"] == "Cycling A.Yellow" and rows[3]["dye"] == "Yellow"
    meta = run_metadata(table)
    assert meta["operator"] == "Lê Minh" and meta["serial"] == "R0912188"


@pytest.mark.parametrize("name", ["irregular_multi_assay.csv", "results.txt"])
def test_sniffer_picks_rotorgene(name: str) -> None:
    """Content sniffing picks rotorgene whatever the file is called."""
    assert detect(RGQ.read_bytes(), name).name == "rotorgene"
    assert detect(SARS.encode(), name).name == "rotorgene"


def test_section_without_table() -> None:
    """A file cut after a section title names that section's line."""
    data = SARS.split("No.;Colour")[0].encode()
    with pytest.raises(ParseError, match=r"line 6: the section 'Quantitative analysis of Cycling A.Green \(E gene\)'"):
        parse_bytes(data, "sars.csv")


def test_damaged_ct_names_line() -> None:
    """A non-numeric Ct names its line and the Ct field."""
    data = RGQ.read_bytes().replace(b";18.37;", b";18.3?;")
    with pytest.raises(ParseError, match=r"line 56, field 'Ct'"):
        parse_bytes(data, "rgq.csv")


def test_ct_without_name_is_refused() -> None:
    """A tube with a Ct but no name cannot be attributed and is refused at its line."""
    data = RGQ.read_bytes().replace(b"26;5775359;NK1;", b"26;5775359;;", 1)
    with pytest.raises(ParseError, match=r"line 11, field 'Name'"):
        parse_bytes(data, "rgq.csv")


def test_cli_parse_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`ketqua parse` prints canonical JSON rows for the Rotor-Gene fixture."""
    code, rows = cli_parse_json(capsys, RGQ)
    assert code == 0
    assert len(rows) == 72 and tuple(rows[0]) == WELL_COLUMNS and rows[0]["well"] is None


def test_cli_parse_broken_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A Rotor-Gene export with an impossible Ct exits non-zero naming file and line."""
    damaged = RGQ.read_bytes().replace(b";7.49;", b";74.9;")
    code, err = cli_parse_broken(capsys, tmp_path / "broken_rgq.csv", damaged)
    assert code != 0
    assert "broken_rgq.csv" in err and "line 10" in err


# ---------------------------------------------------------------------------
# The project's own export (tests/data): runs in a clone without ../shared
# ---------------------------------------------------------------------------


def _rows(table):  # type: ignore[no-untyped-def]
    return {(r["sample_id"], r["target"]): r for r in table.to_pylist()}


def test_own_export_is_vietnamese_locale() -> None:
    """The file keeps what Rotor-Gene Q writes on a vi-VN PC: BOM, CRLF, ';' padding, decimal commas."""
    data = OWN.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfExcel Analysed Data Export;;;") and data.endswith(b";\r\n")
    assert data.count(b"\n") == data.count(b"\r\n")
    assert b";27,84;" in data
    assert detect(data, "ket qua.csv").name == "rotorgene"


def test_own_export_values() -> None:
    """Two sections (N gene on Green, IC on Yellow); decimal commas read; empty Ct → NaN; empty tubes dropped."""
    table = parse_file(OWN)
    assert table.num_rows == 16  # tubes 7 and 8 are empty rotor positions
    rows = _rows(table)
    p001 = rows[("P001", "N gene")]
    assert (p001["dye"], p001["role"], p001["line"], p001["well"]) == ("Green", "sample", 13, None)
    assert p001["ct"] == pytest.approx(27.84)
    assert rows[("P003", "N gene")]["ct"] == pytest.approx(36.2)
    assert math.isnan(rows[("P002", "N gene")]["ct"]) and rows[("P002", "N gene")]["line"] == 14
    assert math.isnan(rows[("P005", "N gene")]["ct"])  # "NEG (Ct<Threshold)" comment, no Ct
    ic = rows[("P001", "IC")]
    assert (ic["dye"], ic["line"]) == ("Yellow", 28) and ic["ct"] == pytest.approx(29.03)
    assert math.isnan(rows[("P004", "IC")]["ct"])  # no amplification at all: the IC failed too
    assert rows[("NTC", "N gene")]["role"] == "ntc" and math.isnan(rows[("NTC", "N gene")]["ct"])
    ptc = rows[("PTC", "N gene")]
    assert (ptc["role"], ptc["line"]) == ("pc", 22) and ptc["ct"] == pytest.approx(25.12)
    assert rows[("220402-0093", "N gene")]["ct"] == pytest.approx(19.57)


def test_own_export_metadata() -> None:
    """Run file, operator (Vietnamese name), serial, software and dd/mm/yyyy date as written."""
    meta = run_metadata(parse_file(OWN))
    assert meta["encoding"] == "utf-8-sig"
    assert meta["plate"] == "SARS-CoV-2 gộp mẫu 2022-04-02 (2).rex"
    assert meta["operator"] == "Phạm Thị Ngọc" and meta["serial"] == "R0318207"
    assert meta["run_start"] == "02/04/2022 14:05:12"


def test_own_export_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`ketqua parse --json` prints the 16 tube rows: decimal-comma Ct as numbers, no Ct as null, well null."""
    code, rows = cli_parse_json(capsys, OWN)
    assert code == 0 and len(rows) == 16 and tuple(rows[0]) == WELL_COLUMNS
    by_line = {r["line"]: r for r in rows}
    assert (by_line[18]["sample_id"], by_line[18]["target"], by_line[18]["well"]) == ("220402-0093", "N gene", None)
    assert by_line[18]["ct"] == pytest.approx(19.57)
    assert by_line[21]["role"] == "ntc" and by_line[21]["ct"] is None
    assert by_line[37]["target"] == "IC" and by_line[37]["ct"] == pytest.approx(27.9)


def test_own_export_damaged_ct(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A Ct with two decimal commas names the file, its line and the Ct field."""
    damaged = OWN.read_bytes().replace(b";36,2;", b";36,2,0;")
    with pytest.raises(ParseError, match=r"line 15, field 'Ct'"):
        parse_bytes(damaged, "rgq.csv")
    code, err = cli_parse_broken(capsys, tmp_path / "rgq_vi.csv", damaged)
    assert code != 0
    assert "rgq_vi.csv" in err and "line 15" in err and "'Ct'" in err
