"""RFC 9162 Merkle hashing, proofs from stored subtree hashes, and their verification.

Published vectors: the RFC 6962 known-answer tree of 8 leaves (as used by Certificate
Transparency's and Go's checksum database tests; values from transparency-dev/merkle
``testonly/constants.go``), and every inclusion and consistency vector of
transparency-dev/merkle ``testdata/`` (copied, with its commit, into
``tests/data/transparency/merkle_vectors.json``).
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signing.errors import LogError, ProofError, VerificationError
from signing.merkle import (
    EMPTY_ROOT,
    CompactRange,
    ConsistencyProof,
    InclusionProof,
    MemoryHashStore,
    MerkleLog,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    leaf_hashes,
    node_hash,
    range_nodes,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS = json.loads((Path(__file__).parents[1] / "data" / "transparency" / "merkle_vectors.json").read_text(encoding="utf-8"))

#: The RFC 6962 test tree: 8 leaf inputs and the root of every prefix (transparency-dev/merkle testonly/constants.go).
RFC6962_LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f",
)]
RFC6962_ROOTS = [bytes.fromhex(h) for h in (
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]


# --------------------------------------------------------------------------- a reference straight from the RFC text


def ref_root(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 §2.1.1, recursively."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(ref_root(leaves[:k]), ref_root(leaves[k:]))


def ref_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1."""
    if len(leaves) <= 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return ref_path(m, leaves[:k]) + [ref_root(leaves[k:])]
    return ref_path(m - k, leaves[k:]) + [ref_root(leaves[:k])]


def ref_subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) of RFC 9162 §2.1.4.1."""
    if m == len(leaves):
        return [] if whole else [ref_root(leaves)]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m <= k:
        return ref_subproof(m, leaves[:k], whole) + [ref_root(leaves[k:])]
    return ref_subproof(m - k, leaves[k:], False) + [ref_root(leaves[:k])]


def build(leaves: list[bytes], chunks: list[int] | None = None) -> MerkleLog:
    """A log of ``leaves`` appended in batches of the given sizes (cycled), or all at once."""
    log = MerkleLog(MemoryHashStore())
    i, c = 0, 0
    while i < len(leaves):
        step = chunks[c % len(chunks)] if chunks else len(leaves)
        log.append(leaves[i : i + step])
        i, c = i + step, c + 1
    return log


def _b64(text: str) -> bytes:
    # The vectors hold deliberately broken values ("", short strings); decode them leniently.
    try:
        return base64.b64decode(text or "")
    except binascii.Error:
        return text.encode()


# --------------------------------------------------------------------------- known answers


def test_hash_known_answers() -> None:
    """Leaf and node hashes match RFC 6962's published values (transparency-dev/merkle rfc6962_test.go)."""
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert leaf_hash(b"L123456").hex() == "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    assert node_hash(b"N123", b"N456").hex() == "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"


@pytest.mark.parametrize("chunks", [None, [1], [3], [2, 5]])
def test_rfc6962_roots_of_the_eight_leaf_tree(chunks: list[int] | None) -> None:
    """Every prefix of the RFC 6962 8-leaf test tree has its published root, however the leaves were batched."""
    log = build(RFC6962_LEAVES, chunks)
    assert log.root() == RFC6962_ROOTS[8]
    for size, want in enumerate(RFC6962_ROOTS):
        assert root_hash(log.store, size) == want
        assert CompactRange.from_store(log.store, size).root() == want


def _inclusion_args(v: dict) -> tuple:
    return _b64(v["leafHash"]), v["leafIdx"], v["treeSize"], [_b64(h) for h in v["proof"] or []], _b64(v["root"])


def _consistency_args(v: dict) -> tuple:
    return v["size1"], v["size2"], [_b64(h) for h in v["proof"] or []], _b64(v["root1"]), _b64(v["root2"])


#: Vectors where ketqua is deliberately stricter than the Go reference: roots that are not
#: 32 bytes ("don't care" placeholders) are refused before the sizes are compared.
STRICTER = {"testdata/consistency/additional/sizes-are-equal-one-and-proof-is-empty.json"}


