"""numba kernels behind the decoders: whole batches of plates per call, no Python per pool.

Every kernel takes the design as CSR arrays (``Design.csr``) and pool results as an
``int8[plates, pools]`` array of :data:`engine.model.POOL_CODE` values (-1 = missing),
and writes ``int8[plates, specimens]`` outcome codes (:data:`engine.model.SPECIMEN_CODE`)
plus a reason code per specimen (:data:`REASONS`). Kernels are compiled once and
cached on disk (``cache=True``); ``nogil=True`` lets a thread pool share a process.
"""

from __future__ import annotations

import numba as nb
import numpy as np

NEGATIVE, POSITIVE, INCONCLUSIVE, RETEST, INVALID = 0, 1, 2, 3, 4

# Why a specimen got its outcome (index into REASONS).
R_NEG_POOL = 0
R_DD = 1
R_ALONE = 2
R_AMBIGUOUS = 3
R_UNTESTED = 4
R_CONFLICT = 5
R_EXACT_POS = 6
R_EXACT_NEG = 7
R_BOUND = 8
R_BP_POS = 9
R_BP_NEG = 10
R_INDIVIDUAL = 11
R_SEARCH_LIMIT = 12
R_BP_UNSURE = 13
R_CT_POS = 14
R_CT_NEG = 15
R_CT_CONFLICT = 16
R_ONE_ERROR_POS = 17
R_ONE_ERROR_DEPENDS = 18
R_ONE_ERROR_SPLIT = 19

REASONS = (
    "in a pool that was not detected",
    "the only specimen of a detected pool that no other pool rules out (definite defective)",
    "tested alone: its own tube's call",
    "in detected pool(s) together with other possible positives: the design cannot tell which (ambiguous)",
    "none of its pools gave a usable result (missing, invalid or inconclusive)",
    "its pool was detected but every member is in a pool that was not detected: the results contradict each other",
    "in every explanation of the pool results with no more positives than the model allows (exact search)",
    "in no explanation of the pool results with no more positives than the model allows (exact search); NEGATIVE only when negatives from the bound are enabled",
    "the pool results need more positives than the model allows: only definite calls are made",
    "posterior probability of infection above the confidence threshold (belief propagation)",
    "posterior probability of infection below the confidence threshold (belief propagation)",
    "tested individually (stage 2)",
    "too many ambiguous candidates for the exact search: not decided",
    "posterior probability not decisive under the noise model (belief propagation)",
    "in every explanation whose loads fit the pools' Cts (≤ the positives bound, Ct within tolerance after dilution)",
    "in no explanation whose loads fit the pools' Cts (≤ the positives bound, Ct within tolerance after dilution); NEGATIVE only when negatives from the bound are enabled",
    "no explanation fits the pools' Cts within tolerance: only definite calls are made",
    "positive in every explanation that treats one pool result as wrong (no noiseless one exists); confirm individually",
    "in a pool the one-error explanation treats as wrong, and no other pool decides it",
    "the explanations with one wrong pool disagree about it: not decided",
)

# Outcome of a specimen tested alone, by pool code + 1 (missing, not_detected, detected, inconclusive, invalid).
ALONE_OUTCOME = np.array([RETEST, NEGATIVE, POSITIVE, INCONCLUSIVE, INVALID], dtype=np.int8)
# Outcome of a specimen in a pool of several, Dorfman stage 1, by pool code + 1.
POOLED_OUTCOME = np.array([RETEST, NEGATIVE, RETEST, RETEST, RETEST], dtype=np.int8)
POOLED_REASON = np.array([R_UNTESTED, R_NEG_POOL, R_AMBIGUOUS, R_UNTESTED, R_UNTESTED], dtype=np.int8)


