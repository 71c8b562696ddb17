"""The console's reading pages: overview, quarantine, search and results, retests, plates, incomplete records, audit."""

from __future__ import annotations

import io
import json
import math
from datetime import datetime, time
from pathlib import Path
from typing import Any

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
from engine.console.store import stamp
from engine.csvsafe import DictWriter
from engine.errors import LedgerError, ParseError
from parsers import parse_bytes
from signing.errors import VerificationError
from signing.jws import verify_compact

_SHA = r"{sha:[0-9a-f]{64}}"
_ID = r"{id:[A-Za-z0-9._-]{1,128}}"


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", overview)
    r.add_get("/live", overview_live)
    r.add_get("/quarantine", quarantine)
    r.add_get(f"/quarantine/{_SHA}", quarantine_file)
    r.add_get(f"/quarantine/{_SHA}/original", quarantine_original)
    r.add_post(f"/quarantine/{_SHA}/dismiss", quarantine_dismiss)
    r.add_get("/search", search)
    r.add_get(f"/results/{_ID}", result_page)
    r.add_get(f"/results/{_ID}/{{version:[0-9]{{1,9}}}}/certificate.pdf", result_certificate)
    r.add_get("/retests", retests)
    r.add_get("/retests.csv", retests_csv)
    r.add_get("/plates", plates)
    r.add_get(f"/plates/{_SHA}", plate)
    r.add_get("/incomplete", incomplete)
    r.add_get("/audit", audit)


# ---------------------------------------------------------------------- overview
def _day_start(request: web.Request) -> tuple[str, str]:
    """The start of the lab's day (a ledger timestamp) and the day as printed."""
    state = state_of(request)
    local = state.now().astimezone(state.settings.zone)
    start = datetime.combine(local.date(), time(0), tzinfo=state.settings.zone)
    return stamp(start), local.strftime("%Y-%m-%d")


def _overview_context(request: web.Request) -> dict[str, Any]:
    state = state_of(request)
    since, day = _day_start(request)
    counts = state.store.day_counts(since)
    if state.config.release != "review" and not counts["release_waiting"]:
        del counts["release_waiting"]  # only labs that release by review have plates waiting for it
    return {
        "counts": counts,
        "day": day,
        "updated": local_time(stamp(state.now()), state),
        "files": state.store.file_states(limit=100),
        "refresh": state.settings.refresh_seconds,
    }


@require("view")
async def overview(request: web.Request) -> web.Response:
    """Today's counts and each file's way from received to certificates written."""
    return render(request, "overview.html", _overview_context(request))


@require("view")
async def overview_live(request: web.Request) -> web.Response:
    """The overview's changing part alone, fetched by console.js every ``refresh_seconds``."""
    return render(request, "live.html", _overview_context(request))


# ---------------------------------------------------------------------- quarantine
def _quarantined_file(request: web.Request) -> dict[str, Any]:
    state = state_of(request)
    sha = request.match_info["sha"]
    row = state.ledger.file(sha)
    if row is None or row["state"] != "quarantined":
        raise web.HTTPNotFound()
    return row


def _report(request: web.Request, row: dict[str, Any]) -> str:
    """The readable ``.error.txt`` the pipeline wrote beside the quarantined copy (the ledger's error if it is gone)."""
    state = state_of(request)
    event = state.ledger.latest_events("quarantined").get(row["sha256"], {})
    copy = event.get("detail", {}).get("copy")
    if copy:
        path = (state.data.quarantine / Path(copy).name).with_name(Path(copy).name + ".error.txt")
        try:
            return path.read_text(encoding="utf-8")
        except OSError:
            pass
    return row.get("error") or ""


@require("view")
async def quarantine(request: web.Request) -> web.Response:
    """Files that were refused, with their reason; ``?dismissed=1`` shows those dismissed."""
    dismissed = request.query.get("dismissed") == "1"
    return render(request, "quarantine.html", {"files": state_of(request).store.quarantined(dismissed=dismissed), "dismissed": dismissed})


@require("view")
async def quarantine_file(request: web.Request) -> web.Response:
    """One refused file: the full report (file, line, field, what to do) and the dismiss form."""
    row = _quarantined_file(request)
    dismissal = state_of(request).store.dismissal(row["sha256"])
    return render(request, "quarantine_file.html", {"file": row, "report": _report(request, row), "dismissal": dismissal, "message": ""})


