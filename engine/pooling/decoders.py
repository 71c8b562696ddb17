"""Decoders: pool outcomes in, one outcome per specimen out — never a guess.

Each decoder is registered by name (:data:`DECODERS`) and runs a numba kernel over a
batch of plates (:func:`decode_batch`); :func:`decode` is the one-plate form the
pipeline uses, with evidence for every specimen.

==========  =====================================================================================
decoder     what it proves (noiseless model unless stated: a pool is detected iff it holds a positive)
==========  =====================================================================================
dorfman     each specimen in one pool: not detected → NEGATIVE; detected → RETEST (stage 2)
comp        in a not-detected pool → NEGATIVE; everything else RETEST
dd          comp + the only possible positive of a detected pool → POSITIVE (definite defective)
scomp       dd calls; SCOMP's greedy cover is reported as evidence ("likely"), never as a call
exact       dd + bounded exact search: with at most D positives per plate (``max_positives``, or
            from ``prevalence`` with a 1e-9 tail), a candidate in every explanation is POSITIVE;
            one in none is NEGATIVE only with ``negatives_from_bound`` (else RETEST, reason given);
            ties stay RETEST
bp          noise model (``sensitivity``/``specificity`` per pool): belief propagation; calls only
            when the posterior is beyond ``confidence``
minerr      dd (+ exact with a bound) and, on a plate with no noiseless explanation, every reading
            with one pool result flipped (engine/pooling/minerror.py): a call all consistent
            readings make is kept, POSITIVE pending individual confirmation; the pool treated as
            wrong is named in the evidence; members it alone decided stay RETEST; disagreement
            stays RETEST
ctq         exact + the pools' Cts: with at most D positives, every explanation must also have
            loads (1+E)^-Ct (individual Ct ≤ max_ct) that reproduce each detected pool's Ct within
            ± ct_tolerance after dilution (Ct + log2(k) in a pool of k) — a linear feasibility
            check per explanation. Breaks ties binary search cannot (2-D array ghosts). Without a
            bound it adds relative loads (non-negative least squares on the COMP support) as
            evidence only: a weak positive can hide under a strong one, so loads never prove a
            negative on their own
==========  =====================================================================================

A pool whose result is missing, invalid or inconclusive constrains nothing; its
members are decided by their other pools or stay RETEST. Specimens tested alone
(their own tube) get their tube's call.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import engine.pooling.kernels as K
from engine.errors import DecodeError
from engine.model import POOL_MISSING, SPECIMEN_BY_CODE, PoolOutcome, SpecimenOutcome
from engine.pooling.designs import Design
from engine.pooling.minerror import needs_error_model, one_error_refine

__all__ = [
    "BatchDecoding",
    "DECODERS",
    "Decoding",
    "bound_from_prevalence",
    "complete",
    "decode",
    "decode_batch",
    "estimate_loads",
    "pool_codes_for",
]

DECODERS = ("dorfman", "comp", "dd", "scomp", "exact", "minerr", "bp", "ctq")
_POOL_WORDS = {0: PoolOutcome.NOT_DETECTED.value, 1: PoolOutcome.DETECTED.value, 2: PoolOutcome.INCONCLUSIVE.value, 3: PoolOutcome.INVALID.value}
#: Nodes one plate's exact search may visit before it gives up (sound: undecided stays RETEST).
EXACT_NODE_BUDGET = 2_000_000
#: Default posterior confidence for the noise-tolerant decoder: a call is wrong with probability ≤ this.
DEFAULT_CONFIDENCE = 1e-6
#: Cycles a pool's measured Ct may differ from the one its members' loads predict (ctq decoder).
DEFAULT_CT_TOLERANCE = 1.5
#: Highest individual Ct (cycles) that still counts as a positive specimen (ctq decoder's load floor).
DEFAULT_MAX_CT = 40.0
#: Candidate explanations the ctq decoder will enumerate on one plate before leaving it to DD/exact.
CTQ_MAX_SUBSETS = 3_000
#: Linear programs the ctq decoder will solve on one plate before leaving it to DD/exact.
CTQ_MAX_PROGRAMS = 300


@dataclass
class BatchDecoding:
    """Outcomes of many plates decoded at once (``int8[plates, specimens]``, SPECIMEN_CODE)."""

    outcome: np.ndarray
    reason: np.ndarray
    decoder: str
    margin: np.ndarray | None = None
    posterior: np.ndarray | None = None
    max_positives: int | None = None
    #: plate index -> pools (indices) the one-error explanations treat as wrong (minerr decoder)
    wrong_pools: dict[int, list[int]] = field(default_factory=dict)


@dataclass
class Decoding:
    """One plate's decoding: an outcome per specimen, the retest kind, and evidence on demand."""

    design: Design
    outcome: np.ndarray
    retest: list[str]
    decoder: str
    pool_codes: np.ndarray
    pool_ct: np.ndarray
    reason: np.ndarray
    margin: np.ndarray
    posterior: np.ndarray | None = None
    estimated_ct: np.ndarray | None = None
    likely: np.ndarray | None = None
    max_positives: int | None = None
    individual: dict[int, tuple[int, float]] = field(default_factory=dict)
    wrong_pools: list[int] = field(default_factory=list)

    def evidence(self, i: int) -> dict[str, Any]:
        """Why specimen ``i`` got its outcome: pools with their outcomes and Cts, decoder, margin."""
        pools = []
        for p in self.design.pools_of(i):
            code = int(self.pool_codes[p])
            ct = float(self.pool_ct[p])
            size = int(self.design.pool_sizes[p])
            entry: dict[str, Any] = {
                "pool_id": self.design.pool_ids[p],
                "outcome": _POOL_WORDS.get(code, "missing"),
                "ct": None if math.isnan(ct) else round(ct, 2),
                "size": size,
            }
            if size > 1 and not math.isnan(ct):
                # dilution: one positive of Ct c reads about c + log2(k) in a pool of k
                entry["ct_if_sole_positive"] = round(ct - math.log2(size), 2)
            pools.append(entry)
        out: dict[str, Any] = {
            "specimen_id": self.design.specimen_ids[i],
            "outcome": SPECIMEN_BY_CODE[int(self.outcome[i])].value,
            "design": self.design.spec,
            "decoder": self.decoder,
            "reason": K.REASONS[int(self.reason[i])],
            "pools": pools,
            "margin": float(self.margin[i]),
        }
        if self.retest[i]:
            out["retest"] = self.retest[i]
        if self.max_positives is not None:
            out["max_positives"] = self.max_positives
        if self.wrong_pools:
            out["pools_treated_as_wrong"] = [self.design.pool_ids[p] for p in self.wrong_pools]
        if self.posterior is not None:
            out["posterior"] = float(self.posterior[i])
        if self.estimated_ct is not None and not math.isnan(float(self.estimated_ct[i])):
            out["estimated_ct"] = round(float(self.estimated_ct[i]), 2)
        if self.likely is not None and self.likely[i]:
            out["likely_positive"] = True
        if i in self.individual:
            code, ct = self.individual[i]
            out["individual"] = {"outcome": _POOL_WORDS.get(code, "missing"), "ct": None if math.isnan(ct) else round(ct, 2)}
        return out

    @property
    def outcomes(self) -> list[SpecimenOutcome]:
        """Outcomes as vocabulary words, for people and tests."""
        return [SPECIMEN_BY_CODE[int(c)] for c in self.outcome]


