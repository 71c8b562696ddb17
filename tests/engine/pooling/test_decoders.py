"""Decoders: Dorfman, COMP/DD, bounded exact search, BP, Ct loads, stage 2 — and never a guess."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine.errors import DecodeError
from engine.model import SPECIMEN_CODE, SpecimenOutcome
from engine.pooling import (
    Design,
    bound_from_prevalence,
    complete,
    decode,
    decode_batch,
    design_from_manifest,
    estimate_loads,
    generate,
    pool_codes_for,
    reference,
)
from engine.pooling import kernels as K

NEG, POS, INC, RET, INV = 0, 1, 2, 3, 4
NAN = float("nan")


def ids(prefix: str, n: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(n))


def noiseless_codes(design: Design, truth: np.ndarray) -> np.ndarray:
    """Pool codes when a pool is detected exactly when it holds a positive."""
    return (design.incidence[:, truth].any(axis=1)).astype(np.int8)


def test_codes_match_model():
    """The kernels' outcome constants are the SPECIMEN_CODE of engine.model."""
    assert (K.NEGATIVE, K.POSITIVE, K.INCONCLUSIVE, K.RETEST, K.INVALID) == (
        SPECIMEN_CODE[SpecimenOutcome.NEGATIVE],
        SPECIMEN_CODE[SpecimenOutcome.POSITIVE],
        SPECIMEN_CODE[SpecimenOutcome.INCONCLUSIVE],
        SPECIMEN_CODE[SpecimenOutcome.RETEST],
        SPECIMEN_CODE[SpecimenOutcome.INVALID],
    )


def test_dorfman_contract_from_manifest():
    """Dorfman: not detected → NEGATIVE; detected → RETEST rerun/recollect by aliquot; alone → own call."""
    m = pa.table(
        {
            "pool_id": ["P1", "P1", "P2", "P2", "P3", "P3", "A", "B", "C", "D"],
            "specimen_id": ["S1", "S2", "S3", "S4", "S5", "S6", "A", "B", "C", "D"],
            "aliquot": [True, False, False, False, True, False, False, False, False, True],
        }
    )
    d = design_from_manifest(m)
    codes = np.array([1, 0, 3, 1, 0, 2, 3], dtype=np.int8)
    ct = np.array([31.2, NAN, NAN, 24.0, NAN, 36.0, NAN], dtype=np.float32)
    aliquot = np.array([True, False, False, False, True, False, False, False, False, True])
    result = decode(d, codes, ct, aliquot=aliquot)
    assert result.decoder == "dorfman"
    assert [o.value for o in result.outcomes] == ["RETEST", "RETEST", "NEGATIVE", "NEGATIVE", "RETEST", "RETEST", "POSITIVE", "NEGATIVE", "INCONCLUSIVE", "INVALID"]
    assert result.retest == ["rerun", "recollect", "", "", "rerun", "recollect", "", "", "recollect", "rerun"]
    ev = result.evidence(0)
    assert ev["pools"] == [{"pool_id": "P1", "outcome": "detected", "ct": 31.2, "size": 2, "ct_if_sole_positive": 30.2}]
    assert ev["decoder"] == "dorfman" and ev["design"] == d.spec and "ambiguous" in ev["reason"]
    assert result.evidence(6)["reason"].startswith("tested alone")


def test_missing_pool_means_retest():
    """A pool with no result (-1) leaves its members RETEST: nothing is assumed about them."""
    d = generate("dorfman:4", 8)
    result = decode(d, np.array([-1, 0], dtype=np.int8))
    assert result.outcome.tolist() == [RET] * 4 + [NEG] * 4
    assert "usable result" in result.evidence(0)["reason"]


def test_array_ghosts_are_never_positive():
    """Two positives in different rows and columns of an array leave 4 candidates; all stay RETEST."""
    d = generate("array:8x12")
    truth = np.zeros(96, bool)
    truth[[0, 13]] = True  # (row 0, col 0) and (row 1, col 1): ghosts at 1 and 12
    codes = noiseless_codes(d, truth)
    for decoder, kw in (("comp", {}), ("dd", {}), ("scomp", {}), ("ctq", {}), ("exact", {"max_positives": 2}), ("exact", {"max_positives": 5})):
        out = decode(d, codes, decoder=decoder, **kw).outcome
        assert out[[0, 1, 12, 13]].tolist() == [RET] * 4, decoder
        assert (out[~np.isin(np.arange(96), [0, 1, 12, 13])] == NEG).all()


