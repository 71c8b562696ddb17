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
from tests.parsers.helpers import DATA, cli_parse_broken, cli_parse_json, well_row

SDS = helpers.REAL / "abi_sds_txt" / "SDS_sample.txt"
#: The project's own 7900HT RQ export of a pooled SARS-CoV-2 plate (CR-only, ragged rows, plate trailer).
OWN = DATA / "sds_7900ht_rq_pools_cr.txt"


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


# ---------------------------------------------------------------------------
# The project's own export (tests/data): runs in a clone without ../shared
# ---------------------------------------------------------------------------


def test_own_export_is_cr_only_and_whole() -> None:
    """The file keeps what SDS 2.x writes: CR-only line ends, no LF, ending on a line end."""
    data = OWN.read_bytes()
    assert b"\n" not in data and data.endswith(b"\r") and data.startswith(b"SDS 2.4 RQ Results\t")
    assert detect(data, "export.dat").name == "sds"


def test_own_export_values() -> None:
    """Pools, controls, Undetermined and Flag/Omit marks as written, at their true (CR-counted) lines."""
    table = parse_file(OWN)
    assert table.num_rows == 16  # the PlateID trailer under the blank line is not a well
    a1 = well_row(table, "A1")
    assert (a1["sample_id"], a1["role"], a1["target"], a1["line"], a1["call"]) == ("P001", "sample", "N1", 10, None)
    assert a1["ct"] == pytest.approx(24.318705)
    rnp = well_row(table, "A2")
    assert (rnp["sample_id"], rnp["target"], rnp["line"]) == ("P001", "RNaseP", 11)  # Endogenous Control task
    assert rnp["role"] == "sample" and rnp["ct"] == pytest.approx(22.906939)
    a3 = well_row(table, "A3")
    assert a3["sample_id"] == "P002" and math.isnan(a3["ct"]) and a3["line"] == 12
    flagged = well_row(table, "A5")
    assert flagged["call"] == "invalid" and flagged["ct"] == pytest.approx(37.81229)
    omitted = well_row(table, "B3")
    assert (omitted["sample_id"], omitted["call"], omitted["line"]) == ("P006", "invalid", 20)
    pc = well_row(table, "P21")
    assert (pc["sample_id"], pc["role"], pc["ct"]) == ("PC", "pc", pytest.approx(28.44131))
    ntc = well_row(table, "P24")
    assert (ntc["role"], ntc["target"], ntc["line"]) == ("ntc", "RNaseP", 25) and math.isnan(ntc["ct"])
    assert table.column("call").to_pylist().count("invalid") == 2


def test_own_export_metadata() -> None:
    """Title, file name, run start and operator come from the key/value lines above the table."""
    meta = run_metadata(parse_file(OWN))
    assert meta["software"] == "SDS 2.4"
    assert meta["plate"] == "SARS2 pools 2022-03-14 plate 12.sdm"
    assert meta["run_start"] == "Mon Mar 14 09:12:40 ICT 2022"
    assert meta["operator"] == "ktv.thao"


def test_own_export_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`ketqua parse --json` prints the same rows: Ct as written, Undetermined as null."""
    code, rows = cli_parse_json(capsys, OWN)
    assert code == 0 and len(rows) == 16 and tuple(rows[0]) == WELL_COLUMNS
    by_line = {r["line"]: r for r in rows}
    assert (by_line[18]["well"], by_line[18]["sample_id"], by_line[18]["target"]) == ("B1", "P005", "N1")
    assert by_line[18]["ct"] == pytest.approx(31.020158)
    assert by_line[16]["sample_id"] == "P004" and by_line[16]["ct"] is None
    assert by_line[22]["role"] == "pc" and by_line[24]["role"] == "ntc"


def test_own_export_damaged_ct(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped Ct (letter O for zero) names the file, its line and the Ct field."""
    damaged = OWN.read_bytes().replace(b"\t31.020158\t", b"\t31.02O158\t")
    with pytest.raises(ParseError, match=r"line 18, field 'Ct'.*31\.02O158"):
        parse_bytes(damaged, "sds.txt")
    code, err = cli_parse_broken(capsys, tmp_path / "plate12_sds.txt", damaged)
    assert code != 0
    assert "plate12_sds.txt" in err and "line 18" in err and "'Ct'" in err
