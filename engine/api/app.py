"""The pull API for the national platform (aiohttp on uvloop).

Routes (all under ``/v1``; every one except ``/v1/health`` needs a bearer token):

- ``GET /v1/results?after=<cursor>&limit=<n>[&wait=<s>]`` — a keyset page over the
  ledger's monotonic ``seq``: JSON ``{"items", "next", "more"}``, or NDJSON (one item
  per line) with ``Accept: application/x-ndjson``; the next cursor is then in the
  ``X-Next-Cursor`` header (and in a ``Link: rel="next"``), sent before the body.
- ``GET /v1/results/{id}[?version=]``, ``…/certificate.pdf``, ``…/fhir``
- ``GET /v1/results/{id}/proof``, ``/v1/log/checkpoint``, ``/v1/log/consistency``: the
  transparency log (:mod:`engine.api.log`, docs/transparency.md)
- ``GET /v1/keys`` (JWKS with ``x5c``), ``/v1/health``, ``/v1/metrics``, ``/v1/openapi.json``
- ``GET /v1/$export`` → 202 + ``Content-Location`` of a job; see :mod:`engine.api.export`.

No gaps, no duplicates: the ledger has one writer and assigns ``seq`` inside the
writing transaction, so once a reader sees ``seq = n`` every smaller ``seq`` is
committed too. A page's upper bound is read *before* anything is streamed and
the cursor points exactly there, so a cursor never passes an uncommitted row.

Items are assembled as bytes from the stored text by :mod:`engine.api.feed` (the
canonical payload and the JWS are already JSON/base64url in the ledger): no
JSON parsing or UTF-8 round trip per item; about 0.8 s of server CPU per 10^5
NDJSON items, and a single GET costs what a bare aiohttp handler does.

Cursors are opaque: base64url of (format version, seq) with an HMAC under a key
kept in ``<data>/keys/api-cursor.key``, so a malformed or forged cursor is a
400, never a 500 and never a silent restart from zero.

Limits and TLS come from :class:`ApiSettings`, or from ``[api]`` in
``<data>/ketqua.toml`` (:func:`api_config`); docs/api.md is the operator's page.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from engine import metrics
from engine.api.cursor import decode_cursor, encode_cursor
from engine.api.export import add_export_routes
from engine.api.guard import _HTTP_LOGGER, guard
from engine.api.log import add_log_routes
from engine.api.openapi import document
from engine.api.settings import ApiSettings, api_config
from engine.api.state import (
    _STATE,
    CURRENT,
    FEED_ITEMS,
    FHIR_JSON,
    FILES,
    LAST_SEQ,
    NDJSON,
    OPEN_RETESTS,
    RESULTS,
    ApiState,
    _state,
    api_state,
)
from engine.datadir import DataDir
from engine.errors import ApiError
from engine.results.payloads import fhir_bundle


def _int_param(request: web.Request, name: str, default: int, lo: int) -> int:
    text = request.query.get(name)
    if text is None or text == "":
        return default
    if text.isascii() and text.isdigit() and len(text) > 18:
        return 10**18  # beyond any ledger: capped by the caller (int() would refuse > 4300 digits)
    try:
        value = int(text)
    except ValueError:
        raise web.HTTPBadRequest(text=f"query parameter {name} must be a whole number, got {text[:40]!r}") from None
    if value < lo:
        raise web.HTTPBadRequest(text=f"query parameter {name} must be at least {lo}, got {value}")
    return value


def _wants_ndjson(request: web.Request) -> bool:
    return NDJSON in request.headers.get("Accept", "")


async def results_feed(request: web.Request) -> web.StreamResponse:
    """A keyset page of signed results after the cursor."""
    state = _state(request)
    s = state.settings
    ndjson = _wants_ndjson(request)
    limit = min(_int_param(request, "limit", s.default_limit, 1), s.max_ndjson_limit if ndjson else s.max_limit)
    after_text = request.query.get("after", "")
    after = decode_cursor(after_text, state.cursor_key) if after_text else 0
    wait_text = request.query.get("wait")
    wait = 0.0
    if wait_text:
        try:
            wait = float(wait_text)
        except ValueError:
            raise web.HTTPBadRequest(text=f"query parameter wait must be seconds, got {wait_text[:40]!r}") from None
        if not (0 <= wait <= s.max_wait_s):
            raise web.HTTPBadRequest(text=f"query parameter wait must be between 0 and {s.max_wait_s:g} seconds, got {wait_text[:40]!r}")

    feed = state.feed
    hi = feed.upper_bound(after, limit)
    if hi <= after and wait > 0:
        # Long poll: hold the request until something is committed after the cursor.
        deadline = time.monotonic() + wait
        while hi <= after and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            hi = feed.upper_bound(after, limit)
    more = feed.last_seq() > hi
    next_cursor = encode_cursor(max(hi, after), state.cursor_key)
    headers = {
        "X-Next-Cursor": next_cursor,
        "X-More": "true" if more else "false",
        "Link": f'</v1/results?after={next_cursor}&limit={limit}>; rel="next"',
        "Cache-Control": "no-store",
    }
    if not ndjson:
        body, count, _ = feed.page(after, hi, limit, b",") if hi > after else (b"", 0, after)
        FEED_ITEMS.inc(count)
        body = body[:-1]  # the last separator
        tail = b'],"next":"%s","more":%s}' % (next_cursor.encode("ascii"), b"true" if more else b"false")
        return web.Response(body=b'{"items":[' + body + tail, content_type="application/json", headers=headers)

    response = web.StreamResponse(headers=headers)
    response.content_type = NDJSON
    response.charset = "utf-8"
    await response.prepare(request)
    pos = after
    sent = 0
    while pos < hi:
        chunk, count, last = feed.page(pos, hi, s.chunk)
        if last <= pos:  # cannot happen while the writer keeps seq dense; never loop forever
            break
        try:
            await response.write(chunk)
        except ConnectionError:  # the consumer went away mid-stream; its cursor has not moved
            FEED_ITEMS.inc(sent)
            return response
        sent += count
        pos = last
    FEED_ITEMS.inc(sent)
    await response.write_eof()
    return response


def _id_version(request: web.Request) -> tuple[str, int | None]:
    rid = request.match_info["id"]
    version = request.query.get("version")
    v: int | None = None
    if version not in (None, ""):
        v = _int_param(request, "version", 1, 1)
        if v > 2**62:
            raise web.HTTPNotFound(text=f"no version {version} of result {rid[:128]} in this ledger")
    if len(rid) > 128:
        raise web.HTTPNotFound(text="no result with this id")
    return rid, v


def _row_for(request: web.Request) -> dict[str, Any]:
    rid, v = _id_version(request)
    row = _state(request).ledger.get_result(rid, v)
    if row is None:
        what = f"version {v} of result {rid}" if v is not None else f"result {rid}"
        raise web.HTTPNotFound(text=f"no {what} in this ledger")
    return row


async def result_one(request: web.Request) -> web.Response:
    """One result version (the latest by default), as a feed item."""
    rid, v = _id_version(request)
    body = _state(request).feed.one(rid, v)
    if body is None:
        what = f"version {v} of result {rid}" if v is not None else f"result {rid}"
        raise web.HTTPNotFound(text=f"no {what} in this ledger")
    return web.Response(body=body, content_type="application/json")


async def result_certificate(request: web.Request) -> web.StreamResponse:
    """The PAdES-signed certificate PDF of one result version."""
    state = _state(request)
    row = _row_for(request)
    if not row.get("certificate"):
        raise web.HTTPNotFound(text="the certificate of this result is not rendered yet; try again in a minute")
    path = Path(row["certificate"])
    if not path.is_absolute():
        path = state.data.root / path
    path = path.resolve()
    # The ledger is trusted, but a path outside the data folder is never served.
    if not path.is_relative_to(state.data.root) or not path.is_file():
        raise web.HTTPNotFound(text="the certificate file of this result is missing from the data folder")
    return web.FileResponse(
        path, headers={"Content-Type": "application/pdf", "Content-Disposition": f'inline; filename="{row["id"]}-v{row["version"]}.pdf"'}
    )


async def result_fhir(request: web.Request) -> web.Response:
    """The result as a FHIR R4 Bundle (Patient, Specimen, Observation, DiagnosticReport)."""
    row = _row_for(request)
    bundle = fhir_bundle(json.loads(row["payload"]), row["jws"])
    return web.Response(text=json.dumps(bundle, ensure_ascii=False), content_type=FHIR_JSON)


async def keys(request: web.Request) -> web.Response:
    """The JWKS that verifies every JWS (and, through ``x5c``, the chain for HC1)."""
    body = await asyncio.get_running_loop().run_in_executor(None, _state(request).jwks_bytes)
    return web.Response(body=body, content_type="application/json", headers={"Cache-Control": "max-age=300"})


async def health(request: web.Request) -> web.Response:
    """Liveness and ledger position; public (no token), so it reveals nothing else."""
    state = _state(request)
    try:
        last = state.ledger.last_seq()
    except Exception:  # a broken ledger is exactly what health must report, not raise
        return web.json_response({"status": "unavailable"}, status=503)
    return web.json_response({"status": "ok", "last_seq": last, "uptime_s": round(time.time() - state.started, 1)})


async def metrics_text(request: web.Request) -> web.Response:
    """Prometheus text: the process's instruments plus ledger totals read now."""
    state = _state(request)
    counts = await state.ledger_counts()
    LAST_SEQ.set(counts["last_seq"])
    RESULTS.set(counts["results"])
    for outcome in ("POSITIVE", "NEGATIVE", "INCONCLUSIVE"):
        CURRENT.labels(outcome).set(counts["current"].get(outcome, 0))
    for file_state, n in counts["files"].items():
        FILES.labels(file_state).set(n)
    OPEN_RETESTS.set(counts["open_retests"])
    return web.Response(
        body=metrics.render().encode("utf-8"), headers={"Content-Type": metrics.CONTENT_TYPE}
    )


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of this server."""
    return web.json_response(document())


def create_app(
    data: DataDir, ledger_path: str | os.PathLike[str] | None = None, *, settings: ApiSettings | None = None
) -> web.Application:
    """The API application over the ledger at ``ledger_path`` (default ``data.ledger``).

    Without ``settings``, the ``[api]`` table of ``<data>/ketqua.toml`` applies (see :func:`api_config`).
    """
    settings = settings or api_config(data)[0]
    state = ApiState(data, Path(ledger_path) if ledger_path is not None else data.ledger, settings)
    app = web.Application(middlewares=[guard], client_max_size=settings.max_request_bytes)
    app[_STATE] = state
    app.router.add_get("/v1/health", health)
    app.router.add_get("/v1/openapi.json", openapi)
    app.router.add_get("/v1/metrics", metrics_text)
    app.router.add_get("/v1/keys", keys)
    app.router.add_get("/v1/results", results_feed)
    app.router.add_get("/v1/results/{id}", result_one)
    app.router.add_get("/v1/results/{id}/certificate.pdf", result_certificate)
    app.router.add_get("/v1/results/{id}/fhir", result_fhir)
    add_log_routes(app)
    add_export_routes(app, state)

    async def _close(_: web.Application) -> None:
        if state.exports is not None:
            await state.exports.shutdown()
        state.close()

    app.on_cleanup.append(_close)
    return app


async def serve(
    app: web.Application, host: str = "127.0.0.1", port: int = 8080, ssl_context: ssl.SSLContext | None = None
) -> web.AppRunner:
    """Start serving ``app``; returns the runner (``await runner.cleanup()`` stops it).

    ``port=0`` picks a free port; the bound port is ``runner.addresses[0][1]``.
    Without ``ssl_context``, TLS (and mutual TLS) comes from ``[api]`` in the
    data folder's ``ketqua.toml`` when it names a certificate; plain HTTP otherwise.
    The default access log is off: :func:`guard` writes one line per request
    without paths, ids or personal data.
    """
    if ssl_context is None and _STATE in app:
        ssl_context = api_config(api_state(app).data)[1]
    # The default access log is off (guard writes the line), and aiohttp's error log goes through _AiohttpLog.
    runner = web.AppRunner(app, access_log=None, handle_signals=False, logger=_HTTP_LOGGER)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context, backlog=1024, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ApiError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return runner

