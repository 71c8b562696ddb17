"""Timing, repeats, the stage registry, and the three outputs (table, JSON, PNG).

Why the runner looks like this: the maintainers' machine is shared and noisy, so
absolute times drift from one run to the next while ratios measured side by side
do not. Every figure is therefore a *pair* — ketqua's code and a baseline doing
the same work — timed in the same process, interleaved repeat by repeat (the
order alternates so a slow spell hits both), and reported as a ratio.

A stage is a module ``bench/bench_<name>.py`` that decorates one function with
:func:`stage`; the runner discovers them (no list to keep). A stage whose code
under test is not written yet is reported as skipped, naming the missing module;
a stage that fails for any other reason is reported as an error with its
traceback. Neither stops the run.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.metadata
import importlib.util
import json
import math
import os
import pkgutil
import platform
import statistics
import sys
import tempfile
import textwrap
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = "ketqua/bench/1"
DEFAULT_OUT = Path(__file__).resolve().parent / "results"

#: Libraries whose versions change the figures; recorded with every run.
LIBRARIES = (
    "numpy",
    "numba",
    "pyarrow",
    "cryptography",
    "pyhanko",
    "asn1crypto",
    "reportlab",
    "segno",
    "zxing-cpp",
    "aiohttp",
    "uvloop",
    "cbor2",
    "matplotlib",
)


# --------------------------------------------------------------------------- figures


@dataclass
class Timing:
    """Wall and CPU seconds of each repeat of one measured callable."""

    label: str
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.wall) if self.wall else math.nan

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.label,
            "wall_s": _summary(self.wall),
            "cpu_s": _summary(self.cpu),
        }


def _summary(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"median": None, "min": None, "max": None, "all": []}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "all": list(values),
    }


@dataclass
class Figure:
    """One measured figure of a stage: ketqua's code and, usually, its baseline.

    ``amount`` units (``unit``: MB, specimens, plates, signatures, ...) are
    processed per repeat, so throughput = amount / median seconds. ``cores`` is
    how many cores the candidate was allowed to use (a process pool uses all),
    so throughput per core is comparable across stages. ``extra`` carries
    figures that are not throughputs (latency percentiles, cold/warm times).
    """

    name: str
    unit: str
    amount: float
    candidate: Timing | None = None
    baseline: Timing | None = None
    cores: int = 1
    baseline_cores: int = 1
    aim: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"  # ok | skipped | error
    reason: str | None = None
    missing_module: str | None = None

    @property
    def ratio(self) -> float | None:
        """Candidate median time / baseline median time for the same work (< 1: ketqua is faster)."""
        if not self.candidate or not self.baseline or not self.baseline.wall or not self.candidate.wall:
            return None
        base = self.baseline.median
        return self.candidate.median / base if base > 0 else None

    def throughput(self, timing: Timing | None) -> float | None:
        if timing is None or not timing.wall or timing.median <= 0:
            return None
        return self.amount / timing.median

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "status": self.status, "unit": self.unit, "amount": self.amount}
        if self.status != "ok":
            out["reason"] = self.reason
            if self.missing_module:
                out["missing_module"] = self.missing_module
            return out
        cand_tp = self.throughput(self.candidate)
        base_tp = self.throughput(self.baseline)
        out.update(
            {
                "cores": self.cores,
                "candidate": self.candidate.as_json() if self.candidate else None,
                "throughput_per_s": cand_tp,
                "throughput_per_core_per_s": cand_tp / self.cores if cand_tp is not None else None,
                "baseline": self.baseline.as_json() if self.baseline else None,
                "baseline_cores": self.baseline_cores if self.baseline else None,
                "baseline_throughput_per_s": base_tp,
                "baseline_throughput_per_core_per_s": base_tp / self.baseline_cores if base_tp is not None else None,
                "ratio": self.ratio,
                "aim": self.aim,
                "extra": self.extra,
            }
        )
        return out


def skipped(name: str, reason: str, *, missing_module: str | None = None, unit: str = "") -> Figure:
    """A figure that could not be measured yet because the code under test is absent."""
    return Figure(name=name, unit=unit, amount=0, status="skipped", reason=reason, missing_module=missing_module)


# --------------------------------------------------------------------------- timing


def _time_once(fn: Callable[[], Any]) -> tuple[float, float]:
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()  # a collection landing in one side's repeat is noise, not the code's cost
    try:
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        t1, c1 = time.perf_counter(), time.process_time()
    finally:
        if was_enabled:
            gc.enable()
    return t1 - t0, c1 - c0


def compare(
    name: str,
    *,
    unit: str,
    amount: float,
    candidate: Callable[[], Any],
    baseline: Callable[[], Any] | None,
    repeats: int,
    candidate_label: str = "ketqua",
    baseline_label: str = "baseline",
    cores: int = 1,
    baseline_cores: int = 1,
    aim: str | None = None,
    warmup: bool = True,
    extra: dict[str, Any] | None = None,
) -> Figure:
    """Time ``candidate`` and ``baseline`` on the same work, interleaved.

    One untimed warm-up call each (imports, caches, JIT) unless ``warmup`` is
    false; then ``repeats`` rounds, each timing both, alternating which goes
    first so drift on a shared machine lands on both sides.
    """
    cand = Timing(candidate_label)
    base = Timing(baseline_label) if baseline is not None else None
    if warmup:
        candidate()
        if baseline is not None:
            baseline()
    for i in range(max(1, repeats)):
        pair: list[tuple[Timing, Callable[[], Any]]] = [(cand, candidate)]
        if baseline is not None and base is not None:
            pair.append((base, baseline))
            if i % 2:
                pair.reverse()
        for timing, fn in pair:
            wall, cpu = _time_once(fn)
            timing.wall.append(wall)
            timing.cpu.append(cpu)
    return Figure(
        name=name,
        unit=unit,
        amount=amount,
        candidate=cand,
        baseline=base,
        cores=cores,
        baseline_cores=baseline_cores,
        aim=aim,
        extra=dict(extra or {}),
    )


def timing_from(label: str, walls: Iterable[float], cpus: Iterable[float] | None = None) -> Timing:
    """A Timing from seconds measured elsewhere (a subprocess, a server)."""
    walls = list(walls)
    return Timing(label, walls, list(cpus) if cpus is not None else [])


# --------------------------------------------------------------------------- stages


@dataclass
class Context:
    """What every stage gets: scale, repeats, a scratch folder, shared fixtures."""

    quick: bool
    repeats: int
    seed: int
    scratch: Path
    cores: int
    _cache: dict[str, Any] = field(default_factory=dict)

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        """Build an expensive shared fixture once per run (e.g. the development PKI)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def scale(self, quick: float, full: float) -> float:
        return quick if self.quick else full

    @property
    def heavy_repeats(self) -> int:
        """Repeats for figures whose one call takes seconds (the full run must stay near 10 minutes)."""
        return self.repeats if self.quick else min(self.repeats, 3)


