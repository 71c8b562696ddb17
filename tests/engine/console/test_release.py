"""Release review: with [results] release = "review" a plate's results wait for a named reviewer, whose name and time are signed."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.cli.commands.status import collect as status_collect
from engine.cli.commands.status import render as status_render
from engine.config import read_config_file
from engine.console import console_state
from engine.errors import ConfigError
from engine.ledger import Ledger
from engine.pipeline import Engine
from tests.engine.console.world import (
    ConsoleWorld,
    build_world,
    console_client,
    csrf_of,
    log_in,
    run,
)


@pytest.fixture
def review_world(tmp_path: Path, dev_keys: Path) -> ConsoleWorld:
    """A plate processed under release review: decided, nothing signed."""
    return build_world(tmp_path, dev_keys, config='[results]\nrelease = "review"\n')


def test_auto_release_is_recorded_in_every_payload(world: ConsoleWorld) -> None:
    """By default each signed payload says the rule that released it: auto."""
    with Ledger.open(world.data.ledger, readonly=True) as ledger:
        payloads = [json.loads(r["payload"]) for r in ledger.results()]
    assert payloads and all(p["release"] == {"rule": "auto"} for p in payloads)


def test_release_rule_is_checked(world: ConsoleWorld) -> None:
    """[results] release accepts auto or review only, refused by name."""
    world.data.config.write_text('[results]\nrelease = "sometimes"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[results\] release"):
        read_config_file(world.data)


def test_held_plate_signs_nothing_until_a_reviewer_releases_it(review_world: ConsoleWorld) -> None:
    """Held: decisions and retests, no result, the plate on the release page; released: signed with the reviewer and time."""
    data = review_world.data
    with Ledger.open(data.ledger, readonly=True) as ledger:
        plate = next(f for f in ledger.files(kind="analyzer"))
        assert plate["state"] == "parsed" and ledger.results() == [] and ledger.open_retests()
        assert ledger.conn.execute("SELECT count(*) FROM specimen_decisions").fetchone()[0] == len(review_world.plate.expected)
    snapshot = status_collect(data, now=datetime(2026, 11, 29, 3, 0, tzinfo=UTC))
    assert [p["name"] for p in snapshot["plates_waiting_release"]] == ["plate.txt"]  # `ketqua status` says what waits
    assert "Plates waiting for a reviewer's release" in status_render(snapshot) and "plate.txt  decided" in status_render(snapshot)

    async def go() -> None:
        async with console_client(review_world) as client:
            await log_in(client, "tech")
            assert (await client.get("/console/release")).status == 403  # a technician cannot release
            counts = dict(re.findall(r'id="count-(\w+)">(\d+)<', await (await client.get("/console/")).text()))
            assert counts["release_waiting"] == "1" and counts["results_signed"] == "0"
            client.session.cookie_jar.clear()
            await log_in(client, "rev")
            page = await (await client.get("/console/release")).text()
            assert "plate.txt" in page and "ÂM TÍNH" in page
            done = await client.post(f"/console/release/{plate['sha256']}", data={"csrf_token": csrf_of(page)})
            assert done.status == 200 and "Đã phát hành plate.txt" in await done.text()
            again = await client.post(f"/console/release/{plate['sha256']}", data={"csrf_token": csrf_of(page)})
            assert again.status == 404  # released once
            assert console_state(client.server.app).store.audit_trail()[0]["action"] == "plate_released"

    run(go())
    with Engine(data, workers=0, certificates=False) as engine:
        engine.run_once()
    with Ledger.open(data.ledger, readonly=True) as ledger:
        assert ledger.file(plate["sha256"])["state"] == "done"
        payloads = [json.loads(r["payload"]) for r in ledger.results()]
    signed = sum(1 for o in review_world.plate.expected.values() if o in ("POSITIVE", "NEGATIVE", "INCONCLUSIVE"))
    assert len(payloads) == signed
    assert all(p["release"] == {"rule": "review", "by": "rev", "at": "2026-11-29T03:00:00Z"} for p in payloads)
