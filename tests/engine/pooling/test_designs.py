"""Pool designs: generators, finite fields, text and manifest loading, properties, worklists."""

from __future__ import annotations

import csv
import io
import itertools

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import DesignError
from engine.pooling import (
    design_from_manifest,
    generate,
    load_design,
    manifest_aliquots,
    parse_spec,
    properties,
)
from engine.pooling.algebra import GaloisField, steiner_triples
from engine.pooling.worklist import WORKLIST_COLUMNS, pool_wells, write_worklist


@pytest.mark.parametrize(
    ("spec", "pools", "specimens", "weight", "pool_size"),
    [
        ("dorfman:10", 94, 940, (1, 1), (10, 10)),
        ("dorfman:32", 94, 3008, (1, 1), (32, 32)),
        ("array:8x12", 20, 96, (2, 2), (8, 12)),
        ("array:16x24", 40, 384, (2, 2), (16, 24)),
        ("array:8x12:master", 21, 96, (3, 3), (8, 96)),
        ("cube:4x4x4", 12, 64, (3, 3), (16, 16)),
        ("hypercube:3:4", 12, 81, (4, 4), (27, 27)),
        ("pbest:384x48", 48, 384, (6, 6), (48, 48)),
        ("std:384:7:7", 49, 384, (7, 7), (54, 55)),
        ("kirkman:15", 15, 35, (3, 3), (7, 7)),
        ("kirkman:31:100", 31, 100, (3, 3), (9, 10)),
        ("hyper:120:30:2", 30, 120, (2, 2), (8, 8)),
        ("individual:5", 5, 5, (1, 1), (1, 1)),
    ],
)
def test_generators_shapes(spec, pools, specimens, weight, pool_size):
    """Each family gives the stated pools, specimens, weight (pools per specimen) and pool sizes."""
    d = generate(spec)
    assert (d.n_pools, d.n_specimens) == (pools, specimens)
    assert (int(d.weights.min()), int(d.weights.max())) == weight
    assert (int(d.pool_sizes.min()), int(d.pool_sizes.max())) == pool_size
    assert d.incidence.dtype == bool and d.incidence.shape == (pools, specimens)
    assert generate(spec).incidence.tobytes() == d.incidence.tobytes()  # deterministic


def test_dorfman_pool_size_range_and_specimen_override():
    """Dorfman accepts pools of 2–32 and a given number of specimens (the last pool may be smaller)."""
    d = generate("dorfman:7", 50)
    assert d.n_pools == 8 and d.pool_sizes[-1] == 1
    with pytest.raises(DesignError, match="pool size"):
        generate("dorfman:33")


def test_pbest_is_reed_solomon():
    """P-BEST 384×48: one pool per code position, any two specimens share at most k-1 = 2 pools."""
    d = generate("pbest:384x48")
    inc = d.incidence.reshape(6, 8, 384)
    assert (inc.sum(axis=1) == 1).all()  # each specimen: exactly one symbol per position
    overlap = d.incidence.T.astype(int) @ d.incidence.astype(int)
    np.fill_diagonal(overlap, 0)
    assert overlap.max() == 2
    assert d.params == {"q": 8, "k": 3, "weight": 6}


def test_std_overlap_bound():
    """STD(n; q; k): two specimens share at most Γ pools, here Γ = 3 for 384 specimens and q = 7."""
    d = generate("std:384:7:7")
    overlap = d.incidence.T.astype(int) @ d.incidence.astype(int)
    np.fill_diagonal(overlap, 0)
    assert overlap.max() <= d.params["gamma"] == 3
    assert generate("std:100:5:6").n_pools == 30  # k = q + 1 uses the extra layer


@pytest.mark.parametrize("v", [7, 9, 13, 15, 19, 21, 25, 27, 31, 33])
def test_steiner_triple_systems(v):
    """Every pair of points lies in exactly one triple (Bose for v ≡ 3, hill-climbing for v ≡ 1 mod 6)."""
    triples = steiner_triples(v)
    assert len(triples) == v * (v - 1) // 6
    pairs = [pair for t in triples for pair in itertools.combinations(t, 2)]
    assert len(pairs) == len(set(pairs)) == v * (v - 1) // 2


def test_steiner_rejects_inadmissible_order():
    """A triple system exists only for v ≡ 1 or 3 (mod 6)."""
    with pytest.raises(DesignError, match="mod 6"):
        generate("kirkman:17")


@pytest.mark.parametrize("q", [4, 7, 8, 9, 16])
def test_galois_field_axioms(q):
    """GF(q) tables form a field: commutative, distributive, and every non-zero element is invertible."""
    f = GaloisField(q)
    assert (f.add == f.add.T).all() and (f.mul == f.mul.T).all()
    for a in range(1, q):
        assert (f.mul[a, 1:] == 1).sum() == 1
    a, b, c = np.meshgrid(np.arange(q), np.arange(q), np.arange(q), indexing="ij")
    assert (f.mul[a, f.add[b, c]] == f.add[f.mul[a, b], f.mul[a, c]]).all()


def test_unknown_spec_lists_known_designs():
    """An unknown family raises DesignError listing the known ones; bad arguments name the usage."""
    with pytest.raises(DesignError, match="pbest"):
        parse_spec("magic:3")
    with pytest.raises(DesignError, match="usage"):
        generate("array:16by24")
    with pytest.raises(DesignError, match="prime power"):
        generate("pbest:384x60:6")


