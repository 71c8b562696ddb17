"""Plain-Python reference decoders: the baseline the benchmarks measure kernels against.

Written for clarity, one plate at a time, with Python sets and lists; the numba
kernels in :mod:`engine.pooling.kernels` must give the same outcomes (the tests
check it on random designs and plates). Outcome and pool codes as in engine.model.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.pooling.designs import Design

NEGATIVE, POSITIVE, INCONCLUSIVE, RETEST, INVALID = 0, 1, 2, 3, 4
_ALONE = {-1: RETEST, 0: NEGATIVE, 1: POSITIVE, 2: INCONCLUSIVE, 3: INVALID}

__all__ = ["decode_plate", "pools_of_specimens"]


def pools_of_specimens(design: Design) -> list[list[int]]:
    """For each specimen, the list of pool indices it was pipetted into."""
    return [list(design.pools_of(s)) for s in range(design.n_specimens)]


def decode_plate(design: Design, codes: Sequence[int], decoder: str = "dd", pools_of: list[list[int]] | None = None) -> list[int]:
    """Outcome code per specimen for one plate with the ``dorfman``, ``comp`` or ``dd`` rule."""
    pools_of = pools_of if pools_of is not None else pools_of_specimens(design)
    members: list[list[int]] = [[] for _ in range(design.n_pools)]
    for s, ps in enumerate(pools_of):
        for p in ps:
            members[p].append(s)
    alone = [len(ps) == 1 and len(members[ps[0]]) == 1 for ps in pools_of]
    if decoder == "dorfman":
        out = []
        for s, ps in enumerate(pools_of):
            code = codes[ps[0]]
            out.append(_ALONE[code] if alone[s] else (NEGATIVE if code == 0 else RETEST))
        return out
    suspect: set[int] = set()
    conflict: set[int] = set()
    for attempt in range(2):
        negative = {s for p, ms in enumerate(members) if codes[p] == 0 and p not in suspect for s in ms}
        definite = set()
        found_conflict = False
        for p, ms in enumerate(members):
            if codes[p] != 1:
                continue
            possible = [s for s in ms if s not in negative]
            if len(possible) == 1:
                definite.add(possible[0])
            elif not possible and attempt == 0:
                found_conflict = True
                conflict.update(ms)
        if not found_conflict:
            break
        suspect = {p for p, ms in enumerate(members) if codes[p] == 0 and any(s in conflict for s in ms)}
    out = []
    for s in range(design.n_specimens):
        if alone[s]:
            out.append(_ALONE[codes[pools_of[s][0]]])
        elif s in conflict:
            out.append(RETEST)
        elif s in negative:
            out.append(NEGATIVE)
        elif s in definite and decoder != "comp":
            out.append(POSITIVE)
        else:
            out.append(RETEST)
    return out
