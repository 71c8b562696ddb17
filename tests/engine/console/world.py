"""A data folder the real pipeline has worked on, for the console's tests.

One simulated QuantStudio plate and its manifest (pools of 2, so every plate has
detected pools and retests), processed by the real engine: signed results,
retests, a quarantined file. Two people are planted in the manifest: one named
``<script>alert(1)</script>`` (escaping), one ``Nguyễn Văn A`` (search without
diacritics). Times in the ledger are rewritten to a pinned day, so the
overview's "today" never depends on when the suite runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from engine.console import console_state
from engine.console.passwords import hash_password
from engine.console.store import ConsoleStore
from engine.datadir import DataDir
from engine.demo import SimulatedPlate, manifest_csv, quantstudio_text, simulate_plate
from engine.files import write_atomically
from engine.ledger import Ledger
from engine.pipeline import Engine
from engine.pipeline.service import server_app

#: The pinned instant the console believes it is (10:00 in Hồ Chí Minh City), and the day the data is moved to.
NOW = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
DAY = "2026-11-29"
#: Argon2id at its cheapest: the tests check the flow, not the cost (production uses RFC 9106's profile).
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
PASSWORD = "correct horse battery"
XSS = "<script>alert(1)</script>"
NAME = "Nguyễn Văn A"
USERS = {"tech": "technician", "rev": "reviewer", "boss": "admin", "col": "collector"}


@dataclass
class ConsoleWorld:
    data: DataDir
    plate: SimulatedPlate
    xss_specimen: str
    name_specimen: str


def plant(plate: SimulatedPlate) -> tuple[str, str]:
    """Give two NEGATIVE specimens the planted names; returns their ids (xss, name)."""
    negatives = [sid for sid, outcome in plate.expected.items() if outcome == "NEGATIVE"]
    xss, name = negatives[0], negatives[1]
    for row in plate.manifest:
        if row["specimen_id"] == xss:
            row["full_name"] = XSS
            row["address"] = XSS
        if row["specimen_id"] == name:
            row["full_name"] = NAME
            row["national_id"] = ""  # an incomplete record
    return xss, name


def pin_times(ledger_path: Path) -> None:
    """Move every ledger time to the pinned day (same time of day), keeping their order."""
    with Ledger.open(ledger_path) as ledger, ledger.transaction() as conn:
        for table, columns in (("files", ("received_at", "updated_at")), ("runs", ("committed_at",)), ("results", ("created_at",)), ("retests", ("created_at",))):
            for column in columns:
                conn.execute(f"UPDATE {table} SET {column} = ? || substr({column}, 11) WHERE {column} IS NOT NULL", (DAY,))


def build_world(root: Path, dev_keys: Path, *, pin: bool = True, config: str = "") -> ConsoleWorld:
    """The data folder: keys, one processed plate, one quarantined file, console users (times pinned unless ``pin=False``);
    ``config`` is written to ketqua.toml before the pipeline runs."""
    data = DataDir.at(root / "ketqua-data")
    shutil.copytree(dev_keys, data.keys)
    data.create()
    if config:
        data.config.write_text(config, encoding="utf-8")
    plate = simulate_plate(7, pool_size=2, prevalence=0.1)
    xss, name = plant(plate)
    write_atomically(data.inbox / "manifest.csv", manifest_csv(plate.manifest))
    write_atomically(data.inbox / "plate.txt", quantstudio_text(plate))
    write_atomically(data.inbox / "broken-manifest.csv", b"pool_id,specimen_id,full_name\nP1,S1\n")
    with Engine(data, workers=0, certificates=False) as engine:
        engine.run_once()
    if pin:
        pin_times(data.ledger)
    with Ledger.open(data.ledger) as ledger:
        store = ConsoleStore(ledger)
        for user, role in USERS.items():
            store.add_user(user, role, hash_password(PASSWORD, FAST))
    return ConsoleWorld(data, plate, xss, name)


@contextlib.asynccontextmanager
async def console_client(world: ConsoleWorld, **settings: Any) -> AsyncIterator[TestClient]:
    """An aiohttp test client on the full API app (guard included), the console's clock pinned to :data:`NOW`."""
    app = server_app(world.data)
    state = console_state(app)
    state.clock = lambda: NOW
    state.hasher = FAST
    if settings:
        state.settings = replace(state.settings, **settings)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no csrf_token field on the page"
    return match.group(1)


async def log_in(client: TestClient, user: str, password: str = PASSWORD) -> Any:
    """Log in through the form as a browser would (GET the form, POST it with its token)."""
    page = await client.get("/console/login")
    token = csrf_of(await page.text())
    return await client.post("/console/login", data={"username": user, "password": password, "csrf_token": token}, allow_redirects=False)


def run(coro: Any) -> Any:
    return asyncio.run(coro)