@pytest.mark.parametrize("vector", VECTORS["inclusion"], ids=lambda v: v["file"].removeprefix("testdata/"))
def test_transparency_dev_inclusion_vectors(vector: dict) -> None:
    """Every transparency-dev/merkle inclusion vector verifies or fails as it says."""
    if vector["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*_inclusion_args(vector))
    else:
        verify_inclusion(*_inclusion_args(vector))


@pytest.mark.parametrize("vector", VECTORS["consistency"], ids=lambda v: v["file"].removeprefix("testdata/"))
def test_transparency_dev_consistency_vectors(vector: dict) -> None:
    """Every transparency-dev/merkle consistency vector verifies or fails as it says (STRICTER ones always fail)."""
    if vector["wantErr"] or vector["file"] in STRICTER:
        with pytest.raises(ProofError) as caught:
            verify_consistency(*_consistency_args(vector))
        if vector["file"] in STRICTER:
            assert caught.value.reason == "malformed-proof"
    else:
        verify_consistency(*_consistency_args(vector))


def test_generated_proofs_equal_the_published_happy_paths() -> None:
    """Proofs served from the store are byte for byte the published ones of the 8-leaf tree."""
    log = build(RFC6962_LEAVES, [3])
    inclusion = [v for v in VECTORS["inclusion"] if not v["wantErr"] and v["treeSize"] <= 8 and _b64(v["root"]) == RFC6962_ROOTS[v["treeSize"]]]
    consistency = [v for v in VECTORS["consistency"] if not v["wantErr"] and v["size2"] <= 8 and v["size1"] < v["size2"]
                   and _b64(v["root2"]) == RFC6962_ROOTS[v["size2"]]]
    assert len(inclusion) >= 4 and len(consistency) >= 4
    for v in inclusion:
        assert inclusion_proof(log.store, v["leafIdx"], v["treeSize"]) == [_b64(h) for h in v["proof"] or []], v["file"]
    for v in consistency:
        assert consistency_proof(log.store, v["size1"], v["size2"]) == [_b64(h) for h in v["proof"] or []], v["file"]


# --------------------------------------------------------------------------- properties

leaves_st = st.lists(st.binary(max_size=24), min_size=1, max_size=140)
chunks_st = st.lists(st.integers(1, 9), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(leaves=leaves_st, chunks=chunks_st, data=st.data())
def test_every_proof_matches_the_rfc_and_verifies(leaves: list[bytes], chunks: list[int], data: st.DataObject) -> None:
    """For random trees, served proofs equal the RFC's recursive definitions at every older size, and verify."""
    log = build(leaves, chunks)
    assert log.root() == ref_root(leaves)
    n = data.draw(st.integers(1, len(leaves)), label="tree size")
    root = ref_root(leaves[:n])
    for m in range(n):
        proof = log.inclusion_proof(m, n)
        assert proof == ref_path(m, leaves[:n])
        verify_inclusion(leaf_hash(leaves[m]), m, n, proof, root)
    for m in range(1, n):
        proof = log.consistency_proof(m, n)
        assert proof == ref_subproof(m, leaves[:n], True)
        verify_consistency(m, n, proof, ref_root(leaves[:m]), root)


@settings(max_examples=80, deadline=None)
@given(leaves=st.lists(st.binary(max_size=16), min_size=2, max_size=120, unique=True), data=st.data())
def test_a_changed_or_moved_leaf_or_a_cut_proof_fails_inclusion(leaves: list[bytes], data: st.DataObject) -> None:
    """Changing the leaf, swapping it with another, or truncating or padding the proof makes inclusion fail."""
    log = build(leaves)
    n = len(leaves)
    m = data.draw(st.integers(0, n - 1), label="leaf")
    proof = log.inclusion_proof(m)
    root = log.root()
    verify_inclusion(leaf_hash(leaves[m]), m, n, proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(leaves[m] + b"!"), m, n, proof, root)
    other = data.draw(st.integers(0, n - 1).filter(lambda j: j != m), label="other leaf")
    swapped = list(leaves)
    swapped[m], swapped[other] = swapped[other], swapped[m]
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(leaves[m]), m, n, build(swapped).inclusion_proof(m), root)
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(leaves[m]), other, n, proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(leaves[m]), m, n, proof[:-1], root)
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(leaves[m]), m, n, [*proof, root], root)


@settings(max_examples=80, deadline=None)
@given(leaves=st.lists(st.binary(max_size=16), min_size=3, max_size=120, unique=True), data=st.data())
def test_a_rewritten_history_fails_consistency(leaves: list[bytes], data: st.DataObject) -> None:
    """A changed old leaf, reordered leaves, a flipped proof hash or a cut proof makes consistency fail."""
    n = len(leaves)
    m = data.draw(st.integers(1, n - 1), label="old size")
    old_root = ref_root(leaves[:m])
    log = build(leaves)
    proof = log.consistency_proof(m)
    verify_consistency(m, n, proof, old_root, log.root())
    i = data.draw(st.integers(0, m - 1), label="rewritten leaf")
    rewritten = list(leaves)
    rewritten[i] += b"!"
    forged = build(rewritten)
    with pytest.raises(ProofError):
        verify_consistency(m, n, forged.consistency_proof(m), old_root, forged.root())
    j = data.draw(st.integers(0, n - 1).filter(lambda j: j != i), label="swapped with")
    reordered = list(leaves)
    reordered[i], reordered[j] = reordered[j], reordered[i]
    forged = build(reordered)
    with pytest.raises(ProofError):
        verify_consistency(m, n, forged.consistency_proof(m), old_root, forged.root())
    if proof:
        k = data.draw(st.integers(0, len(proof) - 1), label="flipped hash")
        flipped = list(proof)
        flipped[k] = bytes([flipped[k][0] ^ 1]) + flipped[k][1:]
        with pytest.raises(ProofError):
            verify_consistency(m, n, flipped, old_root, log.root())
        with pytest.raises(ProofError):
            verify_consistency(m, n, proof[:-1], old_root, log.root())


