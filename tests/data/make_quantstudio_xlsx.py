"""Write the project's own QuantStudio Design & Analysis workbooks into tests/data.

``quantstudio_xlsx_da_pools.xlsx`` is a pooled SARS-CoV-2 run's full export;
``refused/quantstudio_xlsx_primary_analysis.xlsx`` is the "Primary Analysis" plugin's
export of a run: one ``Results`` sheet whose table (row 25) has only ``Well
Position, Task, Reporter, Cq, Threshold, Baseline Start, Baseline End``: no
sample and no target names, the layout ketqua must refuse with a clear reason.

A clone without ../shared still needs an .xlsx to test the quantstudio-xlsx
parser on, so this script lays one out as Design & Analysis 2.x exports a
QuantStudio 5 run: every sheet opens with ``Key | Value`` rows and a blank row,
``Sample Setup`` lists the plate, ``Results`` holds one row per well × target
with a running ``Well`` number beside ``Well Position``, ``Omit`` as the text
``FALSE``/``TRUE``, ``Cq`` as a number cell or the text ``UNDETERMINED``, an
unused position listed without a sample, and a short ``Amplification Data``
sheet the parser must pass over.

The output is byte-for-byte reproducible (fixed document dates and zip member
times), so re-running it changes nothing unless the content is edited:

    python tests/data/make_quantstudio_xlsx.py
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

import openpyxl
from openpyxl.writer.excel import ExcelWriter

OUT = Path(__file__).resolve().parent / "quantstudio_xlsx_da_pools.xlsx"
#: In refused/: a layout ketqua must refuse is no corpus file (every file directly in tests/data must parse).
PRIMARY_OUT = OUT.parent / "refused" / "quantstudio_xlsx_primary_analysis.xlsx"
#: When the (fictional) run was exported; also every zip member's time, so the bytes never change.
EXPORTED = dt.datetime(2022, 5, 6, 16, 42, 5)

HEADER = [
    ("File Name", r"D:\QS5 runs\2022-05-06 SARS2 pools plate 03.eds"),
    ("Comment", None),
    ("Operator", "Võ Thị Mai"),
    ("Barcode", "PL-220506-03"),
    ("Instrument Type", "QuantStudio™ 5 System"),
    ("Block Type", "96-Well 0.2-mL Block"),
    ("Instrument Name", "QS5-XN2"),
    ("Instrument Serial Number", "272511087"),
    ("Heated Cover Serial Number", "272511087HC"),
    ("Block Serial Number", "272511087B96"),
    ("Run Start Date/Time", "2022-05-06 01:58:31 PM ICT"),
    ("Run End Date/Time", "2022-05-06 03:11:47 PM ICT"),
    ("Run Duration", "73 minutes 16 seconds"),
    ("Sample Volume", "20.0"),
    ("Cover Temperature", "105.0"),
    ("Passive Reference", "ROX"),
    ("PCR Stage/Step Number", "Stage 2 Step 2"),
    ("Quantification Cycle Method", "Ct"),
    ("Analysis Date/Time", "2022-05-06 04:40:12 PM ICT"),
    ("Software Name and Version", "Design & Analysis Software 2.6.0"),
    ("Software name", "Design & Analysis"),
    ("Software version", "2.6.0"),
    ("Plugin Name and Version", "Primary Analysis v1.6.1"),
    ("Exported On", "2022-05-06 04:42:05 PM ICT"),
]

# (well number, position, omit, sample, target, task, reporter, Cq: float, "UNDETERMINED" or None)
TARGETS = (("ORF1ab", "FAM"), ("N gene", "VIC"), ("RNase P", "CY5"))
RESULTS = [
    (1, "A1", "FALSE", "P001", (23.418, 24.102, 26.733)),
    (2, "A2", "FALSE", "P002", ("UNDETERMINED", "UNDETERMINED", 25.981)),
    (3, "A3", "FALSE", "P003", (36.905, "UNDETERMINED", 26.240)),
    (4, "A4", "TRUE", "P004", ("UNDETERMINED", "UNDETERMINED", "UNDETERMINED")),
    (5, "A5", "FALSE", "220506-0112", (18.07, 18.644, 27.05)),
    (6, "A6", "FALSE", None, (None, None, None)),  # position set up but left empty
    (95, "H11", "FALSE", "PC", (27.356, 27.911, "UNDETERMINED")),
    (96, "H12", "FALSE", "NTC", ("UNDETERMINED", "UNDETERMINED", "UNDETERMINED")),
]
RESULT_COLUMNS = ["Well", "Well Position", "Omit", "Sample", "Target", "Task", "Reporter", "Quencher", "Amp Status",
                  "Amp Score", "Cq Confidence", "Cq", "Cq Mean", "Cq SD", "Auto Threshold", "Threshold",
                  "Auto Baseline", "Baseline Start", "Baseline End"]


def _task(sample: str | None) -> str:
    return {"PC": "POSITIVE_CONTROL", "NTC": "NTC"}.get(sample or "", "UNKNOWN")


def _sheet(book: openpyxl.Workbook, title: str, header: list[str], rows: list[list[object]]) -> None:
    ws = book.create_sheet(title)
    for key, value in HEADER:
        ws.append([key, value])
    ws.append([])
    ws.append(header)
    for row in rows:
        ws.append(row)


def _result_rows() -> list[list[object]]:
    rows: list[list[object]] = []
    for number, position, omit, sample, cqs in RESULTS:
        for (target, reporter), cq in zip(TARGETS, cqs):
            amplified = isinstance(cq, float)
            status = None if cq is None else ("AMP" if amplified else "NO_AMP")
            rows.append([
                number, position, omit, sample, target, _task(sample), reporter, "NFQ-MGB" if reporter != "CY5" else "QSY",
                status, None if cq is None else (1.284 if amplified else 0.0), None if cq is None else (0.981 if amplified else 0.0),
                cq, cq if amplified else None, None, "TRUE", 0.15 if reporter != "CY5" else 0.08, "TRUE",
                3, 15 if amplified else 39,
            ])
    return rows


def build() -> bytes:
    """The workbook's bytes, identical on every run."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    book.properties.creator = "QuantStudio Design & Analysis Software"
    book.properties.created = EXPORTED
    book.properties.modified = EXPORTED
    _sheet(book, "Sample Setup", ["Well", "Well Position", "Sample", "Sample Color", "Target", "Task", "Reporter",
                                  "Quencher"],
           [[n, pos, sample, None, target, _task(sample), reporter, "NFQ-MGB" if reporter != "CY5" else "QSY"]
            for n, pos, _omit, sample, _cq in RESULTS for target, reporter in TARGETS])
    _sheet(book, "Amplification Data", ["Well", "Well Position", "Cycle Number", "Target", "Rn", "dRn"],
           [[1, "A1", cycle, "ORF1ab", round(0.92 + 0.004 * cycle + (0.0 if cycle < 19 else 0.21 * (cycle - 18)), 4),
             round(0.004 * cycle + (0.0 if cycle < 19 else 0.21 * (cycle - 18)), 4)] for cycle in range(1, 41)])
    _sheet(book, "Results", RESULT_COLUMNS, _result_rows())
    return _reproducible(book)


