"""What a lab checks before adopting a design: sizes, weights, overlaps and disjunctness (exact for d ≤ 2)."""

from __future__ import annotations

from typing import Any

import numpy as np

import engine.pooling.kernels as K
from engine.pooling.designs import Design

__all__ = ["covered_by_pair", "properties"]


def properties(design: Design) -> dict[str, Any]:
    """What a lab checks before adopting a design: sizes, weights, overlaps and disjunctness.

    ``disjunct_guaranteed`` is the bound d with d·(max overlap) < min weight; ``disjunct``
    is the largest d ≤ 2 verified exactly (no specimen's pools are covered by the pools
    of d others), so decoding is exact with up to d positives per batch.
    """
    inc = design.incidence.astype(np.int32)
    overlap = inc.T @ inc
    np.fill_diagonal(overlap, 0)
    max_overlap = int(overlap.max()) if design.n_specimens > 1 else 0
    w_min = int(design.weights.min())
    guaranteed = (w_min - 1) // max_overlap if max_overlap else design.n_specimens
    return {
        "spec": design.spec,
        "kind": design.kind,
        "specimens": design.n_specimens,
        "pools": design.n_pools,
        "tests_per_specimen_stage1": design.n_pools / design.n_specimens,
        "weight": {"min": w_min, "max": int(design.weights.max())},
        "pool_size": {"min": int(design.pool_sizes.min()), "max": int(design.pool_sizes.max())},
        "max_overlap": max_overlap,
        "disjunct_guaranteed": int(min(guaranteed, design.n_specimens - 1)),
        "disjunct": _disjunctness(design),
    }


def _disjunctness(design: Design) -> int:
    """Largest d in {0, 1, 2} such that the design is d-disjunct, checked exhaustively."""
    inc = design.incidence
    n = design.n_specimens
    # 1-disjunct: no specimen's pool set is contained in another's.
    contained = (inc.astype(np.int32).T @ inc.astype(np.int32)) == design.weights[:, None]
    np.fill_diagonal(contained, False)
    if contained.any() or n < 2:
        return 0
    if n < 3 or n > 512:  # the exhaustive pair check is O(n³)
        return 1
    return 1 if covered_by_pair(inc) else 2


def covered_by_pair(incidence: np.ndarray) -> bool:
    """True when some specimen's pools are all covered by two other specimens' pools (not 2-disjunct)."""
    n_pools, n = incidence.shape
    n_words = (n_pools + 63) // 64
    padded = np.zeros((n_words * 64, n), dtype=bool)
    padded[:n_pools] = incidence
    bits = np.packbits(padded.T.reshape(n, n_words, 64), axis=2, bitorder="little")
    masks = np.ascontiguousarray(bits).view(np.uint64).reshape(n, n_words)
    return bool(K.covered_pairs_kernel(masks, n_words))
