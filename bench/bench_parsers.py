"""Analyzer parsers vs the raw read of the same bytes.

For each tabular format, a 384-well × 4-target plate is written and its rows
repeated to the target size (100 MB in the full run). The baseline is
``pyarrow.csv.read_csv`` of those bytes with the options a person would pass
by hand (separator, header lines to skip, decimal mark) and nothing else: no
well/role/Ct normalisation, no checks. That is the floor a vectorised parser
can approach; the aim is a parser within 2× of it. ASTM and HL7 are record
protocols, not tables: their baseline splits the bytes into records and fields.

The candidate is the real entry point, ``parsers.parse_bytes`` with content
sniffing, so detection is in the measured time and a wrongly detected format
fails the figure.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

from bench import workloads
from bench.runner import Context, Figure, compare, module_exists, skipped, stage

MB = 1_000_000


def _arrow_reader(data: bytes, *, delimiter: str, skip_rows: int = 0, decimal: str = ".", header: bool = True, skip_invalid: bool = False) -> Callable[[], Any]:
    import pyarrow.csv as pacsv

    read = pacsv.ReadOptions(skip_rows=skip_rows, autogenerate_column_names=not header, block_size=1 << 24)
    parse = pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=(lambda row: "skip") if skip_invalid else None)
    convert = pacsv.ConvertOptions(decimal_point=decimal)
    return lambda: pacsv.read_csv(io.BytesIO(data), read_options=read, parse_options=parse, convert_options=convert)


def _record_splitter(data: bytes, *, records: bytes, fields: bytes) -> Callable[[], Any]:
    """The least a record-protocol reader must do: cut records, then fields."""

    def split() -> int:
        n = 0
        for rec in data.split(records):
            n += len(rec.split(fields))
        return n

    return split


#: In the full run a parser's input grows to 100 MB (25 MB for ASTM/HL7) unless one parse of it
#: would take longer than this: slow parsers are measured on less so the run stays near 10 minutes.
SECONDS_PER_CALL = 3.0


def _affordable_size(writer: Callable[..., bytes], plate: workloads.Plate, source: str, cap: int) -> int:
    """Bytes one parse can take in about SECONDS_PER_CALL, from a 2 MB probe (at most ``cap``)."""
    import parsers

    probe = writer(plate, target_bytes=2 * MB)
    parsers.parse_bytes(probe, source)  # the first parse of a format pays its imports: not a rate
    t = time.perf_counter()
    parsers.parse_bytes(probe, source)
    rate = len(probe) / max(time.perf_counter() - t, 1e-6)
    return int(min(cap, max(2 * MB, rate * SECONDS_PER_CALL)))


def _header_lines(data: bytes, marker: bytes) -> int:
    """Lines before and including ``marker`` (QuantStudio's ``[Results]``)."""
    at = data.find(marker)
    return data[: at + len(marker)].count(b"\n") + 1 if at >= 0 else 0


def _baseline_for(key: str, data: bytes) -> tuple[str, Callable[[], Any]]:
    if key == "quantstudio":
        return "pyarrow.csv.read_csv", _arrow_reader(data, delimiter="\t", skip_rows=_header_lines(data, b"[Results]"))
    if key == "cfx":
        return "pyarrow.csv.read_csv", _arrow_reader(data, delimiter=",")
    if key == "cfx-vi":
        return "pyarrow.csv.read_csv", _arrow_reader(data, delimiter=";", decimal=",")
    if key == "lightcycler":
        # Each channel block repeats the Experiment line; a hand-written read skips the odd rows.
        return "pyarrow.csv.read_csv", _arrow_reader(data, delimiter="\t", skip_rows=1, skip_invalid=True)
    if key == "sds":
        # CR-only line ends: Arrow's reader accepts a lone CR as a line end.
        return "pyarrow.csv.read_csv", _arrow_reader(data, delimiter="\t", skip_rows=data[: data.index(b"#\tPlate")].count(b"\r"))
    if key == "rotorgene":
        # Rotor-Gene pads every line to 14 fields, so the whole file reads as one table of strings.
        return "pyarrow.csv.read_csv", _arrow_reader(data, delimiter=";", skip_rows=6, header=False)
    if key == "astm":
        return "bytes.split records/fields", _record_splitter(data, records=b"\r", fields=b"|")
    if key == "hl7":
        return "bytes.split segments/fields", _record_splitter(data, records=b"\r", fields=b"|")
    raise KeyError(key)


@stage("parse", "analyzer parsers vs raw pyarrow.csv of the same bytes", requires=("parsers.text", "engine.demo"), order=10)
def run(ctx: Context) -> list[Figure]:
    """Both sides on one Arrow thread: the pipeline parses whole plates in a process pool, one
    plate per worker, so single-threaded speed is what counts (and throughput/core stays honest)."""
    import pyarrow as pa

    threads = pa.cpu_count()
    pa.set_cpu_count(1)
    try:
        return _run(ctx)
    finally:
        pa.set_cpu_count(threads)


def _run(ctx: Context) -> list[Figure]:
    import parsers

    size_tabular = int(ctx.scale(1 * MB, 100 * MB))
    size_records = int(ctx.scale(MB // 2, 25 * MB))
    repeats = ctx.heavy_repeats
    plate = ctx.cached("plate-384", lambda: workloads.bench_plate(ctx.seed))
    figures: list[Figure] = []
    for key, (writer, module) in workloads.WRITERS.items():
        name = key
        if not module_exists(module):
            figures.append(skipped(name, f"{module.replace('.', '/')}.py is not written yet", missing_module=module, unit="MB"))
            continue
        cap = size_records if key in ("astm", "hl7") else size_tabular
        source = f"bench-{key}.{'csv' if key in ('cfx', 'cfx-vi', 'rotorgene') else 'txt'}"
        size = cap if ctx.quick else _affordable_size(writer, plate, source, cap)
        data = writer(plate, target_bytes=size)
        # This first call is also the warm-up: it checks sniffing and counts rows.
        table = parsers.parse_bytes(data, source)
        fmt = parsers.detect(data, source)
        got = getattr(fmt.parser, "__module__", "")
        if got != module:
            raise AssertionError(f"{key}: sniffing chose format '{fmt.name}' ({got}), expected the parser in {module}")
        base_label, base = _baseline_for(key, data)
        fig = compare(
            name,
            unit="MB",
            amount=len(data) / MB,
            candidate=lambda data=data, source=source: parsers.parse_bytes(data, source),
            baseline=base,
            repeats=repeats,
            candidate_label=f"parsers.parse_bytes ({fmt.name})",
            baseline_label=base_label,
            aim="≤ 2× raw Arrow" if base_label.startswith("pyarrow") else None,
            warmup=False,
        )
        fig.extra["rows"] = table.num_rows
        fig.extra["mb"] = round(len(data) / MB, 1)
        if fig.candidate:
            fig.extra["rows_per_s"] = round(table.num_rows / fig.candidate.median)
        figures.append(fig)
        del data, table
    figures.append(_manifest_figure(ctx, plate, size_tabular // 2, repeats))
    return figures


def _manifest_figure(ctx: Context, plate: workloads.Plate, size: int, repeats: int) -> Figure:
    """Pool manifests (engine.intake.manifest.read_manifest: Arrow read + column-wise validation) vs the raw read."""
    if not module_exists("engine.intake.manifest"):
        return skipped("manifest", "engine/intake/manifest.py is not written yet", missing_module="engine.intake.manifest", unit="MB")
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from engine.intake.manifest import read_manifest

    data = workloads.manifest(plate, target_bytes=size)
    table = read_manifest(data, "bench-manifest.csv")
    header = data.removeprefix(b"\xef\xbb\xbf").split(b"\n", 1)[0].strip().decode()
    convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in header.split(",")})
    fig = compare(
        "manifest (pool manifest CSV, Vietnamese names)",
        unit="MB",
        amount=len(data) / MB,
        candidate=lambda: read_manifest(data, "bench-manifest.csv"),
        baseline=lambda: pacsv.read_csv(io.BytesIO(data), convert_options=convert),
        repeats=repeats,
        candidate_label="engine.intake.manifest.read_manifest",
        baseline_label="pyarrow.csv.read_csv (strings)",
        aim="≤ 2× raw Arrow",
    )
    fig.extra["rows"] = table.num_rows
    return fig
