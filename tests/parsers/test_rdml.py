"""RDML parser: the real StepOne file, own v1.1/v1.2 fixtures, react-id conversion and XML safety."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

import parsers
from engine.errors import ParseError
from engine.model import WELL_SCHEMA, rows_as_dicts, run_metadata
from parsers.rdml import RdmlParser
from tests.parsers import helpers
from tests.parsers.helpers import DATA

STEPONE = helpers.REAL / "rdml" / "stepone_std.rdml"
TAQPATH = DATA / "rdml_taqpath_v12.xml"
CFX = DATA / "rdml_cfx384_v11_custom_name.rdml"


def stepone_xml() -> bytes:
    with zipfile.ZipFile(STEPONE) as archive:
        return archive.read("rdml_data.xml")


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def rdml(body: str, version: str = "1.3") -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<rdml version="{version}" xmlns="http://www.rdml.org">\n'
            f"{body}\n</rdml>\n").encode()


def test_stepone_real_file_is_detected_and_read():
    """The real StepOne RDML v1.0 zip parses auto-detected: 24 reactions, positions, roles, Cq values."""
    table = parsers.parse_file(STEPONE)
    assert table.schema.equals(WELL_SCHEMA, check_metadata=False)
    meta = run_metadata(table)
    assert meta["format"] == "rdml" and meta["plate"] == "Run001"
    assert meta["instrument"] == "Applied Biosystems StepOne™ Instrument"
    assert meta["software"] == "StepOne™ Software v2.3" and meta["run_start"] == "2006-11-10T09:24:39.265"
    rows = rows_as_dicts(table)
    assert len(rows) == 24
    assert {r["target"] for r in rows} == {"RNase P"} and {r["dye"] for r in rows} == {"FAM"}
    a4 = next(r for r in rows if r["well"] == "A4")
    assert a4["sample_id"] == "pop1_RNase P" and a4["role"] == "sample"
    assert a4["ct"] == pytest.approx(28.96287, abs=1e-4)
    c8 = next(r for r in rows if r["well"] == "C8")
    assert c8["role"] == "std" and c8["ct"] == pytest.approx(31.035166, abs=1e-4)
    roles = [r["role"] for r in rows]
    assert roles.count("ntc") == 3 and roles.count("std") == 15 and roles.count("sample") == 6


def test_stepone_ntc_written_as_40_is_not_amplified():
    """StepOne writes a flat NTC as cq 40.0; those three wells read as NaN (no amplification)."""
    assert stepone_xml().count(b"<cq>40.0</cq>") == 3
    table = parsers.parse_file(STEPONE)
    ntc = [r for r in rows_as_dicts(table) if r["role"] == "ntc"]
    assert [r["well"] for r in ntc] == ["A1", "A2", "A3"] and all(r["ct"] is None for r in ntc)


def test_cq_40_is_kept_for_other_writers_and_roles():
    """The 40.0 quirk applies only to StepOne NTCs: another writer's NTC at 40.0 keeps its Cq."""
    xml = stepone_xml().replace("StepOne".encode(), b"OtherCycler")
    table = parsers.parse_bytes(xml, "other.xml")
    ntc = [r for r in rows_as_dicts(table) if r["role"] == "ntc"]
    assert all(r["ct"] == pytest.approx(40.0) for r in ntc)


def test_stepone_bare_xml_reads_like_the_zip():
    """The inner rdml_data.xml given bare reads exactly like the zip, with the XML line of each <data>."""
    from_zip = parsers.parse_file(STEPONE)
    bare = parsers.parse_bytes(stepone_xml(), "rdml_data.xml")
    columns = ["line", "well", "sample_id", "role", "target", "dye", "ct"]
    assert rows_as_dicts(bare, columns) == rows_as_dicts(from_zip, columns)
    lines = stepone_xml().decode().splitlines()
    first = rows_as_dicts(bare)[0]["line"]
    assert lines[first - 1].strip() == "<data>"


