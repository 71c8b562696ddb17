"""Wells a parser reads but cannot attribute to anyone: left out of the table, reported in the run's notes.

A well set up as a specimen (task ``UNKNOWN``, or one that has a Ct) but
left without a sample name cannot be matched to a pool. Refusing the whole
plate for it would withhold every named well's result; dropping it without a
word would hide that a pool went untested. So the parser leaves the well out
and says so: the table's schema metadata carries ``notes``, a JSON list of
objects, one per such well::

    {"kind": "unnamed-well", "well": "D16", "line": 98, "lines": [98],
     "task": "UNKNOWN", "ct": {"18s": 18.55},
     "text": "well D16 (line 98): Ct 18.55 (18s) but no sample name; not decided, its pool cannot be matched"}

The engine keeps the run metadata with the run (``runs.metadata``), so the
note travels with the plate. A row with no sample name, no task and no Ct is
an unused plate position and is passed over silently, as before.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Schema-metadata key of the notes (a JSON array of objects).
NOTES_KEY = "notes"
#: At most this many wells are listed one by one; a last note counts the rest (a damaged file stays small).
MAX_NOTED_WELLS = 100
_PATIENT = pa.array(["sample", "unknown"])


def _blank(values: pa.Array) -> np.ndarray:
    text = pc.utf8_trim_whitespace(pc.fill_null(values.cast(pa.string()), ""))
    return pc.equal(pc.utf8_length(text), 0).to_numpy(zero_copy_only=False)


def unnamed_wells(
    sample: pa.Array,
    role: pa.Array,
    ct: np.ndarray,
    *,
    task: pa.Array,
    wells: pa.Array,
    targets: pa.Array | None,
    lines: np.ndarray,
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """``(keep, notes)``: the rows to keep, and one note per unnamed specimen well left out.

    Kept: every row with a sample name, and every control (NTC, PC, NC,
    standards may be unnamed). Left out: a specimen row without a name; its
    well is noted when any of its rows has a Ct or a task (``UNKNOWN``), so
    only untouched plate positions pass without a word. ``wells`` and
    ``targets`` are the cells as written (for the notes); ``rows`` (a mask)
    limits the notes to the table's real rows (not text under it).
    """
    patient = pc.is_in(role.cast(pa.string()), value_set=_PATIENT).to_numpy(zero_copy_only=False)
    unnamed = _blank(sample) & patient
    if not unnamed.any():
        return ~unnamed, []
    noted = unnamed & (~np.isnan(ct) | ~_blank(task))
    if rows is not None:
        noted &= rows
    return ~unnamed, _notes(np.flatnonzero(noted), ct, task, wells, targets, lines)


def _notes(rows: np.ndarray, ct: np.ndarray, task: pa.Array, wells: pa.Array, targets: pa.Array | None,
           lines: np.ndarray) -> list[dict[str, Any]]:
    """One note per well (its rows grouped in file order); the few noted rows are read one by one."""
    well_text = pc.utf8_trim_whitespace(pc.fill_null(wells.cast(pa.string()), "")).take(pa.array(rows)).to_pylist()
    task_text = pc.utf8_trim_whitespace(pc.fill_null(task.cast(pa.string()), "")).take(pa.array(rows)).to_pylist()
    target_text = ([None] * len(rows) if targets is None
                   else pc.fill_null(targets.cast(pa.string()), "").take(pa.array(rows)).to_pylist())
    by_well: dict[str, dict[str, Any]] = {}
    for k, i in enumerate(rows):
        well = well_text[k] or f"line {int(lines[i])}"
        note = by_well.setdefault(well, {"kind": "unnamed-well", "well": well, "line": int(lines[i]), "lines": [],
                                         "task": task_text[k] or None, "ct": {}})
        if int(lines[i]) not in note["lines"]:  # a genotyping well's two allele rows share one line
            note["lines"].append(int(lines[i]))
        value = float(ct[i])
        note["ct"][target_text[k] or ""] = None if math.isnan(value) else round(value, 2)
    notes = [dict(note, text=_text(note)) for note in by_well.values()]
    if len(notes) > MAX_NOTED_WELLS:
        rest = len(notes) - MAX_NOTED_WELLS
        notes = notes[:MAX_NOTED_WELLS] + [{"kind": "unnamed-well", "more_wells": rest,
                                            "text": f"{rest} more unnamed wells not listed"}]
    return notes


def _text(note: Mapping[str, Any]) -> str:
    amplified = {t: v for t, v in note["ct"].items() if v is not None}
    where = f"well {note['well']} (line {note['line']})"
    if amplified:
        cts = ", ".join(f"{v:g} ({t})" if t else f"{v:g}" for t, v in amplified.items())
        return f"{where}: Ct {cts} but no sample name; not decided, its pool cannot be matched"
    task = f"task {note['task']}" if note["task"] else "a specimen row"
    return f"{where}: {task} without a sample name and no Ct; left out, no pool is matched to it"


def with_notes(metadata: dict[str, str], notes: list[dict[str, Any]]) -> dict[str, str]:
    """``metadata`` with the notes added under :data:`NOTES_KEY` (unchanged when there are none)."""
    if not notes:
        return metadata
    return {**metadata, NOTES_KEY: json.dumps(notes, ensure_ascii=False, separators=(",", ":"))}


def run_notes(table: pa.Table) -> list[dict[str, Any]]:
    """The notes a parser left in a table's schema metadata (empty list when none)."""
    raw = (table.schema.metadata or {}).get(NOTES_KEY.encode())
    return json.loads(raw) if raw else []


def first_unnamed_line(sample: pa.Array, role: pa.Array, lines: np.ndarray) -> int | None:
    """Line of the first unnamed specimen row, for the error when no named well is left."""
    patient = pc.is_in(role.cast(pa.string()), value_set=_PATIENT).to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(_blank(sample) & patient)
    return int(lines[rows[0]]) if len(rows) else None