@nb.njit(cache=True, nogil=True)
def disjoint_batch(codes: np.ndarray, pool_of: np.ndarray, alone: np.ndarray, out: np.ndarray, reason: np.ndarray) -> None:
    """Dorfman / individual designs (each specimen in one pool): a table look-up per specimen."""
    n_batch, n_spec = out.shape
    for b in range(n_batch):
        row = codes[b]
        for s in range(n_spec):
            c = row[pool_of[s]] + 1
            if c < 0 or c > 4:
                c = 0
            if alone[s]:
                out[b, s] = ALONE_OUTCOME[c]
                reason[b, s] = R_ALONE
            else:
                out[b, s] = POOLED_OUTCOME[c]
                reason[b, s] = POOLED_REASON[c]


@nb.njit(cache=True, nogil=True)
def _dd_plate(
    codes: np.ndarray,
    pool_ptr: np.ndarray,
    pool_members: np.ndarray,
    spec_ptr: np.ndarray,
    spec_pools: np.ndarray,
    alone: np.ndarray,
    out: np.ndarray,
    reason: np.ndarray,
    neg: np.ndarray,
    pos: np.ndarray,
    conflict: np.ndarray,
    suspect: np.ndarray,
    comp_only: bool,
) -> None:
    n_pools = pool_ptr.shape[0] - 1
    n_spec = out.shape[0]
    for s in range(n_spec):
        neg[s] = 0
        pos[s] = 0
        conflict[s] = 0
    for p in range(n_pools):
        suspect[p] = 0
    any_conflict = False
    for attempt in range(2):
        if attempt == 1:
            # A detected pool whose members all sit in not-detected pools: one of those
            # negatives (or this detection) is wrong. Negatives that lean on a pool holding
            # a conflicting member are no longer proof; redo the plate without them.
            for p in range(n_pools):
                if codes[p] == 0:
                    for i in range(pool_ptr[p], pool_ptr[p + 1]):
                        if conflict[pool_members[i]]:
                            suspect[p] = 1
                            break
            for s in range(n_spec):
                neg[s] = 0
                pos[s] = 0
        for p in range(n_pools):
            if codes[p] == 0 and suspect[p] == 0:
                for i in range(pool_ptr[p], pool_ptr[p + 1]):
                    neg[pool_members[i]] = 1
        for p in range(n_pools):
            if codes[p] != 1:
                continue
            count = 0
            last = -1
            for i in range(pool_ptr[p], pool_ptr[p + 1]):
                m = pool_members[i]
                if neg[m] == 0:
                    count += 1
                    last = m
            if count == 1:
                pos[last] += 1
            elif count == 0 and attempt == 0:
                any_conflict = True
                for i in range(pool_ptr[p], pool_ptr[p + 1]):
                    conflict[pool_members[i]] = 1
        if not any_conflict:
            break
    for s in range(n_spec):
        if alone[s]:
            c = codes[spec_pools[spec_ptr[s]]] + 1
            if c < 0 or c > 4:
                c = 0
            out[s] = ALONE_OUTCOME[c]
            reason[s] = R_ALONE
        elif conflict[s]:
            out[s] = RETEST
            reason[s] = R_CONFLICT
        elif neg[s]:
            out[s] = NEGATIVE
            reason[s] = R_NEG_POOL
        elif pos[s] and not comp_only:
            out[s] = POSITIVE
            reason[s] = R_DD
        else:
            out[s] = RETEST
            reason[s] = R_UNTESTED
            for i in range(spec_ptr[s], spec_ptr[s + 1]):
                if codes[spec_pools[i]] == 1:
                    reason[s] = R_AMBIGUOUS
                    break


