"""parsers.notes: unnamed specimen wells are left out per well and reported, never refused nor silently dropped."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from parsers.notes import MAX_NOTED_WELLS, NOTES_KEY, run_notes, unnamed_wells, with_notes
from parsers.schema import RUN_METADATA_KEYS, well_table

ROLES = ["sample", "unknown", "ntc", "pc", "nc", "std"]

_row = st.tuples(
    st.sampled_from(["", " ", None, "P01", "HN-0412"]),  # sample
    st.sampled_from(ROLES),
    st.one_of(st.just(float("nan")), st.floats(5, 45)),  # ct
    st.sampled_from(["", None, "UNKNOWN", "NTC"]),  # task as written
    st.sampled_from(["A1", "A2", "B7", "H12"]),  # well as written
    st.sampled_from(["ORF1ab", "N gene", None]),
)


def _run(rows: list[tuple]) -> tuple[np.ndarray, list[dict]]:
    sample, role, ct, task, well, target = (list(c) for c in zip(*rows))
    return unnamed_wells(
        pa.array(sample, pa.string()), pa.array(role), np.array(ct, dtype=np.float32),
        task=pa.array(task, pa.string()), wells=pa.array(well), targets=pa.array(target, pa.string()),
        lines=np.arange(10, 10 + len(rows)),
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(_row, min_size=1, max_size=40))
def test_every_row_is_kept_noted_or_an_untouched_position(rows: list[tuple]) -> None:
    """Named rows and controls are kept; an unnamed specimen row with a Ct or a task is in its well's note; no other."""
    keep, notes = _run(rows)
    noted_lines = {line for n in notes for line in n["lines"]}
    for i, (sample, role, ct, task, well, _target) in enumerate(rows):
        named = bool((sample or "").strip())
        patient = role in ("sample", "unknown")
        assert keep[i] == (named or not patient)
        set_up = not np.isnan(ct) or bool((task or "").strip())
        assert ((10 + i) in noted_lines) == (not keep[i] and set_up)
    wells = [n["well"] for n in notes]
    assert len(wells) == len(set(wells))  # one note per well
    for note in notes:
        assert note["kind"] == "unnamed-well" and note["line"] == note["lines"][0]
        assert note["text"].startswith(f"well {note['well']} (line {note['line']}):")
        amplified = [v for v in note["ct"].values() if v is not None]
        assert ("Ct " in note["text"]) == bool(amplified)


@settings(max_examples=100, deadline=None)
@given(st.lists(_row, min_size=1, max_size=30))
def test_notes_survive_the_table_metadata(rows: list[tuple]) -> None:
    """Notes written with with_notes come back from the table's schema metadata unchanged (JSON, NaN-free)."""
    keep, notes = _run(rows)
    meta = with_notes({"format": "x"}, notes)
    assert (NOTES_KEY in meta) == bool(notes)
    table = well_table({"run_id": ["r"], "source": ["s"], "role": ["sample"]}, meta)
    assert run_notes(table) == json.loads(json.dumps(notes))


def test_notes_key_is_part_of_the_contract() -> None:
    """The metadata key is listed among the keys a parser may set."""
    assert NOTES_KEY in RUN_METADATA_KEYS


def test_a_damaged_file_with_many_unnamed_wells_stays_small() -> None:
    """Past MAX_NOTED_WELLS wells, one last note counts the rest."""
    n = MAX_NOTED_WELLS + 7
    keep, notes = unnamed_wells(
        pa.array([""] * n), pa.array(["sample"] * n), np.full(n, 30.0, dtype=np.float32),
        task=pa.array(["UNKNOWN"] * n), wells=pa.array([f"W{i}" for i in range(n)]), targets=None,
        lines=np.arange(n),
    )
    assert not keep.any() and len(notes) == MAX_NOTED_WELLS + 1
    assert notes[-1]["more_wells"] == 7
