"""The sampling station over HTTP: sign in as a collector, scan cards and tubes, fill a pool, see the manifest; a plate decides it."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from engine.config import read_config_file
from engine.console.station import OpenPool, commit_pool
from engine.console.station_settings import station_problems, station_settings
from engine.demo import manifest_csv, quantstudio_text, simulate_plate
from engine.errors import ConfigError
from engine.files import write_atomically
from engine.ledger import Ledger
from engine.pipeline import Engine
from tests.engine.console.world import (
    ConsoleWorld,
    console_client,
    csrf_of,
    log_in,
    run,
)

SITE = "Trạm Y tế Phường 1"
CONFIG = f'[station]\ndesign = "dorfman:3"\nsite = "{SITE}"\n'
#: Generated cards (province 079 / 001, century+sex digit agreeing with birth and sex).
CARDS = [
    ("079090001234", "Nguyễn Văn An", "02091990", "Nam"),
    ("001185000777", "Trần Thị Bình", "15031985", "Nữ"),
    ("048205123456", "Lê Hoàng Cường", "30122005", "Nam"),
    ("046301654321", "Phạm Thu Dung", "01012001", "Nữ"),
]


def qr(nid: str, name: str, born: str, sex: str) -> str:
    return f"{nid}||{name}|{born}|{sex}|12 Lê Lợi, Phường Bến Nghé|15042021"


async def post(client: TestClient, path: str, **fields: str) -> Any:
    page = await client.get("/console/station/")
    return await client.post(path, data={**fields, "csrf_token": csrf_of(await page.text())}, allow_redirects=False)


async def scan(client: TestClient, card: tuple[str, str, str, str], tube: str, phone: str = "0901 234 567") -> str:
    assert (await post(client, "/console/station/card", qr=qr(*card))).status == 303
    assert (await post(client, "/console/station/tube", tube=tube, phone=phone)).status == 303
    return await (await client.get("/console/station/")).text()


def with_station(world: ConsoleWorld) -> ConsoleWorld:
    world.data.config.write_text(CONFIG, encoding="utf-8")
    return world


def test_station_config_is_checked() -> None:
    assert station_problems({"design": "dorfman:3", "site": SITE})[1] == []
    assert [k for k, _ in station_problems({"design": "array:8x12"})[1]] == ["design"]
    assert sorted(k for k, _ in station_problems({"design": "dorfman:40", "site": 3})[1]) == ["design", "site"]


def test_station_settings_are_read_and_checked_with_ketqua_toml(world: ConsoleWorld) -> None:
    settings = station_settings(with_station(world).data)
    assert (settings.design, settings.pool_size, settings.site) == ("dorfman:3", 3, SITE)
    world.data.config.write_text('[station]\ndesign = "kirkman:15"\nsight = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        read_config_file(world.data)
    assert "[station] design" in str(caught.value) and "sight" in str(caught.value)


def test_a_collector_lands_on_the_station_and_sees_no_lab_page(world: ConsoleWorld) -> None:
    async def go() -> None:
        async with console_client(with_station(world)) as client:
            response = await log_in(client, "col")
            assert response.status == 303 and response.headers["Location"] == "/console/station/"
            page = await client.get("/console/station/")
            assert page.status == 200 and "Trạm lấy mẫu" in await page.text()
            assert "script-src 'self'" in page.headers["Content-Security-Policy"]
            html = await page.text()
            assert html.count("<script") == 1 and '<script src="/console/static/console.js" defer>' in html  # no inline script
            assert html.count('data-camera="qr" hidden') == 1  # the camera button shows only where BarcodeDetector exists
            assert (await client.get("/console/plates")).status == 403
            assert (await client.get("/station/", allow_redirects=False)).headers["Location"] == "/console/station/"

    run(go())


def test_technicians_may_not_collect(world: ConsoleWorld) -> None:
    async def go() -> None:
        async with console_client(with_station(world)) as client:
            await log_in(client, "tech")
            assert (await client.get("/console/station/")).status == 403

    run(go())


def test_a_post_without_the_token_does_nothing(world: ConsoleWorld) -> None:
    async def go() -> None:
        async with console_client(with_station(world)) as client:
            await log_in(client, "col")
            response = await client.post("/console/station/card", data={"qr": qr(*CARDS[0])})
            assert response.status == 403
            assert "Nguyễn Văn An" not in await (await client.get("/console/station/")).text()

    run(go())


def test_a_damaged_card_is_refused_naming_the_field(world: ConsoleWorld) -> None:
    async def go() -> None:
        async with console_client(with_station(world)) as client:
            await log_in(client, "col")
            bad = qr("079190001234", "Nguyễn Văn An", "02091990", "Nam")  # digit 4 = 1: a woman, the card says Nam
            await post(client, "/console/station/card", qr=bad)
            text = await (await client.get("/console/station/")).text()
            assert "Thẻ không hợp lệ (national_id)" in text and "digit 4" in text
            assert 'name="tube"' not in text

    run(go())


def test_a_full_pool_becomes_a_manifest_and_a_plate_decides_it(world: ConsoleWorld) -> None:
    async def go() -> list[str]:
        async with console_client(with_station(world)) as client:
            await log_in(client, "col")
            text = await scan(client, CARDS[0], "TUBE-0001")
            assert "1/3" in text and "TUBE-0001" in text
            await post(client, "/console/station/card", qr=qr(*CARDS[1]))
            shown = await (await client.get("/console/station/")).text()
            assert "Trần Thị Bình" in shown and "Hà Nội" in shown  # the parsed fields, province of birth registration
            await post(client, "/console/station/tube", tube="TUBE-0001", phone="0912 345 678")
            assert "đã được dùng" in await (await client.get("/console/station/")).text()
            await post(client, "/console/station/tube", tube="TUBE-0002", phone="0912 345 678")
            text = await scan(client, CARDS[2], "TUBE-0003")
            assert "đã đủ 3 ống" in text
            text = await scan(client, CARDS[3], "TUBE-0004")
            assert "1/3" in text
            await post(client, "/console/station/close")
            text = await (await client.get("/console/station/")).text()
            assert "đã đóng với 1 ống" in text
        return ["ST20261129-0001", "ST20261129-0002"]

    pools = run(go())
    with Ledger.open(world.data.ledger) as ledger:
        events = ledger.events(kind="station_manifest")
        assert [e["detail"]["pool"] for e in events] == pools
        assert events[0]["detail"] == {"pool": pools[0], "tubes": 3, "collector": "col", "site": SITE,
                                            "collected_at": events[0]["detail"]["collected_at"]}
        assert all("Nguyễn" not in json.dumps(e["detail"], ensure_ascii=False) for e in ledger.events())
        files = [ledger.file(e["file"]) for e in events]
        assert [f["state"] for f in files] == ["done", "done"] and files[0]["kind"] == "manifest"
        spec = ledger.conn.execute("SELECT * FROM specimens WHERE specimen_id='TUBE-0002'").fetchone()
        assert (spec["full_name"], spec["national_id"], spec["date_of_birth"], spec["sex"], spec["phone"], spec["collection_site"]) == (
            "Trần Thị Bình", "001185000777", "1985-03-15", "female", "0912 345 678", SITE)
    # The analyzer file for the station's pools: a simulated negative plate whose first pools are renamed to ours.
    plate = simulate_plate(11, pool_size=3, prevalence=0.0, name="STATION-PLATE")
    renamed = dict(zip(list(dict.fromkeys(r["pool_id"] for r in plate.manifest if r["pool_id"] != r["specimen_id"]))[:2], pools, strict=True))
    plate = replace(plate, wells=[replace(w, sample_name=renamed.get(w.sample_name, w.sample_name), pool_id=renamed.get(w.pool_id or "", w.pool_id)) for w in plate.wells],
                    manifest=[r for r in plate.manifest if r["pool_id"] not in renamed])
    write_atomically(world.data.inbox / "rest.csv", manifest_csv(plate.manifest))
    write_atomically(world.data.inbox / "station-plate.txt", quantstudio_text(plate))
    with Engine(world.data, workers=0, certificates=False) as engine:
        engine.run_once()
    with Ledger.open(world.data.ledger) as ledger:
        latest = ledger.latest_versions(["TUBE-0001", "TUBE-0002", "TUBE-0003", "TUBE-0004"])
        assert sorted(latest) == ["TUBE-0001", "TUBE-0002", "TUBE-0003", "TUBE-0004"]
        payload = json.dumps(json.loads(latest["TUBE-0002"]["payload"]), ensure_ascii=False)
        assert "Trần Thị Bình" in payload and "001185000777" in payload
        assert {v["status"] if "status" in v else json.loads(v["payload"])["outcome"] for v in latest.values()} == {"NEGATIVE"}


def test_impossible_records_in_a_dropped_manifest_are_reported_not_refused(world: ConsoleWorld) -> None:
    """A dropped manifest whose row's CCCD contradicts the sex: accepted, a record_check event, listed in the console."""
    plate = simulate_plate(5, pool_size=3, prevalence=0.0, name="CHECK-PLATE")
    row = next(r for r in plate.manifest if r["national_id"])
    nid = row["national_id"]
    wrong = nid[:3] + str(int(nid[3]) ^ 1) + nid[4:]
    for r in plate.manifest:
        if r["specimen_id"] == row["specimen_id"]:
            r["national_id"] = wrong
    write_atomically(world.data.inbox / "checked.csv", manifest_csv(plate.manifest))
    with Engine(world.data, workers=0, certificates=False) as engine:
        engine.run_once()
    with Ledger.open(world.data.ledger) as ledger:
        event = ledger.events(kind="record_check")[-1]
        assert ledger.file(event["file"])["state"] == "done"
        assert event["detail"]["impossible"] == 1
        assert event["detail"]["findings"] == [{"line": row_line(plate.manifest, row), "specimen_id": row["specimen_id"], "field": "national_id",
                                                "code": "sex", "impossible": True}]
        assert wrong not in json.dumps(event["detail"]) and row["full_name"] not in json.dumps(event["detail"], ensure_ascii=False)

    async def go() -> None:
        async with console_client(world) as client:
            await log_in(client, "tech")
            text = await (await client.get("/console/incomplete")).text()
            assert row["specimen_id"] in text and "chữ số giới tính không khớp" in text and "không thể đúng" in text

    run(go())


def row_line(rows: list[dict[str, Any]], row: dict[str, Any]) -> int:
    return 2 + next(i for i, r in enumerate(rows) if r["specimen_id"] == row["specimen_id"])


def test_a_pool_committed_twice_is_one_manifest(world: ConsoleWorld) -> None:
    """A crash after the commit but before open.json forgot the pool: committing it again adds nothing."""
    now = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
    row = {"specimen_id": "TUBE-9", "full_name": "Nguyễn Văn An", "date_of_birth": "1990-09-02", "sex": "male", "national_id": "079090001234",
           "phone": "", "address": "", "collected_at": "2026-11-29T10:00:00+07:00", "collection_site": SITE}
    pool = OpenPool("ST20261129-0009", [row])
    with Ledger.open(world.data.ledger) as ledger:
        before = len(ledger.events(kind="manifest"))
        first = commit_pool(ledger, world.data.archive, pool, collector="col", site=SITE, now=now)
        assert commit_pool(ledger, world.data.archive, pool, collector="col", site=SITE, now=now) == first
        assert len(ledger.events(kind="manifest")) == before + 1 and len(ledger.events(kind="station_manifest")) == 1
