"""The simulator describes what the lab does: the pipeline's decoder, stage 2, confirmations, exact counts (#19)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.cli.main import main
from engine.pooling import decode, generate
from engine.pooling.simulate import dorfman_tests_per_specimen, simulate


@pytest.mark.parametrize("spec", ["dorfman:10", "array:16x24", "pbest:384x48", "kirkman:31"])
def test_default_decoder_is_the_pipelines(spec):
    """With no --decoder the simulator decodes as engine/pipeline/plate.py does: decode(design, codes, ct), no model."""
    design = generate(spec)
    production = decode(design, np.zeros(design.n_pools, np.int8), np.full(design.n_pools, np.nan, np.float32)).decoder
    for noise in ("none", "dilution", "fn=0.01,fp=0.001"):
        report = simulate(spec, specimens=20_000, prevalence=0.01, seed=1, noise=noise)
        assert report["decoder"] == production and report["policy"] == "pipeline", noise


def test_dorfman_under_dilution_costs_what_dorfman_costs():
    """dorfman:10 under dilution is ~0.2 tests per specimen (not 1.10): negative pools are called NEGATIVE, as in production."""
    report = simulate("dorfman:10", specimens=100_000, prevalence=0.01, seed=3, noise="dilution")
    assert report["tests_per_specimen"] < dorfman_tests_per_specimen(10, 0.01)
    assert report["tests"] == report["stage1_tests"] + report["stage2_tests"] + report["confirmation_tests"]
    lo, hi = report["tests_per_specimen_ci"]
    assert lo <= report["tests_per_specimen"] <= hi


@pytest.mark.parametrize("spec", ["dorfman:10", "array:16x24", "pbest:384x48"])
def test_noiseless_exact_recovery_is_one(spec):
    """Without noise every batch ends with every call right (after stage 2): not 'exact recovery 0.0000'."""
    report = simulate(spec, specimens=50_000, prevalence=0.02, seed=2)
    assert report["exact_recovery"] == 1.0 and report["alternative"]["exact_recovery"] == 1.0
    assert report["wrong_positive_calls"] == report["wrong_negative_calls"] == 0 and report["sensitivity_loss"] == 0


def test_specimens_are_exactly_the_number_asked():
    """--specimens 10000 on dorfman:10 (940 per plate) simulates 10,000, the last plate partly filled, and says so."""
    report = simulate("dorfman:10", specimens=10_000, prevalence=0.0, seed=0)
    assert report["specimens"] == 10_000 and report["tests"] == 1_000  # 1,000 pools of 10, nothing to retest
    assert any("partly filled plate of 600 of 940" in note for note in report["notes"])
    array = simulate("array:16x24", specimens=100, prevalence=0.0, seed=0)
    assert array["specimens"] == 100 and array["tests"] == 5 + 24  # rows 1-5 and every column hold someone
    whole = simulate("pbest:384x48", specimens=1_000, positives=2, seed=0)
    assert whole["specimens"] == 3 * 384 and any("rounded up" in note for note in whole["notes"])


def test_dilution_figures_per_100k_and_sensitivity_loss():
    """Under dilution the report gives wrong calls per 10^5 both ways and the sensitivity lost to pooling."""
    report = simulate("array:16x24", specimens=384 * 400, prevalence=0.01, seed=5, noise="dilution")
    assert report["individual_sensitivity"] == pytest.approx((37 - 15) / (38 - 15), abs=0.02)
    assert report["sensitivity_loss"] == pytest.approx(report["individual_sensitivity"] - report["sensitivity"])
    assert report["sensitivity_loss"] > 0.05  # a 24-specimen row pool dilutes ~4.6 cycles
    assert report["wrong_negative_calls"] > 0
    assert report["wrong_negative_per_100k"] == pytest.approx(report["wrong_negative_calls"] / report["specimens"] * 1e5)
    lo, hi = report["wrong_negative_per_100k_ci"]
    assert lo < report["wrong_negative_per_100k"] < hi


def test_confirmation_trades_tests_for_wrong_positives():
    """Confirming decoded positives costs one test each and removes the wrong POSITIVEs a false-positive pool causes."""
    kw = {"specimens": 384 * 300, "prevalence": 0.01, "seed": 7, "noise": "fp=0.01"}
    plain = simulate("pbest:384x48", **kw)
    confirmed = simulate("pbest:384x48", confirm_positives=True, **kw)
    assert plain["wrong_positive_calls"] > 0 and confirmed["wrong_positive_calls"] < plain["wrong_positive_calls"]
    assert confirmed["tests"] == plain["tests"] + confirmed["confirmation_tests"] and confirmed["confirmation_tests"] > 0
    assert plain["alternative"]["tests"] == confirmed["tests"]
    assert plain["alternative"]["wrong_positive_calls"] == confirmed["wrong_positive_calls"]


def test_simulate_text_names_the_lab_figures(capsys):
    """The text report gives wrong POSITIVE / NEGATIVE per 10^5, the sensitivity loss and the other confirmation choice."""
    assert main(["simulate", "--design", "dorfman:10", "--noise", "dilution", "--specimens", "20000"]) == 0
    out = capsys.readouterr().out
    assert "decoder dorfman (pipeline policy)" in out and "20000 specimens" in out
    for words in ("wrong POSITIVE", "wrong NEGATIVE", "per 10^5", "lost to pooling", "confirming pooled positives individually"):
        assert words in out
