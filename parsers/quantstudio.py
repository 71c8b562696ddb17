"""Applied Biosystems QuantStudio / 7500 / ViiA 7 / StepOne text exports.

Layout, as the software writes it (tab-separated):

    * Instrument Type = QuantStudio(TM) 7 Flex System     <- "* key = value" header
    * Instrument Serial Number = 278875421
    ...
    [Sample Setup]        (optional sections, any order)
    [Amplification Data]
    [Results]
    Well  Well Position  Omit  Sample Name  Target Name  Task  Reporter  ...  CT  ...
    1     A1             false Standard 1   3'UTR        STANDARD VIC     ... 16.484
    <blank line>
    Analysis Type = Singleplex           <- results-metadata block, ignored

Quirks handled: the Ct column is ``CT`` (QuantStudio), ``Cт`` with a Cyrillic te
(7500 / StepOne software v2), ``Crt`` (relative-threshold analysis) or ``Cq``;
``Undetermined`` for no amplification; repeated column names (``Target Name``
and ``Task`` appear twice; the first wins); ragged rows; thousands separators
in Quantity; 7500 exports give ``Well`` as ``A1`` and no ``Well Position``;
QuantStudio gives ``Well`` as a running number plus ``Well Position``.
Omitted wells (``Omit`` = true) get call ``invalid``: the analyst excluded them.

Experiment types read: every type whose [Results] table has one row per well
and target with a Ct column (Standard Curve, Relative Standard Curve,
Comparative Ct, Presence/Absence, Multiplex, Melt Curve runs' amplification
results), and Genotyping, whose [Results] has one row per well with
``Allele1 Ct`` and ``Allele2 Ct``: it becomes two rows per well, targets
``<SNP Assay Name>-Allele 1`` / ``-Allele 2``, as the Design & Analysis
workbook lists the same run (the genotype call is not a target call and is not
read). A [Results] table with neither is refused at its header line.

A specimen well (task UNKNOWN or blank) without a sample name is left out and
reported in the run's ``notes`` (see :mod:`parsers.notes`) when it has a Ct or
a task; the plate's named wells are read. Only a row with no name, no task and
no Ct (an unused position) is passed over silently. Controls may be unnamed.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from parsers.errors import ParseError
from parsers.completeness import head_and_tail, last_well_short, unterminated
from parsers.notes import unnamed_wells, with_notes
from parsers.registry import register
from parsers.tabular import instrument_roles, invalid_if_marked
from parsers.text import (
    Block,
    Utf8Head,
    canonical_table,
    clean_metadata,
    ct_array,
    decode,
    head_text,
    normalise_wells,
    read_block,
    read_tail,
    require_rows,
    skip_blank,
    split_lines,
    table_stop,
    utf8_head,
    well_from_index,
)

_SECTION = re.compile(r"^\s*\[(?P<name>[^\]]+)\]\s*$")
#: Ct column names across software versions, most specific first (never "Ct Mean").
CT_COLUMNS = ("CT", "Ct", "Crt", "Cq", "C_T", "CT (Threshold)")


def _key_value(line: str) -> tuple[str, str] | None:
    """``* key = value`` → (key, value); partition, not a regex, so a damaged long line stays linear."""
    if not line.startswith("*") or "=" not in line:
        return None
    key, _, value = line[1:].partition("=")
    return key.strip(), value.strip()


def _blank_or_key_value(line: str) -> bool:
    return not line.strip() or _key_value(line) is not None


def _header(lines: list[str]) -> dict[str, str]:
    meta: dict[str, str] = {}
    for line in lines:
        kv = _key_value(line)
        if kv:
            meta.setdefault(kv[0].lower(), kv[1])
        elif _SECTION.match(line[:200]):
            break
    return meta


def _plate_size(header: dict[str, str]) -> int:
    block = header.get("block type", "") + " " + header.get("instrument type", "")
    if "384" in block:
        return 384
    if "96" in block or "7500" in block or "stepone" in block.lower():
        return 96
    return 384


def _run_metadata(header: dict[str, str], encoding: str) -> dict[str, str]:
    def real(key: str) -> str | None:
        value = header.get(key)
        # The software writes NA/Not Started for fields it does not know.
        if value is None or value.strip().upper() in {"", "NA", "N/A", "NOT STARTED"}:
            return None
        return value

    software = real("software name and version") or real("software version")
    return clean_metadata(
        [
            ("encoding", encoding),
            ("instrument", real("instrument type")),
            ("serial", real("instrument serial number") or real("instrument name")),
            ("operator", real("user name") or real("operator")),
            ("software", software),
            ("run_start", real("experiment run start time") or real("run start time")),
            ("run_end", real("experiment run end time") or real("run end time")),
            # "Experiment Type" (Standard Curve, Presence/Absence…) is an analysis mode, not the
            # assay kit, so it is not reported as "assay"; the assay is chosen from target names.
            ("plate", real("experiment barcode") or real("experiment name")),
        ]
    )


def _results_span(lines: list[str], source: str) -> tuple[int, int]:
    """(header index, stop index) of the results table."""
    sections = [
        (i, m["name"].strip().lower()) for i, line in enumerate(lines) if line[:1] == "[" and (m := _SECTION.match(line[:200]))
    ]
    if sections:
        starts = [i for i, name in sections if name == "results"]
        if not starts:
            names = ", ".join(f"[{n}]" for _, n in sections)
            raise ParseError(
                f"the export has no [Results] section (found {names})",
                source=source,
                line=sections[0][0] + 1,
                expected="an export that includes the Results tab",
            )
        start = starts[0]
        following = [i for i, _ in sections if i > start]
        end = following[0] if following else len(lines)
        header = skip_blank(lines, start + 1, end)
    else:
        # Results only, without a section title: the first tab line after the "* " header.
        header = skip_blank(lines, 0, blank=_blank_or_key_value)
        end = len(lines)
    if header >= end or "\t" not in lines[header]:
        raise ParseError(
            "the [Results] section is empty",
            source=source,
            line=min(header, len(lines)) if header >= end else header + 1,
            expected="a tab-separated table starting with a 'Well' header",
        )
    # The table ends at the first blank line: a "key = value" results-metadata block may follow.
    return header, table_stop(lines, header, end)


def _wells(block: Block, plate: int, source: str) -> pa.Array:
    position = block.get("Well Position")
    if position is not None:
        return normalise_wells(position, plate=plate, source=source, lines=block.lines, field="Well Position")
    well = block.require("Well")
    is_number = pc.all(pc.match_substring_regex(pc.fill_null(well, ""), r"^\s*\d{1,6}\s*$")).as_py()
    if is_number:
        index = pc.cast(well, pa.int64()).to_numpy(zero_copy_only=False)
        return well_from_index(index, plate=plate, source=source, lines=block.lines, field="Well")
    return normalise_wells(well, plate=plate, source=source, lines=block.lines, field="Well")


def parse_results(text: str, encoding: str, source: str, run_id: str, *, format_name: str) -> pa.Table:
    """Parse decoded QuantStudio/7500/ViiA 7 text into the canonical table (``format_name`` goes in the metadata)."""
    lines = split_lines(text)
    header = _header(lines)
    start, stop = _results_span(lines, source)
    block = read_block(lines, start, stop, "\t", source=source)
    return _results_table(block, header, encoding, source, run_id, format_name)


#: Lines of a file's head searched for the [Results] table before the whole file is decoded.
_HEAD_LINES = 400


def _parse_head(head: Utf8Head, source: str, run_id: str, format_name: str) -> pa.Table | None:
    """The common case without decoding the table: ``[Results]`` and its header in the head, rows read from bytes.

    None (the whole file is then decoded and read as before) when the table
    starts further down, or is anything but plain.
    """
    lines = head.lines
    sections = [
        (i, m["name"].strip().lower()) for i, line in enumerate(lines) if line[:1] == "[" and (m := _SECTION.match(line[:200]))
    ]
    starts = [i for i, name in sections if name == "results"]
    if not starts:
        return None
    following = [i for i, _ in sections if i > starts[0]]
    end = following[0] if following else len(lines)
    first = skip_blank(lines, starts[0] + 1, end)
    if first >= end or first >= len(lines) or "\t" not in lines[first]:
        return None
    block = read_tail(head, first, "\t", source=source, until_blank=True)
    if block is None:
        return None
    return _results_table(block, _header(lines), head.encoding, source, run_id, format_name)


def _results_table(block: Block, header: dict[str, str], encoding: str, source: str, run_id: str,
                   format_name: str) -> pa.Table:
    """Canonical rows from the [Results] table; ``header`` is the ``* key = value`` run header."""
    require_rows(block, "[Results]", source=source)
    ct_idx = block.find(*CT_COLUMNS)
    if ct_idx is None:
        if block.find(*_ALLELE_CT[0]) is not None and block.find(*_ALLELE_CT[1]) is not None:
            return _genotyping_table(block, header, encoding, source, run_id, format_name)
        raise ParseError(
            "no Ct column in the [Results] table",
            source=source,
            line=block.header_line,
            field="CT",
            expected="a column named CT, Cт, Crt or Cq (or Allele1 Ct and Allele2 Ct of a genotyping run)",
        )
    ct = ct_array(block.columns[ct_idx], lines=block.lines, source=source, field=block.header[ct_idx])
    sample = block.require("Sample Name", "Sample")
    target = block.require("Target Name", "Detector", "Target")
    return _canonical(block, header, encoding, source, run_id, format_name, sample=sample, target=target, ct=ct,
                      dye=block.get("Reporter", "Reporter Dye", "Dye"))


#: A genotyping run's [Results]: one row per well with both alleles' Ct.
_ALLELE_CT = (("Allele1 Ct", "Allele 1 Ct"), ("Allele2 Ct", "Allele 2 Ct"))


def _genotyping_table(block: Block, header: dict[str, str], encoding: str, source: str, run_id: str,
                      format_name: str) -> pa.Table:
    """A genotyping [Results] table as two rows per well, as the Design & Analysis workbook lists it.

    Targets are ``<SNP Assay Name>-Allele 1`` and ``-Allele 2`` (the workbook's
    names), each with its allele's Ct; both rows keep the well's file line.
    The genotype call (``Homozygous Allele 1/Allele 1``) is no target call and
    is not read; the reporter dyes are in [Sample Setup] and are left empty.
    """
    cts = [ct_array(block.columns[idx], lines=block.lines, source=source, field=block.header[idx])
           for idx in (block.find(*names) for names in _ALLELE_CT)]  # type: ignore[index]
    assay = block.require("SNP Assay Name", "Assay Name", "SNP Assay")
    n = block.num_rows
    pairs = np.repeat(np.arange(n), 2)  # row i of the file → rows 2i (allele 1) and 2i+1 (allele 2)
    take = pa.array(pairs)
    doubled = Block(block.header, [c.take(take) for c in block.columns], block.lines[pairs], block.header_line,
                    block.source)
    suffix = pa.array(np.tile(np.array(["Allele 1", "Allele 2"], dtype=object), n), type=pa.string())
    target = pc.binary_join_element_wise(pc.fill_null(assay.take(take), ""), suffix, "-")
    ct = np.column_stack(cts).ravel().astype(np.float32)
    return _canonical(doubled, header, encoding, source, run_id, format_name,
                      sample=doubled.require("Sample Name", "Sample"), target=target, ct=ct, dye=None)


def _canonical(block: Block, header: dict[str, str], encoding: str, source: str, run_id: str, format_name: str, *,
               sample: pa.Array, target: pa.Array, ct: np.ndarray, dye: pa.Array | None) -> pa.Table:
    """The canonical table of the rows with a sample name or a control role; unnamed specimen wells are noted."""
    task = block.get_or_nulls("Task")
    # A Task the software added later (e.g. "Accuracy Control") is not a person's sample.
    role = instrument_roles(task, sample)
    plate = _plate_size(header)
    position = block.get("Well Position")
    named, notes = unnamed_wells(sample, role, ct, task=task, targets=target, lines=block.lines,
                                 wells=position if position is not None else block.require("Well"))
    if not named.any():
        raise ParseError(
            "no well of the [Results] table has a sample name",
            source=source,
            line=int(block.lines[0]),
            field="Sample Name",
            expected="a sample name (specimen or pool id) for the plate's specimen wells",
        )
    if not named.all():
        mask = pa.array(named)
        block, sample, role, target, ct = block.filter(named), sample.filter(mask), role.filter(mask), target.filter(mask), ct[named]
        dye = dye.filter(mask) if dye is not None else None
    wells = _wells(block, plate, source)
    call = invalid_if_marked(block.get("Omit"), "true")
    meta = _run_metadata(header, encoding)
    meta["format"] = format_name
    return canonical_table(
        run_id=run_id,
        source=source,
        line=block.lines,
        metadata=with_notes(meta, notes),
        well=wells,
        sample_id=sample,
        role=role,
        target=target,
        dye=dye,
        ct=ct,
        call=call,
    )


def _results_header(lines: list[str]) -> int | None:
    """Index of the [Results] table header among ``lines`` (results-only files: the first tab line after the header)."""
    sections = [i for i, line in enumerate(lines) if line[:1] == "[" and (m := _SECTION.match(line[:200]))
                and m["name"].strip().lower() == "results"]
    start = sections[0] + 1 if sections else 0
    blank = _is_blank_line if sections else _blank_or_key_value
    header = skip_blank(lines, start, blank=blank)
    if header >= len(lines) or "\t" not in lines[header]:
        return None
    return header


def _is_blank_line(line: str) -> bool:
    return not line.strip()


def results_complete(data: bytes, table: str = "[Results]") -> str | None:
    """The completeness test of a QuantStudio-family text export (shared with its variants)."""
    why = unterminated(data)
    if why is not None:
        return why
    head, tail, whole = head_and_tail(data)
    header = _results_header(head)
    if header is None:
        return None  # no table where the parser looks: it reports that itself
    names = [_norm(n) for n in head[header].split("\t")]
    well = next((names.index(n) for n in ("well position", "well") if n in names), None)
    if well is None:
        return None
    stop = table_stop(head, header)
    first = [line.split("\t") for line in head[header + 1 : stop]]
    if whole:
        if stop < len(head):
            return None  # the table is closed by a blank line: what follows is the results metadata
        rows = first
    else:
        if any(not line.strip() or line[:1] == "[" for line in tail):
            return None
        rows = [line.split("\t") for line in tail]
    plate = _plate_size(_header(head))

    def describe(last: str, have: int, want: int) -> str:
        return (f"the {table} table stops at well {last} of a {plate}-well plate: that well has {have} of the "
                f"{want} target rows the other wells have")

    return last_well_short(rows, first, well, describe)


def _norm(name: str) -> str:
    return " ".join(name.strip().strip('"').lower().split())


@register(
    "quantstudio",
    description="Applied Biosystems QuantStudio / 7500 / ViiA 7 / StepOne text export",
    instruments=("QuantStudio 3/5/6/7/12K Flex", "7500 / 7500 Fast (software v2)", "ViiA 7", "StepOne"),
)
class QuantStudioText:
    """``* key = value`` header then ``[Results]`` (tab-separated) from Applied Biosystems software."""

    @staticmethod
    def sniff(head: bytes, name: str) -> float:
        """Confident when the ``* key = value`` header or a ``[Results]`` table is present."""
        text = head_text(head)
        first = text.lstrip()[:4096]
        star_keys = len(re.findall(r"(?m)^\* [^=\r\n]+ = ", first))
        has_results = re.search(r"(?m)^\[Results\]\s*$", text) is not None
        abi_words = re.search(r"(?m)^\* (Instrument Type|Experiment (File )?Name|Passive Reference|Block Type) = ", text)
        if star_keys >= 2 and abi_words:
            return 0.95
        if has_results and re.search(r"(?m)^Well\t.*Sample Name\t", text):
            return 0.9
        return 0.0

    @staticmethod
    def complete(data: bytes) -> str | None:
        """Whole when the file ends with a line end and the [Results] table's last well has all its target rows.

        The software writes every line with CRLF, so a file ending mid-line is
        cut. Results are listed well by well, each well with its targets, so a
        last well with fewer target rows than the first (when all other whole
        wells have as many) is cut inside that well. Undetectable: a cut exactly
        between two wells' rows, or inside the results-metadata block after the
        table, leaves a shorter but well-formed export.
        """
        return results_complete(data)

    @staticmethod
    def parse(data: bytes, source: str, run_id: str) -> pa.Table:
        """Canonical rows of the [Results] table; NaN Ct for Undetermined."""
        head = utf8_head(data, source, max_lines=_HEAD_LINES)
        fast = _parse_head(head, source, run_id, "quantstudio") if head is not None else None
        if fast is not None:
            return fast
        text, encoding = decode(data, source)
        return parse_results(text, encoding, source, run_id, format_name="quantstudio")