@nb.njit(cache=True, nogil=True)
def dd_batch(
    codes: np.ndarray,
    pool_ptr: np.ndarray,
    pool_members: np.ndarray,
    spec_ptr: np.ndarray,
    spec_pools: np.ndarray,
    alone: np.ndarray,
    out: np.ndarray,
    reason: np.ndarray,
    comp_only: bool,
) -> None:
    """COMP negatives + DD (definite defective) positives for every plate of a batch.

    Under the noiseless model (a pool is detected exactly when it holds a positive) these
    are the only calls the pool results prove without a bound on the number of positives:
    a specimen in a not-detected pool is negative; the sole possible positive of a
    detected pool is positive. ``comp_only`` drops the DD step (COMP decoder).
    """
    n_batch, n_spec = out.shape
    n_pools = pool_ptr.shape[0] - 1
    neg = np.zeros(n_spec, np.int32)
    pos = np.zeros(n_spec, np.int32)
    conflict = np.zeros(n_spec, np.int8)
    suspect = np.zeros(n_pools, np.int8)
    for b in range(n_batch):
        _dd_plate(codes[b], pool_ptr, pool_members, spec_ptr, spec_pools, alone, out[b], reason[b], neg, pos, conflict, suspect, comp_only)


@nb.njit(cache=True, nogil=True)
def _popcount(x: np.uint64) -> int:
    count = 0
    while x != np.uint64(0):
        x &= x - np.uint64(1)
        count += 1
    return count


@nb.njit(cache=True, nogil=True)
def _cover_within(target: np.uint64, masks: np.ndarray, n: int, exclude: int, limit: int, widest: int, budget: np.ndarray) -> int:
    """1 when at most ``limit`` masks (not ``exclude``) cover ``target``, 0 when none do, -1 out of budget.

    Exact set-cover search: branch on the lowest uncovered bit over the candidates
    that cover it; stop at the first cover found. A branch is cut when even masks as
    wide as the widest one (``widest`` bits) could not cover the rest within the limit.
    ``budget[0]`` counts down the nodes visited.
    """
    if limit < 0:
        return 0
    if target == np.uint64(0):
        return 1
    if limit == 0 or widest <= 0:
        return 0
    if (_popcount(target) + widest - 1) // widest > limit:
        return 0
    cov = np.zeros(limit + 1, np.uint64)
    nxt = np.zeros(limit + 1, np.int64)
    bit = np.zeros(limit + 1, np.uint64)
    depth = 0
    bit[0] = target & (~target + np.uint64(1))
    while depth >= 0:
        i = nxt[depth]
        found = -1
        while i < n:
            if i != exclude and (masks[i] & bit[depth]) != np.uint64(0):
                found = i
                break
            i += 1
        if found < 0:
            depth -= 1
            continue
        nxt[depth] = found + 1
        budget[0] -= 1
        if budget[0] < 0:
            return -1
        c = cov[depth] | masks[found]
        rem = target & ~c
        if rem == np.uint64(0):
            return 1
        # depth + 1 masks chosen; can the rest fit in what the limit leaves?
        if depth + 1 + (_popcount(rem) + widest - 1) // widest > limit:
            continue
        depth += 1
        cov[depth] = c
        bit[depth] = rem & (~rem + np.uint64(1))
        nxt[depth] = 0
    return 0


