"""Straightforward pure-Python pool decoders: the baseline the numba kernels are measured against.

Used when ``engine/pooling/reference.py`` (the pooling engineer's reference
decoder) is absent. Written the way one would first write them — lists of
members, sets, a loop per plate and per pool — and with the same rules as the
engine (docs/interfaces.md, DESIGN.md "a decoder never guesses"):

* a specimen in a pool that was not detected is NEGATIVE (COMP);
* the only remaining candidate of a detected pool is POSITIVE (DD);
* with at most ``max_positives`` per plate, a candidate in *every* explanation
  of the detected pools is POSITIVE (exact search); one in *none* stays RETEST
  unless asked (``negatives_from_bound``), as in the engine;
* everything else is RETEST.

Codes are engine.model.SPECIMEN_CODE values (0 NEGATIVE, 1 POSITIVE, 3 RETEST)
and pool codes POOL_CODE values (0 not detected, 1 detected).
"""

from __future__ import annotations

from itertools import combinations

NEGATIVE, POSITIVE, RETEST = 0, 1, 3


class NaiveDesign:
    """The design as Python lists: members of each pool, pools of each specimen."""

    def __init__(self, incidence: object) -> None:
        rows = [list(map(bool, row)) for row in incidence]  # type: ignore[attr-defined]
        self.members = [[s for s, v in enumerate(row) if v] for row in rows]
        n_spec = len(rows[0]) if rows else 0
        self.pools_of: list[list[int]] = [[] for _ in range(n_spec)]
        for p, mem in enumerate(self.members):
            for s in mem:
                self.pools_of[s].append(p)


def comp_dd(design: NaiveDesign, codes: list[int], *, dd: bool = True) -> list[int]:
    """COMP negatives and (with ``dd``) definite-defective positives of one plate."""
    ruled_out = set()
    for p, code in enumerate(codes):
        if code == 0:
            ruled_out.update(design.members[p])
    out = [NEGATIVE if s in ruled_out else RETEST for s in range(len(design.pools_of))]
    if dd:
        for p, code in enumerate(codes):
            if code == 1:
                left = [s for s in design.members[p] if s not in ruled_out]
                if len(left) == 1:
                    out[left[0]] = POSITIVE
    return out


def dorfman(design: NaiveDesign, codes: list[int]) -> list[int]:
    """Stage 1 of Dorfman/array testing: members of not-detected pools are NEGATIVE, others RETEST
    (a lone specimen, alone in its pool, takes its pool's call)."""
    out = []
    for pools in design.pools_of:
        if any(codes[p] == 0 for p in pools):
            out.append(NEGATIVE)
        elif len(pools) == 1 and len(design.members[pools[0]]) == 1 and codes[pools[0]] == 1:
            out.append(POSITIVE)
        else:
            out.append(RETEST)
    return out


def exact(design: NaiveDesign, codes: list[int], max_positives: int, *, negatives_from_bound: bool = False) -> list[int]:
    """DD, then every set of at most ``max_positives`` positives (DD positives included) that
    explains all detected pools, by brute force over the specimens not yet ruled out; a candidate
    in all of them is POSITIVE; one in none is NEGATIVE only with ``negatives_from_bound`` (the
    engine's default keeps it RETEST: a NEGATIVE needs a pool that was not detected)."""
    out = comp_dd(design, codes)
    positives = {s for s, o in enumerate(out) if o == POSITIVE}
    budget = max_positives - len(positives)
    if budget < 0:
        return out  # needs more positives than the model allows: only definite calls stand
    need = {p for p, c in enumerate(codes) if c == 1 and not positives.intersection(design.members[p])}
    candidates = [s for s, o in enumerate(out) if o == RETEST and all(codes[p] == 1 for p in design.pools_of[s])]
    explanations: list[set[int]] = []
    for size in range(0, min(budget, len(candidates)) + 1):
        for subset in combinations(candidates, size):
            covered: set[int] = set()
            for s in subset:
                covered.update(design.pools_of[s])
            if need <= covered:
                explanations.append(set(subset))
    if not explanations:
        return out
    in_all = set.intersection(*explanations)
    in_any = set.union(*explanations)
    for s in candidates:
        if s in in_all:
            out[s] = POSITIVE
        elif s not in in_any and negatives_from_bound:
            out[s] = NEGATIVE
    return out
