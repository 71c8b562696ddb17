"""ASTM E1394 / E1381 parser: real GeneXpert capture, own Panther/cobas fixtures, framing errors."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import parsers
from engine.errors import ParseError, TruncatedError
from engine.model import WELL_SCHEMA, rows_as_dicts, run_metadata
from parsers.astm import AstmParser, deframe
from tests.parsers.helpers import DATA, REAL

GENEXPERT = REAL / "astm_e1394" / "genexpert.txt"
PANTHER = DATA / "astm_panther_fusion_sars2.txt"
COBAS = DATA / "astm_cobas_sars2_framed.txt"


def frame(records: list[str], size: int = 240, *, first: int = 1, encoding: str = "utf-8") -> bytes:
    """Wrap records in E1381 frames of at most ``size`` text bytes (ETB for the intermediate ones)."""
    out = bytearray(b"\x05")
    fn = first
    for record in records:
        body = (record + "\r").encode(encoding)
        chunks = [body[i : i + size] for i in range(0, len(body), size)]
        for k, chunk in enumerate(chunks):
            end = b"\x03" if k == len(chunks) - 1 else b"\x17"
            framed = str(fn).encode() + chunk + end
            out += b"\x02" + framed + b"%02X" % (sum(framed) & 0xFF) + b"\r\n"
            fn = (fn + 1) % 8
    return bytes(out + b"\x04")


def panther_records() -> list[str]:
    return PANTHER.read_bytes().decode("utf-8").split("\r\n")[:-1]


def by_target(table, sample_id: str) -> dict[str, dict]:
    return {r["target"]: r for r in rows_as_dicts(table) if r["sample_id"] == sample_id}


def test_genexpert_real_capture_is_detected_and_read():
    """The real GeneXpert E1381 capture is auto-detected as ASTM and yields its probes with calls and Cts."""
    table = parsers.parse_file(GENEXPERT)
    assert table.schema.equals(WELL_SCHEMA, check_metadata=False)
    meta = run_metadata(table)
    assert meta["format"] == "astm"
    assert meta["instrument"] == "GeneXpert" and meta["software"] == "4.8"
    assert meta["serial"] == "Cepheid-44413S0"
    assert meta["operator"] == "John Doe"
    assert meta["assay"] == "Xpert MTB-RIF Ultra"
    assert meta["run_start"] == "2025-05-14T12:16:38" and meta["run_end"] == "2025-05-14T13:21:03"
    rows = rows_as_dicts(table)
    # 3 sub-tests (Xpert, Trace, RIF) x their analytes: 7 + 7 + 16.
    assert len(rows) == 30
    assert {r["sample_id"] for r in rows} == {"PR25A137"}
    assert all(r["well"] is None and r["role"] == "sample" for r in rows)
    mtb = rows[0]
    assert (mtb["line"], mtb["target"], mtb["call"], mtb["ct"]) == (4, "MTB", "not_detected", None)
    spc = [r for r in rows if r["target"] == "SPC"]
    assert len(spc) == 3 and all(abs(r["ct"] - 24.7) < 1e-4 and r["call"] is None for r in spc)
    rpob1 = next(r for r in rows if r["target"] == "rpoB1")
    assert rpob1["call"] == "invalid" and rpob1["ct"] is None  # Ct 0.0 = did not amplify


def test_genexpert_record_without_analyte_takes_the_following_probe():
    """GeneXpert's `^^^^|FAIL` record (no analyte) is attributed to the IS1081-IS6110 Ct record after it."""
    rows = rows_as_dicts(parsers.parse_file(GENEXPERT))
    is6110 = [r for r in rows if r["target"] == "IS1081-IS6110"]
    assert [r["call"] for r in is6110] == ["invalid", "invalid", "invalid"]
    assert is6110[0]["line"] == 21  # record 21 is R|17, the analyte-less FAIL
    assert "" not in {r["target"] for r in rows}


def test_genexpert_checksum_is_verified():
    """Changing one byte inside the GeneXpert frame makes its checksum fail, naming the frame."""
    data = GENEXPERT.read_bytes().replace(b"NOT DETECTED", b"NOT DETECTEE", 1)
    with pytest.raises(ParseError) as err:
        parsers.parse_bytes(data, "genexpert.txt")
    assert err.value.field == "checksum"
    assert "frame 1" in str(err.value) and "genexpert.txt" in str(err.value)


