"""The simulator against closed forms and published behaviour, and the never-guess guarantee at scale."""

from __future__ import annotations

import json
import math

import pytest

from engine.cli.main import main
from engine.errors import DesignError
from engine.pooling.simulate import (
    NoiseModel,
    array_tests_per_specimen,
    dorfman_tests_per_specimen,
    simulate,
)

DESIGNS = ["dorfman:10", "array:16x24", "array:8x12:master", "cube:4x4x4", "pbest:384x48", "std:384:7:7", "kirkman:31", "hyper:120:30:3"]
DECODERS = ["comp", "dd", "scomp", "exact", "minerr", "ctq", "bp"]
REQUIRED_KEYS = {"design", "decoder", "specimens", "tests", "tests_per_specimen", "exact_recovery", "sensitivity", "specificity", "retest_rate", "wrong_certain_calls"}


def test_dorfman_closed_form_optimum():
    """Perfect-test Dorfman at p = 1 %: the optimum pool size is 11 at 0.1956 tests per specimen."""
    costs = {k: dorfman_tests_per_specimen(k, 0.01) for k in range(2, 33)}
    best = min(costs, key=costs.get)
    assert best == 11
    assert costs[11] == pytest.approx(0.1956, abs=5e-5)
    assert 10 * dorfman_tests_per_specimen(10, 0.01, 0.99, 0.99) == pytest.approx(2.0371, abs=5e-5)  # binGroup2's example


def test_dorfman_simulation_matches_closed_form():
    """Simulated Dorfman k = 11 at p = 1 % agrees with 1/k + 1 − (1−p)^k within 4 Monte Carlo standard errors."""
    report = simulate("dorfman:11", specimens=200_000, prevalence=0.01, seed=11, decoder="dorfman")
    p_pool = 1 - 0.99**11
    n_pools = report["specimens"] / 11
    se = 11 * math.sqrt(n_pools * p_pool * (1 - p_pool)) / report["specimens"]
    assert abs(report["tests_per_specimen"] - dorfman_tests_per_specimen(11, 0.01)) < 4 * se
    assert report["wrong_certain_calls"] == 0 and report["sensitivity"] == 1.0


def test_dorfman_with_imperfect_tests_matches_bingroup2():
    """With Se = Sp = 0.99, p = 1 %, k = 10 the simulated tests per pool agree with 2.0371 within MC error."""
    report = simulate("dorfman:10", specimens=200_000, prevalence=0.01, seed=5, decoder="dorfman", noise="se=0.99,sp=0.99")
    per_pool = report["tests_per_specimen"] * 10
    p_pos = 0.99 * (1 - 0.99**10) + 0.01 * 0.99**10
    se = 10 * math.sqrt(p_pos * (1 - p_pos) / (report["specimens"] / 10))
    assert abs(per_pool - 2.0371) < 4 * se


def test_array_simulation_matches_closed_form():
    """A 16×24 array retesting every row∩column candidate costs (r+c)/(rc) + 1 − q^r − q^c + q^(r+c−1)."""
    report = simulate("array:16x24", specimens=400_000, prevalence=0.01, seed=2, decoder="comp")
    assert report["tests_per_specimen"] == pytest.approx(array_tests_per_specimen(16, 24, 0.01), abs=0.004)


@pytest.mark.parametrize(
    ("positives", "decoder", "at_least"),
    [(1, "exact", 0.99), (2, "exact", 0.99), (3, "exact", 0.99), (4, "dd", 0.94), (4, "exact", 0.98), (4, "ctq", 0.99), (5, "ctq", 0.94)],
)
def test_pbest_published_recovery(positives, decoder, at_least):
    """P-BEST 384×48 (weight 6), noiseless, d positives per plate: exact recovery ≈ 1 for d ≤ 3, high at d = 4.

    Binary exact search reaches ~0.989 at d = 4: the remaining plates have two sets of 4
    explaining the pools equally (true ties); the Ct-aware search (ctq) separates most.
    """
    report = simulate("pbest:384x48", specimens=384 * 1500, positives=positives, seed=positives, decoder=decoder)
    assert report["stage1_exact"] >= at_least
    assert report["wrong_certain_calls"] == 0
    assert report["exact_recovery"] == 1.0  # after stage 2 every call is right, noiseless
    assert report["infected"] == positives * report["batches"]


def test_array_two_positives_ghosts():
    """A 16×24 array resolves only ~9 % of plates with 2 positives in one stage; ghosts are never called POSITIVE."""
    report = simulate("array:16x24", specimens=384 * 3000, positives=2, seed=9, decoder="exact")
    assert 0.07 <= report["stage1_exact"] <= 0.13  # 38/383 ≈ 0.099: both in one row or one column
    assert report["wrong_certain_calls"] == 0
    with_ct = simulate("array:16x24", specimens=384 * 300, positives=2, seed=9, decoder="ctq")
    assert with_ct["decoder"] == "ctq" and with_ct["stage1_exact"] > 0.6 and with_ct["wrong_certain_calls"] == 0


