"""The sampling station under ``/console/station/`` (``/station/`` redirects there): card, phone, tube, pool.

Why inside the console app: the same accounts, sessions, anti-forgery tokens
and Content-Security-Policy, with no second cookie scope. A collector (role
``collector``, or an admin) scans the person's chip ID card (a hardware scanner
types the QR text into the focused field and presses Enter), adds the phone
number, scans the tube. The server puts tubes into the open pool of the site's
Dorfman design (``[station] design = "dorfman:K"``); when the pool holds K
tubes, or the collector closes it, its rows become a manifest committed exactly
as a dropped CSV is (:func:`commit_pool`).

Personal data never enters a URL or a log line: the card arrives in a POST
body, the scanned person waits in memory for their tube (keyed by the session's
user), and the open pool's rows wait in ``<data>/station/open.json`` (0600),
so a restart loses no tube already scanned.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from engine.console.app import PREFIX, USER, client_of, language_of, render, state_of
from engine.console.corrections import manifest_bytes
from engine.console.i18n import translator
from engine.console.station_settings import StationSettings, station_settings
from engine.errors import ManifestError
from engine.files import write_atomically
from engine.intake.cccd import Card, CardError, check_rows, parse_card
from engine.intake.manifest import ID_PATTERN, PHONE_PATTERN, read_manifest
from engine.intake.watcher import write_archive
from engine.ledger.sqlite import Ledger
from engine.logs import log

COLLECTORS = frozenset({"collector", "admin"})
STATION: Any = web.AppKey("ketqua_station", object)
_TUBE = re.compile(ID_PATTERN)
_PHONE = re.compile(PHONE_PATTERN)


@dataclass
class OpenPool:
    """The pool being filled: its id and the rows scanned into it (manifest rows without pool_id)."""

    pool_id: str
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Station:
    """The station's state: settings, the open pool (on disk), the card each collector has scanned."""

    settings: StationSettings
    path: Path
    pool: OpenPool | None = None
    next_seq: int = 1
    cards: dict[str, Card] = field(default_factory=dict)
    last: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, settings: StationSettings, path: Path) -> Station:
        station = cls(settings, path)
        if path.exists():
            saved = json.loads(path.read_text(encoding="utf-8"))
            station.next_seq = int(saved["next_seq"])
            if saved.get("pool"):
                station.pool = OpenPool(saved["pool"]["pool_id"], saved["pool"]["rows"])
        return station

    def save(self) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        pool = {"pool_id": self.pool.pool_id, "rows": self.pool.rows} if self.pool else None
        write_atomically(self.path, json.dumps({"next_seq": self.next_seq, "pool": pool}, ensure_ascii=False).encode("utf-8"))
        os.chmod(self.path, 0o600)

    def open_pool(self, now: datetime) -> OpenPool:
        if self.pool is None:
            self.pool = OpenPool(f"ST{now:%Y%m%d}-{self.next_seq:04d}")
            self.next_seq += 1
        return self.pool


def station_of(request: web.Request) -> Station:
    return request.config_dict[STATION]  # type: ignore[no-any-return]


def _collector(request: web.Request) -> str:
    user = request.get(USER)
    if user is None or user["role"] not in COLLECTORS:
        raise web.HTTPForbidden()
    return str(user["name"])


def commit_pool(ledger: Ledger, archive: Path, pool: OpenPool, *, collector: str, site: str, now: datetime) -> str:
    """Commit one pool's rows as a manifest, as the pipeline commits a dropped CSV; returns its SHA-256.

    The CSV is read back with :func:`read_manifest` (every rule of a dropped
    manifest), archived by hash, received as a file of kind ``manifest`` and
    committed with :meth:`Ledger.commit_manifest` (event ``manifest``). An
    event ``station_manifest`` records who collected it, where and when
    (ids and counts only: no personal data in events).
    """
    lines = [manifest_bytes(r["specimen_id"], [pool.pool_id], r, False).split(b"\r\n", 1) for r in pool.rows]
    data = lines[0][0] + b"\r\n" + b"".join(body for _head, body in lines)
    sha = hashlib.sha256(data).hexdigest()
    name = f"station-{pool.pool_id}.csv"
    done = ledger.file(sha)
    if done is not None and done["state"] == "done":
        return sha  # committed before a crash cleared the open pool: the same bytes, nothing to add
    rows = read_manifest(data, name).to_pylist()
    if ledger.corrections_for(rows):
        raise ManifestError("a tube of this pool already has a signed result", source=name, field="specimen_id")
    write_archive(archive, sha, data)
    ledger.receive_file(sha, name, len(data), "manifest")
    findings = check_rows(rows, today=now.date())
    if findings:  # the cards were checked at scan; a phone or tube rule added later would show here as for a dropped file
        ledger.event("record_check", sha, findings=findings[:200], count=len(findings), impossible=sum(1 for f in findings if f["impossible"]))
    ledger.commit_manifest(sha, rows, [])
    ledger.event("station_manifest", sha, pool=pool.pool_id, tubes=len(rows), collector=collector, site=site,
                 collected_at=now.isoformat(timespec="seconds"))
    log.info("station manifest", pool=pool.pool_id, tubes=len(rows))
    return sha


