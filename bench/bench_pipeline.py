"""End to end through engine/pipeline/: plate latency and sustained specimens per hour.

Each repeat gets a fresh data folder (the bench's development PKI copied in),
an Engine warmed on a small plate (process pools started, numba cache loaded,
as in a running service), the pool manifests already committed, and then:

* **Plate latency**: the analyzer export of one 384-well plate of 10-specimen
  pools (``engine.demo``: 380 pools + 2 individual specimens + controls, 3,802
  specimens) lands in the inbox; timed until every signed JSON result is
  committed (``run_once(certificates=False)``, which is when the API can serve
  them), then until every certificate exists (``render_certificates``).
  Aim (issue 7): ≤ 2 s to signed JSON, ≤ 15 s to certificates, on 2 cores.
* **Sustained**: several such plates land at once; specimens per hour to signed
  JSON and with certificates. Aim: ≥ 1 million specimens/hour with certificates.

Baseline, measured on the same plates in the same run: the *floor* of the work
that cannot be skipped, in one process — Arrow reading the export's table, two
raw ECDSA P-256 signatures per signed result (JWS + HC1) over its canonical
JSON, and one SQLite WAL transaction inserting those results. The ratio says how
far the whole pipeline is from that floor.

``--quick`` uses 96-well plates (922 specimens) and one repeat, so CI stays under two minutes.
"""

from __future__ import annotations

import io
import shutil
import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

from bench import common, workloads
from bench.runner import Context, Figure, stage, timing_from


def _floor(exports: list[bytes], canonicals: list[bytes], key: Any, db: Path) -> None:
    """The irreducible work for the same plates: read the table, sign twice per result, commit once."""
    import pyarrow.csv as pacsv

    ecdsa = common.raw_ecdsa()
    for data in exports:
        skip = data[: data.index(b"[Results]")].count(b"\n") + 1
        pacsv.read_csv(io.BytesIO(data), read_options=pacsv.ReadOptions(skip_rows=skip), parse_options=pacsv.ParseOptions(delimiter="\t"))
    rows = [(i, c.decode(), key.sign(c, ecdsa), key.sign(c, ecdsa)) for i, c in enumerate(canonicals)]
    db.unlink(missing_ok=True)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE results(seq INTEGER PRIMARY KEY, payload TEXT, jws BLOB, hc1 BLOB)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO results VALUES (?,?,?,?)", rows)
    conn.execute("COMMIT")
    conn.close()


class Run:
    """One repeat's data folder and warmed Engine (torn down by :meth:`close`)."""

    def __init__(self, ctx: Context, tag: str, plates: list[Any]) -> None:
        from engine import demo
        from engine.datadir import DataDir
        from engine.files import write_atomically
        from engine.pipeline.engine import Engine

        self.root = ctx.scratch / f"pipeline-{tag}"
        shutil.rmtree(self.root, ignore_errors=True)
        self.data = DataDir.at(self.root).create()
        shutil.copytree(common.keys(ctx).data_dir / "keys", self.data.keys, dirs_exist_ok=True)
        self.engine = Engine(self.data)
        # Single-specimen "pools": a full 96-well run that warms every stage but signs few certificates.
        warm = demo.simulate_plate(ctx.seed + 999, size=96, pool_size=1, prevalence=0.02, name=f"PLWARM-{tag}")
        write_atomically(self.data.inbox / "warm-manifest.csv", demo.manifest_csv(warm.manifest))
        self.engine.run_once()
        write_atomically(self.data.inbox / "warm.txt", demo.quantstudio_text(warm, size=96))
        warmed = self.engine.run_once()
        if warmed.plates != 1 or warmed.certificates == 0:
            raise AssertionError(f"pipeline warm-up plate was not processed: {warmed.as_dict()}")
        for i, sim in enumerate(plates):
            write_atomically(self.data.inbox / f"manifest-{i}.csv", demo.manifest_csv(sim.manifest))
        got = self.engine.run_once()
        if got.manifests != len(plates):
            raise AssertionError(f"pipeline took {got.manifests} manifests of {len(plates)}")

    def drop(self, plates: list[Any], size: int) -> None:
        from engine import demo
        from engine.files import write_atomically

        for i, sim in enumerate(plates):
            write_atomically(self.data.inbox / f"{sim.name}.txt", demo.quantstudio_text(sim, size=size))

    def close(self) -> None:
        self.engine.close()
        shutil.rmtree(self.root, ignore_errors=True)


