"""The pipeline's lab workflow: either arrival order, retests, corrections, bad files, the async service."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine.datadir import DataDir
from engine.demo import (
    SimulatedPlate,
    manifest_csv,
    quantstudio_text,
    retest_plate,
    simulate_plate,
)
from engine.files import write_atomically
from engine.ledger.sqlite import Ledger
from engine.pipeline import Engine, serve


def _plate(seed: int) -> SimulatedPlate:
    # Small pools keep signing fast; prevalence high enough that every plate has detected pools.
    return simulate_plate(seed, pool_size=2, prevalence=0.1)


def _drop(data: DataDir, name: str, payload: bytes) -> None:
    write_atomically(data.inbox / name, payload)


def _drop_plate(data: DataDir, plate: SimulatedPlate, manifest_name: str = "m.csv", plate_name: str = "p.txt") -> None:
    """Drop a plate's pool manifest, then its QuantStudio export, the way the sampling platform usually sends them."""
    _drop(data, manifest_name, manifest_csv(plate.manifest))
    _drop(data, plate_name, quantstudio_text(plate))


@contextlib.contextmanager
def _serving(engine: Engine) -> Iterator[threading.Thread]:
    """The asyncio service on its own thread for the duration of the block; stopped, joined and the engine closed after."""
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=lambda: loop.run_until_complete(serve(engine, port=None, until=stop)))
    thread.start()
    try:
        yield thread
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=120)
        engine.close()


