"""The pipeline: intake → parse → interpret → decode → sign → commit → certificates.

Two drivers share one :class:`Engine`:

- :meth:`Engine.run_once` — synchronous: take what is in the inbox, process it
  to the end, render certificates, return a :class:`Summary`. Used by
  ``ketqua demo``, ``ketqua ingest`` and the tests.
- :func:`serve` — the long-running asyncio service (uvloop when available):
  a polling watcher, a bounded queue of plates, CPU stages in a process pool
  (one whole plate per task), ledger commits on the event loop thread (the one
  writer), and a certificate stage behind the commits. Stops cleanly on SIGTERM.

Order guarantees that make a crash harmless: a file is in the ledger before it
leaves the inbox; a plate's decisions and signed results are committed in ONE
transaction that also marks the file done; certificates are rendered after the
commit from what the ledger says is missing, so a restart finishes them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import metrics, stopping
from engine.config import Config, load_config
from engine.datadir import DataDir
from engine.errors import KetquaError, ManifestError, TruncatedError
from engine.intake import Intake, Taken, kind_of, write_archive
from engine.ledger import ConflictError, Ledger
from engine.logs import log
from engine.plate import PlateJob, PlateOutcome, process_plate, sign_corrections
from engine.results import corrected_payload, correction_reason, utc_instant

FILES = metrics.counter("ketqua_files_total", "Files taken from the inbox (fresh, not duplicates)")
DUPLICATES = metrics.counter("ketqua_duplicate_files_total", "Files whose exact bytes were received before")
PLATES = metrics.counter("ketqua_plates_total", "Plates committed to the ledger")
SPECIMENS = metrics.counter("ketqua_specimens_total", "Specimen decisions committed")
SIGNED = metrics.counter("ketqua_signed_total", "Signed result versions committed")
QUARANTINED = metrics.counter("ketqua_quarantined_total", "Files quarantined (unreadable, failed controls, bad manifest)")
WAITING = metrics.gauge("ketqua_plates_waiting_manifest", "Plates waiting for their pool manifest")
CERTIFICATES = metrics.counter("ketqua_certificates_total", "Signed certificate PDFs written")
LATENCY = metrics.histogram("ketqua_plate_latency_seconds", "Plate receipt to signed results committed")
QUEUE = metrics.gauge("ketqua_plate_queue_depth", "Plates queued or in flight")

ADVICE = {
    "parse": "Export the run again from the instrument software (Results export, text/CSV), then drop the new file in the inbox.",
    "assay": "Check that the run used a supported assay (see `ketqua formats` and the profiles), or set [assay] default in ketqua.toml.",
    "controls": "The run's controls failed, so none of its results can be released. Repeat the run with fresh controls, then drop the new export in the inbox.",
    "decode": "The pools on the plate do not match the manifest's design. Check the manifest for this plate, correct it and drop it in the inbox again.",
    "manifest": "Correct the manifest at the line and column named above (save as CSV UTF-8) and drop the corrected file in the inbox.",
    "truncated": "The file appears cut short (the export or the copy stopped before the end, or it is still being copied): nothing from it was signed. Export the run again from the instrument software, or copy the whole file again, then drop the new file in the inbox.",
    "unknown_pools": "No manifest names these pools. Drop the pool manifest for this plate in the inbox; if the pool names are wrong, export the run again with the right sample names.",
}


@dataclass
class Summary:
    """What one :meth:`Engine.run_once` did (counts, seconds)."""

    files: int = 0
    duplicates: int = 0
    manifests: int = 0
    plates: int = 0
    waiting: int = 0
    quarantined: int = 0
    specimens: int = 0
    signed: int = 0
    corrections: int = 0
    certificates: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    retests: int = 0
    seconds: float = 0.0
    seconds_to_signed: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Engine:
    """One data folder's pipeline; owns the ledger writer connection."""

    def __init__(self, data: DataDir, *, config: Config | None = None, workers: int | None = None, certificates: bool = True) -> None:
        self.data = data.create()
        self.config = config or load_config(data)
        self.ledger = Ledger.open(data.ledger)
        from engine.signer import load_signer_spec, load_timestamper
        from signing.pades import DevelopmentTimeStamper

        self.signer_spec = load_signer_spec(data)
        # PAdES B-T when [signing] names a time-stamping authority; picklable, so the
        # certificate writer's worker processes get their own copy.
        self.timestamper = load_timestamper(data)
        if isinstance(self.timestamper, DevelopmentTimeStamper):
            log.warning("development tsa", why="[signing] tsa = 'development': certificate time-stamps come from the DEVELOPMENT TSA, not for clinical use")
        self.intake = Intake(data, self.ledger, self.config.intake, quarantine=self.quarantine)
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self.certificates_enabled = certificates
        self._executor: Executor | None = None
        self._cert_writer: Any = None

    # ------------------------------------------------------------------ plumbing
    def executor(self) -> Executor | None:
        """The process pool (created on first use; None when ``workers == 0``: run inline)."""
        if self.workers <= 0:
            return None
        if self._executor is None:
            import multiprocessing as mp

            from engine.plate import warm_up

            warm_up()  # before the fork: workers inherit loaded parsers and decoders

            # fork: workers start in milliseconds and inherit the imported stack; they open
            # their own ledger readers and signers (nothing of the parent's connection is used).
            ctx = mp.get_context("fork") if os.name == "posix" else mp.get_context()
            self._executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx)
        return self._executor

    def reset_executor(self) -> None:
        """Drop a broken process pool (a worker was killed, e.g. by the OOM killer); the next use forks a new one."""
        if self._executor is not None and getattr(self._executor, "_broken", False):
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def close(self) -> None:
        if self._cert_writer is not None:
            self._cert_writer.close()
            self._cert_writer = None
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self.ledger.close()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def job(self, file_row: dict[str, Any]) -> PlateJob:
        return PlateJob(
            run_id=file_row["sha256"],
            source=file_row["name"],
            archive_path=str(self.data.archive / file_row["sha256"]),
            received_at=file_row["received_at"],
            ledger_path=str(self.data.ledger),
            signer_spec=self.signer_spec,
            lab=self.config.lab,
            default_assay=self.config.default_assay,
            hc1_validity_days=self.config.hc1_validity_days,
            release=self.release_of(file_row),
        )

    def release_of(self, file_row: dict[str, Any]) -> tuple[str, ...]:
        """How this plate's results are released: automatically, held for review, or released by a reviewer (ledger event)."""
        if self.config.release != "review":
            return ("auto",)
        released = self.ledger.events(kind="released", file=file_row["sha256"])
        if not released:
            return ("review",)
        detail = released[-1]["detail"]
        return ("review", str(detail["by"]), str(detail["at"]))

    # ------------------------------------------------------------------ backfill intake
    def ingest_paths(self, paths: Iterable[str | os.PathLike[str]], progress: Callable[[int, int], None] | None = None,
                     refused: Callable[[Path, str], None] | None = None) -> list[Taken]:
        """Receive existing files from anywhere (backfill): archived and recorded, originals left in place.

        Nothing is still being written here, so a file that looks cut short is
        recorded and quarantined at once ("appears truncated"), and an empty one
        is refused with a ``refused`` event; ``refused(path, why)`` hears of both.
        """
        import hashlib

        from parsers import incomplete

        taken = []
        files = _walk(paths)
        for n, path in enumerate(files, 1):
            if progress is not None:
                progress(n, len(files))
            data = path.read_bytes()
            if not data:
                why = "is empty (0 bytes); nothing to take"
                self.ledger.event("refused", None, path=str(path), reason=why)
                log.warning("refused", path=str(path), reason=why)
                if refused is not None:
                    refused(path, why)
                continue
            sha = hashlib.sha256(data).hexdigest()
            kind = kind_of(data[:4096])
            write_archive(self.data.archive, sha, data)
            fresh = self.ledger.receive_file(sha, path.name, len(data), kind)
            cut = incomplete(data, path.name)
            if cut is not None and fresh:
                row = self.ledger.file(sha)
                assert row is not None
                self.quarantine(row, f"appears truncated: {cut}", "truncated")
                if refused is not None:
                    refused(path, f"quarantined, appears truncated: {cut}")
            taken.append(Taken(sha, path.name, kind, fresh, quarantined=cut is not None and fresh))
        return taken

    # ------------------------------------------------------------------ manifests
    def handle_manifest(self, file_row: dict[str, Any]) -> int:
        """Read, validate and commit one manifest (with the correction versions it causes); returns corrections."""
        from engine.manifest import read_manifest

        sha, name = file_row["sha256"], file_row["name"]
        try:
            data = (self.data.archive / sha).read_bytes()
        except OSError as exc:
            self._transient(file_row, f"cannot read the archived copy: {exc}")
            return 0
        try:
            rows = read_manifest(data, name).to_pylist()
        except TruncatedError as exc:
            self.quarantine(file_row, str(exc), "truncated")
            return 0
        except ManifestError as exc:
            self.quarantine(file_row, str(exc), "manifest")
            return 0
        issued_at = utc_instant(file_row["received_at"])
        for _attempt in range(5):
            pending = self.ledger.corrections_for(rows)
            items = []
            if pending:
                latest = self.ledger.latest_versions([c["specimen_id"] for c in pending])
                for c in pending:
                    prev = latest[c["specimen_id"]]
                    payload = corrected_payload(json.loads(prev["payload"]), c["record"], reason=correction_reason(c["changed"], name), issued_at=issued_at)
                    items.append({"payload": payload, "run_id": prev["run_id"]})
            signed = sign_corrections(items, self.signer_spec, self.config.hc1_validity_days) if items else []
            try:
                self.ledger.commit_manifest(sha, rows, signed)
            except ConflictError:
                continue
            SIGNED.inc(len(signed))
            log.info("manifest", file=name, rows=len(rows), corrections=len(signed))
            return len(signed)
        self._transient(file_row, "results kept changing while the manifest's corrections were signed")
        return 0

    def expire_waiting(self) -> int:
        """Quarantine plates that waited longer than ``manifest_wait_hours`` for a manifest (names unknown pools)."""
        from datetime import UTC, datetime, timedelta

        limit = datetime.now(UTC) - timedelta(hours=self.config.intake.manifest_wait_hours)
        expired = 0
        for row in self.ledger.files(["waiting_manifest"], kind="analyzer"):
            if datetime.fromisoformat(row["received_at"].replace("Z", "+00:00")) > limit:
                continue
            waits = self.ledger.events(kind="waiting_manifest", file=row["sha256"])
            missing = waits[-1]["detail"].get("missing_pools", []) if waits else []
            count = waits[-1]["detail"].get("missing", len(missing)) if waits else 0
            self.quarantine(
                row,
                f"{count} pool(s) on this plate are named in no manifest after {self.config.intake.manifest_wait_hours:g} hours,"
                f" e.g. {', '.join(missing[:10])}",
                "unknown_pools",
            )
            expired += 1
        return expired

    def retry_parked(self) -> int:
        """An operator's "try again": parked files go back to received with their attempts reset."""
        rows = self.ledger.files(["parked"])
        for row in rows:
            with self.ledger.transaction():
                self.ledger.conn.execute("UPDATE files SET attempts=0, retry_at=NULL WHERE sha256=?", (row["sha256"],))
            self.ledger.set_file_state(row["sha256"], "received", event="unparked")
        return len(rows)

    # ------------------------------------------------------------------ outcomes
    def quarantine(self, file_row: dict[str, Any], error: str, kind: str) -> None:
        """Copy the file to quarantine/ with a readable ``.error.txt``; ledger state and event."""
        sha, name = file_row["sha256"], file_row["name"]
        base = Path(name).name
        target = self.data.quarantine / base
        if target.exists():
            target = self.data.quarantine / f"{sha[:12]}-{base}"
        try:
            data = (self.data.archive / sha).read_bytes()
            target.write_bytes(data)
        except OSError:
            pass
        report = (
            f"File: {name}\n"
            f"Received: {file_row['received_at']} (SHA-256 {sha})\n"
            f"Problem ({kind}):\n  " + error.replace("\n", "\n  ") + "\n"
            f"What to do: {ADVICE.get(kind, 'Correct the file and drop it in the inbox again.')}\n"
            f"Nothing from this file was signed. The original bytes stay in archive/{sha}.\n"
        )
        target.with_name(target.name + ".error.txt").write_text(report, encoding="utf-8")
        self.ledger.set_file_state(sha, "quarantined", error=error, event="quarantined", reason=kind, copy=target.name)
        QUARANTINED.inc()
        log.warning("quarantined", file=name, reason=kind, error=error.splitlines()[0])

    def _transient(self, file_row: dict[str, Any], error: str) -> None:
        state, _ = self.ledger.note_failure(
            file_row["sha256"], error, max_attempts=self.config.intake.max_attempts, backoff_s=self.config.intake.backoff_seconds
        )
        log.warning("retry" if state == "received" else "parked", file=file_row["name"], error=error)

    def apply(self, outcome: PlateOutcome) -> str:
        """Commit a worker's outcome in the main process; returns "done", "waiting", "retry", "bad", "conflict"."""
        row = self.ledger.file(outcome.run_id)
        if row is None:
            return "bad"
        if outcome.kind == "bad":
            self.quarantine(row, outcome.error or "unreadable", outcome.error_kind or "parse")
            return "bad"
        if outcome.kind == "transient":
            self._transient(row, outcome.error or "transient failure")
            return "retry"
        if outcome.kind == "waiting":
            if outcome.manifest_generation is not None and outcome.manifest_generation != self.ledger.manifest_generation():
                return "conflict"  # a manifest arrived meanwhile: look again now
            if row["state"] != "waiting_manifest":
                self.ledger.set_file_state(
                    outcome.run_id, "waiting_manifest", event="waiting_manifest", missing_pools=outcome.missing_pools[:20], missing=len(outcome.missing_pools)
                )
            return "waiting"
        assert outcome.commit is not None
        try:
            # Held for review: decisions and retests committed, nothing signed, the file waits (state "parsed").
            seqs = self.ledger.commit_plate(outcome.commit, state="parsed" if outcome.kind == "held" else "done")
        except ConflictError as exc:
            log.info("recompute", file=outcome.source, why=str(exc))
            return "conflict"
        PLATES.inc()
        SPECIMENS.inc(len(outcome.commit.specimen_decisions))
        SIGNED.inc(len(seqs))
        log.info("plate", file=outcome.source, specimens=len(outcome.commit.specimen_decisions), signed=len(seqs), **{k: round(v, 3) for k, v in outcome.seconds.items()})
        return "done"

    # ------------------------------------------------------------------ certificates
    def certificate_writer(self) -> Any:
        if self._cert_writer is None:
            from engine.certificates import CertificateWriter

            self._cert_writer = CertificateWriter(self.signer_spec, self.data.certificates, timestamper=self.timestamper)
        return self._cert_writer

    def render_certificates(self, limit: int = 2000) -> int:
        """Render and PAdES-sign certificates for committed results that lack one; returns how many."""
        if not self.certificates_enabled:
            return 0
        total = 0
        while True:
            pending = self.ledger.pending_certificates(limit)
            if not pending:
                return total
            items = [(json.loads(r["payload"]), r["hc1"]) for r in pending]
            paths = self.certificate_writer().write(items)
            if len(paths) != len(pending):
                raise KetquaError(f"certificate writer returned {len(paths)} paths for {len(pending)} results")
            self.ledger.set_certificates([(r["id"], r["version"], str(p)) for r, p in zip(pending, paths)])
            CERTIFICATES.inc(len(paths))
            total += len(paths)

    # ------------------------------------------------------------------ synchronous driver
    def run_once(self, *, stable_seconds: float = 0.0, certificates: bool | None = None,
                 progress: Callable[[dict[str, Any]], None] | None = None) -> Summary:
        """Take everything complete in the inbox and process every pending file to the end."""
        t0 = time.perf_counter()
        summary = Summary()
        before = self.ledger.counts()
        taken = self.intake.scan(stable_seconds=stable_seconds)
        summary.quarantined += sum(1 for t in taken if t.quarantined)
        summary.files = sum(1 for t in taken if t.fresh)
        summary.duplicates = sum(1 for t in taken if not t.fresh)
        FILES.inc(summary.files)
        DUPLICATES.inc(summary.duplicates)
        self.process_pending(summary, progress=progress)
        summary.seconds_to_signed = time.perf_counter() - t0
        if certificates if certificates is not None else self.certificates_enabled:
            summary.certificates = self.render_certificates()
        after = self.ledger.counts()
        summary.signed = after["results"] - before["results"]
        summary.specimens = after["specimen_decisions"] - before["specimen_decisions"]
        summary.outcomes = after["current"]
        summary.retests = after["open_retests"]
        summary.waiting = after["files"].get("waiting_manifest", 0)
        summary.seconds = time.perf_counter() - t0
        return summary

    def process_pending(self, summary: Summary | None = None, *, progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Manifests first, then every received/waiting plate, until nothing changes."""
        summary = summary or Summary()
        now = time.time()
        summary.quarantined += self.expire_waiting()
        for row in self.ledger.files(["received"], kind="manifest"):
            summary.corrections += self.handle_manifest(row)
            summary.manifests += 1
        rows = [r for r in self.ledger.files(["received", "waiting_manifest"], kind="analyzer") if (r["retry_at"] or 0) <= now]
        total = len(rows)
        done = 0
        queue = list(rows)
        executor = self.executor() if len(queue) > 1 else None
        inflight: dict[Future[PlateOutcome], dict[str, Any]] = {}
        limit = max(2, 2 * self.workers)
        while queue or inflight:
            while queue and (executor is None or len(inflight) < limit):
                row = queue.pop(0)
                if executor is None:
                    status = self.apply(process_plate(self.job(row)))
                    done += self._count(status, row, queue, summary)
                    if progress:
                        progress({"done": done, "total": total, **summary.as_dict()})
                    continue
                inflight[executor.submit(process_plate, self.job(row))] = row
            if not inflight:
                continue
            finished, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            for fut in finished:
                row = inflight.pop(fut)
                try:
                    outcome = fut.result()
                except Exception as exc:  # a worker died (OOM, killed): the plate is retried later, not lost
                    if isinstance(exc, BrokenProcessPool):
                        self.reset_executor()
                        executor = self.executor()
                    self._transient(row, f"worker failed: {type(exc).__name__}: {exc}")
                    continue
                done += self._count(self.apply(outcome), row, queue, summary)
                if progress:
                    progress({"done": done, "total": total, **summary.as_dict()})

    def _count(self, status: str, row: dict[str, Any], queue: list[dict[str, Any]], summary: Summary) -> int:
        if status == "conflict":
            queue.append(row)
            return 0
        if status == "done":
            summary.plates += 1
        elif status == "bad":
            summary.quarantined += 1
        return 1


def _walk(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    from engine.intake import ignored

    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out += sorted(f for f in path.rglob("*") if f.is_file() and not f.is_symlink() and not ignored(f.name))
        elif path.is_file():
            out.append(path)
        else:
            raise KetquaError(f"{path}: no such file or folder")
    return out


# ---------------------------------------------------------------------- the service
class Service:
    """The long-running pipeline on one event loop; see :func:`serve`."""

    def __init__(self, engine: Engine, *, queue_size: int | None = None) -> None:
        self.engine = engine
        self.stop = asyncio.Event()
        self.plates: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size or max(4, 4 * max(1, engine.workers)))
        self.queued: set[str] = set()  # in the queue or in a worker: never twice at once
        self.cert_wake = asyncio.Event()
        self.cert_wake.set()  # first thing: finish certificates a previous run left pending
        self.received_at: dict[str, float] = {}

    async def _enqueue(self, sha: str) -> None:
        if sha in self.queued:
            return
        self.queued.add(sha)
        QUEUE.set(len(self.queued))
        await self.plates.put(sha)  # blocks when full: backpressure reaches the watcher

    async def watch(self) -> None:
        """Poll the inbox; handle manifests inline (cheap, serial); queue analyzer files."""
        eng = self.engine
        settings = eng.config.intake
        last_rescan = 0.0
        wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        if eng.intake.start_watch():
            # inotify: wake as soon as a file is renamed into place or closed, instead of at the next poll
            # (a close only wakes the scan: the stable-time and completeness rules still decide).
            loop.add_reader(eng.intake.watch.fd, wake.set)  # type: ignore[union-attr]
        try:
            await self._watch_loop(wake, settings, last_rescan)
        finally:
            if eng.intake.watch is not None:
                loop.remove_reader(eng.intake.watch.fd)
                eng.intake.stop_watch()

    async def _watch_loop(self, wake: asyncio.Event, settings: Any, last_rescan: float) -> None:
        eng = self.engine
        while not self.stop.is_set():
            wake.clear()
            eng.intake.events()
            # Reads and archive copies run in a thread; ledger writes stay on this thread (one writer connection).
            taken = await eng.intake.scan_async()
            manifest_seen = False
            for t in taken:
                (FILES if t.fresh else DUPLICATES).inc()
                if t.fresh and t.kind == "manifest" and not t.quarantined:
                    manifest_seen = True
            now = time.time()
            if manifest_seen or now - last_rescan >= settings.rescan_seconds:
                last_rescan = now
                eng.expire_waiting()
                for row in eng.ledger.files(["received"], kind="manifest"):
                    eng.handle_manifest(row)
                # Also the waiting plates: a manifest may have arrived, or a restart left them behind.
                for row in eng.ledger.files(["received", "waiting_manifest"], kind="analyzer"):
                    if (row["retry_at"] or 0) <= now and row["sha256"] not in self.queued:
                        self.received_at.setdefault(row["sha256"], time.monotonic())
                        await self._enqueue(row["sha256"])
            for t in taken:
                if t.fresh and t.kind == "analyzer" and not t.quarantined:
                    self.received_at[t.sha256] = time.monotonic()
                    await self._enqueue(t.sha256)
            WAITING.set(len(eng.ledger.files(["waiting_manifest"])))
            stop = asyncio.ensure_future(self.stop.wait())
            woke = asyncio.ensure_future(wake.wait())
            await asyncio.wait({stop, woke}, timeout=settings.poll_seconds, return_when=asyncio.FIRST_COMPLETED)
            for fut in (stop, woke):
                fut.cancel()

    async def work(self) -> None:
        """Take plates from the queue, run them in the process pool, commit on this thread."""
        eng = self.engine
        loop = asyncio.get_running_loop()
        while True:
            sha = await self.plates.get()
            try:
                if self.stop.is_set():
                    continue  # abandoned cleanly: still "received" in the ledger, resumed at the next start
                row = eng.ledger.file(sha)
                if row is None or row["state"] not in ("received", "waiting_manifest"):
                    continue
                executor = eng.executor()
                job = eng.job(row)
                for _attempt in range(10):  # conflict: the ledger moved on meanwhile; recompute against it
                    outcome = await loop.run_in_executor(executor, process_plate, job) if executor else process_plate(job)
                    status = eng.apply(outcome)
                    if status != "conflict" or self.stop.is_set():
                        break
                if status == "done":
                    started = self.received_at.pop(sha, None)
                    if started is not None:
                        LATENCY.observe(time.monotonic() - started)
                    self.cert_wake.set()
            except Exception as exc:  # noqa: BLE001 - the engine never stops for one plate
                log.error("plate failed", sha256=sha, error=f"{type(exc).__name__}: {exc}")
                if isinstance(exc, BrokenProcessPool):
                    eng.reset_executor()
                row = eng.ledger.file(sha)
                if row is not None:
                    eng._transient(row, f"{type(exc).__name__}: {exc}")
            finally:
                self.queued.discard(sha)
                QUEUE.set(len(self.queued))
                self.plates.task_done()

    async def certify(self) -> None:
        """Render certificates behind the commits (in a thread; the writer uses its own processes)."""
        while not self.stop.is_set():
            woke = asyncio.ensure_future(self.cert_wake.wait())
            stop = asyncio.ensure_future(self.stop.wait())
            await asyncio.wait({woke, stop}, timeout=5.0, return_when=asyncio.FIRST_COMPLETED)
            for fut in (woke, stop):
                fut.cancel()
            if self.stop.is_set():
                return
            self.cert_wake.clear()
            if not self.engine.certificates_enabled:
                continue
            try:
                await self._certify_batches()
            except Exception as exc:  # noqa: BLE001 - certificates are retried from the ledger
                log.error("certificates failed", error=f"{type(exc).__name__}: {exc}")

    async def _certify_batches(self, limit: int = 500) -> None:
        # Ledger reads/writes stay on the loop thread (one writer connection, no interleaved
        # transactions); only the rendering and PAdES signing run elsewhere.
        eng = self.engine
        while not self.stop.is_set():
            pending = eng.ledger.pending_certificates(limit)
            if not pending:
                return
            items = [(json.loads(r["payload"]), r["hc1"]) for r in pending]
            paths = await asyncio.to_thread(eng.certificate_writer().write, items)
            eng.ledger.set_certificates([(r["id"], r["version"], str(p)) for r, p in zip(pending, paths)])
            CERTIFICATES.inc(len(paths))


async def serve(engine: Engine, *, port: int | None = 8080, host: str = "127.0.0.1", until: asyncio.Event | None = None) -> None:
    """Run watch + pipeline (+ API when ``port`` is not None) until SIGTERM/SIGINT or ``until`` is set.

    On stop: the watcher stops taking files, plates already in a worker finish
    and commit, queued ones are abandoned (they stay ``received`` and resume at
    the next start), then the API closes.
    """
    service = Service(engine)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, service.stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    if stopping.REQUESTED.is_set():  # SIGTERM came while starting up (see engine.stopping)
        log.info("stop requested during start-up")
        service.stop.set()
    runner = None
    if port is not None:
        try:
            from engine.api import create_app, serve as api_serve

            runner = await api_serve(create_app(engine.data, engine.data.ledger), host=host, port=port)
            log.info("api", url=f"http://{host}:{port}/v1/health")
        except ImportError:
            log.warning("api unavailable", why="engine.api is not installed in this build")
    engine.executor()  # fork the workers (warmed up) before the first plate arrives
    workers = [asyncio.create_task(service.work()) for _ in range(max(2, 2 * max(1, engine.workers)))]
    watcher = asyncio.create_task(service.watch())
    certifier = asyncio.create_task(service.certify())
    if until is not None:
        async def relay() -> None:
            await until.wait()
            service.stop.set()
        relay_task = asyncio.create_task(relay())
    await service.stop.wait()
    log.info("stopping", queued=len(service.queued))
    await watcher
    # Drain: queued plates are skipped (abandoned), in-flight ones complete.
    await service.plates.join()
    for task in workers:
        task.cancel()
    # The certificate stage finishes the batch it is signing (the rest resume from the ledger next start).
    try:
        await asyncio.wait_for(certifier, timeout=120)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        pass
    await asyncio.gather(*workers, return_exceptions=True)
    if until is not None:
        relay_task.cancel()
    if runner is not None:
        await runner.cleanup()
    log.info("stopped")


def run_service(engine: Engine, *, port: int | None = 8080, host: str = "127.0.0.1") -> None:
    """Blocking entry point for ``ketqua run`` (uvloop when installed)."""
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - non-POSIX
        runner = asyncio.run
    runner(serve(engine, port=port, host=host))
