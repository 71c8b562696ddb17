"""Release review (``[results] release = "review"``): plates decided but not signed, and the reviewer's release."""

from __future__ import annotations

import re

from aiohttp import web

from engine.console.app import (
    PREFIX,
    USER,
    client_of,
    local_time,
    render,
    require,
    state_of,
)
from engine.errors import LedgerError

_SHA = r"{sha:[0-9a-f]{64}}"
_HEX = re.compile(r"^[0-9a-f]{64}$")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/release", waiting)
    app.router.add_post(f"/release/{_SHA}", release)


@require("release")
async def waiting(request: web.Request) -> web.Response:
    """Plates waiting for a reviewer, each with its decisions per outcome and a link to its grid."""
    state = state_of(request)
    released = request.query.get("released", "")
    message = None
    if _HEX.match(released):
        row = state.ledger.file(released)
        events = state.ledger.events(kind="released", file=released)
        if row and events:
            message = {"name": row["name"], "at": local_time(events[-1]["at"], state)}
    context = {"plates": state.store.held_plates(), "review": state.config.release == "review", "message": message}
    return render(request, "release.html", context)


@require("release")
async def release(request: web.Request) -> web.StreamResponse:
    """Release one held plate under the reviewer's name; the pipeline then signs it (at its next rescan)."""
    state = state_of(request)
    sha = request.match_info["sha"]
    try:
        state.store.release(sha, request[USER]["name"], client_of(request))
    except LedgerError:
        raise web.HTTPNotFound() from None
    raise web.HTTPSeeOther(f"{PREFIX}/release?released={sha}")
