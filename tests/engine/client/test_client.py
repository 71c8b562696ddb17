"""Tests of the reference pull client (engine.client, `ketqua pull`) against the real server on loopback."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509

from engine.cli.main import main
from engine.client.puller import PullClient, read_results
from engine.errors import ApiError, VerificationError
import signing.dcc as dcc
from signing.hc1 import decode_hc1
from signing.pki import ensure_development_pki
from tests.engine.api.api_world import (
    ServerThread,
    World,
    commit,
    make_world,
    signed_plate,
    superseding_plate,
    token,
)


def _ca(world: World) -> list[x509.Certificate]:
    return [x509.load_pem_x509_certificate((world.data.keys / "ca.pem").read_bytes())]


def _pull(url: str, tok: str, out: Path, **kw) -> tuple:
    """Run one PullClient.pull to completion; returns (stats, state)."""
    client_kw = {k: kw.pop(k) for k in ("trust", "limit", "checkpoint_items", "workers") if k in kw}

    async def run():
        async with PullClient(url, tok, out, **client_kw) as client:
            stats = await client.pull(**kw)
            return stats, client.state

    return asyncio.run(run())


@pytest.fixture()
def served(tmp_path: Path):
    """A world of 3 plates × 20 signed results, its server, and a results token."""
    w = make_world(tmp_path / "lab")
    for plate in range(3):
        commit(w, signed_plate(w, plate, 20))
    s = ServerThread(w).start()
    yield w, s, token(w)
    s.stop()


def test_pull_verifies_and_writes_every_result_once_in_order(served, tmp_path: Path) -> None:
    """A full pull against the lab CA writes seq 1..60 once each, in order, exactly as served."""
    w, s, tok = served
    stats, state = _pull(s.url, tok, tmp_path / "out", trust=_ca(w), limit=7)
    items = read_results(tmp_path / "out")
    assert [i["seq"] for i in items] == list(range(1, 61))
    assert stats.items == 60 and state.last_seq == 60 and state.count == 60
    assert stats.pages == 9  # ceil(60 / 7)


def test_resume_after_interruption_has_no_gap_or_duplicate(served, tmp_path: Path) -> None:
    """Stopping after two pages and starting a new client later (with new plates meanwhile) continues exactly."""
    w, s, tok = served
    out = tmp_path / "out"
    first, _ = _pull(s.url, tok, out, trust=_ca(w), limit=10, max_pages=2)
    assert first.items == 20
    commit(w, signed_plate(w, 9, 15))
    second, state = _pull(s.url, tok, out, trust=_ca(w), limit=10)
    assert [i["seq"] for i in read_results(out)] == list(range(1, 76))
    assert second.items == 55 and second.skipped == 0 and state.count == 75


def test_crash_after_append_before_checkpoint_is_repaired(served, tmp_path: Path) -> None:
    """Bytes appended after the last checkpoint (a crash mid-page) are cut off and the page is fetched again."""
    w, s, tok = served
    out = tmp_path / "out"
    _pull(s.url, tok, out, trust=_ca(w), limit=25, max_pages=1)
    with open(out / "results.ndjson", "ab") as fh:
        fh.write(b'{"seq":26,"id":"half-writ')  # torn write
    _pull(s.url, tok, out, trust=_ca(w), limit=25)
    assert [i["seq"] for i in read_results(out)] == list(range(1, 61))


def test_refetched_page_is_deduplicated_by_seq(served, tmp_path: Path) -> None:
    """When the saved cursor lags the written items (checkpoint inside a page), re-served items are skipped, not duplicated."""
    w, s, tok = served
    out = tmp_path / "out"
    _pull(s.url, tok, out, trust=_ca(w), limit=100)
    state = json.loads((out / "state.json").read_text())
    state["cursor"] = None  # as if the crash came before the page's cursor was saved
    (out / "state.json").write_text(json.dumps(state))
    stats, _ = _pull(s.url, tok, out, trust=_ca(w), limit=100)
    assert stats.items == 0 and stats.skipped == 60
    assert len(read_results(out)) == 60


def test_tampered_payload_stops_the_pull_at_that_result(served, tmp_path: Path) -> None:
    """A result whose stored payload was altered fails verification; everything before it is kept, nothing after."""
    w, s, tok = served
    conn = sqlite3.connect(w.ledger_path)
    payload = conn.execute("SELECT payload FROM results WHERE seq=31").fetchone()[0]
    conn.execute("UPDATE results SET payload=? WHERE seq=31", (payload.replace('"NEGATIVE"', '"POSITIVE"').replace('"INCONCLUSIVE"', '"NEGATIVE"'),))
    conn.commit()
    conn.close()
    out = tmp_path / "out"
    with pytest.raises(VerificationError, match="seq 31"):
        _pull(s.url, tok, out, trust=_ca(w), limit=50)
    assert [i["seq"] for i in read_results(out)] == list(range(1, 31))
    assert json.loads((out / "state.json").read_text())["last_seq"] == 30


def test_worker_pool_verifies_and_stops_at_the_same_tampered_result(served, tmp_path: Path) -> None:
    """With verification spread over worker processes, a tampered result is still found and nothing after it is written."""
    w, s, tok = served
    stats, _ = _pull(s.url, tok, tmp_path / "ok", trust=_ca(w), workers=2)
    assert stats.items == 60
    conn = sqlite3.connect(w.ledger_path)
    jws = conn.execute("SELECT jws FROM results WHERE seq=45").fetchone()[0]
    head, body, sig = jws.split(".")
    conn.execute("UPDATE results SET jws=? WHERE seq=45", (f"{head}.{body}.{sig[:-4]}AAAA",))
    conn.commit()
    conn.close()
    with pytest.raises(VerificationError, match="seq 45") as err:
        _pull(s.url, tok, tmp_path / "bad", trust=_ca(w), workers=2)
    assert err.value.reason == "bad-signature"
    assert [i["seq"] for i in read_results(tmp_path / "bad")] == list(range(1, 45))


def test_hc1_of_another_result_is_refused(served, tmp_path: Path) -> None:
    """A genuine, validly signed HC1 moved onto another result is detected (the QR must match the payload)."""
    w, s, tok = served
    conn = sqlite3.connect(w.ledger_path)
    other = conn.execute("SELECT hc1 FROM results WHERE seq=5").fetchone()[0]
    conn.execute("UPDATE results SET hc1=? WHERE seq=4", (other,))
    conn.commit()
    conn.close()
    with pytest.raises(VerificationError, match="seq 4.*another result"):
        _pull(s.url, tok, tmp_path / "out", trust=_ca(w))
    assert len(read_results(tmp_path / "out")) == 3


def test_hc1_signed_with_the_pre_issue_16_check_character_still_pulls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Results signed when the UVCI check character used the old alphabet still verify: their QR stays theirs."""
    w = make_world(tmp_path / "lab")
    current = dcc.luhn_mod_n
    with monkeypatch.context() as patch:
        patch.setattr(dcc, "luhn_mod_n", lambda text, alphabet=None: current(text, dcc.LEGACY_UVCI_ALPHABET))
        commit(w, signed_plate(w, 0, 5))
    s = ServerThread(w).start()
    try:
        _pull(s.url, token(w), tmp_path / "out", trust=_ca(w))
    finally:
        s.stop()
    items = read_results(tmp_path / "out")
    assert len(items) == 5
    for item in items:  # the QRs really carry the old character, which today's test_entry no longer writes
        signed = decode_hc1(item["hc1"]).dcc["t"][0]["ci"]
        assert signed != dcc.test_entry(item["payload"])["t"][0]["ci"]