def bound_from_prevalence(n_specimens: int, prevalence: float, tail: float = 1e-9) -> int:
    """Smallest D with P(Binomial(n, prevalence) > D) ≤ tail: the positives-per-plate bound the exact decoder assumes."""
    if not 0 < prevalence < 1:
        raise DecodeError(f"prevalence must be between 0 and 1 (exclusive), got {prevalence}")
    log_p, log_q = math.log(prevalence), math.log1p(-prevalence)
    cdf = 0.0
    for d in range(n_specimens + 1):
        cdf += math.exp(math.lgamma(n_specimens + 1) - math.lgamma(d + 1) - math.lgamma(n_specimens - d + 1) + d * log_p + (n_specimens - d) * log_q)
        if 1.0 - cdf <= tail:
            return d
    return n_specimens


def _choose(design: Design, decoder: str, max_positives: int | None, prevalence: float | None, sensitivity: float | None, specificity: float | None) -> str:
    if decoder != "auto":
        if decoder not in DECODERS:
            raise DecodeError(f"unknown decoder '{decoder}'; choose one of {', '.join(DECODERS)} or auto")
        return decoder
    if (sensitivity is not None and sensitivity < 1) or (specificity is not None and specificity < 1):
        return "bp"
    if design.is_disjoint:
        return "dorfman"
    if max_positives is not None or prevalence is not None:
        return "exact"
    return "dd"


