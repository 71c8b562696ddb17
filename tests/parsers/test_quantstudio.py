"""QuantStudio / 7500 / ViiA 7 text exports: real fixtures, own 7500 fixture, errors, CLI."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from engine.errors import ParseError
from engine.model import WELL_COLUMNS, run_metadata
from parsers import detect, parse_bytes, parse_file
from tests.parsers.helpers import DATA, REAL, cli_parse_broken, cli_parse_json, well_row

RESULTS_ONLY = REAL / "quantstudio_txt" / "example_quantsudio_results_only.txt"
SECTIONS = REAL / "quantstudio_txt" / "appbio_quantstudio_example06.txt"
Q7500 = DATA / "quantstudio_7500_results.txt"


def test_results_only_export_values() -> None:
    """The QS7 Flex results-only export yields 93 rows with the file's names, targets and Cts."""
    table = parse_file(RESULTS_ONLY)
    assert table.num_rows == 93
    a1 = well_row(table, "A1")
    assert (a1["sample_id"], a1["target"], a1["dye"], a1["role"]) == ("Standard 1 (1e8)", "3'UTR", "VIC", "std")
    assert a1["ct"] == pytest.approx(16.484, abs=1e-4)
    assert a1["line"] == 20
    a4 = well_row(table, "A4")
    assert (a4["sample_id"], a4["role"]) == ("5000018696625", "sample")
    assert a4["ct"] == pytest.approx(25.711, abs=1e-4)
    h12 = well_row(table, "H12")
    assert h12["role"] == "ntc" and math.isnan(h12["ct"])
    meta = run_metadata(table)
    assert meta["format"] == "quantstudio"
    assert meta["encoding"] == "utf-8"
    assert meta["instrument"] == "QuantStudio(TM) 7 Flex System"
    assert meta["serial"] == "278875421"
    assert meta["run_end"] == "2024-10-01 15:02:50 PM EST"
    assert "operator" not in meta  # the file says "User Name = NA"


def test_sectioned_export_reads_results_not_setup() -> None:
    """With [Sample Setup]/[Amplification Data]/[Results], only Results rows are read, metadata block ignored."""
    table = parse_file(SECTIONS)
    assert table.num_rows == 9
    h1 = well_row(table, "H1")
    assert (h1["sample_id"], h1["target"], h1["dye"]) == ("Lung", "GAPDH", "VIC")
    assert h1["ct"] == pytest.approx(32.884, abs=1e-4)
    assert h1["line"] == 72
    assert run_metadata(table)["plate"] == "QuantStudio96-Well Comparative Ct Example"


def test_7500_results_with_cyrillic_ct_column() -> None:
    """A 7500 v2 export ('Cт' column, A1 wells, ragged row, Vietnamese operator) parses fully."""
    table = parse_file(Q7500)
    assert table.num_rows == 24
    a1 = well_row(table, "A1", "N gene")
    assert a1["ct"] == pytest.approx(25.02, abs=1e-4) and a1["dye"] == "VIC" and a1["sample_id"] == "P2111-0001"
    assert math.isnan(well_row(table, "A2", "ORF1ab")["ct"])
    assert well_row(table, "H11", "MS2")["role"] == "pc"  # named PC, task UNKNOWN
    assert math.isnan(well_row(table, "H12", "MS2")["ct"])  # the ragged row
    meta = run_metadata(table)
    assert meta["operator"] == "Nguyễn Thị Hoa"
    assert meta["instrument"] == "7500 Fast (96 Wells)"


@pytest.mark.parametrize("path", [RESULTS_ONLY, SECTIONS, Q7500])
def test_sniffer_picks_quantstudio(path: Path) -> None:
    """Content sniffing chooses the quantstudio format for each QuantStudio-family file."""
    assert detect(path.read_bytes(), path.name).name == "quantstudio"


def test_padded_well_positions_and_ct_alias() -> None:
    """Padded well positions (' A01') and a 'Cq' Ct column are accepted."""
    data = (
        "* Instrument Type = ViiA 7\n\n[Results]\nWell\tWell Position\tSample Name\tTarget Name\tTask\tReporter\tCq\n"
        "1\t A01 \tS-1\tN\tUNKNOWN\tFAM\t 1,234.5\n"  # thousands separator: 1234.5 cycles
    )
    with pytest.raises(ParseError, match="outside 0-50"):
        parse_bytes(data.encode(), "viia.txt")
    ok = data.replace(" 1,234.5", "21,5")  # a stray decimal comma from a Vietnamese-locale PC
    table = parse_bytes(ok.encode(), "viia.txt")
    assert table.column("well").to_pylist() == ["A1"]
    assert table.column("ct").to_pylist() == [21.5]


