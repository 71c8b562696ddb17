"""QuantStudio Design & Analysis / Diomni ``.xlsx`` exports (QuantStudio 1-7 Pro).

Every sheet starts with ``Key | Value`` rows (File Name, Operator, Instrument
Type, Instrument Serial Number, Run Start Date/Time, Software name/version,
Assay name, …), a blank row, then a table. The results sheet (``Results`` in
Design & Analysis, ``Primary_result`` in Diomni) has ``Well`` = ``A01``,
``Sample``, ``Target``, ``Task``, ``Reporter`` and ``Cq`` (a number, or the text
``UNDETERMINED``). Presence/absence runs add a ``Target Call`` sheet with the
software's ``Call`` (``POSITIVE``/``NEGATIVE``) per well × target; it is joined
onto the results as the instrument's call. ``line`` is the spreadsheet row
number of the results sheet. Diomni misspells ``Run End Data/Time``; both
spellings are read.

Experiment types read: whatever analysis module wrote the results sheet
(Standard Curve, Relative Quantification, Presence/Absence, Genotyping, whose
Results sheet lists each allele as a target ``<assay>-Allele 1``, Melt), as
long as its table has Well (or Well Position), Sample, Target and Cq. The
"Primary Analysis" plugin's own export (one ``Results`` sheet: ``Well Position,
Task, Reporter, Cq, Threshold, Baseline Start, Baseline End``, header at row 25)
has no sample and no target names: no well can be matched to a pool, so it is
refused at its header row naming the missing columns.

A specimen well without a sample name is left out and reported in the run's
``notes`` (see :mod:`parsers.notes`) when it has a Cq or a task (``UNKNOWN``);
the plate's named wells are read. A workbook whose wells all lack names is
refused at the first such row.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from parsers.errors import ParseError
from parsers.completeness import zip_incomplete
from parsers.notes import first_unnamed_line, unnamed_wells, with_notes
from parsers.registry import register
from parsers.tabular import instrument_roles, invalid_if_marked
from parsers.text import (
    canonical_table,
    clean_metadata,
    ct_array,
    normalise_calls,
    normalise_wells,
    well_from_index,
)

_CQ = ("cq", "ct", "crt", "c\u0442")
_RESULT_SHEETS = ("results", "primary_result", "result", "amplification results")
#: A spreadsheet larger than this is not an instrument export (protects the worker's memory).
MAX_ROWS = 200_000


def _cell_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float):
        return repr(value)
    text = str(value).strip()
    return text or None


#: Rows above a sheet's table (Key | Value lines) never exceed this.
_HEADER_SEARCH_ROWS = 100


def _is_table_header(cells: list[str | None]) -> bool:
    names = {c.lower() for c in cells if c}
    return bool(names & {"well", "well position"}) and bool(names & set(_CQ) or "target" in names or "sample" in names)


def _is_wanted(cells: list[str | None]) -> bool:
    """Results or call tables are read in full; amplification/raw-data sheets (tens of thousands of rows) are not."""
    names = {c.lower() for c in cells if c}
    return bool(names & set(_CQ)) or "call" in names


class _Sheet:
    """Key/value rows and the table of one worksheet, as text cells."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.meta: dict[str, str] = {}
        self.header: list[str] = []
        self.header_row = 0
        self.rows: list[tuple[Any, ...]] = []

    @classmethod
    def read(cls, ws: Any, source: str) -> _Sheet:
        """Read the Key | Value rows and, for a results/call table, its rows (streaming, read-only)."""
        sheet = cls(ws.title)
        rows = ws.iter_rows(values_only=True)
        for i, row in enumerate(rows):
            if i >= _HEADER_SEARCH_ROWS:
                return sheet
            cells = [_cell_text(c) for c in row]
            if _is_table_header(cells):
                sheet.header = [c or "" for c in cells]
                sheet.header_row = i + 1
                break
            if cells and cells[0] and len(cells) > 1 and cells[1] is not None:
                sheet.meta.setdefault(cells[0].lower(), cells[1])
        else:
            return sheet
        if not _is_wanted(sheet.header):
            return sheet
        for row in rows:
            sheet.rows.append(row)
            if len(sheet.rows) > MAX_ROWS:
                raise ParseError(f"sheet '{ws.title}' has more than {MAX_ROWS} rows", source=source,
                                 expected="an instrument export of one plate")
        while sheet.rows and all(c is None for c in sheet.rows[-1]):
            sheet.rows.pop()
        return sheet

    def find(self, *names: str) -> int | None:
        """Index of the first header cell equal (case-insensitively) to one of ``names``."""
        lowered = [h.strip().lower() for h in self.header]
        for name in names:
            if name.lower() in lowered:
                return lowered.index(name.lower())
        return None

    def column(self, idx: int) -> pa.Array:
        """One table column as strings (numbers written back as Python reprs, empty → null)."""
        return pa.array([_cell_text(r[idx]) if idx < len(r) else None for r in self.rows], type=pa.string())