def _check_codes(design: Design, codes: np.ndarray) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim == 1:
        codes = codes[None, :]
    if codes.ndim != 2 or codes.shape[1] != design.n_pools:
        raise DecodeError(f"pool results have shape {codes.shape}, design {design.spec} has {design.n_pools} pools")
    codes = np.ascontiguousarray(codes, dtype=np.int8)
    if ((codes < -1) | (codes > 3)).any():
        raise DecodeError("pool result codes must be -1 (missing), 0 (not detected), 1 (detected), 2 (inconclusive) or 3 (invalid)")
    return codes


def decode_batch(
    design: Design,
    pool_codes: np.ndarray,
    *,
    decoder: str = "auto",
    max_positives: int | None = None,
    prevalence: float | None = None,
    sensitivity: float | None = None,
    specificity: float | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    bp_iterations: int = 20,
    pool_ct: np.ndarray | None = None,
    ct_tolerance: float = DEFAULT_CT_TOLERANCE,
    efficiency: float = 1.0,
    max_ct: float = DEFAULT_MAX_CT,
    negatives_from_bound: bool = False,
) -> BatchDecoding:
    """Decode many plates of one design at once: ``pool_codes`` is ``int8[plates, pools]``.

    This is the throughput API (the simulator and the benchmarks use it). ``pool_ct``
    (``float32[plates, pools]``, cycles) is used by the ``ctq`` decoder only.

    The exact and ctq searches also find specimens that belong to no explanation within
    the bound; those become NEGATIVE only with ``negatives_from_bound=True``. By default
    a NEGATIVE needs a pool that was not detected, and they stay RETEST with the reason
    in their evidence.
    """
    codes = _check_codes(design, pool_codes)
    name = _choose(design, decoder, max_positives, prevalence, sensitivity, specificity)
    n_batch = codes.shape[0]
    out = np.empty((n_batch, design.n_specimens), dtype=np.int8)
    reason = np.empty((n_batch, design.n_specimens), dtype=np.int8)
    margin = None
    posterior = None
    pool_ptr, pool_members, spec_ptr, spec_pools = design.csr
    alone = np.ascontiguousarray(design.alone)
    bound = None
    wrong_pools: dict[int, list[int]] = {}
    if name == "dorfman":
        if not design.is_disjoint:
            raise DecodeError(f"the dorfman decoder needs each specimen in exactly one pool; {design.spec} is not such a design")
        K.disjoint_batch(codes, design.incidence.argmax(axis=0).astype(np.int32), alone, out, reason)
    elif name in ("comp", "dd", "scomp", "exact", "ctq", "minerr"):
        K.dd_batch(codes, pool_ptr, pool_members, spec_ptr, spec_pools, alone, out, reason, name == "comp")
        margin = np.zeros(out.shape, dtype=np.float32)
        if name == "exact" and max_positives is None and prevalence is None:
            raise DecodeError("the exact decoder needs a model bound: give max_positives (positives per plate) or prevalence")
        if name in ("exact", "ctq", "minerr") and (max_positives is not None or prevalence is not None):
            bound = int(max_positives) if max_positives is not None else bound_from_prevalence(design.n_specimens, float(prevalence))  # type: ignore[arg-type]
            K.exact_batch(codes, pool_ptr, pool_members, spec_ptr, spec_pools, out, reason, margin, bound, EXACT_NODE_BUDGET)
        if name == "ctq" and bound is not None and pool_ct is not None:
            cts = np.asarray(pool_ct, dtype=np.float64)
            if cts.size != codes.size:
                raise DecodeError(f"pool Cts have shape {cts.shape}, pool results {codes.shape}: one Ct per pool and plate")
            cts = cts.reshape(codes.shape)
            for b in np.flatnonzero(((out == K.RETEST) & ((reason == K.R_AMBIGUOUS) | (reason == K.R_UNTESTED))).any(axis=1)):
                _ctq_refine(design, codes[b], cts[b], out[b], reason[b], margin[b], bound, ct_tolerance, efficiency, max_ct)
        if name == "minerr":
            for b in np.flatnonzero(needs_error_model(reason)):
                pools = one_error_refine(design, codes[b], out[b], reason[b], bound, EXACT_NODE_BUDGET)
                if pools:
                    wrong_pools[int(b)] = pools
        if not negatives_from_bound:
            by_bound = (out == K.NEGATIVE) & ((reason == K.R_EXACT_NEG) | (reason == K.R_CT_NEG))
            out[by_bound] = K.RETEST
    else:  # bp
        se = 1.0 if sensitivity is None else float(sensitivity)
        sp = 1.0 if specificity is None else float(specificity)
        prior = float(prevalence) if prevalence is not None else 0.01
        if not 0 < prior < 1:
            raise DecodeError(f"the bp decoder needs a prevalence between 0 and 1, got {prior}")
        posterior = np.empty(out.shape, dtype=np.float64)
        K.bp_batch(codes, pool_ptr, pool_members, spec_ptr, spec_pools, alone, prior, se, sp, float(confidence), int(bp_iterations), out, reason, posterior)
        # Loopy BP can be overconfident when a ghost's pools are all explained by true
        # positives; a POSITIVE must also be a definite defective of the pool results as read.
        dd_out = np.empty_like(out)
        dd_reason = np.empty_like(reason)
        K.dd_batch(codes, pool_ptr, pool_members, spec_ptr, spec_pools, alone, dd_out, dd_reason, False)
        demote = (out == K.POSITIVE) & (dd_out != K.POSITIVE) & ~alone[None, :]
        out[demote] = K.RETEST
        reason[demote] = K.R_BP_UNSURE
    return BatchDecoding(out, reason, name, margin, posterior, bound, wrong_pools)


