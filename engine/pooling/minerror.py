"""Bounded minimum-error decoding: when no noiseless explanation exists, allow one wrong pool.

Real plates have the odd false-positive pool (a splash, a late contamination) or a
pool that missed a positive. Then the pool results admit no noiseless explanation: a
detected pool has every member in a not-detected pool, and the noiseless decoders
(rightly) stop trusting the negatives around it — on a P-BEST plate that sends a third
of the specimens to RETEST with no positive at all. Shental et al. (Sci. Adv. 2020,
P-BEST) decode by minimum error instead: the explanation that disagrees with the
fewest pools.

This module does that, bounded and without guessing. For a plate with no noiseless
explanation (DD found a contradiction, or the exact search found none within the
positives bound), every reading of the plate with exactly one pool result flipped is
decoded with the same noiseless decoder (DD, plus the exact search when a bound is
given) in one numba batch call. A flipped reading is *consistent* when it has an
explanation (within the bound). A specimen's call is kept only when every consistent
reading makes the same call; members of a flipped pool that no other pool decides are
RETEST (their status depends on the pool treated as wrong); when no reading with one
error is consistent, the plate keeps its noiseless decoding. Under "at most one pool
is wrong" every call made is therefore right whichever reading is the true one.
"""

from __future__ import annotations

import numpy as np

import engine.pooling.kernels as K
from engine.pooling.designs import Design

__all__ = ["MAX_POOL_ERRORS", "needs_error_model", "one_error_refine"]

#: Pool errors the decoder allows per plate (the search is over single flips).
MAX_POOL_ERRORS = 1
_SPOILED = (K.R_CONFLICT, K.R_BOUND, K.R_SEARCH_LIMIT)


def needs_error_model(reason: np.ndarray) -> np.ndarray:
    """Plates (rows) whose pool results have no noiseless explanation (a contradiction, or none within the bound)."""
    return ((reason == K.R_CONFLICT) | (reason == K.R_BOUND)).any(axis=1)


def _noiseless(design: Design, codes: np.ndarray, bound: int | None, node_budget: int) -> tuple[np.ndarray, np.ndarray]:
    """DD over a batch of readings, then the bounded exact search on those DD finds no contradiction in."""
    pool_ptr, pool_members, spec_ptr, spec_pools = design.csr
    out = np.empty((codes.shape[0], design.n_specimens), dtype=np.int8)
    reason = np.empty_like(out)
    K.dd_batch(codes, pool_ptr, pool_members, spec_ptr, spec_pools, np.ascontiguousarray(design.alone), out, reason, False)
    if bound is not None:
        # most flips leave the contradiction in place: only the others are worth a set-cover search
        live = np.flatnonzero(~(reason == K.R_CONFLICT).any(axis=1))
        if live.size:
            sub_out, sub_reason = out[live], reason[live]
            margin = np.zeros(sub_out.shape, dtype=np.float32)
            K.exact_batch(np.ascontiguousarray(codes[live]), pool_ptr, pool_members, spec_ptr, spec_pools, sub_out, sub_reason, margin, bound, node_budget)
            out[live], reason[live] = sub_out, sub_reason
    return out, reason


def one_error_refine(
    design: Design,
    codes: np.ndarray,
    out: np.ndarray,
    reason: np.ndarray,
    bound: int | None,
    node_budget: int,
) -> list[int]:
    """Re-decide one plate (``codes`` int8[pools]; ``out``/``reason`` updated in place) allowing one wrong pool.

    Returns the pools (indices) the consistent readings treat as wrong; empty when no
    reading with one error explains the plate (then nothing is changed).
    """
    flippable = np.flatnonzero((codes == 0) | (codes == 1))
    if flippable.size == 0:
        return []
    readings = np.repeat(codes[None, :], flippable.size, axis=0)
    readings[np.arange(flippable.size), flippable] = 1 - readings[np.arange(flippable.size), flippable]
    v_out, v_reason = _noiseless(design, np.ascontiguousarray(readings), bound, node_budget)
    if (v_reason == K.R_SEARCH_LIMIT).any():
        return []  # a reading the search could not settle might be the true one: decide nothing new
    consistent = ~np.isin(v_reason, _SPOILED).any(axis=1)
    if not consistent.any():
        return []
    inc = design.incidence
    v_out = v_out[consistent]
    v_reason = v_reason[consistent]
    wrong = flippable[consistent]
    kept = readings[consistent]
    others = np.arange(design.n_pools)[None, :] != wrong[:, None]
    # per reading: is the specimen in a not-detected pool other than the one treated as wrong?
    other_negative = (((kept == 0) & others).astype(np.int32) @ inc.astype(np.int32)) > 0
    members = inc[wrong]
    depends = members & ~(other_negative & (v_out == K.NEGATIVE)) & ~design.alone[None, :]
    v_out[depends] = K.RETEST
    call = v_out[0]
    agreed = (v_out == call[None, :]).all(axis=0)
    touch = ~design.alone & (reason != K.R_ALONE)
    split = touch & ~agreed
    pos = touch & agreed & (call == K.POSITIVE)
    neg = touch & agreed & (call == K.NEGATIVE)
    undecided = touch & agreed & (call != K.POSITIVE) & (call != K.NEGATIVE)
    by_pool = (v_reason == K.R_NEG_POOL).all(axis=0)
    out[split], reason[split] = K.RETEST, K.R_ONE_ERROR_SPLIT
    out[pos], reason[pos] = K.POSITIVE, K.R_ONE_ERROR_POS
    out[neg] = K.NEGATIVE
    reason[neg] = np.where(by_pool[neg], K.R_NEG_POOL, K.R_EXACT_NEG)
    out[undecided] = K.RETEST
    reason[undecided] = np.where(members.any(axis=0)[undecided], K.R_ONE_ERROR_DEPENDS, K.R_AMBIGUOUS)
    return [int(p) for p in wrong]
