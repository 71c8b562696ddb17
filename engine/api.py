"""The pull API for the national platform (aiohttp on uvloop).

Routes (all under ``/v1``; every one except ``/v1/health`` needs a bearer token):

- ``GET /v1/results?after=<cursor>&limit=<n>[&wait=<s>]`` — a keyset page over the
  ledger's monotonic ``seq``: JSON ``{"items", "next", "more"}``, or NDJSON (one item
  per line) with ``Accept: application/x-ndjson``; the next cursor is then in the
  ``X-Next-Cursor`` header (and in a ``Link: rel="next"``), sent before the body.
- ``GET /v1/results/{id}[?version=]``, ``…/certificate.pdf``, ``…/fhir``
- ``GET /v1/keys`` (JWKS with ``x5c``), ``/v1/health``, ``/v1/metrics``, ``/v1/openapi.json``
- ``GET /v1/$export`` → 202 + ``Content-Location`` of a job; see :mod:`engine.export`.

No gaps, no duplicates: the ledger has one writer and assigns ``seq`` inside the
writing transaction, so once a reader sees ``seq = n`` every smaller ``seq`` is
committed too. A page's upper bound is read *before* anything is streamed and
the cursor points exactly there, so a cursor never passes an uncommitted row.

Items are assembled as bytes from the stored text by :mod:`engine.feed` (the
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
import base64
import binascii
import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import sqlite3
import ssl
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from engine import metrics
from engine.console import add_console
from engine.datadir import DataDir
from engine.errors import USER_ERRORS, ApiError
from engine.feed import FeedReader, item_json  # noqa: F401  (item_json re-exported)
from engine.ledger import Ledger
from engine.logs import log
from engine.tokens import Principal, TokenCache

_ENABLED = logging.getLogger("ketqua")  # the structured log's own logger: whether an access line is wanted at all


class _AiohttpLog(logging.Filter):
    """aiohttp's own log records, re-emitted as one structured ketqua event without their text.

    aiohttp logs a refused request with the exception's text and a traceback, and
    the text of ``LineTooLong`` (an oversized request line) quotes the request
    line: path, query string, cursor. Only the exception's type, the HTTP status
    and the frames (never the message) reach the log; the original record is dropped.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        fields: dict[str, Any] = {"logger": record.name, "what": str(record.msg)}  # aiohttp's template, not its arguments
        if exc is None:
            (log.warning if record.levelno >= logging.WARNING else log.debug)("http server", **fields)
            return False
        fields["error"] = type(exc).__name__
        status = getattr(exc, "status", None) or getattr(exc, "code", None)
        if isinstance(status, int) and 400 <= status < 500:  # the client's mistake (bad or oversized request line)
            log.warning("http request refused", status=status, **fields)
        else:
            log.error("http server failed", **fields, frames="".join(traceback.format_tb(exc.__traceback__)))
        return False


_AIOHTTP_LOG = _AiohttpLog()
#: The logger aiohttp's request handlers get (see :func:`serve`); aiohttp's own loggers are bridged too.
_HTTP_LOGGER = logging.getLogger("ketqua.api.http")
for _name in ("ketqua.api.http", "aiohttp.server", "aiohttp.web", "aiohttp.access", "aiohttp.internal"):
    if _AIOHTTP_LOG not in logging.getLogger(_name).filters:
        logging.getLogger(_name).addFilter(_AIOHTTP_LOG)

NDJSON = "application/x-ndjson"
PROBLEM = "application/problem+json"
FHIR_JSON = "application/fhir+json"

#: Scope each route needs: None = public, "" = any valid token.
ROUTE_SCOPES: dict[str, str | None] = {
    "/v1/health": None,
    "/v1/openapi.json": "",
    "/v1/metrics": "read:metrics",
    "/v1/keys": "read:results",
    "/v1/results": "read:results",
    "/v1/results/{id}": "read:results",
    "/v1/results/{id}/certificate.pdf": "read:results",
    "/v1/results/{id}/fhir": "read:results",
    "/v1/$export": "read:results",
    "/v1/exports/{job}": "read:results",
    "/v1/exports/{job}/{name}": "read:results",
}

