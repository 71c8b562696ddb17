"""RFC 9162 §2 Merkle tree hashing for the log of signed results, with proofs served from stored subtree hashes.

Why a tree and not a hash chain: a relying party holding one signed tree head
(checkpoint) can check, with log₂ n hashes, both that a result is in the log
(inclusion) and that a later tree head extends the earlier one (consistency),
so the lab cannot rewrite or back-date a result without every holder of an old
checkpoint being able to prove it.

Hashing is RFC 9162 (= RFC 6962) §2.1: leaf hash ``SHA-256(0x00 || leaf)``,
interior node ``SHA-256(0x01 || left || right)``, the empty tree ``SHA-256("")``,
and a tree of n > 1 leaves splits at the largest power of two below n.

**Node addressing.** ``(level, index)`` names the perfect subtree of ``2**level``
leaves starting at leaf ``index * 2**level``; level 0 holds the leaf hashes.
The log is append-only, so such a node never changes once all its leaves exist:
one store of these nodes answers proofs for the current tree *and* every
earlier size. Every hash a proof needs is either such a node or (only on the
right edge of a smaller tree) the fold of at most log₂ n of them, so a proof
costs O(log n) reads, which :class:`HashStore` takes in one batch (one SQL
query for a database table ``(level, index) → hash``).

**Appending.** :class:`CompactRange` (the *frontier*: the hashes of the perfect
subtrees that make up the current size, one per set bit) is all an appender
needs in memory; :meth:`CompactRange.extend` hashes a batch of leaves level by
level (each level one pass over a contiguous run) and returns the new nodes as
one contiguous run per level, so a store writes them with one ``executemany``
per level, in the same transaction as the results they log. :class:`MerkleLog`
ties a store and a frontier together.

Proof verification implements RFC 9162 §2.1.3.2 and §2.1.4.2 exactly; the
proof shapes are those of the API (``{"leaf_index", "tree_size", "hashes"}``,
``{"hashes"}``, hashes in standard base64).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from signing.errors import LogError, ProofError

#: Bytes of every hash in the tree (SHA-256).
HASH_SIZE = 32
#: RFC 9162 §2.1.1: the hash of the empty tree is the hash of the empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()
#: A proof never has more hashes than this: 2 per level of a tree of 2**63 leaves (SQLite's integer range).
MAX_PROOF_HASHES = 128

_sha256 = hashlib.sha256

NodeId = tuple[int, int]  # (level, index)


# --------------------------------------------------------------------------- hashing


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 9162 leaf hash ``SHA-256(0x00 || leaf)``; the 0x00 prefix keeps a leaf from posing as a node."""
    return _sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash ``SHA-256(0x01 || left || right)``."""
    return _sha256(b"\x01" + left + right).digest()


def leaf_hashes(leaves: Iterable[bytes]) -> bytes:
    """The leaf hashes of ``leaves``, concatenated (32 bytes each): the input :meth:`CompactRange.extend` takes."""
    return b"".join([_sha256(b"\x00" + leaf).digest() for leaf in leaves])


def _pair_hashes(children: bytes) -> bytes:
    """Parents of consecutive child pairs in a run of concatenated hashes (even count), concatenated."""
    return b"".join([_sha256(b"\x01" + children[i : i + 64]).digest() for i in range(0, len(children), 64)])


def _fold(hashes: Sequence[bytes]) -> bytes:
    """The root of a tree made of perfect subtrees, largest (leftmost) first: fold from the right."""
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = _sha256(b"\x01" + h + acc).digest()
    return acc


def _largest_power_of_two_below(n: int) -> int:
    """k of RFC 9162 §2.1.1: the largest power of two strictly smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def range_nodes(start: int, end: int) -> list[NodeId]:
    """The perfect subtrees that cover leaves ``[start, end)``, left to right, each as large as alignment allows.

    For the ranges RFC 9162's recursion produces (``start`` aligned to a power of
    two at least ``end - start``), folding these from the right gives the range's
    tree hash; those are the only ranges a proof needs.
    """
    nodes: list[NodeId] = []
    while start < end:
        # The largest aligned block at ``start`` (start == 0 aligns to anything) that fits.
        level = (end - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


# --------------------------------------------------------------------------- store


@runtime_checkable
class HashStore(Protocol):
    """Where the log's perfect-subtree hashes live: ``(level, index) → 32 bytes``, append-only.

    A SQLite implementation is one table ``log_nodes(level INTEGER, idx INTEGER,
    hash BLOB, PRIMARY KEY (level, idx)) WITHOUT ROWID``, written in the same
    transaction as the results whose leaves it adds.
    """

    def tree_size(self) -> int:
        """Leaves in the log (level-0 nodes stored): the largest size a proof can be asked for."""
        ...

    def read(self, ids: Sequence[NodeId]) -> list[bytes]:
        """The hashes of ``ids``, in order; raise :class:`LogError` (``missing-node``) for one not stored."""
        ...

    def write(self, level: int, start: int, hashes: bytes) -> None:
        """Store nodes ``(level, start)``, ``(level, start + 1)``, … whose hashes are concatenated in ``hashes``."""
        ...


class MemoryHashStore:
    """A :class:`HashStore` in process memory: one growing byte array per level (tests, benches, caches)."""

    __slots__ = ("_levels", "reads")

    def __init__(self) -> None:
        self._levels: list[bytearray] = []
        #: Nodes read so far (tests assert proofs stay O(log n)).
        self.reads = 0

    def tree_size(self) -> int:
        return len(self._levels[0]) // HASH_SIZE if self._levels else 0

    def read(self, ids: Sequence[NodeId]) -> list[bytes]:
        self.reads += len(ids)
        out = []
        levels = self._levels
        for level, index in ids:
            at = index * HASH_SIZE
            if level >= len(levels) or index < 0 or at + HASH_SIZE > len(levels[level]):
                raise LogError(f"transparency log: subtree hash ({level}, {index}) is not stored", reason="missing-node")
            out.append(bytes(levels[level][at : at + HASH_SIZE]))
        return out

    def write(self, level: int, start: int, hashes: bytes) -> None:
        if len(hashes) % HASH_SIZE:
            raise ValueError(f"hashes must be a multiple of {HASH_SIZE} bytes, got {len(hashes)}")
        while len(self._levels) <= level:
            self._levels.append(bytearray())
        run = self._levels[level]
        if start * HASH_SIZE != len(run):
            # Append-only: a node once written is never replaced, and no gap is left.
            raise LogError(
                f"transparency log: level {level} holds {len(run) // HASH_SIZE} nodes; cannot write from index {start}",
                reason="not-append",
            )
        run += hashes


# --------------------------------------------------------------------------- appending


@dataclass(frozen=True)
class CompactRange:
    """The frontier of a tree of ``size`` leaves: one perfect-subtree hash per set bit of ``size``, largest first.

    Enough to compute the root and to append, without reading the store.
    """

    size: int = 0
    hashes: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.hashes) != self.size.bit_count():
            raise ValueError(f"a frontier of size {self.size} has {self.size.bit_count()} hashes, got {len(self.hashes)}")

    def root(self) -> bytes:
        """The tree's root hash (RFC 9162 MTH of all ``size`` leaves)."""
        return _fold(self.hashes) if self.hashes else EMPTY_ROOT

    def node_ids(self) -> list[NodeId]:
        """The ``(level, index)`` of each frontier hash, in order."""
        return range_nodes(0, self.size)

    @classmethod
    def from_store(cls, store: HashStore, size: int | None = None) -> CompactRange:
        """The frontier of the stored tree (or of its first ``size`` leaves): log₂ n reads, e.g. after a restart."""
        stored = store.tree_size()
        size = stored if size is None else size
        _check_size(size, stored)
        return cls(size, tuple(store.read(range_nodes(0, size))) if size else ())

    def extend(self, new_leaf_hashes: bytes) -> tuple[CompactRange, list[tuple[int, int, bytes]]]:
        """Append leaves (their concatenated leaf hashes) → the new frontier and the new nodes to store.

        The nodes come as one contiguous run per level, ``(level, start, hashes)``,
        highest level first, so a store that derives its size from level 0 only
        counts the new leaves once every node above them is written.
        Each level costs one pass over its run: about two hashes per new leaf in all.
        """
        if len(new_leaf_hashes) % HASH_SIZE:
            raise ValueError(f"leaf hashes must be a multiple of {HASH_SIZE} bytes, got {len(new_leaf_hashes)}")
        count = len(new_leaf_hashes) // HASH_SIZE
        if not count:
            return self, []
        old = self.size
        frontier = dict(zip((level for level, _ in self.node_ids()), self.hashes))
        runs: list[tuple[int, int, bytes]] = []
        level, start, run = 0, old, new_leaf_hashes
        while run:
            runs.append((level, start, run))
            # An odd start pairs with the old frontier node just left of it.
            children = (frontier[level] + run) if start & 1 else run
            first = start - (start & 1)
            pairs = len(children) // (2 * HASH_SIZE)
            run = _pair_hashes(children[: pairs * 2 * HASH_SIZE]) if pairs else b""
            level, start = level + 1, first >> 1
        new_size = old + count
        last = {lvl: (st, r) for lvl, st, r in runs}
        hashes = []
        for lvl, index in range_nodes(0, new_size):
            st, r = last.get(lvl, (0, b""))
            at = (index - st) * HASH_SIZE
            hashes.append(r[at : at + HASH_SIZE] if 0 <= at < len(r) else frontier[lvl])
        runs.reverse()
        return CompactRange(new_size, tuple(hashes)), runs


