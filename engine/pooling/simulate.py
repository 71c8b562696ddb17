"""Monte Carlo simulation of a pooling design and decoder, with realistic Cts.

A batch is one application of the design (one plate's worth of specimens). For each
batch: infected specimens are drawn (by prevalence, or exactly ``positives`` per
batch), each gets an individual Ct (uniform over ``ct_range``, cycles), pools mix
their members' template (a pool of k holding one positive of Ct c reads about
c + log2(k)), the noise model decides which pools are detected, the decoder runs on
the whole batch array at once, and RETEST specimens are tested individually (stage 2).

Noise models (``--noise``): ``none`` — a pool is detected exactly when it holds an
infected specimen, individual tests are perfect; ``dilution`` — a pool or tube is
detected only when its Ct is within the cut-off; ``fn=F`` / ``fp=F`` — each pool and
each individual test misses a positive with probability F / flags a negative one with
probability F (``se=``/``sp=`` are the same as 1-fn / 1-fp); ``sd=S`` — Gaussian
noise on measured Cts. Combine with commas: ``dilution,fn=0.01,fp=0.001``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

import engine.pooling.kernels as K
from engine.errors import DecodeError, DesignError
from engine.pooling.decoders import bound_from_prevalence, decode_batch
from engine.pooling.designs import Design, generate

__all__ = ["NoiseModel", "simulate", "dorfman_tests_per_specimen", "array_tests_per_specimen"]

#: Specimen cells (batches × specimens) simulated per chunk; keeps memory flat for 10^7 specimens.
CHUNK_CELLS = 1 << 21


@dataclass(frozen=True)
class NoiseModel:
    """How pool and individual test results depart from the truth."""

    dilution: bool = False
    fn: float = 0.0
    fp: float = 0.0
    sd: float = 0.0

    @classmethod
    def parse(cls, text: str | None) -> "NoiseModel":
        """``none``, ``dilution``, ``fn=0.01``, ``fp=0.001``, ``se=0.99``, ``sp=0.99``, ``sd=0.5``, comma-separated."""
        if not text or text.strip().lower() in ("none", "noiseless", "0"):
            return cls()
        values: dict[str, Any] = {}
        for part in text.split(","):
            part = part.strip().lower()
            if not part:
                continue
            if part == "dilution":
                values["dilution"] = True
                continue
            key, _, raw = part.partition("=")
            try:
                number = float(raw)
            except ValueError:
                raise DesignError(f"noise '{part}': expected key=number (fn, fp, se, sp, sd) or 'dilution'") from None
            if key in ("se", "sp"):
                key, number = ("fn" if key == "se" else "fp"), 1.0 - number
            if key not in ("fn", "fp", "sd"):
                raise DesignError(f"noise '{part}': unknown key '{key}' (use fn, fp, se, sp, sd or dilution)")
            if key in ("fn", "fp") and not 0 <= number < 1:
                raise DesignError(f"noise '{part}': a probability between 0 and 1 is expected")
            values[key] = number
        return cls(**values)

    @property
    def noiseless(self) -> bool:
        """True when results equal the truth (no dilution loss, no random errors)."""
        return not self.dilution and self.fn == 0 and self.fp == 0

    def describe(self) -> str:
        """The model as the ``--noise`` text that produces it."""
        if self.noiseless and self.sd == 0:
            return "none"
        parts = ["dilution"] if self.dilution else []
        parts += [f"{k}={v:g}" for k, v in (("fn", self.fn), ("fp", self.fp), ("sd", self.sd)) if v]
        return ",".join(parts)


def dorfman_tests_per_specimen(k: int, p: float, se: float = 1.0, sp: float = 1.0) -> float:
    """Expected tests per specimen of two-stage Dorfman testing with pools of k (closed form)."""
    q = (1 - p) ** k
    return 1 / k + se * (1 - q) + (1 - sp) * q


def array_tests_per_specimen(r: int, c: int, p: float) -> float:
    """Expected tests per specimen of an r×c array (no master pool), every row∩column candidate retested."""
    q = 1 - p
    return (r + c) / (r * c) + 1 - q**r - q**c + q ** (r + c - 1)


def simulate(
    design: str | Design,
    *,
    specimens: int = 100_000,
    prevalence: float | None = 0.01,
    positives: int | None = None,
    seed: int = 0,
    noise: str | NoiseModel | None = None,
    decoder: str = "auto",
    cutoff: float = 37.0,
    ct_range: tuple[float, float] = (15.0, 38.0),
    efficiency: float = 1.0,
    confidence: float = 1e-6,
    negatives_from_bound: bool = False,
) -> dict[str, Any]:
    """Run the design + decoder over about ``specimens`` specimens and report what a lab cares about.

    Returns ``design``, ``decoder``, ``specimens``, ``tests``, ``tests_per_specimen``,
    ``exact_recovery`` (share of batches whose stage-1 POSITIVE calls are exactly the
    infected specimens — the group-testing notion; ghosts may stay RETEST),
    ``fully_resolved`` (share of batches with every specimen called, correctly, in stage 1),
    ``sensitivity`` and ``specificity`` (after stage-2 retests), ``retest_rate``,
    ``wrong_certain_calls`` (stage-1 POSITIVE/NEGATIVE calls contradicting the truth)
    and ``wrong_certain_per_million``.
    """
    d = design if isinstance(design, Design) else generate(design)
    model = noise if isinstance(noise, NoiseModel) else NoiseModel.parse(noise)
    n = d.n_specimens
    if positives is not None:
        if not 0 <= positives <= n:
            raise DesignError(f"--positives {positives} does not fit a batch of {n} specimens")
        prior = max(positives, 0.5) / n
    else:
        if prevalence is None or not 0 <= prevalence < 1:
            raise DesignError("give --prevalence between 0 and 1, or --positives")
        prior = prevalence
    n_batches = max(1, math.ceil(specimens / n))
    rng = np.random.default_rng(seed)
    base = 1.0 + efficiency
    inc_t = d.incidence.T.astype(np.float64)
    sizes = d.pool_sizes.astype(np.float64)

    decode_kw: dict[str, Any] = {"decoder": decoder, "confidence": confidence}
    name = decoder
    if decoder == "auto":
        # Under noise even Dorfman needs the posterior: a missed pool would otherwise sign a false NEGATIVE.
        # The simulator always knows pool Cts, so the Ct-aware exact search is the strongest proof.
        name = ("dorfman" if d.is_disjoint else "ctq") if model.noiseless else "bp"
        decode_kw["decoder"] = name
    if name in ("exact", "ctq"):
        decode_kw["max_positives"] = positives if positives is not None else bound_from_prevalence(n, prior)
        decode_kw["efficiency"] = efficiency
        decode_kw["max_ct"] = max(ct_range[1], cutoff) + 0.5
        # the Ct tolerance must cover the measurement noise: 5 standard deviations at least
        decode_kw["ct_tolerance"] = max(1.5, 5.0 * model.sd)
        decode_kw["negatives_from_bound"] = negatives_from_bound
    if name == "bp":
        decode_kw.update(prevalence=min(max(prior, 1e-6), 0.5), sensitivity=_pool_sensitivity(d, model, cutoff, ct_range), specificity=1 - model.fp)

    totals = {"tests": 0, "retests": 0, "wrong": 0, "wrong_pos": 0, "wrong_neg": 0, "certain": 0, "exact": 0, "resolved": 0, "pos": 0, "tp": 0, "neg": 0, "tn": 0}
    per_chunk = max(1, CHUNK_CELLS // n)
    done = 0
    while done < n_batches:
        b = min(per_chunk, n_batches - done)
        done += b
        truth = _draw_truth(rng, b, n, prevalence, positives)
        ct = np.where(truth, rng.uniform(ct_range[0], ct_range[1], size=truth.shape), np.inf)
        load = np.where(truth, np.power(base, -np.where(truth, ct, 0.0)), 0.0)
        pool_load = load @ inc_t / sizes
        infected_pool = pool_load > 0
        detected = infected_pool.copy()
        pool_ct = np.where(infected_pool, -np.log(np.where(infected_pool, pool_load, 1.0)) / np.log(base), np.nan)
        if model.sd:
            pool_ct = pool_ct + rng.normal(0.0, model.sd, size=pool_ct.shape)
        if model.dilution:
            detected &= pool_ct <= cutoff
        if model.fn:
            detected &= rng.random(detected.shape) >= model.fn
        if model.fp:
            false_hit = ~infected_pool & (rng.random(detected.shape) < model.fp)
            detected |= false_hit
            # a contaminated pool reads late: somewhere between 30 cycles and the cut-off
            pool_ct = np.where(false_hit, rng.uniform(30.0, cutoff, size=pool_ct.shape), pool_ct)
        pool_ct = np.where(detected, pool_ct, np.nan).astype(np.float32)
        result = decode_batch(d, detected.astype(np.int8), pool_ct=pool_ct, **decode_kw)
        outcome = result.outcome
        retest = (outcome == K.RETEST) | (outcome == K.INVALID)
        called_pos = outcome == K.POSITIVE
        called_neg = outcome == K.NEGATIVE
        wrong_pos = called_pos & ~truth
        wrong_neg = called_neg & truth
        # stage 2: each RETEST specimen is tested alone under the same noise model
        individual = truth.copy()
        if model.dilution:
            individual &= ct <= cutoff
        if model.fn:
            individual &= rng.random(truth.shape) >= model.fn
        if model.fp:
            individual |= ~truth & (rng.random(truth.shape) < model.fp)
        final_pos = called_pos | (retest & individual)
        totals["tests"] += b * d.n_pools + int(retest.sum())
        totals["retests"] += int(retest.sum())
        totals["wrong_pos"] += int(wrong_pos.sum())
        totals["wrong_neg"] += int(wrong_neg.sum())
        totals["certain"] += int((called_pos | called_neg).sum())
        totals["exact"] += int((called_pos == truth).all(axis=1).sum())
        totals["resolved"] += int(((called_pos == truth) & (called_neg == ~truth)).all(axis=1).sum())
        totals["pos"] += int(truth.sum())
        totals["tp"] += int((final_pos & truth).sum())
        totals["neg"] += int((~truth).sum())
        totals["tn"] += int((~final_pos & ~truth).sum())
    total_specimens = n_batches * n
    wrong = totals["wrong_pos"] + totals["wrong_neg"]
    return {
        "design": d.spec,
        "decoder": result.decoder,
        "specimens": total_specimens,
        "batches": n_batches,
        "batch_size": n,
        "pools": d.n_pools,
        "prevalence": prevalence if positives is None else None,
        "positives_per_batch": positives,
        "max_positives": decode_kw.get("max_positives"),
        "noise": model.describe(),
        "seed": seed,
        "tests": totals["tests"],
        "tests_per_specimen": totals["tests"] / total_specimens,
        "exact_recovery": totals["exact"] / n_batches,
        "fully_resolved": totals["resolved"] / n_batches,
        "sensitivity": totals["tp"] / totals["pos"] if totals["pos"] else None,
        "specificity": totals["tn"] / totals["neg"] if totals["neg"] else None,
        "retest_rate": totals["retests"] / total_specimens,
        "wrong_certain_calls": wrong,
        "wrong_positive_calls": totals["wrong_pos"],
        "wrong_negative_calls": totals["wrong_neg"],
        "wrong_certain_per_million": wrong / total_specimens * 1e6,
        "infected": totals["pos"],
    }


def _draw_truth(rng: np.random.Generator, b: int, n: int, prevalence: float | None, positives: int | None) -> np.ndarray:
    if positives is None:
        return rng.random((b, n)) < float(prevalence or 0.0)
    truth = np.zeros((b, n), dtype=bool)
    if positives:
        picks = np.argpartition(rng.random((b, n)), positives - 1, axis=1)[:, :positives]
        truth[np.arange(b)[:, None], picks] = True
    return truth


def _pool_sensitivity(d: Design, model: NoiseModel, cutoff: float, ct_range: tuple[float, float]) -> float:
    """Probability a pool holding one positive is detected, under the noise model (for the BP decoder)."""
    se = 1.0 - model.fn
    if model.dilution:
        lo, hi = ct_range
        k = float(np.max(d.pool_sizes))  # the largest pool dilutes most: a conservative sensitivity
        se *= float(np.clip((cutoff - math.log2(k) - lo) / (hi - lo), 0.0, 1.0))
    if se <= 0:
        raise DecodeError("under this noise model a pool never detects a single positive; nothing can be decoded")
    return se


def config_dict(model: NoiseModel) -> dict[str, Any]:
    """The noise model as a plain dict (for reports)."""
    return asdict(model)