def _wait_for_ledger(data: DataDir, done: Callable[[Ledger], bool], seconds: float, every: float) -> None:
    """Poll the ledger (read-only) until ``done`` says so or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with Ledger.open(data.ledger, readonly=True) as reader:
            if done(reader):
                return
        time.sleep(every)


def _decisions(data: DataDir) -> dict[str, str]:
    with Ledger.open(data.ledger, readonly=True) as ledger:
        rows = ledger.conn.execute(
            "SELECT d.specimen_id, d.outcome FROM specimen_decisions d JOIN runs r USING (run_id) ORDER BY r.committed_at"
        ).fetchall()
    return {sid: outcome for sid, outcome in rows}


def test_plate_before_manifest_waits_then_completes(data_dir: DataDir) -> None:
    """A plate whose pools have no manifest waits visibly, then completes when the manifest arrives."""
    plate = _plate(11)
    _drop(data_dir, "plate.txt", quantstudio_text(plate))
    with Engine(data_dir, workers=0, certificates=False) as engine:
        first = engine.run_once()
        assert (first.waiting, first.signed) == (1, 0)
        assert engine.ledger.files(["waiting_manifest"])[0]["name"] == "plate.txt"
        assert engine.ledger.events(kind="waiting_manifest")[0]["detail"]["missing"] == len(plate.wells) - 2
        _drop(data_dir, "manifest.csv", manifest_csv(plate.manifest))
        second = engine.run_once()
    assert second.waiting == 0 and second.plates == 1
    assert _decisions(data_dir) == plate.expected


def test_retest_plate_completes_dorfman_pools(data_dir: DataDir) -> None:
    """Specimens of detected pools, run alone on a later plate, get signed results and leave the retest list."""
    plate = _plate(12)
    stage2 = retest_plate(plate, seed=5)
    assert stage2.expected, "the simulated plate must have detected pools"
    _drop_plate(data_dir, plate, "manifest.csv", "plate.txt")
    with Engine(data_dir, workers=0, certificates=False) as engine:
        engine.run_once()
        assert {r["specimen_id"] for r in engine.ledger.open_retests()} == set(stage2.expected)
        _drop(data_dir, "retest.txt", quantstudio_text(stage2))
        summary = engine.run_once()
        assert summary.signed == len(stage2.expected)
        assert engine.ledger.open_retests() == []
        for sid, outcome in stage2.expected.items():
            (row,) = [r for r in engine.ledger.results() if r["specimen_id"] == sid]
            payload = json.loads(row["payload"])
            assert row["status"] == outcome == payload["outcome"]
            assert payload["test"]["pooled"] is False and payload["test"]["pool_id"] is None
            assert payload["person"]["full_name"] == next(m["full_name"] for m in plate.manifest if m["specimen_id"] == sid)
    positives = {s for s, o in stage2.expected.items() if o == "POSITIVE"}
    assert positives == {s for s in stage2.expected if plate.infected[s]}


def test_corrected_manifest_supersedes_signed_result(data_dir: DataDir) -> None:
    """A corrected name for a signed specimen issues version 2 superseding version 1, reason recorded, both kept."""
    plate = _plate(13)
    _drop_plate(data_dir, plate, "manifest.csv", "plate.txt")
    with Engine(data_dir, workers=0, certificates=False) as engine:
        engine.run_once()
        signed = {r["specimen_id"]: r for r in engine.ledger.results()}
        sid = next(iter(signed))
        rows = [dict(m) for m in plate.manifest if m["specimen_id"] == sid]
        rows[0]["full_name"] = rows[0]["full_name"] + " Bảo"
        rows[0]["national_id"] = "079000000000"
        _drop(data_dir, "manifest-correction.csv", manifest_csv(rows))
        summary = engine.run_once()
        assert summary.corrections == 1 and summary.signed == 1
        versions = engine.ledger.result_versions(signed[sid]["id"])
        again = engine.run_once()
        assert again.signed == 0
    assert [v["version"] for v in versions] == [1, 2]
    v1, v2 = versions
    assert v1["superseded_by"] == 2 and v2["supersedes"] == {"id": v1["id"], "version": 1}
    p1, p2 = json.loads(v1["payload"]), json.loads(v2["payload"])
    assert p2["person"]["full_name"] == rows[0]["full_name"] and p2["person"]["national_id"] == "079000000000"
    assert "full_name" in p2["correction"]["reason"] and "national_id" in p2["correction"]["reason"]
    assert p2["outcome"] == p1["outcome"] and p2["evidence"] == p1["evidence"]
    assert v2["seq"] > v1["seq"]


def test_bad_files_are_quarantined_with_a_readable_reason(data_dir: DataDir) -> None:
    """Unparseable files, failed controls and bad manifests go to quarantine with an .error.txt; good files still sign."""
    good = _plate(14)
    contaminated = _plate(15)
    ntc = next(w for w in contaminated.wells if w.sample_name == "NTC")
    ntc.ct["N"] = 33.1
    ntc.ct["ORF1ab"] = 34.0
    _drop(data_dir, "manifest.csv", manifest_csv(good.manifest + contaminated.manifest))
    _drop(data_dir, "good.txt", quantstudio_text(good))
    _drop(data_dir, "contaminated.txt", quantstudio_text(contaminated))
    _drop(data_dir, "garbage.txt", b"this is not an analyzer export\n" * 5)
    bad_manifest = manifest_csv(good.manifest[:3]).replace(b"+07:00", b"", 1)
    _drop(data_dir, "bad-manifest.csv", bad_manifest)
    with Engine(data_dir, workers=0, certificates=False) as engine:
        summary = engine.run_once()
        states = {f["name"]: f["state"] for f in engine.ledger.files()}
        quarantined = {e["detail"]["copy"]: e["detail"]["reason"] for e in engine.ledger.events(kind="quarantined")}
    assert states == {"manifest.csv": "done", "good.txt": "done", "contaminated.txt": "quarantined", "garbage.txt": "quarantined", "bad-manifest.csv": "quarantined"}
    assert quarantined == {"contaminated.txt": "controls", "garbage.txt": "parse", "bad-manifest.csv": "manifest"}
    assert _decisions(data_dir) == good.expected
    report = (data_dir.quarantine / "contaminated.txt.error.txt").read_text(encoding="utf-8")
    assert "no-template control" in report and "What to do" in report and "Nothing from this file was signed" in report
    manifest_report = (data_dir.quarantine / "bad-manifest.csv.error.txt").read_text(encoding="utf-8")
    assert "line 2" in manifest_report and "collected_at" in manifest_report
    assert (data_dir.quarantine / "garbage.txt").read_bytes().startswith(b"this is not")
    assert summary.quarantined == 2  # plates; the manifest is counted with manifests


def test_resubmitted_corrected_file_is_processed(data_dir: DataDir) -> None:
    """After a quarantine, the technician's corrected file (new bytes) is processed normally."""
    plate = _plate(16)
    _drop(data_dir, "manifest.csv", manifest_csv(plate.manifest))
    text = quantstudio_text(plate)
    _drop(data_dir, "plate.txt", text.replace(b"[Results]", b"[Resultz]"))
    with Engine(data_dir, workers=0, certificates=False) as engine:
        assert engine.run_once().quarantined == 1
        _drop(data_dir, "plate.txt", text)
        assert engine.run_once().plates == 1
    assert _decisions(data_dir) == plate.expected