def test_omitted_well_is_invalid_call() -> None:
    """A well the analyst omitted (Omit = true) carries the call 'invalid'."""
    data = (
        "* Instrument Type = QuantStudio 5\n\n[Results]\nWell\tWell Position\tOmit\tSample Name\tTarget Name\tTask\tCT\n"
        "1\tA1\ttrue\tS-1\tN\tUNKNOWN\t22.1\n2\tA2\tfalse\tS-2\tN\tUNKNOWN\tUndetermined\n"
    )
    assert parse_bytes(data.encode(), "q.txt").column("call").to_pylist() == ["invalid", None]


def test_truncated_results_section() -> None:
    """A file cut right after the [Results] title says the section is empty, with the line."""
    data = RESULTS_ONLY.read_bytes()
    cut = data[: data.index(b"[Results]") + len(b"[Results]\r\n")]
    with pytest.raises(ParseError, match=r"example\.txt, line 18: the \[Results\] section is empty"):
        parse_bytes(cut, "example.txt", format="quantstudio")


def test_non_numeric_ct_names_line() -> None:
    """A damaged Ct cell is reported with its line and the CT column name."""
    data = RESULTS_ONLY.read_bytes().replace(b"\t25.711\t", b"\t25.7x1\t", 1)
    with pytest.raises(ParseError, match=r"line 23, field 'CT'.*'25\.7x1'"):
        parse_bytes(data, "example.txt")


def test_missing_sample_name_with_ct() -> None:
    """A well with a Ct but an empty Sample Name is refused, naming the line."""
    data = RESULTS_ONLY.read_bytes().replace(b"\t5000018696625\t", b"\t\t", 1)
    with pytest.raises(ParseError, match=r"line 23, field 'Sample Name'.*no sample name"):
        parse_bytes(data, "example.txt")


def test_well_outside_plate() -> None:
    """A well position outside the 96-well block of the sectioned export is refused."""
    data = SECTIONS.read_bytes().replace(b"\tH11\tfalse", b"\tJ11\tfalse")
    with pytest.raises(ParseError, match=r"line 75, field 'Well Position'.*outside a 96-well plate"):
        parse_bytes(data, "ex06.txt")


def test_missing_ct_column() -> None:
    """A results table without any Ct column names the header line."""
    data = "* Instrument Type = ViiA 7\n\n[Results]\nWell\tSample Name\tTarget Name\n1\tS\tN\n"
    with pytest.raises(ParseError, match=r"line 4, field 'CT'"):
        parse_bytes(data.encode(), "v.txt", format="quantstudio")


def test_cli_parse_json(capsys: pytest.CaptureFixture[str]) -> None:
    """`ketqua parse FILE --json` prints one JSON object per row with the canonical keys."""
    code, rows = cli_parse_json(capsys, RESULTS_ONLY)
    assert code == 0
    assert len(rows) == 93
    assert tuple(rows[0]) == WELL_COLUMNS
    assert rows[-1]["ct"] is None and rows[-1]["well"] == "H12"


def test_cli_parse_broken_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A broken file makes `ketqua parse` exit non-zero naming the file and the line."""
    damaged = RESULTS_ONLY.read_bytes().replace(b"\t16.484\t", b"\t99.9\t")
    code, err = cli_parse_broken(capsys, tmp_path / "broken_qs.txt", damaged)
    assert code != 0
    assert "broken_qs.txt" in err and "line 20" in err


def test_binary_junk_is_refused() -> None:
    """Binary junk spliced into an export is refused as binary, naming the line where it starts."""
    data = RESULTS_ONLY.read_bytes()
    cut = data.index(b"[Results]")
    junk = data[:cut] + bytes(range(256)) * 4 + data[cut:]
    with pytest.raises(ParseError, match=r"line 18: the file contains binary data"):
        parse_bytes(junk, "example.txt", format="quantstudio")


def test_cp1252_export() -> None:
    """An export saved by older software in cp1252 (µ in a comment) parses and reports cp1252."""
    data = Q7500.read_bytes().decode("utf-8").replace("Nguyễn Thị Hoa", "Müller").replace("C\u0442", "Ct")
    data = data.replace("\t\tN\tN\tN", "\t5 µl\tN\tN\tN", 1)
    table = parse_bytes(data.encode("cp1252"), "old7500.txt")
    assert run_metadata(table)["encoding"] == "cp1252"
    assert run_metadata(table)["operator"] == "Müller"
    assert table.num_rows == 24
