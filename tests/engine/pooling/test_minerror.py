"""One wrong pool: the published P-BEST two-carrier plate, and soundness under at most one pool error (#19.4).

Test vector: Shental et al., "Efficient high-throughput SARS-CoV-2 testing to detect
asymptomatic carriers", Sci. Adv. 2020 — the authors' repository github.com/NoamShental/PBEST
(commit f7ffebe, April 2020): ExpData/pooling384_48_by_sample.txt (the Reed–Solomon 384×48
design, copied as tests/data/designs/pbest_384x48_by_sample.txt) and ExpData/ExpTwoCarriersResults.xlsx
(the Ct of each of the 48 pools; 0 = not detected), transcribed below.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine.pooling import decode, decode_batch, generate, load_design
from engine.pooling import kernels as K
from engine.pooling.simulate import simulate

DATA = Path(__file__).resolve().parents[2] / "data"
#: Pool number (1-based) → Ct of the detected pools of the published two-carrier experiment.
TWO_CARRIERS_CT = {6: 29.88, 8: 32.04, 15: 29.81, 20: 32.3, 21: 30.13, 27: 33.45, 31: 30.4, 32: 29.9, 34: 33.21, 39: 30.09, 41: 33.44, 46: 31.93}


def published_design():
    return load_design((DATA / "designs" / "pbest_384x48_by_sample.txt").read_text(encoding="utf-8"), source="pooling384_48_by_sample.txt")


def published_plate(design):
    codes = np.zeros(design.n_pools, np.int8)
    ct = np.full(design.n_pools, np.nan, np.float32)
    for pool, value in TWO_CARRIERS_CT.items():
        i = design.pool_ids.index(str(pool))
        codes[i], ct[i] = 1, value
    return codes, ct


def test_published_by_sample_file_loads_as_published():
    """'sample_1<TAB>1<TAB>9 …' is 384 specimens in 48 numbered pools of 48, six pools each — not 432 pools."""
    design = published_design()
    assert (design.n_pools, design.n_specimens) == (48, 384)
    assert design.pool_ids[:3] == ("1", "2", "3") and design.specimen_ids[0] == "sample_1"
    assert set(design.weights.tolist()) == {6} and set(design.pool_sizes.tolist()) == {48}
    assert [design.pool_ids[p] for p in design.pools_of(0)] == ["1", "9", "17", "25", "33", "41"]


def test_published_two_carrier_plate_is_decoded_with_one_wrong_pool():
    """The noiseless decoders send 144 of 384 to RETEST with no positive; minerr finds the two carriers and names pool 31."""
    design = published_design()
    codes, ct = published_plate(design)
    noiseless = decode(design, codes, ct)
    assert (np.asarray(noiseless.outcome) == K.RETEST).sum() == 144 and not (np.asarray(noiseless.outcome) == K.POSITIVE).any()
    for model in ({}, {"max_positives": 5}, {"prevalence": 0.01}):
        result = decode(design, codes, ct, decoder="minerr", **model)
        outcome = np.asarray(result.outcome)
        assert [design.specimen_ids[i] for i in np.flatnonzero(outcome == K.POSITIVE)] == ["sample_72", "sample_142"], model
        assert not (outcome == K.RETEST).any()
        evidence = result.evidence(design.specimen_ids.index("sample_72"))
        assert evidence["pools_treated_as_wrong"] == ["31"] and "confirm individually" in evidence["reason"]


def test_a_missed_pool_leaves_its_positive_to_retest():
    """Two detected pools of a triple system whose shared specimen's third pool read negative: that pool is named as
    wrong, and the specimen it decided stays RETEST (its status depends on the pool treated as wrong), not POSITIVE."""
    design = generate("kirkman:15")
    shared = int(np.flatnonzero(design.incidence[0] & design.incidence[5])[0])
    third = [int(p) for p in design.pools_of(shared) if p not in (0, 5)]
    codes = np.zeros(design.n_pools, np.int8)
    codes[[0, 5]] = 1
    result = decode(design, codes, decoder="minerr")
    assert result.wrong_pools == third
    assert result.outcome[shared] == K.RETEST and result.reason[shared] == K.R_ONE_ERROR_DEPENDS
    assert not (np.asarray(result.outcome) == K.POSITIVE).any()
    assert (np.asarray(result.outcome) == K.RETEST).sum() < (np.asarray(decode(design, codes).outcome) == K.RETEST).sum()


def test_disagreeing_one_error_readings_stay_retest():
    """A 1-row array: its only pool detected, each member also alone in a negative tube — either tube or the pool may be wrong."""
    # two specimens, pools: {A, B} detected, {A} and {B} not detected: flipping either single pool explains it differently
    inc = np.array([[1, 1], [1, 0], [0, 1]], dtype=bool)
    from engine.pooling.designs import Design

    design = Design(("AB", "A-only", "B-only"), ("A", "B"), inc, "file:test", "file")
    codes = np.array([1, 0, 0], np.int8)
    result = decode(design, codes, decoder="minerr")
    assert sorted(design.pool_ids[p] for p in result.wrong_pools) == ["A-only", "AB", "B-only"]
    assert (np.asarray(result.outcome) == K.RETEST).all()


@st.composite
def plate_with_one_error(draw):
    spec = draw(st.sampled_from(["kirkman:15", "kirkman:21", "array:8x12", "cube:4x4x4", "pbest:384x48"]))
    design = generate(spec)
    d = draw(st.integers(0, 3))
    truth = np.zeros(design.n_specimens, bool)
    truth[draw(st.lists(st.integers(0, design.n_specimens - 1), min_size=d, max_size=d, unique=True))] = True
    codes = design.incidence[:, truth].any(axis=1).astype(np.int8)
    flip = draw(st.integers(-1, design.n_pools - 1))
    if flip >= 0:
        codes[flip] = 1 - codes[flip]
    return design, truth, codes, flip


@settings(max_examples=150, deadline=None)
@given(plate_with_one_error(), st.booleans())
def test_minerr_is_sound_with_at_most_one_wrong_pool(case, bounded):
    """With at most one pool wrong, every POSITIVE/NEGATIVE minerr makes is true, when the plate reads as contradictory."""
    design, truth, codes, flip = case
    kw = {"max_positives": 3} if bounded else {}
    result = decode_batch(design, codes[None, :], decoder="minerr", **kw)
    dd = decode_batch(design, codes[None, :], decoder="exact" if bounded else "dd", **kw)
    outcome = result.outcome[0]
    contradictory = ((dd.reason[0] == K.R_CONFLICT) | (dd.reason[0] == K.R_BOUND)).any()
    if not contradictory:
        assert np.array_equal(outcome, dd.outcome[0])  # a plate with a noiseless explanation decodes as before
        assume(flip < 0)  # an undetectable error is the noiseless decoders' limit, not this one's
    assert not ((outcome == K.POSITIVE) & ~truth).any()
    assert not ((outcome == K.NEGATIVE) & truth).any()
    if contradictory and result.wrong_pools:
        assert flip in result.wrong_pools[0]  # the true wrong pool is always among those considered


def test_minerr_in_the_simulator_cuts_retests_under_false_positive_pools():
    """With false-positive pools, minerr retests fewer specimens than dd on P-BEST and makes no more wrong stage-1 calls per plate error."""
    kw = {"specimens": 384 * 100, "prevalence": 0.005, "seed": 3, "noise": "fp=0.01"}
    dd = simulate("pbest:384x48", **kw)
    minerr = simulate("pbest:384x48", decoder="minerr", **kw)
    assert minerr["decoder"] == "minerr" and minerr["retest_rate"] < dd["retest_rate"]
    assert minerr["tests_per_specimen"] < dd["tests_per_specimen"]


@pytest.mark.parametrize("spec", ["dorfman:10", "array:16x24"])
def test_minerr_equals_dd_on_noiseless_plates(spec):
    """Without noise nothing is contradictory: minerr decodes exactly as dd (or Dorfman's stage 1)."""
    design = generate(spec)
    rng = np.random.default_rng(4)
    truth = rng.random((50, design.n_specimens)) < 0.02
    codes = (truth.astype(np.int32) @ design.incidence.T.astype(np.int32) > 0).astype(np.int8)
    base = decode_batch(design, codes, decoder="dd")
    assert np.array_equal(decode_batch(design, codes, decoder="minerr").outcome, base.outcome)
