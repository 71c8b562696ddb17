"""Pool designs: which specimens go into which pool, as a pools × specimens incidence matrix.

A design is data — an incidence matrix plus identifiers — wherever it came from:
a generator spec (``dorfman:10``, ``array:16x24``, ``pbest:384x48``, ``kirkman:15``,
``std:384:7:7``, ``cube:4x4x4``, ``hyper:120:30:2``), a text file, or a pool
manifest. Generators are registered in :data:`GENERATORS` by a decorator, so a new
family is one function. Every generator is deterministic: the same spec gives the
same matrix on every machine, which the worklist a technician pipettes relies on.
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import DesignError
from engine.pooling.algebra import GaloisField, prime_power, steiner_triples

__all__ = [
    "Design",
    "GENERATORS",
    "design_from_manifest",
    "generate",
    "load_design",
    "manifest_aliquots",
    "parse_spec",
]


@dataclass(frozen=True, eq=False)
class Design:
    """A pooling design: ``incidence[p, s]`` is True when specimen ``s`` is pipetted into pool ``p``."""

    pool_ids: tuple[str, ...]
    specimen_ids: tuple[str, ...]
    incidence: np.ndarray
    spec: str
    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        inc = np.ascontiguousarray(self.incidence, dtype=bool)
        object.__setattr__(self, "incidence", inc)
        if inc.shape != (len(self.pool_ids), len(self.specimen_ids)):
            raise DesignError(
                f"design {self.spec}: incidence is {inc.shape[0]}×{inc.shape[1]} but there are "
                f"{len(self.pool_ids)} pools and {len(self.specimen_ids)} specimens"
            )
        if len(set(self.pool_ids)) != len(self.pool_ids):
            raise DesignError(f"design {self.spec}: pool ids are not unique")
        if len(set(self.specimen_ids)) != len(self.specimen_ids):
            raise DesignError(f"design {self.spec}: specimen ids are not unique")
        unpooled = np.flatnonzero(~inc.any(axis=0))
        if unpooled.size:
            raise DesignError(f"design {self.spec}: specimen {self.specimen_ids[unpooled[0]]} is in no pool")

    @property
    def n_pools(self) -> int:
        """Number of pools (tests in stage 1)."""
        return len(self.pool_ids)

    @property
    def n_specimens(self) -> int:
        """Number of specimens one application of the design covers (one batch/plate)."""
        return len(self.specimen_ids)

    @functools.cached_property
    def weights(self) -> np.ndarray:
        """Pools per specimen."""
        return self.incidence.sum(axis=0).astype(np.int32)

    @functools.cached_property
    def pool_sizes(self) -> np.ndarray:
        """Specimens per pool (the dilution factor k of each pool)."""
        return self.incidence.sum(axis=1).astype(np.int32)

    @functools.cached_property
    def csr(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(pool_ptr, pool_members, spec_ptr, spec_pools): both adjacency lists as int32 CSR, for kernels."""
        p_idx, s_idx = np.nonzero(self.incidence)
        pool_ptr = np.zeros(self.n_pools + 1, dtype=np.int32)
        np.cumsum(np.bincount(p_idx, minlength=self.n_pools), out=pool_ptr[1:])
        order = np.lexsort((p_idx, s_idx))
        spec_ptr = np.zeros(self.n_specimens + 1, dtype=np.int32)
        np.cumsum(np.bincount(s_idx, minlength=self.n_specimens), out=spec_ptr[1:])
        return pool_ptr, s_idx.astype(np.int32), spec_ptr, p_idx[order].astype(np.int32)

    @functools.cached_property
    def alone(self) -> np.ndarray:
        """True for specimens tested alone: their only pool holds nothing else."""
        single_pool = self.pool_sizes == 1
        only = self.weights == 1
        pool_of = self.incidence.argmax(axis=0)
        return only & single_pool[pool_of]

    @functools.cached_property
    def is_disjoint(self) -> bool:
        """True when every specimen is in exactly one pool (Dorfman, individual testing)."""
        return bool((self.weights == 1).all())

    def pools_of(self, specimen: int) -> np.ndarray:
        """Indices of the pools specimen ``specimen`` (an index) was pipetted into."""
        _, _, spec_ptr, spec_pools = self.csr
        return spec_pools[spec_ptr[specimen] : spec_ptr[specimen + 1]]

    def members(self, pool: int) -> np.ndarray:
        """Indices of the specimens in pool ``pool`` (an index)."""
        pool_ptr, pool_members, _, _ = self.csr
        return pool_members[pool_ptr[pool] : pool_ptr[pool + 1]]

    def with_individual_tests(self, specimens: Sequence[int]) -> "Design":
        """This design plus one single-specimen pool per listed specimen (stage 2 retests)."""
        extra = np.zeros((len(specimens), self.n_specimens), dtype=bool)
        extra[np.arange(len(specimens)), np.asarray(specimens, dtype=np.int64)] = True
        ids = tuple(f"{self.specimen_ids[s]}#individual" for s in specimens)
        return Design(self.pool_ids + ids, self.specimen_ids, np.vstack([self.incidence, extra]), self.spec, self.kind, dict(self.params))


