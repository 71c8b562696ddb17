"""Roche LightCycler 480 text exports: real (CR-only, gzipped) fixtures, multi-channel, errors, CLI."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest

from engine.errors import ParseError, TruncatedError
from engine.model import WELL_COLUMNS, run_metadata
from parsers import detect, parse_bytes, parse_file
from parsers.lightcycler import LightCyclerText
from tests.parsers import helpers
from tests.parsers.helpers import cli_parse_broken, cli_parse_json, well_row

REAL = helpers.REAL / "lightcycler480_txt"
CR_ONLY = REAL / "LightCycler_sample.txt"
GZIPPED = REAL / "Edward_qPCR_Nrd1_calibration_2019-02-02_Cq.txt.gz"
MULTI = helpers.DATA / "lightcycler_multichannel.txt"


def test_cr_only_export_values() -> None:
    """The CR-only LC480 export gives 384 positions; empty Cp is NaN; named NTCs are ntc."""
    table = parse_file(CR_ONLY)
    assert table.num_rows == 384
    a1 = well_row(table, "A1")
    assert (a1["sample_id"], a1["line"], a1["target"], a1["dye"]) == ("Sample 1", 3, "SYBR Green (483-533)", "SYBR Green")
    assert a1["ct"] == pytest.approx(16.13)
    assert math.isnan(well_row(table, "A2")["ct"])
    a23 = well_row(table, "A23")
    assert a23["sample_id"] == "no template control" and a23["role"] == "ntc"
    assert run_metadata(table)["plate"] == "Demo Abs Quant with SYBR Green I_training"


def test_gzipped_export_values() -> None:
    """The gzip-stored LC480 export is read transparently with its filter as target."""
    table = parse_file(GZIPPED)
    assert table.num_rows == 384
    a1 = well_row(table, "A1")
    assert a1["ct"] == pytest.approx(22.78) and a1["dye"] == "SYBR Green I"
    assert a1["target"] == "SYBR Green I / HRM Dye (483-533)"
    p23 = well_row(table, "P23")
    assert p23["ct"] == pytest.approx(33.71) and p23["sample_id"] == "Sample 383"
    assert math.isnan(well_row(table, "P24")["ct"])


def test_multichannel_file() -> None:
    """Several Experiment/Selected Filter blocks give one row per position x channel."""
    table = parse_file(MULTI)
    assert table.num_rows == 18
    assert set(table.column("dye").to_pylist()) == {"FAM", "VIC", "Cy5"}
    vic = well_row(table, "A1", dye="VIC")
    assert vic["ct"] == pytest.approx(25.02) and vic["line"] == 11
    assert vic["target"] == "VIC / HEX / Yellow555 (533-580)"
    assert well_row(table, "H11", dye="FAM")["role"] == "pc"
    assert well_row(table, "H12", dye="Cy5")["role"] == "ntc"
    assert well_row(table, "A4", dye="FAM")["call"] == "invalid"  # Include = False


@pytest.mark.parametrize("path", [CR_ONLY, GZIPPED, MULTI])
def test_sniffer_picks_lightcycler(path: Path) -> None:
    """Content sniffing picks lightcycler for each LightCycler file (gzip included)."""
    assert detect(path.read_bytes(), path.name).name == "lightcycler"


def test_block_without_table() -> None:
    """A channel block cut right after its Experiment line is refused, naming that block's filter."""
    text = MULTI.read_text()
    cut = text[: text.index("Selected Filter: Cy5")] + "Selected Filter: Cy5 / Cy5.5 (618-660)\r\n"
    with pytest.raises(TruncatedError, match=r"line 17: appears truncated: the block for filter 'Cy5 / Cy5.5 \(618-660\)' "
                                             r"stops after its header"):
        parse_bytes(cut.encode(), "lc.txt")
    with pytest.raises(ParseError, match=r"line 17: the block for filter 'Cy5 / Cy5.5 \(618-660\)' has no results"):
        LightCyclerText.parse(cut.encode(), "lc.txt", "0" * 64)


def test_truncated_gzip() -> None:
    """A truncated .gz export is reported as truncated."""
    data = gzip.compress(CR_ONLY.read_bytes())[:600]
    with pytest.raises(ParseError, match="truncated"):
        parse_bytes(data, "lc.txt.gz", format="lightcycler")


def test_damaged_cp_names_line() -> None:
    """A non-numeric Cp is reported with its (CR-only) line number and the Cp field."""
    data = CR_ONLY.read_bytes().replace(b"\t16.13\t", b"\t16.1q\t", 1)
    with pytest.raises(ParseError, match=r"line 3, field 'Cp'"):
        parse_bytes(data, "lc.txt")


def test_cli_parse_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`ketqua parse` prints canonical JSON rows for the LightCycler fixture."""
    code, rows = cli_parse_json(capsys, CR_ONLY)
    assert code == 0
    assert len(rows) == 384 and tuple(rows[0]) == WELL_COLUMNS


def test_cli_parse_broken_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A LightCycler file with a position outside the plate exits non-zero naming file and line."""
    damaged = CR_ONLY.read_bytes().replace(b"\tA2\t", b"\tA99\t")
    code, err = cli_parse_broken(capsys, tmp_path / "broken_lc.txt", damaged)
    assert code != 0
    assert "broken_lc.txt" in err and "line 4" in err


def test_older_export_with_type_column() -> None:
    """Older 'Inc Pos Name Type CP …' exports are read, with Type giving the role and Inc the exclusion."""
    data = (
        "Experiment: covid 2020-04-02  Selected Filter: FAM (465-510)\r"
        "Inc\tPos\tName\tType\tCP\tConcentration\tStandard\tStatus\r"
        "True\tA1\tBV-1\tUnknown\t31.02\t\t\t\r"
        "True\tA2\tK+\tPositive Control\t28.4\t\t\t\r"
        "True\tA3\tK-\tNegative Control\t\t\t\t\r"
        "False\tA4\tBV-2\tUnknown\t35.5\t\t\t\r"
    ).encode()
    table = parse_bytes(data, "old_lc.txt")
    assert table.column("role").to_pylist() == ["sample", "pc", "nc", "sample"]
    assert table.column("ct").to_pylist()[:2] == [pytest.approx(31.02), pytest.approx(28.4)]
    assert table.column("call").to_pylist() == [None, None, None, "invalid"]
    assert table.column("line").to_pylist() == [3, 4, 5, 6]
