"""Abbott m2000rt results log: real fixture, CN vs Ct, calls, errors, CLI."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from engine.errors import ParseError, TruncatedError
from engine.model import WELL_COLUMNS, run_metadata
from parsers import detect, parse_bytes, parse_file
from parsers.m2000 import M2000ResultsLog
from tests.parsers import helpers
from tests.parsers.helpers import DATA, cli_parse_broken, cli_parse_json, well_row

LOG = helpers.REAL / "abbott_m2000_log" / "Results.log.321"
#: The project's own m2000rt log of a pooled SARS-CoV-2 run (UTF-8 BOM, CRLF, padded keys, Cy5 internal control).
OWN = DATA / "m2000_sars2_pools_results.log"


def test_real_log_values() -> None:
    """24 wells x (target FAM + control VIC) with sample ids joined from Result Information."""
    table = parse_file(LOG)
    assert table.num_rows == 48
    a2 = well_row(table, "A2", "Target")
    assert (a2["sample_id"], a2["dye"], a2["role"], a2["line"], a2["call"]) == ("HIV_LOPOS", "FAM", "pc", 87, "detected")
    assert a2["ct"] == pytest.approx(22.82)
    a1 = well_row(table, "A1", "Target")
    assert a1["role"] == "nc" and math.isnan(a1["ct"]) and a1["call"] == "not_detected"
    ic = well_row(table, "B12", "Control")
    assert (ic["sample_id"], ic["dye"], ic["line"]) == ("UUUUUUUU", "VIC", 174)
    assert ic["ct"] == pytest.approx(20.97) and ic["call"] is None
    assert well_row(table, "A12", "Target")["call"] == "detected"  # "< 40 Copies / mL", Interpretation Detected


def test_cn_not_raw_ct() -> None:
    """A9 has a raw Ct 29.39 but CN -1.00 (rejected curve): the reported value is no Ct."""
    a9 = well_row(parse_file(LOG), "A9", "Target")
    assert math.isnan(a9["ct"]) and a9["call"] == "not_detected"


def test_run_metadata() -> None:
    """Plate name, detection timestamps, serial, assay and BOM encoding are reported."""
    meta = run_metadata(parse_file(LOG))
    assert meta["encoding"] == "utf-8-sig"
    assert meta["plate"] == "123456789"
    assert meta["run_start"] == "2012/11/23 12:47:09 PM"
    assert meta["assay"] == "0.6ml HIV-1 RNA"
    assert meta["format"] == "m2000"


def test_sniffer_picks_m2000() -> None:
    """Content sniffing picks m2000 for the results log."""
    assert detect(LOG.read_bytes(), LOG.name).name == "m2000"


def test_invalid_well_status() -> None:
    """A well whose Status is not Valid gets call 'invalid' on both dye rows."""
    data = LOG.read_bytes().replace(b"B3\t15\tValid\t", b"B3\t15\tInvalid\t")
    table = parse_bytes(data, "Results.log")
    assert well_row(table, "B3", "Target")["call"] == "invalid"
    assert well_row(table, "B3", "Control")["call"] == "invalid"


def test_truncated_before_results() -> None:
    """A log cut before the Result Information block is refused as truncated, at parse time and by the parser itself."""
    data = LOG.read_bytes()
    cut = data[: data.index(b"Assay Calibration Information")]
    with pytest.raises(TruncatedError, match=r"appears truncated: the file ends in the middle of a line"):
        parse_bytes(cut, "Results.log", format="m2000")
    at_line = cut[: cut.rindex(b"\n") + 1]
    with pytest.raises(TruncatedError, match=r"line \d+: appears truncated: the log stops before its Result Information"):
        parse_bytes(at_line, "Results.log", format="m2000")
    with pytest.raises(ParseError, match=r"Result Information.*truncated"):
        M2000ResultsLog.parse(at_line, "Results.log", "0" * 64)


def test_non_numeric_cn_names_line() -> None:
    """A damaged CN value is reported with its line and the CN field."""
    data = LOG.read_bytes().replace(b"A3\t3\t15.84\t", b"A3\t3\t15.8.4\t")
    with pytest.raises(ParseError, match=r"line 88, field 'CN'"):
        parse_bytes(data, "Results.log")


def test_cli_parse_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`ketqua parse` prints canonical JSON rows for the m2000 log."""
    code, rows = cli_parse_json(capsys, LOG)
    assert code == 0
    assert len(rows) == 48 and tuple(rows[0]) == WELL_COLUMNS


