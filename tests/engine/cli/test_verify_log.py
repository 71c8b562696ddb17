"""`ketqua verify RESULT --proof FILE --checkpoint FILE`: offline inclusion of a result in the lab's log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.api.feed import item_json
from engine.cli.main import main
from engine.ledger.sqlite import Ledger
from engine.results.checkpoints import log_origin, sign_current_checkpoint
from signing.merkle import InclusionProof, b64
from tests.engine.api.api_world import World, commit, make_world, signed_plate


@pytest.fixture()
def files(tmp_path: Path) -> tuple[World, dict[str, Path]]:
    """A lab with 7 results; item 4's JSON, its proof at size 7, and the signed checkpoint of size 7, as files."""
    w = make_world(tmp_path / "lab")
    commit(w, signed_plate(w, 1, 7))
    with Ledger.open(w.ledger_path) as ledger:
        note = sign_current_checkpoint(ledger, w.signer, log_origin("VN-DEV-LAB"))
        rows = ledger.results()
        proof = InclusionProof(4, 7, tuple(ledger.log_inclusion(4, 7)))
    paths = {"item": tmp_path / "item.json", "other": tmp_path / "other.json", "proof": tmp_path / "proof.json",
             "checkpoint": tmp_path / "checkpoint.txt"}
    paths["item"].write_text(item_json(rows[4]))
    paths["other"].write_text(item_json(rows[5]))
    paths["proof"].write_text(json.dumps(proof.to_json()))
    paths["checkpoint"].write_text(note)
    return w, paths


def _verify(w: World, p: dict[str, Path], item: str = "item", *extra: str) -> int:
    return main(["verify", "--data", str(w.data.root), str(p[item]), "--proof", str(p["proof"]),
                 "--checkpoint", str(p["checkpoint"]), *extra])


def test_an_included_result_is_reported_in_the_log(files, capsys: pytest.CaptureFixture[str]) -> None:
    w, p = files
    assert _verify(w, p) == 0
    out = capsys.readouterr().out
    assert "IN THE LOG ketqua/VN-DEV-LAB/results: leaf 4 of the signed tree of 7" in out


def test_another_result_with_this_proof_is_not_in_the_log(files, capsys: pytest.CaptureFixture[str]) -> None:
    """Result 5 with result 4's proof: its own log_index disagrees; a bare JWS fails the root."""
    w, p = files
    assert _verify(w, p, "other") == 1
    assert "NOT IN THE LOG" in capsys.readouterr().out
    p["other"].write_text(json.loads(p["other"].read_text())["jws"])
    assert _verify(w, p, "other", "--json") == 1
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert report["kind"] == "log" and not report["valid"] and report["reason"] == "bad-proof"


def test_a_tampered_proof_or_checkpoint_fails(files, capsys: pytest.CaptureFixture[str]) -> None:
    w, p = files
    proof = json.loads(p["proof"].read_text())
    proof["hashes"][0] = b64(b"\x01" * 32)
    p["proof"].write_text(json.dumps(proof))
    assert _verify(w, p) == 1
    capsys.readouterr()
    p["proof"].write_text(json.dumps(InclusionProof(4, 7, ()).to_json()))
    text = p["checkpoint"].read_text().split("\n")
    text[1] = "8"
    p["checkpoint"].write_text("\n".join(text))
    assert _verify(w, p) == 1
    assert "NOT IN THE LOG (bad-signature)" in capsys.readouterr().out


def test_proof_without_checkpoint_is_unusable(files, capsys: pytest.CaptureFixture[str]) -> None:
    w, p = files
    assert main(["verify", "--data", str(w.data.root), str(p["item"]), "--proof", str(p["proof"])]) == 2
    assert "go together" in capsys.readouterr().err
