"""Partial writes: however a file arrives in the inbox, only the whole file is ever recorded, exactly once.

Writers modelled (each on real analyzer exports and a manifest from tests/data,
split at random byte offsets):

- ``reopen_short``: reopens the file for every chunk (``cat c >> P.txt``), pauses shorter than stable_seconds;
- ``reopen_long``: the same with pauses longer than stable_seconds; the file is then stable while
  cut, so these trials rely on :func:`parsers.incomplete` (cuts are where it flags the prefix:
  mid-line today, plus each format's structure test once its ``complete`` hook exists);
- ``one_fd_short`` / ``one_fd_long``: one descriptor held open for the whole file, any cut, any pause;
  the long pauses rely on the read-lease test (where leases are unavailable, on the seam as above);
- ``rename``: written under a temporary name, then renamed into place;
- ``share``: a network-share copy: size grows while mtime is coarse (set to one fixed second after every
  chunk), and the filesystem gives no leases; long pauses rely on the seam.

The fast tests run each writer once against :class:`Intake` with an injected clock, and the issue's
reproduction against the running service; the slow ones run hundreds of trials. Against the service
(real time), appenders cut only where the seam flags the prefix, and one-descriptor writers rely on
the read lease, so no assertion depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

import engine.intake.watcher as intake_module
from engine.config import Config, IntakeSettings
from engine.datadir import DataDir
from engine.intake.watcher import Intake
from engine.ledger.sqlite import Ledger
from parsers import incomplete

DATA = Path(__file__).resolve().parents[2] / "data"
STABLE = 0.2
EXPORTS = (
    "quantstudio_7500_results.txt",
    "cfx_vi_semicolon_decimal_comma.csv",
    "cfx_utf16.txt",
    "astm_panther_fusion_sars2.txt",
    "astm_cobas_sars2_framed.txt",
    "hl7_cobas_oru_r01.hl7",
    "hl7_cobas5800_oul_r22_utf8.hl7",
    "lightcycler_multichannel.txt",
    "rdml_taqpath_v12.xml",
    "rdml_cfx384_v11_custom_name.rdml",
    "manifest_good.csv",
)
MODES = ("reopen_short", "reopen_long", "one_fd_short", "one_fd_long", "rename", "share_short", "share_long")


def exports() -> dict[str, bytes]:
    """The exports whose whole bytes the completeness seam accepts.

    UTF-16 CFX, framed ASTM and zipped RDML do not end in a line terminator; they
    join the trials once their parsers' ``complete`` hooks land (until then the
    seam would hold the whole file as cut short).
    """
    out = {}
    for name in EXPORTS:
        body = (DATA / name).read_bytes()
        if incomplete(body, name) is None:
            out[name] = body
    return out


class Clock:
    """The intake's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _cuts(body: bytes, name: str, n: int, rng: random.Random, *, seam: bool) -> list[int]:
    """``n`` random split offsets; with ``seam``, only where :func:`parsers.incomplete` flags the prefix (drawn until found)."""
    cuts: set[int] = set()
    for _ in range(100 * n):
        if len(cuts) == n:
            break
        o = rng.randrange(1, len(body))
        if not seam or incomplete(body[:o], name) is not None:
            cuts.add(o)
    return sorted(cuts)


def _mid_line_cuts(body: bytes, name: str, n: int, rng: random.Random) -> list[int]:
    return _cuts(body, name, n, rng, seam=True)


@dataclass
class Writer:
    """One file arriving in chunks by one of :data:`MODES`, on the simulated clock."""

    name: str
    body: bytes
    mode: str
    leases: bool
    rng: random.Random
    cuts: list[int] = field(default_factory=list)
    pauses: list[float] = field(default_factory=list)
    next_at: float = 0.0
    chunk: int = 0
    fh: IO[bytes] | None = None
    done: bool = False
    relies_on_seam: int = 0  # long pauses at a cut the seam flags (reopen, share, or no leases)

    def plan(self, start: float) -> None:
        long = self.mode.endswith("_long")
        seam = long and (self.mode != "one_fd_long" or not self.leases)
        n = self.rng.randint(2, 6)
        self.cuts = _cuts(self.body, self.name, n, self.rng, seam=seam)
        self.relies_on_seam = len(self.cuts) if seam else 0
        low, high = (1.5 * STABLE, 5 * STABLE) if long else (0.0, 0.6 * STABLE)
        self.pauses = [self.rng.uniform(low, high) for _ in self.cuts]
        self.next_at = start

    def step(self, inbox: Path, now: float) -> None:
        if self.done or now < self.next_at:
            return
        bounds = [0, *self.cuts, len(self.body)]
        piece = self.body[bounds[self.chunk] : bounds[self.chunk + 1]]
        final = inbox / self.name
        path = final.with_name(f".{self.name}.part") if self.mode == "rename" else final
        if self.mode.startswith(("one_fd", "rename")):
            if self.fh is None:
                self.fh = open(path, "wb")
            self.fh.write(piece)
            self.fh.flush()
        else:
            with open(path, "ab") as fh:
                fh.write(piece)
            if self.mode.startswith("share"):
                os.utime(path, ns=(1_700_000_000 * 10**9, 1_700_000_000 * 10**9))  # SMB: 1-2 s mtime granularity
        self.chunk += 1
        if self.chunk == len(bounds) - 1:
            if self.fh is not None:
                self.fh.close()
            if self.mode == "rename":
                os.replace(path, final)
            self.done = True
        else:
            self.next_at = now + self.pauses[self.chunk - 1]


