"""Shared text helpers: decoding, line splitting, Ct/well/role normalisation, table reading."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import ParseError
from engine.model import Role
from parsers import text


def test_decode_utf8_keeps_vietnamese() -> None:
    """UTF-8 without BOM decodes Vietnamese names unchanged and reports utf-8."""
    decoded, encoding = text.decode("Nguyễn Thị Hoa\r\n".encode())
    assert decoded == "Nguyễn Thị Hoa\r\n"
    assert encoding == "utf-8"


def test_decode_strips_utf8_bom() -> None:
    """A UTF-8 BOM is removed from the text and reported as utf-8-sig."""
    assert text.decode(b"\xef\xbb\xbfWell;Ct") == ("Well;Ct", "utf-8-sig")


@pytest.mark.parametrize("codec,expected", [("utf-16-le", "utf-16-le"), ("utf-16-be", "utf-16-be")])
def test_decode_utf16_with_bom(codec: str, expected: str) -> None:
    """UTF-16 with either byte order mark is decoded and its byte order reported."""
    bom = b"\xff\xfe" if codec.endswith("le") else b"\xfe\xff"
    assert text.decode(bom + "Mẫu 1\tđ".encode(codec)) == ("Mẫu 1\tđ", expected)


def test_decode_utf16_without_bom() -> None:
    """UTF-16 LE without a BOM is recognised by its NUL pattern."""
    assert text.decode(",Well,Fluor\r\n,A01,FAM\r\n".encode("utf-16-le"))[1] == "utf-16-le"


def test_decode_falls_back_to_cp1252() -> None:
    """Bytes that are not UTF-8 are read as cp1252 (old Windows software)."""
    decoded, encoding = text.decode("Cq\t±0.5 µl".encode("cp1252"))
    assert (decoded, encoding) == ("Cq\t±0.5 µl", "cp1252")


def test_decode_damaged_utf8_is_not_guessed_as_cp1252() -> None:
    """A bad byte in a file that is otherwise UTF-8 is an error at its line, not silent mojibake."""
    data = "Mẫu\r\nNguyễn\r\n".encode() + b"\xff\r\n"
    with pytest.raises(ParseError, match=r"v\.txt, line 3: damaged UTF-8 text \(invalid byte 0xFF\)"):
        text.decode(data, "v.txt")
    with pytest.raises(ParseError, match="damaged UTF-8"):
        text.decode(b"\xef\xbb\xbfWell\n\xe1\n", "bom.txt")


def test_decode_gzip_transparently() -> None:
    """A gzip-compressed export is decompressed before decoding."""
    import gzip

    assert text.decode(gzip.compress("Cp\r16.1".encode())) == ("Cp\r16.1", "utf-8")


def test_decode_refuses_binary_with_line() -> None:
    """A file with NUL bytes is refused as binary, naming the line where they start."""
    with pytest.raises(ParseError, match=r"run\.txt, line 2: .*binary"):
        text.decode(b"header\nab\x00\x01\x02cd\x00\x00", "run.txt")


def test_decode_refuses_empty_file() -> None:
    """An empty (or whitespace-only) file is a ParseError, not an empty table."""
    with pytest.raises(ParseError, match="empty"):
        text.decode(b"  \r\n", "x.csv")


def test_split_lines_handles_cr_crlf_lf() -> None:
    """CR-only, CRLF and LF line ends are all line breaks; a final break adds no line."""
    assert text.split_lines("a\rb\r\nc\nd\r") == ["a", "b", "c", "d"]


def test_split_lines_ignores_form_feed() -> None:
    """Form feeds and U+2028 inside a field do not split a line (line numbers stay true)."""
    assert text.split_lines("a\x0cb\u2028c\nd") == ["a\x0cb\u2028c", "d"]


def test_ct_markers_become_nan() -> None:
    """Undetermined, NaN, N/A, empty, null and -1 all mean no amplification (NaN)."""
    ct = text.ct_array(["Undetermined", "NaN", "N/A", "", None, "-1", "-1.00", "UNDETERMINED", "31.5"])
    assert np.isnan(ct[:8]).all()
    assert ct[8] == pytest.approx(31.5)
    assert ct.dtype == np.float32


def test_ct_decimal_comma_and_thousands() -> None:
    """Decimal commas are read when asked; thousands separators are dropped otherwise."""
    assert text.ct_array(["35,21", "35.5"], decimal=",").tolist() == pytest.approx([35.21, 35.5])
    assert text.number_array(pa.array(["100,000,000.000", "1.234,5"]))[0] == 1e8
    assert text.number_array(pa.array(["1.234,5"]), decimal=",")[0] == 1234.5
    assert text.parse_ct(" 27.5 ") == pytest.approx(27.5)
    assert math.isnan(text.parse_ct("n/a"))


def test_ct_not_a_number_names_line_and_field() -> None:
    """A non-numeric Ct raises ParseError naming file, line and field."""
    with pytest.raises(ParseError, match=r"plate\.txt, line 7, field 'Cq': Ct value 'abc'"):
        text.ct_array(["20", "abc"], lines=[6, 7], source="plate.txt", field="Cq")


@pytest.mark.parametrize("bad", ["50.5", "-3", "1e3"])
def test_ct_out_of_range(bad: str) -> None:
    """A Ct outside 0-50 cycles is refused with its line."""
    with pytest.raises(ParseError, match=r"line 4.*outside 0-50"):
        text.ct_array([bad], lines=[4], source="f")


@given(st.floats(min_value=0, max_value=50, allow_nan=False, width=32))
def test_ct_roundtrip_in_range(value: float) -> None:
    """Any Ct written with 6 decimals (point or comma) is read back to float32 precision."""
    written = f"{value:.6f}"
    assert text.ct_array([written])[0] == pytest.approx(value, abs=1e-5)
    assert text.ct_array([written.replace(".", ",")], decimal=",")[0] == pytest.approx(value, abs=1e-5)


def test_normalise_well_pads_and_case() -> None:
    """Padded, zero-filled and lower-case wells become the canonical A1 form."""
    assert text.normalise_wells(["A01", " b12 ", "P24", "h1"]).to_pylist() == ["A1", "B12", "P24", "H1"]
    assert text.normalise_well("C07", plate=96) == "C7"


@pytest.mark.parametrize("well,plate", [("Q1", 384), ("A25", 384), ("I1", 96), ("A13", 96), ("11", 384)])
def test_normalise_well_outside_plate(well: str, plate: int) -> None:
    """Wells outside the plate (or not a well at all) raise ParseError with the line."""
    with pytest.raises(ParseError, match=r"r\.csv, line 9, field 'Well'"):
        text.normalise_wells(["A1", well], plate=plate, source="r.csv", lines=[8, 9])


def test_well_from_index_counts_row_by_row() -> None:
    """QuantStudio well numbers map row-major onto the plate (13 → B1 on 96 wells)."""
    assert text.well_from_index([1, 12, 13, 96], plate=96).to_pylist() == ["A1", "A12", "B1", "H12"]
    with pytest.raises(ParseError):
        text.well_from_index([97], plate=96)


@pytest.mark.parametrize(
    "word,role",
    [
        ("Unkn", Role.SAMPLE),
        ("UNKNOWN", Role.SAMPLE),
        ("NTC", Role.NTC),
        ("no template control", Role.NTC),
        ("Pos Ctrl", Role.PC),
        ("Positive Control", Role.PC),
        ("PC", Role.PC),
        ("Neg Ctrl", Role.NC),
        ("NEG", Role.NC),
        ("Std", Role.STD),
        ("STANDARD", Role.STD),
        ("Std-03", Role.STD),
        ("Accuracy Control", Role.UNKNOWN),
        ("Chứng dương", Role.PC),
        ("đối chứng âm", Role.NC),
        ("K+", Role.PC),
        ("Mẫu gộp", Role.SAMPLE),
    ],
)
def test_normalise_role(word: str, role: Role) -> None:
    """Instrument spellings of well types map to the canonical roles, scalar and vectorised alike."""
    assert text.normalise_role(word) is role
    assert text.normalise_roles([word]).to_pylist() == [role.value]


def test_roles_from_names_promotes_named_controls() -> None:
    """A well with task Unknown but named NTC/PC is treated as that control."""
    role = pa.array(["sample", "sample", "std"])
    assert text.roles_from_names(role, pa.array(["NTC", "P-001", "PC"])).to_pylist() == ["ntc", "sample", "std"]


def test_read_block_pads_ragged_rows_and_keeps_lines() -> None:
    """Ragged rows get null cells; blank and separator-only rows are skipped with true line numbers."""
    lines = text.split_lines("Well\tCt\tCt\n A1 \t12.5\n\nB1\n\t\t\nC1\t\t3\t9\n")
    block = text.read_block(lines, 0, None, "\t", source="x")
    assert block.num_rows == 3
    assert block.lines.tolist() == [2, 4, 6]
    assert block.require("well").to_pylist() == ["A1", "B1", "C1"]
    assert block.get("CT").to_pylist() == ["12.5", None, None]  # first of the duplicate names
    assert block.columns[3].to_pylist() == [None, None, "9"]


def test_read_block_refuses_absurd_width() -> None:
    """A row with thousands of fields (damaged file, wrong separator) is refused at its line."""
    with pytest.raises(ParseError, match=r"line 3: a row has 5001 fields"):
        text.read_block(["a,b", "1,2", "x," * 5000], 0, None, ",", source="w.csv")


def test_read_block_missing_column_is_parse_error() -> None:
    """Asking for a column the header lacks names the header line and the column."""
    block = text.read_block(["Well;Cq", "A1;20"], 0, None, ";", source="f.csv")
    with pytest.raises(ParseError, match=r"f\.csv, line 1, field 'Sample'"):
        block.require("Sample")


def test_occupied_wells_drops_empty_and_refuses_unnamed_result() -> None:
    """Unnamed wells without Ct are dropped; an unnamed well with a Ct is an error with its line."""
    roles = pa.array(["sample", "sample", "ntc"])
    keep = text.occupied_wells(pa.array(["S1", None, None]), roles, np.array([20, np.nan, np.nan]), np.array([2, 3, 4]), source="f")
    assert keep.tolist() == [True, False, True]
    with pytest.raises(ParseError, match=r"line 3.*no sample name"):
        text.occupied_wells(pa.array(["S1", ""]), roles[:2], np.array([20, 30.0]), np.array([2, 3]), source="f")


def test_normalise_calls() -> None:
    """Instrument call words map to detected/not_detected/invalid, others to null."""
    got = text.normalise_calls(["POSITIVE", "Negative", "Invalid", "Inconclusive", None]).to_pylist()
    assert got == ["detected", "not_detected", "invalid", None, None]


@given(
    st.lists(
        st.tuples(st.integers(0, 15), st.integers(1, 24), st.sampled_from(["", "0"]), st.sampled_from(["", " "]), st.booleans()),
        min_size=1,
        max_size=40,
    )
)
def test_normalise_wells_property(wells: list[tuple[int, int, str, str, bool]]) -> None:
    """Any 384-plate well, zero-padded, space-padded or lower-case, normalises to row letter + column."""
    written = [
        f"{pad}{(chr(65 + r).lower() if low else chr(65 + r))}{zero if c < 10 else ''}{c}{pad}"
        for r, c, zero, pad, low in wells
    ]
    assert text.normalise_wells(written).to_pylist() == [f"{chr(65 + r)}{c}" for r, c, _, _, _ in wells]


# U+FEFF is left out: the reader drops a byte-order mark where it meets one, so a cell of nothing but
# U+FEFF reads as empty (so it did before parsers/text.py was split; no instrument writes one as data).
_CELL = st.text(alphabet=st.characters(blacklist_characters="\t\r\n\"\x00\ufeff", blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=8)


@given(st.lists(st.lists(_CELL, min_size=1, max_size=5), min_size=1, max_size=20))
def test_read_block_roundtrip_ragged(rows: list[list[str]]) -> None:
    """Ragged tab-separated rows read back cell for cell, missing cells null, line numbers exact."""
    lines = ["a\tb\tc"] + ["\t".join(r) for r in rows]
    block = text.read_block(lines, 0, None, "\t")
    assert block.lines.tolist() == list(range(2, len(rows) + 2))
    width = max(3, max(len(r) for r in rows))
    assert len(block.columns) == width
    for j in range(width):
        assert block.columns[j].to_pylist() == [r[j] if j < len(r) else None for r in rows]


@given(st.binary(max_size=300))
def test_decode_never_raises_other_than_parse_error(data: bytes) -> None:
    """Arbitrary bytes either decode to text or raise ParseError, never anything else."""
    try:
        decoded, encoding = text.decode(data, "x")
    except ParseError:
        return
    assert isinstance(decoded, str) and encoding


_CALL_TEXTS = ["POSITIVE", "Negative", "Invalid", "Inconclusive", "NOT DETECTED", "Target not detected",
               "SARS-CoV-2 DETECTED", "Presumptive Pos", "ERROR", "Valid", "PASS", "12.5", "neg", "Non-reactive", ""]


@given(st.lists(st.sampled_from(_CALL_TEXTS), max_size=20))
def test_vectorised_calls_agree_with_scalar(words: list[str]) -> None:
    """The column form of call normalisation gives exactly the scalar form's answer for each word."""
    assert text.normalise_calls(words).to_pylist() == [text.normalise_call(w) for w in words]