def test_cli_parse_broken_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An m2000 log with a well outside the 96-well plate exits non-zero naming file and line."""
    damaged = LOG.read_bytes().replace(b"A4\t4\t24.67", b"K4\t4\t24.67")
    code, err = cli_parse_broken(capsys, tmp_path / "broken.log", damaged)
    assert code != 0
    assert "broken.log" in err and "line 89" in err


def test_reported_invalid_word_is_invalid_not_detected() -> None:
    """A reported 'Invalid' result (with a number in its error text) is invalid, not a detection."""
    data = LOG.read_bytes().replace(b"\t767\t767 Copies / mL\t767 Copies / mL\t", b"\t\tInvalid result 4442\t\t", 1)
    assert well_row(parse_bytes(data, "Results.log"), "A2", "Target")["call"] == "invalid"


# ---------------------------------------------------------------------------
# The project's own log (tests/data): runs in a clone without ../shared
# ---------------------------------------------------------------------------


def test_own_log_is_bom_crlf() -> None:
    """The file keeps what the m2000rt writes: a UTF-8 BOM, CRLF on every line, Vietnamese run name."""
    data = OWN.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf=====") and data.endswith(b"\r\n")
    assert data.count(b"\n") == data.count(b"\r\n")
    assert "Mẫu gộp đợt 7".encode() in data
    assert detect(data, "Results.log.007").name == "m2000"


def test_own_log_values() -> None:
    """10 wells x (FAM target + Cy5 control), sample ids joined from Result Information, CN -1.00 → NaN."""
    table = parse_file(OWN)
    assert table.num_rows == 20
    p002 = well_row(table, "A4", "Target")
    assert (p002["sample_id"], p002["role"], p002["dye"], p002["line"], p002["call"]) == ("P002", "sample", "FAM", 56, "detected")
    assert p002["ct"] == pytest.approx(22.63)
    p001 = well_row(table, "A3", "Target")
    assert p001["sample_id"] == "P001" and math.isnan(p001["ct"]) and p001["call"] == "not_detected"
    ic = well_row(table, "A3", "Control")
    assert (ic["dye"], ic["line"], ic["call"]) == ("Cy5", 81, None) and ic["ct"] == pytest.approx(19.95)
    assert well_row(table, "A1", "Target")["role"] == "nc"  # SC2_NEG, SampleType Control
    assert well_row(table, "A2", "Target")["role"] == "pc"  # SC2_POS
    single = well_row(table, "A9", "Target")  # a specimen run alone: its own id, not a pool id
    assert single["sample_id"] == "220318-0417" and single["ct"] == pytest.approx(33.91)


def test_own_log_cn_rules_and_invalid_well() -> None:
    """A5 crossed at Ct 31.08 but CN is -1.00 (rejected curve): no Ct. A6 failed its IC: invalid on both rows."""
    table = parse_file(OWN)
    a5 = well_row(table, "A5", "Target")
    assert math.isnan(a5["ct"]) and a5["call"] == "not_detected"
    assert well_row(table, "A6", "Target")["call"] == "invalid"
    control = well_row(table, "A6", "Control")
    assert control["call"] == "invalid" and math.isnan(control["ct"])


def test_own_log_metadata() -> None:
    """Plate, detection times, serial, operator, software and assay from the Plate Information block."""
    meta = run_metadata(parse_file(OWN))
    assert meta["encoding"] == "utf-8-sig"
    assert meta["plate"] == "SC2-220318-07"
    assert meta["run_start"] == "2022/03/18 09:41:27 AM" and meta["run_end"] == "2022/03/18 11:38:52 AM"
    assert meta["serial"] == "275020417" and meta["operator"] == "nguyenlan"
    assert meta["software"] == "m2000rt 8.1.1.3" and meta["assay"] == "SARS-CoV-2 Qualitative"


def test_own_log_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`ketqua parse --json` prints the 20 rows: CN as written, -1.00 as null."""
    code, rows = cli_parse_json(capsys, OWN)
    assert code == 0 and len(rows) == 20 and tuple(rows[0]) == WELL_COLUMNS
    by_line = {r["line"]: r for r in rows}
    assert (by_line[59]["well"], by_line[59]["sample_id"], by_line[59]["target"]) == ("A7", "P005", "Target")
    assert by_line[59]["ct"] == pytest.approx(29.76) and by_line[59]["call"] == "detected"
    assert by_line[53]["ct"] is None and by_line[53]["role"] == "nc"
    assert by_line[88]["well"] == "A10" and by_line[88]["dye"] == "Cy5"


def test_own_log_damaged_cn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A damaged CN in the target table names the file, its line and the CN field."""
    damaged = OWN.read_bytes().replace(b"A7\t7\t29.76\t", b"A7\t7\t29,7.6\t")
    with pytest.raises(ParseError, match=r"line 59, field 'CN'"):
        parse_bytes(damaged, "Results.log")
    code, err = cli_parse_broken(capsys, tmp_path / "Results.log.007", damaged)
    assert code != 0
    assert "Results.log.007" in err and "line 59" in err and "'CN'" in err
