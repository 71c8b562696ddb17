"""`ketqua advise`: the closed forms, the kit's maximum pool, when pooling stops paying (#19.3)."""

from __future__ import annotations

import json

import pytest

from engine.cli.main import main
from engine.errors import DesignError
from engine.pooling.advise import (
    advise,
    best_dorfman,
    estimate_prevalence,
    stops_paying_above,
)
from engine.pooling.simulate import dorfman_tests_per_specimen


@pytest.mark.parametrize(("p", "k", "cost"), [(0.01, 11, 0.1956), (0.05, 5, 0.4262)])
def test_dorfman_optimum_agrees_with_the_closed_form(p, k, cost):
    """Dorfman's optimum: p = 1 % → pools of 11 at 0.1956 tests per specimen; p = 5 % → 5 at 0.4262."""
    assert best_dorfman(p, 32) == (k, pytest.approx(cost, abs=5e-5))
    report = advise(p, max_pool=32, specimens=20_000)
    assert report["best_dorfman"] == {"design": f"dorfman:{k}", "pool_size": k, "tests_per_specimen": pytest.approx(cost, abs=5e-5)}
    assert report["tests_per_specimen"] <= cost  # the recommendation is never worse than the best Dorfman pool


def test_advice_stays_within_the_kits_maximum_pool():
    """Every design considered has pools no larger than --max-pool; at 5 % with at most 5 per pool Dorfman 5 is best."""
    report = advise(0.05, max_pool=5, specimens=20_000)
    assert all(c["pool_size"] <= 5 for c in report["candidates"])
    assert report["design"] == "dorfman:5" and report["tests_per_specimen"] == pytest.approx(dorfman_tests_per_specimen(5, 0.05))
    assert "dorfman:5" in report["reason"] and "validated maximum" in report["reason"]


def test_advice_says_when_pooling_stops_paying():
    """At 35 % positives the best pool saves under 10 %: the advice is to test individually, and it says why."""
    limit = stops_paying_above(10)
    assert 0.2 < limit < 0.3 and best_dorfman(limit * 0.99, 10)[1] < 0.9 < best_dorfman(limit * 1.01, 10)[1]
    report = advise(0.35, max_pool=10, specimens=20_000)
    assert report["design"] == "individual" and report["tests_per_specimen"] == 1.0
    assert "no longer pays" in report["reason"]


def test_advice_reports_error_figures_under_noise():
    """Shortlisted designs carry wrong POSITIVE / NEGATIVE per 10^5 and the sensitivity lost under dilution."""
    report = advise(0.02, max_pool=10, specimens=50_000)
    pooled = [c for c in report["candidates"] if c["design"] != "individual"]
    assert pooled and all(c["sensitivity_loss"] > 0 and c["wrong_negative_per_100k"] > 0 for c in pooled)
    assert "wrong NEGATIVE" in report["reason"]


def test_advise_cli_json_and_text(capsys):
    """`ketqua advise --prevalence P --max-pool K --json` carries design, tests_per_specimen, prevalence; text explains."""
    assert main(["advise", "--prevalence", "0.01", "--max-pool", "12", "--specimens", "20000", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"design", "tests_per_specimen", "prevalence", "reason", "candidates"} <= set(report)
    assert report["prevalence"] == 0.01
    assert main(["advise", "--prevalence", "0.02", "--specimens", "20000"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("recommended  ") and "tests per 100 specimens" in out and "wrong POS" in out


def test_advise_refuses_nonsense():
    """A prevalence outside (0, 1) or a pool maximum below 2 is an error naming the option."""
    with pytest.raises(DesignError, match="--prevalence"):
        advise(2.0)
    with pytest.raises(DesignError, match="--max-pool"):
        advise(0.01, max_pool=1)


def test_prevalence_estimate_from_recent_results():
    """The estimate is the POSITIVE share of the most recent signed POSITIVE/NEGATIVE results, with a Wilson interval."""
    rows = [{"status": "POSITIVE"}] * 30 + [{"status": "NEGATIVE"}] * 960 + [{"status": "INCONCLUSIVE"}] * 5 + [{"status": "POSITIVE"}] * 10
    estimate = estimate_prevalence(rows, last=1000)
    assert estimate["results"] == 1000 and estimate["positives"] == 40 and estimate["prevalence"] == 0.04
    lo, hi = estimate["interval"]
    assert lo < 0.04 < hi
    assert estimate_prevalence(rows, last=10)["prevalence"] == 1.0  # only the ten most recent
    with pytest.raises(DesignError, match="give --prevalence"):
        estimate_prevalence([{"status": "INCONCLUSIVE"}])


def test_advise_without_prevalence_reads_the_ledger(tmp_path, capsys):
    """Without --prevalence, advise opens the ledger read-only; an empty ledger is an error that says what to give."""
    from engine.datadir import DataDir
    from engine.ledger.sqlite import Ledger

    with Ledger.open(DataDir.at(tmp_path).ledger):
        pass
    assert main(["advise", "--data", str(tmp_path), "--specimens", "20000"]) == 1
    assert "give --prevalence" in capsys.readouterr().err
