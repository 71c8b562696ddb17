"""Roche LightCycler 480 / 96 "export in text format" of Abs Quant (Cp) results.

    Experiment: Demo Abs Quant with SYBR Green I_training Selected Filter: SYBR Green (483-533)
    Include	Color	Pos	Name	Cp	Concentration	Standard	Status
    True	255	A1	Sample 1	16.13	1.01E+05	0
    True	65280	A2	Sample 2			0

One block per detection channel: the software exports the selected filter
only, so a multiplex run arrives either as one file per channel or as one file
with several ``Experiment: … Selected Filter: …`` blocks; both are read. There
is no target column: the filter (``FAM (465-510)``) is the target as the
instrument names it and its first dye name is the dye. An empty ``Cp`` means
no amplification. Old LightCycler PCs write CR-only line ends and trailing
tabs. ``Include`` (``Inc``) = False marks a well the operator excluded (call
``invalid``); a non-zero ``Standard`` concentration marks a standard. Newer
exports have no role column, so controls are recognised by name (``no template
control``); older ones have ``Type`` (Unknown, Standard, Negative Control…).
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from parsers.errors import ParseError
from parsers.schema import Role
from parsers.completeness import mid_line, text_lines, unterminated
from parsers.registry import register
from parsers.tabular import instrument_roles, invalid_if_marked, require_header
from parsers.text import (
    Block,
    canonical_table,
    clean_metadata,
    ct_array,
    decode_lines,
    head_lines,
    lines_starting_with,
    normalise_wells,
    number_array,
    read_block,
    read_sections,
    require_rows,
    skip_blank,
)

_EXPERIMENT = re.compile(r"^[ \t]*Experiment:(?P<name>.*?)Selected Filter:(?P<filter>.*)$", re.IGNORECASE)


def _is_header(line: str) -> bool:
    """A tab header with Pos, Name and a Cp column, in any order.

    LightCycler 480 software 1.5 writes ``Include Color Pos Name Cp …``; older
    exports write ``Inc Pos Name Type CP Concentration Standard Status``.
    """
    if "\t" not in line[:400]:
        return False
    fields = {f.strip().lower() for f in line[:400].split("\t")}
    return {"pos", "name"} <= fields and bool(fields & {"cp", "cq", "ct"})


def _dye_of(filter_name: str) -> str:
    """``"VIC / HEX / Yellow555 (533-580)"`` → ``"VIC"``: the first dye the channel is named for."""
    bare = re.sub(r"\s*\(\d+\s*-\s*\d+\)\s*$", "", filter_name)
    return bare.split("/")[0].strip() or filter_name


def _blocks(lines: list[str], source: str) -> list[tuple[int, int, str | None, str | None]]:
    """(header index, stop, experiment, filter) for each channel block."""
    # The regex only on lines whose first byte (from Arrow's buffers) can start "Experiment:"
    # (space, tab, E or e): data rows start with True/False or a position.
    maybe = lines_starting_with(lines, b" \tEe")
    starts = [int(i) for i in maybe if _EXPERIMENT.match(lines[i])]
    blocks = []
    if not starts:
        header = require_header(lines, _is_header, within=50, source=source,
                                missing="no 'Experiment: … Selected Filter: …' line or Pos/Name/Cp header found",
                                expected="a LightCycler 480 text export of Abs Quant results")
        return [(header, len(lines), None, None)]
    for n, start in enumerate(starts):
        m = _EXPERIMENT.match(lines[start])
        assert m is not None
        stop = starts[n + 1] if n + 1 < len(starts) else len(lines)
        header = skip_blank(lines, start + 1, stop)
        if header >= stop or not _is_header(lines[header]):
            raise ParseError(
                f"the block for filter '{m['filter'].strip()}' has no results table",
                source=source,
                line=min(header, len(lines) - 1) + 1,
                expected="a header 'Include, Color, Pos, Name, Cp, …' after the Experiment line",
            )
        blocks.append((header, stop, m["name"].strip() or None, m["filter"].strip() or None))
    return blocks


def _columns(block: Block, source: str) -> tuple[np.ndarray, pa.Array, pa.Array, pa.Array | None, pa.Array]:
    """(Ct, name, role, call, well) of a block's rows."""
    cp_field = block.header[block.find("Cp", "Cq", "Ct") or 0]
    ct = ct_array(block.require("Cp", "Cq", "Ct"), lines=block.lines, source=source, field=cp_field)
    name = block.require("Name", "Sample Name")
    # Older exports type wells (Unknown / Standard / Negative Control…); newer ones have no
    # role column, so every well is a sample unless its name says it is a control.
    role = instrument_roles(block.get_or_nulls("Type", "Sample Type"), name)
    standard = block.get("Standard")
    if standard is not None:
        # A standard's concentration makes it a standard whatever its name or type says.
        concentration = number_array(standard)
        role = pc.if_else(pa.array(np.nan_to_num(concentration) > 0), pa.scalar(Role.STD.value), role)
    call = invalid_if_marked(block.get("Include", "Inc"), "false")
    well = normalise_wells(block.require("Pos"), plate=384, source=source, lines=block.lines, field="Pos")
    return ct, name, role, call, well