@pytest.mark.parametrize("design", DESIGNS)
def test_noiseless_no_wrong_certain_calls(design):
    """Under the noiseless model no design/decoder pair makes a wrong certain call (10^5 specimens each)."""
    for decoder in DECODERS + (["dorfman"] if design.startswith("dorfman") else []):
        report = simulate(design, specimens=100_000, prevalence=0.01, seed=17, decoder=decoder)
        assert report["wrong_certain_calls"] == 0, (design, decoder)
        assert report["sensitivity"] == 1.0 and report["specificity"] == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("design", DESIGNS)
def test_noiseless_no_wrong_certain_calls_million(design):
    """Zero wrong certain calls over 10^6 specimens per design/decoder pair, noiseless."""
    for decoder in DECODERS + (["dorfman"] if design.startswith("dorfman") else []):
        report = simulate(design, specimens=1_000_000, prevalence=0.01, seed=23, decoder=decoder)
        assert report["wrong_certain_calls"] == 0, (design, decoder)


def test_noise_model_keeps_wrong_calls_rare():
    """With 1 % pool false negatives and 0.1 % false positives, BP's certain calls are wrong < 10 per 10^6."""
    report = simulate("pbest:384x48", specimens=100_000, prevalence=0.01, seed=4, noise="fn=0.01,fp=0.001", decoder="bp")
    assert report["decoder"] == "bp" and any("posterior" in note for note in report["notes"])
    assert report["wrong_certain_per_million"] < 10 * 3  # a 10^5 sample: the 10^6 check is the slow test
    assert report["sensitivity"] > 0.98


@pytest.mark.slow
@pytest.mark.parametrize("design", ["dorfman:10", "array:16x24", "pbest:384x48", "std:384:7:7", "kirkman:31"])
def test_noise_model_wrong_calls_per_million(design):
    """Over 10^6 specimens with pool errors (fn 1 %, fp 0.1 %), wrong certain calls stay below 10 per 10^6."""
    report = simulate(design, specimens=1_000_000, prevalence=0.01, seed=31, noise="fn=0.01,fp=0.001", decoder="bp")
    assert report["wrong_certain_per_million"] < 10


def test_bp_under_dilution_only_when_asked():
    """bp is a choice, not the default: asked for under dilution, it still makes no wrong stage-1 call."""
    report = simulate("dorfman:10", specimens=50_000, prevalence=0.01, seed=8, noise="dilution", decoder="bp")
    assert report["decoder"] == "bp" and report["policy"] == "decoder" and report["wrong_certain_calls"] == 0
    classic = simulate("dorfman:10", specimens=50_000, prevalence=0.01, seed=8, noise="dilution")
    assert classic["decoder"] == "dorfman" and classic["wrong_negative_calls"] > 0  # the classic protocol loses diluted weak positives


def test_noise_model_parsing():
    """Noise text parses into the model, and bad keys or probabilities raise DesignError."""
    assert NoiseModel.parse("none").noiseless
    model = NoiseModel.parse("dilution, se=0.98, fp=0.001, sd=0.5")
    assert model == NoiseModel(dilution=True, fn=pytest.approx(0.02), fp=0.001, sd=0.5)
    assert model.describe() == "dilution,fn=0.02,fp=0.001,sd=0.5"
    with pytest.raises(DesignError, match="unknown key"):
        NoiseModel.parse("rate=0.1")
    with pytest.raises(DesignError, match="probability"):
        NoiseModel.parse("fn=1.5")


def test_simulate_cli_json(capsys):
    """`ketqua simulate --json` prints one object with the documented keys."""
    assert main(["simulate", "--design", "pbest:384x48", "--specimens", "20000", "--positives", "3", "--seed", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert REQUIRED_KEYS <= set(report)
    assert report["design"] == "pbest:384x48" and report["decoder"] == "dd" and report["policy"] == "pipeline"
    assert report["specimens"] == 53 * 384 and any("rounded up to 53 whole batches" in note for note in report["notes"])


def test_simulate_cli_text_and_errors(capsys):
    """The text report names the figures; a bad design spec is an error exit with the known designs."""
    assert main(["simulate", "--design", "dorfman:8", "--specimens", "5000"]) == 0
    assert "tests per specimen" in capsys.readouterr().out
    assert main(["simulate", "--design", "nope:1"]) == 1
    assert "known designs" in capsys.readouterr().err


def test_design_cli(capsys, tmp_path):
    """`ketqua design SPEC --json` reports pools, weight, pool size and disjunctness, and writes a worklist."""
    worklist = tmp_path / "wl.csv"
    assert main(["design", "kirkman:15", "--json", "--worklist", str(worklist)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pools"] == 15 and report["weight"] == {"min": 3, "max": 3} and report["disjunct"] == 2
    assert worklist.read_text(encoding="utf-8").count("\n") == 1 + 35 * 3
    assert main(["design", "array:8x12"]) == 0
    assert "1-disjunct" in capsys.readouterr().out
