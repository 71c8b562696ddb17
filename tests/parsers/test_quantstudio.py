"""QuantStudio / 7500 / ViiA 7 text exports: real fixtures, own 7500 fixture, errors, CLI."""

from __future__ import annotations

import io
import math
from pathlib import Path

import openpyxl
import pytest

from engine.errors import ParseError
from engine.model import WELL_COLUMNS, run_metadata
from parsers import detect, parse_bytes, parse_file
from parsers.notes import run_notes
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
    """A well with a Ct but an empty Sample Name is left out and noted at its line; the other wells parse."""
    data = RESULTS_ONLY.read_bytes().replace(b"\t5000018696625\t", b"\t\t", 1)
    table = parse_bytes(data, "example.txt")
    assert table.num_rows == 92 and "A4" not in table.column("well").to_pylist()
    (note,) = run_notes(table)
    assert (note["well"], note["line"], note["task"]) == ("A4", 23, "UNKNOWN")
    assert "no sample name" in note["text"] and "Ct 25.71 (3'UTR)" in note["text"]


def test_unnamed_well_with_ct_is_noted_not_refused() -> None:
    """Own 7500 export, one well's name erased: its 4 target rows are left out and reported; 20 rows stay."""
    data = Q7500.read_bytes().replace(b"P2111-0003", b"")
    table = parse_bytes(data, "plate07.txt")
    assert table.num_rows == 20 and "A3" not in table.column("well").to_pylist()
    (note,) = run_notes(table)
    assert note["well"] == "A3" and note["lines"] == [20, 21, 22, 23]
    assert note["ct"] == {"ORF1ab": 36.4, "N gene": None, "S gene": 37.95, "MS2": 26.25}
    assert note["text"].startswith("well A3 (line 20): Ct 36.4 (ORF1ab), 37.95 (S gene), 26.25 (MS2) but no sample name")
    assert well_row(table, "A2", "MS2")["sample_id"] == "P2111-0002"


def test_unnamed_unknown_well_without_ct_is_noted() -> None:
    """Task UNKNOWN, no sample name, Undetermined: not dropped silently, reported like an unnamed Ct."""
    data = Q7500.read_bytes().replace(b"P2111-0004", b"")
    table = parse_bytes(data, "plate07.txt")
    (note,) = run_notes(table)
    assert note["well"] == "A4" and note["task"] == "UNKNOWN" and note["ct"]["MS2"] == 25.61  # MS2 did amplify
    only_undetermined = Q7500.read_bytes().decode("utf-8").replace("P2111-0004", "")
    only_undetermined = only_undetermined.replace("25.611\t25.611", "Undetermined\tUndetermined")
    (note,) = run_notes(parse_bytes(only_undetermined.encode(), "plate07.txt"))
    assert note["well"] == "A4" and set(note["ct"].values()) == {None}
    assert "task UNKNOWN without a sample name and no Ct" in note["text"]
    assert "notes" not in run_metadata(parse_file(Q7500))  # a plate with every well named has no notes


def test_no_named_well_is_refused_at_the_first_row() -> None:
    """A results table whose specimen wells all lack names is refused, naming the first row."""
    text = "* Instrument Type = ViiA 7\n\n[Results]\nWell\tSample Name\tTarget Name\tTask\tCT\nA1\t\tN\tUNKNOWN\t22.1\n"
    with pytest.raises(ParseError, match=r"line 5, field 'Sample Name': no well .* has a sample name"):
        parse_bytes(text.encode(), "v.txt", format="quantstudio")


def test_missing_well_column_names_the_header_line() -> None:
    """A results table without Well or Well Position is refused at its header, naming the Well field."""
    data = "* Instrument Type = ViiA 7\n\n[Results]\nSample Name\tTarget Name\tTask\tCT\nS1\tN\tUNKNOWN\t22.1\n"
    with pytest.raises(ParseError, match=r"line 4, field 'Well'"):
        parse_bytes(data.encode(), "v.txt", format="quantstudio")


# --- genotyping text exports (Allele1 Ct / Allele2 Ct) ---------------------------------------------

GENOTYPING = DATA / "quantstudio_genotyping_results.txt"


def test_genotyping_text_export_reads_both_alleles() -> None:
    """Own genotyping export: two rows per well (<assay>-Allele 1/2), each allele's Ct, unnamed wells noted."""
    table = parse_file(GENOTYPING)
    assert run_metadata(table)["format"] == "quantstudio"
    assert table.num_rows == 10  # A1-A4 and A7, two alleles each
    a3 = [r for r in table.to_pylist() if r["well"] == "A3"]
    assert [(r["target"], r["line"], r["sample_id"], r["role"]) for r in a3] == [
        ("C__30634136_10-Allele 1", 18, "HN-0412", "sample"), ("C__30634136_10-Allele 2", 18, "HN-0412", "sample")]
    assert [r["ct"] for r in a3] == [pytest.approx(27.485), pytest.approx(29.015)]
    assert well_row(table, "A1", "C__30634136_10-Allele 2")["role"] == "ntc"
    assert math.isnan(well_row(table, "A1", "C__30634136_10-Allele 1")["ct"])
    notes = {n["well"]: n for n in run_notes(table)}
    assert sorted(notes) == ["A5", "A6"]  # A8 is an untouched position (no task, no name, no Ct)
    assert notes["A6"]["lines"] == [21] and notes["A6"]["ct"]["C__30634136_10-Allele 1"] == 26.01


def test_genotyping_text_and_workbook_of_one_run_agree() -> None:
    """The same genotyping run as text and as a Design & Analysis workbook gives the same well/sample/target/Ct rows."""
    text = parse_file(GENOTYPING)
    book = openpyxl.Workbook()
    ws = book.active
    ws.title = "Results"
    ws.append(["Instrument Type", "QuantStudio™ 7 Pro System"])
    ws.append(["Block Type", "96-Well 0.2-mL Block"])
    ws.append([])
    ws.append(["Well", "Well Position", "Omit", "Sample", "Target", "Task", "Reporter", "Cq"])
    for r in text.to_pylist():
        allele = r["target"].rsplit("-", 1)[1]
        ws.append([None, r["well"], "FALSE", r["sample_id"], r["target"], "NTC" if r["role"] == "ntc" else "UNKNOWN",
                   "VIC" if allele == "Allele 1" else "FAM", "UNDETERMINED" if math.isnan(r["ct"]) else float(r["ct"])])
    out = io.BytesIO()
    book.save(out)
    workbook = parse_bytes(out.getvalue(), "genotyping.xlsx")

    def rows(table):  # type: ignore[no-untyped-def]
        return [(r["well"], r["sample_id"], r["target"], None if math.isnan(r["ct"]) else round(r["ct"], 3))
                for r in table.to_pylist()]

    assert rows(workbook) == rows(text)


def test_genotyping_export_with_only_one_allele_column_is_refused() -> None:
    """Allele1 Ct without Allele2 Ct is no genotyping table: refused at the header naming the Ct columns."""
    data = GENOTYPING.read_bytes().replace(b"\tAllele2 Ct\t", b"\tAllele2 Cq value\t")
    with pytest.raises(ParseError, match=r"line 15, field 'CT'.*Allele1 Ct and Allele2 Ct"):
        parse_bytes(data, "g.txt")


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