def test_proofs_read_logarithmically_many_nodes() -> None:
    """At 2**17 + 12345 leaves, a root, an inclusion and a consistency proof each read O(log n) stored nodes."""
    n = (1 << 17) + 12345
    log = MerkleLog(MemoryHashStore())
    log.append_hashes(leaf_hashes(i.to_bytes(4, "big") for i in range(n)))
    store = log.store
    assert isinstance(store, MemoryHashStore)
    bound = 2 * n.bit_length()
    for ask in (lambda: root_hash(store, n - 1), lambda: inclusion_proof(store, n - 7, n - 3),
                lambda: inclusion_proof(store, 5, n), lambda: consistency_proof(store, 99_999, n - 1)):
        before = store.reads
        ask()
        assert 0 < store.reads - before <= bound


def test_batched_appends_write_the_same_nodes_as_one_by_one() -> None:
    """Appending in batches stores exactly the nodes appending leaf by leaf stores, and the frontier reloads."""
    leaves = [str(i).encode() for i in range(1000)]
    one, batched = build(leaves, [1]), build(leaves, [7, 250, 1, 64])
    assert one.store._levels == batched.store._levels  # type: ignore[attr-defined]
    reloaded = MerkleLog(batched.store)
    assert reloaded.size == 1000 and reloaded.root() == one.root()


def test_range_nodes_cover_aligned_blocks() -> None:
    """A range decomposes into the largest aligned perfect subtrees."""
    assert range_nodes(0, 13) == [(3, 0), (2, 2), (0, 12)]
    assert range_nodes(8, 13) == [(2, 2), (0, 12)]
    assert range_nodes(6, 8) == [(1, 3)]
    assert range_nodes(5, 5) == []


# --------------------------------------------------------------------------- what the log refuses


def test_requests_beyond_the_log_are_log_errors() -> None:
    """Sizes and indexes outside the log raise LogError (an API 400), not a crash or a wrong proof."""
    log = build(RFC6962_LEAVES)
    for ask in (lambda: log.inclusion_proof(8), lambda: log.inclusion_proof(-1), lambda: log.inclusion_proof(0, 9),
                lambda: log.consistency_proof(0, 5), lambda: log.consistency_proof(6, 5), lambda: log.root_at(9),
                lambda: log.consistency_proof(3, 10)):
        with pytest.raises(LogError) as caught:
            ask()
        assert caught.value.reason == "out-of-range"
    assert log.consistency_proof(5, 5) == []
    assert not isinstance(LogError("x"), VerificationError)


def test_the_memory_store_is_append_only() -> None:
    """Rewriting or skipping nodes is refused; a missing node is reported by position."""
    store = MemoryHashStore()
    store.write(0, 0, bytes(64))
    with pytest.raises(LogError):
        store.write(0, 1, bytes(32))
    with pytest.raises(LogError):
        store.write(0, 5, bytes(32))
    with pytest.raises(LogError, match=r"\(1, 0\)"):
        store.read([(1, 0)])


# --------------------------------------------------------------------------- API JSON shapes


def test_proof_json_round_trips_and_verifies() -> None:
    """The API's proof objects carry base64 hashes and come back as the same proof."""
    log = build(RFC6962_LEAVES)
    proof = InclusionProof(5, 8, tuple(log.inclusion_proof(5)))
    obj = json.loads(json.dumps(proof.to_json()))
    assert set(obj) == {"leaf_index", "tree_size", "hashes"} and all(isinstance(h, str) for h in obj["hashes"])
    assert InclusionProof.from_json(obj) == proof
    InclusionProof.from_json(obj).verify(RFC6962_LEAVES[5], RFC6962_ROOTS[8])
    with pytest.raises(ProofError):
        proof.verify(RFC6962_LEAVES[4], RFC6962_ROOTS[8])
    consistency = ConsistencyProof(tuple(log.consistency_proof(3)))
    assert ConsistencyProof.from_json(json.loads(json.dumps(consistency.to_json()))) == consistency


@pytest.mark.parametrize("obj", [
    [], {"leaf_index": 0, "tree_size": 1}, {"leaf_index": -1, "tree_size": 1, "hashes": []},
    {"leaf_index": True, "tree_size": 1, "hashes": []}, {"leaf_index": 0, "tree_size": 1, "hashes": "abc"},
    {"leaf_index": 0, "tree_size": 1, "hashes": ["AAAA"]}, {"leaf_index": 0, "tree_size": 1, "hashes": ["not base64!"]},
    {"leaf_index": 0, "tree_size": 1, "hashes": [], "extra": 1},
])
def test_malformed_proof_json_is_refused(obj: object) -> None:
    """Proof JSON with missing keys, wrong types or hashes that are not 32-byte base64 is a ProofError."""
    with pytest.raises(ProofError) as caught:
        InclusionProof.from_json(obj)
    assert caught.value.reason == "malformed-proof"
