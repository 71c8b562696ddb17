"""Steps shared by the results-table parsers: roles, empty wells, exclusion marks, run preambles."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from engine.errors import ParseError
from parsers import tabular, text


def _block() -> text.Block:
    lines = ["Well\tSample\tTask\tOmit", "A1\tP-1\tUNKNOWN\tfalse", "A2\t\t\t", "A3\tNTC\tUNKNOWN\tTRUE", "A4\tP-2\t\t"]
    return text.read_block(lines, 0, None, "\t", source="run.txt")


def test_instrument_roles_task_then_name() -> None:
    """Empty task is a sample, an unknown word is unknown, and a well named NTC is the NTC whatever its task."""
    roles = tabular.instrument_roles(pa.array(["Unkn", None, "Accuracy Control", "UNKNOWN"]),
                                     pa.array(["P-1", "P-2", "X", "NTC"]))
    assert roles.to_pylist() == ["sample", "sample", "unknown", "ntc"]


def test_drop_empty_wells_filters_every_column_alike() -> None:
    """Unused plate positions leave the block, the Ct array and every extra column together."""
    block = _block()
    sample = block.get_or_nulls("Sample")
    role = tabular.instrument_roles(block.get_or_nulls("Task"), sample)
    ct = np.array([20.0, np.nan, np.nan, 30.0], dtype=np.float32)
    wells = block.require("Well")
    kept, ct_kept, (sample, role, wells) = tabular.drop_empty_wells(block, ct, sample, role, wells,
                                                                    source="run.txt", field="Sample")
    assert kept.lines.tolist() == [2, 4, 5]
    assert wells.to_pylist() == ["A1", "A3", "A4"]
    assert sample.to_pylist() == ["P-1", "NTC", "P-2"]
    assert np.isnan(ct_kept[1]) and ct_kept[2] == 30.0


def test_drop_empty_wells_refuses_ct_without_name() -> None:
    """A well with a Ct but no sample name is a ParseError naming its line."""
    block = _block()
    sample = block.get_or_nulls("Sample")
    role = tabular.instrument_roles(block.get_or_nulls("Task"), sample)
    ct = np.array([20.0, 25.0, np.nan, 30.0], dtype=np.float32)
    with pytest.raises(ParseError) as err:
        tabular.drop_empty_wells(block, ct, sample, role, source="run.txt", field="Sample")
    assert err.value.line == 3


def test_invalid_if_marked_keeps_other_calls() -> None:
    """A marked row becomes invalid, others keep the call given; no column leaves the calls as they are."""
    block = _block()
    assert tabular.invalid_if_marked(block.get("Omit"), "true").to_pylist() == [None, None, "invalid", None]
    calls = pa.array(["detected", "not_detected", "detected", None])
    assert tabular.invalid_if_marked(block.get("Omit"), "true", calls).to_pylist() == [
        "detected", "not_detected", "invalid", None]
    assert tabular.invalid_if_marked(None, "true", calls) is calls
    assert tabular.invalid_if_marked(None, "true") is None


def test_preamble_pairs_per_line_separator() -> None:
    """Run lines give lower-cased keys without colon; each line's own separator is used when none is given."""
    lines = ["Excel Analysed Data Export;;;", "File;run 1.rex;;", "Operator:,Lan,,", ";;;"]
    assert list(tabular.preamble_pairs(lines)) == [("file", ["File", "run 1.rex"]), ("operator", ["Operator:", "Lan"])]
    pairs = list(tabular.preamble_pairs(["Run Started,1/2/2021,"], ","))
    assert pairs == [("run started", ["Run Started", "1/2/2021"])]


def test_header_search_limited_to_the_top() -> None:
    """A header is found only within the first lines searched; none there is a ParseError on line 1."""
    lines = ["Run,1", "", "Well,Fluor,Cq", "A1,FAM,20"]
    is_header = lambda line: line.startswith("Well,")  # noqa: E731
    assert tabular.header_line(lines, is_header, within=3) == 2
    assert tabular.header_line(lines, is_header, within=2) is None
    with pytest.raises(ParseError) as err:
        tabular.require_header(lines, is_header, within=2, source="x.csv", missing="no header", expected="Well,…")
    assert err.value.line == 1 and "no header" in str(err.value)