@dataclass(frozen=True)
class Stage:
    name: str
    title: str
    requires: tuple[str, ...]
    run: Callable[[Context], list[Figure]]
    order: int


_STAGES: dict[str, Stage] = {}


def stage(name: str, title: str, *, requires: Sequence[str] = (), order: int = 50) -> Callable[[Callable[[Context], list[Figure]]], Callable[[Context], list[Figure]]]:
    """Register a benchmark stage. ``requires`` names the modules under test:
    while one of them does not exist the stage is skipped, naming it."""

    def decorate(fn: Callable[[Context], list[Figure]]) -> Callable[[Context], list[Figure]]:
        if name in _STAGES and _STAGES[name].run is not fn:
            raise RuntimeError(f"bench stage '{name}' registered twice")
        _STAGES[name] = Stage(name, title, tuple(requires), fn, order)
        return fn

    return decorate


def stages() -> list[Stage]:
    """Every stage module in bench/ (``bench_*.py``), imported and in run order."""
    import bench

    for module in pkgutil.iter_modules(bench.__path__):
        if module.name.startswith("bench_"):
            importlib.import_module(f"bench.{module.name}")
    return sorted(_STAGES.values(), key=lambda s: (s.order, s.name))


def module_exists(name: str) -> bool:
    """True when module ``name`` is present on disk (whether or not it imports cleanly)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        # find_spec imports the parent package; a missing parent means a missing module
        return False


def first_missing(modules: Iterable[str]) -> str | None:
    for name in modules:
        if not module_exists(name):
            return name
    return None


def _module_path(name: str) -> str:
    return name.replace(".", "/") + ".py"


@dataclass
class StageResult:
    stage: Stage
    status: str  # ok | partial | skipped | error
    figures: list[Figure]
    elapsed_s: float
    reason: str | None = None
    missing_module: str | None = None
    traceback: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.stage.name,
            "title": self.stage.title,
            "status": self.status,
            "requires": list(self.stage.requires),
            "elapsed_s": self.elapsed_s,
            "figures": [f.as_json() for f in self.figures],
        }
        if self.reason:
            out["reason"] = self.reason
        if self.missing_module:
            out["missing_module"] = self.missing_module
        if self.traceback:
            out["traceback"] = self.traceback
        return out


def run_stage(st: Stage, ctx: Context) -> StageResult:
    """Run one stage; a missing module is a skip, anything else that breaks is an error."""
    t0 = time.perf_counter()
    missing = first_missing(st.requires)
    if missing:
        return StageResult(st, "skipped", [], 0.0, reason=f"{_module_path(missing)} is not written yet", missing_module=missing)
    try:
        figures = st.run(ctx)
    except Exception as exc:  # noqa: BLE001 - one broken stage must not stop the others
        return StageResult(
            st,
            "error",
            [],
            time.perf_counter() - t0,
            reason=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(),
        )
    statuses = {f.status for f in figures}
    if not figures:
        status = "skipped"
    elif statuses == {"ok"}:
        status = "ok"
    elif "error" in statuses:
        status = "error"
    elif "ok" in statuses:
        status = "partial"
    else:
        status = "skipped"
    reason = None
    if status != "ok":
        reasons = [f"{f.name}: {f.reason}" for f in figures if f.status != "ok"]
        reason = "; ".join(reasons) if reasons else "no figures"
    return StageResult(st, status, figures, time.perf_counter() - t0, reason=reason)


# --------------------------------------------------------------------------- machine


def machine() -> dict[str, Any]:
    """What the figures were measured on: they mean little without it."""
    cpu_model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        usable = os.cpu_count() or 1
    versions: dict[str, str | None] = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = None
    mem_total = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    return {
        "cpu_model": cpu_model,
        "cores_logical": os.cpu_count(),
        "cores_usable": usable,
        "memory_bytes": mem_total,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "libraries": versions,
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


# --------------------------------------------------------------------------- outputs


def _fmt_seconds(s: float | None) -> str:
    if s is None or math.isnan(s):
        return "-"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} µs"


def _fmt_rate(rate: float | None, unit: str) -> str:
    if rate is None:
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if rate >= div:
            return f"{rate / div:.2f}{suffix} {unit}/s"
    return f"{rate:.1f} {unit}/s"


def _fmt_range(t: Timing | None) -> str:
    if t is None or not t.wall:
        return "-"
    return f"{_fmt_seconds(min(t.wall))}–{_fmt_seconds(max(t.wall))}"


def _fmt_extra(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt_extra(v)}" for k, v in value.items()) + "}"
    return str(value)


def table(results: Sequence[StageResult]) -> str:
    """The terminal table: one row per figure, the baseline's row under it."""
    head = ("stage / figure", "median", "min–max", "×base", "throughput/core", "aim")
    rows: list[tuple[str, ...]] = []
    for res in results:
        if res.status in {"skipped", "error"} and not res.figures:
            rows.append((f"{res.stage.name}: {res.status}: {res.reason}", "", "", "", "", ""))
            continue
        rows.append((f"{res.stage.name} — {res.stage.title}", "", "", "", "", ""))
        for fig in res.figures:
            if fig.status != "ok":
                rows.append((f"  {fig.name}: {fig.status}: {fig.reason}", "", "", "", "", ""))
                continue
            cand = fig.candidate
            tp = fig.throughput(cand)
            ratio = fig.ratio
            rows.append((f"  {fig.name}", "", "", "", "", ""))
            rows.append(
                (
                    f"    ketqua: {cand.label if cand else ''}",
                    _fmt_seconds(cand.median if cand else None),
                    _fmt_range(cand),
                    f"{ratio:.3g}×" if ratio is not None else "",
                    _fmt_rate(tp / fig.cores if tp is not None else None, fig.unit),
                    fig.aim or "",
                )
            )
            if fig.baseline:
                btp = fig.throughput(fig.baseline)
                rows.append(
                    (
                        f"    baseline: {fig.baseline.label}",
                        _fmt_seconds(fig.baseline.median),
                        _fmt_range(fig.baseline),
                        "1.00×",
                        _fmt_rate(btp / fig.baseline_cores if btp is not None else None, fig.unit),
                        "",
                    )
                )
            if fig.extra:
                rows.append(("    " + ", ".join(f"{k}: {_fmt_extra(v)}" for k, v in fig.extra.items()), "", "", "", "", ""))
    measured = [r for r in [head, *rows] if any(r[1:])]
    widths = [max(len(r[i]) for r in measured) for i in range(len(head))]
    widths[0] = min(widths[0], 64)

    def line(r: tuple[str, ...]) -> str:
        if not any(r[1:]):
            return r[0]  # a heading or a skip/error line: full width
        first = r[0] if len(r[0]) <= widths[0] else r[0][: widths[0] - 1] + "…"
        return "  ".join([first.ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])])

    sep = "-" * (sum(widths) + 2 * (len(widths) - 1))
    return "\n".join([line(head), sep, *(line(r) for r in rows)])


