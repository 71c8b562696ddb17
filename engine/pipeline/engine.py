"""The pipeline's engine: intake → parse → interpret → decode → sign → commit → certificates.

Two drivers share one :class:`Engine`:

- :meth:`Engine.run_once` — synchronous: take what is in the inbox, process it
  to the end, render certificates, return a :class:`Summary`. Used by
  ``ketqua demo``, ``ketqua ingest`` and the tests.
- :func:`engine.pipeline.service.serve` — the long-running asyncio service (uvloop when available):
  a polling watcher, a bounded queue of plates, CPU stages in a process pool
  (one whole plate per task), ledger commits on the event loop thread (the one
  writer), and a certificate stage behind the commits. Stops cleanly on SIGTERM.

Order guarantees that make a crash harmless: a file is in the ledger before it
leaves the inbox; a plate's decisions and signed results are committed in ONE
transaction that also marks the file done; certificates are rendered after the
commit from what the ledger says is missing, so a restart finishes them.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from engine import metrics
from engine.certificates.writer import CertificateWriter
from engine.config import Config, load_config
from engine.datadir import DataDir
from engine.errors import KetquaError, ManifestError, TruncatedError
from engine.files import write_atomically
from engine.intake.manifest import read_manifest
from engine.intake.watcher import Intake, Taken, ignored, kind_of, write_archive
from engine.ledger.sqlite import ConflictError, Ledger
from engine.logs import log
from engine.pipeline.outcomes import Applied, PlateKind, Refusal, refusal_report
from engine.pipeline.plate import (
    PlateJob,
    PlateOutcome,
    process_plate,
    warm_up,
)
from engine.results.signed import corrected_payload, correction_reason, sign_corrections, utc_instant
from engine.results.signer import load_signer_spec, load_timestamper
from parsers import incomplete
from signing.pades import DevelopmentTimeStamper

FILES = metrics.counter("ketqua_files_total", "Files taken from the inbox (fresh, not duplicates)")
DUPLICATES = metrics.counter("ketqua_duplicate_files_total", "Files whose exact bytes were received before")
PLATES = metrics.counter("ketqua_plates_total", "Plates committed to the ledger")
SPECIMENS = metrics.counter("ketqua_specimens_total", "Specimen decisions committed")
SIGNED = metrics.counter("ketqua_signed_total", "Signed result versions committed")
QUARANTINED = metrics.counter("ketqua_quarantined_total", "Files quarantined (unreadable, failed controls, bad manifest)")
CERTIFICATES = metrics.counter("ketqua_certificates_total", "Signed certificate PDFs written")

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
        self._cert_writer: CertificateWriter | None = None

    # ------------------------------------------------------------------ plumbing
    def executor(self) -> Executor | None:
        """The process pool (created on first use; None when ``workers == 0``: run inline)."""
        if self.workers <= 0:
            return None
        if self._executor is None:
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
        sha, name = file_row["sha256"], file_row["name"]
        try:
            data = (self.data.archive / sha).read_bytes()
        except OSError as exc:
            self.note_transient(file_row, f"cannot read the archived copy: {exc}")
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
        self.note_transient(file_row, "results kept changing while the manifest's corrections were signed")
        return 0

    def expire_waiting(self) -> int:
        """Quarantine plates that waited longer than ``manifest_wait_hours`` for a manifest (names unknown pools)."""
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
            self.ledger.unpark(row["sha256"])
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
            write_atomically(target, data)
        except OSError:
            pass
        report = refusal_report(name, file_row["received_at"], sha, error, kind)
        write_atomically(target.with_name(target.name + ".error.txt"), report.encode("utf-8"))
        self.ledger.set_file_state(sha, "quarantined", error=error, event="quarantined", reason=kind, copy=target.name)
        QUARANTINED.inc()
        log.warning("quarantined", file=name, reason=kind, error=error.splitlines()[0])

    def note_transient(self, file_row: dict[str, Any], error: str) -> None:
        """A failure of the machine, not the file: retried with backoff, parked after ``max_attempts``."""
        state, _ = self.ledger.note_failure(
            file_row["sha256"], error, max_attempts=self.config.intake.max_attempts, backoff_s=self.config.intake.backoff_seconds
        )
        log.warning("retry" if state == "received" else "parked", file=file_row["name"], error=error)

    def apply(self, outcome: PlateOutcome) -> Applied:
        """Commit a worker's outcome in the main process; says what that did."""
        row = self.ledger.file(outcome.run_id)
        if row is None:
            return Applied.BAD
        if outcome.kind is PlateKind.BAD:
            self.quarantine(row, outcome.error or "unreadable", outcome.error_kind or Refusal.PARSE)
            return Applied.BAD
        if outcome.kind is PlateKind.TRANSIENT:
            self.note_transient(row, outcome.error or "transient failure")
            return Applied.RETRY
        if outcome.kind is PlateKind.WAITING:
            if outcome.manifest_generation is not None and outcome.manifest_generation != self.ledger.manifest_generation():
                return Applied.CONFLICT  # a manifest arrived meanwhile: look again now
            if row["state"] != "waiting_manifest":
                self.ledger.set_file_state(
                    outcome.run_id, "waiting_manifest", event="waiting_manifest", missing_pools=outcome.missing_pools[:20], missing=len(outcome.missing_pools)
                )
            return Applied.WAITING
        assert outcome.commit is not None
        try:
            # Held for review: decisions and retests committed, nothing signed, the file waits (state "parsed").
            seqs = self.ledger.commit_plate(outcome.commit, state="parsed" if outcome.kind is PlateKind.HELD else "done")
        except ConflictError as exc:
            log.info("recompute", file=outcome.source, why=str(exc))
            return Applied.CONFLICT
        PLATES.inc()
        SPECIMENS.inc(len(outcome.commit.specimen_decisions))
        SIGNED.inc(len(seqs))
        log.info("plate", file=outcome.source, specimens=len(outcome.commit.specimen_decisions), signed=len(seqs), **{k: round(v, 3) for k, v in outcome.seconds.items()})
        return Applied.DONE

    # ------------------------------------------------------------------ certificates
    def certificate_writer(self) -> CertificateWriter:
        if self._cert_writer is None:
            self._cert_writer = CertificateWriter(self.signer_spec, self.data.certificates, timestamper=self.timestamper)
        return self._cert_writer

    def pending_certificates(self, limit: int) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], str]]]:
        """Up to ``limit`` committed results that lack a certificate, and the (payload, HC1) items to render."""
        pending = self.ledger.pending_certificates(limit)
        # The log index rides beside the payload (it is not signed in it: the log's leaf is the JWS).
        return pending, [({**json.loads(r["payload"]), "log_index": r["log_index"]}, r["hc1"]) for r in pending]

    def record_certificates(self, pending: list[dict[str, Any]], paths: list[Path]) -> int:
        """Note the written PDFs in the ledger; refuses a writer answer that does not match the batch."""
        if len(paths) != len(pending):
            raise KetquaError(f"certificate writer returned {len(paths)} paths for {len(pending)} results")
        self.ledger.set_certificates([(r["id"], r["version"], str(p)) for r, p in zip(pending, paths)])
        CERTIFICATES.inc(len(paths))
        return len(paths)

    def render_certificates(self, limit: int = 2000) -> int:
        """Render and PAdES-sign certificates for committed results that lack one; returns how many."""
        if not self.certificates_enabled:
            return 0
        total = 0
        while True:
            pending, items = self.pending_certificates(limit)
            if not pending:
                return total
            total += self.record_certificates(pending, self.certificate_writer().write(items))

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
                    self.note_transient(row, f"worker failed: {type(exc).__name__}: {exc}")
                    continue
                done += self._count(self.apply(outcome), row, queue, summary)
                if progress:
                    progress({"done": done, "total": total, **summary.as_dict()})

    def _count(self, status: Applied, row: dict[str, Any], queue: list[dict[str, Any]], summary: Summary) -> int:
        if status is Applied.CONFLICT:
            queue.append(row)
            return 0
        if status is Applied.DONE:
            summary.plates += 1
        elif status is Applied.BAD:
            summary.quarantined += 1
        return 1


def _walk(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
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