def decode(
    design: Design,
    pool_codes: np.ndarray,
    pool_ct: np.ndarray | None = None,
    *,
    decoder: str = "auto",
    aliquot: np.ndarray | None = None,
    max_positives: int | None = None,
    prevalence: float | None = None,
    sensitivity: float | None = None,
    specificity: float | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    efficiency: float = 1.0,
    ct_tolerance: float = DEFAULT_CT_TOLERANCE,
    max_ct: float = DEFAULT_MAX_CT,
    negatives_from_bound: bool = False,
) -> Decoding:
    """Decode one plate: ``pool_codes`` int8[pools] (POOL_CODE, -1 missing), ``pool_ct`` float32[pools] (cycles).

    RETEST specimens get ``"rerun"`` when a stored aliquot exists (``aliquot[i]``), else
    ``"recollect"``; INVALID (a failed tube tested alone) likewise; INCONCLUSIVE (signed)
    always ``"recollect"``: a new swab is needed.
    """
    codes = _check_codes(design, pool_codes)
    ct = np.full(design.n_pools, np.nan, dtype=np.float32) if pool_ct is None else np.asarray(pool_ct, dtype=np.float32).reshape(-1)
    if ct.shape[0] != design.n_pools:
        raise DecodeError(f"pool Cts have {ct.shape[0]} values, design {design.spec} has {design.n_pools} pools")
    batch = decode_batch(
        design,
        codes,
        decoder=decoder,
        max_positives=max_positives,
        prevalence=prevalence,
        sensitivity=sensitivity,
        specificity=specificity,
        confidence=confidence,
        pool_ct=ct[None, :],
        ct_tolerance=ct_tolerance,
        efficiency=efficiency,
        max_ct=max_ct,
        negatives_from_bound=negatives_from_bound,
    )
    outcome = batch.outcome[0]
    reason = batch.reason[0]
    margin = batch.margin[0] if batch.margin is not None else np.zeros(design.n_specimens, np.float32)
    if batch.margin is not None:
        margin = _dd_margin(design, codes[0], outcome, reason, margin)
    aliq = np.zeros(design.n_specimens, bool) if aliquot is None else np.asarray(aliquot, dtype=bool)
    if aliq.shape[0] != design.n_specimens:
        raise DecodeError(f"aliquot flags cover {aliq.shape[0]} specimens, design {design.spec} has {design.n_specimens}")
    retest = _retest_kinds(outcome, aliq)
    decoding = Decoding(
        design,
        outcome,
        retest,
        batch.decoder,
        codes[0],
        ct,
        reason,
        margin,
        posterior=batch.posterior[0] if batch.posterior is not None else None,
        max_positives=batch.max_positives,
        wrong_pools=batch.wrong_pools.get(0, []),
    )
    if batch.decoder in ("ctq", "dd", "exact", "scomp", "minerr") and np.isfinite(ct).any():
        decoding.estimated_ct = estimate_loads(design, codes[0], ct, outcome, efficiency=efficiency)
    if batch.decoder == "scomp":
        decoding.likely = _scomp_likely(design, codes[0], outcome)
    return decoding