@nb.njit(cache=True, nogil=True)
def exact_batch(
    codes: np.ndarray,
    pool_ptr: np.ndarray,
    pool_members: np.ndarray,
    spec_ptr: np.ndarray,
    spec_pools: np.ndarray,
    out: np.ndarray,
    reason: np.ndarray,
    margin: np.ndarray,
    max_positives: int,
    node_budget: int,
) -> None:
    """Refine DD results (already in ``out``/``reason``) under "at most ``max_positives`` per plate".

    A remaining candidate is POSITIVE when every set of ≤ max_positives specimens that
    explains all detected pools contains it, NEGATIVE when none does; otherwise (ties,
    several explanations) it stays RETEST. Computed as two bounded set-cover searches
    per candidate over the detected pools that DD positives do not already explain.
    """
    n_batch, n_spec = out.shape
    n_pools = pool_ptr.shape[0] - 1
    residual = np.full(n_pools, -1, np.int64)
    cand = np.empty(n_spec, np.int64)
    masks = np.empty(n_spec, np.uint64)
    budget = np.zeros(1, np.int64)
    for b in range(n_batch):
        o = out[b]
        r = reason[b]
        n_cand = 0
        n_pos = 0
        for s in range(n_spec):
            if o[s] == RETEST and (r[s] == R_AMBIGUOUS or r[s] == R_UNTESTED):
                cand[n_cand] = s
                n_cand += 1
            elif o[s] == POSITIVE:  # DD or tested alone: in every explanation
                n_pos += 1
        if n_cand == 0:
            continue
        # residual pools: detected, not explained by a DD positive
        n_res = 0
        for p in range(n_pools):
            residual[p] = -1
            if codes[b, p] != 1:
                continue
            explained = False
            for i in range(pool_ptr[p], pool_ptr[p + 1]):
                m = pool_members[i]
                if o[m] == POSITIVE:
                    explained = True
                    break
            if not explained:
                residual[p] = n_res
                n_res += 1
        if n_res > 64:
            for k in range(n_cand):
                r[cand[k]] = R_SEARCH_LIMIT
            continue
        full = np.uint64(0)
        for k in range(n_res):
            full |= np.uint64(1) << np.uint64(k)
        for k in range(n_cand):
            s = cand[k]
            mk = np.uint64(0)
            for i in range(spec_ptr[s], spec_ptr[s + 1]):
                q = residual[spec_pools[i]]
                if q >= 0:
                    mk |= np.uint64(1) << np.uint64(q)
            masks[k] = mk
        room = max_positives - n_pos
        widest = 0
        for k in range(n_cand):
            w = _popcount(masks[k])
            if w > widest:
                widest = w
        budget[0] = node_budget
        feasible = _cover_within(full, masks, n_cand, -1, room, widest, budget) if room >= 0 else 0
        if feasible < 0:
            for k in range(n_cand):
                r[cand[k]] = R_SEARCH_LIMIT
            continue
        if feasible == 0:
            for k in range(n_cand):
                r[cand[k]] = R_BOUND
            continue
        slack = -2  # computed on demand: is there an explanation leaving room for one more?
        for k in range(n_cand):
            s = cand[k]
            if masks[k] == np.uint64(0):
                # adds nothing to any explanation: possible exactly when one leaves room for it
                if slack == -2:
                    slack = _cover_within(full, masks, n_cand, -1, room - 1, widest, budget)
                if slack == 0:
                    o[s] = NEGATIVE
                    r[s] = R_EXACT_NEG
                    margin[b, s] = 1.0
                elif slack < 0:
                    r[s] = R_SEARCH_LIMIT
                continue
            without = _cover_within(full, masks, n_cand, k, room, widest, budget)
            if without < 0:
                r[s] = R_SEARCH_LIMIT
                continue
            if without == 0:
                o[s] = POSITIVE
                r[s] = R_EXACT_POS
                margin[b, s] = 1.0
                continue
            rest = _cover_within(full & ~masks[k], masks, n_cand, k, room - 1, widest, budget)
            if rest < 0:
                r[s] = R_SEARCH_LIMIT
                continue
            if rest == 0:
                o[s] = NEGATIVE
                r[s] = R_EXACT_NEG
                margin[b, s] = 1.0