def test_dd_calls_the_sole_candidate():
    """Two positives in one row of an array are each the only candidate of their column: POSITIVE."""
    d = generate("array:8x12")
    truth = np.zeros(96, bool)
    truth[[0, 5]] = True
    result = decode(d, noiseless_codes(d, truth), decoder="dd")
    assert np.flatnonzero(result.outcome == POS).tolist() == [0, 5]
    assert (result.outcome[~truth] == NEG).all()
    assert result.evidence(0)["margin"] == 1.0 and "definite defective" in result.evidence(0)["reason"]


def test_exact_search_resolves_a_unique_explanation():
    """On P-BEST plates with 4 positives where DD leaves candidates, a unique explanation of ≤ 4 is called exactly."""
    d = generate("pbest:384x48")
    rng = np.random.default_rng(7)
    resolved = 0
    for _ in range(400):
        truth = np.zeros(384, bool)
        truth[rng.choice(384, 4, replace=False)] = True
        codes = noiseless_codes(d, truth)
        dd = decode(d, codes, decoder="dd").outcome
        if not (dd == RET).any():
            continue
        exact = decode(d, codes, decoder="exact", max_positives=4)
        called = exact.outcome != RET
        assert ((exact.outcome == POS) == truth)[called].all()  # never a wrong call
        assert not ((exact.outcome == NEG) & (dd != NEG)).any()  # NEGATIVE still needs a clean pool
        full = decode(d, codes, decoder="exact", max_positives=4, negatives_from_bound=True)
        if (full.outcome != RET).all():
            assert ((full.outcome == POS) == truth).all()
            assert ((exact.outcome == POS) == truth).all()
            resolved += 1
            i = int(np.flatnonzero((exact.outcome == POS) & (dd == RET))[0]) if ((exact.outcome == POS) & (dd == RET)).any() else None
            if i is not None:
                assert "exact search" in exact.evidence(i)["reason"] and exact.evidence(i)["max_positives"] == 4
    assert resolved >= 5


def test_exact_search_with_specimens_tested_alone():
    """A specimen tested alone and positive counts toward the bound and explains its own tube."""
    inc = np.zeros((3, 4), bool)
    inc[0, [0, 1]] = True  # pool A: S0, S1
    inc[1, [1, 2]] = True  # pool B: S1, S2
    inc[2, 3] = True  # S3 alone
    d = Design(("A", "B", "S3"), ("S0", "S1", "S2", "S3"), inc, "mixed", "manifest")
    out = decode(d, np.array([1, 1, 1], np.int8), decoder="exact", max_positives=2, negatives_from_bound=True).outcome
    assert out.tolist() == [NEG, POS, NEG, POS]  # S1 alone explains A and B within the bound of 2
    default = decode(d, np.array([1, 1, 1], np.int8), decoder="exact", max_positives=2)
    assert default.outcome.tolist() == [RET, POS, RET, POS]  # no pool was negative for S0, S2: not signed
    assert "no explanation" in default.evidence(0)["reason"]


def test_exact_bound_exceeded_keeps_only_definite_calls():
    """When the pools need more positives than the bound allows, the exact search calls nothing beyond DD."""
    d = generate("array:8x12")
    truth = np.zeros(96, bool)
    truth[[0, 13, 26]] = True
    codes = noiseless_codes(d, truth)
    result = decode(d, codes, decoder="exact", max_positives=2)
    assert not (result.outcome == POS).any()
    assert "more positives than the model allows" in result.evidence(0)["reason"]


def test_conflicting_results_are_not_trusted():
    """A detected pool whose members all sit in not-detected pools makes them and the suspect negatives RETEST."""
    d = generate("array:4x4")
    codes = np.zeros(8, dtype=np.int8)
    codes[0] = 1  # row 0 detected, but every column not detected
    out = decode(d, codes, decoder="dd").outcome
    assert (out[:4] == RET).all()  # row 0 members
    assert (out[4:] == NEG).all()  # the other rows were not detected and hold no conflicting member
    assert "contradict" in decode(d, codes, decoder="dd").evidence(0)["reason"]
    # a 3-D design where a specimen's only clean pool is suspect: its negative is withdrawn
    dorf = Design(("A", "B", "C"), ("x", "y", "z"), np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1]], bool), "t", "t")
    out = decode(dorf, np.array([1, 0, 0], np.int8), decoder="dd").outcome
    # pool A detected but x (in B) and y (in C) are negative elsewhere: B and C become suspect, z loses its proof
    assert out.tolist() == [RET, RET, RET]


