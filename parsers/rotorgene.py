"""Qiagen Rotor-Gene Q "Excel Analysed Data Export" (CSV).

    Excel Analysed Data Export;;;;;
    Copyright (c) 2013 QIAGEN GmbH. All Rights Reserved.;;;;;
    File;Brilliant III Ultra Fast SYBR Green 2021-03-16 (1).rex;;;;
    Date;3/16/2021;;;;
    Time;10:34:20 AM;;;;
    ;;;;;
    Quantitative analysis of Cycling A.Green (28S);;;;;
    ;;;;;
    No.;Color;Name;Type;Ct;Ct Comment;Given Conc (Copies);...
    25;5775359;NK1;Unknown;7.49;;;;;

Quirks: UTF-8 with a BOM; ``;`` separators (the software follows the Windows
list separator, so an English PC writes ``,``) and every line padded with
separators to the widest section; one ``Quantitative analysis of <channel>
(<assay>)`` section per channel/page. The Rotor-Gene is a rotor of tubes, not a
plate: ``well`` is null and ``No.`` (the tube position) only orders rows. The
assay name in parentheses is the target; without one the channel name is.
The dye is the channel colour as the instrument names it (``Green``, ``Yellow``,
``Orange``, ``Red``, ``Crimson``). Decimals may be points or commas whatever
the separator, so both are accepted.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa

from parsers.errors import ParseError
from parsers.completeness import head_and_tail, mid_line, unterminated
from parsers.registry import register
from parsers.tabular import drop_empty_wells, instrument_roles, preamble_pairs
from parsers.text import (
    canonical_table,
    clean_metadata,
    ct_array,
    decode_lines,
    head_text,
    lines_starting_with,
    read_block,
    read_sections,
    require_rows,
)

_SECTION_WORDS = "quantitative analysis of"
_HEADER = re.compile(r"^\s*\"?No\.\"?\s*(?P<sep>[;,\t])\s*\"?Colou?r\"?\s*(?P=sep)\s*\"?Name", re.IGNORECASE)

def _section_title(line: str) -> tuple[str, str | None] | None:
    """``Quantitative analysis of Cycling A.Green (28S);;;`` → (``Cycling A.Green``, ``28S``)."""
    title = line.strip(" \t;,\"")
    if not title.lower().startswith(_SECTION_WORDS):
        return None
    rest = title[len(_SECTION_WORDS) :].strip()
    assay = None
    if rest.endswith(")") and "(" in rest:
        rest, _, assay = rest[:-1].partition("(")
        rest, assay = rest.strip(), assay.strip() or None
    return (rest, assay) if rest else None


def _is_blank(line: str) -> bool:
    return not line.strip(" \t;,\"")

def _dye(channel: str) -> str:
    """``Cycling A.Green`` → ``Green``: the Rotor-Gene names channels by colour."""
    name = re.sub(r"^(cycling|melt)\s+", "", channel.strip(), flags=re.IGNORECASE)
    return re.sub(r"^[A-Z]\.", "", name).strip() or channel

def _sections(lines: list[str], source: str) -> list[tuple[int, int, str, str | None]]:
    """(header index, stop, channel, assay) for each analysis section."""
    found = []
    # Only a line starting with a padding character (or empty) can be blank, and only one starting
    # with padding or q/Q can be a title: the first byte of every line, from Arrow's buffers, picks
    # the few lines Python then looks at (data rows start with the tube number).
    maybe = lines_starting_with(lines, b' \t;,"qQ', empty=True)
    titles = [int(i) for i in maybe if _section_title(lines[i])]
    if not titles:
        raise ParseError(
            "no 'Quantitative analysis of …' section found",
            source=source,
            line=1,
            expected="a Rotor-Gene Q Excel Analysed Data Export with quantitation results",
        )
    blanks = np.array([i for i in maybe if _is_blank(lines[i])], dtype=np.int64)
    blank_set = set(blanks.tolist())

    def first_in(indices: np.ndarray, start: int, end: int) -> int:
        """The first of ``indices`` in [start, end), else ``end``."""
        at = np.searchsorted(indices, start)
        return int(indices[at]) if at < len(indices) and indices[at] < end else end

    def first_filled(start: int, end: int) -> int:
        """The first line in [start, end) that is not blank, else ``end``."""
        while start < end and start in blank_set:
            start += 1
        return start

    for n, title in enumerate(titles):
        channel, assay = _section_title(lines[title])  # type: ignore[misc]
        end = titles[n + 1] if n + 1 < len(titles) else len(lines)
        header = first_filled(title + 1, end)  # skip the blank lines under the title
        if header >= end or not _HEADER.match(lines[header][:300]):
            raise ParseError(
                f"the section '{lines[title].strip(' ;,')}' has no results table",
                source=source,
                line=title + 1,
                expected="a header 'No.;Color;Name;Type;Ct;…' below the section title",
            )
        found.append((header, first_in(blanks, header + 1, end), channel, assay))  # the table ends at a blank line
    return found

def _run_metadata(lines: list[str], first_section: int, encoding: str) -> dict[str, str]:
    keys = {"file": "plate", "operator": "operator", "machine serial no.": "serial", "machine serial no": "serial",
            "run start": "run_start", "run finish": "run_end", "software version": "software"}
    found: dict[str, str] = {}
    pairs: list[tuple[str, str | None]] = [("encoding", encoding)]
    for key, fields in preamble_pairs(lines[:first_section]):
        found[key] = fields[1]
        if key in keys:
            pairs.append((keys[key], fields[1]))
    if "date" in found:
        pairs.append(("run_start", f"{found['date']} {found.get('time', '')}".strip()))
    pairs.append(("instrument", "Qiagen Rotor-Gene Q"))
    return clean_metadata(pairs)

def _parse_all_sections(lines: list[str], sections: list[tuple[int, int, str, str | None]], meta: dict[str, str],
                        source: str, run_id: str) -> pa.Table | None:
    """Every section in one columnar pass when they share one header; None otherwise.

    Also None on any damage or when no tube is named: the section-by-section
    reading then reports it exactly as it always has (first damaged section first).
    """
    sep = _HEADER.match(lines[sections[0][0]][:300])["sep"]  # type: ignore[index]
    read = read_sections(lines, [(header, stop) for header, stop, *_ in sections], sep, source=source)
    if read is None:
        return None
    block, _ = read  # sections are found again from the kept rows' line numbers
    try:
        ct = ct_array(block.require("Ct"), lines=block.lines, source=source, field="Ct", decimal=",")
        name = block.get_or_nulls("Name")
        role = instrument_roles(block.get_or_nulls("Type"), name)
        block, ct, (name, role) = drop_empty_wells(block, ct, name, role, source=source, field="Name")
    except ParseError:
        return None
    if block.num_rows == 0:
        return None
    index = pa.array(np.searchsorted(np.array([h + 2 for h, *_ in sections]), block.lines, side="right") - 1)
    return canonical_table(
        run_id=run_id,
        source=source,
        line=block.lines,
        metadata=meta,
        sample_id=name,
        role=role,
        target=pa.array([assay or channel for *_, channel, assay in sections], pa.string()).take(index),
        dye=pa.array([_dye(channel) for *_, channel, _assay in sections], pa.string()).take(index),
        ct=ct,
    )


@register(
    "rotorgene",
    description="Qiagen Rotor-Gene Q Excel Analysed Data Export (CSV)",
    instruments=("Rotor-Gene Q", "Rotor-Gene 6000"),
)
class RotorGeneExport:
    """Rotor-Gene Q analysed-data CSV: one ``Quantitative analysis of …`` section per channel."""

    @staticmethod
    def sniff(head: bytes, name: str) -> float:
        """The export title or a quantitative-analysis section with the No./Color/Name header."""
        text = head_text(head)
        first = text.lstrip()[:200].lower()
        if first.startswith("excel analysed data export") or first.startswith("\"excel analysed data export"):
            return 0.96
        if re.search(r"(?im)^\"?Quantitative analysis of ", text) and re.search(r"(?im)^\"?No\.\"?[;,\t]\"?Colou?r", text):
            return 0.9
        return 0.0

    @staticmethod
    def complete(data: bytes) -> str | None:
        """Whole when the last line is as wide as the export's padding, or (unpadded) ends with a line end.

        The software pads every line with separators to one width and leaves the
        last line without its CRLF (the real export does), so the last line is
        whole when it has as many separators as the first line and ends with
        one (its last field empty, as padding leaves it); a cut anywhere in it
        loses some. A real last row with its last column filled and no CRLF
        would wait and be quarantined: safe, not silent. Unpadded exports (a ``,`` PC) must end with a line
        end. Undetectable: a cut exactly at a line end (tubes per section are
        not stated).
        """
        head, tail, _ = head_and_tail(data)
        if not head or not tail:
            return unterminated(data)
        first = head[0]
        sep = ";" if first.count(";") >= first.count(",") else ","
        width = first.count(sep)
        if width and first.endswith(sep):
            last = tail[-1]
            if last.count(sep) < width:
                reason = "the file ends in the middle of a line" if mid_line(data) else "the last line is cut"
                return (f"{reason}: its last line has {last.count(sep) + 1} of the {width + 1} fields every line of "
                        f"the export has (it stops at '…{last.rstrip(sep)[-40:]}')")
            if mid_line(data) and not last.endswith(sep):
                return (f"the file ends in the middle of a line: its last field is cut or the line end is missing "
                        f"(it stops at '…{last[-40:]}')")
            return None
        return unterminated(data)

    @staticmethod
    def parse(data: bytes, source: str, run_id: str) -> pa.Table:
        """Canonical rows, one per tube × section; empty Ct → NaN; well is null (rotor)."""
        lines, encoding = decode_lines(data, source)
        sections = _sections(lines, source)
        meta = {**_run_metadata(lines, sections[0][0], encoding), "format": "rotorgene"}
        fast = _parse_all_sections(lines, sections, meta, source, run_id)
        if fast is not None:
            return fast
        tables = []
        for header, stop, channel, assay in sections:
            sep = _HEADER.match(lines[header][:300])["sep"]  # type: ignore[index]
            block = read_block(lines, header, stop, sep, source=source)
            require_rows(block, f"'{channel}' section", source=source)
            ct = ct_array(block.require("Ct"), lines=block.lines, source=source, field="Ct", decimal=",")
            name = block.get_or_nulls("Name")
            role = instrument_roles(block.get_or_nulls("Type"), name)
            block, ct, (name, role) = drop_empty_wells(block, ct, name, role, source=source, field="Name")
            if block.num_rows == 0:
                continue
            tables.append(
                canonical_table(
                    run_id=run_id,
                    source=source,
                    line=block.lines,
                    metadata=meta,
                    sample_id=name,
                    role=role,
                    target=assay or channel,
                    dye=_dye(channel),
                    ct=ct,
                )
            )
        if not tables:
            raise ParseError("no tube in the export has a sample name or a Ct", source=source,
                             line=sections[0][0] + 1, expected="at least one named tube")
        return pa.concat_tables(tables)