def test_foreign_trust_root_refuses_the_servers_keys(served, tmp_path: Path) -> None:
    """With another lab's CA as --trust, the server's keys do not chain and nothing is written."""
    w, s, tok = served
    other = ensure_development_pki(tmp_path / "other-lab-keys")
    foreign = [x509.load_pem_x509_certificate(other.ca_cert.read_bytes())]
    with pytest.raises(VerificationError, match="no trusted signing key"):
        _pull(s.url, tok, tmp_path / "out", trust=foreign)
    assert read_results(tmp_path / "out") == []


def test_without_trust_the_published_keys_are_used(served, tmp_path: Path) -> None:
    """Without --trust the client verifies against the keys the server publishes (trust on first use)."""
    w, s, tok = served
    stats, _ = _pull(s.url, tok, tmp_path / "out")
    assert stats.items == 60


def test_superseded_versions_arrive_in_feed_order(served, tmp_path: Path) -> None:
    """A retest that supersedes results appears after them in the pulled file, both versions kept."""
    w, s, tok = served
    out = tmp_path / "out"
    _pull(s.url, tok, out, trust=_ca(w))
    commit(w, superseding_plate(w, 50, read_results(out)[:3]))
    _pull(s.url, tok, out, trust=_ca(w))
    items = read_results(out)
    assert [(i["version"], i["supersedes"]) for i in items[-3:]] == [
        (2, {"id": items[k]["id"], "version": 1}) for k in range(3)
    ]


