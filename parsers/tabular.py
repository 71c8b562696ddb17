"""Steps every parser of a results table takes between reading the table and the canonical rows.

CFX, SDS, QuantStudio (text and xlsx), LightCycler, Rotor-Gene and m2000
exports differ in layout, but once their table is a :class:`~parsers.text.Block`
they all decide roles the same way, drop the same unused plate positions and
turn an operator's exclusion mark into the call ``invalid``. Those steps live
here so that a fix (say, a new way a lab marks a control) reaches every format.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from parsers.errors import ParseError
from parsers.schema import Role
from parsers.text import Block, normalise_roles, occupied_wells, roles_from_names, split_fields

__all__ = [
    "drop_empty_wells",
    "header_line",
    "instrument_roles",
    "invalid_if_marked",
    "invalid_where",
    "preamble_pairs",
    "require_header",
]


def header_line(lines: Sequence[str], is_header: Callable[[str], object], *, within: int) -> int | None:
    """Index of the first of the first ``within`` lines that ``is_header`` accepts, or None.

    Only the top of a file is searched: run lines above a table are few, and a
    sniffer must stay fast on a large file that is not this format.
    """
    return next((i for i, line in enumerate(lines[:within]) if is_header(line)), None)


def require_header(lines: Sequence[str], is_header: Callable[[str], object], *, within: int, source: str | None,
                   missing: str, expected: str) -> int:
    """:func:`header_line`, but no header is a ParseError (``missing``, ``expected``) on line 1."""
    header = header_line(lines, is_header, within=within)
    if header is None:
        raise ParseError(missing, source=source, line=1, expected=expected)
    return header


def instrument_roles(kind: pa.Array, sample: pa.Array) -> pa.Array:
    """Roles from the instrument's task/type/content column, then controls recognised by their name.

    An empty cell is a sample (software leaves the task blank for unknowns); a
    word that names no role is ``unknown``, so nothing unexpected is signed as a
    patient's result. A well typed Unknown but named ``NTC`` is the NTC.
    """
    return roles_from_names(normalise_roles(kind, default=Role.UNKNOWN, empty=Role.SAMPLE), sample)


def drop_empty_wells(
    block: Block,
    ct: np.ndarray,
    sample: pa.Array,
    role: pa.Array,
    *columns: pa.Array,
    source: str | None,
    field: str,
) -> tuple[Block, np.ndarray, list[pa.Array]]:
    """The rows of occupied plate positions: ``(block, ct, [sample, role, *columns])`` filtered alike.

    Exports list unused wells too; see :func:`parsers.text.occupied_wells` for
    what counts as empty and why a Ct without a sample name is refused.
    """
    keep = occupied_wells(sample, role, ct, block.lines, source=source, field=field)
    if keep.all():
        return block, ct, [sample, role, *columns]
    mask = pa.array(keep)
    return block.filter(keep), ct[keep], [c.filter(mask) for c in (sample, role, *columns)]


def invalid_where(flagged: pa.Array, otherwise: pa.Array | None = None) -> pa.Array:
    """Call ``invalid`` where ``flagged`` is true, ``otherwise`` (null when not given) elsewhere."""
    return pc.if_else(flagged, pa.scalar("invalid"), otherwise if otherwise is not None else pa.scalar(None, pa.string()))


def invalid_if_marked(column: pa.Array | None, word: str, otherwise: pa.Array | None = None) -> pa.Array | None:
    """Call ``invalid`` on rows whose ``column`` cell reads ``word`` (any case), ``otherwise`` elsewhere.

    Analysts exclude wells by a mark (QuantStudio/SDS ``Omit`` = true,
    LightCycler ``Include`` = False, SDS ``Flag`` = Flagged); nothing is signed
    from such a well without a person looking. No column: ``otherwise`` as is.
    """
    if column is None:
        return otherwise
    return invalid_where(pc.equal(pc.utf8_lower(pc.fill_null(column, "")), word), otherwise)


def preamble_pairs(lines: Sequence[str], sep: str | None = None) -> Iterator[tuple[str, list[str]]]:
    """``key<sep>value`` run lines above a table: (key lower-cased without its colon, the line's non-empty fields).

    Lines with fewer than two non-empty fields (titles, padding) are passed
    over. ``sep`` None takes, per line, ``;`` unless ``,`` is more frequent (the
    software follows the PC's list separator).
    """
    for line in lines:
        line_sep = sep if sep is not None else (";" if line.count(";") >= line.count(",") else ",")
        fields = [f for f in split_fields(line, line_sep) if f]
        if len(fields) >= 2:
            yield fields[0].rstrip(":").lower(), fields
