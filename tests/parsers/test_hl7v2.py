"""HL7 v2 parser: the real (JavaScript-escaped) cobas OUL^R22, its wire form, own ORU^R01 and cobas 5800 fixtures."""

from __future__ import annotations


import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import parsers
from engine.errors import ParseError
from engine.model import WELL_SCHEMA, rows_as_dicts, run_metadata
from parsers.hl7v2 import Hl7v2Parser, is_js_escaped, js_unescape
from tests.parsers import helpers
from tests.parsers.helpers import DATA

REAL = helpers.REAL / "hl7_v2" / "hl7.txt"
ORU = DATA / "hl7_cobas_oru_r01.hl7"
OUL5800 = DATA / "hl7_cobas5800_oul_r22_utf8.hl7"
COLUMNS = ["line", "sample_id", "role", "target", "ct", "call"]


def wire_form(escaped: bytes) -> bytes:
    """The fixture as a cobas would send it: per SOURCES.md, literal \\n → CR and \\\\ → \\ (plus \\" → ")."""
    text = escaped.decode("ascii").rstrip("\n")
    return text.replace("\\n", "\r").replace("\\\\", "\\").replace('\\"', '"').encode("ascii") + b"\r"


def by_target(table, sample_id: str) -> dict[str, dict]:
    return {r["target"]: r for r in rows_as_dicts(table) if r["sample_id"] == sample_id}


def test_real_cobas_oul_escaped_form_is_detected_and_read():
    """The real cobas 6800/8800 OUL^R22 log (segments split by backslash-n) parses auto-detected."""
    raw = REAL.read_bytes()
    assert b"\r" not in raw and raw.count(b"\n") == 1  # really one line with escaped breaks
    table = parsers.parse_file(REAL)
    assert table.schema.equals(WELL_SCHEMA, check_metadata=False)
    meta = run_metadata(table)
    assert meta["format"] == "hl7v2" and meta["instrument"] == "COBAS6800/8800"
    assert meta["operator"] == "John Doe" and meta["run_end"] == "2023-05-16T17:14:42"
    assert meta["assay"] == "SARS-COV-2"
    rows = rows_as_dicts(table, COLUMNS)
    assert rows == [
        {"line": 5, "sample_id": "TBY 7363", "role": "sample", "target": "TGT1", "ct": None, "call": "not_detected"},
        {"line": 15, "sample_id": "TBY 7363", "role": "sample", "target": "TGT2", "ct": None, "call": "not_detected"},
        # Overall result: ValueNotSet with flag NA, then sub-observation 1/2 "NA": no call of its own.
        {"line": 25, "sample_id": "TBY 7363", "role": "sample", "target": "SARS-COV-2", "ct": None, "call": None},
    ]


def test_real_cobas_wire_form_gives_the_same_rows():
    """The wire form derived from the fixture (CR segments, MSH-2 ^~\\&) reads exactly like the escaped log."""
    escaped = parsers.parse_file(REAL)
    wire = wire_form(REAL.read_bytes())
    assert wire.startswith(b"MSH|^~\\&|COBAS") and b"\\n" not in wire
    assert not is_js_escaped(wire.decode())
    table = parsers.parse_bytes(wire, "cobas.hl7")
    assert rows_as_dicts(table, COLUMNS) == rows_as_dicts(escaped, COLUMNS)


@pytest.mark.parametrize("eol", [b"\r", b"\n", b"\r\n"])
def test_segment_terminators_and_mllp(eol):
    """CR, LF or CRLF segment ends, with or without MLLP VT/FS framing, read the same."""
    wire = wire_form(REAL.read_bytes()).replace(b"\r", eol)
    plain = parsers.parse_bytes(wire, "x.hl7")
    mllp = parsers.parse_bytes(b"\x0b" + wire + b"\x1c\r", "x.hl7")
    assert rows_as_dicts(plain, COLUMNS) == rows_as_dicts(mllp, COLUMNS)
    assert plain.num_rows == 3


