"""Bio-Rad CFX Manager / CFX Maestro "Quantification Cq Results" exports.

One row per well × fluor, under a header whose first cell is empty (the
software writes the row index column without a title; some exports drop it):

    ,Well,Fluor,Target,Content,Sample,Biological Set Name,Cq,Cq Mean,...
    ,A01,FAM,,Unkn,M3905 R Ctx,PBS Baseline,21.1877528266099,...

Variants seen on lab PCs:
- CFX Maestro writes ``NaN`` for no Cq, the older CFX Manager ``N/A``;
- a Windows PC set to a Vietnamese or French locale writes ``;`` separators and
  decimal commas (``;A01;FAM;N;Unkn;P-1;;21,19;…``);
- "Unicode text" exports are UTF-16 LE with a BOM (comma or tab separated);
- some exports put ``key,value`` run lines (File Name, Run Started, Base Serial
  Number…) above the table; they become run metadata.
- ``Content`` numbers replicates/standards (``Unkn-01``, ``Std-03``); the base
  word gives the role. An empty ``Target`` (no plate setup) falls back to the
  fluor name so that the run's channels stay distinguishable.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

from parsers.errors import ParseError
from parsers.completeness import head_and_tail, last_well_short, unterminated
from parsers.registry import register
from parsers.tabular import drop_empty_wells, header_line, instrument_roles, preamble_pairs, require_header
from parsers.text import (
    Block,
    Utf8Head,
    canonical_table,
    clean_metadata,
    ct_array,
    decode_lines,
    head_lines,
    normalise_wells,
    read_block,
    read_tail,
    require_rows,
    utf8_head,
)

# The row-index column before "Well" has no title; CFX Maestro 2.x "Export to CSV" may leave it out.
#: Lines searched for the table header (run lines above it are few).
_HEADER_WITHIN = 200
_HEADER = re.compile(r"^(?:[ \"]*(?P<lead>[,;\t]))?[ \"]*Well[ \"]*(?P<sep>[,;\t])[ \"]*Fluor[ \"]*(?P=sep)", re.IGNORECASE)
CQ_COLUMNS = ("Cq", "C(t)", "Ct", "Cт")

#: Run lines CFX writes above a table in "custom export" mode, and where they go.
_META_KEYS = {
    "file name": "plate",
    "run started": "run_start",
    "run ended": "run_end",
    "created by user": "operator",
    "user": "operator",
    "base serial number": "serial",
    "instrument serial number": "serial",
    "cfx maestro version": "software",
    "cfx manager version": "software",
    "software version": "software",
    "base model": "instrument",
    "instrument": "instrument",
}


def _header_separator(line: str) -> str | None:
    m = _HEADER.match(line[:300])
    if m is None or (m["lead"] is not None and m["lead"] != m["sep"]):
        return None
    return m["sep"]


def _run_metadata(lines: list[str], header: int, sep: str, encoding: str) -> dict[str, str]:
    pairs: list[tuple[str, str | None]] = [("encoding", encoding)]
    for key, fields in preamble_pairs(lines[:header], sep):
        if key in _META_KEYS:
            value = fields[1]
            if key.endswith(" version") and not key.startswith("software"):
                value = f"{fields[0][: -len(' version')]} {value}"  # "CFX Maestro 2.3"
            pairs.append((_META_KEYS[key], value))
    meta = clean_metadata(pairs)
    meta.setdefault("instrument", "Bio-Rad CFX")
    return meta


@register(
    "cfx",
    description="Bio-Rad CFX Manager / CFX Maestro Quantification Cq Results (CSV)",
    instruments=("CFX96", "CFX384", "CFX Opus", "CFX Connect"),
)
class CfxCqResults:
    """Bio-Rad CFX "Quantification Cq Results" CSV, any locale, UTF-8 or UTF-16."""

    @staticmethod
    def sniff(head: bytes, name: str) -> float:
        """The ``,Well,Fluor,`` header (any separator) is unique to Bio-Rad CFX software."""
        lines = head_lines(head)
        i = header_line(lines, _header_separator, within=200)
        if i is None:
            return 0.0
        return 0.97 if re.search(r"\bC(q|\(t\))\b", lines[i]) else 0.7

    @staticmethod
    def complete(data: bytes) -> str | None:
        """Whole when the file ends with a line end and the last well has a row for every fluor.

        CFX ends every row with CRLF (UTF-16 "Unicode text" exports too, as
        UTF-16 code units) and lists each well's fluors together, so a last well
        with fewer fluor rows than the first is cut. Undetectable: a cut exactly
        between two wells leaves a well-formed table of fewer wells (CFX does
        not state how many wells it exported).
        """
        why = unterminated(data)
        if why is not None:
            return why
        head, tail, whole = head_and_tail(data)
        header = header_line(head, _header_separator, within=_HEADER_WITHIN)
        if header is None:
            return None
        sep = _header_separator(head[header])
        assert sep is not None
        names = [f.strip().strip('"').lower() for f in head[header].split(sep)]
        if "well" not in names:
            return None
        first = [line.split(sep) for line in head[header + 1 :] if line.strip(sep + ' "\t')]
        rows = first if whole else [line.split(sep) for line in tail if line.strip(sep + ' "\t')]

        def describe(last: str, have: int, want: int) -> str:
            return f"the Cq Results table stops at well {last}: that well has {have} of the {want} fluor rows the other wells have"

        return last_well_short(rows, first, names.index("well"), describe)

    @staticmethod
    def parse(data: bytes, source: str, run_id: str) -> pa.Table:
        """Canonical rows, one per well × fluor; NaN/N/A Cq → NaN; empty wells dropped."""
        head = utf8_head(data, source, max_lines=_HEADER_WITHIN + 1)
        fast = _parse_tail(head, source, run_id) if head is not None else None
        if fast is not None:
            return fast
        lines, encoding = decode_lines(data, source)
        return _parse_lines(lines, encoding, source, run_id)


def _find_header(lines: list[str], source: str) -> tuple[int, str]:
    """(index, separator) of the Cq Results header among the first lines."""
    header = require_header(lines, _header_separator, within=_HEADER_WITHIN, source=source,
                            missing="no Cq Results table header found",
                            expected="a header row like ',Well,Fluor,Target,Content,Sample,…,Cq'")
    sep = _header_separator(lines[header])
    assert sep is not None
    return header, sep


def _parse_tail(head: Utf8Head, source: str, run_id: str) -> pa.Table | None:
    """The common case without decoding the table: header found in the head, rows read from bytes."""
    try:
        header, sep = _find_header(head.lines, source)
    except ParseError:
        return None  # the whole-file reading reports it, after its own checks of the text
    block = read_tail(head, header, sep, source=source)
    if block is None:
        return None
    return _table(block, head.lines, header, sep, head.encoding, source, run_id)


def _parse_lines(lines: list[str], encoding: str, source: str, run_id: str) -> pa.Table:
    header, sep = _find_header(lines, source)
    block = read_block(lines, header, None, sep, source=source)
    return _table(block, lines, header, sep, encoding, source, run_id)


def _table(block: Block, lines: list[str], header: int, sep: str, encoding: str, source: str, run_id: str) -> pa.Table:
    """Canonical rows from the Cq Results table (``lines`` above ``header`` give the run metadata)."""
    # Vietnamese/French-locale Windows writes ';' lists and decimal commas.
    decimal = "," if sep == ";" else "."
    require_rows(block, "Cq Results", source=source)
    cq_idx = block.find(*CQ_COLUMNS)
    if cq_idx is None:
        raise ParseError(
            "no Cq column in the table header",
            source=source,
            line=block.header_line,
            field="Cq",
            expected="a column named Cq",
        )
    ct = ct_array(block.columns[cq_idx], lines=block.lines, source=source, field=block.header[cq_idx], decimal=decimal)
    sample = block.get_or_nulls("Sample", "Sample Name")
    role = instrument_roles(block.get_or_nulls("Content"), sample)
    block, ct, (sample, role) = drop_empty_wells(block, ct, sample, role, source=source, field="Sample")
    require_rows(block, "Cq Results", source=source)
    wells = normalise_wells(block.require("Well"), plate=384, source=source, lines=block.lines)
    fluor = block.get("Fluor")
    target = block.get("Target")
    if target is None:
        target = fluor
    elif fluor is not None:
        target = pc.coalesce(target, fluor)
    return canonical_table(
        run_id=run_id,
        source=source,
        line=block.lines,
        metadata={**_run_metadata(lines, header, sep, encoding), "format": "cfx"},
        well=wells,
        sample_id=sample,
        role=role,
        target=target,
        dye=fluor,
        ct=ct,
    )