@dataclass
class Tally:
    trials: int = 0
    relying_on_seam: int = 0
    partial_skips: int = 0
    modes: dict[str, int] = field(default_factory=dict)


def run_round(root: Path, rng: random.Random, modes: list[str], *, share: bool, tally: Tally, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every export once, each by its own writer, all at once; assert only whole files were recorded, once each."""
    data = DataDir.at(root).create()
    clock = Clock()
    ledger = Ledger.open(data.ledger)
    intake = Intake(data, ledger, IntakeSettings(stable_seconds=STABLE, incomplete_seconds=600), clock=clock)
    with monkeypatch.context() as patch:
        if share:  # SMB/NFS: no leases, the stable-time rule and the seam decide
            patch.setattr(intake_module, "open_for_writing", lambda fd: None)
        writers = [
            Writer(name, body, mode, not share, random.Random(rng.random()))
            for (name, body), mode in zip(exports().items(), modes)
        ]
        for w in writers:
            w.plan(clock.now + rng.uniform(0, 0.5))
        taken = []
        for _tick in range(4000):
            for w in writers:
                w.step(data.inbox, clock.now)
            taken += intake.scan()
            clock.now += STABLE / 4
            if all(w.done for w in writers) and not any(data.inbox.iterdir()):
                break
    whole = {hashlib.sha256(w.body).hexdigest(): w for w in writers}
    recorded = ledger.files()
    assert {t.sha256 for t in taken} <= set(whole), "a fragment was taken"
    assert sorted(r["sha256"] for r in recorded) == sorted(whole), "every file recorded exactly once, and only whole"
    assert sorted(t.name for t in taken) == sorted(w.name for w in writers)
    assert ledger.events(kind="quarantined") == [] and ledger.events(kind="refused") == []
    assert list(data.inbox.iterdir()) == []
    ledger.close()
    tally.trials += len(writers)
    tally.relying_on_seam += sum(1 for w in writers if w.relies_on_seam)
    tally.partial_skips += intake.partial_skips
    for w in writers:
        tally.modes[w.mode] = tally.modes.get(w.mode, 0) + 1


def test_each_writer_once_only_whole_files_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each way of writing a file (reopen per chunk, one descriptor, rename, share copy; short and long pauses) yields the whole file, once."""
    rng = random.Random(12)
    tally = Tally()
    n = len(exports())
    for r, share in enumerate((False, True)):
        modes = [MODES[(i + r * 3) % len(MODES)] for i in range(max(n, len(MODES)))][:n]
        run_round(tmp_path / f"r{r}", rng, modes, share=share, tally=tally, monkeypatch=monkeypatch)
    assert tally.partial_skips > 0 and tally.relying_on_seam > 0


@pytest.mark.slow
def test_hundreds_of_partial_writes_never_record_a_fragment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hundreds of trials of every writer on every export, local disk and network share: zero fragments, each file once."""
    rng = random.Random(2024)
    tally = Tally()
    n = len(exports())
    for r in range(60):
        modes = [rng.choice(MODES) for _ in range(n)]
        run_round(tmp_path / f"r{r}", rng, modes, share=r % 3 == 2, tally=tally, monkeypatch=monkeypatch)
    print(f"partial-write trials: {tally.trials} ({tally.relying_on_seam} relying on parsers.incomplete), by writer {tally.modes}")
    assert tally.trials >= 400 and min(tally.modes.values()) >= 30


# ---------------------------------------------------------------------- against the running service
@contextlib.contextmanager
def _service(data: DataDir, **intake: float) -> Iterator[None]:
    from engine.pipeline import Engine, serve

    engine = Engine(data, workers=0, certificates=False)
    engine.config = Config(intake=IntakeSettings(poll_seconds=0.05, rescan_seconds=0.5, **intake))
    engine.intake.settings = engine.config.intake
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=lambda: loop.run_until_complete(serve(engine, port=None, until=stop)))
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=120)
        engine.close()
        loop.close()


def _recorded(data: DataDir) -> list[dict]:
    with Ledger.open(data.ledger, readonly=True) as ledger:
        return ledger.files()


def _wait_recorded(data: DataDir, count: int, seconds: float) -> list[dict]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        rows = _recorded(data)
        if len(rows) >= count and not any(data.inbox.iterdir()):
            return rows
        time.sleep(0.05)
    return _recorded(data)


def _shell_appender(chunks: list[Path], target: Path, pause: float) -> subprocess.Popen[bytes]:
    """The issue's reproduction: ``for c in chunks; do cat $c >> inbox/P.txt; sleep N; done``."""
    script = f'for c in "$@"; do cat "$c" >> "{target}"; sleep {pause}; done'
    return subprocess.Popen(["sh", "-c", script, "sh", *map(str, chunks)])


def _one_fd_writer(body: bytes, target: Path, cuts: list[int], pause: float, rename_to: Path | None = None) -> threading.Thread:
    def write() -> None:
        with open(target, "wb") as fh:
            for a, b in zip([0, *cuts], [*cuts, len(body)]):
                fh.write(body[a:b])
                fh.flush()
                time.sleep(pause)
        if rename_to is not None:
            os.replace(target, rename_to)

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_service_takes_reopened_and_paused_writes_whole(data_dir: DataDir, tmp_path: Path) -> None:
    """The running service: a shell appender reopening per chunk and a one-descriptor writer, both pausing 2.5x stable_seconds."""
    rng = random.Random(3)
    qs = (DATA / "quantstudio_7500_results.txt").read_bytes()
    manifest = (DATA / "manifest_good.csv").read_bytes()
    chunks = []
    for i, (a, b) in enumerate(zip([0, *(cuts := _mid_line_cuts(qs, "P.txt", 3, rng))], [*cuts, len(qs)])):
        chunks.append(tmp_path / f"c{i}")
        chunks[-1].write_bytes(qs[a:b])
    with _service(data_dir, stable_seconds=STABLE):
        shell = _shell_appender(chunks, data_dir.inbox / "P.txt", 2.5 * STABLE)
        writer = _one_fd_writer(manifest, data_dir.inbox / "m.csv", sorted(rng.sample(range(1, len(manifest)), 3)), 2.5 * STABLE)
        assert shell.wait(timeout=30) == 0
        writer.join(timeout=30)
        rows = _wait_recorded(data_dir, 2, 20)
    assert sorted(r["sha256"] for r in rows) == sorted(hashlib.sha256(b).hexdigest() for b in (qs, manifest))
    with Ledger.open(data_dir.ledger, readonly=True) as ledger:
        assert [e for e in ledger.events(kind="quarantined") if e["detail"].get("reason") == "truncated"] == []


@pytest.mark.slow
def test_service_under_many_concurrent_partial_writers(data_dir: DataDir, tmp_path: Path) -> None:
    """The running service with dozens of concurrent writers of every kind: whole files only, each recorded once, no fragment quarantined."""
    from engine.demo import manifest_csv, quantstudio_text, simulate_plate

    rng = random.Random(99)
    files: dict[str, bytes] = dict(exports())
    for seed in range(20):
        plate = simulate_plate(seed, pool_size=2, prevalence=0.1)
        files[f"plate-{seed}.txt"] = quantstudio_text(plate)
        files[f"manifest-{seed}.csv"] = manifest_csv(plate.manifest)
    procs: list[subprocess.Popen[bytes]] = []
    threads: list[threading.Thread] = []
    trials: dict[str, int] = {}
    with _service(data_dir, stable_seconds=STABLE):
        for n, (name, body) in enumerate(files.items()):
            target = data_dir.inbox / name
            mode = ("shell_long", "shell_short", "one_fd_long", "rename")[n % 4]
            trials[mode] = trials.get(mode, 0) + 1
            if mode.startswith("shell"):
                # Cut where the seam flags the prefix even for short pauses: on a loaded machine a
                # 20 ms pause can stretch past stable_seconds, and this test must not depend on speed.
                long = mode == "shell_long"
                cuts = _mid_line_cuts(body, name, 3, rng)
                parts = []
                for i, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(body)])):
                    parts.append(tmp_path / f"{name}.{i}")
                    parts[-1].write_bytes(body[a:b])
                procs.append(_shell_appender(parts, target, 2.5 * STABLE if long else 0.02))
            elif mode == "one_fd_long":
                threads.append(_one_fd_writer(body, target, sorted(rng.sample(range(1, len(body)), 4)), 2 * STABLE))
            else:
                part = data_dir.inbox / f".{name}.part"
                threads.append(_one_fd_writer(body, part, sorted(rng.sample(range(1, len(body)), 3)), 0.1, rename_to=target))
            time.sleep(0.01)
        for p in procs:
            assert p.wait(timeout=60) == 0
        for t in threads:
            t.join(timeout=60)
        rows = _wait_recorded(data_dir, len(files), 60)
    whole = {hashlib.sha256(b).hexdigest() for b in files.values()}
    print(f"service partial-write trials: {len(files)} by writer {trials}")
    assert sorted(r["sha256"] for r in rows) == sorted(whole)  # every file once, and only whole files
    with Ledger.open(data_dir.ledger, readonly=True) as ledger:
        assert [e for e in ledger.events(kind="quarantined") if e["detail"].get("reason") == "truncated"] == []
