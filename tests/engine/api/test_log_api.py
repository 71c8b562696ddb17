"""The transparency log's routes: signed checkpoint, inclusion and consistency proofs, their errors and scopes."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.ledger.sqlite import Ledger
from engine.results.checkpoints import log_origin
from signing.checkpoint import (
    NoteVerifier,
    open_checkpoint,
    verify_extends,
    verify_included,
)
from signing.merkle import ConsistencyProof, InclusionProof
from tests.engine.api.api_world import (
    ServerThread,
    World,
    commit,
    make_world,
    signed_plate,
    token,
)

ORIGIN = log_origin("VN-DEV-LAB")  # the data folder has no ketqua.toml: the default lab id


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    w = make_world(tmp_path_factory.mktemp("log"))
    commit(w, signed_plate(w, 1, 5))
    return w


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[ServerThread]:
    s = ServerThread(world).start()
    yield s
    s.stop()


def _checkpoint(server: ServerThread, world: World, tok: str):
    status, headers, body = server.request("/v1/log/checkpoint", tok)
    assert status == 200 and headers["content-type"].startswith("text/plain")
    verifier = NoteVerifier.from_public_key(ORIGIN, world.signer.certificate.public_key())
    return body, open_checkpoint(body, [verifier], origin=ORIGIN)


def test_origin_is_derived_from_the_lab_id() -> None:
    """ketqua/<lab id>/results, with what a note key name cannot hold percent-encoded."""
    assert log_origin("VN-79-PASTEUR") == "ketqua/VN-79-PASTEUR/results"
    assert log_origin("Lab 1+2") == "ketqua/Lab%201%2B2/results"


def test_checkpoint_signed_by_the_lab_key_proves_every_feed_item(server: ServerThread, world: World) -> None:
    """Each feed item's JWS is leaf log_index of the checkpoint's tree, by the proof the API serves."""
    tok = token(world)
    note, cp = _checkpoint(server, world, tok)
    assert cp.size == 5
    items = json.loads(server.request("/v1/results?limit=100", tok)[2])["items"]
    assert [i["log_index"] for i in items] == list(range(5))
    for item in items:
        status, body = server.get_json(f"/v1/results/{item['id']}/proof?version=1&tree_size={cp.size}", tok)
        assert status == 200
        proof = InclusionProof.from_json(body)
        assert proof.leaf_index == item["log_index"] and proof.tree_size == 5
        verify_included(item["jws"].encode(), proof, cp)
    # The same size is answered with the same stored note, byte for byte.
    assert server.request("/v1/log/checkpoint", tok)[2] == note
    with Ledger.open(world.ledger_path) as ledger:
        assert ledger.latest_checkpoint()["note"].encode() == note


def test_a_grown_log_gets_a_new_checkpoint_consistent_with_the_old(server: ServerThread, world: World) -> None:
    """After another plate the API signs a larger head; the consistency proof links the two."""
    tok = token(world)
    _, old = _checkpoint(server, world, tok)
    commit(world, signed_plate(world, 2, 4))
    _, new = _checkpoint(server, world, tok)
    assert new.size == old.size + 4
    status, body = server.get_json(f"/v1/log/consistency?from={old.size}&to={new.size}", tok)
    assert status == 200
    verify_extends(old, new, ConsistencyProof.from_json(body).hashes)
    status, body = server.get_json(f"/v1/log/consistency?from={new.size}&to={new.size}", tok)
    assert status == 200 and body == {"hashes": []}


@pytest.mark.parametrize(
    "path",
    [
        "/v1/log/consistency?from=0&to=3",
        "/v1/log/consistency?from=4&to=3",
        "/v1/log/consistency?from=1&to=999999",
        "/v1/log/consistency?from=1&to=99999999999999999999999",
        "/v1/log/consistency?from=x&to=3",
        "/v1/log/consistency?to=3",
        "/v1/log/consistency?from=-1&to=3",
    ],
)
def test_bad_sizes_are_problem_400(server: ServerThread, world: World, path: str) -> None:
    status, headers, body = server.request(path, token(world))
    assert status == 400 and headers["content-type"].startswith("application/problem+json")
    assert json.loads(body)["status"] == 400


def test_proof_errors(server: ServerThread, world: World) -> None:
    """A tree that does not hold the result, or beyond the log, is 400; an unknown result 404."""
    tok = token(world)
    rid = json.loads(server.request("/v1/results?limit=100", tok)[2])["items"][3]["id"]
    assert server.request(f"/v1/results/{rid}/proof?tree_size=3", tok)[0] == 400  # leaf 3 is not in a tree of 3
    assert server.request(f"/v1/results/{rid}/proof?tree_size=0", tok)[0] == 400
    assert server.request(f"/v1/results/{rid}/proof?tree_size=1000000", tok)[0] == 400
    assert server.request(f"/v1/results/{rid}/proof?tree_size=abc", tok)[0] == 400
    assert server.request(f"/v1/results/{rid}/proof?version=9", tok)[0] == 404
    assert server.request("/v1/results/nope/proof", tok)[0] == 404
    status, body = server.get_json(f"/v1/results/{rid}/proof", tok)  # default: the current size
    assert status == 200 and body["leaf_index"] == 3


def test_routes_need_the_results_scope(server: ServerThread, world: World) -> None:
    metrics_only = token(world, "read:metrics", name="m")
    for path in ("/v1/log/checkpoint", "/v1/log/consistency?from=1&to=1", "/v1/results/x/proof"):
        assert server.request(path)[0] == 401
        assert server.request(path, metrics_only)[0] == 403


def test_a_lost_subtree_hash_is_a_500_not_a_client_error(tmp_path: Path) -> None:
    """missing-node means the ledger is damaged: 500 problem, the client's request was fine."""
    w = make_world(tmp_path)
    commit(w, signed_plate(w, 1, 4))
    with Ledger.open(w.ledger_path) as ledger:
        ledger.conn.executescript("DROP TRIGGER log_nodes_no_delete; DELETE FROM log_nodes WHERE level = 1 AND idx = 1;")
    s = ServerThread(w).start()
    try:
        status, headers, body = s.request("/v1/log/consistency?from=2&to=4", token(w))
        assert status == 500 and headers["content-type"].startswith("application/problem+json")
        assert "missing a subtree hash" in json.loads(body)["detail"]
    finally:
        s.stop()