def _fuzz(data: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:
        return data[: rng.randrange(1, len(data))]  # truncated copy
    if kind == 1:
        out = bytearray(data)
        for _ in range(rng.randrange(1, 40)):
            out[rng.randrange(len(out))] = rng.randrange(256)
        return bytes(out)
    if kind == 2:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000)))
    if kind == 3:
        lines = data.split(b"\r\n")
        rng.shuffle(lines)
        return b"\r\n".join(lines)
    return data.replace(b"\t", b",", rng.randrange(1, 200))


def test_mixed_inbox_of_good_and_fuzzed_files_never_stops_the_engine(data_dir: DataDir) -> None:
    """In an inbox of good plates and fuzzed copies, every good plate is signed and every other file ends done or quarantined."""
    rng = random.Random(2026)
    goods = [_plate(20 + i) for i in range(3)]
    manifest_rows = [row for p in goods for row in p.manifest]
    _drop(data_dir, "manifest.csv", manifest_csv(manifest_rows))
    for i, plate in enumerate(goods):
        _drop(data_dir, f"good-{i}.txt", quantstudio_text(plate))
    originals = [quantstudio_text(p) for p in goods] + [manifest_csv(manifest_rows)]
    for i in range(24):
        _drop(data_dir, f"fuzz-{i}.txt", _fuzz(rng.choice(originals), rng))
    with Engine(data_dir, workers=0, certificates=False) as engine:
        engine.run_once()
        files = engine.ledger.files()
        quarantined = {e["file"] for e in engine.ledger.events(kind="quarantined")}
    by_name = {f["name"]: f for f in files}
    for i in range(3):
        assert by_name[f"good-{i}.txt"]["state"] == "done"
    for f in files:
        assert f["state"] in ("done", "quarantined", "waiting_manifest"), f
        if f["state"] == "quarantined":
            assert f["error"] and f["sha256"] in quarantined
            assert any(p.name.endswith(".error.txt") for p in data_dir.quarantine.iterdir())
    with Ledger.open(data_dir.ledger, readonly=True) as ledger:
        for i, plate in enumerate(goods):
            run = by_name[f"good-{i}.txt"]["sha256"]
            rows = ledger.conn.execute("SELECT specimen_id, outcome FROM specimen_decisions WHERE run_id=?", (run,)).fetchall()
            assert dict(rows) == plate.expected


def test_service_streams_files_and_stops_cleanly(data_dir: DataDir) -> None:
    """The asyncio service picks up files dropped while it runs, commits them, renders nothing twice, and stops on request."""
    plate = _plate(30)
    other = _plate(31)
    engine = Engine(data_dir, workers=1, certificates=False)
    engine.config = type(engine.config)(intake=type(engine.config.intake)(stable_seconds=0.2, poll_seconds=0.05, rescan_seconds=0.5))
    engine.intake.settings = engine.config.intake
    with _serving(engine) as thread:
        _drop(data_dir, "plate.txt", quantstudio_text(plate))  # before its manifest
        _drop_plate(data_dir, other, "other.csv", "other.txt")
        time.sleep(0.5)
        _drop(data_dir, "manifest.csv", manifest_csv(plate.manifest))
        _wait_for_ledger(data_dir, lambda reader: reader.counts()["files"].get("done", 0) == 4, 30, 0.1)
    assert not thread.is_alive()
    assert _decisions(data_dir) == {**plate.expected, **other.expected}
    with Ledger.open(data_dir.ledger, readonly=True) as reader:
        ids = [(r["id"], r["version"]) for r in reader.results()]
    assert len(ids) == len(set(ids))


def test_plate_waiting_too_long_for_a_manifest_is_quarantined(data_dir: DataDir) -> None:
    """A plate whose pools no manifest names within the configured wait is quarantined naming the pools."""
    from engine.config import Config, IntakeSettings

    plate = _plate(17)
    _drop(data_dir, "orphan.txt", quantstudio_text(plate))
    with Engine(data_dir, workers=0, certificates=False) as engine:
        assert engine.run_once().waiting == 1
        engine.config = Config(intake=IntakeSettings(manifest_wait_hours=0))
        summary = engine.run_once()
        assert summary.waiting == 0 and summary.quarantined == 1
        assert engine.ledger.files()[0]["state"] == "quarantined"
    report = (data_dir.quarantine / "orphan.txt.error.txt").read_text(encoding="utf-8")
    assert "named in no manifest" in report and plate.wells[0].pool_id in report and "pool manifest" in report


