"""Corrections from the console: the form's POST, and the four-eyes queue when ``corrections_need_review``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from engine.console.app import PREFIX, USER, client_of, render, require, state_of
from engine.console.corrections import (
    EDITABLE,
    CorrectionError,
    apply_correction,
    check_request,
    who_and_why,
)
from engine.console.pages import versions_of
from engine.errors import LedgerError

_ID = r"{id:[A-Za-z0-9._-]{1,128}}"


def add_routes(app: web.Application) -> None:
    app.router.add_post(f"/results/{_ID}/correct", correct)
    app.router.add_get("/corrections", corrections)
    app.router.add_post("/corrections/{number:[0-9]{1,12}}", decide)


def _form_fields(form: Any) -> dict[str, str]:
    return {k: str(form.get(k, ""))[:300] for k in EDITABLE if k in form}


async def _show_form_again(request: web.Request, result_id: str, values: dict[str, str], reason: str, error: tuple[str, dict[str, Any]]) -> web.Response:
    """The result page with the user's edits kept and what was wrong."""
    state = state_of(request)
    rows = state.ledger.result_versions(result_id)
    versions = versions_of(request, rows)
    specimen = state.store.specimen(rows[0]["specimen_id"]) or {}
    context = {
        "result_id": result_id,
        "versions": versions,
        "latest": versions[-1],
        "specimen": specimen,
        "values": {**specimen, **values},
        "message": None,
        "error": error,
        "reason": reason,
    }
    return render(request, "result.html", context, status=400 if error[0] != "correct.queued" else 200)


@require("correct")
async def correct(request: web.Request) -> web.StreamResponse:
    """A correction with its required reason → a new signed version (or, under four eyes, a request for a reviewer)."""
    state = state_of(request)
    user = request[USER]
    result_id = request.match_info["id"]
    if state.ledger.get_result(result_id) is None:
        raise web.HTTPNotFound()
    form = await request.post()
    fields = _form_fields(form)
    reason = str(form.get("reason", "")).strip()[:300]
    based_on = str(form.get("based_on", ""))
    if not based_on.isdigit():
        raise web.HTTPBadRequest(text="based_on")
    if not reason:
        return await _show_form_again(request, result_id, fields, reason, ("correct.need_reason", {}))
    try:
        latest, record, changed = check_request(state.store, result_id, int(based_on), fields)
        if state.settings.corrections_need_review and user["role"] == "technician":
            number = state.store.request_correction(
                result_id, int(based_on), latest["specimen_id"], {k: record[k] for k in changed}, reason, user["name"], client_of(request)
            )
            return await _show_form_again(request, result_id, {}, "", ("correct.queued", {"n": number}))
        applied = await apply_correction(
            state.store,
            state.data.archive,
            state.signer_spec(),
            state.config.hc1_validity_days,
            result_id=result_id,
            based_on=int(based_on),
            fields=fields,
            reason=who_and_why(reason, user["name"], user["role"]),
        )
    except CorrectionError as exc:
        return await _show_form_again(request, result_id, fields, reason, (exc.key, exc.values))
    state.store.audit(user["name"], "corrected", result_id, client_of(request), version=applied.version, fields=changed, reason=reason)
    raise web.HTTPSeeOther(f"{PREFIX}/results/{result_id}?done={applied.version}")


@require("approve")
async def corrections(request: web.Request) -> web.Response:
    """Corrections waiting for a reviewer, each with its changes and reason."""
    state = state_of(request)
    pending = state.store.corrections("pending")
    for item in pending:
        item["current"] = state.store.specimen(item["specimen_id"]) or {}
    return render(request, "corrections.html", {"pending": pending, "message": request.query.get("m", "")})


@require("approve")
async def decide(request: web.Request) -> web.StreamResponse:
    """Approve (sign the new version, with both names) or reject a waiting correction; never one's own."""
    state = state_of(request)
    user = request[USER]
    number = int(request.match_info["number"])
    item = state.store.correction(number)
    if item is None or item["state"] != "pending":
        raise web.HTTPNotFound()
    if item["requested_by"] == user["name"]:
        raise web.HTTPForbidden()
    form = await request.post()
    if form.get("decision") == "reject":
        state.store.decide_correction(number, "rejected", user["name"], client_of(request))
        raise web.HTTPSeeOther(f"{PREFIX}/corrections")
    requester = state.store.user(item["requested_by"]) or {"role": "technician"}
    try:
        applied = await apply_correction(
            state.store,
            state.data.archive,
            state.signer_spec(),
            state.config.hc1_validity_days,
            result_id=item["result_id"],
            based_on=int(item["based_on"]),
            fields=item["fields"],
            reason=who_and_why(item["reason"], item["requested_by"], requester["role"], (user["name"], user["role"])),
        )
    except CorrectionError as exc:
        try:
            state.store.decide_correction(number, "rejected", user["name"], client_of(request))
        except LedgerError:
            pass
        state.store.audit(user["name"], "correction_failed", str(number), client_of(request), why=exc.key)
        raise web.HTTPSeeOther(f"{PREFIX}/corrections?m={exc.key}")
    state.store.decide_correction(number, "applied", user["name"], client_of(request), version=applied.version)
    raise web.HTTPSeeOther(f"{PREFIX}/results/{item['result_id']}?done={applied.version}")