HTTP_REQUESTS = metrics.counter(
    "ketqua_api_requests_total", "API requests answered, by route template and status code", labels=("route", "code")
)
HTTP_LATENCY = metrics.histogram(
    "ketqua_api_request_seconds", "API request handling time until the response starts (seconds)", labels=("route",)
)
FEED_ITEMS = metrics.counter("ketqua_api_feed_items_total", "Result items served through the /v1/results feed")
LAST_SEQ = metrics.gauge("ketqua_ledger_last_seq", "Highest committed result sequence number in the ledger")
RESULTS = metrics.gauge("ketqua_ledger_results", "Signed result versions in the ledger")
CURRENT = metrics.gauge(
    "ketqua_ledger_current_results", "Results not superseded, by outcome", labels=("outcome",)
)
FILES = metrics.gauge("ketqua_ledger_files", "Files received, by state (quarantined, done, ...)", labels=("state",))
OPEN_RETESTS = metrics.gauge("ketqua_ledger_open_retests", "Specimens waiting for an individual run or re-collection")


@dataclass(frozen=True)
class ApiSettings:
    """Limits of the server; defaults suit one national consumer plus monitoring."""

    default_limit: int = 100
    max_limit: int = 1000  # JSON pages: the page is held in memory
    max_ndjson_limit: int = 100_000  # NDJSON pages are streamed in chunks
    chunk: int = 1000  # ledger rows read per step of a stream
    max_wait_s: float = 30.0  # long-poll ceiling for ?wait=
    # Token bucket per token: a consumer reading one result after another (~200/s) never meets it;
    # a runaway loop does, long before it can starve other consumers.
    rate_per_s: float = 500.0
    burst: int = 1000
    max_request_bytes: int = 16 * 1024  # no endpoint takes a body
    token_refresh_s: float = 1.0  # revocations take effect within this
    max_export_jobs: int = 2  # concurrent bulk exports
    # PEM files (leaf first, then its chain) of signer certificates retired by a key rotation:
    # published in /v1/keys beside the current signer so older results still verify.
    previous_signers: tuple[str, ...] = ()


# ---------------------------------------------------------------------- cursors
_CURSOR_VERSION = 1
COUNTS_TTL_S = 5.0  # ledger totals in /v1/metrics are at most this old
_CURSOR_RAW = 1 + 8 + 10  # version byte, seq (uint64 big-endian), HMAC-SHA256 truncated to 80 bits
_CURSOR_TEXT = re.compile(r"^[A-Za-z0-9_-]{26}$")  # unpadded base64url of the 19 bytes: one spelling only


class CursorError(ApiError):
    """A cursor that this server did not issue (malformed, truncated, forged or from another ledger)."""


def cursor_key(data: DataDir) -> bytes:
    """The HMAC key for cursors, created once per data folder (0600) so cursors survive restarts."""
    path = data.keys / "api-cursor.key"
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    data.keys.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def encode_cursor(seq: int, key: bytes) -> str:
    """The opaque cursor meaning "everything after ``seq``"."""
    raw = bytes([_CURSOR_VERSION]) + int(seq).to_bytes(8, "big")
    mac = hmac.new(key, raw, hashlib.sha256).digest()[:10]
    return base64.urlsafe_b64encode(raw + mac).rstrip(b"=").decode("ascii")


def decode_cursor(text: str, key: bytes) -> int:
    """The seq a cursor stands for; :class:`CursorError` when it is not one of ours."""
    if not _CURSOR_TEXT.match(text):
        raise CursorError(
            "the cursor has the wrong length or characters; pass back exactly the 'next' value of a previous page"
        )
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise CursorError("the cursor is not base64url; pass back exactly the 'next' value of a previous page") from None
    if len(raw) != _CURSOR_RAW or raw[0] != _CURSOR_VERSION:
        raise CursorError("the cursor has the wrong length or format version; pass back exactly a 'next' value")
    body, mac = raw[:9], raw[9:]
    if not hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).digest()[:10]):
        raise CursorError("the cursor was not issued by this server (or was altered); restart from a cursor it gave you")
    return int.from_bytes(body[1:], "big")


# ---------------------------------------------------------------------- app state
_STATE = web.AppKey("ketqua_api_state", object)
# aiohttp ≥ 3.12 wants typed request keys; older versions take a plain string.
PRINCIPAL: Any = web.RequestKey("ketqua_principal", Principal) if hasattr(web, "RequestKey") else "ketqua_principal"