@require("view")
async def quarantine_original(request: web.Request) -> web.StreamResponse:
    """The original bytes as received (from the archive, by SHA-256), as a download."""
    state = state_of(request)
    row = _quarantined_file(request)
    path = state.data.archive / row["sha256"]
    if not path.is_file():
        raise web.HTTPNotFound()
    state.store.audit(request[USER]["name"], "quarantine_downloaded", row["sha256"], client_of(request))
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in Path(row["name"]).name) or "original"
    return web.FileResponse(
        path, headers={"Content-Type": "application/octet-stream", "Content-Disposition": f'attachment; filename="{safe}"'}
    )


@require("dismiss")
async def quarantine_dismiss(request: web.Request) -> web.StreamResponse:
    """Dismiss with a required reason: recorded in the ledger, nothing deleted."""
    state = state_of(request)
    row = _quarantined_file(request)
    form = await request.post()
    reason = str(form.get("reason", "")).strip()[:500]
    if not reason:
        context = {"file": row, "report": _report(request, row), "dismissal": None, "message": "quarantine.need_reason"}
        return render(request, "quarantine_file.html", context, status=400)
    try:
        state.store.dismiss(row["sha256"], request[USER]["name"], reason, client_of(request))
    except LedgerError:
        raise web.HTTPNotFound() from None
    raise web.HTTPSeeOther(f"{PREFIX}/quarantine")


# ---------------------------------------------------------------------- search and results
def _verify(request: web.Request, jws: str) -> str | None:
    """None when the JWS verifies against the lab's signer, else the reason (shown on the page)."""
    try:
        verify_compact(jws, state_of(request).trust())
    except VerificationError as exc:
        return getattr(exc, "reason", None) or str(exc)
    return None


