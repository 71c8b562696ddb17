"""The long-running service behind ``ketqua run``: watcher, plate workers, certificates and the API on one loop.

Uses uvloop when installed. CPU stages run in the :class:`~engine.pipeline.engine.Engine`'s
process pool (one whole plate per task); ledger commits stay on the event loop's
thread (the one writer); certificates follow the commits. Stops cleanly on SIGTERM:
plates in a worker finish and commit, queued ones stay ``received`` for the next start.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

try:
    import uvloop
except ImportError:  # pragma: no cover - not installed where uvloop has no wheel (Windows)
    uvloop = None  # type: ignore[assignment]

from aiohttp import web

from engine import metrics, stopping
from engine.api.app import create_app
from engine.api.app import serve as api_serve
from engine.console.mount import add_console
from engine.datadir import DataDir
from engine.logs import log
from engine.pipeline.engine import DUPLICATES, FILES, Engine
from engine.pipeline.outcomes import Applied
from engine.pipeline.plate import process_plate

WAITING = metrics.gauge("ketqua_plates_waiting_manifest", "Plates waiting for their pool manifest")
LATENCY = metrics.histogram("ketqua_plate_latency_seconds", "Plate receipt to signed results committed")
QUEUE = metrics.gauge("ketqua_plate_queue_depth", "Plates queued or in flight")


def server_app(data: DataDir, ledger_path: str | os.PathLike[str] | None = None) -> web.Application:
    """What ``ketqua run`` serves: the pull API, with the lab console mounted under ``/console/``."""
    app = create_app(data, ledger_path)
    add_console(app, data, Path(ledger_path) if ledger_path is not None else data.ledger)
    return app


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
                    if status is not Applied.CONFLICT or self.stop.is_set():
                        break
                if status is Applied.DONE:
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
                    eng.note_transient(row, f"{type(exc).__name__}: {exc}")
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
            pending, items = eng.pending_certificates(limit)
            if not pending:
                return
            paths = await asyncio.to_thread(eng.certificate_writer().write, items)
            eng.record_certificates(pending, paths)


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
        runner = await api_serve(server_app(engine.data, engine.data.ledger), host=host, port=port)
        log.info("api", url=f"http://{host}:{port}/v1/health")
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
    (uvloop.run if uvloop is not None else asyncio.run)(serve(engine, port=port, host=host))