class ApiState:
    """What handlers share: the ledger connection, tokens, cursor key, limits, rate buckets."""

    def __init__(self, data: DataDir, ledger_path: Path, settings: ApiSettings) -> None:
        self.data = data
        self.ledger_path = ledger_path
        self.settings = settings
        self.ledger = Ledger.open(ledger_path)  # migrates a fresh file; metrics and row reads
        self.feed = FeedReader(ledger_path)  # the byte-level hot path
        self.tokens = TokenCache(ledger_path, refresh_s=settings.token_refresh_s)
        self.cursor_key = cursor_key(data)
        self._buckets: dict[str, list[float]] = {}
        self._jwks: bytes | None = None
        self.started = time.time()
        self.exports: Any = None  # engine.export.ExportJobs, attached by create_app
        self._counts: dict[str, Any] | None = None
        self._counts_at = 0.0
        self._counts_task: asyncio.Future | None = None

    def close(self) -> None:
        self.tokens.close()
        self.feed.close()
        self.ledger.close()

    async def ledger_counts(self) -> dict[str, Any]:
        """Ledger totals for /v1/metrics, at most every ``COUNTS_TTL_S``, read off the event loop.

        The totals scan whole tables; on a national-scale ledger that takes long
        enough that it must not stall the feed, so a worker thread with its own
        connection reads them, and concurrent scrapes share one read.
        """
        now = time.monotonic()
        if self._counts is not None and now - self._counts_at < COUNTS_TTL_S:
            return self._counts
        if self._counts_task is None:
            def read() -> dict[str, Any]:
                with Ledger.open(self.ledger_path) as ledger:
                    return ledger.counts()

            self._counts_task = asyncio.ensure_future(asyncio.get_running_loop().run_in_executor(None, read))
        task = self._counts_task
        try:
            counts = await asyncio.shield(task)
        finally:
            if self._counts_task is task and task.done():
                self._counts_task = None
        self._counts, self._counts_at = counts, time.monotonic()
        return counts

    def rate_check(self, who: str) -> float:
        """0 when the request may proceed, else the seconds until the token's bucket has a request again."""
        s = self.settings
        now = time.monotonic()
        bucket = self._buckets.get(who)
        if bucket is None:
            bucket = self._buckets[who] = [float(s.burst), now]
        level = min(float(s.burst), bucket[0] + (now - bucket[1]) * s.rate_per_s)
        bucket[1] = now
        if level >= 1.0:
            bucket[0] = level - 1.0
            return 0.0
        bucket[0] = level
        return (1.0 - level) / s.rate_per_s

    def jwks_bytes(self) -> bytes:
        """The JWKS of the configured signer (opened once; a PKCS#11 signer is not kept open)."""
        if self._jwks is None:
            from cryptography.hazmat.primitives import serialization

            from signing.jws import jwks
            from engine.signer import load_signer_spec
            from signing.keys import load_certificates

            signer = load_signer_spec(self.data).open()
            published = jwks(signer)
            known = {k["kid"] for k in published["keys"]}
            for path in self.settings.previous_signers:
                # After a key rotation, results signed by the retired key stay in the feed and must stay verifiable.
                certs = load_certificates(path if Path(path).is_absolute() else self.data.root / path)
                for jwk in jwks(certs[:1])["keys"]:
                    if jwk["kid"] not in known:
                        chain = [c for c in certs[1:] if c.issuer != c.subject]  # roots stay with the verifier
                        jwk["x5c"] += [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode("ascii") for c in chain]
                        published["keys"].append(jwk)
                        known.add(jwk["kid"])
            self._jwks = json.dumps(published, separators=(",", ":")).encode("ascii")
        return self._jwks


def problem(status: int, title: str, detail: str, **headers: str) -> web.Response:
    """An RFC 9457 problem+json response (what went wrong and what to do, never personal data)."""
    body = json.dumps({"type": "about:blank", "title": title, "status": status, "detail": detail})
    return web.Response(status=status, text=body, content_type=PROBLEM, headers=headers or None)


def _state(request: web.Request) -> ApiState:
    return request.app[_STATE]  # type: ignore[return-value]


# ---------------------------------------------------------------------- middleware
def _client_subject(request: web.Request) -> str | None:
    """The verified TLS client certificate's subject (mutual TLS), as ``CN=…,O=…``; None without one."""
    transport = request.transport
    if transport is None:
        return None
    cert = transport.get_extra_info("peercert")
    if not cert:
        return None
    parts = [f"{k}={v}" for rdn in cert.get("subject", ()) for k, v in rdn]
    return ",".join(parts) or None


_ROUTE_INSTRUMENTS: dict[tuple[str, int], tuple[Any, Any]] = {}


