"""One plate in a worker: what ``process_plate`` finds for a good file, a cut one, failed controls, an unknown pool."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import engine.pipeline.plate as plate_module
from engine.datadir import DataDir
from engine.demo import manifest_csv, quantstudio_text, simulate_plate
from engine.errors import ParseError, SigningError
from engine.files import write_atomically
from engine.intake.watcher import write_archive
from engine.pipeline import Engine
from engine.pipeline.outcomes import ADVICE, Applied, PlateKind, Refusal, advice, refusal_report
from engine.pipeline.plate import PlateJob, process_plate


def _job(engine: Engine, name: str, data: bytes, manifest: bytes | None = None) -> PlateJob:
    """Archive and record ``data`` (its manifest committed first) as intake would, and build the worker's job.

    Straight into the archive, past intake's own checks at the door, so the worker's are what is tested.
    """
    if manifest is not None:
        write_atomically(engine.data.inbox / f"{name}.csv", manifest)
        engine.intake.scan(stable_seconds=0)
        for row in engine.ledger.files(["received"], kind="manifest"):
            engine.handle_manifest(row)
    sha = hashlib.sha256(data).hexdigest()
    write_archive(engine.data.archive, sha, data)
    engine.ledger.receive_file(sha, name, len(data), "analyzer")
    row = engine.ledger.file(sha)
    assert row is not None
    return engine.job(row)


@pytest.fixture
def engine(data_dir: DataDir) -> Engine:
    with Engine(data_dir, workers=0, certificates=False) as eng:
        yield eng


def test_a_good_plate_is_decided_and_signed(engine: Engine) -> None:
    """Every specimen of the manifest gets a decision, and each signed outcome one result, with nothing asked of the ledger writer."""
    plate = simulate_plate(3, pool_size=4, prevalence=0.05)
    outcome = process_plate(_job(engine, "p.txt", quantstudio_text(plate), manifest_csv(plate.manifest)))
    assert outcome.kind is PlateKind.COMMIT and outcome.error is None
    assert outcome.commit is not None
    decided = {d["specimen_id"]: d["outcome"] for d in outcome.commit.specimen_decisions}
    assert decided == plate.expected
    assert len(outcome.results) == sum(1 for v in plate.expected.values() if v in ("POSITIVE", "NEGATIVE", "INCONCLUSIVE"))
    assert {"parse", "interpret"} <= set(outcome.seconds)
    assert engine.apply(outcome) is Applied.DONE


def test_the_same_job_gives_the_same_signed_bytes(engine: Engine) -> None:
    """Deterministic in (bytes, ledger, receipt time): a replay after a crash signs exactly what the first run signed."""
    plate = simulate_plate(4, pool_size=4)
    job = _job(engine, "p.txt", quantstudio_text(plate), manifest_csv(plate.manifest))
    first, second = process_plate(job), process_plate(job)
    assert [(r.id, r.payload, r.jws, r.hc1) for r in first.results] == [(r.id, r.payload, r.jws, r.hc1) for r in second.results]


def test_a_cut_file_is_bad_with_the_truncated_refusal(engine: Engine) -> None:
    whole = quantstudio_text(simulate_plate(5, pool_size=4))
    outcome = process_plate(_job(engine, "cut.txt", whole[: len(whole) // 2]))
    assert outcome.kind is PlateKind.BAD and outcome.error_kind is Refusal.TRUNCATED
    assert outcome.commit is None and not outcome.results


def test_an_unreadable_file_is_bad_with_the_parse_refusal(engine: Engine) -> None:
    outcome = process_plate(_job(engine, "junk.txt", b"not an export at all\n" * 4))
    assert outcome.kind is PlateKind.BAD and outcome.error_kind is Refusal.PARSE
    assert "junk.txt" in (outcome.error or "")


def test_failed_controls_refuse_the_whole_plate(engine: Engine) -> None:
    plate = simulate_plate(6, pool_size=4)
    ntc = next(w for w in plate.wells if w.sample_name == "NTC")
    ntc.ct.update(N=31.0, ORF1ab=32.0)
    outcome = process_plate(_job(engine, "p.txt", quantstudio_text(plate), manifest_csv(plate.manifest)))
    assert outcome.kind is PlateKind.BAD and outcome.error_kind is Refusal.CONTROLS
    assert "no-template control" in (outcome.error or "")


def test_pools_in_no_manifest_wait(engine: Engine) -> None:
    plate = simulate_plate(7, pool_size=4)
    outcome = process_plate(_job(engine, "p.txt", quantstudio_text(plate)))
    assert outcome.kind is PlateKind.WAITING
    pools = {w.pool_id for w in plate.wells if w.pool_id}
    assert outcome.missing_pools and set(outcome.missing_pools) <= pools
    assert engine.apply(outcome) is Applied.WAITING


def test_a_missing_archive_copy_is_transient(engine: Engine, tmp_path: Path) -> None:
    job = _job(engine, "p.txt", quantstudio_text(simulate_plate(8, pool_size=4)))
    gone = PlateJob(**{**job.__dict__, "archive_path": str(tmp_path / "nowhere")})
    outcome = process_plate(gone)
    assert outcome.kind is PlateKind.TRANSIENT and outcome.error_kind is None
    assert "archived copy" in (outcome.error or "")


def test_a_late_parse_error_gets_the_parse_advice_and_other_user_errors_are_retried(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ParseError raised while decoding used to be reported with kind 'ParseError', which no advice matched."""
    plate = simulate_plate(9, pool_size=4)
    job = _job(engine, "p.txt", quantstudio_text(plate), manifest_csv(plate.manifest))

    def parse_fails(*_: object) -> None:
        raise ParseError("pool id is not text", source="p.txt", line=12, field="Sample Name")

    monkeypatch.setattr(plate_module, "_decode_and_sign", parse_fails)
    outcome = process_plate(job)
    assert outcome.kind is PlateKind.BAD and outcome.error_kind is Refusal.PARSE
    assert advice(outcome.error_kind) == ADVICE[Refusal.PARSE]

    def token_fails(*_: object) -> None:
        raise SigningError("the token is not present")

    monkeypatch.setattr(plate_module, "_decode_and_sign", token_fails)
    outcome = process_plate(job)
    assert outcome.kind is PlateKind.TRANSIENT and outcome.error_kind is None


def test_every_refusal_has_its_own_advice() -> None:
    assert set(ADVICE) == set(Refusal)
    assert len(set(ADVICE.values())) == len(Refusal)
    assert advice("no-such-kind").startswith("Correct the file")  # a kind written by an older ketqua
    assert advice("truncated") == ADVICE[Refusal.TRUNCATED]


def test_a_refusal_report_names_the_file_the_problem_and_what_to_do() -> None:
    report = refusal_report("run 7.txt", "2026-06-01T08:00:00Z", "ab" * 32, "line 3, field Cq: 'x' is not a number", "parse")
    assert report.splitlines()[0] == "File: run 7.txt"
    assert "  line 3, field Cq" in report
    assert ADVICE[Refusal.PARSE] in report
    assert f"archive/{'ab' * 32}" in report