def test_js_unescape_keeps_hl7_escapes():
    """JavaScript unescaping turns \\n into a segment break but leaves HL7 escapes like \\F\\ alone."""
    assert js_unescape("A\\nB\\\\C\\F\\D\\u00e9") == "A\rB\\C\\F\\D\u00e9"


def test_oru_r01_with_spm_after_observations():
    """ORU^R01 v2.5.1: the specimen id comes from the SPM that follows the OBX, not from the order numbers."""
    table = parsers.parse_file(ORU)
    meta = run_metadata(table)
    assert meta["instrument"] == "cobas 6800" and meta["software"] == "cobas 6800/8800 software 1.4.0.1636"
    assert meta["operator"] == "Lê Thị Hoa"
    assert set(table.column("sample_id").to_pylist()) == {"VN21-2001", "VN21-2002", "VN21-2003"}
    positive = by_target(table, "VN21-2001")
    assert positive["TGT1"]["ct"] == pytest.approx(27.84, abs=1e-4) and positive["TGT1"]["call"] == "detected"
    assert positive["TGT2"]["ct"] == pytest.approx(29.10, abs=1e-4)
    assert positive["SARS-COV-2"]["call"] == "detected"
    negative = by_target(table, "VN21-2002")
    assert negative["TGT1"]["call"] == "not_detected" and negative["TGT1"]["ct"] is None
    invalid = by_target(table, "VN21-2003")
    assert invalid["SARS-COV-2"]["call"] == "invalid"
    assert table.num_rows == 7


def test_cobas5800_utf8_mllp_messages():
    """Three MLLP-framed cobas 5800 OUL^R22 messages (UTF-8 names), Ct as numeric sub-observation 1/2."""
    data = OUL5800.read_bytes()
    assert data.count(b"\x0b") == 3 and "Võ^Thị Ngọc Ánh".encode() in data
    table = parsers.parse_bytes(data, OUL5800.name)
    meta = run_metadata(table)
    assert meta["instrument"] == "cobas 5800" and meta["encoding"] == "utf-8"
    assert meta["operator"] == "Phạm Thu Trang"
    pos = by_target(table, "CR-22-0451")
    assert pos["TGT1"]["ct"] == pytest.approx(25.6, abs=1e-4) and pos["TGT1"]["line"] == 6
    assert pos["TGT2"]["ct"] == pytest.approx(27.3, abs=1e-4)
    neg = by_target(table, "CR-22-0452")
    assert neg["SARS-COV-2"]["call"] == "not_detected"
    control = by_target(table, "4169_pos")
    assert {r["role"] for r in control.values()} == {"pc"}  # SPM-11 Q and a "_pos" lot name
    assert table.num_rows == 9


def test_other_delimiters_from_msh():
    """A message declaring '#' as field separator and '$' as component is split with them."""
    wire = wire_form(REAL.read_bytes()).decode()
    other = wire.replace("|", "#").replace("^", "$").replace("MSH#$~\\&", "MSH#$~\\&")
    table = parsers.parse_bytes(other.encode(), "x.hl7")
    assert table.column("target").to_pylist() == ["TGT1", "TGT2", "SARS-COV-2"]


def test_loinc_observations_and_sample_id_in_obx():
    """LOINC-coded ORU: targets named from the text, Ct by '[Cycle Threshold #]', sample id from an OBX."""
    message = "\r".join(
        [
            "MSH|^~\\&|PCR-MW|LAB|LIS|LAB|20211101120000||ORU^R01|1|P|2.5.1",
            "PID|1||P-9",
            "OBR|1|||94500-6^SARS-CoV-2 RNA panel^LN",
            "OBX|1|ST|SID^Sample ID^L||POOL-0042||||||F",
            "OBX|2|CWE|94759-8^SARS-CoV-2 N gene [Presence] in Nasopharynx by NAA^LN||260373001^Detected^SCT||||||F",
            "OBX|3|NM|94510-5^SARS-CoV-2 N gene [Cycle Threshold #] in Unspecified specimen^LN||31.5|{Ct}|||||F",
            "",
        ]
    )
    rows = rows_as_dicts(parsers.parse_bytes(message.encode(), "x.hl7"), COLUMNS)
    assert rows == [
        {"line": 5, "sample_id": "POOL-0042", "role": "sample", "target": "SARS-CoV-2 N gene", "ct": 31.5,
         "call": "detected"}
    ]