def test_taqpath_v12_numeric_react_ids_and_targets():
    """RDML 1.2: react numbers become wells via the 8x12 pcrFormat; dyes from <dyeId id>, -1 is NaN."""
    table = parsers.parse_file(TAQPATH)
    meta = run_metadata(table)
    assert meta["instrument"] == "QuantStudio 5" and meta["plate"] == "QS5-2021-08-20-plate07"
    rows = rows_as_dicts(table)
    assert len(rows) == 20
    wells = {r["sample_id"]: r["well"] for r in rows}
    assert wells == {"VN-POOL-0001": "A1", "VN-POOL-0002": "A2", "VN-POOL-0003": "B1", "PC TaqPath": "H11",
                     "NTC": "H12"}
    pool1 = {r["target"]: r for r in rows if r["sample_id"] == "VN-POOL-0001"}
    assert pool1["ORF1ab"]["dye"] == "VIC" and pool1["ORF1ab"]["ct"] == pytest.approx(24.31, abs=1e-4)
    assert pool1["S gene"]["ct"] is None and pool1["MS2"]["dye"] == "JUN"
    roles = {r["sample_id"]: r["role"] for r in rows}
    assert roles["PC TaqPath"] == "pc" and roles["NTC"] == "ntc" and roles["VN-POOL-0002"] == "sample"


def test_zip_with_other_inner_name_and_text_plate_format():
    """A zip whose single XML is not rdml_data.xml is read; '384-well plate' converts react 25 to B1."""
    table = parsers.parse_file(CFX)
    rows = rows_as_dicts(table)
    assert [(r["well"], r["target"], r["dye"]) for r in rows] == [
        ("P24", "E", "FAM"), ("P24", "RdRP", "HEX"), ("B1", "E", "FAM"), ("B1", "RdRP", "HEX")]
    assert rows[0]["ct"] == pytest.approx(31.7, abs=1e-4)
    assert rows[2]["role"] == "nc" and rows[2]["ct"] is None and rows[3]["ct"] is None  # -1 and missing <cq>


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2", "1.3"])
def test_all_versions_and_prefixed_namespace(version):
    """The same content under any RDML version and a prefixed namespace gives the same row."""
    body = ('<r:sample id="S"><r:type>unkn</r:type></r:sample><r:target id="N1"><r:dyeId id="FAM"/></r:target>'
            '<r:experiment id="e"><r:run id="r"><r:pcrFormat><r:rows>8</r:rows><r:columns>12</r:columns>'
            '</r:pcrFormat><r:react id="14"><r:sample id="S"/><r:data><r:tar id="N1"/><r:cq>22.5</r:cq>'
            "</r:data></r:react></r:run></r:experiment>")
    xml = (f'<?xml version="1.0"?><r:rdml xmlns:r="http://www.rdml.org" version="{version}">{body}</r:rdml>').encode()
    rows = rows_as_dicts(parsers.parse_bytes(xml, "x.rdml"), ["well", "sample_id", "target", "dye", "ct", "role"])
    assert rows == [{"well": "B2", "sample_id": "S", "target": "N1", "dye": "FAM", "ct": 22.5, "role": "sample"}]


def test_numbered_tubes_without_layout_have_no_well():
    """A numeric react id with no plate layout (rotor tubes) keeps well null rather than guessing."""
    body = ('<sample id="T"><type>unkn</type></sample><experiment id="e"><run id="r"><pcrFormat>free format'
            '</pcrFormat><react id="5"><sample id="T"/><data><tar id="E"/><cq>30</cq></data></react></run>'
            "</experiment>")
    rows = rows_as_dicts(parsers.parse_bytes(rdml(body, "1.0"), "x.rdml"))
    assert rows[0]["well"] is None and rows[0]["ct"] == 30.0


def test_doctype_and_entities_are_refused():
    """A billion-laughs style document with a DTD is refused before any entity is expanded."""
    bomb = (b'<?xml version="1.0"?><!DOCTYPE rdml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
            b'<rdml version="1.3"><sample id="&b;"/></rdml>')
    with pytest.raises(ParseError, match="DTD or entities"):
        RdmlParser.parse(bomb, "bomb.rdml", "0" * 64)
    external = b'<?xml version="1.0"?><!DOCTYPE rdml SYSTEM "http://example.org/x.dtd"><rdml/>'
    with pytest.raises(ParseError, match="DTD"):
        RdmlParser.parse(external, "ext.rdml", "0" * 64)