# ---------------------------------------------------------------------- pages
async def page(request: web.Request) -> web.Response:
    """The station: the card field (focused), or the scanned person with the phone and tube fields."""
    user = _collector(request)
    station = station_of(request)
    card = station.cards.get(user)
    pool = station.pool
    context = {
        "card": card,
        "pool": pool,
        "pool_size": station.settings.pool_size,
        "site": station.settings.site,
        "message": station.last.pop(user, ""),
    }
    return render(request, "station.html", context)


def _say(request: web.Request, user: str, key: str, **values: Any) -> None:
    station_of(request).last[user] = translator(language_of(request))(key, **values)


async def scan_card(request: web.Request) -> web.StreamResponse:
    """The scanner typed a card's QR text: parse it strictly; the person waits for their tube."""
    user = _collector(request)
    state = state_of(request)
    form = await request.post()
    station = station_of(request)
    try:
        card = parse_card(str(form.get("qr", "")), today=state.now().astimezone(state.settings.zone).date())
    except CardError as exc:
        station.cards.pop(user, None)
        _say(request, user, "station.card_bad", field=exc.field or "", why=exc.reason)
        state.store.audit(user, "station_card_refused", exc.field, client_of(request))
    else:
        station.cards[user] = card
    raise web.HTTPSeeOther(PREFIX + "/station/")


async def scan_tube(request: web.Request) -> web.StreamResponse:
    """The tube of the scanned person: into the open pool; a full pool becomes a manifest."""
    user = _collector(request)
    state = state_of(request)
    station = station_of(request)
    form = await request.post()
    card = station.cards.get(user)
    tube = str(form.get("tube", "")).strip()
    phone = str(form.get("phone", "")).strip()
    if card is None:
        _say(request, user, "station.no_card")
    elif not _TUBE.match(tube):
        _say(request, user, "station.tube_bad")
    elif not _PHONE.match(phone) or len(phone) > 25:
        _say(request, user, "station.phone_bad")
    elif state.store.specimen(tube) is not None or (station.pool and any(r["specimen_id"] == tube for r in station.pool.rows)):
        _say(request, user, "station.tube_used", tube=tube)
    else:
        now = state.now()
        pool = station.open_pool(now)
        pool.rows.append({"specimen_id": tube, **card.record(), "phone": phone,
                          "collected_at": now.astimezone(state.settings.zone).isoformat(timespec="seconds"),
                          "collection_site": station.settings.site})
        station.cards.pop(user, None)
        station.save()
        state.store.audit(user, "station_tube", tube, client_of(request), pool=pool.pool_id)
        if len(pool.rows) >= station.settings.pool_size:
            _close(request, user, "station.pool_full")
        else:
            _say(request, user, "station.tube_added", tube=tube, pool=pool.pool_id, n=len(pool.rows), k=station.settings.pool_size)
    raise web.HTTPSeeOther(PREFIX + "/station/")


def _close(request: web.Request, user: str, key: str) -> None:
    state = state_of(request)
    station = station_of(request)
    pool = station.pool
    assert pool is not None
    try:
        commit_pool(state.ledger, state.data.archive, pool, collector=user, site=station.settings.site, now=state.now())
    except ManifestError as exc:
        _say(request, user, "station.pool_refused", pool=pool.pool_id, why=exc.reason)
        return
    state.store.audit(user, "station_pool", pool.pool_id, client_of(request), tubes=len(pool.rows))
    station.pool = None
    station.save()
    _say(request, user, key, pool=pool.pool_id, n=len(pool.rows))


async def close_pool(request: web.Request) -> web.StreamResponse:
    """The collector closes the open pool before it is full (end of the session)."""
    user = _collector(request)
    if station_of(request).pool and station_of(request).pool.rows:  # type: ignore[union-attr]
        _close(request, user, "station.pool_closed")
    raise web.HTTPSeeOther(PREFIX + "/station/")


async def to_station(_: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther(PREFIX + "/station/")


def add_routes(app: web.Application, data_root: Path, settings: StationSettings) -> None:
    """The station's routes on the console app, its state kept at ``<data>/station/open.json``."""
    app[STATION] = Station.load(settings, data_root / "station" / "open.json")
    app.router.add_get("/station/", page)
    app.router.add_post("/station/card", scan_card)
    app.router.add_post("/station/tube", scan_tube)
    app.router.add_post("/station/close", close_pool)


__all__ = ["COLLECTORS", "Station", "add_routes", "commit_pool", "station_settings", "to_station"]