#: The Primary Analysis plugin's Key | Value rows (23 of them, so the table header is row 25).
PRIMARY_HEADER = [(k, v) for k, v in HEADER if k not in ("Software name", "Software version")][:21] + [
    ("Exported By", "vothimai"), ("Exported On", "2022-05-06 04:42:05 PM ICT")]
PRIMARY_COLUMNS = ["Well Position", "Task", "Reporter", "Cq", "Threshold", "Baseline Start", "Baseline End"]


def build_primary_analysis() -> bytes:
    """A Primary Analysis export's bytes: Key | Value rows, a blank row, the table at row 25."""
    book = openpyxl.Workbook()
    book.remove(book.active)
    book.properties.creator = "QuantStudio Design & Analysis Software"
    book.properties.created = EXPORTED
    book.properties.modified = EXPORTED
    ws = book.create_sheet("Results")
    for key, value in PRIMARY_HEADER:
        ws.append([key, value])
    ws.append([])
    ws.append(PRIMARY_COLUMNS)
    for _n, position, _omit, sample, cqs in RESULTS:
        for (_target, reporter), cq in zip(TARGETS, cqs):
            if cq is not None:
                ws.append([position, _task(sample), reporter, cq, 0.15, 3, 15 if isinstance(cq, float) else 39])
    return _reproducible(book)


def _reproducible(book: openpyxl.Workbook) -> bytes:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        ExcelWriter(book, archive).save()  # unlike Workbook.save, keeps properties.modified as set
    # Re-pack with fixed member times: zipfile stamps each member with the clock otherwise.
    out = io.BytesIO()
    with zipfile.ZipFile(raw) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=EXPORTED.timetuple()[:6])
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o644 << 16
            dst.writestr(fixed, src.read(info.filename))
    return out.getvalue()


def main() -> None:
    OUT.write_bytes(build())
    PRIMARY_OUT.write_bytes(build_primary_analysis())
    print(f"wrote {OUT} and {PRIMARY_OUT}")


if __name__ == "__main__":
    main()
