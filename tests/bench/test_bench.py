"""The benchmark suite runs, reports every stage, and never hides a broken one as "skipped"."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import io
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import runner, workloads
from bench.runner import Context, Figure, compare, run_stage, skipped

REPO = Path(__file__).resolve().parents[2]


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    """One ``python -m bench --quick`` run in a fresh process, as CI and maintainers run it."""
    out = tmp_path_factory.mktemp("bench-out")
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,  # --quick takes ~40 s of CPU; the margin is for a machine shared with other test runs
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, f"bench --quick failed ({proc.returncode}) after {elapsed:.0f} s:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    report = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    return report, proc.stdout, out


@pytest.mark.slow
def test_quick_run_reports_every_stage(quick_run: tuple[dict, str, Path]) -> None:
    """--quick writes a JSON with every discovered stage, each measured or skipped only for a module that does not exist."""
    report, stdout, _ = quick_run
    assert report["schema"] == runner.SCHEMA
    assert report["mode"] == "quick"
    names = [s["name"] for s in report["stages"]]
    assert names == [s.name for s in runner.stages()], "every stage module must appear in the report, in order"
    for st in report["stages"]:
        assert st["status"] in {"ok", "partial", "skipped"}, f"stage {st['name']} is {st['status']}: {st.get('reason')}\n{st.get('traceback', '')}"
        if st["status"] == "skipped" and not st["figures"]:
            missing = st["missing_module"]
            # A skip is only honest while the code under test is absent: once the module exists,
            # an import error or a missing function must show up as a failure here.
            assert not _exists(missing), f"stage {st['name']} skipped for {missing}, which exists now: {st['reason']}"
        for fig in st["figures"]:
            where = f"{st['name']} / {fig['name']}"
            if fig["status"] == "skipped":
                assert fig.get("missing_module"), f"{where}: a skip must name the missing module"
                assert not _exists(fig["missing_module"]), f"{where}: skipped for {fig['missing_module']}, which exists now"
                continue
            assert fig["status"] == "ok", f"{where}: {fig['status']} {fig.get('reason')}"
            cand = fig["candidate"]["wall_s"]
            assert cand["median"] > 0 and 1 <= len(cand["all"]) <= report["repeats"], where
            assert cand["min"] <= cand["median"] <= cand["max"], where
            assert fig["throughput_per_s"] > 0 and fig["throughput_per_core_per_s"] > 0, where
            assert fig["amount"] > 0 and fig["unit"], where
            if "agreement_with_baseline" in fig["extra"]:
                # A baseline that decides differently is measuring other work: the ratio would mean nothing.
                assert fig["extra"]["agreement_with_baseline"] == 1, f"{where}: ketqua and its baseline disagree"
            if fig["baseline"] is not None:
                assert fig["baseline"]["wall_s"]["median"] > 0, where
                assert fig["ratio"] == pytest.approx(cand["median"] / fig["baseline"]["wall_s"]["median"]), where
            else:
                assert fig["extra"], f"{where}: a figure without a baseline must carry its own figures in extra"
        assert st["name"] in stdout, f"the terminal table lacks stage {st['name']}"


@pytest.mark.slow
def test_quick_run_describes_the_machine(quick_run: tuple[dict, str, Path]) -> None:
    """The JSON says what the figures were measured on: CPU, cores, Python, library versions, date."""
    report, _, _ = quick_run
    m = report["machine"]
    assert m["cpu_model"] and m["cores_usable"] >= 1 and m["cores_logical"] >= 1
    assert m["python"].count(".") == 2
    assert m["libraries"]["numpy"] and m["libraries"]["pyarrow"]
    assert report["started_at"].endswith("Z") and report["started_at"][:2] == "20"


@pytest.mark.slow
def test_quick_run_writes_a_png_plot(quick_run: tuple[dict, str, Path]) -> None:
    """bench.png is a real PNG image of a plausible size."""
    _, _, out = quick_run
    data = (out / "bench.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 5_000


def test_compare_interleaves_and_computes_the_ratio() -> None:
    """compare() times both sides every repeat, alternating order, and the ratio is candidate/baseline median time."""
    calls: list[str] = []

    def slow() -> None:
        calls.append("b")
        time.sleep(0.004)

    def fast() -> None:
        calls.append("c")
        time.sleep(0.001)

    fig = compare("x", unit="things", amount=10, candidate=fast, baseline=slow, repeats=4)
    assert calls[:2] == ["c", "b"]  # warm-up, untimed
    assert calls[2:] == ["c", "b", "b", "c", "c", "b", "b", "c"]
    assert len(fig.candidate.wall) == len(fig.baseline.wall) == 4
    assert fig.ratio is not None and 0.1 < fig.ratio < 0.8
    assert fig.throughput(fig.candidate) > fig.throughput(fig.baseline)


def _ctx(tmp_path: Path) -> Context:
    return Context(quick=True, repeats=1, seed=1, scratch=tmp_path, cores=1)


def test_missing_module_is_a_skip_and_a_crash_is_an_error(tmp_path: Path) -> None:
    """A stage whose module is absent is skipped naming it; a stage that raises is an error with its traceback."""
    absent = runner.Stage("absent", "t", ("engine.no_such_module_for_bench",), lambda ctx: [], 1)
    res = run_stage(absent, _ctx(tmp_path))
    assert res.status == "skipped" and res.missing_module == "engine.no_such_module_for_bench"

    def boom(ctx: Context) -> list[Figure]:
        raise ImportError("cannot import name 'decode' from 'engine.pooling'")

    broken = runner.Stage("broken", "t", ("engine.model",), boom, 1)
    res = run_stage(broken, _ctx(tmp_path))
    assert res.status == "error"
    assert "cannot import name" in res.reason and "Traceback" in res.traceback


def test_partial_stage_and_strict_json(tmp_path: Path) -> None:
    """A stage with some skipped figures is partial, and the report stays strict JSON (no NaN)."""

    def half(ctx: Context) -> list[Figure]:
        fig = compare("ok", unit="u", amount=1, candidate=lambda: None, baseline=lambda: None, repeats=1)
        fig.extra["nan"] = float("nan")
        return [fig, skipped("later", "not yet", missing_module="engine.not_there")]

    res = run_stage(runner.Stage("half", "t", (), half, 1), _ctx(tmp_path))
    assert res.status == "partial"
    runner.write_json(tmp_path / "b.json", runner._clean({"stages": [res.as_json()]}))
    text = (tmp_path / "b.json").read_text()
    assert "NaN" not in text
    assert json.loads(text)["stages"][0]["figures"][0]["extra"]["nan"] is None
    table = runner.table([res])
    assert "later: skipped: not yet" in table and "half" in table


def test_only_rejects_unknown_stage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--only with a stage name that does not exist exits 2 and lists the known stages."""
    parser = argparse.ArgumentParser()
    runner.add_arguments(parser)
    status = runner.run_from_args(parser.parse_args(["--only", "nope", "--out", str(tmp_path)]), stream=io.StringIO())
    assert status == 2
    assert "parse" in capsys.readouterr().err