def _load(data: bytes, source: str) -> list[_Sheet]:
    try:
        import openpyxl
    except ImportError as exc:  # pragma: no cover - a runtime dependency
        raise ParseError("reading .xlsx needs openpyxl (pip install openpyxl)", source=source) from exc
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # noqa: BLE001 - zip/XML errors of a damaged workbook
        raise ParseError(f"the workbook cannot be opened ({type(exc).__name__})", source=source, line=1,
                         expected="an .xlsx file saved by QuantStudio Design & Analysis or Diomni") from None
    try:
        return [_Sheet.read(ws, source) for ws in book.worksheets]
    except ParseError:
        raise
    except Exception as exc:  # noqa: BLE001 - damaged sheet XML inside a valid zip
        raise ParseError(f"a worksheet is damaged ({type(exc).__name__})", source=source,
                         expected="an .xlsx file saved by the instrument software") from None
    finally:
        book.close()


def _results_sheet(sheets: list[_Sheet], source: str) -> _Sheet:
    candidates = [s for s in sheets if s.header and s.find(*_CQ) is not None and s.find("Sample", "Sample Name") is not None]
    for preferred in _RESULT_SHEETS:
        for sheet in candidates:
            if sheet.name.strip().lower() == preferred:
                return sheet
    for sheet in candidates:
        if sheet.find("Task") is not None:
            return sheet
    if candidates:
        return candidates[0]
    nameless = [s for s in sheets if s.header and s.find(*_CQ) is not None]
    if nameless:
        # Design & Analysis "Primary Analysis" exports: Well Position, Task, Reporter, Cq, Threshold, Baseline.
        sheet = nameless[0]
        missing = [n for n, alts in (("Sample", ("Sample", "Sample Name")), ("Target", ("Target", "Target Name")))
                   if sheet.find(*alts) is None]
        plugin = sheet.meta.get("plugin name and version")
        layout = f" (a {plugin} export)" if plugin else ""
        raise ParseError(
            f"the table of sheet '{sheet.name}'{layout} has no {' and no '.join(missing)} column: its wells carry"
            f" Cq values but cannot be matched to a specimen or pool (columns: {', '.join(h for h in sheet.header if h)})",
            source=source,
            line=sheet.header_row,
            field=missing[0],
            expected="a Results export that includes Sample and Target columns (export from the analysis"
            " module, e.g. Standard Curve or Presence/Absence, with the plate's sample names set)",
        )
    raise ParseError(
        "no results table with Well, Sample and Cq columns",
        source=source,
        line=1,
        expected=f"a sheet named Results or Primary_result with that table (sheets found: {', '.join(s.name for s in sheets) or 'none'})",
    )


def _metadata(sheet: _Sheet) -> dict[str, str]:
    m = sheet.meta
    software = " ".join(v for v in (m.get("software name"), m.get("software version")) if v) or None
    return clean_metadata(
        [
            ("encoding", "utf-8"),  # xlsx parts are UTF-8 XML
            ("instrument", m.get("instrument type")),
            ("serial", m.get("instrument serial number") or m.get("instrument name")),
            ("operator", m.get("operator") or m.get("user name")),
            ("software", software),
            ("run_start", m.get("run start date/time") or m.get("run start data/time")),
            ("run_end", m.get("run end date/time") or m.get("run end data/time")),
            ("assay", m.get("assay name")),
            ("plate", m.get("barcode") or m.get("experiment name")),
        ]
    )


def _calls(sheets: list[_Sheet], results: _Sheet, keys: pa.Array) -> pa.Array | None:
    """The Target Call sheet's call for each results row, matched on well + target."""
    for sheet in sheets:
        if sheet is results or not sheet.header:
            continue
        call_idx, well_idx, target_idx = sheet.find("Call"), sheet.find("Well"), sheet.find("Target", "Target Name")
        if call_idx is None or well_idx is None or target_idx is None or not sheet.rows:
            continue
        their_keys = pc.binary_join_element_wise(
            pc.fill_null(sheet.column(well_idx), ""), pc.fill_null(sheet.column(target_idx), ""), "\x1f"
        )
        idx = pc.index_in(keys, value_set=their_keys)
        return normalise_calls(pc.take(sheet.column(call_idx), idx))
    return None