def test_all_lists_exactly_the_public_names() -> None:
    """``text.__all__`` names every public helper and constant of the module once, and nothing else."""
    import inspect

    public = {
        name
        for name, value in vars(text).items()
        if not name.startswith("_")
        and ((inspect.isfunction(value) or inspect.isclass(value)) and value.__module__ == text.__name__
             or name.isupper())
    }
    assert len(text.__all__) == len(set(text.__all__))
    assert set(text.__all__) == public


def test_section_table_span_helpers() -> None:
    """skip_blank finds a section's table header and table_stop the line that ends its rows."""
    lines = ["[Results]", "", "  ", "Well\tCT", "A1\t20", "A2\t21", "", "Analysis Type = Singleplex"]
    header = text.skip_blank(lines, 1)
    assert header == 3
    assert text.table_stop(lines, header) == 6
    assert text.table_stop(lines, header, 5) == 5
    assert text.skip_blank(lines, 1, 3) == 3
    assert text.skip_blank([";;", "x"], 0, blank=lambda line: not line.strip(";")) == 1


def test_decode_lines_splits_cr_only_text() -> None:
    """decode_lines decodes and splits CR-only text (SDS 2.x, old LightCycler PCs) in one step."""
    lines, encoding = text.decode_lines(b"\xef\xbb\xbfa\rb\rc\r", "x")
    assert (lines, encoding) == (["a", "b", "c"], "utf-8-sig")
    assert text.head_lines(b"a\rb") == ["a", "b"]