def test_scomp_reports_likely_positives_without_calling_them():
    """SCOMP's greedy choice is evidence (likely_positive), never a POSITIVE call."""
    d = generate("array:8x12")
    truth = np.zeros(96, bool)
    truth[[0, 13]] = True
    result = decode(d, noiseless_codes(d, truth), decoder="scomp")
    assert not (result.outcome == POS).any()
    assert sum(bool(result.evidence(i).get("likely_positive")) for i in (0, 1, 12, 13)) == 2


def test_ct_loads_follow_dilution():
    """A positive of Ct c in pools of k is estimated back at about c from pool Cts of c + log2(k)."""
    d = generate("kirkman:15")
    truth = np.zeros(d.n_specimens, bool)
    truth[3] = True
    codes = noiseless_codes(d, truth)
    k = d.pool_sizes.astype(float)
    pool_ct = np.where(codes == 1, 26.0 + np.log2(k), np.nan).astype(np.float32)
    est = estimate_loads(d, codes, pool_ct, decode(d, codes, decoder="dd").outcome)
    assert est[3] == pytest.approx(26.0, abs=0.01)
    assert np.isnan(np.delete(est, 3)).all()
    result = decode(d, codes, pool_ct, decoder="ctq")
    assert result.evidence(3)["estimated_ct"] == pytest.approx(26.0, abs=0.01)


def test_ctq_separates_array_ghosts_by_ct():
    """With ≤ 2 positives, pool Cts that fit only the true pair resolve the ghosts; a looser bound does not."""
    d = generate("array:8x12")
    truth = np.zeros(96, bool)
    truth[[0, 13]] = True  # Ct 25 at (row 0, col 0), Ct 32 at (row 1, col 1); ghosts at 1 and 12
    codes = noiseless_codes(d, truth)
    specimen_ct = {0: 25.0, 13: 32.0}
    pool_ct = np.full(d.n_pools, np.nan, np.float32)
    for p in np.flatnonzero(codes == 1):
        load = sum(2.0 ** -specimen_ct[s] for s in np.flatnonzero(d.incidence[p]) if s in specimen_ct)
        pool_ct[p] = -np.log2(load / d.pool_sizes[p])
    tight = decode(d, codes, pool_ct, decoder="ctq", max_positives=2, negatives_from_bound=True)
    assert np.flatnonzero(tight.outcome == POS).tolist() == [0, 13]
    assert tight.outcome[[1, 12]].tolist() == [NEG, NEG]
    assert decode(d, codes, pool_ct, decoder="ctq", max_positives=2).outcome[[0, 1, 12, 13]].tolist() == [POS, RET, RET, POS]
    assert "Cts" in tight.evidence(1)["reason"]
    loose = decode(d, codes, pool_ct, decoder="ctq", max_positives=3)
    assert not (loose.outcome[[0, 1, 12, 13]] == NEG).any()  # {0, 1, 12} also fits: nothing is guessed
    assert not (loose.outcome[[1, 12]] == POS).any()
    binary = decode(d, codes, pool_ct, decoder="exact", max_positives=2)
    assert binary.outcome[[0, 1, 12, 13]].tolist() == [RET] * 4


def test_bp_calls_clear_cases_under_noise():
    """BP with Se/Sp < 1 calls a well-supported positive and clear negatives, and leaves doubt RETEST."""
    d = generate("kirkman:15")
    truth = np.zeros(d.n_specimens, bool)
    truth[0] = True
    codes = noiseless_codes(d, truth)
    result = decode(d, codes, sensitivity=0.99, specificity=0.999, prevalence=0.01)
    assert result.decoder == "bp"
    assert result.outcome[0] == POS and result.evidence(0)["posterior"] > 0.999999
    assert (result.outcome[~d.incidence[codes == 1].any(axis=0)] == NEG).all()
    neighbours = d.incidence[codes == 1].any(axis=0) & ~truth
    assert (result.outcome[neighbours] == RET).all()  # one detected pool each: posterior not low enough
    weaker = decode(d, codes, sensitivity=0.99, specificity=0.99, prevalence=0.01)
    assert weaker.outcome[0] == RET  # Sp 0.99: three detected pools leave a 1e-4 doubt


