"""The per-plate CPU work, run in a worker process: parse → interpret → controls → decode → sign.

A worker gets a :class:`PlateJob` (plain, picklable data), reads the archived
bytes itself, reads the manifest and earlier results from the ledger with its
own read-only connection, and returns a :class:`PlateOutcome` holding plain data
only. It never writes the ledger: the main process commits the plate in one
transaction, and rejects it (:class:`engine.ledger.ConflictError`) if the ledger
moved on meanwhile, in which case the job is simply run again.

Everything here is deterministic in (file bytes, ledger state, receipt time):
the same job gives the same payloads, which is what makes a replay after a
crash harmless.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import parsers
from engine.config import Lab
from engine.errors import (
    USER_ERRORS,
    AssayError,
    DecodeError,
    DesignError,
    ParseError,
    TruncatedError,
)
from engine.intake.manifest import MANIFEST_COLUMNS, MANIFEST_SCHEMA
from engine.ledger.sqlite import Ledger, PlateCommit, SignedResult
from engine.model import (
    POOL_CODE,
    POOL_MISSING,
    SIGNED_OUTCOMES,
    SPECIMEN_BY_CODE,
    PoolOutcome,
    Role,
    SpecimenOutcome,
    run_metadata,
)
from engine.pipeline.outcomes import PlateKind, Refusal
from engine.pooling import decode, design_from_manifest, generate
from engine.results.signer import open_signer
from engine.results.signed import (
    build_payload,
    ct_value,
    result_id,
    sign_payload,
    utc_instant,
)
from engine.rules.assays import load_profile, profile_for

_POOL_CODE_BY_WORD = {outcome.value: code for outcome, code in POOL_CODE.items()}
# When one pool sits in several wells of a plate (replicates), the most informative call wins.
_SEVERITY = {POOL_CODE[PoolOutcome.DETECTED]: 3, POOL_CODE[PoolOutcome.INCONCLUSIVE]: 2, POOL_CODE[PoolOutcome.INVALID]: 1, POOL_CODE[PoolOutcome.NOT_DETECTED]: 0}


@dataclass(frozen=True)
class PlateJob:
    """Everything a worker needs for one analyzer file (picklable)."""

    run_id: str  # sha256 of the bytes = the run's identity
    source: str  # file name as received
    archive_path: str
    received_at: str  # ledger receipt time: the results' issued_at
    ledger_path: str
    signer_spec: Any  # signing.keys.SignerSpec
    lab: Lab
    default_assay: str = "taqpath"
    hc1_validity_days: int = 365
    #: ``("auto",)``; ``("review",)`` = decide only, sign nothing until a reviewer releases the plate;
    #: ``("review", reviewer, released_at)`` = released: sign, with the reviewer's name and time in the payload.
    release: tuple[str, ...] = ("auto",)


@dataclass
class PlateOutcome:
    """What a worker found: a plate to commit, a plate waiting for manifests, or a bad file."""

    run_id: str
    source: str
    kind: PlateKind
    commit: PlateCommit | None = None
    missing_pools: list[str] = field(default_factory=list)
    error: str | None = None
    error_kind: Refusal | None = None  # why a BAD file is refused (its advice); None for the others
    manifest_generation: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def results(self) -> list[SignedResult]:
        return self.commit.results if self.commit else []


# Per-worker-process cache of ledger readers (the signer's is engine.results.signer.open_signer).
_readers: dict[str, Ledger] = {}


def _reader(path: str) -> Ledger:
    ledger = _readers.get(path)
    if ledger is None:
        ledger = _readers[path] = Ledger.open(path, readonly=True)
    return ledger


_warm = False


def warm_up() -> None:
    """Import every CPU stage and load the numba decoders once (about a second).

    Called in the parent before worker processes fork, so each worker starts
    ready instead of paying the imports and kernel loading on its first plate.
    """
    global _warm
    if _warm:
        return
    parsers.formats()
    load_profile("taqpath")
    design = generate("dorfman:2", 4)
    n = len(design.pool_ids)
    decode(design, np.zeros(n, dtype=np.int8), np.full(n, np.nan, dtype=np.float32))
    _warm = True


def process_plate(job: PlateJob) -> PlateOutcome:
    """Run one plate through every CPU stage; never raises for a bad file (returns kind BAD with its refusal)."""
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    try:
        data = Path(job.archive_path).read_bytes()
    except OSError as exc:
        return PlateOutcome(job.run_id, job.source, PlateKind.TRANSIENT, error=f"cannot read the archived copy: {exc}")
    try:
        wells = parsers.parse_bytes(data, job.source)
    except TruncatedError as exc:  # cut short: its own kind, so the report says so and advises a whole copy
        return PlateOutcome(job.run_id, job.source, PlateKind.BAD, error=str(exc), error_kind=Refusal.TRUNCATED)
    except ParseError as exc:
        return PlateOutcome(job.run_id, job.source, PlateKind.BAD, error=str(exc), error_kind=Refusal.PARSE)
    seconds["parse"] = time.perf_counter() - t0
    try:
        profile = profile_for(wells, job.default_assay)
        tubes = profile.interpret(wells)
        failures = profile.control_failures(tubes)
    except AssayError as exc:
        return PlateOutcome(job.run_id, job.source, PlateKind.BAD, error=str(exc), error_kind=Refusal.ASSAY)
    if failures:
        return PlateOutcome(job.run_id, job.source, PlateKind.BAD, error="\n".join(failures), error_kind=Refusal.CONTROLS)
    seconds["interpret"] = time.perf_counter() - t0 - sum(seconds.values())
    try:
        outcome = _decode_and_sign(job, wells, tubes, profile, seconds)
    except (DesignError, DecodeError) as exc:
        return PlateOutcome(job.run_id, job.source, PlateKind.BAD, error=str(exc), error_kind=Refusal.DECODE)
    except USER_ERRORS as exc:
        # A parse error this late (a manifest row the decoder reads) is the file's fault and gets the parse
        # advice; anything else the user can fix (a key, a token) is the machine's, and is retried.
        if isinstance(exc, ParseError):
            return PlateOutcome(job.run_id, job.source, PlateKind.BAD, error=str(exc), error_kind=Refusal.PARSE)
        return PlateOutcome(job.run_id, job.source, PlateKind.TRANSIENT, error=str(exc))
    outcome.seconds = seconds
    return outcome


def _sample_tubes(tubes: pa.Table) -> pa.Table:
    role = tubes.column("role")
    if pa.types.is_dictionary(role.type):
        role = role.cast(pa.string())
    sid = pc.utf8_trim_whitespace(pc.fill_null(tubes.column("sample_id").cast(pa.string()), ""))
    # Unnamed sample wells hold nothing a manifest can name; they are left out, not guessed.
    keep = pc.and_(pc.equal(role, Role.SAMPLE.value), pc.not_equal(sid, ""))
    return tubes.set_column(tubes.schema.get_field_index("sample_id"), "sample_id", sid).filter(keep)


def manifest_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Manifest rows (ledger dicts) as the table :func:`engine.pooling.design_from_manifest` reads."""
    columns: dict[str, Any] = {c: [r.get(c) for r in rows] for c in MANIFEST_COLUMNS}
    columns["aliquot"] = [bool(r.get("aliquot")) for r in rows]
    columns["line"] = [int(r.get("line") or 0) for r in rows]
    return pa.table(columns, schema=MANIFEST_SCHEMA)


