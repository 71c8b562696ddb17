"""Helpers shared by the ASTM and HL7 message parsers."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import ParseError
from parsers import lis


@pytest.mark.parametrize(
    "stamp,astm,hl7",
    [
        ("20200315", "2020-03-15", "2020-03-15"),
        ("202003151230", "2020-03-15T12:30:00", "2020-03-15T12:30:00"),
        (" 20200315123045 ", "2020-03-15T12:30:45", "2020-03-15T12:30:45"),
        ("20200315123045.123+0700", "20200315123045.123+0700", "2020-03-15T12:30:45+07:00"),
        ("15/03/2020", "15/03/2020", "15/03/2020"),
    ],
)
def test_iso_timestamp_astm_and_hl7(stamp: str, astm: str, hl7: str) -> None:
    """Date-times become ISO 8601; fractions and zones only in HL7, other text is kept as written."""
    assert lis.iso_timestamp(stamp) == astm
    assert lis.iso_timestamp(stamp, fraction_and_zone=True) == hl7


def test_numbered_records_keep_file_line_numbers() -> None:
    """Blank and NUL-only lines are skipped but still counted, so errors name the file's line."""
    lines = ["H|\\^&", "", "\x00", "P|1", "  "]
    assert list(lis.numbered_records(lines, lambda raw: raw.strip("\x00"))) == [(1, "H|\\^&"), (4, "P|1")]
    assert lis.field_at(["R", "1"], 1) == "1" and lis.field_at(["R", "1"], 5) == ""


def test_result_rows_table_and_ct_errors() -> None:
    """Gathered rows become the canonical table; an unreadable Ct names the record it came from."""
    rows = lis.ResultRows()
    rows.add(line=3, ct_line=4, sample_id="P-1", role="sample", target="N2", ct="31.5", call="detected")
    rows.add(line=6, ct_line=6, sample_id="P-2", role="sample", target="N2", ct=None, call="not_detected")
    ct = rows.cts(source="msg.txt", field="R-4 Ct value")
    table = rows.table(ct, run_id="r1", source="msg.txt", metadata={"instrument": "GeneXpert"})
    assert len(rows) == 2
    assert table.column("line").to_pylist() == [3, 6]
    assert table.column("instrument").to_pylist() == ["GeneXpert", "GeneXpert"]
    assert table.column("well").null_count == 2
    assert np.isnan(table.column("ct").to_pylist()[1])
    rows.add(line=9, ct_line=10, sample_id="P-3", role="sample", target="N2", ct="abc", call=None)
    with pytest.raises(ParseError) as err:
        rows.cts(source="msg.txt", field="R-4 Ct value")
    assert err.value.line == 10 and err.value.field == "R-4 Ct value"