@web.middleware
async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Authentication, scope, rate and size limits, error mapping, metrics and the access log line."""
    t0 = time.perf_counter()
    state = _state(request)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    principal: Principal | None = None
    try:
        scope = ROUTE_SCOPES.get(route, "")
        if request.content_length is not None and request.content_length > state.settings.max_request_bytes:
            response: web.StreamResponse = problem(413, "Request too large", "no endpoint of this API takes a request body")
        elif scope is None or resource is None:
            response = await handler(request)
        else:
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            principal = state.tokens.authenticate(token.strip()) if scheme.lower() == "bearer" else None
            if principal is None and (scheme.lower() != "bearer" or not token.strip()):
                response = problem(
                    401,
                    "Unauthorized",
                    "send 'Authorization: Bearer <token>' with a token from `ketqua tokens add`",
                    **{"WWW-Authenticate": 'Bearer realm="ketqua"'},  # RFC 6750 3.1: no error code without credentials
                )
            elif principal is None:
                response = problem(
                    401,
                    "Unauthorized",
                    "token unknown or revoked; ask the lab for a new one (`ketqua tokens add`)",
                    **{"WWW-Authenticate": 'Bearer realm="ketqua", error="invalid_token"'},
                )
            elif scope and scope not in principal.scopes:
                response = problem(
                    403,
                    "Forbidden",
                    f"this token lacks the scope {scope}; create one with `ketqua tokens add --scope {scope}`",
                    **{"WWW-Authenticate": f'Bearer realm="ketqua", error="insufficient_scope", scope="{scope}"'},
                )
            else:
                wait = state.rate_check(principal.token_id)
                if wait > 0:
                    response = problem(
                        429,
                        "Too Many Requests",
                        f"rate limit of {state.settings.rate_per_s:g} requests/s per token exceeded",
                        **{"Retry-After": str(max(1, math.ceil(wait)))},
                    )
                else:
                    request[PRINCIPAL] = principal
                    response = await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400:
            detail = exc.text or exc.reason
            if exc.status == 405:
                detail = f"{request.method} is not allowed here; allowed: {exc.headers.get('Allow', 'GET')}"
            response = problem(exc.status, exc.reason, detail, **{
                k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")
            })
        else:
            raise
    except CursorError as exc:
        response = problem(400, "Bad cursor", str(exc))
    except USER_ERRORS as exc:
        log.warning("api request failed", method=request.method, route=route, error=type(exc).__name__)
        response = problem(503, "Service Unavailable", str(exc))
    except sqlite3.OperationalError as exc:  # ledger busy or its disk full: the consumer should retry
        log.warning("api ledger read failed", method=request.method, route=route, error=type(exc).__name__)
        response = problem(503, "Service Unavailable", "the ledger is busy; retry shortly", **{"Retry-After": "2"})
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # never a stack trace to the client, never personal data in the log
        # Frames only, not the exception's message: a message may quote a payload (names, national ids).
        where = "".join(traceback.format_tb(exc.__traceback__))
        log.error("api request failed", method=request.method, route=route, error=type(exc).__name__, frames=where)
        response = problem(500, "Internal Server Error", "the server failed; the lab's log has the details")
    elapsed = time.perf_counter() - t0
    key = (route, response.status)
    instruments = _ROUTE_INSTRUMENTS.get(key)
    if instruments is None:  # one labels() lookup per (route, status) pair, not per request
        instruments = _ROUTE_INSTRUMENTS[key] = (HTTP_REQUESTS.labels(route, str(response.status)), HTTP_LATENCY.labels(route))
    instruments[0].inc()
    instruments[1].observe(elapsed)
    if _ENABLED.isEnabledFor(logging.INFO):
        log.info(
            "api request",
            method=request.method,
            route=route,  # the template, not the path: ids and cursors stay out of the log
            status=response.status,
            ms=round(elapsed * 1e3, 1),
            token=principal.token_id if principal else "-",
            client=_client_subject(request) or "-",
        )
    return response


# ---------------------------------------------------------------------- handlers
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
        if not (0 <= wait < math.inf):
            raise web.HTTPBadRequest(text="query parameter wait must be a non-negative number of seconds")
        wait = min(wait, s.max_wait_s)

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
    try:
        from engine.payloads import fhir_bundle
    except ImportError as exc:
        raise ApiError("FHIR output is not available in this build (engine.payloads is missing)") from exc

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
    from engine.openapi import document

    return web.json_response(document())


# ---------------------------------------------------------------------- app
def create_app(
    data: DataDir, ledger_path: str | os.PathLike[str] | None = None, *, settings: ApiSettings | None = None
) -> web.Application:
    """The API application over the ledger at ``ledger_path`` (default ``data.ledger``).

    Without ``settings``, the ``[api]`` table of ``<data>/ketqua.toml`` applies (see :func:`api_config`).
    """
    from engine.export import add_export_routes

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
    add_export_routes(app, state)
    ROUTE_SCOPES.update(dict.fromkeys(add_console(app, data, state.ledger_path), None))  # the console checks its own sessions

    async def _close(_: web.Application) -> None:
        if state.exports is not None:
            await state.exports.shutdown()
        state.close()

    app.on_cleanup.append(_close)
    return app


def api_state(app: web.Application) -> ApiState:
    """The shared state of an app made by :func:`create_app` (for the export module and tests)."""
    return app[_STATE]  # type: ignore[return-value]


_TLS_KEYS = ("tls_certificate", "tls_key", "tls_client_ca")


def api_config(data: DataDir) -> tuple[ApiSettings, ssl.SSLContext | None]:
    """Settings and TLS from the ``[api]`` table of ``<data>/ketqua.toml`` (defaults when absent).

    ::

        [api]
        rate_per_s = 500            # per token
        burst = 1000
        max_limit = 1000            # JSON page size cap (NDJSON: max_ndjson_limit)
        tls_certificate = "tls/server.pem"   # paths relative to the data folder
        tls_key = "tls/server.key"
        tls_client_ca = "tls/clients-ca.pem" # set => mutual TLS: a client certificate is required
        previous_signers = ["keys/signer-2026.pem"] # retired signer certificates still published in /v1/keys
    """
    from engine.config import read_config_file

    raw, _ = read_config_file(data)  # checks [api] with api_problems, among all sections
    if raw is None:
        return ApiSettings(), None
    table = raw.get("api", {})
    defaults = ApiSettings()
    values: dict[str, Any] = {"previous_signers": tuple(table.get("previous_signers", ()))}
    for key in (set(defaults.__dataclass_fields__) & set(table)) - {"previous_signers"}:
        values[key] = type(getattr(defaults, key))(table[key])
    settings = ApiSettings(**values)
    tls = {k: table.get(k) for k in _TLS_KEYS}
    if not any(tls.values()):
        return settings, None
    resolve = lambda p: str(p if Path(p).is_absolute() else data.root / p)  # noqa: E731
    client_ca = resolve(tls["tls_client_ca"]) if tls["tls_client_ca"] else None
    return settings, server_ssl_context(resolve(tls["tls_certificate"]), resolve(tls["tls_key"]), client_ca)


def api_problems(table: dict[str, Any]) -> tuple[set[str], list[tuple[str, str]]]:
    """The settings ``[api]`` knows and every problem of their values (see ``engine.config.SECTIONS``)."""
    defaults = ApiSettings()
    known = set(defaults.__dataclass_fields__) | set(_TLS_KEYS)
    problems: list[tuple[str, str]] = []
    previous = table.get("previous_signers", [])
    if not isinstance(previous, list) or not all(isinstance(p, str) for p in previous):
        problems.append(("previous_signers", f"must be a list of certificate file paths, got {previous!r}"))
    for key in sorted((set(defaults.__dataclass_fields__) & set(table)) - {"previous_signers"}):
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            problems.append((key, f"must be a positive number, got {value!r}"))
        elif isinstance(getattr(defaults, key), int) and not isinstance(value, int):
            problems.append((key, f"must be a whole number, got {value!r}"))
    for key in _TLS_KEYS:
        if key in table and not isinstance(table[key], str):
            problems.append((key, f"must be a file path, got {table[key]!r}"))
    if any(table.get(k) for k in _TLS_KEYS) and not (table.get("tls_certificate") and table.get("tls_key")):
        problems.append(("tls_certificate" if not table.get("tls_certificate") else "tls_key", "TLS needs both tls_certificate and tls_key"))
    return known, problems


def server_ssl_context(certfile: str, keyfile: str, client_ca: str | None = None) -> ssl.SSLContext:
    """TLS for the server; with ``client_ca`` every client must present a certificate issued by it (mutual TLS)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(certfile, keyfile)
        if client_ca:
            ctx.load_verify_locations(cafile=client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ApiError(f"cannot set up TLS from {certfile} / {keyfile} / {client_ca}: {exc}") from exc
    return ctx


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