def test_parked_file_is_retried_when_the_operator_asks(data_dir: DataDir) -> None:
    """A plate parked after repeated transient failures waits for an operator, then completes after retry_parked."""
    from engine.config import Config, IntakeSettings

    plate = _plate(18)
    _drop_plate(data_dir, plate)
    with Engine(data_dir, workers=0, certificates=False) as engine:
        engine.config = Config(intake=IntakeSettings(max_attempts=2, backoff_seconds=0))
        engine.intake.scan(stable_seconds=0)
        sha = next(f["sha256"] for f in engine.ledger.files(kind="analyzer"))
        archived = data_dir.archive / sha
        body = archived.read_bytes()
        archived.unlink()  # the archive volume is unavailable: a transient failure
        engine.process_pending()
        engine.process_pending()
        assert engine.ledger.file(sha)["state"] == "parked"
        engine.process_pending()
        assert engine.ledger.file(sha)["state"] == "parked"  # never retried silently, never dropped
        archived.write_bytes(body)
        assert engine.retry_parked() == 1
        engine.process_pending()
        assert engine.ledger.file(sha)["state"] == "done"
    assert _decisions(data_dir) == plate.expected


@pytest.mark.parametrize("pool_size", [1, 2, 5])
def test_decisions_match_truth_for_several_pool_sizes(data_dir: DataDir, pool_size: int) -> None:
    """For pools of 1, 2 and 5 specimens every specimen's decision equals the simulated truth."""
    plate = simulate_plate(70 + pool_size, pool_size=pool_size, prevalence=0.05)
    _drop_plate(data_dir, plate)
    with Engine(data_dir, workers=0, certificates=False) as engine:
        engine.run_once()
    assert _decisions(data_dir) == plate.expected


def test_concurrent_plates_for_the_same_specimens_become_ordered_versions(data_dir: DataDir) -> None:
    """Two retest runs of the same specimens signed in parallel workers commit as versions 1 and 2, never as two version 1s."""
    plate = _plate(19)
    _drop_plate(data_dir, plate)
    first, second = retest_plate(plate, seed=1, name="RT-A"), retest_plate(plate, seed=2, name="RT-B")
    with Engine(data_dir, workers=2, certificates=False) as engine:
        engine.run_once()
        _drop(data_dir, "rt-a.txt", quantstudio_text(first))
        _drop(data_dir, "rt-b.txt", quantstudio_text(second))
        engine.run_once()
        by_specimen: dict[str, list[dict]] = {}
        for row in engine.ledger.results():
            by_specimen.setdefault(row["specimen_id"], []).append(row)
    for sid in first.expected:
        versions = by_specimen[sid]
        assert [v["version"] for v in versions] == [1, 2]
        assert len({v["id"] for v in versions}) == 1
        assert len({v["run_id"] for v in versions}) == 2  # one version from each retest run
        assert versions[0]["superseded_by"] == 2 and versions[1]["supersedes"]["version"] == 1


def _die_once(job: object) -> object:
    """Stand-in worker function: the first call kills its worker process outright, later calls work."""
    import os

    from engine.pipeline.plate import process_plate

    flag = Path(job.archive_path).parent.parent / "died-once"  # type: ignore[attr-defined]
    if not flag.exists():
        flag.write_text("x")
        os._exit(9)
    return process_plate(job)  # type: ignore[arg-type]


def test_a_killed_worker_process_loses_no_plate(data_dir: DataDir, monkeypatch: pytest.MonkeyPatch) -> None:
    """When a worker process dies mid-plate, the pool is replaced and the plates are retried to completion."""
    import engine.pipeline.engine as pipeline

    plates = [_plate(80), _plate(81)]
    _drop(data_dir, "m.csv", manifest_csv(plates[0].manifest + plates[1].manifest))
    for i, plate in enumerate(plates):
        _drop(data_dir, f"p{i}.txt", quantstudio_text(plate))
    monkeypatch.setattr(pipeline, "process_plate", _die_once)  # fork workers inherit the patch
    with Engine(data_dir, workers=1, certificates=False) as engine:
        engine.config = type(engine.config)(intake=type(engine.config.intake)(backoff_seconds=0))
        engine.run_once()
        assert engine.ledger.events(kind="retry")
        engine.run_once()
        assert {f["state"] for f in engine.ledger.files()} == {"done"}
    assert _decisions(data_dir) == {**plates[0].expected, **plates[1].expected}


