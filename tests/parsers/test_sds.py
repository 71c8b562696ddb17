"""Applied Biosystems SDS 2.x (7900HT) RQ/results exports: real fixture, errors, CLI."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from engine.errors import ParseError, TruncatedError
from engine.model import WELL_COLUMNS, run_metadata
from parsers import detect, parse_bytes, parse_file
from parsers.sds import SdsResults
from tests.parsers import helpers
from tests.parsers.helpers import cli_parse_broken, cli_parse_json, well_row

SDS = helpers.REAL / "abi_sds_txt" / "SDS_sample.txt"


def test_cr_only_rq_export_values() -> None:
    """The CR-only SDS 2.3 RQ export gives 384 rows with Detector as target and true line numbers."""
    table = parse_file(SDS)
    assert table.num_rows == 384
    a1 = well_row(table, "A1")
    assert (a1["sample_id"], a1["target"], a1["role"], a1["line"]) == ("Sample01", "Gene1", "sample", 18)
    assert a1["ct"] == pytest.approx(11.463166)
    p24 = well_row(table, "P24")
    assert p24["target"] == "Gene191" and p24["ct"] == pytest.approx(29.962372) and p24["line"] == 401


def test_flagged_and_undetermined() -> None:
    """Undetermined Ct is NaN; a Flagged well carries call 'invalid', a Passed one no call."""
    table = parse_file(SDS)
    a9 = well_row(table, "A9")
    assert math.isnan(a9["ct"]) and a9["call"] == "invalid"
    assert well_row(table, "A6")["call"] == "invalid"
    assert well_row(table, "A7")["call"] is None
    assert table.column("call").to_pylist().count("invalid") == 65


def test_run_metadata() -> None:
    """Software version, run start and file name come from the header lines."""
    meta = run_metadata(parse_file(SDS))
    assert meta["software"] == "SDS 2.3"
    assert meta["run_start"] == "Fri May 15 17:10:28 BST 2009"
    assert meta["plate"] == "Testscreen analys all.sdm"
    assert "assay" not in meta  # "Assay Type = RQ Study" is an analysis mode, not a kit
    assert meta["format"] == "sds" and meta["encoding"] == "utf-8"


def test_sniffer_picks_sds() -> None:
    """Content sniffing picks sds for the SDS 2.3 export, even renamed."""
    assert detect(SDS.read_bytes(), "export.dat").name == "sds"


def test_absolute_quant_results_variant() -> None:
    """An SDS 2.x Results export with Well/Sample Name columns and LF line ends is read too."""
    data = (
        "SDS 2.2.2 Results\t1.0\nFilename\tcovid.sds\n\n"
        "Well\tSample Name\tDetector\tTask\tCt\tStdDev Ct\n"
        "1\tP-1\tN1\tUnknown\t24.5\t\nB03\tNTC\tN1\tNTC\tUndetermined\t\n"
    ).replace("1\tP-1", "A1\tP-1")
    table = parse_bytes(data.encode(), "old.txt")
    assert table.column("well").to_pylist() == ["A1", "B3"]
    assert table.column("role").to_pylist() == ["sample", "ntc"]


def test_damaged_ct_names_line() -> None:
    """A damaged Ct in the CR-only file is reported at its line (CR counted as a line break)."""
    data = SDS.read_bytes().replace(b"\t27.956657\t", b"\t27,95,6657\t")
    with pytest.raises(ParseError, match=r"line 20, field 'Ct'"):
        parse_bytes(data, "sds.txt")


def test_truncated_in_header() -> None:
    """A file cut before the table header is refused on line 1 with what was expected."""
    data = SDS.read_bytes()[:200]
    with pytest.raises(TruncatedError, match=r"line 9: appears truncated: the file ends in the middle of a line"):
        parse_bytes(data, "sds.txt", format="sds")
    with pytest.raises(ParseError, match=r"line 1: no results table header.*Detector"):
        SdsResults.parse(data, "sds.txt", "0" * 64)


def test_cli_parse_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`ketqua parse` prints canonical JSON rows for the SDS fixture."""
    code, rows = cli_parse_json(capsys, SDS)
    assert code == 0
    assert len(rows) == 384 and tuple(rows[0]) == WELL_COLUMNS


def test_cli_parse_broken_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A broken SDS file exits non-zero naming file and line."""
    damaged = SDS.read_bytes().replace(b"\tA2\t", b"\tZ2\t")
    code, err = cli_parse_broken(capsys, tmp_path / "broken_sds.txt", damaged)
    assert code != 0
    assert "broken_sds.txt" in err and "line 19" in err