def test_panther_fixture_reads_calls_cts_and_validity():
    """Panther Fusion records: interpretation, '<target> Ct' analytes, ResultValid=Invalid invalidates the order."""
    table = parsers.parse_file(PANTHER)
    meta = run_metadata(table)
    assert meta["format"] == "astm" and meta["instrument"] == "Panther" and meta["serial"] == "2050304"
    assert meta["operator"] == "Lê Văn Hùng" and meta["encoding"] == "utf-8"
    assert table.num_rows == 8
    first = by_target(table, "VN21-000123")
    assert first["SARS-CoV-2"]["call"] == "detected"
    assert first["SARS-CoV-2"]["ct"] == pytest.approx(24.6, abs=1e-4)
    assert first["SARS-CoV-2"]["line"] == 4
    assert first["IC"]["ct"] == pytest.approx(31.2, abs=1e-4)
    negative = by_target(table, "VN21-000124")
    assert negative["SARS-CoV-2"]["call"] == "not_detected" and negative["SARS-CoV-2"]["ct"] is None
    invalid = by_target(table, "VN21-000125")
    assert {r["call"] for r in invalid.values()} == {"invalid"}
    control = by_target(table, "NEG CTRL")
    assert control["SARS-CoV-2"]["role"] == "nc"


def test_cobas_framed_fixture_joins_etb_frames():
    """The cobas capture (23 frames, one intermediate ETB frame) is deframed and read per target."""
    data = COBAS.read_bytes()
    assert data.count(b"\x17") == 1
    table = parsers.parse_bytes(data, COBAS.name)
    meta = run_metadata(table)
    assert meta["instrument"] == "cobas 6800/8800" and meta["serial"] == "IM300-001794"
    assert meta["software"] == "1.4.0.1636" and meta["operator"] == "Nguyễn Văn A"
    positive = by_target(table, "VN21-1001")
    assert positive["TGT1"]["ct"] == pytest.approx(27.31, abs=1e-4)
    assert positive["TGT2"]["ct"] == pytest.approx(29.05, abs=1e-4)
    assert positive["TGT1"]["call"] == positive["SARS-CoV-2"]["call"] == "detected"
    negative = by_target(table, "VN21-1002")
    assert negative["TGT1"]["ct"] is None and negative["SARS-CoV-2"]["call"] == "not_detected"
    control = by_target(table, "POS CTRL")
    assert control["TGT2"]["role"] == "pc" and control["TGT2"]["ct"] == pytest.approx(32.40, abs=1e-4)
    assert table.num_rows == 8


def test_vietnamese_patient_name_survives_framing():
    """UTF-8 names in the P record are decoded from the deframed bytes, not mangled by frame splits."""
    text = deframe(COBAS.read_bytes()).decode("utf-8")
    assert "Đỗ^Thị Hương" in text and "Hoàng^Minh Châu" in text


@settings(max_examples=40, deadline=None)
@given(size=st.integers(min_value=1, max_value=240), first=st.integers(min_value=0, max_value=7))
def test_any_frame_size_gives_the_same_rows(size, first):
    """Splitting records into ETB frames of any size (even mid UTF-8 character) does not change the rows."""
    records = panther_records()
    raw = parsers.parse_bytes(PANTHER.read_bytes(), "p.txt")
    framed = parsers.parse_bytes(frame(records, size, first=first), "p.txt")
    assert rows_as_dicts(framed, ["line", "sample_id", "role", "target", "ct", "call"]) == rows_as_dicts(
        raw, ["line", "sample_id", "role", "target", "ct", "call"]
    )


@pytest.mark.parametrize("eol", ["\r", "\n", "\r\n"])
def test_raw_messages_with_any_line_end(eol):
    """Unframed records separated by CR, LF or CRLF read the same."""
    data = eol.join(panther_records()).encode("utf-8") + eol.encode()
    assert parsers.parse_bytes(data, "p.txt").num_rows == 8


def test_delimiters_are_taken_from_the_header():
    """A message declaring other delimiters (field '!', component '~') is split with them."""
    records = [r.replace("|", "!").replace("^", "~") for r in panther_records()]
    records[0] = "H!\\~&" + records[0][len("H!\\~&") :]
    table = parsers.parse_bytes("\r".join(records).encode() + b"\r", "p.txt")
    assert by_target(table, "VN21-000123")["SARS-CoV-2"]["ct"] == pytest.approx(24.6, abs=1e-4)