def write_json(path: Path, report: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=1, ensure_ascii=False, allow_nan=False, default=_json_default))
    tmp.replace(path)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def _clean(obj: Any) -> Any:
    """JSON has no NaN/inf: they become null so the file stays strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_png(path: Path, results: Sequence[StageResult], title: str) -> None:
    """Throughput per core of each figure and of its baseline, one panel per stage (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [r for r in results if any(f.status == "ok" and f.candidate for f in r.figures)]
    if not panels:
        fig, ax = plt.subplots(figsize=(8, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no stage produced figures", ha="center", va="center")
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return
    heights = [max(1.2, 0.45 * sum(1 for f in r.figures if f.status == "ok" and f.candidate) + 0.9) for r in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, sum(heights) + 0.8), gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, res in zip(axes[:, 0], panels):
        figs = [f for f in res.figures if f.status == "ok" and f.candidate]
        labels, cand, base = [], [], []
        for f in figs:
            tp = f.throughput(f.candidate)
            btp = f.throughput(f.baseline)
            labels.append("\n".join(textwrap.wrap(f.name, 44)) + f"\n({f.unit}/s/core)")
            cand.append(tp / f.cores if tp else 0.0)
            base.append(btp / f.baseline_cores if btp else 0.0)
        y = list(range(len(figs)))
        ax.barh([v + 0.2 for v in y], cand, height=0.38, color="#1f77b4", label="ketqua")
        ax.barh([v - 0.2 for v in y], base, height=0.38, color="#bbbbbb", label="baseline")
        for yi, f in zip(y, figs):
            if f.ratio is not None and f.ratio > 0:
                text = f"{1 / f.ratio:.3g}× faster" if f.ratio < 1 else f"{f.ratio:.3g}× slower"
                ax.annotate(text, (max(cand[yi], base[yi]) or 1, yi), xytext=(4, 0), textcoords="offset points", va="center", fontsize=7)
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=7)
        ax.invert_yaxis()
        positive = [v for v in cand + base if v > 0]
        if positive:
            ax.set_xscale("log")
            ax.set_xlim(min(positive) / 2, max(positive) * 6)  # room on the right for the annotations
        ax.set_title(f"{res.stage.name}: {res.stage.title}", fontsize=9, loc="left")
        ax.tick_params(axis="x", labelsize=7)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, ["ketqua", "baseline (same run)"], loc="upper right", fontsize=8, ncol=2)
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (sum(heights) + 0.8)))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``python -m bench`` and ``ketqua bench`` (one definition for both)."""
    parser.add_argument("--quick", action="store_true", help="small workloads, few repeats: finishes in under 2 minutes (CI runs it)")
    parser.add_argument("--only", metavar="STAGE[,STAGE]", help="run only these stages (see --list)")
    parser.add_argument("--out", metavar="DIR", default=None, help=f"where bench.json and bench.png go (default {DEFAULT_OUT})")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per figure (default 3 quick, 7 full)")
    parser.add_argument("--seed", type=int, default=20261129, help="seed of the workload generators")
    parser.add_argument("--list", action="store_true", help="list the stages and exit")


def run_from_args(args: argparse.Namespace, stream: Any = None) -> int:
    """Run the selected stages, print the table, write JSON and PNG. Exit 0 unless a stage errored."""
    stream = stream or sys.stdout
    all_stages = stages()
    if args.list:
        for st in all_stages:
            missing = first_missing(st.requires)
            state = f"(waiting for {_module_path(missing)})" if missing else ""
            print(f"{st.name:<14} {st.title} {state}", file=stream)
        return 0
    selected = all_stages
    if args.only:
        wanted = [s.strip() for s in args.only.split(",") if s.strip()]
        known = {s.name for s in all_stages}
        unknown = [w for w in wanted if w not in known]
        if unknown:
            print(f"bench: unknown stage(s) {unknown}; known: {sorted(known)}", file=sys.stderr)
            return 2
        selected = [s for s in all_stages if s.name in wanted]
    out = Path(args.out) if args.out else DEFAULT_OUT
    out.mkdir(parents=True, exist_ok=True)
    repeats = args.repeats or (3 if args.quick else 7)
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    desc = machine()
    results: list[StageResult] = []
    with tempfile.TemporaryDirectory(prefix="ketqua-bench-") as scratch:
        try:
            usable = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover
            usable = os.cpu_count() or 1
        ctx = Context(quick=args.quick, repeats=repeats, seed=args.seed, scratch=Path(scratch), cores=usable)
        for st in selected:
            print(f"bench: {st.name} …", file=sys.stderr, flush=True)
            res = run_stage(st, ctx)
            results.append(res)
            print(f"bench: {st.name} {res.status} in {res.elapsed_s:.1f} s" + (f" ({res.reason})" if res.reason else ""), file=sys.stderr, flush=True)
    desc["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    report = {
        "schema": SCHEMA,
        "mode": "quick" if args.quick else "full",
        "started_at": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "elapsed_s": time.perf_counter() - t0,
        "repeats": repeats,
        "seed": args.seed,
        "machine": desc,
        "ratio_definition": "candidate median wall time / baseline median wall time for the same work (below 1: ketqua is faster)",
        "stages": [r.as_json() for r in results],
    }
    write_json(out / "bench.json", _clean(report))
    title = f"ketqua bench ({report['mode']}, {report['started_at']}, {desc['cpu_model']}, {desc['cores_usable']} cores)"
    write_png(out / "bench.png", results, title)
    print(title, file=stream)
    print(table(results), file=stream)
    print(f"\nwrote {out / 'bench.json'} and {out / 'bench.png'} in {report['elapsed_s']:.1f} s", file=stream)
    return 1 if any(r.status == "error" for r in results) else 0
