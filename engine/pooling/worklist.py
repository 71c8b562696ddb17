"""Pipetting worklists: which tube goes into which pool well, for a technician or a liquid handler.

One CSV row per transfer (specimen tube → pool well), ordered by specimen so one tube
is opened once and dispensed into all its pools. Pools are laid out row by row on 96-
or 384-well plates; the last wells of every plate are kept free for the run controls
(NTC, positive control) the assay profile requires.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TextIO

from engine.csvsafe import DictWriter
from engine.errors import DesignError
from engine.pooling.designs import Design

__all__ = ["WORKLIST_COLUMNS", "pool_wells", "worklist_rows", "write_worklist"]

WORKLIST_COLUMNS = (
    "step",
    "specimen_id",
    "source_rack",
    "source_position",
    "pool_id",
    "destination_plate",
    "destination_well",
    "volume_ul",
)
_FORMATS = {96: (8, 12), 384: (16, 24)}


def _well_name(index: int, columns: int) -> str:
    return f"{chr(ord('A') + index // columns)}{index % columns + 1}"


def pool_wells(design: Design, plate_format: int = 96, reserved: int = 2) -> list[tuple[int, str]]:
    """(plate number, well) for each pool, row-major, leaving ``reserved`` wells per plate for controls."""
    if plate_format not in _FORMATS:
        raise DesignError(f"plate format must be 96 or 384 wells, got {plate_format}")
    rows, cols = _FORMATS[plate_format]
    usable = rows * cols - reserved
    if usable < 1:
        raise DesignError(f"{reserved} reserved control wells leave no room for pools on a {plate_format}-well plate")
    return [(p // usable + 1, _well_name(p % usable, cols)) for p in range(design.n_pools)]


def worklist_rows(design: Design, *, plate_format: int = 96, volume_ul: float = 10.0, rack_size: int = 96, reserved: int = 2) -> Iterator[dict[str, object]]:
    """Transfers of the design, one dict per (specimen, pool), specimens in design order."""
    wells = pool_wells(design, plate_format, reserved)
    step = 0
    for s, specimen in enumerate(design.specimen_ids):
        for p in design.pools_of(s):
            step += 1
            plate, well = wells[int(p)]
            yield {
                "step": step,
                "specimen_id": specimen,
                "source_rack": s // rack_size + 1,
                "source_position": s % rack_size + 1,
                "pool_id": design.pool_ids[int(p)],
                "destination_plate": plate,
                "destination_well": well,
                "volume_ul": volume_ul,
            }


def write_worklist(design: Design, out: TextIO | None = None, **options: object) -> str:
    """Write the worklist CSV to ``out`` (or return it as text when ``out`` is None)."""
    buffer = out if out is not None else io.StringIO()
    writer = DictWriter(buffer, fieldnames=WORKLIST_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in worklist_rows(design, **options):  # type: ignore[arg-type]
        writer.writerow(row)
    return buffer.getvalue() if isinstance(buffer, io.StringIO) and out is None else ""