def _decode_and_sign(job: PlateJob, wells: pa.Table, tubes: pa.Table, profile: Any, seconds: dict[str, float]) -> PlateOutcome:
    t0 = time.perf_counter()
    meta = run_metadata(wells)
    samples = _sample_tubes(tubes)
    tube_pool = samples.column("sample_id").to_pylist()
    pool_ids = list(dict.fromkeys(tube_pool))
    ledger = _reader(job.ledger_path)
    generation = ledger.manifest_generation()  # read first: a manifest committed after this forces a recompute
    rows = ledger.pool_rows(pool_ids)
    found = {r["pool_id"] for r in rows}
    missing = [p for p in pool_ids if p not in found]
    if missing:
        # A well named after a known specimen is that specimen tested alone (Dorfman stage 2,
        # decoder RETEST lists): its person comes from the specimen's manifest, no new manifest needed.
        for record in ledger.specimen_rows(missing):
            rows.append({**record, "pool_id": record["specimen_id"]})
        found = {r["pool_id"] for r in rows}
        missing = [p for p in pool_ids if p not in found]
    if missing:
        return PlateOutcome(job.run_id, job.source, PlateKind.WAITING, missing_pools=missing, manifest_generation=generation)

    design = design_from_manifest(manifest_table(rows))
    pool_index = {p: i for i, p in enumerate(design.pool_ids)}
    n_pools = len(design.pool_ids)
    codes = np.full(n_pools, POOL_MISSING, dtype=np.int8)
    pool_ct = np.full(n_pools, np.nan, dtype=np.float32)
    tube_codes = np.array([_POOL_CODE_BY_WORD[w] for w in samples.column("outcome").to_pylist()], dtype=np.int8)
    tube_ct = samples.column("ct_min").to_numpy(zero_copy_only=False)
    tube_of_pool: dict[str, int] = {}
    for t, pid in enumerate(tube_pool):
        i = pool_index.get(pid)
        if i is None:
            continue
        if codes[i] == POOL_MISSING or _SEVERITY[int(tube_codes[t])] > _SEVERITY[int(codes[i])]:
            codes[i] = tube_codes[t]
            pool_ct[i] = tube_ct[t]
            tube_of_pool[pid] = t
    specimens = {r["specimen_id"]: r for r in rows}
    aliquot = np.array([bool(specimens[s].get("aliquot")) for s in design.specimen_ids], dtype=bool)
    decoding = decode(design, codes, pool_ct, aliquot=aliquot)
    seconds["decode"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    wells_col = samples.column("well").to_pylist()
    rule_col = samples.column("rule").to_pylist()
    cts_col = samples.column("cts").to_pylist()
    outcome_col = samples.column("outcome").to_pylist()
    pool_evidence: dict[str, dict[str, Any]] = {}
    pool_decisions = []
    for pid, t in tube_of_pool.items():
        cts = {k: ct_value(v) for k, v in (cts_col[t] or [])}
        pool_evidence[pid] = {"pool_id": pid, "well": wells_col[t], "outcome": outcome_col[t], "ct": cts}
        pool_decisions.append({"pool_id": pid, "well": wells_col[t], "outcome": pool_evidence[pid]["outcome"], "evidence": {**pool_evidence[pid], "rule": rule_col[t]}})

    issued_at = utc_instant(job.received_at)
    instrument = " ".join(x for x in (meta.get("instrument"), meta.get("serial") and f"SN {meta['serial']}") if x) or None
    latest = ledger.latest_versions(list(design.specimen_ids))
    signer = open_signer(job.signer_spec)
    # Specimen → its pools for the whole plate in one pass over the incidence matrix (row-major
    # nonzero: specimens in order, each one's pools ascending, as a per-specimen column scan gives).
    spec_of, pool_of = np.nonzero(np.asarray(design.incidence, dtype=bool).T)
    bounds = np.searchsorted(spec_of, np.arange(len(design.specimen_ids) + 1)).tolist()
    pool_names = [design.pool_ids[j] for j in pool_of.tolist()]
    # What every result and decision of this plate shares, worked out once instead of per specimen.
    words = {code: outcome.value for code, outcome in SPECIMEN_BY_CODE.items()}
    reasons = {code: f"{word} in {design.spec} ({decoding.decoder})" for code, word in words.items()}
    signed_words = frozenset(outcome.value for outcome in SIGNED_OUTCOMES)
    no_retest_yet = frozenset((SpecimenOutcome.RETEST.value, SpecimenOutcome.INVALID.value))
    inconclusive, detected = SpecimenOutcome.INCONCLUSIVE.value, PoolOutcome.DETECTED.value
    aliquots = aliquot.tolist()
    retests = list(decoding.retest)
    n_retests = len(retests)
    decisions: list[dict[str, Any]] = []
    results: list[SignedResult] = []
    held = job.release == ("review",)
    release = release_member(job.release)
    for i, (sid, code) in enumerate(zip(design.specimen_ids, np.asarray(decoding.outcome).tolist())):
        word = words[code]
        pools_i = pool_names[bounds[i]:bounds[i + 1]]
        pool_ev = [pool_evidence[p] for p in pools_i if p in pool_evidence]
        alone = len(pools_i) == 1 and pools_i[0] == sid
        retest = retests[i] if i < n_retests else ""
        if not retest and word in no_retest_yet:
            retest = "rerun" if aliquots[i] else "recollect"
        if word == inconclusive and not retest:
            retest = "recollect"  # signed, but the person must be swabbed again
        try:
            detail = decoding.evidence(i)
        except Exception as exc:  # evidence is for people; a decoder bug must not lose the plate
            detail = {"error": f"{type(exc).__name__}: {exc}"}
        decisions.append(
            {
                "specimen_id": sid,
                "outcome": word,
                "retest": retest,
                "pool_id": pools_i[0] if pools_i else None,
                "reason": reasons[code],
                "evidence": detail,
            }
        )
        if word not in signed_words or held:
            continue
        prev = latest.get(sid)
        if prev is not None and prev["run_id"] == job.run_id:
            continue  # this run already produced this specimen's result
        if prev is not None:
            rid, version, supersedes = prev["id"], int(prev["version"]) + 1, int(prev["version"])
        else:
            rid, version, supersedes = result_id(job.lab.id, sid, job.run_id), 1, None
        deciding = next((p for p in pool_ev if p["outcome"] == detected), pool_ev[0] if pool_ev else None)
        t_dec = tube_of_pool.get(deciding["pool_id"]) if deciding else None
        payload = build_payload(
            id=rid,
            version=version,
            supersedes=supersedes,
            issued_at=issued_at,
            outcome=word,
            lab=job.lab,
            specimen=specimens[sid],
            test={
                "assay": profile.name,
                "kit": profile.kit,
                "method": "RT-PCR",
                "pooled": not alone,
                "pool_id": None if alone else (pools_i[0] if pools_i else None),
                "design": design.spec,
                "decoder": decoding.decoder,
            },
            evidence={
                "run_id": job.run_id,
                "source": job.source,
                "instrument": instrument,
                "rule": rule_col[t_dec] if t_dec is not None else profile.rule_text,
                "pools": pool_ev,
                "ct": dict(deciding["ct"]) if deciding else {},
            },
            release=release,
        )
        canonical, jws, hc1 = sign_payload(payload, signer, hc1_validity_days=job.hc1_validity_days)
        results.append(SignedResult(rid, version, sid, word, job.run_id, canonical, jws, hc1, supersedes,
                                    None if prev is None else f"new run {job.source} for specimen {sid}"))
    seconds["sign"] = time.perf_counter() - t1
    commit = PlateCommit(
        run_id=job.run_id,
        source=job.source,
        metadata=meta,
        wells=len(tube_pool),
        pool_decisions=pool_decisions,
        specimen_decisions=decisions,
        results=results,
        manifest_generation=generation,
    )
    return PlateOutcome(job.run_id, job.source, PlateKind.HELD if held else PlateKind.COMMIT, commit=commit)


def release_member(release: tuple[str, ...]) -> dict[str, str]:
    """The payload's ``release``: the rule that released the result, and under review who and when."""
    if len(release) >= 3:
        return {"rule": release[0], "by": release[1], "at": release[2]}
    return {"rule": release[0]}