# -- generator registry ---------------------------------------------------------------------

GeneratorFn = Callable[[list[str], int | None], Design]
#: family name -> generator(spec arguments, n_specimens or None) -> Design
GENERATORS: dict[str, tuple[GeneratorFn, str]] = {}


def generator(name: str, usage: str) -> Callable[[GeneratorFn], GeneratorFn]:
    """Register a design family under ``name`` (the word before the first ``:`` of a spec)."""

    def wrap(fn: GeneratorFn) -> GeneratorFn:
        GENERATORS[name] = (fn, usage)
        return fn

    return wrap


def parse_spec(spec: str) -> tuple[str, list[str]]:
    """Split ``family:arg:arg`` into the family and its arguments; unknown families raise ``DesignError``."""
    parts = [p.strip() for p in spec.strip().split(":")]
    family = parts[0].lower()
    if family not in GENERATORS:
        known = ", ".join(f"{u}" for _, u in GENERATORS.values())
        raise DesignError(f"unknown design '{spec}'; known designs: {known}")
    return family, parts[1:]


def generate(spec: str, n_specimens: int | None = None) -> Design:
    """Build a design from its spec; ``n_specimens`` overrides the family's natural batch size where it can."""
    family, args = parse_spec(spec)
    fn, usage = GENERATORS[family]
    try:
        return fn(args, n_specimens)
    except (ValueError, IndexError) as exc:
        raise DesignError(f"design '{spec}': {exc} (usage: {usage})") from exc


def _ids(prefix: str, n: int) -> tuple[str, ...]:
    width = len(str(n))
    return tuple(f"{prefix}{i + 1:0{width}d}" for i in range(n))


