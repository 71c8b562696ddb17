"""The API's one middleware: authentication, scopes, rate and size limits, error mapping, metrics, access log.

Also bridges aiohttp's own log records into the structured log without their
text (which can quote a request line: path, query, cursor).
"""

from __future__ import annotations

import asyncio
import logging
import math
import sqlite3
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from engine.api.cursor import CursorError
from engine.api.state import (
    HTTP_LATENCY,
    HTTP_REQUESTS,
    PRINCIPAL,
    ROUTE_SCOPES,
    _state,
    error_response,
)
from engine.api.tokens import Principal
from engine.errors import USER_ERRORS
from engine.logs import log

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
        scope = None if route in state.public_routes else ROUTE_SCOPES.get(route, "")
        if request.content_length is not None and request.content_length > state.settings.max_request_bytes:
            response: web.StreamResponse = error_response(route, 413, "Request too large", "no endpoint of this API takes a request body")
        elif scope is None or resource is None:
            response = await handler(request)
        else:
            header = request.headers.get("Authorization", "")
            scheme, _, token = header.partition(" ")
            principal = state.tokens.authenticate(token.strip()) if scheme.lower() == "bearer" else None
            if principal is None and (scheme.lower() != "bearer" or not token.strip()):
                response = error_response(
                    route,
                    401,
                    "Unauthorized",
                    "send 'Authorization: Bearer <token>' with a token from `ketqua tokens add`",
                    **{"WWW-Authenticate": 'Bearer realm="ketqua"'},  # RFC 6750 3.1: no error code without credentials
                )
            elif principal is None:
                response = error_response(
                    route,
                    401,
                    "Unauthorized",
                    "token unknown or revoked; ask the lab for a new one (`ketqua tokens add`)",
                    **{"WWW-Authenticate": 'Bearer realm="ketqua", error="invalid_token"'},
                )
            elif scope and scope not in principal.scopes:
                response = error_response(
                    route,
                    403,
                    "Forbidden",
                    f"this token lacks the scope {scope}; create one with `ketqua tokens add --scope {scope}`",
                    **{"WWW-Authenticate": f'Bearer realm="ketqua", error="insufficient_scope", scope="{scope}"'},
                )
            else:
                wait = state.rate_check(principal.token_id)
                if wait > 0:
                    response = error_response(
                        route,
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
            response = error_response(route, exc.status, exc.reason, detail, **{
                k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")
            })
        else:
            raise
    except CursorError as exc:
        response = error_response(route, 400, "Bad cursor", str(exc))
    except USER_ERRORS as exc:
        log.warning("api request failed", method=request.method, route=route, error=type(exc).__name__)
        response = error_response(route, 503, "Service Unavailable", str(exc))
    except sqlite3.OperationalError as exc:  # ledger busy or its disk full: the consumer should retry
        log.warning("api ledger read failed", method=request.method, route=route, error=type(exc).__name__)
        response = error_response(route, 503, "Service Unavailable", "the ledger is busy; retry shortly", **{"Retry-After": "2"})
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # never a stack trace to the client, never personal data in the log
        # Frames only, not the exception's message: a message may quote a payload (names, national ids).
        where = "".join(traceback.format_tb(exc.__traceback__))
        log.error("api request failed", method=request.method, route=route, error=type(exc).__name__, frames=where)
        response = error_response(route, 500, "Internal Server Error", "the server failed; the lab's log has the details")
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