def _measure(ctx: Context, tag: str, plates: list[Any], size: int) -> tuple[float, float, int, int]:
    """Seconds to signed JSON, seconds to all certificates, specimens decided, results signed."""
    run = Run(ctx, tag, plates)
    try:
        run.drop(plates, size)
        t0 = time.perf_counter()
        summary = run.engine.run_once(certificates=False)
        t_signed = time.perf_counter() - t0
        certificates = run.engine.render_certificates()
        t_certs = time.perf_counter() - t0
    finally:
        run.close()
    if summary.plates != len(plates) or summary.signed == 0 or certificates != summary.signed:
        raise AssertionError(f"pipeline processed {summary.plates}/{len(plates)} plates, signed {summary.signed}, certificates {certificates}")
    return t_signed, t_certs, summary.specimens, summary.signed


@stage("pipeline", "end to end: plate latency and sustained specimens/hour", requires=("engine.pipeline.engine", "engine.demo", "engine.certificates.writer"), order=60)
def run(ctx: Context) -> list[Figure]:
    from engine import demo
    from signing.canonical import canonical_json

    size = 96 if ctx.quick else 384
    n_sustained = 2 if ctx.quick else 4
    k = common.keys(ctx)

    def plates(first_seed: int, n: int) -> list[Any]:
        return [demo.simulate_plate(first_seed + i, size=size, pool_size=10, prevalence=0.02, name=f"PLBENCH{first_seed + i:05d}") for i in range(n)]

    figures = []
    for label, n_plates, first, repeats in (("one plate", 1, 100, 1 if ctx.quick else 3), (f"{n_sustained} plates at once", n_sustained, 200, 1)):
        signed_t: list[float] = []
        certs_t: list[float] = []
        floor_t: list[float] = []
        specimens = signed = 0
        for r in range(repeats):
            batch = plates(first + 10 * r, n_plates)
            t_signed, t_certs, specimens, signed = _measure(ctx, f"{n_plates}-{r}", batch, size)
            signed_t.append(t_signed)
            certs_t.append(t_certs)
            # The floor on the same plates, right after (same machine state): canonical JSON built beforehand.
            canonicals = [canonical_json(p) for p in workloads.result_payloads(signed, ctx.seed + r)]
            exports = [demo.quantstudio_text(sim, size=size) for sim in batch]
            t = time.perf_counter()
            _floor(exports, canonicals, k.private_key, ctx.scratch / "floor.sqlite3")
            floor_t.append(time.perf_counter() - t)
        wells = f"{size}-well"
        to_signed = Figure(
            name=f"{label}: drop → signed JSON committed ({wells}, {specimens} specimens in all)",
            unit="specimens",
            amount=specimens,
            candidate=timing_from("engine.pipeline.engine.Engine.run_once (no certificates)", signed_t),
            baseline=timing_from("floor: Arrow read + 2 raw ECDSA/result + 1 SQLite txn", floor_t),
            cores=ctx.cores,
            aim="≤ 2 s per 3,840-specimen plate on 2 cores" if n_plates == 1 else "≥ 1M specimens/h",
            extra={"plates": n_plates, "results_signed": signed, "specimens_per_hour": round(specimens / statistics.median(signed_t) * 3600)},
        )
        to_certs = Figure(
            name=f"{label}: drop → every certificate signed ({wells})",
            unit="specimens",
            amount=specimens,
            candidate=timing_from("run_once + Engine.render_certificates", certs_t),
            cores=ctx.cores,
            aim="≤ 15 s per 3,840-specimen plate on 2 cores" if n_plates == 1 else "≥ 1M specimens/h with certificates",
            extra={"plates": n_plates, "certificates": signed, "specimens_per_hour": round(specimens / statistics.median(certs_t) * 3600)},
        )
        figures += [to_signed, to_certs]
    return figures
