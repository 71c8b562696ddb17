"""Design advice from the lab's own prevalence: which pooling pays today, and what it costs in errors.

Pooling pays only at the right pool size for today's share of positives (in 2021 labs
pooled 5–10 swabs and had to shrink pools as outbreaks grew). :func:`advise` ranks
designs by expected tests per specimen — closed forms for Dorfman and 2-D arrays
(every candidate tested alone in stage 2 or as a confirmation), the simulator for the
combinatorial families — within the kit's validated maximum pool size, then simulates
the shortlist under the lab's noise model with the production decoding policy and
individual confirmation of pooled positives, and says in words why one is recommended.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from engine.errors import DesignError
from engine.pooling.designs import generate
from engine.pooling.simulate import (
    array_tests_per_specimen,
    dorfman_tests_per_specimen,
    simulate,
    wilson_interval,
)

__all__ = ["COMBINATORIAL", "advise", "best_dorfman", "estimate_prevalence", "stops_paying_above"]

#: Non-adaptive designs the advice considers (each is simulated, when its pools fit the kit's maximum).
COMBINATORIAL = ("kirkman:15", "kirkman:21", "kirkman:27", "kirkman:31", "cube:4x4x4", "hyper:120:30:3", "std:96:5:3", "std:384:7:7", "pbest:384x48")
#: Below this saving (share of tests) pooling is not worth the pipetting and the sensitivity lost to dilution.
MIN_SAVING = 0.10
#: Largest array considered: the tubes of one 384-position rack.
MAX_ARRAY = 384
#: Specimens simulated per shortlisted design (enough for error rates per 10^5 to show).
ADVICE_SPECIMENS = 200_000


def best_dorfman(prevalence: float, max_pool: int, se: float = 1.0, sp: float = 1.0) -> tuple[int, float]:
    """The Dorfman pool size (2..max_pool) with the fewest expected tests per specimen, and that figure."""
    costs = {k: dorfman_tests_per_specimen(k, prevalence, se, sp) for k in range(2, max(2, max_pool) + 1)}
    k = min(costs, key=lambda size: (costs[size], size))
    return k, costs[k]


def stops_paying_above(max_pool: int, min_saving: float = MIN_SAVING) -> float:
    """Prevalence above which the best Dorfman pool saves less than ``min_saving`` of the tests (bisection)."""
    lo, hi = 1e-6, 0.5
    for _ in range(60):
        mid = (lo + hi) / 2
        if best_dorfman(mid, max_pool)[1] < 1 - min_saving:
            lo = mid
        else:
            hi = mid
    return lo


def _arrays(prevalence: float, max_pool: int) -> list[dict[str, Any]]:
    out = []
    for r in range(2, max_pool + 1):
        for c in range(r, max_pool + 1):
            if r * c > MAX_ARRAY:
                break
            out.append({"design": f"array:{r}x{c}", "family": "array", "pool_size": c, "specimens_per_plate": r * c,
                        "tests_per_specimen": array_tests_per_specimen(r, c, prevalence), "source": "closed form"})
    return out


def advise(
    prevalence: float,
    *,
    max_pool: int = 10,
    noise: str = "dilution",
    specimens: int = ADVICE_SPECIMENS,
    seed: int = 0,
) -> dict[str, Any]:
    """Recommend a design for this prevalence within ``max_pool`` specimens per pool, with reasons.

    Returns ``design`` (a SPEC such as ``dorfman:5``, or ``individual`` when pooling
    stops paying), ``tests_per_specimen`` (expected, noiseless, with confirmations),
    ``prevalence``, ``pool_size``, ``reason`` (words for a lab manager), ``best_dorfman``,
    ``candidates`` (the shortlist with simulated error figures under ``noise``) and
    ``stops_paying_above`` (the prevalence where the best Dorfman pool saves < 10 %).
    """
    if not 0 < prevalence < 1:
        raise DesignError(f"--prevalence must be between 0 and 1 (a share: 0.02 for 2 %), got {prevalence}")
    if not 2 <= max_pool <= 64:
        raise DesignError(f"--max-pool must be between 2 and 64 specimens, got {max_pool}")
    k, dorf_cost = best_dorfman(prevalence, min(max_pool, 32))
    ranked: list[dict[str, Any]] = [
        {"design": "individual", "family": "individual", "pool_size": 1, "tests_per_specimen": 1.0, "source": "one test each"},
        {"design": f"dorfman:{k}", "family": "dorfman", "pool_size": k, "tests_per_specimen": dorf_cost, "source": "closed form"},
    ]
    arrays = sorted(_arrays(prevalence, max_pool), key=lambda a: (a["tests_per_specimen"], a["specimens_per_plate"]))
    if arrays:
        ranked.append(arrays[0])
    for spec in COMBINATORIAL:
        design = generate(spec)
        size = int(design.pool_sizes.max())
        if size > max_pool:
            continue
        report = simulate(design, specimens=min(specimens, 100_000), prevalence=prevalence, seed=seed, confirm_positives=True)
        ranked.append({"design": spec, "family": design.kind, "pool_size": size, "tests_per_specimen": report["tests_per_specimen"],
                       "source": "simulated, noiseless, positives confirmed"})
    ranked.sort(key=lambda c: (c["tests_per_specimen"], c["pool_size"]))
    for cand in ranked:
        if cand["design"] == "individual":
            continue
        report = simulate(cand["design"], specimens=specimens, prevalence=prevalence, seed=seed, noise=noise, confirm_positives=True)
        cand.update({
            "noise": report["noise"],
            "tests_per_specimen_under_noise": report["tests_per_specimen"],
            "retest_rate": report["retest_rate"] + report["confirmation_rate"],
            "wrong_positive_per_100k": report["wrong_positive_per_100k"],
            "wrong_negative_per_100k": report["wrong_negative_per_100k"],
            "sensitivity_loss": report["sensitivity_loss"],
        })
    best = ranked[0]
    if best["design"] != "individual" and best["tests_per_specimen"] > 1 - MIN_SAVING:
        best = next(c for c in ranked if c["design"] == "individual")
    limit = stops_paying_above(min(max_pool, 32))
    return {
        "design": best["design"],
        "family": best["family"],
        "pool_size": best["pool_size"],
        "tests_per_specimen": best["tests_per_specimen"],
        "prevalence": prevalence,
        "max_pool": max_pool,
        "noise": noise,
        "best_dorfman": {"design": f"dorfman:{k}", "pool_size": k, "tests_per_specimen": dorf_cost},
        "stops_paying_above": limit,
        "candidates": ranked,
        "reason": _reason(best, ranked, prevalence, max_pool, limit),
    }


def _per_hundred(tests_per_specimen: float) -> str:
    return f"{tests_per_specimen * 100:.0f} tests per 100 specimens"


def _reason(best: dict[str, Any], ranked: list[dict[str, Any]], prevalence: float, max_pool: int, limit: float) -> str:
    """The recommendation in a lab manager's words: cost, the runner-up, what dilution loses, when to change."""
    pct = f"{prevalence * 100:.3g} %"
    if best["design"] == "individual":
        pooled = next((c for c in ranked if c["design"] != "individual"), None)
        cheapest = f" (the best pooling, {pooled['design']}, would need {_per_hundred(pooled['tests_per_specimen'])})" if pooled else ""
        return (f"At {pct} positives pooling no longer pays: test every specimen alone{cheapest}. "
                f"Pooling saves at least {MIN_SAVING:.0%} of the tests only below about {limit * 100:.3g} % positives.")
    words = [
        (f"At {pct} positives, {best['design']} (pools of up to {best['pool_size']}) needs about {_per_hundred(best['tests_per_specimen'])} "
        f"instead of 100 — {1 - best['tests_per_specimen']:.0%} fewer tests, counting every second-stage test and the individual "
        f"confirmation of each pooled positive.")
    ]
    runner = next((c for c in ranked if c is not best and c["design"] != "individual"), None)
    if runner is not None:
        words.append(f"Next best: {runner['design']} at {_per_hundred(runner['tests_per_specimen'])}.")
    loss = best.get("sensitivity_loss")
    if loss is not None:
        words.append(
            f"Under {best['noise']} noise it misses about {loss * 1000:.0f} of every 1,000 infected specimens that an individual test would "
            f"find (weak positives diluted below the cut-off: {best['wrong_negative_per_100k']:.0f} wrong NEGATIVE per 100,000 specimens), "
            f"and makes {best['wrong_positive_per_100k']:.1f} wrong POSITIVE per 100,000 with confirmation."
        )
    if best["pool_size"] >= max_pool:
        words.append(f"Larger pools would save more, but {max_pool} is the kit's validated maximum.")
    words.append(f"Re-check as prevalence changes: above about {limit * 100:.3g} % positives pooling saves less than {MIN_SAVING:.0%} and is not worth it.")
    return " ".join(words)



def estimate_prevalence(results: Iterable[Mapping[str, Any]], last: int = 5_000) -> dict[str, Any]:
    """Share of POSITIVE among the ``last`` most recent signed POSITIVE/NEGATIVE results, with a 95 % Wilson interval.

    ``results`` are ledger result rows in ledger order (``status`` key); INCONCLUSIVE is left out.
    """
    calls = [r["status"] for r in results if r.get("status") in ("POSITIVE", "NEGATIVE")][-last:]
    if not calls:
        raise DesignError("the ledger has no signed POSITIVE or NEGATIVE result yet: give --prevalence")
    positives = sum(1 for c in calls if c == "POSITIVE")
    return {"prevalence": positives / len(calls), "interval": wilson_interval(positives, len(calls)), "results": len(calls), "positives": positives}