class MerkleLog:
    """An append-only log over a :class:`HashStore`: append leaves, read roots and proofs at any size.

    The frontier is kept in memory; if a write to the store is rolled back
    (the results' transaction failed), call :meth:`reload` before appending again.
    """

    __slots__ = ("store", "_frontier")

    def __init__(self, store: HashStore) -> None:
        self.store = store
        self._frontier = CompactRange.from_store(store)

    def reload(self) -> None:
        """Re-read the frontier from the store (after a rolled-back transaction)."""
        self._frontier = CompactRange.from_store(self.store)

    @property
    def size(self) -> int:
        """Leaves in the log."""
        return self._frontier.size

    def root(self) -> bytes:
        """Root hash of the whole log, from memory."""
        return self._frontier.root()

    def append(self, leaves: Iterable[bytes]) -> int:
        """Append leaves (raw bytes: each result version's JWS compact, in ledger order); the first one's index."""
        return self.append_hashes(leaf_hashes(leaves))

    def append_hashes(self, hashes: bytes) -> int:
        """Append leaves given as concatenated leaf hashes; returns the first new leaf's index."""
        first = self._frontier.size
        frontier, runs = self._frontier.extend(hashes)
        for level, start, run in runs:
            self.store.write(level, start, run)
        self._frontier = frontier
        return first

    def root_at(self, size: int) -> bytes:
        """Root hash of the first ``size`` leaves."""
        return root_hash(self.store, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size`` leaves (default: the whole log)."""
        return inclusion_proof(self.store, index, self.size if size is None else size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """RFC 9162 consistency proof from the tree of ``old_size`` leaves to ``new_size`` (default: the whole log)."""
        return consistency_proof(self.store, old_size, self.size if new_size is None else new_size)


# --------------------------------------------------------------------------- proofs from the store


def _check_size(size: int, stored: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise LogError(f"tree size must be a non-negative integer, got {size!r}")
    if size > stored:
        raise LogError(f"tree size {size} is beyond the log, which holds {stored} leaves")


def _resolve(store: HashStore, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """Hashes of leaf ranges (each aligned as RFC 9162's recursion makes them), in one batched store read."""
    covers = [range_nodes(a, b) for a, b in ranges]
    ids = sorted({node for cover in covers for node in cover})
    found = dict(zip(ids, store.read(ids)))
    return [_fold([found[node] for node in cover]) for cover in covers]


def root_hash(store: HashStore, size: int) -> bytes:
    """Root hash of the first ``size`` leaves of the stored log: log₂ n reads."""
    _check_size(size, store.tree_size())
    return _resolve(store, [(0, size)])[0] if size else EMPTY_ROOT


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes make RFC 9162 §2.1.3.1 PATH(index, D[size]), leaf level first."""
    lo, hi, path = 0, size, []
    while hi - lo > 1:
        k = _largest_power_of_two_below(hi - lo)
        if index < lo + k:
            path.append((lo + k, hi))
            hi = lo + k
        else:
            path.append((lo, lo + k))
            lo += k
    path.reverse()
    return path


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes make RFC 9162 §2.1.4.1 PROOF(old_size, D[new_size]) (0 < old < new)."""
    lo, hi, whole, path = 0, new_size, True, []
    while old_size != hi:
        k = _largest_power_of_two_below(hi - lo)
        if old_size <= lo + k:
            path.append((lo + k, hi))
            hi = lo + k
        else:
            path.append((lo, lo + k))
            lo += k
            whole = False
    if not whole:
        # SUBPROOF(m, D[m], false): the old tree's last subtree is not the old root itself.
        path.append((lo, hi))
    path.reverse()
    return path


def inclusion_proof(store: HashStore, index: int, size: int) -> list[bytes]:
    """Inclusion proof of leaf ``index`` in the tree of the first ``size`` leaves: ≤ 2 log₂ n node reads."""
    _check_size(size, store.tree_size())
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
        raise LogError(f"leaf index {index!r} is not in a tree of {size} leaves")
    return _resolve(store, inclusion_ranges(index, size))


def consistency_proof(store: HashStore, old_size: int, new_size: int) -> list[bytes]:
    """Consistency proof from the tree of ``old_size`` leaves to ``new_size``: ≤ 2 log₂ n node reads.

    ``old_size == new_size`` gives the empty proof. ``old_size == 0`` is refused:
    every tree extends the empty one, so there is nothing to prove (a verifier
    trusts its first checkpoint by its signature alone).
    """
    _check_size(new_size, store.tree_size())
    if isinstance(old_size, bool) or not isinstance(old_size, int) or not 0 < old_size <= new_size:
        raise LogError(f"a consistency proof needs 0 < from ≤ to; got from={old_size!r}, to={new_size}")
    if old_size == new_size:
        return []
    return _resolve(store, consistency_ranges(old_size, new_size))


# --------------------------------------------------------------------------- verification (RFC 9162 §2.1.3.2, §2.1.4.2)


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, (bytes, bytearray)) or len(value) != HASH_SIZE:
        size = len(value) if isinstance(value, (bytes, bytearray)) else type(value).__name__
        raise ProofError(f"{what} must be a {HASH_SIZE}-byte SHA-256 hash, got {size}", reason="malformed-proof")


def _check_proof(proof: Sequence[bytes]) -> None:
    if len(proof) > MAX_PROOF_HASHES:
        raise ProofError(f"a proof of {len(proof)} hashes is longer than any tree allows", reason="malformed-proof")
    for i, h in enumerate(proof):
        _check_hash(h, f"proof hash {i}")


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads to from leaf hash ``leaf`` at ``index`` in a tree of ``size`` leaves."""
    _check_hash(leaf, "leaf hash")
    _check_proof(proof)
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is not in a tree of {size} leaves", reason="out-of-range")
    fn, sn, r = index, size - 1, bytes(leaf)
    for p in proof:
        if sn == 0:
            raise ProofError(f"inclusion proof for leaf {index} of {size} has {len(proof)} hashes, more than the path")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"inclusion proof for leaf {index} of {size} has {len(proof)} hashes, fewer than the path")
    return r


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that leaf hash ``leaf`` is leaf ``index`` of the tree of ``size`` leaves with root ``root``.

    Raises :class:`ProofError` saying what failed; returns None when the proof holds.
    """
    _check_hash(root, "root hash")
    got = root_from_inclusion_proof(leaf, index, size, proof)
    if got != root:
        raise ProofError(
            f"inclusion proof for leaf {index} leads to root {b64(got)}, not the tree of {size} leaves' root {b64(root)}"
        )


def root_from_consistency_proof(old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes) -> bytes:
    """The new root that ``proof`` leads to, after checking it reproduces ``old_root``; for 0 < old < new."""
    _check_hash(old_root, "old root hash")
    _check_proof(proof)
    if not 0 < old_size < new_size:
        raise ProofError(f"a consistency proof needs 0 < old < new sizes; got {old_size} → {new_size}", reason="out-of-range")
    if not proof:
        raise ProofError(f"consistency proof {old_size} → {new_size} is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        # The old tree is a perfect subtree of the new one; its root starts the path.
        path.insert(0, bytes(old_root))
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"consistency proof {old_size} → {new_size} has {len(proof)} hashes, more than the path")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"consistency proof {old_size} → {new_size} has {len(proof)} hashes, fewer than the path")
    if fr != old_root:
        raise ProofError(
            f"consistency proof {old_size} → {new_size} does not reproduce the old root {b64(old_root)} (it gives {b64(fr)})"
        )
    return sr