@nb.njit(cache=True, nogil=True)
def bp_batch(
    codes: np.ndarray,
    pool_ptr: np.ndarray,
    pool_members: np.ndarray,
    spec_ptr: np.ndarray,
    spec_pools: np.ndarray,
    alone: np.ndarray,
    prior: float,
    sensitivity: float,
    specificity: float,
    confidence: float,
    iterations: int,
    out: np.ndarray,
    reason: np.ndarray,
    posterior: np.ndarray,
) -> None:
    """Loopy belief propagation on the pool/specimen factor graph with imperfect pool tests.

    A pool holding at least one positive is detected with probability ``sensitivity``;
    one holding none with probability 1 - ``specificity``. Messages are log-likelihood
    ratios per edge. A specimen is POSITIVE only when its posterior is ≥ 1 - confidence
    and some pool holding it was detected; NEGATIVE only when the posterior is
    ≤ confidence and some pool holding it was not detected; otherwise RETEST.
    """
    n_batch, n_spec = out.shape
    n_pools = pool_ptr.shape[0] - 1
    n_edges = pool_members.shape[0]
    se = min(max(sensitivity, 1e-12), 1.0 - 1e-12)
    sp = min(max(specificity, 1e-12), 1.0 - 1e-12)
    prior_llr = np.log(prior) - np.log1p(-prior)
    lr = np.zeros(n_edges, np.float64)
    own_none = np.zeros(n_edges, np.float64)
    total = np.zeros(n_spec, np.float64)
    hi = np.log1p(-confidence) - np.log(confidence)
    for b in range(n_batch):
        row = codes[b]
        for e in range(n_edges):
            lr[e] = 0.0
        for s in range(n_spec):
            total[s] = 0.0
        for _ in range(iterations):
            changed = 0.0
            for p in range(n_pools):
                y = row[p]
                if y != 0 and y != 1:
                    continue
                l1 = se if y == 1 else 1.0 - se
                l0 = 1.0 - sp if y == 1 else sp
                sum_log_none = 0.0
                for e in range(pool_ptr[p], pool_ptr[p + 1]):
                    v = prior_llr + total[pool_members[e]] - lr[e]
                    # log(1 - sigmoid(v)) = -log1p(exp(v)), computed stably
                    own_none[e] = -(max(v, 0.0) + np.log1p(np.exp(-abs(v))))
                    sum_log_none += own_none[e]
                for e in range(pool_ptr[p], pool_ptr[p + 1]):
                    none_others = np.exp(sum_log_none - own_none[e])
                    m0 = none_others * l0 + (1.0 - none_others) * l1
                    new = np.log(l1) - np.log(max(m0, 1e-300))
                    d = new - lr[e]
                    lr[e] = 0.5 * lr[e] + 0.5 * new if _ > 2 else new
                    if abs(d) > changed:
                        changed = abs(d)
            for s in range(n_spec):
                total[s] = 0.0
            for p in range(n_pools):
                y = row[p]
                if y != 0 and y != 1:
                    continue
                for e in range(pool_ptr[p], pool_ptr[p + 1]):
                    total[pool_members[e]] += lr[e]
            if changed < 1e-4:
                break
        for s in range(n_spec):
            llr = prior_llr + total[s]
            posterior[b, s] = 1.0 / (1.0 + np.exp(-llr)) if llr > -700 else 0.0
            if alone[s]:
                c = row[spec_pools[spec_ptr[s]]] + 1
                if c < 0 or c > 4:
                    c = 0
                out[b, s] = ALONE_OUTCOME[c]
                reason[b, s] = R_ALONE
                continue
            in_neg = False
            in_pos = False
            known = False
            for i in range(spec_ptr[s], spec_ptr[s + 1]):
                y = row[spec_pools[i]]
                if y == 0:
                    in_neg = True
                    known = True
                elif y == 1:
                    in_pos = True
                    known = True
            if llr >= hi and in_pos:
                out[b, s] = POSITIVE
                reason[b, s] = R_BP_POS
            elif llr <= -hi and in_neg:
                out[b, s] = NEGATIVE
                reason[b, s] = R_BP_NEG
            else:
                out[b, s] = RETEST
                reason[b, s] = R_BP_UNSURE if known else R_UNTESTED


@nb.njit(cache=True, nogil=True)
def covered_pairs_kernel(masks: np.ndarray, n_words: int) -> bool:
    """True when some specimen's pool set is covered by the union of two others' (not 2-disjunct)."""
    n = masks.shape[0]
    for j in range(n):
        for a in range(n):
            if a == j:
                continue
            # quick reject: a must leave something of j uncovered for a pair to be needed
            for c in range(a + 1, n):
                if c == j:
                    continue
                ok = True
                for w in range(n_words):
                    if masks[j, w] & ~(masks[a, w] | masks[c, w]):
                        ok = False
                        break
                if ok:
                    return True
    return False
