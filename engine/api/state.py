"""What every handler of the API shares: its state (ledger, feed, tokens, limits), media types and problems."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import serialization

from engine import metrics
from engine.api.cursor import cursor_key
from engine.api.feed import FeedReader
from engine.api.settings import ApiSettings
from engine.api.tokens import Principal, TokenCache
from engine.datadir import DataDir
from engine.ledger.sqlite import Ledger
from engine.results.payloads import NDJSON  # noqa: F401  (the API's media types in one place)
from engine.results.signer import load_signer_spec
from signing.jws import jwks
from signing.keys import load_certificates

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
    "/v1/results/{id}/proof": "read:results",
    "/v1/log/checkpoint": "read:results",
    "/v1/log/checkpoint/timestamp": "read:results",
    "/v1/log/consistency": "read:results",
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
COUNTS_TTL_S = 5.0  # ledger totals in /v1/metrics are at most this old

_STATE = web.AppKey("ketqua_api_state", object)
# aiohttp ≥ 3.12 wants typed request keys; older versions take a plain string.
PRINCIPAL: Any = web.RequestKey("ketqua_principal", Principal) if hasattr(web, "RequestKey") else "ketqua_principal"


class CheckpointCache:
    """The newest signed checkpoint note the API gave out and its tree size (see :mod:`engine.api.log`)."""

    def __init__(self) -> None:
        self.size = -1
        self.note = b""
        self.origin: str | None = None
        self.lock = asyncio.Lock()  # one signature at a time; concurrent requests share it


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
        self.exports: Any = None  # engine.api.export.ExportJobs, attached by create_app
        self._counts: dict[str, Any] | None = None
        self._counts_at = 0.0
        self._counts_task: asyncio.Future | None = None
        #: Route templates mounted beside the API that authenticate their own users (the console's sessions).
        self.public_routes: set[str] = set()
        self.checkpoints = CheckpointCache()

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


#: FHIR ``IssueType`` codes for the HTTP statuses the bulk routes answer with.
_ISSUE_CODE = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
               406: "not-supported", 413: "too-costly", 429: "throttled", 503: "transient"}


def operation_outcome(status: int, title: str, detail: str, **headers: str) -> web.Response:
    """A FHIR ``OperationOutcome`` error, what the Bulk Data Access IG asks of every ``$export`` error."""
    issue = {"severity": "error" if status < 500 else "fatal", "code": _ISSUE_CODE.get(status, "exception"),
             "diagnostics": f"{title}: {detail}"}
    body = json.dumps({"resourceType": "OperationOutcome", "issue": [issue]}, ensure_ascii=False)
    return web.Response(status=status, text=body, content_type=FHIR_JSON, headers=headers or None)


#: Route templates whose errors are FHIR OperationOutcomes (FHIR Bulk Data) instead of problem+json.
FHIR_ROUTES = ("/v1/$export", "/v1/exports/{job}", "/v1/exports/{job}/{name}")


def error_response(route: str, status: int, title: str, detail: str, **headers: str) -> web.Response:
    """The error body the route's clients expect: OperationOutcome on the bulk routes, problem+json elsewhere."""
    return (operation_outcome if route in FHIR_ROUTES else problem)(status, title, detail, **headers)


def _state(request: web.Request) -> ApiState:
    return request.app[_STATE]  # type: ignore[return-value]


def api_state(app: web.Application) -> ApiState:
    """The shared state of an app made by :func:`create_app` (for the export module and tests)."""
    return app[_STATE]  # type: ignore[return-value]


def add_public_routes(app: web.Application, templates: list[str]) -> None:
    """Routes mounted on the API app that check their own sessions (the console): the bearer guard lets them through."""
    api_state(app).public_routes.update(templates)