def verify_consistency(old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes) -> None:
    """Check that the tree of ``new_size`` leaves (``new_root``) extends the one of ``old_size`` (``old_root``).

    Equal sizes need an empty proof and equal roots; a size-0 old tree must have
    the empty root and is refused against a larger tree (nothing to prove; see
    :func:`consistency_proof`). Raises :class:`ProofError`.
    """
    _check_hash(old_root, "old root hash")
    _check_hash(new_root, "new root hash")
    if old_size < 0 or old_size > new_size:
        raise ProofError(f"a tree of {new_size} leaves cannot extend one of {old_size}", reason="out-of-range")
    if old_size == new_size:
        if proof:
            raise ProofError(f"consistency proof between two trees of {old_size} leaves must be empty, has {len(proof)} hashes")
        if old_root != new_root:
            raise ProofError(f"two trees of {old_size} leaves with different roots {b64(old_root)} and {b64(new_root)}")
        if old_size == 0 and old_root != EMPTY_ROOT:
            raise ProofError(f"the empty tree's root is {b64(EMPTY_ROOT)}, not {b64(old_root)}")
        return
    if old_size == 0:
        raise ProofError("a consistency proof from the empty tree proves nothing", reason="out-of-range")
    got = root_from_consistency_proof(old_size, new_size, proof, old_root)
    if got != new_root:
        raise ProofError(
            f"consistency proof {old_size} → {new_size} leads to root {b64(got)}, not the new root {b64(new_root)}"
        )