def test_escape_sequences_are_undone():
    """`&S&` inside a specimen id stands for the component delimiter, not a split."""
    records = panther_records()
    records[2] = records[2].replace("VN21-000123", "VN21&S&A")
    table = parsers.parse_bytes("\r".join(records).encode() + b"\r", "p.txt")
    assert "VN21^A" in set(table.column("sample_id").to_pylist())


def test_m2000_astm_cycle_number_and_interpretation():
    """Abbott m2000 ASTM: result type P is the cycle number (-1.00 = none), I the interpretation."""
    message = "\r".join(
        [
            "H|\\^&|||m2000^8.1.9.0^275022112^H1P1O1R1C1L1|||||||P|1|20200725073540",
            "P|1",
            "O|1|VN20-77|VN20-77^WS20-1^D1|^^^SARS-COV-2^SARS-COV-2|||||||||||||||||||||F",
            "R|1|^^^SARS-COV-2^SARS-COV-2^506956^10001049^^F|Detected|CN||||R||kt^kt||20200725073540|275020797",
            "R|2|^^^SARS-COV-2^SARS-COV-2^506956^10001049^^I|Positive|||||R||kt^kt||20200725073540|275020797",
            "R|3|^^^SARS-COV-2^SARS-COV-2^506956^10001049^^P|21.37|cycle number||||R||kt^kt||20200725073540|275020797",
            "O|2|VN20-78|VN20-78^WS20-1^D2|^^^SARS-COV-2^SARS-COV-2|||||||||||||||||||||F",
            "R|1|^^^SARS-COV-2^SARS-COV-2^506956^10001049^^F|Not Detected|CN||||R||kt^kt||20200725073540|275020797",
            "R|2|^^^SARS-COV-2^SARS-COV-2^506956^10001049^^P|-1.00|cycle number||||R||kt^kt||20200725073540|275020797",
            "L|1",
        ]
    )
    table = parsers.parse_bytes(message.encode() + b"\r", "m2000.txt")
    meta = run_metadata(table)
    assert meta["instrument"] == "Abbott m2000" and meta["serial"] == "275022112"
    pos = by_target(table, "VN20-77")["SARS-COV-2"]
    assert pos["call"] == "detected" and pos["ct"] == pytest.approx(21.37, abs=1e-4)
    neg = by_target(table, "VN20-78")["SARS-COV-2"]
    assert neg["call"] == "not_detected" and neg["ct"] is None


def test_bad_checksum_names_the_frame():
    """A frame whose written checksum differs from the byte sum is refused, naming frame and record."""
    data = bytearray(frame(panther_records()))
    # Corrupt the checksum of frame 4 (the first R record).
    starts = [i for i, b in enumerate(data) if b == 2]
    etx = data.index(b"\x03", starts[3])
    data[etx + 1 : etx + 3] = b"00" if data[etx + 1 : etx + 3] != b"00" else b"01"
    with pytest.raises(ParseError) as err:
        AstmParser.parse(bytes(data), "panther.cap", "0" * 64)
    assert "frame 4" in str(err.value) and err.value.field == "checksum"
    assert err.value.line == 4 and err.value.source == "panther.cap"


def test_truncated_frame_is_refused():
    """A capture cut inside a frame (no ETX) is a ParseError naming the record it was in."""
    data = frame(panther_records())
    cut = data.index(b"R|2|")
    with pytest.raises(ParseError) as err:
        parsers.parse_bytes(data[:cut], "cut.cap")
    assert "truncated" in str(err.value) and err.value.line == 5
    with pytest.raises(ParseError) as err:
        AstmParser.parse(data[:cut], "cut.cap", "0" * 64)
    assert "truncated" in str(err.value) and err.value.line == 5


def test_missing_frame_is_refused():
    """Frame numbers must follow 1..7,0: a dropped frame is detected."""
    data = frame(panther_records())
    starts = [i for i, b in enumerate(data) if b == 2]
    broken = data[: starts[5]] + data[starts[6] :]
    with pytest.raises(ParseError, match="frame 6 is numbered 7 where 6 was expected"):
        parsers.parse_bytes(broken, "gap.cap")


def test_missing_header_record_is_refused():
    """Records before any H record are refused with the line of the first one."""
    data = "\r".join(panther_records()[1:]).encode() + b"\r"
    with pytest.raises(ParseError) as err:
        AstmParser.parse(data, "noheader.txt", "0" * 64)
    assert err.value.line == 1 and "H (header)" in str(err.value)


