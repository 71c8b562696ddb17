"""Applied Biosystems SDS 2.x (7900HT / 7300 / 7500 v1) results and RQ exports.

SDS 2.x writes CR-only line ends (it was ported from the Mac) and tab-separated
fields, a ``key<TAB>value`` header, then the table:

    SDS 2.3 RQ Results	1.2
    Filename	Testscreen analys all.sdm
    Run DateTime	Fri May 15 17:10:28 BST 2009
    ...
    #	Plate	Pos	Flag	Sample	Detector	Task	Ct	Delta Ct	...
    1	Control	A1	Passed	Sample01	Gene1	Endogenous Control	11.463166	...
    <blank line>
    PlateID	NAP	LPL ...        <- plate trailer, ignored

``Detector`` is the target name; ``Ct`` is ``Undetermined`` when nothing
amplified; rows are ragged (SDS drops trailing empty fields). ``Flag`` =
``Flagged`` means the software's QC flagged the well (outlier replicate, bad
baseline…): such rows carry call ``invalid`` so nothing is signed from them
without a person looking. Older "SDS 2.x Results" (absolute quantification)
exports name the well column ``Well`` instead of ``Pos`` and the sample column
``Sample Name``; both are read.
"""

from __future__ import annotations

import re

import pyarrow as pa

from parsers.errors import ParseError
from parsers.completeness import head_and_tail, mid_line, unterminated
from parsers.registry import register
from parsers.tabular import drop_empty_wells, header_line, instrument_roles, invalid_if_marked, require_header
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
    split_fields,
    table_stop,
    utf8_head,
)

_TITLE = re.compile(r"^\s*SDS\s+(?P<version>\d+(?:\.\d+)*)\s+(?P<kind>[^\t]*)", re.IGNORECASE)


def _is_header(line: str) -> bool:
    if "\t" not in line:
        return False
    fields = {f.lower() for f in split_fields(line, "\t")}
    return "detector" in fields and "ct" in fields and bool(fields & {"pos", "well"})


def _run_metadata(lines: list[str], header: int, encoding: str) -> dict[str, str]:
    pairs: list[tuple[str, str | None]] = [("encoding", encoding)]
    title = _TITLE.match(lines[0]) if lines else None
    if title:
        pairs.append(("software", f"SDS {title['version']}"))
        pairs.append(("instrument", "Applied Biosystems 7900HT (SDS " + title["version"] + ")"))
    # "Assay Type" (RQ Study, Absolute Quantification) is the analysis mode, not a kit: not reported.
    keys = {"run datetime": "run_start", "operator": "operator", "filename": "plate",
            "instrument serial number": "serial", "instrument": "instrument"}
    for line in lines[1:header]:
        fields = split_fields(line, "\t")
        if len(fields) >= 2 and fields[0].lower() in keys:
            pairs.append((keys[fields[0].lower()], fields[1]))
    meta = clean_metadata(pairs)
    meta.setdefault("instrument", "Applied Biosystems SDS 2.x")
    return meta


@register(
    "sds",
    description="Applied Biosystems SDS 2.x (7900HT) results / RQ results text export",
    instruments=("7900HT", "7300", "7500 (SDS v1.x)"),
)
class SdsResults:
    """SDS 2.x text export: CR-only lines, ``Detector`` targets, ``Flag`` QC column."""

    @staticmethod
    def sniff(head: bytes, name: str) -> float:
        """The ``SDS 2.x … Results`` title line, or a tab header with Detector and Ct."""
        lines = head_lines(head)
        if lines and _TITLE.match(lines[0]) and "result" in lines[0].lower():
            return 0.96
        if header_line(lines, _is_header, within=200) is not None:
            return 0.8
        return 0.0

    @staticmethod
    def complete(data: bytes) -> str | None:
        """Whole when the file ends with a line end, or ends inside the plate trailer with its padding intact.

        SDS 2.x writes the results table, a blank line, then a plate trailer
        (``PlateID …``) whose lines are padded with tabs to one width, and may
        leave the trailer's last line without its CR (the real SDS 2.3 export
        does). So an unterminated last line is whole only after the table's
        closing blank line and as wide as the trailer's first line. Undetectable:
        a cut exactly at a line end (SDS states no row count; the trailer is
        optional in older exports).
        """
        if mid_line(data) is None:
            return None
        head, tail, whole = head_and_tail(data)
        lines = tail
        blank = next((i for i in range(len(lines) - 1, -1, -1) if not lines[i].strip()), None)
        if blank is not None and blank < len(lines) - 1:
            trailer = lines[blank + 1 :]
            width = trailer[0].count("\t")
            if len(trailer) > 1 and width > 0 and trailer[-1].count("\t") == width and trailer[-1].strip():
                if not whole or header_line(head, _is_header, within=_HEADER_WITHIN) is not None:
                    return None
        return unterminated(data)

    @staticmethod
    def parse(data: bytes, source: str, run_id: str) -> pa.Table:
        """Canonical rows of the results table; ``Undetermined`` → NaN; Flagged → call invalid."""
        head = utf8_head(data, source, max_lines=_HEADER_WITHIN + 1)
        fast = _parse_head(head, source, run_id) if head is not None else None
        if fast is not None:
            return fast
        lines, encoding = decode_lines(data, source)
        header = _find_header(lines, source)
        block = read_block(lines, header, table_stop(lines, header), "\t", source=source)
        return _table(block, lines, header, encoding, source, run_id)


#: Lines searched for the table header.
_HEADER_WITHIN = 500


def _find_header(lines: list[str], source: str) -> int:
    return require_header(lines, _is_header, within=_HEADER_WITHIN, source=source,
                          missing="no results table header found",
                          expected="a tab-separated header with Pos (or Well), Sample, Detector, Task and Ct")


def _parse_head(head: Utf8Head, source: str, run_id: str) -> pa.Table | None:
    """The common case without decoding the table: header in the head, rows from the bytes to the first empty line."""
    try:
        header = _find_header(head.lines, source)
    except ParseError:
        return None  # the whole-file reading reports it, after its own checks of the text
    block = read_tail(head, header, "\t", source=source, until_blank=True)
    if block is None:
        return None
    return _table(block, head.lines, header, head.encoding, source, run_id)


def _table(block: Block, lines: list[str], header: int, encoding: str, source: str, run_id: str) -> pa.Table:
    """Canonical rows of the results table (``lines`` above ``header`` give the run metadata)."""
    require_rows(block, "results", source=source)
    ct = ct_array(block.require("Ct"), lines=block.lines, source=source, field="Ct")
    sample = block.require("Sample", "Sample Name")
    role = instrument_roles(block.get_or_nulls("Task"), sample)
    block, ct, (sample, role) = drop_empty_wells(block, ct, sample, role, source=source, field="Sample")
    require_rows(block, "results", source=source)
    wells = normalise_wells(block.require("Pos", "Well"), plate=384, source=source, lines=block.lines,
                            field=block.header[block.find("Pos", "Well")])  # type: ignore[index]
    call = invalid_if_marked(block.get("Omit"), "true", invalid_if_marked(block.get("Flag"), "flagged"))
    return canonical_table(
        run_id=run_id,
        source=source,
        line=block.lines,
        metadata={**_run_metadata(lines, header, encoding), "format": "sds"},
        well=wells,
        sample_id=sample,
        role=role,
        target=block.require("Detector", "Detector Name"),
        dye=block.get("Reporter"),
        ct=ct,
        call=call,
    )
