"""Generic CSV/TSV through a mapping profile: wide and long layouts, env-var CLI, mapping errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from engine.errors import ParseError
from engine.model import WELL_COLUMNS, run_metadata
from parsers import detect, formats, parse_bytes
from parsers.generic_csv import MAPPING_ENV, CsvMapping, load_mapping, parse_with_mapping
from tests.parsers.helpers import DATA, cli_parse_broken, cli_parse_json

WIDE = DATA / "generic_csv_vi_wide.csv"
WIDE_MAP = DATA / "generic_csv_vi_wide.toml"

LONG = (
    "Run exported by LIS\n"
    "Well\tSample\tTarget\tCt\tType\tResult\n"
    "B02\tS-01\tN\t21.4\tUnknown\tPositive\n"
    "B02\tS-01\tRP\t25.0\tUnknown\t\n"
    "B03\tS-02\tN\tNo Ct\tUnknown\tNegative\n"
    "C01\tBlank\tN\t\tNTC\t\n"
)
LONG_MAP = {
    "header_line": 2,
    "separator": "\\t",
    "columns": {"sample": "Sample", "target": "Target", "ct": "Ct", "well": "Well", "role": "Type", "call": "Result"},
}


def test_wide_vietnamese_export() -> None:
    """A ';' / decimal-comma wide sheet gives one row per well x target with mapped dyes and roles."""
    table = parse_with_mapping(WIDE.read_bytes(), WIDE.name, "run", WIDE_MAP)
    assert table.num_rows == 15  # 5 named wells x 3 targets; the empty well A04 is skipped
    rows = table.to_pylist()
    first = rows[0]
    assert (first["well"], first["sample_id"], first["target"], first["dye"], first["line"]) == ("A1", "HN-2109-0001", "E", "FAM", 2)
    assert first["ct"] == pytest.approx(24.51)
    a3 = {r["target"]: r for r in rows if r["well"] == "A3"}
    assert a3["E"]["ct"] == pytest.approx(37.8) and math.isnan(a3["RdRP"]["ct"])  # "Âm tính"
    assert {r["role"] for r in rows if r["well"] == "H11"} == {"pc"}  # "Chứng dương"
    assert {r["role"] for r in rows if r["well"] == "H12"} == {"ntc"}  # "Chứng âm"
    meta = run_metadata(table)
    assert meta["operator"] == "Phạm Thu Trang" and meta["format"] == "generic-csv" and meta["encoding"] == "utf-8"


def test_long_tsv_with_header_line_and_calls() -> None:
    """A long-format TSV with a title line, explicit header_line, roles and calls."""
    table = parse_with_mapping(LONG.encode(), "lis.tsv", "run", LONG_MAP)
    rows = table.to_pylist()
    assert [r["line"] for r in rows] == [3, 4, 5, 6]
    assert rows[0]["well"] == "B2" and rows[0]["ct"] == pytest.approx(21.4) and rows[0]["call"] == "detected"
    assert math.isnan(rows[2]["ct"]) and rows[2]["call"] == "not_detected"
    assert rows[3]["role"] == "ntc"


def test_explicit_encoding_cp1258() -> None:
    """A legacy Vietnamese Windows (cp1258) file is read with the mapping's encoding."""
    mapping = {**LONG_MAP, "encoding": "cp1258"}
    data = LONG.replace("S-01", "Đào-01").encode("cp1258")
    table = parse_with_mapping(data, "lis.tsv", "run", mapping)
    assert table.column("sample_id")[0].as_py() == "Đào-01"
    assert run_metadata(table)["encoding"] == "cp1258"


def test_never_sniffed() -> None:
    """generic-csv is registered but its sniffer never claims a file."""
    assert "generic-csv" in [f.name for f in formats()]
    with pytest.raises(ParseError, match="not a recognised analyzer export"):
        detect(WIDE.read_bytes(), WIDE.name)


def test_format_without_mapping_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Choosing generic-csv without KETQUA_CSV_MAPPING says how to give the mapping."""
    monkeypatch.delenv(MAPPING_ENV, raising=False)
    with pytest.raises(ParseError, match=MAPPING_ENV):
        parse_bytes(WIDE.read_bytes(), WIDE.name, format="generic-csv")


@pytest.mark.parametrize(
    "raw,key",
    [
        ({"columns": {"ct": "Ct"}}, "columns.sample"),
        ({"columns": {"sample": "S"}}, "columns.ct"),
        ({"columns": {"sample": "S", "ct": "Ct"}, "decimal": ";"}, "decimal"),
        ({"columns": {"sample": "S", "ct": "Ct"}, "roles": {"x": "patient"}}, "roles"),
    ],
)
def test_invalid_mapping(raw: dict, key: str) -> None:
    """A mapping missing the sample or Ct source, or with a bad value, names the key."""
    with pytest.raises(ParseError, match=rf"field '{key}'"):
        CsvMapping.from_dict(raw)


def test_mapped_column_absent() -> None:
    """A mapped column the header lacks is named, with the header line and the columns present."""
    mapping = {**LONG_MAP, "columns": {**LONG_MAP["columns"], "ct": "Cq"}}
    with pytest.raises(ParseError, match=r"line 2, field 'Cq'.*Well, Sample"):
        parse_with_mapping(LONG.encode(), "lis.tsv", "run", mapping)


def test_bad_ct_names_line() -> None:
    """A non-numeric Ct is reported at its line with the mapped column name."""
    data = WIDE.read_bytes().replace(b"27,12", b"27,1x")
    with pytest.raises(ParseError, match=r"line 6, field 'Ct gen E'.*'27,1x'"):
        parse_with_mapping(data, WIDE.name, "run", load_mapping(WIDE_MAP))


def test_cli_parse_json(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`ketqua parse --format generic-csv` reads the mapping from KETQUA_CSV_MAPPING."""
    monkeypatch.setenv(MAPPING_ENV, str(WIDE_MAP))
    code, rows = cli_parse_json(capsys, WIDE, "--format", "generic-csv")
    assert code == 0
    assert len(rows) == 15 and tuple(rows[0]) == WELL_COLUMNS


def test_cli_parse_broken_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A mapped CSV with a well outside the 96-well plate exits non-zero naming file and line."""
    monkeypatch.setenv(MAPPING_ENV, str(WIDE_MAP))
    damaged = WIDE.read_bytes().replace(b"H11;", b"J11;")
    code, err = cli_parse_broken(capsys, tmp_path / "broken_lis.csv", damaged, "--format", "generic-csv")
    assert code != 0
    assert "broken_lis.csv" in err and "line 6" in err