def test_load_design_pool_rows():
    """A text design of 0/1 pool rows loads as that incidence; ragged rows name the line."""
    d = load_design("# two pools\n1100\n0 1 1 1\n", "d.txt")
    assert d.incidence.tolist() == [[True, True, False, False], [False, True, True, True]]
    with pytest.raises(DesignError, match="d.txt, line 2"):
        load_design("1100\n111\n", "d.txt")


def test_load_design_specimen_lines():
    """A text design listing each specimen's pools loads with those names."""
    d = load_design("S1: A B\nS2: B C\nS3: A, C\n", "s.txt")
    assert d.specimen_ids == ("S1", "S2", "S3") and d.pool_ids == ("A", "B", "C")
    assert d.pools_of(2).tolist() == [0, 2]
    with pytest.raises(DesignError, match="listed twice"):
        load_design("S1: A\nS1: B\n", "s.txt")


def manifest(rows: list[tuple[str, str, bool]]) -> pa.Table:
    """A minimal manifest table (pool_id, specimen_id, aliquot)."""
    return pa.table({"pool_id": [r[0] for r in rows], "specimen_id": [r[1] for r in rows], "aliquot": [r[2] for r in rows]})


def test_design_from_manifest_dorfman_and_alone():
    """A manifest of disjoint pools is a Dorfman design; pool_id == specimen_id is a specimen tested alone."""
    m = manifest([("P1", "S1", True), ("P1", "S2", False), ("P2", "S3", False), ("P2", "S5", False), ("S4", "S4", True)])
    d = design_from_manifest(m)
    assert d.kind == "dorfman" and d.spec == "dorfman:2"
    assert d.pool_ids == ("P1", "P2", "S4") and d.specimen_ids == ("S1", "S2", "S3", "S5", "S4")
    assert d.alone.tolist() == [False, False, False, False, True]
    assert manifest_aliquots(m, d).tolist() == [True, False, False, False, True]
    alone = design_from_manifest(manifest([("S1", "S1", False), ("S2", "S2", False)]))
    assert alone.kind == "individual"
    # a pool that happens to hold one specimen is that specimen's own tube
    assert design_from_manifest(manifest([("P9", "S9", False)])).alone.tolist() == [True]


def test_design_from_manifest_combinatorial():
    """A specimen listed in several pools gets one incidence per row."""
    m = manifest([("R1", "S1", False), ("C1", "S1", False), ("R1", "S2", False), ("C2", "S2", False)])
    d = design_from_manifest(m)
    assert d.kind == "manifest" and d.weights.tolist() == [2, 2]
    with pytest.raises(DesignError, match="pool_id"):
        design_from_manifest(pa.table({"specimen_id": ["S1"]}))


def test_properties_report_disjunctness():
    """Properties give pools, weights, overlaps and the exhaustively checked disjunctness."""
    array = properties(generate("array:8x12"))
    assert array["disjunct"] == 1 and array["max_overlap"] == 1 and array["pools"] == 20
    kirkman = properties(generate("kirkman:15"))
    assert kirkman["disjunct"] == 2 and kirkman["weight"] == {"min": 3, "max": 3}
    pbest = properties(generate("pbest:384x48"))
    assert pbest["disjunct"] == 2 and pbest["disjunct_guaranteed"] == 2


def test_with_individual_tests_adds_single_pools():
    """Stage-2 individual tests become one-specimen pools appended to the design."""
    d = generate("array:4x4").with_individual_tests([0, 5])
    assert d.n_pools == 10 and d.pool_ids[-1] == "S06#individual"
    assert d.weights[0] == 3 and not d.alone.any()


def test_worklist_rows_and_wells():
    """The worklist has one transfer per incidence, skips the reserved control wells, and is valid CSV."""
    d = generate("pbest:384x48")
    text = write_worklist(d, plate_format=96, volume_ul=5.0)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == WORKLIST_COLUMNS
    assert len(rows) == int(d.incidence.sum())
    assert rows[0]["specimen_id"] == "S001" and rows[0]["volume_ul"] == "5.0"
    wells = pool_wells(generate("dorfman:10"), 96, reserved=2)
    assert wells[93] == (1, "H10") and (2, "A1") not in wells  # 94 pools + NTC + PC fill one plate
    assert {w for _, w in wells}.isdisjoint({"H11", "H12"})


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=2, max_value=12), st.integers(min_value=2, max_value=12))
def test_array_pools_are_rows_and_columns(r, c):
    """In an r×c array, specimen i is in row pool i // c and column pool r + i % c."""
    d = generate(f"array:{r}x{c}")
    for i in range(r * c):
        assert d.pools_of(i).tolist() == [i // c, r + i % c]


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["array:3x5", "kirkman:9", "hyper:20:8:3", "pbest:64x16:4", "std:30:5:3", "cube:2x3x4"]))
def test_matrix_export_round_trip(spec):
    """A design written as 0/1 pool rows (as `ketqua design --matrix` does) loads back identical."""
    d = generate(spec)
    text = "\n".join("".join("1" if x else "0" for x in row) for row in d.incidence)
    assert (load_design(text, "m.txt").incidence == d.incidence).all()