def _parse_all_blocks(lines: list[str], blocks: list[tuple[int, int, str | None, str | None]], meta: dict[str, str],
                      source: str, run_id: str) -> pa.Table | None:
    """Every channel block in one columnar pass when they share one header; None otherwise.

    Also None on any damage: the block-by-block reading then reports it exactly
    as it always has (first damaged block first).
    """
    if any(filter_name is None for *_, filter_name in blocks):
        return None
    read = read_sections(lines, [(header, stop) for header, stop, *_ in blocks], "\t", source=source)
    if read is None:
        return None
    block, section = read
    try:
        ct, name, role, call, well = _columns(block, source)
    except ParseError:
        return None
    index = pa.array(section)
    filters = [filter_name for *_, filter_name in blocks]
    return canonical_table(
        run_id=run_id,
        source=source,
        line=block.lines,
        metadata=meta,
        well=well,
        sample_id=name,
        role=role,
        target=pa.array(filters, pa.string()).take(index),
        dye=pa.array([_dye_of(f) for f in filters], pa.string()).take(index),  # type: ignore[arg-type]
        ct=ct,
        call=call,
    )


@register(
    "lightcycler",
    description="Roche LightCycler 480 / 96 Abs Quant text export",
    instruments=("LightCycler 480", "LightCycler 480 II", "LightCycler 96"),
)
class LightCyclerText:
    """LightCycler text export: ``Experiment: … Selected Filter: …`` then ``Pos Name Cp``."""

    @staticmethod
    def sniff(head: bytes, name: str) -> float:
        """The Experiment/Selected Filter line is the LightCycler's signature."""
        lines = head_lines(head)[:20]
        if lines and _EXPERIMENT.match(lines[0]):
            return 0.96
        if any(_is_header(line) for line in lines):
            return 0.8
        return 0.0

    @staticmethod
    def complete(data: bytes) -> str | None:
        """Whole when every channel block lists as many positions as the first, and the last line is whole.

        The software ends every line with CRLF, but a real single-channel 480
        export (HTqPCR's, likely trimmed of trailing whitespace) ends without
        it, so an unterminated last line of a single-block file is whole only
        when it is the plate's last position (H12 of 96, P24 of 384) with its
        Standard field written; a multi-channel file must end with a line end.
        Several channel blocks list the same positions, so a last block shorter
        than the first is cut. Undetectable: a cut exactly at a line end of a
        single-channel export, or exactly between two whole channel blocks
        (neither the plate size nor the channel count is stated).
        """
        lines = text_lines(data)
        # Experiment lines are a handful among millions of rows: a substring sieve, then the regex.
        blocks = [i for i, line in enumerate(lines) if ("ilter" in line or "ILTER" in line) and _EXPERIMENT.match(line)]
        header = next((i for i, line in enumerate(lines[:60]) if _is_header(line)), None)
        if header is None:
            return unterminated(data)
        names = [f.strip().lower() for f in lines[header].split("\t")]
        pos = names.index("pos")
        standard = names.index("standard") if "standard" in names else None

        def rows(start: int, stop: int) -> list[list[str]]:
            return [line.split("\t") for line in lines[start:stop] if line.strip() and not _is_header(line)]

        spans = [(b + 1, blocks[n + 1] if n + 1 < len(blocks) else len(lines)) for n, b in enumerate(blocks)]
        spans = spans or [(header + 1, len(lines))]
        first, last = rows(*spans[0]), rows(*spans[-1])
        if mid_line(data) is not None:
            row = last[-1] if last else []
            final = {"H12", "P24"}
            whole_row = (len(spans) == 1 and len(row) > pos and row[pos].strip().upper() in final
                         and (standard is None or (len(row) > standard and row[standard].strip() != "")))
            if not whole_row:
                return unterminated(data)
        if len(spans) > 1 and len(last) < len(first):
            m = _EXPERIMENT.match(lines[blocks[-1]])
            name = m["filter"].strip() if m else "?"
            if not last:
                return f"the block for filter '{name}' stops after its header: it lists none of the {len(first)} positions of the first block"
            where = last[-1][pos].strip() if len(last[-1]) > pos else "?"
            return (f"the block for filter '{name}' stops at position {where}: it lists "
                    f"{len(last)} of the {len(first)} positions of the first block")
        return None

    @staticmethod
    def parse(data: bytes, source: str, run_id: str) -> pa.Table:
        """Canonical rows, one per position × channel block; empty Cp → NaN."""
        lines, encoding = decode_lines(data, source)
        blocks = _blocks(lines, source)
        meta = clean_metadata(
            [
                ("format", "lightcycler"),
                ("encoding", encoding),
                ("instrument", "Roche LightCycler 480"),
                ("plate", next((b[2] for b in blocks if b[2]), None)),
            ]
        )
        fast = _parse_all_blocks(lines, blocks, meta, source, run_id)
        if fast is not None:
            return fast
        tables = []
        for header, stop, _experiment, filter_name in blocks:
            block = read_block(lines, header, stop, "\t", source=source)
            require_rows(block, f"'{filter_name or 'Cp'}'", source=source)
            ct, name, role, call, well = _columns(block, source)
            tables.append(
                canonical_table(
                    run_id=run_id,
                    source=source,
                    line=block.lines,
                    metadata=meta,
                    well=well,
                    sample_id=name,
                    role=role,
                    target=filter_name or "Cp",
                    dye=_dye_of(filter_name) if filter_name else None,
                    ct=ct,
                    call=call,
                )
            )
        return pa.concat_tables(tables)
