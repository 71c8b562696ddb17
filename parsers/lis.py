"""What the LIS message parsers (ASTM E1394, HL7 v2) share once a message is split into records.

Both standards put one record (ASTM) or segment (HL7) per line, number fields
from 1 with the record type in front, write date-times as ``YYYYMMDD[HHMM[SS]]``,
and report one result at a time, so the canonical rows are gathered row by
row (a message holds a few hundred results, not a plate's worth of columns)
and turned into columns once at the end.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from parsers.text import canonical_table, ct_array

__all__ = ["ResultRows", "field_at", "iso_timestamp", "numbered_records"]


def numbered_records(lines: Sequence[str], clean: Callable[[str], str]) -> Iterator[tuple[int, str]]:
    """(1-based line, record) of each line that is not blank once ``clean`` removed transport leftovers.

    Line numbers count the blank lines too, so an error names the line a
    technician finds in the file.
    """
    for number, raw in enumerate(lines, start=1):
        record = clean(raw)
        if record.strip():
            yield number, record


def field_at(fields: list[str], index: int) -> str:
    """``fields[index]``, or empty when the sender left trailing fields out (both standards allow it)."""
    return fields[index] if index < len(fields) else ""


_TIMESTAMP = re.compile(r"(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?(\.\d+)?)?([+-]\d{4})?")


def iso_timestamp(stamp: str, *, fraction_and_zone: bool = False) -> str:
    """``YYYYMMDD[HHMM[SS]]`` as ISO 8601 (local time, no zone); anything else is kept as written.

    HL7 DTM may add fractional seconds and a ``+ZZZZ`` offset
    (``fraction_and_zone=True``: the offset is kept, the fraction dropped);
    ASTM E1394 has neither, so there such a stamp is kept as written.
    """
    m = _TIMESTAMP.fullmatch(stamp.strip())
    if not m or (not fraction_and_zone and (m[7] or m[8])):
        return stamp.strip()
    y, mo, d, h, mi, s, _, tz = m.groups()
    out = f"{y}-{mo}-{d}" if h is None else f"{y}-{mo}-{d}T{h}:{mi}:{s or '00'}"
    if tz and h is not None:
        out += f"{tz[:3]}:{tz[3:]}"
    return out


@dataclass
class ResultRows:
    """Canonical columns gathered one specimen x target at a time while a message is read.

    ``line`` is where the row's first record stands, ``ct_line`` where its Ct
    came from (what an unreadable Ct's error names); Ct values stay text until
    :meth:`cts` converts them all at once.
    """

    line: list[int] = field(default_factory=list)
    ct_line: list[int] = field(default_factory=list)
    sample_id: list[str | None] = field(default_factory=list)
    role: list[str] = field(default_factory=list)
    target: list[str] = field(default_factory=list)
    ct: list[str | None] = field(default_factory=list)
    call: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.line)

    def add(self, *, line: int, ct_line: int, sample_id: str | None, role: str, target: str, ct: str | None,
            call: str | None) -> None:
        """One row: a specimen's result for one target."""
        self.line.append(line)
        self.ct_line.append(ct_line)
        self.sample_id.append(sample_id)
        self.role.append(role)
        self.target.append(target)
        self.ct.append(ct)
        self.call.append(call)

    def cts(self, *, source: str, field: str) -> np.ndarray:
        """The Ct texts as cycles (NaN = none); a bad value is a ParseError naming its record and ``field``."""
        return ct_array(pa.array(self.ct, type=pa.string()), lines=np.asarray(self.ct_line), source=source, field=field)

    def table(self, ct: np.ndarray, *, run_id: str, source: str, metadata: dict[str, str]) -> pa.Table:
        """The canonical table of the rows with ``ct`` (from :meth:`cts`, vendor quirks applied); no wells: tubes."""
        return canonical_table(
            run_id=run_id,
            source=source,
            line=np.asarray(self.line, dtype=np.int32),
            metadata=metadata,
            sample_id=pa.array(self.sample_id, type=pa.string()),
            role=pa.array(self.role, type=pa.string()),
            target=pa.array(self.target, type=pa.string()),
            ct=ct,
            call=pa.array(self.call, type=pa.string()),
        )