def test_hl7_escapes_in_sample_ids():
    """\\T\\ in SPM-2 stands for the sub-component character, not a split."""
    wire = wire_form(REAL.read_bytes()).replace(b"TBY 7363", b"TBY\\T\\7363")
    assert set(parsers.parse_bytes(wire, "x.hl7").column("sample_id").to_pylist()) == {"TBY&7363"}


def test_segment_before_msh_is_refused():
    """Segments before any MSH are a ParseError naming the line."""
    wire = wire_form(REAL.read_bytes())
    body = wire.split(b"\r", 1)[1]
    with pytest.raises(ParseError) as err:
        Hl7v2Parser.parse(body, "nomsh.hl7", "0" * 64)
    assert err.value.line == 1 and "MSH" in str(err.value)


def test_bad_msh_delimiters_and_garbage_segment():
    """Unusable MSH-2 and a line that is no segment are refused with their line numbers."""
    with pytest.raises(ParseError) as err:
        Hl7v2Parser.parse(b"MSH|abcd|X\rOBX|1\r", "x.hl7", "0" * 64)
    assert err.value.field == "MSH-2"
    wire = wire_form(REAL.read_bytes()).split(b"\r")
    wire.insert(3, b"not a segment at all")
    with pytest.raises(ParseError) as err:
        Hl7v2Parser.parse(b"\r".join(wire), "x.hl7", "0" * 64)
    assert err.value.line == 4


def test_message_without_observations_is_refused():
    """A message with no OBX holds no result: ParseError."""
    with pytest.raises(ParseError, match="no observations"):
        Hl7v2Parser.parse(b"MSH|^~\\&|X||Y||20200101||OUL^R22|1|P|2.5\rSPM||S1\r", "x.hl7", "0" * 64)


def test_out_of_range_ct_is_refused():
    """A Ct OBX outside 0-50 cycles is a ParseError naming the OBX line and field."""
    data = ORU.read_bytes().replace(b"|27.84|", b"|270.84|")
    with pytest.raises(ParseError) as err:
        parsers.parse_bytes(data, "x.hl7")
    assert err.value.line == 7 and "OBX-5" in str(err.value)


def test_sniff():
    """The sniffer is confident for escaped, wire and MLLP HL7 and silent on ASTM."""
    for data in (REAL.read_bytes(), wire_form(REAL.read_bytes()), OUL5800.read_bytes(), ORU.read_bytes()):
        assert Hl7v2Parser.sniff(data, "x") > 0.9
    assert Hl7v2Parser.sniff(b"H|\\^&|||Panther\rP|1\r", "x") == 0.0
    assert Hl7v2Parser.sniff(b"", "x") == 0.0


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_any_mix_of_segment_terminators(data):
    """Each segment ending in CR, LF or CRLF, in any mix, with or without MLLP, gives the same rows."""
    segments = ORU.read_bytes().split(b"\r")[:-1]
    ends = data.draw(st.lists(st.sampled_from([b"\r", b"\n", b"\r\n"]), min_size=len(segments),
                              max_size=len(segments)))
    wire = b"".join(s + e for s, e in zip(segments, ends))
    if data.draw(st.booleans()):
        wire = b"\x0b" + wire + b"\x1c\r"
    expected = rows_as_dicts(parsers.parse_file(ORU), COLUMNS)
    assert rows_as_dicts(parsers.parse_bytes(wire, "mix.hl7"), COLUMNS) == expected
