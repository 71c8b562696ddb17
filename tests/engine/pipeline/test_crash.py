"""Crash safety: `kill -9` of the running engine at random moments loses nothing and publishes nothing twice."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from engine.datadir import DataDir
from engine.demo import manifest_csv, quantstudio_text, simulate_plate
from engine.files import write_atomically
from engine.ledger.sqlite import Ledger
from signing.jws import verify_compact

REPO = Path(__file__).resolve().parents[3]
PLATES = 80
DUPLICATES = 40
ROUNDS = 50


def _fork_engine(root: Path) -> int:
    """The service in a forked child (its own session, so killpg takes its workers too).

    Forking this already-warm test process makes each round start in
    milliseconds instead of a second of imports, so the kills land while files
    are being taken, plates signed and transactions committed.
    """
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.setsid()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            from engine.pipeline import Engine, run_service

            engine = Engine(DataDir.at(root), workers=1, certificates=False)
            run_service(engine, port=None)
        finally:
            os._exit(0)
    return pid


def _kill9(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:  # killed before setsid: the group is not there yet
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _start(root: Path) -> subprocess.Popen[bytes]:
    # Own session: the kill takes the whole engine (main process and its workers) at once, like a power cut.
    return subprocess.Popen(
        [sys.executable, "-m", "engine", "run", "--no-api", "--workers", "1", "--no-certificates", "--data", str(root)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield None


def _check(data: DataDir, dropped: dict[str, bytes], expected: dict[str, dict[str, str]]) -> int:
    """Ledger invariants after a kill; returns how many plates are complete."""
    import hashlib

    with Ledger.open(data.ledger, readonly=True) if data.ledger.exists() else _nothing() as ledger:
        if ledger is None or ledger.schema_version == 0:
            # Killed before the ledger existed (or mid-migration, which rolls back): all still in the inbox.
            assert {p.name for p in data.inbox.rglob("*") if p.is_file()} == set(dropped)
            return 0
        assert ledger.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        files = {f["sha256"]: f for f in ledger.files()}
        # Nothing lost: every dropped file is either still in the inbox or recorded with its archived bytes.
        in_inbox = {hashlib.sha256(p.read_bytes()).hexdigest() for p in data.inbox.rglob("*") if p.is_file() and not p.name.startswith(".")}
        for name, body in dropped.items():
            sha = hashlib.sha256(body).hexdigest()
            assert sha in files or sha in in_inbox, f"{name} lost"
            if sha in files:
                assert (data.archive / sha).read_bytes() == body
        # Nothing twice: one result per (specimen, run); a done plate has exactly its expected results.
        rows = ledger.conn.execute("SELECT specimen_id, run_id, id, version FROM results").fetchall()
        assert len(rows) == len({(r[0], r[1]) for r in rows})
        per_run = Counter(r[1] for r in rows)
        done = 0
        for sha, f in files.items():
            if f["kind"] != "analyzer":
                continue
            want = sum(1 for o in expected[sha].values() if o != "RETEST")
            if f["state"] == "done":
                done += 1
                assert per_run[sha] == want, f"{f['name']}: {per_run[sha]} results, expected {want}"
            else:
                assert per_run[sha] == 0 and f["state"] in ("received", "waiting_manifest"), f
    return done


@pytest.mark.slow
def test_random_kill_9_rounds_lose_nothing_and_duplicate_nothing(tmp_path: Path, dev_keys: Path) -> None:
    """Over 50 kill -9 rounds of a service ingesting ~200 files, no file is lost, no result duplicated, all signatures verify."""
    root = tmp_path / "data"
    shutil.copytree(dev_keys, root / "keys")
    data = DataDir.at(root).create()
    from engine.pipeline.plate import warm_up

    warm_up()  # inherited by every forked round
    data.config.write_text("[intake]\nstable_seconds = 0.0\npoll_seconds = 0.02\nrescan_seconds = 0.2\nbackoff_seconds = 0.05\n", encoding="utf-8")
    rng = random.Random(4242)
    files: list[tuple[str, bytes]] = []
    expected: dict[str, dict[str, str]] = {}
    import hashlib

    for i in range(PLATES):
        plate = simulate_plate(500 + i, pool_size=2, prevalence=0.03)
        text = quantstudio_text(plate)
        expected[hashlib.sha256(text).hexdigest()] = plate.expected
        files += [(f"plate-{i:03d}.txt", text), (f"manifest-{i:03d}.csv", manifest_csv(plate.manifest))]
    files += [(f"again-{j:03d}-{name}", body) for j, (name, body) in enumerate(rng.sample(files, DUPLICATES))]
    rng.shuffle(files)  # plates before their manifests, duplicates before originals: any order
    dropped: dict[str, bytes] = {}
    queue = list(files)
    progress: list[int] = []
    for _round in range(ROUNDS):
        k = rng.randrange(2, 8)
        batch, queue = queue[:k], queue[k:]
        for name, body in batch:
            write_atomically(data.inbox / name, body)
            dropped[name] = body
        pid = _fork_engine(root)
        time.sleep(rng.uniform(0.05, 1.2))
        _kill9(pid)
        progress.append(_check(data, dropped, expected))
    print("progress per round:", progress)
    # The kills really interrupted work in progress: plates completed across many rounds, not all at once.
    assert sum(1 for a, b in zip([0, *progress], progress) if b > a) >= 5
    for name, body in queue:
        write_atomically(data.inbox / name, body)
        dropped[name] = body
    # Last run: let it finish everything, then stop it gracefully (SIGTERM).
    proc = _start(root)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        time.sleep(0.3)
        try:
            if _check(data, dropped, expected) == PLATES:
                break
        except (sqlite3.OperationalError, AssertionError):
            continue
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    assert _check(data, dropped, expected) == PLATES
    cert = x509.load_pem_x509_certificate((data.keys / "signer.pem").read_bytes())
    with Ledger.open(data.ledger, readonly=True) as ledger:
        results = ledger.results()
        decided = dict(ledger.conn.execute("SELECT run_id || ':' || specimen_id, outcome FROM specimen_decisions").fetchall())
        assert ledger.files(["received", "waiting_manifest", "parked", "quarantined"]) == []
    assert len(results) == sum(sum(1 for o in e.values() if o != "RETEST") for e in expected.values())
    for run, truth in expected.items():
        assert {sid: decided[f"{run}:{sid}"] for sid in truth} == truth
    for row in results:
        assert verify_compact(row["jws"], [cert]) == row["payload"].encode()