def test_service_renders_certificates_left_pending_by_an_earlier_run(data_dir: DataDir) -> None:
    """Results committed without certificates (a stop or crash before rendering) get their signed PDFs when the service starts."""
    plate = simulate_plate(90, pool_size=4, prevalence=0.02)
    _drop_plate(data_dir, plate)
    with Engine(data_dir, workers=0, certificates=False) as engine:
        signed = engine.run_once().signed
    data_dir.config.write_text('[signing]\ntsa = "development"\n', encoding="utf-8")  # the service's writer gets the TSA too
    with _serving(Engine(data_dir, workers=0, certificates=True)):
        _wait_for_ledger(data_dir, lambda reader: not reader.pending_certificates(1), 60, 0.2)
    with Ledger.open(data_dir.ledger, readonly=True) as reader:
        rows = reader.results()
    assert len(rows) == signed and all(r["certificate"] for r in rows)
    assert all(Path(r["certificate"]).read_bytes()[:5] == b"%PDF-" for r in rows)
    status = _validate_pdf(Path(rows[0]["certificate"]).read_bytes(), (data_dir.keys / "ca.pem").read_bytes())
    assert status.bottom_line and status.timestamp_validity is not None and status.timestamp_validity.trusted


def test_lab_configuration_is_read_and_bad_settings_are_named(data_dir: DataDir) -> None:
    """ketqua.toml sets the lab printed on results; an unknown or mistyped setting is refused by name."""
    from engine.config import load_config
    from engine.errors import ConfigError

    data_dir.config.write_text('[lab]\nid = "VN-79-TEST"\nname = "Phòng xét nghiệm Thử"\nlicence = "BYT-1"\n[intake]\nstable_seconds = 1\n', encoding="utf-8")
    config = load_config(data_dir)
    assert (config.lab.id, config.lab.name, config.intake.stable_seconds) == ("VN-79-TEST", "Phòng xét nghiệm Thử", 1.0)
    plate = _plate(95)
    _drop_plate(data_dir, plate)
    with Engine(data_dir, workers=0, certificates=False) as engine:
        engine.run_once()
        payload = json.loads(engine.ledger.results()[0]["payload"])
    assert payload["lab"] == {"id": "VN-79-TEST", "name": "Phòng xét nghiệm Thử", "licence": "BYT-1"}
    for text, word in (("[intake]\nstable_secs = 1\n", "stable_secs"), ("[intake]\npoll_seconds = 'fast'\n", "poll_seconds"), ("[lab\n", "TOML")):
        data_dir.config.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError, match=word):
            load_config(data_dir)


def _validate_pdf(pdf: bytes, root_pem: bytes):
    """pyHanko's own validation status of a PDF's signature against one trust root (independent of signing.verify)."""
    from asn1crypto import x509 as asn1_x509
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    root = asn1_x509.Certificate.load(x509.load_pem_x509_certificate(root_pem).public_bytes(Encoding.DER))
    (sig,) = PdfFileReader(io.BytesIO(pdf)).embedded_signatures

    def context() -> ValidationContext:
        return ValidationContext(trust_roots=[root], allow_fetching=False, revocation_mode="soft-fail")

    return validate_pdf_signature(sig, signer_validation_context=context(), ts_validation_context=context())


def _certify_plate(data: DataDir, seed: int) -> list[Path]:
    """Run one small plate with certificates; the certificate paths from the ledger."""
    plate = simulate_plate(seed, pool_size=1, prevalence=0.02)
    _drop_plate(data, plate)
    with Engine(data, workers=0, certificates=True) as engine:
        summary = engine.run_once()
        rows = engine.ledger.results()
    # Enough certificates that the writer hands them to its worker processes (the timestamper is pickled there).
    assert summary.certificates == len(rows) >= 64
    return [Path(r["certificate"]) for r in rows]


