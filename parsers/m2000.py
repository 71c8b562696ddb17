"""Abbott m2000rt results log (``Results.log.NNN``).

A UTF-8 (BOM) text report in ``=====``-ruled blocks, tab-separated, keys padded
with spaces:

    Plate Information            Plate Name <TAB> 123456789, Time Stamp AD Start, AD Serial Num, ...
    Assay [...] Data Reduction   "Target Dye [FAM] parameters:" DF/DR lines, then a per-well table
                                 Location Well CN Ct FCN MR ...; the same for "Control Dye [VIC]"
    Assay Calibration            ignored
    Result Information           Location Well Status SampleId SampleType ... ReportedResult ...

``CN`` (cycle number) is the value the m2000 reports (it is the
``InstrumentResponse``/``ICResponse`` of the result table); ``Ct`` is the raw
threshold crossing before the data-reduction rules, which may still be set
where CN is ``-1.00`` (a curve the rules rejected). So CN is the Ct used here,
and ``-1.00`` means no Ct. Each well gives one row per dye table: the target
dye (target ``Target``) and the internal-control dye (target ``Control``), as
the report names them. The instrument's own interpretation (``Not detected``,
``767 Copies / mL``, ``< 40 Copies / mL``/``Detected``) becomes the call of the
target row; a well whose Status is not ``Valid`` or that has an error code is
``invalid`` on every row.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from parsers.errors import ParseError
from parsers.schema import Role
from parsers.completeness import text_lines, unterminated
from parsers.registry import register
from parsers.tabular import drop_empty_wells, invalid_where
from parsers.text import (
    Block,
    canonical_table,
    clean_metadata,
    ct_array,
    decode_lines,
    head_text,
    normalise_calls,
    normalise_roles,
    normalise_wells,
    read_block,
    require_rows,
    table_stop,
)

_DYE = re.compile(r"^\s*(?P<kind>Target|Control)\s+Dye\s*\[(?P<dye>[^\]]*)\]\s*parameters", re.IGNORECASE)
_TABLE_HEADER = re.compile(r"^\s*Location\tWell\t", re.IGNORECASE)


def _ends_table(line: str) -> bool:
    s = line.strip()
    return not s or s.startswith("=") or bool(_DYE.match(line))


def _table_after(lines: list[str], start: int, source: str, what: str) -> Block:
    header = start
    while header < len(lines) and not _TABLE_HEADER.match(lines[header]):
        if header > start and (lines[header].strip().startswith("=") or _DYE.match(lines[header])):
            break
        header += 1
    if header >= len(lines) or not _TABLE_HEADER.match(lines[header]):
        raise ParseError(f"the {what} has no per-well table", source=source, line=start + 1,
                         expected="a 'Location, Well, …' table header; the log may be truncated")
    block = read_block(lines, header, table_stop(lines, header, ends=_ends_table), "\t", source=source)
    require_rows(block, what, source=source)
    return block


def _plate_info(lines: list[str], encoding: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in lines[:80]:
        if "\t" in line:
            key, _, rest = line.partition("\t")
            values.setdefault(key.strip().lower(), rest.split("\t")[0].strip())
    software = values.get("ad sw version")
    return clean_metadata(
        [
            ("encoding", encoding),
            ("instrument", "Abbott m2000rt"),
            ("plate", values.get("plate name") or values.get("run name")),
            ("run_start", values.get("time stamp ad start")),
            ("run_end", values.get("time stamp ad end")),
            ("serial", values.get("ad serial num")),
            ("operator", values.get("operator id ad") or values.get("operator id release")),
            ("software", f"m2000rt {software}" if software else None),
            ("assay", values.get("ad app name") or values.get("ad app id")),
        ]
    )


def _calls(results: Block) -> pa.Array:
    """The instrument's interpretation of the target, in DESIGN.md words (null if none).

    Words first (``Not detected``, ``Invalid``, ``Detected``: ReportedResult, then
    Interpretation); a reported quantity (``767 Copies / mL``, ``< 40 Copies / mL``)
    means the target was detected.
    """
    reported = results.get_or_nulls("ReportedResult")
    by_words = pc.coalesce(normalise_calls(reported), normalise_calls(results.get_or_nulls("Interpretation")))
    quantity = pc.match_substring_regex(pc.fill_null(reported, ""), r"\d")
    call = pc.coalesce(by_words, pc.if_else(quantity, pa.scalar("detected"), pa.scalar(None, pa.string())))
    return invalid_where(_invalid(results), call)


def _invalid(results: Block) -> pa.Array:
    status = pc.utf8_lower(pc.fill_null(results.get_or_nulls("Status"), "valid"))
    error = pc.fill_null(results.get_or_nulls("ErrorCode"), "")
    return pc.or_(pc.not_equal(status, "valid"), pc.greater(pc.utf8_length(error), 0))


def _roles(results: Block) -> pa.Array:
    kind = pc.utf8_lower(pc.fill_null(results.get_or_nulls("SampleType"), ""))
    by_control = normalise_roles(results.get_or_nulls("ControlName"))
    # Abbott control kits name their tubes like HIV_NEG / HIV_LOPOS / HIV_HIPOS.
    sample_id = pc.utf8_upper(pc.fill_null(results.get_or_nulls("SampleId"), ""))
    by_id = pc.if_else(pc.match_substring(sample_id, "NEG"), pa.scalar(Role.NC.value),
                       pc.if_else(pc.match_substring(sample_id, "POS"), pa.scalar(Role.PC.value), pa.scalar(Role.UNKNOWN.value)))
    control_role = pc.if_else(pc.equal(by_control, Role.UNKNOWN.value), by_id, by_control)
    calibrator = pc.match_substring(kind, "calibrator")
    return pc.if_else(
        pc.equal(kind, "control"),
        control_role,
        pc.if_else(calibrator, pa.scalar(Role.STD.value),
                   pc.if_else(pc.is_in(kind, value_set=pa.array(["patient", "sample", ""])),
                              pa.scalar(Role.SAMPLE.value), pa.scalar(Role.UNKNOWN.value))),
    )


@register(
    "m2000",
    description="Abbott m2000rt results log",
    instruments=("Abbott m2000rt",),
)
class M2000ResultsLog:
    """Abbott m2000rt ``Results.log``: plate block, per-dye CN/Ct tables, result table."""

    @staticmethod
    def sniff(head: bytes, name: str) -> float:
        """Ruled 'Plate Information' block plus dye tables or the AD keys of the m2000rt."""
        text = head_text(head)
        if re.search(r"(?m)^\s*Plate Information\s*$", text[:2000]) and (
            _DYE.search(text) or re.search(r"(?m)^(AD Serial Num|Time Stamp AD Start)\b", text)
        ):
            return 0.95
        return 0.0

    @staticmethod
    def complete(data: bytes) -> str | None:
        """Whole when the log ends with a line end and its last block, Result Information, lists every well.

        The m2000rt writes the Result Information block last, one row per well
        of the dye tables above it, so the well count of the target-dye table is
        the count the results table must reach. Undetectable: none for the
        results (a cut after the last result row only loses trailing padding).
        """
        why = unterminated(data)
        if why is not None:
            return why
        lines = text_lines(data)
        title = next((i for i, line in enumerate(lines) if line.strip() == "Result Information"), None)
        if title is None:
            return "the log stops before its Result Information block (the sample ids)"
        header = next((i for i in range(title + 1, len(lines)) if _TABLE_HEADER.match(lines[i])), None)
        if header is None:
            return "the Result Information block stops before its table"
        results = [line.split("\t")[0].strip() for line in lines[header + 1 : table_stop(lines, header, ends=_ends_table)]]
        dye = next((i for i, line in enumerate(lines) if _DYE.match(line)), None)
        if dye is None:
            return None
        dye_header = next((i for i in range(dye + 1, title) if _TABLE_HEADER.match(lines[i])), None)
        if dye_header is None:
            return None
        wells = [line.split("\t")[0].strip() for line in lines[dye_header + 1 : table_stop(lines, dye_header, ends=_ends_table)]]
        if len(results) < len(wells):
            last = results[-1] if results else "its header"
            return (f"the Result Information table stops at well {last}: it lists {len(results)} of the "
                    f"{len(wells)} wells of the dye tables")
        return None

    @staticmethod
    def parse(data: bytes, source: str, run_id: str) -> pa.Table:
        """Canonical rows, one per well × dye table; CN ``-1.00`` → NaN."""
        lines, encoding = decode_lines(data, source)
        dye_starts = [(i, m) for i, line in enumerate(lines) if (m := _DYE.match(line))]
        if not dye_starts:
            raise ParseError("no 'Target Dye [...] parameters' block found", source=source, line=1,
                             expected="an Abbott m2000rt Results.log with data reduction information")
        result_title = next((i for i, line in enumerate(lines) if line.strip() == "Result Information"), None)
        if result_title is None:
            raise ParseError("no 'Result Information' block (sample ids) found", source=source, line=len(lines),
                             expected="a complete Results.log; the file may be truncated")
        results = _table_after(lines, result_title + 1, source, "Result Information block")
        result_wells = normalise_wells(results.require("Location"), plate=96, source=source, lines=results.lines,
                                       field="Location")
        sample_ids = results.require("SampleId")
        roles = _roles(results)
        calls = _calls(results)
        invalid = _invalid(results)
        meta = {**_plate_info(lines, encoding), "format": "m2000"}
        tables = []
        for start, match in dye_starts:
            kind = match["kind"].capitalize()
            block = _table_after(lines, start + 1, source, f"{kind} Dye [{match['dye']}] table")
            cn_field = "CN" if block.find("CN") is not None else "Ct"
            ct = ct_array(block.require(cn_field), lines=block.lines, source=source, field=cn_field)
            wells = normalise_wells(block.require("Location"), plate=96, source=source, lines=block.lines,
                                    field="Location")
            idx = pc.index_in(wells, value_set=result_wells)
            if idx.null_count:
                i = int(np.flatnonzero(pc.is_null(idx).to_numpy(zero_copy_only=False))[0])
                raise ParseError(f"well {wells[i].as_py()} has no entry in the Result Information block",
                                 source=source, line=int(block.lines[i]), field="Location",
                                 expected="every well of the dye tables listed under Result Information")
            sample = pc.take(sample_ids, idx)
            role = pc.take(roles, idx)
            if kind == "Target":
                call = pc.take(calls, idx)
            else:
                call = invalid_where(pc.take(invalid, idx))
            block, ct, (sample, role, wells, call) = drop_empty_wells(block, ct, sample, role, wells, call,
                                                                      source=source, field="SampleId")
            if block.num_rows == 0:
                continue
            tables.append(
                canonical_table(
                    run_id=run_id, source=source, line=block.lines, metadata=meta, well=wells,
                    sample_id=sample, role=role, target=kind, dye=match["dye"].strip() or None, ct=ct, call=call,
                )
            )
        if not tables:
            raise ParseError("no well in the log has a sample id", source=source, line=result_title + 1,
                             expected="at least one named well")
        return pa.concat_tables(tables)