# ---------------------------------------------------------------------------
# Fast paths for large exports: each must give exactly what the general path gives
# ---------------------------------------------------------------------------

_CT_CELLS = ["21.5", "35,2", "Undetermined", "NaN", "", "N/A", " 18.25 ", "-1", "1e1", "undet", "40"]


@given(st.lists(st.sampled_from(_CT_CELLS), min_size=1, max_size=30), st.sampled_from([".", ","]))
def test_long_ct_column_agrees_with_short(cells: list[str], decimal: str) -> None:
    """A Ct column long enough for the dictionary path converts each cell as a short column does."""
    repeats = -(-text._BY_DICTIONARY // len(cells))
    short = text.ct_array(cells, decimal=decimal)
    long = text.ct_array(cells * repeats, decimal=decimal)
    np.testing.assert_array_equal(long, np.tile(short, repeats))


@given(st.integers(0, 4999), st.sampled_from(["abc", "77.5", "1.2.3"]))
def test_long_ct_column_names_first_bad_line(at: int, bad: str) -> None:
    """In a long Ct column the error names the line of the first bad cell, as row by row."""
    cells = ["31.5", "Undetermined"] * 2500
    cells[at] = bad
    with pytest.raises(ParseError) as caught:
        text.ct_array(cells, lines=np.arange(10, 5010), source="x", field="CT")
    assert caught.value.line == at + 10


@given(st.lists(st.sampled_from(["A1", "a01", " P24 ", "B-3", "Q1", "", "A25"]), min_size=1, max_size=20),
       st.booleans())
def test_long_well_column_agrees_with_short(cells: list[str], allow_null: bool) -> None:
    """Wells of a long column are normalised, or refused on the same line, as in a short one."""
    repeats = -(-text._BY_DICTIONARY // len(cells))
    lines = np.arange(1, len(cells) * repeats + 1)

    def run(values: list[str]) -> list[str | None] | str:
        try:
            return text.normalise_wells(values, lines=lines, allow_null=allow_null).to_pylist()
        except ParseError as exc:
            return str(exc)

    short, long = run(cells), run(cells * repeats)
    assert long == (short * repeats if isinstance(short, list) else short)


@given(st.lists(st.sampled_from(["Unkn", "NTC", "Std-01", "", "Pos Ctrl", "chứng âm", "xyz", "PC 2"]), min_size=1,
                max_size=20))
def test_long_role_column_agrees_with_short(cells: list[str]) -> None:
    """Roles of a long column are those of a short one, cell for cell."""
    repeats = -(-text._BY_DICTIONARY // len(cells))
    short = text.normalise_roles(cells, empty=Role.SAMPLE).to_pylist()
    assert text.normalise_roles(cells * repeats, empty=Role.SAMPLE).to_pylist() == short * repeats


_PLAIN_CELL = st.text(alphabet=st.characters(blacklist_characters="\t\r\n\"\x00",
                                             blacklist_categories=("Cs", "Cc")), max_size=6)


@given(st.lists(st.lists(_PLAIN_CELL, min_size=3, max_size=3) | st.lists(_PLAIN_CELL, min_size=1, max_size=4),
                min_size=1, max_size=15),
       st.sampled_from(["\n", "\r\n", "\r"]), st.booleans(), st.booleans())
def test_read_tail_agrees_with_read_block(rows: list[list[str]], newline: str, bom: bool, until_blank: bool) -> None:
    """The table read from the file's bytes is the one read_block gives from its lines, or None (general path)."""
    names = ["Well", "CT", "Name"]
    body = newline.join(["Title line", "\t".join(names)] + ["\t".join(r) for r in rows]) + newline
    data = (b"\xef\xbb\xbf" if bom else b"") + body.encode()
    head = text.utf8_head(data, "x", max_lines=5)
    assert head is not None
    fast = text.read_tail(head, 1, "\t", source="x", until_blank=until_blank)
    if fast is None:
        return
    lines, encoding = text.decode_lines(data, "x")
    assert head.encoding == encoding and head.lines == lines[: len(head.lines)]
    stop = text.table_stop(lines, 1) if until_blank else None
    general = text.read_block(lines, 1, stop, "\t", source="x")
    assert fast.lines.tolist() == general.lines.tolist()
    assert fast.header == general.header
    assert [c.to_pylist() for c in fast.columns] == [c.to_pylist() for c in general.columns]


@given(st.lists(st.lists(st.lists(st.sampled_from(["a", "", " ", "7"]), min_size=2, max_size=2), max_size=4),
                min_size=1, max_size=4))
def test_read_sections_agrees_with_read_block(sections: list[list[list[str]]]) -> None:
    """Sections read together give each section's rows and line numbers as read one by one."""
    lines: list[str] = []
    spans = []
    for rows in sections:
        lines.append("Experiment: x")
        header = len(lines)
        lines.append("Pos\tName")
        lines.extend("\t".join(r) for r in rows)
        spans.append((header, len(lines)))
    read = text.read_sections(lines, spans, "\t")
    if read is None:
        return
    block, section = read
    expected_lines: list[int] = []
    expected_cells: list[list[str | None]] = [[], []]
    for n, (header, stop) in enumerate(spans):
        one = text.read_block(lines, header, stop, "\t")
        assert (section[np.isin(block.lines, one.lines)] == n).all()
        expected_lines += one.lines.tolist()
        for j in range(2):
            expected_cells[j] += one.columns[j].to_pylist()
    assert block.lines.tolist() == expected_lines
    assert [c.to_pylist() for c in block.columns] == expected_cells


@given(st.lists(st.sampled_from(["0", "1,000", "12,5", "x", "", "3.5e2", " 7 "]), min_size=1, max_size=20),
       st.sampled_from([".", ","]))
def test_long_number_column_agrees_with_short(cells: list[str], decimal: str) -> None:
    """Lenient numbers of a long column (the dictionary path) equal those of a short one."""
    repeats = -(-text._BY_DICTIONARY // len(cells))
    short = text.number_array(pa.array(cells), decimal)
    np.testing.assert_array_equal(text.number_array(pa.array(cells * repeats), decimal), np.tile(short, repeats))


@given(st.lists(st.text(max_size=4), max_size=30), st.sets(st.sampled_from(list(b" \tEeq;\xc3")), max_size=4),
       st.booleans())
def test_lines_starting_with_is_a_first_byte_sieve(lines: list[str], first: set[int], empty: bool) -> None:
    """Exactly the lines whose first UTF-8 byte is one given (plus empty lines when asked) are kept."""
    want = [i for i, line in enumerate(lines)
            if (line and line.encode()[0] in first) or (empty and not line)]
    assert text.lines_starting_with(lines, bytes(sorted(first)), empty=empty).tolist() == want


@given(st.lists(st.text(alphabet=" \t\"\u00a0ab©é", max_size=5), min_size=1, max_size=20))
def test_clean_cells_skip_of_trim_is_exact(cells: list[str]) -> None:
    """Cleaning a column gives the trimmed cells (empty ones null) whether or not trimming is skipped."""
    want = [c.strip(" \t\u00a0\"") or None for c in cells]
    assert text._clean_cells(pa.array(cells)).to_pylist() == want