def _int(text: str, what: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{what} must be a whole number, got '{text}'") from None
    if not low <= value <= high:
        raise ValueError(f"{what} must be between {low} and {high}, got {value}")
    return value


@generator("individual", "individual[:N]")
def _individual(args: list[str], n: int | None) -> Design:
    n = n or (_int(args[0], "N", 1, 10**6) if args else 94)
    ids = _ids("S", n)
    return Design(ids, ids, np.eye(n, dtype=bool), f"individual:{n}", "individual")


@generator("dorfman", "dorfman:K[:N] (K = 2..32 specimens per pool)")
def _dorfman(args: list[str], n: int | None) -> Design:
    k = _int(args[0], "pool size K", 1, 32)
    if n is None:
        n = _int(args[1], "N", 1, 10**7) if len(args) > 1 else 94 * k  # a 96-well plate less NTC and PC
    pool_of = np.arange(n) // k
    n_pools = int(pool_of[-1]) + 1
    inc = np.zeros((n_pools, n), dtype=bool)
    inc[pool_of, np.arange(n)] = True
    return Design(_ids("P", n_pools), _ids("S", n), inc, f"dorfman:{k}", "dorfman", {"k": k})


def _grid(shape: Sequence[int], master: bool, spec: str, kind: str) -> Design:
    """Axis-aligned pools of a grid: one pool per slice of every axis (rows, columns, layers…)."""
    n = int(np.prod(shape))
    coords = np.indices(shape).reshape(len(shape), n)
    blocks = []
    pool_ids: list[str] = []
    axis_names = "RCLMNOPQ"
    for axis, size in enumerate(shape):
        block = np.zeros((size, n), dtype=bool)
        block[coords[axis], np.arange(n)] = True
        blocks.append(block)
        pool_ids += [f"{axis_names[axis]}{i + 1}" for i in range(size)]
    if master:
        blocks.insert(0, np.ones((1, n), dtype=bool))
        pool_ids.insert(0, "M")
    return Design(tuple(pool_ids), _ids("S", n), np.vstack(blocks), spec, kind, {"shape": tuple(shape), "master": master})


@generator("array", "array:RxC[:master] (2-D array, row and column pools, optional master pool first)")
def _array(args: list[str], n: int | None) -> Design:
    m = re.fullmatch(r"(\d+)[x×*](\d+)", args[0].lower())
    if not m:
        raise ValueError(f"array size must look like 8x12, got '{args[0]}'")
    r, c = _int(m.group(1), "rows", 1, 512), _int(m.group(2), "columns", 1, 512)
    master = len(args) > 1 and args[1].lower() in ("master", "m", "yes")
    spec = f"array:{r}x{c}" + (":master" if master else "")
    return _grid((r, c), master, spec, "array")


@generator("cube", "cube:AxBxC[...] (3-D or higher grid, one pool per slice of each axis)")
def _cube(args: list[str], n: int | None) -> Design:
    sides = [_int(s, "side", 2, 256) for s in re.split(r"[x×*]", args[0].lower())]
    if not 2 <= len(sides) <= 8:
        raise ValueError("a cube needs 2 to 8 sides")
    return _grid(sides, False, "cube:" + "x".join(map(str, sides)), "cube")


@generator("hypercube", "hypercube:SIDE:DIM (SIDE^DIM specimens, DIM pools each)")
def _hypercube(args: list[str], n: int | None) -> Design:
    side, dim = _int(args[0], "side", 2, 64), _int(args[1], "dimensions", 2, 12)
    if side**dim > 10**6:
        raise ValueError(f"{side}^{dim} specimens is too many for one batch")
    return _grid([side] * dim, False, f"hypercube:{side}:{dim}", "hypercube")


@generator("pbest", "pbest:NxP[:W] (Reed–Solomon, N specimens, P pools, W pools per specimen; default W=6)")
def _pbest(args: list[str], n: int | None) -> Design:
    """Reed–Solomon code design as P-BEST uses it: a specimen is a codeword, a pool is (position, symbol).

    With alphabet q = P / W and message length k = ceil(log_q N), two specimens share at
    most k-1 pools, so the design is d-disjunct for every d with d·(k-1) < W
    (384×48, W=6: q=8, k=3, any two share ≤ 2 pools, 2-disjunct).
    """
    m = re.fullmatch(r"(\d+)[x×*](\d+)", args[0].lower())
    if not m:
        raise ValueError(f"P-BEST size must look like 384x48, got '{args[0]}'")
    n_spec = n or _int(m.group(1), "specimens", 2, 10**6)
    n_pools = _int(m.group(2), "pools", 2, 4096)
    w = _int(args[1], "weight", 2, 64) if len(args) > 1 else 6
    if n_pools % w:
        raise ValueError(f"pools ({n_pools}) must be a multiple of the weight ({w})")
    q = n_pools // w
    field_ = GaloisField(q)
    if w > q:
        raise ValueError(f"weight {w} exceeds the alphabet size {q}: a Reed–Solomon code has length at most q")
    k = max(1, math.ceil(math.log(n_spec, q) - 1e-12))
    if q**k < n_spec:
        k += 1
    msg = np.array([[(i // q**j) % q for j in range(k)] for i in range(n_spec)], dtype=np.int64)
    inc = np.zeros((n_pools, n_spec), dtype=bool)
    for pos in range(w):
        symbol = field_.poly_eval(msg, pos)  # evaluation points 0, 1, …, w-1 (element ids)
        inc[pos * q + symbol, np.arange(n_spec)] = True
    return Design(_ids("P", n_pools), _ids("S", n_spec), inc, f"pbest:{n_spec}x{n_pools}" + (f":{w}" if w != 6 else ""), "pbest", {"q": q, "k": k, "weight": w})


@generator("std", "std:N:Q:K (Shifted Transversal Design, Q prime, K ≤ Q+1 layers of Q pools)")
def _std(args: list[str], n: int | None) -> Design:
    """Thierry-Mieg's STD: layer L puts specimen j in pool Σ_c j_c·L^c mod q (j_c: base-q digits of j).

    Two specimens share at most Γ pools (Γ+1 = number of base-q digits needed), so
    with K layers the design is t-disjunct for K ≥ t·Γ + 1.
    """
    n_spec = n or _int(args[0], "specimens", 2, 10**6)
    q = _int(args[1], "q", 2, 251)
    if prime_power(q)[1] != 1:
        raise ValueError(f"q = {q} must be prime")
    k = _int(args[2], "layers", 1, q + 1)
    gamma = 0
    while q ** (gamma + 1) < n_spec:
        gamma += 1
    j = np.arange(n_spec, dtype=np.int64)
    digits = np.stack([(j // q**c) % q for c in range(gamma + 1)], axis=1)
    inc = np.zeros((q * k, n_spec), dtype=bool)
    for layer in range(min(k, q)):
        powers = np.array([layer**c % q if c else 1 for c in range(gamma + 1)], dtype=np.int64)
        inc[layer * q + (digits @ powers) % q, j] = True
    if k == q + 1:  # the extra layer of STD: pool by the most significant digit
        inc[q * q + digits[:, gamma], j] = True
    return Design(_ids("P", q * k), _ids("S", n_spec), inc, f"std:{n_spec}:{q}:{k}", "std", {"q": q, "layers": k, "gamma": gamma})


@generator("kirkman", "kirkman:V[:N] (Steiner/Kirkman triple system on V pools, weight 3; N specimens ≤ V(V-1)/6)")
def _kirkman(args: list[str], n: int | None) -> Design:
    """Triple-system design as Tapestry uses it: pools are points, each specimen a triple of pools.

    Any two triples share at most one point, so every specimen's 3 pools cannot be
    covered by 2 others: the design is 2-disjunct. Truncating to N specimens keeps the
    triples whose pools are least loaded, so pool sizes stay balanced.
    """
    v = _int(args[0], "pools V", 7, 255)
    triples = steiner_triples(v)
    n_spec = n or (_int(args[1], "specimens", 1, len(triples)) if len(args) > 1 else len(triples))
    if n_spec > len(triples):
        raise ValueError(f"a triple system on {v} pools holds at most {len(triples)} specimens, asked for {n_spec}")
    chosen = _balanced(np.array(triples), n_spec, v)
    inc = np.zeros((v, n_spec), dtype=bool)
    inc[chosen.T, np.arange(n_spec)] = True
    spec = f"kirkman:{v}" + (f":{n_spec}" if n_spec != len(triples) else "")
    return Design(_ids("P", v), _ids("S", n_spec), inc, spec, "kirkman", {"v": v})


def _balanced(blocks: np.ndarray, n_spec: int, n_pools: int) -> np.ndarray:
    if n_spec == len(blocks):
        return blocks
    load = np.zeros(n_pools, dtype=np.int64)
    taken = np.zeros(len(blocks), dtype=bool)
    out = np.empty((n_spec, blocks.shape[1]), dtype=np.int64)
    for i in range(n_spec):
        cost = np.where(taken, np.iinfo(np.int64).max, load[blocks].sum(axis=1))
        b = int(np.argmin(cost))
        taken[b] = True
        load[blocks[b]] += 1
        out[i] = blocks[b]
    return out


@generator("hyper", "hyper:N:M:W (hypergraph design like HYPER: N specimens, M pools, W = 2..3 pools each)")
def _hyper(args: list[str], n: int | None) -> Design:
    """Each specimen is an edge of W pools; pools balanced, no two specimens on the same edge.

    Edges are chosen greedily (least-loaded pools first, ties broken by a fixed seed),
    avoiding pairs of pools already used together when possible so two specimens share
    at most one pool.
    """
    n_spec = n or _int(args[0], "specimens", 2, 10**5)
    m = _int(args[1], "pools", 2, 4096)
    w = _int(args[2], "weight", 2, 3) if len(args) > 2 else 2
    if math.comb(m, w) < n_spec:
        raise ValueError(f"{m} pools give only {math.comb(m, w)} distinct {w}-pool edges for {n_spec} specimens")
    rng = np.random.default_rng(n_spec * 7919 + m * 31 + w)
    tiebreak = rng.random(m)
    load = np.zeros(m, dtype=np.int64)
    used_pairs: set[tuple[int, int]] = set()
    used_edges: set[tuple[int, ...]] = set()
    edges = []
    for _ in range(n_spec):
        order = np.lexsort((tiebreak, load))
        edge = _pick_edge(order, w, used_pairs, used_edges, strict=True) or _pick_edge(order, w, used_pairs, used_edges, strict=False)
        if edge is None:  # pragma: no cover - guarded by the comb() check above
            raise ValueError("could not place every specimen on a distinct edge")
        edges.append(edge)
        used_edges.add(edge)
        used_pairs.update(itertools.combinations(edge, 2))
        load[list(edge)] += 1
        tiebreak = rng.random(m)
    inc = np.zeros((m, n_spec), dtype=bool)
    for s, edge in enumerate(edges):
        inc[list(edge), s] = True
    return Design(_ids("P", m), _ids("S", n_spec), inc, f"hyper:{n_spec}:{m}:{w}", "hyper", {"weight": w})


def _pick_edge(order: np.ndarray, w: int, pairs: set[tuple[int, int]], edges: set[tuple[int, ...]], strict: bool) -> tuple[int, ...] | None:
    for combo in itertools.combinations(order.tolist(), w):
        edge = tuple(sorted(combo))
        if edge in edges:
            continue
        if strict and any(pair in pairs for pair in itertools.combinations(edge, 2)):
            continue
        return edge
    return None


# -- loading ------------------------------------------------------------------------------


def load_design(text: str, source: str = "design") -> Design:
    """A design from text: one line of 0/1 per pool, or one line per specimen listing its pools.

    Pool rows: ``0101…`` or ``0 1 0 1``. Specimen lines: ``S1: P1 P7 P9`` (or just the
    pool names/numbers). ``#`` starts a comment.
    """
    lines = [(i + 1, ln.split("#", 1)[0].strip()) for i, ln in enumerate(text.splitlines())]
    lines = [(i, ln) for i, ln in lines if ln]
    if not lines:
        raise DesignError(f"{source}: the design file is empty")
    if all(re.fullmatch(r"[01](?:[ ,\t]*[01])*", ln) for _, ln in lines):
        rows = [[c == "1" for c in re.sub(r"[ ,\t]", "", ln)] for _, ln in lines]
        width = len(rows[0])
        for (line, _), row in zip(lines, rows):
            if len(row) != width:
                raise DesignError(f"{source}, line {line}: pool row has {len(row)} columns, the first row has {width} (one column per specimen)")
        inc = np.array(rows, dtype=bool)
        return Design(_ids("P", inc.shape[0]), _ids("S", inc.shape[1]), inc, f"file:{source}", "file")
    specimens: list[str] = []
    pools: dict[str, int] = {}
    pairs: list[tuple[int, int]] = []
    for line, ln in lines:
        if ":" in ln:
            name, rest = ln.split(":", 1)
            name = name.strip()
        else:
            name, rest = f"S{len(specimens) + 1}", ln
        tokens = [t for t in re.split(r"[ ,;\t]+", rest.strip()) if t]
        if ":" not in ln and len(tokens) > 1 and not tokens[0].isdigit() and all(t.isdigit() for t in tokens[1:]):
            # the published by-sample form (P-BEST's pooling384_48_by_sample.txt): 'sample_1<TAB>1<TAB>9 …'
            name, tokens = tokens[0], tokens[1:]
        if not name or not tokens:
            raise DesignError(f"{source}, line {line}: expected 'specimen: pool pool …', got '{ln}'")
        if name in specimens:
            raise DesignError(f"{source}, line {line}: specimen '{name}' is listed twice")
        specimens.append(name)
        for t in tokens:
            pools.setdefault(t, len(pools))
            pairs.append((pools[t], len(specimens) - 1))
    names = list(pools)
    if all(t.isdigit() for t in names):
        # numbered pools in their numbers' order (pool 1 first), not in order of first mention
        rank = {t: r for r, t in enumerate(sorted(names, key=int))}
        pairs = [(rank[names[p]], s) for p, s in pairs]
        names = sorted(names, key=int)
    inc = np.zeros((len(names), len(specimens)), dtype=bool)
    for p, s in pairs:
        inc[p, s] = True
    return Design(tuple(names), tuple(specimens), inc, f"file:{source}", "file")


def design_from_manifest(manifest: pa.Table) -> Design:
    """The design a pool manifest describes: one row per (pool, specimen) pipetting.

    Pools and specimens keep the manifest's order of first appearance. A specimen
    whose ``pool_id`` equals its ``specimen_id`` is tested alone.
    """
    for col in ("pool_id", "specimen_id"):
        if col not in manifest.column_names:
            raise DesignError(f"manifest has no '{col}' column")
    pool = pc.utf8_trim_whitespace(manifest.column("pool_id").combine_chunks().cast(pa.string()))
    spec = pc.utf8_trim_whitespace(manifest.column("specimen_id").combine_chunks().cast(pa.string()))
    if pool.null_count or spec.null_count:
        raise DesignError("manifest has rows without pool_id or specimen_id")
    pool_enc = pc.dictionary_encode(pool)
    spec_enc = pc.dictionary_encode(spec)
    p = pool_enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    s = spec_enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    pool_ids = tuple(pool_enc.dictionary.to_pylist())
    spec_ids = tuple(spec_enc.dictionary.to_pylist())
    if not pool_ids:
        raise DesignError("manifest is empty")
    inc = np.zeros((len(pool_ids), len(spec_ids)), dtype=bool)
    inc[p, s] = True
    sizes = inc.sum(axis=1)
    weights = inc.sum(axis=0)
    if (weights == 1).all():
        pool_of = inc.argmax(axis=0)
        alone = (sizes[pool_of] == 1) & (np.array(pool_ids, dtype=object)[pool_of] == np.array(spec_ids, dtype=object))
        if alone.all():
            kind, spec_text = "individual", "individual"
        else:
            kind, spec_text = "dorfman", f"dorfman:{int(sizes.max())}"
    else:
        kind, spec_text = "manifest", f"manifest:{len(pool_ids)}x{len(spec_ids)}:w{int(weights.max())}"
    return Design(pool_ids, spec_ids, inc, spec_text, kind)


def manifest_aliquots(manifest: pa.Table, design: Design) -> np.ndarray:
    """bool[specimens]: True when any manifest row says a stored aliquot of that specimen can be re-run."""
    out = np.zeros(design.n_specimens, dtype=bool)
    if "aliquot" not in manifest.column_names:
        return out
    index = {sid: i for i, sid in enumerate(design.specimen_ids)}
    spec = manifest.column("specimen_id").to_pylist()
    flags = pc.fill_null(manifest.column("aliquot").combine_chunks().cast(pa.bool_()), False).to_numpy(zero_copy_only=False)
    for sid, flag in zip(spec, flags):
        if flag and sid is not None and sid.strip() in index:
            out[index[sid.strip()]] = True
    return out
