"""Pool decoding (engine/pooling, numba kernels) vs a straightforward pure-Python decoder.

The baseline is the pooling engineer's ``engine/pooling/reference.py``
(``decode_plate``: dorfman, comp, dd) where it covers the rule, else
``bench/naive_pooling.py`` (lists, sets, a loop per plate; the exact search).
Before timing, both decode the same plates and their outcomes are compared:
the agreement is reported with the figure, so a fast wrong decoder shows.

* Dorfman stage 1 (``dorfman:10``, 3,840 specimens a plate) and a 16 × 24
  array (DD), in specimens/s. Aim (issue 4): ≥ 50 million specimens/s/core.
* COMP + DD on P-BEST 384 × 48 plates, in plates/s. Aim: ≥ 50,000 plates/s/core.
* Exact search on ambiguous P-BEST plates (6 positives, DD leaves candidates
  undecided; bound 6), ms/plate. Aim: median ≤ 2 ms/plate.
* numba first call: compiling from an empty cache vs loading the on-disk cache
  (``cache=True``), each in a fresh process; warm calls alongside.

Plates are simulated noiselessly by ``bench.workloads.simulate_design``.
"""

from __future__ import annotations

import importlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench import naive_pooling, workloads
from bench.runner import Context, Figure, compare, module_exists, stage, timing_from

REPO = Path(__file__).resolve().parents[1]


def _baseline_fn(decoder: str, design: Any, max_positives: int | None = None) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """A function decoding ``codes[plates, pools]`` with a pure-Python baseline, and its label.

    The pooling engineer's ``engine.pooling.reference.decode_plate`` where it covers the rule
    (dorfman, comp, dd); ``bench/naive_pooling.py`` otherwise (the exact search).
    """
    if decoder in ("dorfman", "comp", "dd") and module_exists("engine.pooling.reference"):
        ref = importlib.import_module("engine.pooling.reference")
        if hasattr(ref, "decode_plate"):
            pools_of = ref.pools_of_specimens(design)

            def run_ref(codes: np.ndarray) -> np.ndarray:
                return np.array([ref.decode_plate(design, row.tolist(), decoder, pools_of) for row in codes], dtype=np.int8)

            return f"engine.pooling.reference.decode_plate ({decoder})", run_ref
    nd = naive_pooling.NaiveDesign(design.incidence)
    one = {
        "dorfman": lambda c: naive_pooling.dorfman(nd, c),
        "dd": lambda c: naive_pooling.comp_dd(nd, c),
        "exact": lambda c: naive_pooling.exact(nd, c, int(max_positives or 0)),
    }[decoder]
    name = {"dd": "comp_dd"}.get(decoder, decoder)
    return f"bench.naive_pooling.{name}", lambda codes: np.array([one(row.tolist()) for row in codes], dtype=np.int8)