def test_wrong_token_and_other_server_are_clear_errors(served, tmp_path: Path) -> None:
    """A bad token is an ApiError naming HTTP 401; reusing an output folder for another URL is refused."""
    w, s, tok = served
    with pytest.raises(ApiError, match="401"):
        _pull(s.url, "kq_0123456789abcdef_" + "A" * 43, tmp_path / "bad")
    _pull(s.url, tok, tmp_path / "out", max_pages=1)
    with pytest.raises(ApiError, match="another --out|not http"):
        _pull("http://127.0.0.1:1", tok, tmp_path / "out")


def test_cli_pull(served, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`ketqua pull --url --out --trust` with the token from $KETQUA_TOKEN pulls and reports the count."""
    w, s, tok = served
    monkeypatch.setenv("KETQUA_TOKEN", tok)
    out = tmp_path / "cli-out"
    code = main(["pull", "--url", s.url, "--out", str(out), "--trust", str(w.data.keys / "ca.pem"), "--limit", "16", "--workers", "1",
                 "--token", tok])
    assert code == 0
    assert "60 results" in capsys.readouterr().err
    assert len(read_results(out)) == 60


def test_follow_mode_picks_up_new_plates(served, tmp_path: Path) -> None:
    """--follow keeps long-polling and writes plates committed while it runs."""
    w, s, tok = served
    out = tmp_path / "out"

    async def run() -> int:
        stop = asyncio.Event()
        async with PullClient(s.url, tok, out, trust=_ca(w), limit=50) as client:
            task = asyncio.create_task(client.pull(follow=True, wait=0.5, stop=stop))
            await asyncio.sleep(0.3)
            await asyncio.to_thread(commit, w, signed_plate(w, 77, 10))
            for _ in range(100):
                if client.state.last_seq >= 70:
                    break
                await asyncio.sleep(0.05)
            stop.set()
            await task
            return client.state.last_seq

    assert asyncio.run(run()) == 70
    assert [i["seq"] for i in read_results(out)] == list(range(1, 71))


@pytest.mark.slow
def test_concurrent_ingest_and_pulls_give_every_result_exactly_once(tmp_path: Path) -> None:
    """While plates commit continuously, four clients pulling small pages each end with every result once, in order, verified."""
    w = make_world(tmp_path / "lab")
    plates = [signed_plate(w, p, 24) for p in range(40)]  # signed up front: the ledger writer is the contended part
    s = ServerThread(w).start()
    tok = token(w)
    done = threading.Event()

    def ingest() -> None:
        from engine.ledger.sqlite import Ledger

        with Ledger.open(w.ledger_path) as ledger:
            for plate in plates:
                commit(w, plate, ledger)
                time.sleep(0.005)
        done.set()

    async def client(n: int, limit: int) -> list[int]:
        out = tmp_path / f"client-{n}"
        async with PullClient(s.url, tok, out, trust=_ca(w), limit=limit) as c:
            while True:
                finished = done.is_set()
                await c.pull()
                if finished:  # one more full pass after the last commit
                    break
                await asyncio.sleep(0.01)
        return [i["seq"] for i in read_results(out)]

    async def run() -> list[list[int]]:
        return await asyncio.gather(*(client(n, limit) for n, limit in enumerate((3, 7, 16, 50))))

    writer = threading.Thread(target=ingest)
    try:
        writer.start()
        seqs = asyncio.run(run())
        writer.join()
    finally:
        s.stop()
    total = 40 * 24
    for got in seqs:
        assert got == list(range(1, total + 1))


def test_follow_stops_when_the_token_is_revoked(served, tmp_path: Path) -> None:
    """--follow retries transient failures but stops with HTTP 401 once its token is revoked."""
    from engine.api.tokens import revoke_token, token_id

    w, s, tok = served
    mine = token(w, "read:results", name="follower")

    async def run() -> None:
        async with PullClient(s.url, mine, tmp_path / "out", trust=_ca(w)) as client:
            task = asyncio.create_task(client.pull(follow=True, wait=0.2))
            await asyncio.sleep(0.3)
            revoke_token(w.ledger_path, token_id(mine) or "")
            await asyncio.wait_for(task, 10)

    with pytest.raises(ApiError, match="401"):
        asyncio.run(run())
    assert len(read_results(tmp_path / "out")) == 60


def test_two_pulls_into_one_folder_are_refused(served, tmp_path: Path) -> None:
    """While one client holds an output folder, a second one is refused instead of interleaving appends."""
    w, s, tok = served

    async def run() -> None:
        async with PullClient(s.url, tok, tmp_path / "out"):
            with pytest.raises(ApiError, match="another pull"):
                async with PullClient(s.url, tok, tmp_path / "out"):
                    pass

    asyncio.run(run())
    stats, _ = _pull(s.url, tok, tmp_path / "out")  # released afterwards
    assert stats.items == 60


def test_key_rotation_keeps_older_results_verifiable(tmp_path: Path) -> None:
    """After the lab rotates its signer, [api] previous_signers keeps the retired key in /v1/keys, so a pull verifies both generations."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from engine.results.signer import load_signer_spec
    from signing.pki import issue_leaf

    w = make_world(tmp_path / "lab")
    commit(w, signed_plate(w, 1, 4))  # signed by the first signer
    keys = w.data.keys
    (keys / "signer-retired.pem").write_bytes((keys / "signer.pem").read_bytes())
    ca_cert = x509.load_pem_x509_certificate((keys / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((keys / "ca.key").read_bytes(), password=None)
    new_key = ec.generate_private_key(ec.SECP256R1())
    new_cert = issue_leaf(ca_cert, ca_key, new_key.public_key(), kind="signer")  # type: ignore[arg-type]
    (keys / "signer.key").write_bytes(
        new_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (keys / "signer.pem").write_bytes(new_cert.public_bytes(serialization.Encoding.PEM))
    w.signer = load_signer_spec(w.data).open()
    commit(w, signed_plate(w, 2, 4))  # signed by the new signer
    tok = token(w)

    s = ServerThread(w).start()  # no previous_signers: the retired key is not published
    try:
        with pytest.raises(VerificationError, match="seq 1") as err:
            _pull(s.url, tok, tmp_path / "without", trust=_ca(w), workers=1)
        assert err.value.reason == "unknown-kid"
    finally:
        s.stop()

    w.data.config.write_text('[api]\nprevious_signers = ["keys/signer-retired.pem"]\n', encoding="utf-8")
    s = ServerThread(w, settings=None).start()
    try:
        _, _, body = s.request("/v1/keys", tok)
        assert len(json.loads(body)["keys"]) == 2
        stats, _ = _pull(s.url, tok, tmp_path / "with", trust=_ca(w), workers=1)
        assert stats.items == 8
    finally:
        s.stop()
