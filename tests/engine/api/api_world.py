"""Test support for the pull API: a real ledger of really signed results, and a server on loopback.

Results are built with the real payload builder, signed with the real
development PKI (JWS ES256 + HC1 COSE), and committed plate by plate through
the ledger's own write API, exactly as the pipeline does.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.api import ApiSettings, create_app, serve
from engine.api.tokens import add_token
from engine.config import Lab
from engine.datadir import DataDir
from engine.ledger.sqlite import Ledger, PlateCommit, SignedResult
from engine.results.signed import build_payload, result_id, sign_payload
from engine.results.signer import load_signer_spec
from signing.keys import Signer

_ISSUED = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
LAB = Lab(id="VN-79-TEST", name="Phòng xét nghiệm thử (DEVELOPMENT)", licence="TEST-79")
_SURNAMES = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đặng", "Bùi")
_GIVEN = ("Văn An", "Thị Bình", "Minh Châu", "Quốc Dũng", "Thu Hà", "Đức Huy", "Ngọc Lan", "Thành Long")


@dataclass
class World:
    """A data folder with a development PKI and a ledger, plus the signer that signs its results."""

    data: DataDir
    signer: Signer

    @property
    def ledger_path(self) -> Path:
        return self.data.ledger


def make_world(root: Path) -> World:
    """A fresh data folder whose development PKI exists (so /v1/keys and signing work)."""
    data = DataDir.at(root).create()
    signer = load_signer_spec(data).open()
    Ledger.open(data.ledger).close()
    return World(data, signer)


def signed_plate(world: World, plate_no: int, n: int, *, certificates: bool = False) -> PlateCommit:
    """A plate of ``n`` individually tested specimens, each result signed for real."""
    source = f"plate-{plate_no:05d}.csv"
    run_id = hashlib.sha256(source.encode()).hexdigest()
    results = []
    for i in range(n):
        specimen_id = f"SP{plate_no:05d}{i:03d}"
        rid = result_id(LAB.id, specimen_id, run_id)
        outcome = ("NEGATIVE", "POSITIVE", "INCONCLUSIVE")[0 if i % 7 else (1 if i % 2 else 2)]
        ct = None if outcome == "NEGATIVE" else 24.5 + i % 9
        payload = build_payload(
            id=rid,
            version=1,
            supersedes=None,
            issued_at=_ISSUED,  # after the development certificates' notBefore, as in real operation
            outcome=outcome,
            lab=LAB,
            specimen={
                "specimen_id": specimen_id,
                "full_name": f"{_SURNAMES[i % 8]} {_GIVEN[(i + plate_no) % 8]}",
                "date_of_birth": f"19{50 + i % 50:02d}-0{1 + i % 9}-1{i % 10}",
                "sex": "female" if i % 2 else "male",
                "national_id": f"0792{plate_no:04d}{i:04d}",
                "phone": f"09{plate_no:04d}{i:04d}",
                "address": f"{i} Lê Lợi, Quận 1, TP.HCM",
                "collected_at": "2026-11-01T07:30:00+07:00",
                "collection_site": "Trạm y tế phường Bến Nghé",
            },
            test={"assay": "taqpath", "kit": "TaqPath COVID-19", "method": "RT-PCR", "pooled": False,
                  "pool_id": None, "design": "individual", "decoder": "individual"},
            evidence={"run_id": run_id, "source": source, "instrument": "QuantStudio 5", "rule": "≥2 targets ≤ 37",
                      "pools": [], "ct": {"ORF1ab": ct, "N": ct, "S": ct}},
        )
        canonical, jws, hc1 = sign_payload(payload, world.signer, hc1_validity_days=365)
        results.append(SignedResult(rid, 1, specimen_id, outcome, run_id, canonical, jws, hc1))
    return PlateCommit(run_id=run_id, source=source, metadata={"format": "test"}, wells=n, results=results)


def commit(world: World, plate: PlateCommit, ledger: Ledger | None = None) -> list[int]:
    """Receive the plate's file and commit its results in one transaction, as the pipeline does."""
    own = ledger is None
    ledger = ledger or Ledger.open(world.ledger_path)
    try:
        ledger.receive_file(plate.run_id, plate.source, 1000, "analyzer")
        return ledger.commit_plate(plate)
    finally:
        if own:
            ledger.close()