def test_complete_stage_two():
    """Individual results complete a positive pool's members; members still untested stay RETEST."""
    d = generate("dorfman:4", 8)
    codes = np.array([1, 0], dtype=np.int8)
    result = complete(d, codes, None, {"S1": (0, NAN), "S2": (1, 27.5), "S3": (2, 36.9)})
    assert result.outcome.tolist() == [NEG, POS, INC, RET, NEG, NEG, NEG, NEG]
    assert result.retest[3] == "recollect" and result.retest[1] == "" and result.retest[2] == "recollect"
    assert result.evidence(1)["individual"] == {"outcome": "detected", "ct": 27.5}
    with pytest.raises(DecodeError, match="not in design"):
        complete(d, codes, None, {"X9": (0, NAN)})


def test_decode_input_errors():
    """Wrong shapes, codes, unknown decoders and an unbounded exact search raise DecodeError."""
    d = generate("array:4x4")
    with pytest.raises(DecodeError, match="8 pools"):
        decode(d, np.zeros(5, np.int8))
    with pytest.raises(DecodeError, match="codes"):
        decode(d, np.full(8, 7, np.int8))
    with pytest.raises(DecodeError, match="unknown decoder"):
        decode(d, np.zeros(8, np.int8), decoder="magic")
    with pytest.raises(DecodeError, match="model bound"):
        decode(d, np.zeros(8, np.int8), decoder="exact")
    with pytest.raises(DecodeError, match="exactly one pool"):
        decode(d, np.zeros(8, np.int8), decoder="dorfman")


def test_bound_from_prevalence():
    """The positives-per-plate bound grows with prevalence and keeps the binomial tail below 1e-9."""
    assert bound_from_prevalence(384, 0.001) < bound_from_prevalence(384, 0.01) < bound_from_prevalence(384, 0.05)
    assert bound_from_prevalence(384, 0.01) == 20


def test_pool_codes_for_orders_by_design():
    """Tube outcomes by pool id are arranged in the design's pool order; absent pools are -1."""
    d = generate("dorfman:2", 6)
    codes, ct = pool_codes_for(d, ["P3", "P1"], ["detected", "not_detected"], [30.0, NAN])
    assert codes.tolist() == [0, -1, 1] and ct[2] == pytest.approx(30.0)
    with pytest.raises(DecodeError, match="outcome"):
        pool_codes_for(d, ["P1"], ["positive"])


@st.composite
def plates(draw, max_pools: int = 8, max_specimens: int = 10):
    """A random small design, a random truth and the noiseless pool codes with some results lost."""
    n_pools = draw(st.integers(2, max_pools))
    n_spec = draw(st.integers(2, max_specimens))
    inc = np.array(draw(st.lists(st.lists(st.booleans(), min_size=n_spec, max_size=n_spec), min_size=n_pools, max_size=n_pools)), dtype=bool)
    empty = ~inc.any(axis=0)
    inc[draw(st.integers(0, n_pools - 1)), empty] = True
    truth = np.array(draw(st.lists(st.booleans(), min_size=n_spec, max_size=n_spec)), dtype=bool)
    design = Design(ids("P", n_pools), ids("S", n_spec), inc, "random", "random")
    codes = noiseless_codes(design, truth)
    lost = np.array(draw(st.lists(st.sampled_from([0, 0, 0, -1, 2, 3]), min_size=n_pools, max_size=n_pools)), dtype=np.int8)
    codes = np.where(lost != 0, lost, codes).astype(np.int8)
    return design, truth, codes


@settings(max_examples=150, deadline=None)
@given(plates())
def test_kernels_match_reference(plate):
    """The numba COMP/DD/Dorfman kernels give the same outcomes as the plain-Python reference."""
    design, _, codes = plate
    for decoder in ("comp", "dd"):
        assert decode_batch(design, codes[None, :], decoder=decoder).outcome[0].tolist() == reference.decode_plate(design, codes, decoder)
    if design.is_disjoint:
        assert decode_batch(design, codes[None, :], decoder="dorfman").outcome[0].tolist() == reference.decode_plate(design, codes, "dorfman")


