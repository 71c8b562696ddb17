"""Bio-Rad CFX Quantification Cq Results: real fixtures, locale and UTF-16 variants, errors, CLI."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from engine.errors import ParseError
from engine.model import WELL_COLUMNS, rows_as_dicts, run_metadata
from parsers import detect, parse_bytes, parse_file
from tests.parsers import helpers
from tests.parsers.helpers import DATA, cli_parse_broken, cli_parse_json, well_row

REAL = helpers.REAL / "biorad_cfx_csv"
MAESTRO = REAL / "example01.csv"
MANAGER = REAL / "CFX_sample.txt"
VIETNAMESE = DATA / "cfx_vi_semicolon_decimal_comma.csv"
UTF16 = DATA / "cfx_utf16.txt"


def test_maestro_export_values() -> None:
    """CFX Maestro example: empty wells (no sample, NaN) dropped; values as in the file."""
    table = parse_file(MAESTRO)
    assert table.num_rows == 108  # 192 well x fluor rows, 84 of them empty wells
    a1 = well_row(table, "A1", "FAM")
    assert (a1["sample_id"], a1["dye"], a1["role"], a1["line"]) == ("M3905 R Ctx", "FAM", "sample", 2)
    assert a1["ct"] == pytest.approx(21.1877528266099, rel=1e-6)
    assert "A9" not in table.column("well").to_pylist()  # Unkn, no sample, NaN
    meta = run_metadata(table)
    assert meta["format"] == "cfx" and meta["encoding"] == "utf-8"


def test_manager_export_na_and_roles() -> None:
    """Older CFX Manager export: N/A Cq is NaN, Neg Ctrl and Std-NNN contents get their roles."""
    table = parse_file(MANAGER)
    assert table.num_rows == 330
    a7 = well_row(table, "A7")
    assert a7["role"] == "nc" and math.isnan(a7["ct"]) and a7["sample_id"] is None
    a1 = well_row(table, "A1")
    assert (a1["sample_id"], a1["target"], a1["dye"]) == ("1-SI1", "GLP1", "SYBR")
    assert a1["ct"] == pytest.approx(37.42)
    p22 = well_row(table, "P22")
    assert p22["ct"] == pytest.approx(36.14) and p22["target"] == "TFF1"
    assert "std" in set(table.column("role").to_pylist())


def test_vietnamese_locale_variant() -> None:
    """';' separators and decimal commas (Vietnamese Windows) parse, with run lines as metadata."""
    table = parse_file(VIETNAMESE)
    assert table.num_rows == 15
    a1 = well_row(table, "A1", "E")
    assert a1["ct"] == pytest.approx(24.02) and a1["dye"] == "HEX" and a1["sample_id"] == "VN-HN-000101"
    assert a1["line"] == 10
    assert well_row(table, "H11", "N")["role"] == "pc"
    assert well_row(table, "H12", "N")["role"] == "ntc"
    assert math.isnan(well_row(table, "A3", "E")["ct"])
    meta = run_metadata(table)
    assert meta["encoding"] == "utf-8-sig"
    assert meta["operator"] == "Trần Văn Bình"
    assert meta["serial"] == "CT012345"
    assert meta["software"] == "CFX Maestro 2.3"


def test_utf16_variant() -> None:
    """A UTF-16 LE (BOM) tab-separated export with N/A markers gives the same values."""
    table = parse_file(UTF16)
    assert run_metadata(table)["encoding"] == "utf-16-le"
    assert table.num_rows == 15
    assert well_row(table, "A3", "RdRP")["ct"] == pytest.approx(38.12)
    assert math.isnan(well_row(table, "A3", "E")["ct"])


@pytest.mark.parametrize("path", [MAESTRO, MANAGER, VIETNAMESE, UTF16])
def test_sniffer_picks_cfx(path: Path) -> None:
    """Content sniffing picks cfx for every CFX variant."""
    assert detect(path.read_bytes(), path.name).name == "cfx"


def test_comma_file_with_comma_decimal_is_refused() -> None:
    """A Cq written with a decimal comma inside a comma-separated file cannot be split; it is refused by line."""
    data = MANAGER.read_bytes().replace(b",37.42,", b",37.42.1,", 1)
    with pytest.raises(ParseError, match=r"line 2, field 'Cq'.*37\.42\.1"):
        parse_bytes(data, "cfx.csv")


def test_truncated_after_header() -> None:
    """A file cut after the header row says the table has no rows, naming line 1."""
    head = MAESTRO.read_bytes().split(b"\r\n")[0] + b"\r\n"
    with pytest.raises(ParseError, match=r"x\.csv, line 1: .*no rows"):
        parse_bytes(head, "x.csv")


def test_well_outside_plate() -> None:
    """A well beyond P24 is refused with its line."""
    data = MANAGER.read_bytes().replace(b",P22,", b",P25,")
    with pytest.raises(ParseError, match=r"line 331, field 'Well'.*outside"):
        parse_bytes(data, "cfx.csv")


def test_cq_without_sample_is_refused() -> None:
    """An Unkn well with a Cq but no sample name is refused (cannot be attributed)."""
    data = MAESTRO.read_bytes().replace(b",Unkn,M3905 R Ctx,", b",Unkn,,", 1)
    with pytest.raises(ParseError, match=r"line 2, field 'Sample'"):
        parse_bytes(data, "cfx.csv")


def test_cli_parse_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`ketqua parse` prints canonical JSON rows for the CFX Maestro fixture."""
    code, rows = cli_parse_json(capsys, MAESTRO)
    assert code == 0
    assert len(rows) == 108 and tuple(rows[0]) == WELL_COLUMNS


def test_cli_parse_broken_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A CFX file with a damaged Cq exits non-zero naming file and line."""
    damaged = MAESTRO.read_bytes().replace(b",21.1877528266099,21.1877528266099,", b",x,21.18,", 1)
    code, err = cli_parse_broken(capsys, tmp_path / "broken_cfx.csv", damaged)
    assert code != 0
    assert "broken_cfx.csv" in err and "line 2" in err


def test_utf16_big_endian_same_values() -> None:
    """The Maestro export re-saved as UTF-16 BE gives the same rows as the original."""
    data = b"\xfe\xff" + MAESTRO.read_bytes().decode("ascii").encode("utf-16-be")
    table = parse_bytes(data, "be.csv")
    assert run_metadata(table)["encoding"] == "utf-16-be"
    columns = ["line", "well", "sample_id", "role", "target", "dye", "ct"]
    assert rows_as_dicts(table, columns) == rows_as_dicts(parse_file(MAESTRO), columns)


def test_export_without_index_column() -> None:
    """An export without the untitled leading index column is read the same way."""
    lines = MAESTRO.read_bytes().split(b"\r\n")
    data = b"\r\n".join(line[1:] if line.startswith(b",") else line for line in lines)
    table = parse_bytes(data, "no_index.csv")
    assert table.num_rows == 108
    assert well_row(table, "A1", "FAM")["ct"] == pytest.approx(21.1877528266099, rel=1e-6)
