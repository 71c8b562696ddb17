"""`ketqua demo` end to end: truth reproduced, signatures verify, replays add nothing."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import pypdf
from cryptography import x509

from engine.cli.main import main
from engine.datadir import DataDir
from engine.demo import manifest_csv, quantstudio_text, simulate_plate
from engine.errors import VerificationError
from engine.ledger.sqlite import Ledger
from engine.pipeline.engine import Engine
from signing.jws import verify_compact
from signing.merkle import MemoryHashStore, MerkleLog

SEED = 7


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, dev_keys: Path) -> dict[str, Any]:
    """One `ketqua demo --json` run in a fresh data folder (certificates included)."""
    root = tmp_path_factory.mktemp("demo") / "data"
    shutil.copytree(dev_keys, root / "keys")
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["demo", "--data", str(root), "--seed", str(SEED), "--workers", "0", "--json"])
    assert status == 0
    return {"data": DataDir.at(root), "report": json.loads(out.getvalue()), "plate": simulate_plate(SEED)}


def test_every_specimen_decision_matches_the_simulated_truth(demo: dict[str, Any]) -> None:
    """Each specimen's decided outcome equals the simulation's expected Dorfman outcome."""
    plate = demo["plate"]
    with Ledger.open(demo["data"].ledger, readonly=True) as ledger:
        decided = dict(ledger.conn.execute("SELECT specimen_id, outcome FROM specimen_decisions").fetchall())
        counts = ledger.counts()
        retests = {r["specimen_id"] for r in ledger.open_retests()}
    assert decided == plate.expected
    expected = plate.expected_counts()
    assert counts["current"] == {k: v for k, v in expected.items() if k != "RETEST"}
    assert retests == {s for s, o in plate.expected.items() if o == "RETEST"}
    assert demo["report"]["signed"] == expected["NEGATIVE"] + expected["POSITIVE"]


def test_every_jws_verifies_and_matches_the_stored_payload(demo: dict[str, Any]) -> None:
    """Every stored JWS verifies with the development signer certificate and carries the stored canonical JSON."""
    cert = x509.load_pem_x509_certificate((demo["data"].keys / "signer.pem").read_bytes())
    with Ledger.open(demo["data"].ledger, readonly=True) as ledger:
        rows = ledger.results()
    assert rows
    for row in rows:
        assert verify_compact(row["jws"], [cert]) == row["payload"].encode("utf-8")
        assert json.loads(row["payload"])["id"] == row["id"]


def test_one_changed_payload_byte_fails_verification(demo: dict[str, Any]) -> None:
    """A JWS whose payload differs by one byte from what was signed does not verify."""
    cert = x509.load_pem_x509_certificate((demo["data"].keys / "signer.pem").read_bytes())
    with Ledger.open(demo["data"].ledger, readonly=True) as ledger:
        row = ledger.results()[0]
    head, _, sig = row["jws"].split(".")
    tampered = row["payload"].replace('"NEGATIVE"', '"NEGATIVF"').encode() if "NEGATIVE" in row["payload"] else row["payload"].encode()[:-2] + b"]}"
    forged = f"{head}.{base64.urlsafe_b64encode(tampered).rstrip(b'=').decode()}.{sig}"
    with pytest.raises(VerificationError):
        verify_compact(forged, [cert])


def test_hc1_and_certificates_exist_for_every_result(demo: dict[str, Any]) -> None:
    """Every result has an HC1 string that verifies against the development CA and a certificate PDF on disk."""
    from signing.verify import verify_hc1

    ca = x509.load_pem_x509_certificate((demo["data"].keys / "ca.pem").read_bytes())
    signer = x509.load_pem_x509_certificate((demo["data"].keys / "signer.pem").read_bytes())
    with Ledger.open(demo["data"].ledger, readonly=True) as ledger:
        rows = ledger.results()
    assert all(r["hc1"].startswith("HC1:") for r in rows)
    for row in rows[:20]:  # HC1 verification is the signing engineer's suite; a sample proves the wiring
        verify_hc1(row["hc1"], [ca], certificates=[signer])  # a QR carries no chain: the DSC list supplies it
    assert all(r["certificate"] and Path(r["certificate"]).read_bytes().startswith(b"%PDF") for r in rows)
    assert demo["report"]["certificates"] == len(rows)


def test_replaying_the_same_inbox_adds_no_result(demo: dict[str, Any]) -> None:
    """Dropping the same plate and manifest again (under new names) and re-running adds nothing to the ledger."""
    data: DataDir = demo["data"]
    plate = demo["plate"]
    with Ledger.open(data.ledger, readonly=True) as ledger:
        before = ledger.counts()
    (data.inbox / "again.txt").write_bytes(quantstudio_text(plate))
    (data.inbox / "sub").mkdir(exist_ok=True)
    (data.inbox / "sub" / "copy-of-manifest.csv").write_bytes(manifest_csv(plate.manifest))
    with Engine(data, workers=0) as engine:
        first = engine.run_once()
        second = engine.run_once()
    assert first.duplicates == 2 and first.files == 0
    assert first.signed == 0 and second.signed == 0
    with Ledger.open(data.ledger, readonly=True) as ledger:
        after = ledger.counts()
    assert after["results"] == before["results"] and after["last_seq"] == before["last_seq"]
    assert list(data.inbox.rglob("*.*")) == []


def test_every_result_is_logged_and_its_certificate_names_its_leaf(demo: dict[str, Any]) -> None:
    """The demo's results are leaves 0..n-1 in seq order, each JWS the leaf, each PDF printing its own index."""
    with Ledger.open(demo["data"].ledger, readonly=True) as ledger:
        rows = ledger.results()
        size, root = ledger.log_size(), ledger.log_root(len(rows))
    assert [r["log_index"] for r in rows] == list(range(len(rows))) and size == len(rows)
    ref = MerkleLog(MemoryHashStore())
    ref.append(r["jws"].encode() for r in rows)
    assert root == ref.root()
    for row in rows[:3]:
        text = pypdf.PdfReader(io.BytesIO(Path(row["certificate"]).read_bytes())).pages[0].extract_text()
        assert f"Transparency log: #{row['log_index']}" in text