def test_missing_terminator_means_truncated():
    """A message without its L record is a truncated file."""
    data = "\r".join(panther_records()[:-1]).encode() + b"\r"
    with pytest.raises(TruncatedError, match=r"appears truncated: the ASTM message has no terminator record \(L\)"):
        parsers.parse_bytes(data, "short.txt", format="astm")
    with pytest.raises(ParseError, match="no L"):
        AstmParser.parse(data, "short.txt", "0" * 64)


def test_bad_delimiters_and_garbage_lines():
    """An H record with letters as delimiters, or a non-record line, is a ParseError with its line."""
    with pytest.raises(ParseError) as err:
        AstmParser.parse(b"HABCD|x\rL|1\r", "x.txt", "0" * 64)
    assert err.value.field == "H-2 delimiters"
    records = panther_records()
    records.insert(3, "this is not a record")
    with pytest.raises(ParseError) as err:
        AstmParser.parse("\r".join(records).encode(), "x.txt", "0" * 64)
    assert err.value.line == 4


def test_result_before_order_is_refused():
    """An R record with no O record before it cannot be attributed to a specimen."""
    data = b"H|\\^&|||Panther\rP|1\rR|1|^^^SARS-CoV-2^SARS-CoV-2^^1|Positive\rL|1\r"
    with pytest.raises(ParseError, match="no O"):
        AstmParser.parse(data, "x.txt", "0" * 64)


def test_sniff_is_confident_only_for_astm():
    """The sniffer recognises framed and raw ASTM and ignores HL7 and CSV."""
    assert AstmParser.sniff(GENEXPERT.read_bytes(), "x") > 0.9
    assert AstmParser.sniff(PANTHER.read_bytes(), "x") > 0.9
    assert AstmParser.sniff(COBAS.read_bytes(), "x") > 0.9
    assert AstmParser.sniff(b"MSH|^~\\&|COBAS\r", "x") == 0.0
    assert AstmParser.sniff(b"Well,Sample,Cq\r\nA1,x,20\r\n", "x.csv") == 0.0
    assert math.isclose(AstmParser.sniff(b"", "x"), 0.0)


def test_genexpert_short_test_ids_for_xpress_sars_cov_2():
    """GeneXpert's short ids (^^^SARS-CoV-2^N2^Ct) give one row per probe plus the test-level call."""
    message = "\r".join(
        [
            "H|@^\\|GX-1||GX-Lab^GeneXpert^6.2|||||LIS||P|1394-97|20211103101010",
            "P|1|||BN-77|Lý^Thị Mai",
            "O|1|VN21-4242||^^^SARS-CoV-2|R|20211103090000|||||||||ORH||||||||||F",
            "R|1|^^^SARS-CoV-2|SARS-CoV-2 POSITIVE^|||||F||Tech 1|20211103090500|20211103094400|Cepheid-7712^801",
            "R|2|^^^SARS-CoV-2^E^|POS^|||",
            "R|3|^^^SARS-CoV-2^E^Ct|^23.4|||",
            "R|4|^^^SARS-CoV-2^E^EndPt|^310.0|||",
            "R|5|^^^SARS-CoV-2^N2^|POS^|||",
            "R|6|^^^SARS-CoV-2^N2^Ct|^25.9|||",
            "R|7|^^^SARS-CoV-2^SPC^|NA^|||",
            "R|8|^^^SARS-CoV-2^SPC^Ct|^0.0|||",
            "L|1|N",
        ]
    )
    table = parsers.parse_bytes(message.encode() + b"\r", "xpress.txt")
    rows = {r["target"]: r for r in rows_as_dicts(table)}
    assert list(rows) == ["SARS-CoV-2", "E", "N2", "SPC"]
    assert rows["SARS-CoV-2"]["call"] == "detected" and rows["SARS-CoV-2"]["line"] == 4
    assert rows["E"]["ct"] == pytest.approx(23.4, abs=1e-4) and rows["E"]["call"] == "detected"
    assert rows["N2"]["ct"] == pytest.approx(25.9, abs=1e-4)
    assert rows["SPC"]["ct"] is None  # 0.0 = no amplification on GeneXpert
    assert run_metadata(table)["serial"] == "Cepheid-7712"


def test_two_messages_in_one_capture_restart_frame_numbers():
    """Two framed messages back to back (ENQ/EOT stripped) each number frames from 1 and are both read."""
    records = panther_records()
    one = frame(records)[1:-1]  # without ENQ and EOT
    table = parsers.parse_bytes(one + one, "two.cap")
    assert table.num_rows == 16