def token(world: World, *scopes: str, name: str = "test") -> str:
    """A fresh bearer token with the given scopes."""
    return add_token(world.ledger_path, name, list(scopes or ("read:results",)))[0]


class ServerThread:
    """The real API server on a loopback port, in its own thread and event loop (uvloop)."""

    _DEFAULT = ApiSettings(rate_per_s=10_000, burst=10_000, token_refresh_s=0.0)

    def __init__(self, world: World, settings: ApiSettings | None = _DEFAULT, ssl_context: Any = None, port: int = 0) -> None:
        """``settings=None`` takes them from the data folder's ketqua.toml, as ``ketqua run`` does; ``port=0`` picks one."""
        self.world = world
        self.settings = settings
        self.ssl_context = ssl_context
        self.port = port
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self.error: BaseException | None = None

    def _main(self) -> None:
        import uvloop

        loop = uvloop.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            app = create_app(self.world.data, self.world.ledger_path, settings=self.settings)
            self.runner = loop.run_until_complete(serve(app, "127.0.0.1", self.port, ssl_context=self.ssl_context))
            self.port = self.runner.addresses[0][1]
        except BaseException as exc:  # surfaced by start()
            self.error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        pending = asyncio.all_tasks(loop)  # handler tasks of connections the client left open
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()

    def start(self) -> "ServerThread":
        self._thread.start()
        self._ready.wait(30)
        if self.error is not None:
            raise self.error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            # Clean up inside the loop (closes connections, ends handler tasks), then stop it.
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self._loop).result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def request(
        self, path: str, token: str | None = None, *, method: str = "GET", accept: str | None = None,
        headers: dict[str, str] | None = None, body: bytes | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """One plain HTTP request (http.client, no aiohttp on the client side)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        if accept:
            h["Accept"] = accept
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def get_json(self, path: str, token: str | None = None) -> tuple[int, Any]:
        status, _, body = self.request(path, token)
        return status, json.loads(body) if body else None


def superseding_plate(world: World, plate_no: int, previous: list[dict[str, Any]]) -> PlateCommit:
    """A retest plate that signs version n+1 of each given feed item (same id, names the version it supersedes)."""
    from engine.results.signed import corrected_payload

    source = f"retest-{plate_no:05d}.csv"
    run_id = hashlib.sha256(source.encode()).hexdigest()
    results = []
    for item in previous:
        old = item["payload"]
        specimen = {"specimen_id": old["specimen"]["id"], **old["person"], "full_name": old["person"]["full_name"] + " A",
                    "collected_at": old["specimen"]["collected_at"], "collection_site": old["specimen"]["collection_site"]}
        payload = corrected_payload(old, specimen, reason=f"corrected manifest {source}: full_name changed", issued_at=_ISSUED)
        canonical, jws, hc1 = sign_payload(payload, world.signer, hc1_validity_days=365)
        results.append(SignedResult(item["id"], payload["version"], old["specimen"]["id"], payload["outcome"], run_id,
                                    canonical, jws, hc1, supersedes=item["version"]))
    return PlateCommit(run_id=run_id, source=source, metadata={"format": "test"}, wells=len(results), results=results)


def feed_pages(server: ServerThread, tok: str, limit: int, accept: str | None = None) -> list[dict]:
    """Every item of the feed, following cursors page by page."""
    items: list[dict] = []
    after = ""
    for _ in range(1000):
        status, headers, body = server.request(f"/v1/results?limit={limit}&after={after}", tok, accept=accept)
        assert status == 200, body
        if accept == "application/x-ndjson":
            page = [json.loads(line) for line in body.splitlines()]
            after, more = headers["x-next-cursor"], headers["x-more"] == "true"
        else:
            doc = json.loads(body)
            page, after, more = doc["items"], doc["next"], doc["more"]
            assert headers["x-next-cursor"] == after
        items.extend(page)
        if not more:
            return items
    raise AssertionError("the feed never ended")