def test_ketqua_bench_lists_the_same_stages(capsys: pytest.CaptureFixture[str]) -> None:
    """`ketqua bench --list` goes through the CLI discovery and prints every stage."""
    from engine.cli.main import main

    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    for st in runner.stages():
        assert st.name in out


def test_writers_produce_what_the_fixtures_look_like() -> None:
    """The CFX, Rotor-Gene, LightCycler, SDS and ASTM writers follow the real exports' structure."""
    plate = workloads.Plate(
        wells=["A1", "A2"], sample_ids=["P-1", "NTC"], roles=["sample", "ntc"], targets=("N", "MS2"), dyes=("VIC", "JUN"),
        ct=__import__("numpy").array([[24.5, 26.0], [float("nan"), float("nan")]], dtype="float32"),
    )
    cfx = workloads.cfx_csv(plate).decode()
    assert cfx.startswith(",Well,Fluor,Target,Content,Sample,") and ",A01,VIC,N,Unkn,P-1,,24.500," in cfx and ",NTC,NTC,,NaN," in cfx
    vi = workloads.cfx_csv(plate, locale="vi").decode()
    assert ";A01;VIC;N;Unkn;P-1;;24,500;" in vi
    rg = workloads.rotorgene_csv(plate)
    assert rg.startswith(b"\xef\xbb\xbfExcel Analysed Data Export;")
    assert all(line.count(";") == 13 for line in rg.decode("utf-8-sig").split("\r\n") if line)
    lc = workloads.lightcycler_txt(plate).decode()
    assert "Selected Filter: HEX (533-580)" in lc and "True\t65280\tA2\tNTC\t\t" in lc
    sds = workloads.sds_txt(plate)
    assert b"\n" not in sds and sds.startswith(b"SDS 2.3 RQ Results\t") and b"\tA2\tPassed\tNTC\tN\tNTC\tUndetermined\t" in sds
    frames = workloads.astm(plate, target_bytes=2000)
    for frame in frames.split(b"\r\n")[:-1]:
        assert frame[:1] == b"\x02"
        body, checksum = frame[1:-2], frame[-2:]
        assert int(checksum, 16) == sum(body) % 256


def test_design_simulation_is_consistent() -> None:
    """Simulated pool outcomes are detected exactly when a pool holds an infected specimen."""
    import numpy as np

    incidence = np.zeros((4, 8), dtype=bool)
    for p in range(4):
        incidence[p, 2 * p : 2 * p + 2] = True
    sim = workloads.simulate_design(incidence, 50, positives=1, seed=3)
    assert (sim.truth.sum(axis=1) == 1).all()
    expected = (sim.truth.astype(int) @ incidence.T.astype(int)) > 0
    assert (sim.pool_codes.astype(bool) == expected).all()
    assert np.isnan(sim.pool_ct[sim.pool_codes == 0]).all() and not np.isnan(sim.pool_ct[sim.pool_codes == 1]).any()
    assert math.isclose(workloads.simulate_design(incidence, 2000, prevalence=0.1, seed=1).truth.mean(), 0.1, abs_tol=0.02)