def _ctq_refine(
    design: Design,
    codes: np.ndarray,
    pool_ct: np.ndarray,
    out: np.ndarray,
    reason: np.ndarray,
    margin: np.ndarray,
    bound: int,
    tolerance: float,
    efficiency: float,
    max_ct: float,
) -> None:
    """Decide ambiguous candidates of one plate by which explanations the pools' Cts allow.

    Model: at most ``bound`` positives; a positive's individual Ct is ≤ ``max_ct``; a
    detected pool of k reads Ct = -log_{1+E}(Σ loads / k) within ± ``tolerance`` cycles,
    with load = (1+E)^-Ct. Every set of candidates that explains the detected pools
    (with the definite positives) is checked for loads satisfying those bounds — a
    linear feasibility problem. A candidate in every fitting explanation is POSITIVE,
    in none NEGATIVE. A weak positive under a strong one stays possible, so nothing is
    ruled out merely because the Cts are explained without it.
    """
    from scipy.optimize import linprog

    candidates = np.flatnonzero((out == K.RETEST) & ((reason == K.R_AMBIGUOUS) | (reason == K.R_UNTESTED)))
    definite = np.flatnonzero(out == K.POSITIVE)
    room = bound - definite.size
    if candidates.size == 0 or room < 0:
        return
    inc = design.incidence
    measured = (codes == 1) & np.isfinite(pool_ct)
    residual = (codes == 1) & ~inc[:, definite].any(axis=1)
    if (codes == 1).any() and not measured[codes == 1].all():
        return  # a detected pool without a Ct: loads cannot be checked
    if room >= candidates.size:
        # Every candidate fits under the bound at once: with a near-zero load any of them can
        # join an explanation, so the Cts could rule nobody out. Not worth the linear programs.
        return
    n_subsets = sum(math.comb(candidates.size, k) for k in range(room + 1))
    if n_subsets > CTQ_MAX_SUBSETS:
        return
    base = 1.0 + efficiency
    rows = np.flatnonzero(measured)
    ref = float(pool_ct[rows].min()) if rows.size else 0.0
    k_size = design.pool_sizes[rows].astype(np.float64)
    lo = k_size * np.power(base, -(pool_ct[rows] + tolerance - ref))
    hi = k_size * np.power(base, -(pool_ct[rows] - tolerance - ref))
    floor = float(np.power(base, -(max_ct - ref)))
    cand_res = inc[np.ix_(residual, candidates)]
    fits: list[np.ndarray] = []
    programs = 0
    for size in range(room + 1):
        for subset in itertools.combinations(range(candidates.size), size):
            chosen = list(subset)
            if residual.any() and not cand_res[:, chosen].any(axis=1).all():
                continue
            programs += 1
            if programs > CTQ_MAX_PROGRAMS:
                return
            members = np.concatenate([definite, candidates[chosen]])
            if members.size == 0 or rows.size == 0:  # nothing to measure against: the loads fit trivially
                mask = np.zeros(candidates.size, dtype=bool)
                mask[chosen] = True
                fits.append(mask)
                continue
            a = inc[np.ix_(rows, members)].astype(np.float64)
            res = linprog(
                np.zeros(members.size),
                A_ub=np.vstack([a, -a]),
                b_ub=np.concatenate([hi, -lo]),
                bounds=[(floor, None)] * members.size,
                method="highs",
            )
            if res.status == 0:
                mask = np.zeros(candidates.size, dtype=bool)
                mask[chosen] = True
                fits.append(mask)
            elif res.status != 2:
                return  # the solver could not decide: leave the plate as it is
    if not fits:
        reason[candidates] = K.R_CT_CONFLICT
        return
    members = np.array(fits)
    in_all = members.all(axis=0)
    in_none = ~members.any(axis=0)
    out[candidates[in_all]] = K.POSITIVE
    reason[candidates[in_all]] = K.R_CT_POS
    out[candidates[in_none]] = K.NEGATIVE
    reason[candidates[in_none]] = K.R_CT_NEG
    margin[candidates[in_all | in_none]] = float(len(fits))