def test_malformed_and_truncated_xml_name_the_line():
    """Truncated XML is a ParseError with the line where parsing stopped."""
    xml = stepone_xml()
    cut = xml[: len(xml) // 2]
    with pytest.raises(ParseError) as err:
        RdmlParser.parse(cut, "cut.rdml", "0" * 64)
    assert err.value.line is not None and err.value.line > 100 and "malformed" in str(err.value)


def test_out_of_range_cq_names_the_line():
    """A cq beyond 50 cycles is refused with the line of the value and field 'cq'."""
    xml = stepone_xml().replace(b"<cq>28.96287</cq>", b"<cq>289.6287</cq>")
    with pytest.raises(ParseError) as err:
        RdmlParser.parse(xml, "x.rdml", "0" * 64)
    assert err.value.field == "cq" and err.value.line == 623


def test_react_number_outside_plate_is_refused():
    """React 97 on an 8x12 plate is not a well: ParseError."""
    xml = TAQPATH.read_bytes().replace(b'<react id="96">', b'<react id="97">')
    with pytest.raises(ParseError, match="outside the 8x12 plate"):
        RdmlParser.parse(xml, "x.xml", "0" * 64)


def test_archive_problems():
    """Zips with several XML files and no rdml_data.xml, damaged zips, and non-RDML roots are refused."""
    two = zipped({"a.xml": b"<rdml/>", "b.xml": b"<rdml/>"})
    with pytest.raises(ParseError, match="2 XML files"):
        RdmlParser.parse(two, "x.rdml", "0" * 64)
    damaged = STEPONE.read_bytes()
    damaged = damaged[:200] + bytes(b ^ 0xFF for b in damaged[200:260]) + damaged[260:]
    with pytest.raises(ParseError):
        RdmlParser.parse(damaged, "x.rdml", "0" * 64)
    with pytest.raises(ParseError, match="root element"):
        RdmlParser.parse(b"<?xml version='1.0'?><plate/>", "x.xml", "0" * 64)
    with pytest.raises(ParseError, match="no reactions"):
        RdmlParser.parse(rdml("<sample id='x'/>"), "x.xml", "0" * 64)


def test_sniff():
    """The sniffer knows RDML zips and bare XML, and ignores xlsx zips and other XML."""
    assert RdmlParser.sniff(STEPONE.read_bytes()[:65536], "stepone_std.rdml") > 0.9
    assert RdmlParser.sniff(TAQPATH.read_bytes(), "x.xml") > 0.9
    # Another inner name is recognised by the <rdml> root inflated from the head, whatever the file name.
    assert RdmlParser.sniff(CFX.read_bytes(), "x.zip") > 0.9
    xlsx = zipped({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<workbook/>"})
    assert RdmlParser.sniff(xlsx, "x.xlsx") == 0.0
    assert RdmlParser.sniff(b"<?xml version='1.0'?><svg/>", "x.xml") == 0.0
    assert np.isclose(RdmlParser.sniff(b"", "x"), 0.0)


def test_rotor_layout_gives_tubes_not_wells():
    """A 72 x 1 'plate' (a Rotor-Gene rotor) keeps well null; the tube number is in the row's line/react."""
    body = ('<sample id="T"><type>unkn</type></sample><experiment id="e"><run id="r"><pcrFormat><rows>72</rows>'
            '<columns>1</columns><rowLabel>123</rowLabel><columnLabel>123</columnLabel></pcrFormat>'
            '<react id="40"><sample id="T"/><data><tar id="N"/><cq>28.1</cq></data></react></run></experiment>')
    rows = rows_as_dicts(parsers.parse_bytes(rdml(body), "rotor.rdml"))
    assert rows[0]["well"] is None and rows[0]["ct"] == pytest.approx(28.1, abs=1e-4)


def test_unclosed_curve_points_are_refused():
    """Thousands of unclosed <adp> elements are a ParseError (malformed), not a runaway scan."""
    evil = b'<?xml version="1.0"?><rdml version="1.2">' + b"<adp>" * 20000
    with pytest.raises(ParseError, match="malformed"):
        RdmlParser.parse(evil, "evil.rdml", "0" * 64)