# --------------------------------------------------------------------------- JSON shapes of the API


def b64(value: bytes) -> str:
    """Standard base64 with padding (RFC 4648 §4), as checkpoints and proofs carry hashes."""
    return base64.b64encode(value).decode("ascii")


def b64_hash(text: Any, what: str) -> bytes:
    """A 32-byte hash from canonical standard base64; :class:`ProofError` naming ``what`` otherwise."""
    if not isinstance(text, str):
        raise ProofError(f"{what}: expected a base64 string, got {type(text).__name__}", reason="malformed-proof")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ProofError(f"{what}: {text!r} is not standard base64", reason="malformed-proof") from exc
    if len(raw) != HASH_SIZE or b64(raw) != text:
        raise ProofError(f"{what}: {text!r} is not the base64 of a {HASH_SIZE}-byte hash", reason="malformed-proof")
    return raw


def _json_int(obj: Mapping[str, Any], key: str, source: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProofError(f"{source}: {key!r} must be a non-negative integer, got {value!r}", reason="malformed-proof")
    return value


def _json_hashes(obj: Mapping[str, Any], source: str) -> tuple[bytes, ...]:
    hashes = obj.get("hashes")
    if not isinstance(hashes, list) or len(hashes) > MAX_PROOF_HASHES:
        raise ProofError(f"{source}: 'hashes' must be a list of at most {MAX_PROOF_HASHES} base64 hashes", reason="malformed-proof")
    return tuple(b64_hash(h, f"{source}: hashes[{i}]") for i, h in enumerate(hashes))


def _json_object(obj: Any, keys: set[str], source: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise ProofError(f"{source}: expected a JSON object, got {type(obj).__name__}", reason="malformed-proof")
    if set(obj) != keys:
        raise ProofError(f"{source}: expected exactly the keys {sorted(keys)}, got {sorted(obj)}", reason="malformed-proof")
    return obj


@dataclass(frozen=True)
class InclusionProof:
    """``GET /v1/results/{id}/proof`` → ``{"leaf_index": i, "tree_size": N, "hashes": [base64…]}``."""

    leaf_index: int
    tree_size: int
    hashes: tuple[bytes, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {"leaf_index": self.leaf_index, "tree_size": self.tree_size, "hashes": [b64(h) for h in self.hashes]}

    @classmethod
    def from_json(cls, obj: Any, *, source: str = "inclusion proof") -> InclusionProof:
        """Strict: exactly the three keys, integers, canonical base64 32-byte hashes."""
        obj = _json_object(obj, {"leaf_index", "tree_size", "hashes"}, source)
        return cls(_json_int(obj, "leaf_index", source), _json_int(obj, "tree_size", source), _json_hashes(obj, source))

    def verify(self, leaf: bytes, root: bytes) -> None:
        """Check that raw leaf bytes ``leaf`` are in the tree with ``root`` (:class:`ProofError` otherwise)."""
        verify_inclusion(leaf_hash(leaf), self.leaf_index, self.tree_size, self.hashes, root)


@dataclass(frozen=True)
class ConsistencyProof:
    """``GET /v1/log/consistency?from=M&to=N`` → ``{"hashes": [base64…]}`` (the sizes are the request's)."""

    hashes: tuple[bytes, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {"hashes": [b64(h) for h in self.hashes]}

    @classmethod
    def from_json(cls, obj: Any, *, source: str = "consistency proof") -> ConsistencyProof:
        """Strict: exactly the key ``hashes``, canonical base64 32-byte hashes."""
        return cls(_json_hashes(_json_object(obj, {"hashes"}, source), source))