@register(
    "quantstudio-xlsx",
    description="QuantStudio Design & Analysis / Diomni results workbook (.xlsx)",
    instruments=("QuantStudio 1/3/5/6/7 Pro", "QuantStudio 5 Dx"),
)
class QuantStudioWorkbook:
    """``.xlsx`` export of Design & Analysis / Diomni: Key|Value rows, then the results table."""

    @staticmethod
    def sniff(head: bytes, name: str) -> float:
        """An Office Open XML spreadsheet (zip with ``xl/`` parts); the only .xlsx family ketqua reads."""
        if not head.startswith(b"PK\x03\x04"):
            return 0.0
        if b"xl/worksheets/" in head or b"xl/workbook.xml" in head:
            return 0.8
        if b"[Content_Types].xml" in head and name.lower().endswith(".xlsx"):
            return 0.6
        return 0.0

    @staticmethod
    def complete(data: bytes) -> str | None:
        """Whole when the zip directory (written last) is at the end and lists the workbook part.

        Undetectable: none (every cut loses the zip directory).
        """
        why = zip_incomplete(data, "workbook")
        if why is not None:
            return why
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = set(archive.namelist())
        except (zipfile.BadZipFile, OSError, ValueError):
            return "the workbook's zip directory cannot be read (the file is cut or damaged)"
        if "xl/workbook.xml" not in names:
            return "the workbook has no xl/workbook.xml part (the file is cut or damaged)"
        return None

    @staticmethod
    def parse(data: bytes, source: str, run_id: str) -> pa.Table:
        """Canonical rows from the results sheet; UNDETERMINED → NaN; Target Call joined as call."""
        if not data.startswith(b"PK"):
            raise ParseError("not an .xlsx workbook (no zip signature)", source=source, line=1,
                             expected="an .xlsx file saved by QuantStudio Design & Analysis or Diomni")
        try:
            sheets = _load(data, source)
        except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
            raise ParseError(f"the workbook is damaged ({exc})", source=source, line=1) from None
        sheet = _results_sheet(sheets, source)
        if not sheet.rows:
            raise ParseError(f"the sheet '{sheet.name}' has a header but no rows", source=source,
                             line=sheet.header_row, expected="one row per well and target")
        lines = np.arange(sheet.header_row + 1, sheet.header_row + 1 + len(sheet.rows), dtype=np.int32)
        # Design & Analysis writes a running "Well" number plus "Well Position"; Diomni only "Well" = A01.
        well_idx = sheet.find("Well Position", "Well")
        cq_idx = sheet.find(*_CQ)
        sample_idx = sheet.find("Sample", "Sample Name")
        target_idx = sheet.find("Target", "Target Name")
        if well_idx is None or target_idx is None:
            missing = "Well" if well_idx is None else "Target"
            raise ParseError(f"column '{missing}' is missing from sheet '{sheet.name}'", source=source,
                             line=sheet.header_row, field=missing, expected="Well, Sample, Target and Cq columns")
        well_raw = sheet.column(well_idx)
        nonblank = pc.is_valid(well_raw).to_numpy(zero_copy_only=False)
        cq_field = sheet.header[cq_idx]  # type: ignore[index]
        ct = ct_array(sheet.column(cq_idx), lines=lines, source=source, field=cq_field)  # type: ignore[arg-type]
        sample = sheet.column(sample_idx)  # type: ignore[arg-type]
        task_idx = sheet.find("Task", "Sample type", "Sample Type")
        task = sheet.column(task_idx) if task_idx is not None else pa.nulls(len(sheet.rows), pa.string())
        role = instrument_roles(task, sample)
        target = sheet.column(target_idx)
        # Rows without a well are notes under the table. A specimen row without a sample name is left out,
        # and noted when it was set up (a task) or has a Ct: the plate's named wells are still decided.
        named, notes = unnamed_wells(sample, role, ct, task=task, wells=well_raw, targets=target, lines=lines,
                                     rows=nonblank)
        keep = nonblank & named
        reporter_idx = sheet.find("Reporter", "Dye")
        dye = sheet.column(reporter_idx) if reporter_idx is not None else None
        omit_idx = sheet.find("Omit")
        mask = pa.array(keep)
        sample_all, role_all, lines_all = sample, role, lines
        well_raw, sample, role, target, ct, lines = (
            well_raw.filter(mask), sample.filter(mask), role.filter(mask), target.filter(mask), ct[keep], lines[keep]
        )
        if len(lines) == 0:
            first = first_unnamed_line(sample_all, role_all, lines_all)
            raise ParseError(f"the sheet '{sheet.name}' holds no well with a sample name", source=source,
                             line=first or sheet.header_row, field="Sample",
                             expected="a sample name (specimen or pool id) for the plate's specimen wells")
        dye = dye.filter(mask) if dye is not None else None
        meta = with_notes({**_metadata(sheet), "format": "quantstudio-xlsx"}, notes)
        plate = 96 if "96" in sheet.meta.get("block type", "") else 384
        if pc.all(pc.match_substring_regex(well_raw, r"^\d{1,6}$")).as_py():
            index = pc.cast(well_raw, pa.int64()).to_numpy(zero_copy_only=False)
            wells = well_from_index(index, plate=plate, source=source, lines=lines, field="Well")
        else:
            wells = normalise_wells(well_raw, plate=plate, source=source, lines=lines, field="Well")
        keys = pc.binary_join_element_wise(well_raw, pc.fill_null(target, ""), "\x1f")
        call = _calls(sheets, sheet, keys)
        call_idx = sheet.find("Call")
        if call_idx is not None:
            call = normalise_calls(sheet.column(call_idx).filter(mask))
        if omit_idx is not None:
            call = invalid_if_marked(sheet.column(omit_idx).filter(mask), "true", call)
        return canonical_table(
            run_id=run_id, source=source, line=lines, metadata=meta, well=wells, sample_id=sample,
            role=role, target=target, dye=dye, ct=ct, call=call,
        )