def _figure(ctx: Context, name: str, spec: str, n_specimens: int | None, decoder: str, *, plates: int, baseline_plates: int,
            unit: str, aim: str, prevalence: float = 0.02, positives: int | None = None, max_positives: int | None = None,
            only_ambiguous: bool = False) -> Figure:
    from engine.pooling import decode_batch, generate

    design = generate(spec, n_specimens) if n_specimens else generate(spec)
    kwargs = {"max_positives": max_positives} if max_positives is not None else {}
    sim = workloads.simulate_design(design.incidence, plates * (4 if only_ambiguous else 1), prevalence=prevalence, positives=positives, seed=ctx.seed)
    codes = sim.pool_codes
    if only_ambiguous:
        dd = decode_batch(design, codes, decoder="dd").outcome
        codes = codes[(dd == naive_pooling.RETEST).any(axis=1)][:plates]
    base_label, base = _baseline_fn(decoder, design, max_positives)
    sub = codes[:baseline_plates]
    ours_sub = decode_batch(design, sub, decoder=decoder, **kwargs).outcome
    agreement = float((base(sub) == ours_sub).mean())
    per_plate = design.n_specimens if unit == "specimens" else 1
    fig = compare(
        name,
        unit=unit,
        amount=len(codes) * per_plate,
        candidate=lambda: decode_batch(design, codes, decoder=decoder, **kwargs),
        baseline=lambda: base(sub),
        repeats=ctx.repeats,
        candidate_label=f"engine.pooling.decode_batch ({decoder})",
        baseline_label=base_label,
        aim=aim,
    )
    # The baseline decodes fewer plates (it is slow); scale its times to the same plate count.
    scale = len(codes) / len(sub)
    if fig.baseline:
        fig.baseline.wall = [w * scale for w in fig.baseline.wall]
        fig.baseline.cpu = [c * scale for c in fig.baseline.cpu]
    fig.extra.update({"design": spec, "plates": int(len(codes)), "baseline_plates_timed": int(len(sub)), "agreement_with_baseline": agreement})
    if unit == "plates" and fig.candidate:
        fig.extra["ms_per_plate"] = fig.candidate.median / len(codes) * 1e3
    return fig


def _exact_latency(ctx: Context, fig: Figure) -> None:
    """Median and p99 of one-plate exact decodes (the latency a single plate sees), into ``fig.extra``."""
    from engine.pooling import decode_batch, generate

    design = generate("pbest:384x48")
    sim = workloads.simulate_design(design.incidence, 400, positives=6, seed=ctx.seed + 1)
    dd = decode_batch(design, sim.pool_codes, decoder="dd").outcome
    codes = sim.pool_codes[(dd == naive_pooling.RETEST).any(axis=1)][: int(ctx.scale(50, 200))]
    times = []
    for row in codes:
        t = time.perf_counter()
        decode_batch(design, row[None, :], decoder="exact", max_positives=6)
        times.append(time.perf_counter() - t)
    fig.extra["median_ms_one_plate"] = statistics.median(times) * 1e3
    fig.extra["p99_ms_one_plate"] = float(np.percentile(times, 99)) * 1e3


def _minerr_figure(ctx: Context) -> Figure:
    """One-wrong-pool decoding on contradictory P-BEST plates (a false-positive pool each) vs the DD it falls back from."""
    from engine.pooling import decode_batch, generate
    from engine.pooling import kernels as K

    design = generate("pbest:384x48")
    plates = int(ctx.scale(200, 1000))
    sim = workloads.simulate_design(design.incidence, plates * 4, prevalence=0.005, seed=ctx.seed + 2)
    codes = sim.pool_codes.copy()
    rng = np.random.default_rng(ctx.seed + 3)
    for row in codes:  # one contamination per plate: a not-detected pool reads detected
        negative = np.flatnonzero(row == 0)
        row[rng.choice(negative)] = 1
    dd = decode_batch(design, codes, decoder="dd")
    codes = codes[(dd.reason == K.R_CONFLICT).any(axis=1)][:plates]
    fig = compare(
        "minerr, P-BEST 384×48 plates with one false-positive pool and no noiseless explanation",
        unit="plates",
        amount=len(codes),
        candidate=lambda: decode_batch(design, codes, decoder="minerr"),
        baseline=lambda: decode_batch(design, codes, decoder="dd"),
        repeats=ctx.repeats,
        candidate_label="engine.pooling.decode_batch (minerr)",
        baseline_label="engine.pooling.decode_batch (dd: retests the contradiction's neighbourhood)",
        aim="median ≤ 2 ms/plate",
    )
    ours = decode_batch(design, codes, decoder="minerr").outcome
    base = decode_batch(design, codes, decoder="dd").outcome
    fig.extra.update({
        "plates": int(len(codes)),
        "retests_per_plate_minerr": float((ours == K.RETEST).sum() / max(1, len(codes))),
        "retests_per_plate_dd": float((base == K.RETEST).sum() / max(1, len(codes))),
    })
    if fig.candidate:
        fig.extra["ms_per_plate"] = fig.candidate.median / max(1, len(codes)) * 1e3
    return fig