def test_development_tsa_configuration_gives_b_t_certificates(data_dir: DataDir, capsys: pytest.CaptureFixture[str]) -> None:
    """With [signing] tsa = "development" the pipeline's certificates carry a trusted RFC 3161 time-stamp (PAdES B-T), and ketqua verify says so."""
    from engine.cli.main import main

    data_dir.config.write_text('[signing]\ntsa = "development"\n', encoding="utf-8")
    paths = _certify_plate(data_dir, 96)
    ca = (data_dir.keys / "ca.pem").read_bytes()
    for path in (paths[0], paths[-1]):
        status = _validate_pdf(path.read_bytes(), ca)
        assert status.bottom_line
        assert status.timestamp_validity is not None and status.timestamp_validity.trusted
        assert "DEVELOPMENT" in status.timestamp_validity.signing_cert.subject.human_friendly
    assert main(["verify", "--data", str(data_dir.root), str(paths[0])]) == 0
    out = capsys.readouterr().out
    assert "timestamped (PAdES B-T)" in out
    assert "time-stamp from a DEVELOPMENT authority" in out


class _HttpTsa:
    """An RFC 3161 time-stamping service over HTTP (RFC 3161 §3.4) on 127.0.0.1, answering with the development TSA key."""

    def __init__(self, keys: Path) -> None:
        from signing.pades import _build_development_stamper

        self.stamper = _build_development_stamper(
            (keys / "tsa.pem").read_bytes(), (keys / "tsa.key").read_bytes(), (keys / "ca.pem").read_bytes()
        )
        self.requests = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        from aiohttp import web
        from asn1crypto import tsp

        async def handle(request: web.Request) -> web.Response:
            if request.content_type != "application/timestamp-query":
                return web.Response(status=415)
            self.requests += 1
            reply = await self.stamper.async_request_tsa_response(tsp.TimeStampReq.load(await request.read()))
            return web.Response(body=reply.dump(), content_type="application/timestamp-reply")

        async def start() -> None:
            app = web.Application()
            app.router.add_post("/tsr", handle)
            self.runner = web.AppRunner(app)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.ready.set()

        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(start())
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())

    def __enter__(self) -> "_HttpTsa":
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_tsa_url_time_stamps_certificates_over_http(data_dir: DataDir) -> None:
    """[signing] tsa_url makes every certificate fetch an RFC 3161 token over HTTP, also in the writer's worker processes, and pyHanko trusts it."""
    with _HttpTsa(data_dir.keys) as tsa:
        data_dir.config.write_text(f'[signing]\ntsa_url = "http://127.0.0.1:{tsa.port}/tsr"\n', encoding="utf-8")
        paths = _certify_plate(data_dir, 98)
    assert tsa.requests == len(paths)
    status = _validate_pdf(paths[-1].read_bytes(), (data_dir.keys / "ca.pem").read_bytes())
    assert status.bottom_line and status.timestamp_validity is not None and status.timestamp_validity.trusted


def test_unreachable_tsa_leaves_certificates_pending(data_dir: DataDir) -> None:
    """When the TSA cannot be reached the results stay signed and committed, and their certificates stay pending for the next run."""
    import socket

    from engine.errors import SigningError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    data_dir.config.write_text(f'[signing]\ntsa_url = "http://127.0.0.1:{port}/tsr"\n', encoding="utf-8")
    plate = simulate_plate(99, pool_size=1)
    _drop_plate(data_dir, plate)
    with Engine(data_dir, workers=0, certificates=True) as engine:
        with pytest.raises(SigningError, match="time-stamp authority"):
            engine.run_once()
        assert engine.ledger.results() and engine.ledger.pending_certificates(1)


def test_readme_configuration_example_is_accepted(data_dir: DataDir) -> None:
    """The ketqua.toml example in README.md passes every section's reader, so the documented keys are the real ones."""
    import re

    from engine.api.settings import api_config
    from engine.config import load_config
    from engine.results.signer import load_signer_spec, load_timestamper

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    (example,) = re.findall(r"## Configuration\n.*?```toml\n(.*?)```", readme, re.S)
    data_dir.config.write_text(example, encoding="utf-8")
    config = load_config(data_dir)
    assert (config.lab.id, config.default_assay, config.hc1_validity_days) == ("VN-79-PASTEUR", "taqpath", 365)
    spec = load_signer_spec(data_dir)
    assert (spec.kind, spec.key, spec.passphrase_env) == ("file", "/etc/ketqua/signer.p12", "KETQUA_KEY_PASSPHRASE")
    assert load_timestamper(data_dir).url == "https://tsa.example.vn/tsr"
    settings, tls = api_config(data_dir)
    assert (settings.rate_per_s, settings.burst, tls) == (500.0, 1000, None)