def _retest_kinds(outcome: np.ndarray, aliquot: np.ndarray) -> list[str]:
    """RETEST/INVALID: rerun a stored aliquot when there is one, else recollect; INCONCLUSIVE: recollect."""
    needs = (outcome == K.RETEST) | (outcome == K.INVALID)
    kinds = np.where(needs, np.where(aliquot, "rerun", "recollect"), "")
    kinds = np.where(outcome == K.INCONCLUSIVE, "recollect", kinds)
    return kinds.tolist()


def _dd_margin(design: Design, codes: np.ndarray, outcome: np.ndarray, reason: np.ndarray, margin: np.ndarray) -> np.ndarray:
    """How many independent pools back each DD/COMP call (exact-search margins are kept)."""
    inc = design.incidence
    neg_pools = inc[codes == 0].sum(axis=0)
    margin = margin.copy()
    neg = reason == K.R_NEG_POOL
    margin[neg] = neg_pools[neg]
    dd = reason == K.R_DD
    if dd.any():
        candidates = (outcome != K.NEGATIVE)[None, :] & inc
        sole = inc & (candidates.sum(axis=1) == 1)[:, None] & (codes == 1)[:, None]
        margin[dd] = sole.sum(axis=0)[dd]
    return margin


def _scomp_likely(design: Design, codes: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    """SCOMP's greedy explanation: repeatedly take the candidate covering most unexplained detected pools."""
    inc = design.incidence
    likely = outcome == K.POSITIVE
    candidates = outcome == K.RETEST
    unexplained = (codes == 1) & ~(inc[:, likely].any(axis=1))
    while unexplained.any():
        gain = (inc[unexplained][:, candidates]).sum(axis=0)
        if gain.size == 0 or gain.max() == 0:
            break
        pick = np.flatnonzero(candidates)[int(np.argmax(gain))]
        likely[pick] = True
        candidates[pick] = False
        unexplained &= ~inc[:, pick]
    return likely & (outcome == K.RETEST)


def _nnls(a: np.ndarray, b: np.ndarray, max_iter: int = 200) -> np.ndarray:
    """Lawson–Hanson non-negative least squares (small dense problems: pools × candidates)."""
    n = a.shape[1]
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    w = a.T @ (b - a @ x)
    for _ in range(max_iter):
        if passive.all() or (w[~passive] <= 1e-12).all():
            break
        j = int(np.argmax(np.where(passive, -np.inf, w)))
        passive[j] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / np.maximum(x[neg] - z[neg], 1e-300))
            x = x + alpha * (z - x)
            passive &= x > 1e-12
        w = a.T @ (b - a @ x)
    return x