@settings(max_examples=150, deadline=None)
@given(plates())
def test_noiseless_calls_are_always_true(plate):
    """Under the noiseless model no decoder makes a wrong POSITIVE or NEGATIVE, whatever results are lost."""
    design, truth, codes = plate
    runs = [("comp", {}), ("dd", {}), ("scomp", {}), ("exact", {"max_positives": int(truth.sum())}), ("exact", {"max_positives": int(truth.sum()) + 2})]
    for decoder, kw in runs:
        out = decode(design, codes, decoder=decoder, **kw).outcome
        alone = design.alone
        assert not ((out == POS) & ~truth & ~alone).any(), decoder
        assert not ((out == NEG) & truth & ~alone).any(), decoder


@settings(max_examples=40, deadline=None)
@given(plates(max_pools=6, max_specimens=8), st.integers(0, 2), st.randoms(use_true_random=False))
def test_ctq_never_wrong_with_consistent_cts(plate, extra, rnd):
    """With pool Cts that follow the dilution model, the Ct-aware search makes no wrong call."""
    design, truth, codes = plate
    assume(not design.alone.any())
    specimen_ct = np.array([rnd.uniform(15.0, 38.0) for _ in range(design.n_specimens)])
    load = np.where(truth, 2.0 ** -specimen_ct, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        pool_ct = (-np.log2(design.incidence.astype(float) @ load / design.pool_sizes)).astype(np.float32)
    pool_ct[codes != 1] = np.nan
    out = decode(design, codes, pool_ct, decoder="ctq", max_positives=int(truth.sum()) + extra).outcome
    assert not ((out == POS) & ~truth).any()
    assert not ((out == NEG) & truth).any()


@settings(max_examples=120, deadline=None)
@given(plates(max_pools=7, max_specimens=9), st.integers(0, 3))
def test_exact_equals_brute_force(plate, extra):
    """Exact search calls POSITIVE exactly the specimens in every explanation of size ≤ D, NEGATIVE those in none."""
    design, truth, codes = plate
    assume(not design.alone.any())
    bound = int(truth.sum()) + extra
    out = decode(design, codes, decoder="exact", max_positives=bound, negatives_from_bound=True).outcome
    n = design.n_specimens
    inc = design.incidence
    feasible = []
    for size in range(bound + 1):
        for subset in itertools.combinations(range(n), size):
            chosen = np.zeros(n, bool)
            chosen[list(subset)] = True
            hit = inc[:, chosen].any(axis=1)
            if (hit[codes == 0]).any() or not hit[codes == 1].all():
                continue
            feasible.append(chosen)
    members = np.array(feasible)
    in_all = members.all(axis=0)
    in_none = ~members.any(axis=0)
    assert ((out == POS) == in_all).all()
    assert ((out == NEG) == in_none).all()


def test_batch_equals_single_plate_decoding():
    """decode_batch over many plates gives the same outcomes as decode plate by plate."""
    d = generate("pbest:384x48")
    rng = np.random.default_rng(3)
    truth = rng.random((50, 384)) < 0.01
    codes = (truth.astype(np.int32) @ d.incidence.T.astype(np.int32) > 0).astype(np.int8)
    batch = decode_batch(d, codes, decoder="exact", max_positives=8)
    for b in range(50):
        assert (decode(d, codes[b], decoder="exact", max_positives=8).outcome == batch.outcome[b]).all()


@pytest.mark.parametrize("decoder", ["comp", "dd", "scomp", "exact", "ctq", "bp"])
def test_evidence_is_json_for_every_decoder(decoder):
    """Every specimen's evidence serialises to JSON (it is signed into the result payload)."""
    import json

    d = generate("kirkman:15")
    truth = np.zeros(d.n_specimens, bool)
    truth[[2, 9]] = True
    codes = noiseless_codes(d, truth)
    codes[0] = -1
    pool_ct = np.where(codes == 1, 30.0, np.nan).astype(np.float32)
    kw = {"max_positives": 2} if decoder in ("exact", "ctq") else {}
    if decoder == "bp":
        kw = {"sensitivity": 0.99, "specificity": 0.999, "prevalence": 0.02}
    result = decode(d, codes, pool_ct, decoder=decoder, **kw)
    for i in range(d.n_specimens):
        text = json.dumps(result.evidence(i))
        assert d.specimen_ids[i] in text
