"""`ketqua pull` and the transparency log: checkpoints verified and kept, a rewritten history detected as a fork."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.client.puller import FORK_FILE, STATE_FILE, PullClient, read_results
from engine.ledger.sqlite import Ledger
from engine.results.signed import sign_payload
from signing.checkpoint import Checkpoint, parse_note
from signing.errors import ForkDetected, VerificationError
from signing.merkle import MemoryHashStore, MerkleLog
from tests.engine.api.api_world import (
    ServerThread,
    World,
    commit,
    make_world,
    signed_plate,
    token,
)


def _pull(url: str, tok: str, out: Path, **kw):
    async def run():
        async with PullClient(url, tok, out, limit=kw.pop("limit", 1000)) as client:
            await client.pull(**kw)
            return client.state

    return asyncio.run(run())


def _state(out: Path) -> dict:
    return json.loads((out / STATE_FILE).read_text())


def _rewrite_history(world: World, seq: int) -> None:
    """What a lab with its own key and database could do: re-sign an old result as another outcome, rebuild the log."""
    with Ledger.open(world.ledger_path) as ledger:
        row = next(r for r in ledger.results() if r["seq"] == seq)
        payload = json.loads(row["payload"])
        payload["outcome"] = "NEGATIVE" if payload["outcome"] != "NEGATIVE" else "POSITIVE"
        canonical, jws, hc1 = sign_payload(payload, world.signer, hc1_validity_days=365)
        ledger.conn.executescript(
            "DROP TRIGGER log_nodes_no_delete; DROP TRIGGER results_log_index_fixed;"
            " DELETE FROM log_nodes; DELETE FROM log_checkpoints; UPDATE results SET log_index = NULL;"
        )
        ledger.conn.execute("UPDATE results SET payload=?, jws=?, hc1=? WHERE seq=?", (canonical, jws, hc1, seq))
    Ledger.open(world.ledger_path).close()  # the first writable open rebuilds the log from the rows


@pytest.fixture()
def lab(tmp_path: Path):
    w = make_world(tmp_path / "lab")
    commit(w, signed_plate(w, 1, 6))
    commit(w, signed_plate(w, 2, 6))
    return w


def test_pull_keeps_the_verified_checkpoint_and_the_frontier_of_what_it_wrote(lab: World, tmp_path: Path) -> None:
    """After a pull the state holds the lab's signed head; its root is that of the JWSs written, in order."""
    s = ServerThread(lab).start()
    try:
        out = tmp_path / "out"
        state = _pull(s.url, token(lab), out, limit=5)
        items = read_results(out)
        ref = MerkleLog(MemoryHashStore())
        ref.append(i["jws"].encode() for i in items)
        cp = Checkpoint.from_text(parse_note(state.checkpoint).text)
        assert cp.size == state.log_size == 12 and cp.root_hash == ref.root()
        commit(lab, signed_plate(lab, 3, 4))  # the next pull checks consistency 12 → 16
        state = _pull(s.url, token(lab), out, limit=5)
        assert state.log_size == 16 and len(read_results(out)) == 16
    finally:
        s.stop()


def test_a_rewritten_old_result_is_detected_as_a_fork_and_nothing_after_it_is_written(
    lab: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The lab re-signs result 3 and rebuilds its log: the next pull fails loudly, writes nothing, keeps the evidence."""
    out = tmp_path / "out"
    s = ServerThread(lab).start()
    try:
        _pull(s.url, token(lab), out)
        before = (out / "results.ndjson").read_bytes()
        trusted = _state(out)["checkpoint"]

        _rewrite_history(lab, 3)
        commit(lab, signed_plate(lab, 3, 4))  # the server signs a new head for the new size: of the rewritten tree
        tok = token(lab)
        with pytest.raises(ForkDetected) as err:
            _pull(s.url, tok, out)
        assert "fork.note" in str(err.value) and "12" in str(err.value)
        assert (out / "results.ndjson").read_bytes() == before
        assert _state(out)["checkpoint"] == trusted
        assert (out / FORK_FILE).read_text().splitlines()[1] == "16"

        code = main(["pull", "--url", s.url, "--out", str(out), "--token", tok, "--workers", "1"])
        assert code != 0
        assert "rewritten" in capsys.readouterr().err
        assert (out / "results.ndjson").read_bytes() == before
    finally:
        s.stop()


def test_a_rewrite_without_new_results_is_caught_by_the_next_pull(lab: World, tmp_path: Path) -> None:
    """Same size, another root: a pull with nothing new to write still compares the lab's head (a witness loop)."""
    out = tmp_path / "out"
    s = ServerThread(lab).start()
    try:
        _pull(s.url, token(lab), out)
        _pull(s.url, token(lab), out)  # nothing new, same head: fine
        _rewrite_history(lab, 5)
        s.stop()
        s = ServerThread(lab, port=s.port).start()  # the lab restarts its server: nothing cached from before
        with pytest.raises(ForkDetected) as err:
            _pull(s.url, token(lab), out)
        assert "two different trees of 12 leaves" in str(err.value)
    finally:
        s.stop()


def test_a_new_puller_detects_a_rewrite_through_its_own_tree(lab: World, tmp_path: Path) -> None:
    """Without an old checkpoint, a feed whose JWS differs from the signed leaf cannot pass: served log ≠ feed."""
    s = ServerThread(lab).start()
    try:
        with Ledger.open(lab.ledger_path) as ledger:  # the feed row changes, the log keeps the original leaf
            row = ledger.results()[2]
            payload = json.loads(row["payload"])
            payload["outcome"] = "NEGATIVE" if payload["outcome"] != "NEGATIVE" else "POSITIVE"
            canonical, jws, hc1 = sign_payload(payload, lab.signer,
                                               hc1_validity_days=365)
            ledger.conn.execute("UPDATE results SET payload=?, jws=?, hc1=? WHERE seq=?", (canonical, jws, hc1, row["seq"]))
        out = tmp_path / "fresh"
        with pytest.raises(ForkDetected):
            _pull(s.url, token(lab), out, limit=100)
        assert read_results(out) == []
    finally:
        s.stop()


def test_a_feed_that_skips_a_leaf_is_refused(lab: World, tmp_path: Path) -> None:
    """Item k must be leaf k: a server hiding a result from the feed is caught at the next item."""
    with Ledger.open(lab.ledger_path) as ledger:
        ledger.conn.execute("DELETE FROM results WHERE seq = 4")
    s = ServerThread(lab).start()
    try:
        out = tmp_path / "out"
        with pytest.raises(VerificationError) as err:
            _pull(s.url, token(lab), out, limit=100)
        assert err.value.reason == "log-gap"
        assert read_results(out) == []
    finally:
        s.stop()