def estimate_loads(design: Design, codes: np.ndarray, pool_ct: np.ndarray, outcome: np.ndarray, *, efficiency: float = 1.0) -> np.ndarray:
    """Estimated individual Ct (cycles) of every possible positive, from the pools' Cts; NaN elsewhere.

    Model (Tapestry-style): a pool's template is the mean of its members', so a pool of k
    holding one positive of Ct c reads about c + log_{1+E}(k). In load units
    x = (1+E)^-Ct, every detected pool with a Ct gives Σ_{i∈pool} x_i = k·(1+E)^-Ct_pool;
    x ≥ 0 is solved by non-negative least squares over the COMP support.
    """
    base = 1.0 + efficiency
    support = outcome != K.NEGATIVE
    rows = (codes == 1) & np.isfinite(pool_ct)
    est = np.full(design.n_specimens, np.nan, dtype=np.float32)
    if not rows.any() or not support.any():
        return est
    a = design.incidence[np.ix_(rows, support)].astype(np.float64)
    ref = float(np.nanmin(pool_ct[rows]))
    # loads relative to the strongest pool, so the numbers stay near 1
    b = design.pool_sizes[rows] * np.power(base, -(pool_ct[rows].astype(np.float64) - ref))
    x = _nnls(a, b)
    with np.errstate(divide="ignore"):
        ct_est = ref - np.log(x) / np.log(base)
    ct_est[x <= 1e-9] = np.nan
    est[np.flatnonzero(support)] = ct_est
    return est


def complete(
    design: Design,
    pool_codes: np.ndarray,
    pool_ct: np.ndarray | None,
    individual: Mapping[str, tuple[int, float]],
    *,
    decoder: str = "auto",
    aliquot: np.ndarray | None = None,
    **model: Any,
) -> Decoding:
    """Dorfman / array stage 2: individual results (``specimen_id -> (pool code, Ct)``) complete a plate.

    A specimen tested individually takes its own call when that call is final (not
    detected, detected, inconclusive); a missing, invalid or not-yet-arrived individual
    result leaves the stage-1 outcome, so untested members of a positive pool stay
    RETEST. Nothing is inferred about untested specimens from their neighbours' retests:
    the lab asked for their individual test and signs only that.
    """
    index = {sid: i for i, sid in enumerate(design.specimen_ids)}
    unknown = [sid for sid in individual if sid not in index]
    if unknown:
        raise DecodeError(f"individual results for specimens not in design {design.spec}: {', '.join(unknown[:5])}")
    result = decode(design, pool_codes, pool_ct, decoder=decoder, aliquot=aliquot, **model)
    for sid, (code, ct) in individual.items():
        i = index[sid]
        result.individual[i] = (int(code), float(ct))
        if code in (0, 1, 2):
            result.outcome[i] = K.ALONE_OUTCOME[code + 1]
            result.reason[i] = K.R_INDIVIDUAL
            result.retest[i] = "recollect" if code == 2 else ""
    return result


def pool_codes_for(design: Design, pool_ids: Sequence[str], outcomes: Sequence[str], cts: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Arrange tube outcomes (PoolOutcome words, by pool id) into the design's pool order; -1 where missing."""
    index = {p: i for i, p in enumerate(design.pool_ids)}
    codes = np.full(design.n_pools, POOL_MISSING, dtype=np.int8)
    ct = np.full(design.n_pools, np.nan, dtype=np.float32)
    words = {w.value: c for w, c in zip(PoolOutcome, (1, 0, 2, 3))}
    for k, (pid, word) in enumerate(zip(pool_ids, outcomes)):
        i = index.get(pid)
        if i is None:
            continue
        if word not in words:
            raise DecodeError(f"pool {pid}: outcome '{word}' is not one of {', '.join(words)}")
        codes[i] = words[word]
        if cts is not None:
            ct[i] = cts[k]
    return codes, ct