def test_without_a_tsa_a_checkpoint_has_no_timestamp(server: ServerThread, world: World) -> None:
    tok = token(world, "read:results")
    status, headers, body = server.request("/v1/log/checkpoint/timestamp", tok)
    assert status == 404 and "no TSA" in json.loads(body)["detail"]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command (the reference RFC 3161 verifier)")
def test_each_checkpoint_gets_one_rfc3161_timestamp_that_openssl_verifies(tmp_path: Path) -> None:
    """With a TSA, the checkpoint's note is time-stamped once; OpenSSL's `ts -verify` accepts the reply over the note."""
    w = make_world(tmp_path / "data")
    w.data.config.write_text('[signing]\ntsa = "development"\n', encoding="utf-8")
    commit(w, signed_plate(w, 1, 4))
    s = ServerThread(w).start()
    try:
        tok = token(w, "read:results")
        note = s.request("/v1/log/checkpoint", tok)[2]
        status, headers, reply = s.request("/v1/log/checkpoint/timestamp", tok)
        assert status == 200 and headers["content-type"] == "application/timestamp-reply"
        assert headers["x-checkpoint-size"] == "4"
        again = s.request("/v1/log/checkpoint/timestamp?size=4", tok)[2]
        assert again == reply  # one time-stamp per checkpoint, kept
        assert s.request("/v1/log/checkpoint/timestamp?size=3", tok)[0] == 404  # never given out
    finally:
        s.stop()
    (tmp_path / "note.txt").write_bytes(note)
    (tmp_path / "reply.tsr").write_bytes(reply)
    keys = w.data.keys
    run = subprocess.run(
        ["openssl", "ts", "-verify", "-data", str(tmp_path / "note.txt"), "-in", str(tmp_path / "reply.tsr"),
         "-CAfile", str(keys / "ca.pem"), "-untrusted", str(keys / "tsa.pem")],
        capture_output=True, text=True,
    )
    assert run.returncode == 0 and "Verification: OK" in run.stdout, run.stdout + run.stderr
    (tmp_path / "note.txt").write_bytes(note.replace(b"\n4\n", b"\n5\n"))
    tampered = subprocess.run(
        ["openssl", "ts", "-verify", "-data", str(tmp_path / "note.txt"), "-in", str(tmp_path / "reply.tsr"),
         "-CAfile", str(keys / "ca.pem"), "-untrusted", str(keys / "tsa.pem")],
        capture_output=True, text=True,
    )
    assert tampered.returncode != 0
