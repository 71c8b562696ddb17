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

__all__ = ["NoiseModel", "array_tests_per_specimen", "dorfman_tests_per_specimen", "simulate"]

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
    def parse(cls, text: str | None) -> NoiseModel:
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
    confirm_positives: bool = False,
    cutoff: float = 37.0,
    ct_range: tuple[float, float] = (15.0, 38.0),
    efficiency: float = 1.0,
    confidence: float = 1e-6,
    negatives_from_bound: bool = False,
    max_positives: int | None = None,
) -> dict[str, Any]:
    """Run the design over ``specimens`` specimens under the lab's policy and report what a lab signs.

    ``decoder="auto"`` is the production pipeline's policy (``decode(design, codes, ct)``
    with no model: Dorfman stage 1 for disjoint designs, COMP negatives + definite
    defectives otherwise); any other name runs that decoder instead. Every RETEST is
    tested individually (stage 2) under the same noise; with ``confirm_positives`` a
    POSITIVE decoded from a pooled specimen is tested individually too and signed as
    that test reads. Figures are of the final calls (after stage 2 and confirmation):
    ``wrong_positive_calls`` / ``wrong_negative_calls`` (and per 10^5), ``sensitivity``
    against individual testing under the same noise (``sensitivity_loss``), tests per
    specimen with a 95 % interval; ``alternative`` gives the figures under the other
    confirmation choice from the same draws. ``exact_recovery`` is the share of batches
    whose final calls are all right; ``stage1_exact`` the group-testing notion (stage-1
    POSITIVE calls are exactly the infected). ``wrong_certain_calls`` counts the
    decoder's own stage-1 calls that contradict the truth.
    """
    d = design if isinstance(design, Design) else generate(design)
    model = noise if isinstance(noise, NoiseModel) else NoiseModel.parse(noise)
    n = d.n_specimens
    if specimens < 1:
        raise DesignError(f"--specimens must be at least 1, got {specimens}")
    if positives is not None:
        if not 0 <= positives <= n:
            raise DesignError(f"--positives {positives} does not fit a batch of {n} specimens")
        prior = max(positives, 0.5) / n
    else:
        if prevalence is None or not 0 <= prevalence < 1:
            raise DesignError("give --prevalence between 0 and 1, or --positives")
        prior = prevalence
    n_batches = max(1, math.ceil(specimens / n))
    # exactly the specimens asked: the last batch is a partly filled plate (its empty pools are not run),
    # except with --positives, where every batch holds exactly D infected and must be whole
    rounded = positives is not None and n_batches * n != specimens
    last_fill = n if rounded or specimens % n == 0 else specimens % n
    total_specimens = (n_batches - 1) * n + last_fill
    rng = np.random.default_rng(seed)
    base = 1.0 + efficiency
    inc_t = d.incidence.T.astype(np.float64)
    alone = d.alone

    decode_kw: dict[str, Any] = {"decoder": decoder, "confidence": confidence}
    policy = "pipeline" if decoder == "auto" else "decoder"
    if decoder in ("exact", "ctq", "minerr"):
        decode_kw["max_positives"] = max_positives or (positives if positives is not None else bound_from_prevalence(n, max(prior, 1e-6)))
        decode_kw["negatives_from_bound"] = negatives_from_bound
    if decoder == "ctq":
        decode_kw["efficiency"] = efficiency
        decode_kw["max_ct"] = max(ct_range[1], cutoff) + 0.5
        # the Ct tolerance must cover the measurement noise: 5 standard deviations at least
        decode_kw["ct_tolerance"] = max(1.5, 5.0 * model.sd)
    if decoder == "bp":
        decode_kw.update(prevalence=min(max(prior, 1e-6), 0.5), sensitivity=_pool_sensitivity(d, model, cutoff, ct_range), specificity=1 - model.fp)

    keys = ("pools_run", "retests", "confirm", "stage1_wrong", "exact", "exact_alt", "stage1_exact", "resolved", "pos", "neg",
            "tp", "fp", "fn_", "tp_alt", "fp_alt", "fn_alt", "ind_tp", "tests_sq", "tests_sq_alt")
    t = dict.fromkeys(keys, 0)
    per_chunk = max(1, CHUNK_CELLS // n)
    done = 0
    result = None
    while done < n_batches:
        b = min(per_chunk, n_batches - done)
        done += b
        present = np.ones((b, n), dtype=bool)
        if done == n_batches and last_fill < n:
            present[-1, last_fill:] = False
        truth = _draw_truth(rng, b, n, prevalence, positives) & present
        ct = np.where(truth, rng.uniform(ct_range[0], ct_range[1], size=truth.shape), np.inf)
        load = np.where(truth, np.power(base, -np.where(truth, ct, 0.0)), 0.0)
        sizes = present.astype(np.float64) @ inc_t
        run = sizes > 0  # a pool of a partly filled plate with nobody in it is not pipetted
        pool_load = load @ inc_t / np.maximum(sizes, 1.0)
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
            false_hit = ~infected_pool & run & (rng.random(detected.shape) < model.fp)
            detected |= false_hit
            # a contaminated pool reads late: somewhere between 30 cycles and the cut-off
            pool_ct = np.where(false_hit, rng.uniform(30.0, cutoff, size=pool_ct.shape), pool_ct)
        pool_ct = np.where(detected, pool_ct, np.nan).astype(np.float32)
        result = decode_batch(d, detected.astype(np.int8), pool_ct=pool_ct, **decode_kw)
        outcome = result.outcome
        retest = ((outcome == K.RETEST) | (outcome == K.INVALID)) & present
        called_pos = (outcome == K.POSITIVE) & present
        called_neg = (outcome == K.NEGATIVE) & present
        # an individual test of every specimen under the same noise: stage 2, confirmation, and the
        # yardstick (what testing everyone alone would have found)
        individual = truth.copy()
        if model.sd:
            ind_ct = ct + rng.normal(0.0, model.sd, size=ct.shape)
        else:
            ind_ct = ct
        if model.dilution:
            individual &= ind_ct <= cutoff
        if model.fn:
            individual &= rng.random(truth.shape) >= model.fn
        if model.fp:
            individual |= present & ~truth & (rng.random(truth.shape) < model.fp)
        confirm = called_pos & ~alone[None, :]  # decoded from pools, not the specimen's own tube
        final_plain = called_pos | (retest & individual)
        final_conf = (called_pos & ~confirm) | ((confirm | retest) & individual)
        final, final_alt = (final_conf, final_plain) if confirm_positives else (final_plain, final_conf)
        pools_b = run.sum(axis=1)
        retest_b = retest.sum(axis=1)
        confirm_b = confirm.sum(axis=1)
        tests_b = pools_b + retest_b + (confirm_b if confirm_positives else 0)
        tests_alt_b = pools_b + retest_b + (0 if confirm_positives else confirm_b)
        fill_b = present.sum(axis=1)
        t["pools_run"] += int(pools_b.sum())
        t["retests"] += int(retest_b.sum())
        t["confirm"] += int(confirm_b.sum())
        t["tests_sq"] += float(((tests_b / fill_b) ** 2).sum())
        t["tests_sq_alt"] += float(((tests_alt_b / fill_b) ** 2).sum())
        t["stage1_wrong"] += int(((called_pos & ~truth) | (called_neg & truth)).sum())
        t["exact"] += int(((final == truth) | ~present).all(axis=1).sum())
        t["exact_alt"] += int(((final_alt == truth) | ~present).all(axis=1).sum())
        t["stage1_exact"] += int(((called_pos == truth) | ~present).all(axis=1).sum())
        t["resolved"] += int((((called_pos == truth) & (called_neg == ~truth)) | ~present).all(axis=1).sum())
        t["pos"] += int(truth.sum())
        t["neg"] += int((present & ~truth).sum())
        t["ind_tp"] += int((individual & truth).sum())
        for suffix, calls in (("", final), ("_alt", final_alt)):
            t["tp" + suffix] += int((calls & truth).sum())
            t["fp" + suffix] += int((calls & ~truth).sum())
            t["fn_" if not suffix else "fn_alt"] += int((~calls & truth).sum())
    assert result is not None
    stage2 = t["retests"]
    conf_tests = t["confirm"] if confirm_positives else 0
    tests = t["pools_run"] + stage2 + conf_tests
    tests_alt = t["pools_run"] + stage2 + (0 if confirm_positives else t["confirm"])
    ind_sens = t["ind_tp"] / t["pos"] if t["pos"] else None

    def figures(tp: int, fp: int, fn: int, n_tests: int, sq: float, exact: int) -> dict[str, Any]:
        sens = tp / t["pos"] if t["pos"] else None
        return {
            "tests": n_tests,
            "tests_per_specimen": n_tests / total_specimens,
            "tests_per_specimen_ci": _mean_ci(n_tests / total_specimens, sq / n_batches, n_batches),
            "sensitivity": sens,
            "sensitivity_ci": wilson_interval(tp, t["pos"]) if t["pos"] else None,
            "sensitivity_loss": None if sens is None or ind_sens is None else ind_sens - sens,
            "specificity": (t["neg"] - fp) / t["neg"] if t["neg"] else None,
            "wrong_positive_calls": fp,
            "wrong_negative_calls": fn,
            "wrong_positive_per_100k": fp / total_specimens * 1e5,
            "wrong_positive_per_100k_ci": [x * 1e5 for x in wilson_interval(fp, total_specimens)],
            "wrong_negative_per_100k": fn / total_specimens * 1e5,
            "wrong_negative_per_100k_ci": [x * 1e5 for x in wilson_interval(fn, total_specimens)],
            "exact_recovery": exact / n_batches,
        }

    main = figures(t["tp"], t["fp"], t["fn_"], tests, t["tests_sq"], t["exact"])
    alt = figures(t["tp_alt"], t["fp_alt"], t["fn_alt"], tests_alt, t["tests_sq_alt"], t["exact_alt"])
    wrong_final = main["wrong_positive_calls"] + main["wrong_negative_calls"]
    notes = []
    if rounded:
        notes.append(f"--specimens {specimens} rounded up to {n_batches} whole batches of {n} ({total_specimens} specimens): --positives fixes the infected per batch")
    elif last_fill < n:
        notes.append(f"the last batch is a partly filled plate of {last_fill} of {n} specimens; its empty pools are not run")
    if policy == "pipeline":
        notes.append(f"decoded as the production pipeline decodes ({result.decoder}, no model): positives are signed as decoded"
                     + (", then confirmed individually" if confirm_positives else " unless --confirm-positives"))
    if result.decoder == "bp":
        notes.append(f"bp calls a specimen only when the posterior probability that the call is wrong is below {confidence:g}; the pipeline does not use bp")
    return {
        "design": d.spec,
        "decoder": result.decoder,
        "policy": policy,
        "confirm_positives": confirm_positives,
        "specimens": total_specimens,
        "specimens_requested": specimens,
        "batches": n_batches,
        "batch_size": n,
        "pools": d.n_pools,
        "prevalence": prevalence if positives is None else None,
        "positives_per_batch": positives,
        "max_positives": result.max_positives,
        "noise": model.describe(),
        "seed": seed,
        **main,
        "stage1_tests": t["pools_run"],
        "stage2_tests": stage2,
        "confirmation_tests": conf_tests,
        "retest_rate": stage2 / total_specimens,
        "confirmation_rate": t["confirm"] / total_specimens,
        "individual_sensitivity": ind_sens,
        "stage1_exact": t["stage1_exact"] / n_batches,
        "fully_resolved": t["resolved"] / n_batches,
        "wrong_certain_calls": t["stage1_wrong"],
        "wrong_certain_per_million": t["stage1_wrong"] / total_specimens * 1e6,
        "wrong_final_calls": wrong_final,
        "infected": t["pos"],
        "alternative": {"confirm_positives": not confirm_positives, **alt},
        "notes": notes,
    }


def wilson_interval(k: int, n: int, z: float = 1.96) -> list[float]:
    """95 % Wilson score interval of a binomial share k/n (sound at k = 0, unlike the normal one)."""
    if n <= 0:
        return [0.0, 1.0]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def _mean_ci(mean: float, mean_sq: float, n: int, z: float = 1.96) -> list[float]:
    """95 % normal interval of a mean over n batches, from the mean of squares."""
    if n < 2:
        return [mean, mean]
    var = max(0.0, mean_sq - mean * mean) * n / (n - 1)
    half = z * math.sqrt(var / n)
    return [mean - half, mean + half]


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