def versions_of(request: web.Request, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        payload = json.loads(row["payload"])
        out.append({**row, "person": payload.get("person") or {}, "correction": payload.get("correction"), "problem": _verify(request, row["jws"])})
    return out


@require("view")
async def search(request: web.Request) -> web.Response:
    """``?q=`` a specimen id, national id, phone or name (diacritics and case do not matter)."""
    state = state_of(request)
    q = request.query.get("q", "").strip()[:100]
    found = state.store.search(q) if q else []
    results = state.store.results_of([s["specimen_id"] for s in found])
    hits = [{**s, "results": versions_of(request, results.get(s["specimen_id"], []))} for s in found]
    if q:
        state.store.audit(request[USER]["name"], "search", None, client_of(request), hits=len(hits))  # the query itself may be a name: not logged
    return render(request, "search.html", {"q": q, "hits": hits})


@require("view")
async def result_page(request: web.Request) -> web.Response:
    """Every version of one result with its certificate and verification, and the correction form."""
    state = state_of(request)
    rows = state.ledger.result_versions(request.match_info["id"])
    if not rows:
        raise web.HTTPNotFound()
    full = state.store.results_of([rows[0]["specimen_id"]])[rows[0]["specimen_id"]]
    versions = versions_of(request, [r for r in full if r["id"] == rows[0]["id"]])
    specimen = state.store.specimen(rows[0]["specimen_id"]) or {}
    message = request.query.get("done")
    return render(
        request,
        "result.html",
        {
            "result_id": rows[0]["id"],
            "versions": versions,
            "latest": versions[-1],
            "specimen": specimen,
            "values": specimen,
            "message": ("correct.done", {"v": message, "old": int(message) - 1}) if message and message.isdigit() else None,
            "error": None,
            "reason": "",
        },
    )


@require("view")
async def result_certificate(request: web.Request) -> web.StreamResponse:
    """The signed PDF of one version (the /v1 route needs a bearer token; this one a console session)."""
    state = state_of(request)
    row = state.ledger.get_result(request.match_info["id"], int(request.match_info["version"]))
    if row is None or not row.get("certificate"):
        raise web.HTTPNotFound()
    path = Path(row["certificate"])
    path = (path if path.is_absolute() else state.data.root / path).resolve()
    if not path.is_relative_to(state.data.root) or not path.is_file():
        raise web.HTTPNotFound()
    return web.FileResponse(
        path, headers={"Content-Type": "application/pdf", "Content-Disposition": f'inline; filename="{row["id"]}-v{row["version"]}.pdf"'}
    )


# ---------------------------------------------------------------------- retests
@require("view")
async def retests(request: web.Request) -> web.Response:
    """The worklist of individual reruns and re-collections, with why, printable."""
    return render(request, "retests.html", {"rows": state_of(request).store.retests()})


RETEST_COLUMNS = ("specimen_id", "kind", "pool_id", "why", "reason", "source", "created_at", "full_name", "date_of_birth", "collection_site", "collected_at")


@require("view")
async def retests_csv(request: web.Request) -> web.Response:
    """The worklist as CSV (cells a spreadsheet would run as a formula are written inert)."""
    state = state_of(request)
    out = io.StringIO()
    writer = DictWriter(out, fieldnames=RETEST_COLUMNS, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(state.store.retests())
    state.store.audit(request[USER]["name"], "retests_exported", None, client_of(request))
    return web.Response(
        body=("\ufeff" + out.getvalue()).encode("utf-8"),
        headers={"Content-Type": "text/csv; charset=utf-8", "Content-Disposition": 'attachment; filename="retests.csv"'},
    )


# ---------------------------------------------------------------------- plates
@require("view")
async def plates(request: web.Request) -> web.Response:
    return render(request, "plates.html", {"plates": state_of(request).store.plates()})


def plate_grid(pools: list[dict[str, Any]]) -> tuple[list[str], list[str], dict[str, dict[str, Any]]]:
    """Row letters, column numbers and the pool decision at each well of a 96- or 384-well plate."""
    by_well = {p["well"]: p for p in pools if p.get("well")}
    big = any(len(w) > 1 and (w[0] > "H" or (w[1:].isdigit() and int(w[1:]) > 12)) for w in by_well)
    rows, cols = (16, 24) if big else (8, 12)
    return [chr(ord("A") + i) for i in range(rows)], [str(c + 1) for c in range(cols)], by_well


def run_controls(request: web.Request, run: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's control wells (positive, negative, no-template) with their Ct per target, read again from the archived file.

    The ledger keeps pool decisions only; a committed plate's controls passed (a
    failed control quarantines the run), and the original bytes say what they measured.
    """
    state = state_of(request)
    try:
        data = (state.data.archive / run["run_id"]).read_bytes()
        wells = parse_bytes(data, run["source"])
    except (OSError, ParseError):
        return []
    controls: dict[str, dict[str, Any]] = {}
    for row in wells.select(["well", "sample_id", "role", "target", "ct"]).to_pylist():
        if str(row["role"]) not in ("pc", "nc", "ntc"):
            continue
        item = controls.setdefault(row["well"] or row["sample_id"], {"well": row["well"], "sample_id": row["sample_id"], "role": str(row["role"]), "ct": {}})
        ct = row["ct"]
        item["ct"][row["target"]] = None if ct is None or math.isnan(ct) else round(float(ct), 2)
    return list(controls.values())


@require("view")
async def plate(request: web.Request) -> web.Response:
    """The well grid coloured by outcome, Ct per target on each well, run controls, each pool's decision and specimens."""
    run = state_of(request).store.plate(request.match_info["sha"])
    if run is None:
        raise web.HTTPNotFound()
    letters, numbers, by_well = plate_grid(run["pools"])
    controls = run_controls(request, run)
    wells_of_controls = {c["well"]: c for c in controls if c["well"]}
    context = {"run": run, "letters": letters, "numbers": numbers, "by_well": by_well, "controls": controls, "control_at": wells_of_controls}
    return render(request, "plate.html", context)


# ---------------------------------------------------------------------- incomplete records, audit
@require("view")
async def incomplete(request: web.Request) -> web.Response:
    """Results the national platform cannot make an e-certificate from (no national id, birth date or phone)."""
    return render(request, "incomplete.html", {"rows": state_of(request).store.incomplete()})


@require("audit")
async def audit(request: web.Request) -> web.Response:
    return render(request, "audit.html", {"rows": state_of(request).store.audit_trail(limit=300)})