def _numba_cold_warm(ctx: Context) -> Figure:
    """First calls in fresh processes: compiling (empty cache) vs loading numba's on-disk cache."""
    cache = ctx.scratch / "numba-cache"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    compiled: list[dict[str, float]] = []
    cached: list[dict[str, float]] = []
    for i in range(1 if ctx.quick else 2):
        run_cache = cache / f"run-{i}"
        env["NUMBA_CACHE_DIR"] = str(run_cache)
        for sink in (compiled, cached):  # first run compiles into the empty folder, second loads it
            out = subprocess.run([sys.executable, "-m", "bench.numba_cold"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
            if out.returncode != 0:
                raise RuntimeError(f"bench.numba_cold failed: {out.stderr[-2000:]}")
            sink.append(json.loads(out.stdout.strip().splitlines()[-1]))

    def first(d: dict[str, float]) -> float:
        return sum(v for k, v in d.items() if k.endswith("_first_s"))

    fig = Figure(
        name="numba first calls (dorfman + dd + exact kernels)",
        unit="first calls",
        amount=3,
        candidate=timing_from("first calls, on-disk cache (cache=True)", [first(d) for d in cached]),
        baseline=timing_from("first calls, compiling (empty cache)", [first(d) for d in compiled]),
        aim="cached ≪ cold",
    )
    last = cached[-1]
    # Warm calls decode 64 plates each; first calls are per kernel, compiling or loading.
    fig.extra.update({k.replace("_warm_s", "_warm_ms_64_plates"): round(v * 1e3, 3) for k, v in last.items() if k.endswith("_warm_s")})
    fig.extra.update({k.replace("_first_s", "_compile_s"): round(statistics.median(d[k] for d in compiled), 3) for k in compiled[0] if k.endswith("_first_s")})
    fig.extra.update({k.replace("_first_s", "_cache_load_s"): round(statistics.median(d[k] for d in cached), 3) for k in cached[0] if k.endswith("_first_s")})
    return fig


@stage("pooling", "pool decoders (numba) vs a pure-Python decoder", requires=("engine.pooling.designs", "engine.pooling.decoders"), order=20)
def run(ctx: Context) -> list[Figure]:
    plates_dorfman = int(ctx.scale(2000, 10_000))
    figures = [
        _figure(ctx, "Dorfman stage 1, dorfman:10 (3,840 specimens/plate)", "dorfman:10", 3840, "dorfman",
                plates=plates_dorfman, baseline_plates=int(ctx.scale(10, 40)), unit="specimens", aim="≥ 50M specimens/s/core"),
        _figure(ctx, "array:16x24 stage 1 (COMP+DD)", "array:16x24", None, "dd",
                plates=int(ctx.scale(20_000, 50_000)), baseline_plates=int(ctx.scale(200, 1000)), unit="specimens", aim="≥ 50M specimens/s/core"),
        _figure(ctx, "COMP+DD, P-BEST 384×48 at 1 % prevalence", "pbest:384x48", None, "dd",
                plates=int(ctx.scale(20_000, 50_000)), baseline_plates=int(ctx.scale(100, 500)), unit="plates", prevalence=0.01,
                aim="≥ 50k plates/s/core"),
    ]
    exact = _figure(ctx, "exact search, ambiguous P-BEST 384×48 plates (6 positives, bound 6)", "pbest:384x48", None, "exact",
                    plates=int(ctx.scale(40, 200)), baseline_plates=int(ctx.scale(20, 40)), unit="plates", positives=6, max_positives=6,
                    only_ambiguous=True, aim="median ≤ 2 ms/plate")
    _exact_latency(ctx, exact)
    figures.append(exact)
    figures.append(_minerr_figure(ctx))
    figures.append(_numba_cold_warm(ctx))
    return figures
