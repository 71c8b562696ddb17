"""The command line: results list/show, retests CSV, ingest with progress, run with the API until SIGTERM."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.datadir import DataDir
from engine.demo import manifest_csv, quantstudio_text, simulate_plate
from engine.files import write_atomically
from engine.pipeline.engine import Engine

REPO = Path(__file__).resolve().parents[3]
REQUIRED = {"id", "version", "specimen_id", "status", "payload", "jws", "hc1", "certificate", "supersedes"}


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def processed(data_dir: DataDir) -> tuple[DataDir, object]:
    """A data folder after one small plate and its manifest went through the pipeline."""
    plate = simulate_plate(41, pool_size=2, prevalence=0.1)
    write_atomically(data_dir.inbox / "m.csv", manifest_csv(plate.manifest))
    write_atomically(data_dir.inbox / "p.txt", quantstudio_text(plate))
    with Engine(data_dir, workers=0, certificates=False) as engine:
        engine.run_once()
    return data_dir, plate


def test_results_list_and_show_json(processed: tuple[DataDir, object]) -> None:
    """`results list --json` prints one object per version with the contract's keys; `show ID --json` returns that result."""
    data, plate = processed
    status, out, _ = _cli("results", "list", "--json", "--data", str(data.root))
    assert status == 0
    objects = [json.loads(line) for line in out.splitlines()]
    assert len(objects) == sum(1 for o in plate.expected.values() if o != "RETEST")
    assert all(REQUIRED <= set(o) for o in objects)
    first = objects[0]
    assert json.loads(first["payload"])["id"] == first["id"] and first["hc1"].startswith("HC1:")
    status, out, _ = _cli("results", "show", first["id"], "--json", "--data", str(data.root))
    shown = json.loads(out)
    assert status == 0 and REQUIRED <= set(shown) and shown["jws"] == first["jws"] and shown["versions"][0]["version"] == 1


def test_results_show_unknown_id_fails_readably(processed: tuple[DataDir, object]) -> None:
    """Asking for an id the ledger does not hold exits 1 with a message naming the id."""
    data, _ = processed
    status, _, err = _cli("results", "show", "kqnosuchresult", "--data", str(data.root))
    assert status == 1 and "kqnosuchresult" in err


def test_retests_prints_and_writes_csv(processed: tuple[DataDir, object], tmp_path: Path) -> None:
    """`retests --csv FILE` lists exactly the RETEST specimens, with names, in an Excel-friendly CSV."""
    data, plate = processed
    target = tmp_path / "retests.csv"
    status, out, _ = _cli("retests", "--csv", str(target), "--data", str(data.root))
    assert status == 0
    want = {s for s, o in plate.expected.items() if o == "RETEST"}
    assert f"{len(want)} specimen(s) waiting" in out
    raw = target.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert {r["specimen_id"] for r in rows} == want
    assert all(r["full_name"] and r["kind"] in ("rerun", "recollect") for r in rows)


def test_ingest_backfills_a_folder_and_leaves_originals(data_dir: DataDir, tmp_path: Path) -> None:
    """`ingest DIR` processes every file in a folder tree once, reports progress, and leaves the originals in place."""
    source = tmp_path / "backfill" / "2026-11"
    source.mkdir(parents=True)
    plates = [simulate_plate(50 + i, pool_size=2, prevalence=0.05) for i in range(3)]
    for i, plate in enumerate(plates):
        (source / f"run-{i}.txt").write_bytes(quantstudio_text(plate))
        (source / f"manifest-{i}.csv").write_bytes(manifest_csv(plate.manifest))
    status, out, err = _cli("ingest", str(tmp_path / "backfill"), "--workers", "0", "--no-certificates", "--data", str(data_dir.root))
    assert status == 0
    assert "3 manifest(s), 3 plate(s) committed" in out
    assert "3/3 plates" in err and "received 6 new file(s)" in err
    assert len(list(source.iterdir())) == 6
    status, out, err = _cli("ingest", str(tmp_path / "backfill"), "--workers", "0", "--no-certificates", "--data", str(data_dir.root))
    assert "0 new file(s), 6 already known" in err and "0 signed result(s)" in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_serves_the_api_and_stops_on_sigterm(data_dir: DataDir) -> None:
    """`ketqua run` takes dropped files, its API health shows the committed results, and SIGTERM ends it with status 0."""
    data_dir.config.write_text("[intake]\nstable_seconds = 0.1\npoll_seconds = 0.05\n", encoding="utf-8")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--port", str(port), "--workers", "1", "--no-certificates", "--json-logs", "--data", str(data_dir.root)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        plate = simulate_plate(60, pool_size=2, prevalence=0.05)
        write_atomically(data_dir.inbox / "p.txt", quantstudio_text(plate))
        write_atomically(data_dir.inbox / "m.csv", manifest_csv(plate.manifest))
        want = sum(1 for o in plate.expected.values() if o != "RETEST")
        health: dict = {}
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=2) as resp:
                    health = json.loads(resp.read())
                if health.get("last_seq") == want:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert health.get("status") == "ok" and health.get("last_seq") == want
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    events = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    assert {"start", "plate", "stopping", "stopped"} <= {e["event"] for e in events}
