"""Bulk export for catch-up, as the FHIR Bulk Data Access IG (v2) defines ``$export``.

A consumer that is far behind (a new national platform, a restored backup)
asks once instead of paging through millions of results:

1. Kick-off: ``GET /v1/$export`` with ``Prefer: respond-async`` (required) and
   ``Accept: application/fhir+json``; parameters ``_type`` (``Bundle``, the default:
   one FHIR R4 Bundle per result version; ``Result``: ketqua's own signed-result
   items, explicitly not FHIR), ``_outputFormat`` (``application/fhir+ndjson``, the
   default, or ``application/x-ndjson`` for ketqua's items), ``_since`` (a FHIR
   instant: results committed at or after it) and ``after`` (a feed cursor).
   → ``202 Accepted`` with ``Content-Location``: the absolute status URL.
2. Status: ``GET /v1/exports/<job>`` → ``202`` with ``X-Progress`` and ``Retry-After``
   while it runs, then ``200`` with the manifest: ``transactionTime``, ``request``
   (the kick-off's absolute URL), ``requiresAccessToken``, ``output`` (``type``,
   absolute ``url``, ``count`` per NDJSON file), ``error`` (NDJSON files of
   OperationOutcomes), and ``next``: the feed cursor right after the last exported
   result, so the consumer continues with ``/v1/results?after=<next>`` without gap
   or overlap. ``Expires`` says when the files are removed.
3. Files: ``GET /v1/exports/<job>/<file>`` (``application/fhir+ndjson`` for Bundles,
   ``application/x-ndjson`` for Results); ``DELETE /v1/exports/<job>`` cancels and
   removes them. Every error of these routes is a FHIR OperationOutcome.

The snapshot is every result up to the ledger's last ``seq`` at kick-off. Files
are written by a worker thread with its own ledger connection under
``<data>/exports/<job>/`` (the manifest there survives a restart; a job cut by a
restart is gone and the consumer kicks off again). URLs are absolute from the
request's own scheme and host (``Host``, or ``X-Forwarded-Proto``/``-Host`` when a
proxy in front sets them).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any

from aiohttp import web

from engine.api.cursor import CursorError, decode_cursor, encode_cursor
from engine.api.feed import FeedReader
from engine.api.state import ApiState
from engine.files import write_atomically
from engine.ledger.sqlite import Ledger
from engine.results.payloads import NDJSON, fhir_bundle

EXPORT_TYPES = ("Bundle", "Result")  # Bundle: FHIR R4; Result: ketqua's signed-result item (not FHIR)
FHIR_NDJSON = "application/fhir+ndjson"
#: ``_outputFormat`` spellings the IG names for FHIR NDJSON, and the one for ketqua's own items.
FHIR_FORMATS = (FHIR_NDJSON, "application/ndjson", "ndjson")
MEDIA_TYPES = {"Bundle": FHIR_NDJSON, "Result": NDJSON}
EXPORT_KEEP_S = 24 * 3600  # finished exports are deleted a day after they completed (at the next kick-off)
FILE_ITEMS = 50_000  # items per NDJSON file: small enough to retry one download, large enough to be few
_JOB = re.compile(r"^[0-9a-f]{32}$")
_FILE = re.compile(r"^(result|bundle|error)-\d{4}\.ndjson$")


@dataclass
class ExportJob:
    """One bulk export: its snapshot bounds, progress and output files."""

    id: str
    types: tuple[str, ...]
    after: int
    upto: int
    request: str
    transaction_time: str
    folder: Path
    done: int = 0
    finished: bool = False
    error: str | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    task: asyncio.Future | None = None

    base: str = ""  # scheme://host of the kick-off request: file URLs are absolute
    errors: list[dict[str, Any]] = field(default_factory=list)

    def manifest(self, next_cursor: str) -> dict[str, Any]:
        return {
            "transactionTime": self.transaction_time,
            "request": self.request,
            "requiresAccessToken": True,
            "output": self.outputs,
            "error": self.errors,
            "next": next_cursor,
        }


class ExportJobs:
    """The running and finished export jobs of one server."""

    def __init__(self, state: ApiState) -> None:
        self.state = state
        self.root = state.data.exports
        self.jobs: dict[str, ExportJob] = {}

    def running(self) -> int:
        return sum(1 for j in self.jobs.values() if not j.finished)

    def start(self, types: tuple[str, ...], after: int, request: str, base: str) -> ExportJob:
        self._forget_old()
        upto = self.state.ledger.last_seq()
        job_id = secrets.token_hex(16)
        job = ExportJob(
            id=job_id,
            types=types,
            after=after,
            upto=max(upto, after),
            request=request,
            transaction_time=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            folder=self.root / job_id,
            base=base,
        )
        self.jobs[job_id] = job
        job.task = asyncio.get_running_loop().run_in_executor(None, self._run, job)
        return job

    def _run(self, job: ExportJob) -> None:
        """Worker thread: write the snapshot (after, upto] as NDJSON files, then the manifest."""
        job.folder.mkdir(parents=True, exist_ok=True)
        ledger = Ledger.open(self.state.ledger_path)
        feed = FeedReader(self.state.ledger_path)
        files: dict[str, Any] = {}
        current: dict[str, dict[str, Any]] = {}  # kind -> its open output entry
        index: dict[str, int] = {}
        pos = job.after
        try:
            bundle = fhir_bundle if "Bundle" in job.types else None
            while pos < job.upto and not job.cancel.is_set():
                step = min(5000, job.upto - pos)
                rows = ledger.feed_page(pos, step) if "Bundle" in job.types else []
                parts, last = feed.items(pos, job.upto, step)
                if last <= pos:
                    break
                for kind in job.types:
                    lines = (
                        parts
                        if kind == "Result"
                        else [
                            json.dumps(bundle(json.loads(r["payload"]), r["jws"]), ensure_ascii=False).encode("utf-8")  # type: ignore[misc]
                            for r in rows
                        ]
                    )
                    start = 0
                    while start < len(lines):
                        if kind not in files or current[kind]["count"] >= FILE_ITEMS:
                            if kind in files:
                                files[kind].close()
                            index[kind] = index.get(kind, 0) + 1
                            name = f"{kind.lower()}-{index[kind]:04d}.ndjson"
                            files[kind] = open(job.folder / name, "wb")
                            current[kind] = {"type": kind, "url": f"{job.base}/v1/exports/{job.id}/{name}", "count": 0}
                            job.outputs.append(current[kind])
                        take = lines[start : start + FILE_ITEMS - current[kind]["count"]]
                        files[kind].write(b"\n".join(take) + b"\n")
                        current[kind]["count"] += len(take)
                        start += len(take)
                pos = last
                job.done = pos - job.after
        except Exception as exc:  # reported in the manifest (an OperationOutcome file); the server stays up
            job.error = f"export stopped: {type(exc).__name__}"
            outcome = {"resourceType": "OperationOutcome",
                       "issue": [{"severity": "error", "code": "exception", "diagnostics": f"{job.error}; kick off again from the manifest's next"}]}
            write_atomically(job.folder / "error-0001.ndjson", json.dumps(outcome).encode("utf-8") + b"\n")
            job.errors = [{"type": "OperationOutcome", "url": f"{job.base}/v1/exports/{job.id}/error-0001.ndjson"}]
        finally:
            # The manifest's `next` is where the files really end (a cancel or an error stops early):
            # a consumer continuing the feed from it misses nothing.
            job.upto = min(job.upto, pos)
            for fh in files.values():
                fh.close()
            feed.close()
            ledger.close()
        if job.cancel.is_set():
            shutil.rmtree(job.folder, ignore_errors=True)
        else:

            manifest = job.manifest(encode_cursor(job.upto, self.state.cursor_key))
            write_atomically(job.folder / "manifest.json", json.dumps(manifest).encode("utf-8"))
        job.finished = True

    def _forget_old(self) -> None:
        """Drop finished jobs from memory (their manifest is on disk) and delete exports older than a day."""
        for job_id in [j for j, job in self.jobs.items() if job.finished]:
            del self.jobs[job_id]
        if not self.root.is_dir():
            return
        cutoff = time.time() - EXPORT_KEEP_S
        for folder in self.root.iterdir():
            manifest = folder / "manifest.json"
            if _JOB.match(folder.name) and manifest.exists() and manifest.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)

    def completed_at(self, job_id: str) -> float | None:
        """When a finished job's manifest was written (its files go ``EXPORT_KEEP_S`` later)."""
        try:
            return (self.root / job_id / "manifest.json").stat().st_mtime
        except OSError:
            return None

    def manifest_on_disk(self, job_id: str) -> dict[str, Any] | None:
        path = self.root / job_id / "manifest.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    async def shutdown(self) -> None:
        for job in self.jobs.values():
            job.cancel.set()
        tasks = [j.task for j in self.jobs.values() if j.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def add_export_routes(app: web.Application, state: ApiState) -> None:
    """Register the $export kick-off, status, download and cancel routes on ``app``."""

    jobs = ExportJobs(state)
    state.exports = jobs

    async def kickoff(request: web.Request) -> web.Response:
        if "respond-async" not in request.headers.get("Prefer", ""):
            raise web.HTTPBadRequest(text="send 'Prefer: respond-async': a bulk export always answers asynchronously")
        accept = request.headers.get("Accept", "*/*")
        if not any(t in accept for t in ("application/fhir+json", "application/json", "*/*")):
            raise web.HTTPNotAcceptable(text="status and errors of a bulk export are application/fhir+json")
        fmt = request.query.get("_outputFormat")
        if fmt is not None:
            fmt = fmt.replace(" ", "+")  # an unescaped '+' in a query string arrives as a space
        if fmt is not None and fmt not in FHIR_FORMATS + (NDJSON,):
            raise web.HTTPBadRequest(text=f"_outputFormat must be {FHIR_NDJSON} (FHIR Bundles) or {NDJSON} (ketqua's signed-result items)")
        default = "Result" if fmt == NDJSON else "Bundle"
        types = tuple(dict.fromkeys(t.strip() for t in request.query.get("_type", default).split(",") if t.strip()))
        unknown = [t for t in types if t not in EXPORT_TYPES]
        if not types or unknown:
            raise web.HTTPBadRequest(text=f"_type must be a comma-separated list of {', '.join(EXPORT_TYPES)}")
        if fmt in FHIR_FORMATS and "Result" in types:
            raise web.HTTPBadRequest(text=f"Result is ketqua's signed-result item, not a FHIR resource: ask _outputFormat={NDJSON} for it")
        if fmt == NDJSON and "Bundle" in types:
            raise web.HTTPBadRequest(text=f"Bundle is FHIR: ask _outputFormat={FHIR_NDJSON} for it")
        after_text = request.query.get("after", "")
        try:
            after = decode_cursor(after_text, state.cursor_key) if after_text else 0
        except CursorError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        since = request.query.get("_since")
        if since is not None:
            after = max(after, state.ledger.last_seq_before(_fhir_instant(since)))
        if jobs.running() >= state.settings.max_export_jobs:
            raise web.HTTPTooManyRequests(
                text="too many exports running; wait for one to finish", headers={"Retry-After": "10"}
            )
        base = _base_url(request)
        job = jobs.start(types, after, base + str(request.rel_url), base)
        status_url = f"{base}/v1/exports/{job.id}"
        return web.json_response({"job": job.id, "status": status_url}, status=202, headers={"Content-Location": status_url})

    def _job_id(request: web.Request) -> str:
        job_id = request.match_info["job"]
        if not _JOB.match(job_id):
            raise web.HTTPNotFound(text="no export job with this id")
        return job_id

    async def status(request: web.Request) -> web.Response:
        job_id = _job_id(request)
        job = jobs.jobs.get(job_id)
        if job is not None and not job.finished:
            total = max(1, job.upto - job.after)
            return web.json_response(
                {"status": "in-progress", "progress": round(job.done / total, 3)},
                status=202,
                headers={"X-Progress": f"{100 * job.done // total}%", "Retry-After": "1"},
            )
        if job is not None and job.cancel.is_set():
            raise web.HTTPNotFound(text="this export job was cancelled")
        manifest = jobs.manifest_on_disk(job_id)
        if manifest is None:
            raise web.HTTPNotFound(text="no export job with this id (jobs cut by a restart are gone: kick off again)")
        expires = _http_date(jobs.completed_at(job_id) + EXPORT_KEEP_S)
        return web.json_response(manifest, headers={"Expires": expires} if expires else None)

    async def download(request: web.Request) -> web.StreamResponse:
        job_id = _job_id(request)
        name = request.match_info["name"]
        path = state.data.exports / job_id / name
        if not _FILE.match(name) or not path.is_file() or not (state.data.exports / job_id / "manifest.json").exists():
            raise web.HTTPNotFound(text="no such export file (is the job finished? see its manifest)")
        kind = "Result" if name.startswith("result-") else "Bundle"
        media = MEDIA_TYPES[kind] if not name.startswith("error-") else FHIR_NDJSON
        return web.FileResponse(path, headers={"Content-Type": media})

    async def cancel(request: web.Request) -> web.Response:
        job_id = _job_id(request)
        job = jobs.jobs.pop(job_id, None)
        folder = state.data.exports / job_id
        if job is None and not folder.exists():
            raise web.HTTPNotFound(text="no export job with this id")
        if job is not None:
            job.cancel.set()
            if job.task is not None:
                await asyncio.gather(job.task, return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(None, lambda: shutil.rmtree(folder, ignore_errors=True))
        return web.json_response({"status": "cancelled"}, status=202)

    app.router.add_get("/v1/$export", kickoff)
    app.router.add_get("/v1/exports/{job}", status)
    app.router.add_delete("/v1/exports/{job}", cancel)
    app.router.add_get("/v1/exports/{job}/{name}", download)


def _base_url(request: web.Request) -> str:
    """``scheme://host[:port]`` the client used, so every URL in a manifest is absolute (the IG requires it)."""
    scheme = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
    host = request.headers.get("X-Forwarded-Host", request.host).split(",")[0].strip()
    return f"{scheme}://{host}"


def _fhir_instant(text: str) -> str:
    """A FHIR ``instant`` (``_since``) as the ledger's UTC text, or 400 naming the expected form."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise web.HTTPBadRequest(text=f"_since must be a FHIR instant such as 2026-06-01T08:00:00Z, got {text[:40]!r}") from None
    if moment.tzinfo is None:
        raise web.HTTPBadRequest(text="_since needs a time zone (a FHIR instant), e.g. 2026-06-01T08:00:00+07:00")
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _http_date(when: float | None) -> str | None:
    return None if when is None else formatdate(when, usegmt=True)
