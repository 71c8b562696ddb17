"""The transparency log (issue 18): appending leaves, serving and verifying proofs, signing checkpoints.

ketqua's side is ``signing.merkle`` over its in-memory :class:`~signing.merkle.MemoryHashStore`
(the ledger's table implements the same protocol) and ``signing.checkpoint``.
Baselines, measured in the same run:

* appending: the floor of the work, one SHA-256 leaf hash per leaf (hashlib), no tree;
* serving a proof: what a server without stored subtree hashes does, rehashing the
  whole tree from the stored leaf hashes for every proof (timed for a few proofs, scaled);
* verifying: the same number of bare SHA-256 node hashes a proof costs, no logic;
* checkpoints: raw ECDSA P-256 sign + verify of the same note text.

Leaves are ~1.8 kB, the size of a signed result's JWS compact serialization; one
plate's worth (4,000 distinct leaves) is appended per batch, as the ledger appends
one plate per transaction. Aim (issue 18): log n per proof at millions of leaves.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

import engine.ledger.log as ledger_log
from bench import common
from bench.runner import Context, Figure, compare, stage
from engine.ledger.records import PlateCommit, SignedResult
from engine.ledger.sqlite import Ledger

#: Bytes of one leaf: a signed result's JWS compact serialization is 1.7–1.8 kB.
LEAF_BYTES = 1800
#: Leaves appended per batch (about one 384-well plate of 10-specimen pools).
BATCH = 4000


def _plate_leaves(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    head = b"eyJhbGciOiJFUzI1NiIsImtpZCI6ImtldHF1YSJ9."
    return [head + rng.randbytes((LEAF_BYTES - len(head)) * 3 // 4).hex().encode()[: LEAF_BYTES - len(head)] for _ in range(BATCH)]


class SqliteHashStore:
    """The :class:`signing.merkle.HashStore` protocol over one SQLite table, as the ledger would hold it.

    Bench-only (the ledger owns its connections): it measures what proofs cost
    when every node read is a query, one query per proof.
    """

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS log_nodes (level INTEGER NOT NULL, idx INTEGER NOT NULL, "
                        "hash BLOB NOT NULL, PRIMARY KEY (level, idx)) WITHOUT ROWID")

    def tree_size(self) -> int:
        row = self.db.execute("SELECT MAX(idx) + 1 FROM log_nodes WHERE level = 0").fetchone()
        return int(row[0] or 0)

    def read(self, ids: Sequence[tuple[int, int]]) -> list[bytes]:
        if not ids:
            return []
        # An OR of (level, idx) pairs is a MULTI-INDEX OR of primary-key searches; the row-value
        # form ``(level, idx) IN (VALUES …)`` scans the whole table in SQLite 3.4x (20 ms at 10^5 leaves).
        where = " OR ".join(["(level = ? AND idx = ?)"] * len(ids))
        args = [x for node in ids for x in node]
        found = {(lvl, i): h for lvl, i, h in self.db.execute(f"SELECT level, idx, hash FROM log_nodes WHERE {where}", args)}
        return [found[node] for node in ids]

    def write(self, level: int, start: int, hashes: bytes) -> None:
        self.db.executemany("INSERT INTO log_nodes (level, idx, hash) VALUES (?, ?, ?)",
                            ((level, start + j, hashes[32 * j : 32 * j + 32]) for j in range(len(hashes) // 32)))


def _scale_baseline(fig: Figure, amount: int, timed: int) -> Figure:
    """The baseline timed ``timed`` items of the ``amount`` the candidate did: scale its times to the same work."""
    if fig.baseline is not None:
        factor = amount / timed
        fig.baseline.wall = [w * factor for w in fig.baseline.wall]
        fig.baseline.cpu = [c * factor for c in fig.baseline.cpu]
        fig.extra["baseline_items_timed"] = timed
    return fig


@stage(
    "transparency",
    "Merkle log: append, inclusion/consistency proofs, checkpoints (issue 18)",
    requires=("signing.merkle", "signing.checkpoint"),
    order=35,
)
def run(ctx: Context) -> list[Figure]:
    from signing import checkpoint as cpmod
    from signing.merkle import (
        MemoryHashStore,
        MerkleLog,
        consistency_proof,
        inclusion_proof,
        leaf_hash,
        verify_consistency,
        verify_inclusion,
    )

    n = int(ctx.scale(100_000, 1_000_000))
    batches = n // BATCH
    n = batches * BATCH
    plate = ctx.cached("transparency-plate", lambda: _plate_leaves(ctx.seed))
    sha256 = hashlib.sha256
    built: list[MerkleLog] = []

    def append() -> None:
        log = MerkleLog(MemoryHashStore())
        for _ in range(batches):
            log.append(plate)
        built[:] = [log]

    def hash_leaves_only() -> None:
        for _ in range(batches):
            [sha256(b"\x00" + leaf).digest() for leaf in plate]

    figures = [
        compare(f"append {n:,} leaves of {LEAF_BYTES} B, {BATCH:,} per batch", unit="leaves", amount=n,
                candidate=append, baseline=hash_leaves_only, repeats=ctx.heavy_repeats, warmup=False,
                candidate_label="MerkleLog.append (leaf hashes + tree nodes + store writes)",
                baseline_label="hashlib SHA-256 leaf hash per leaf, no tree", aim="no O(n) work per append"),
    ]
    log = built[0]
    store = log.store
    assert isinstance(store, MemoryHashStore)
    root = log.root()
    rng = random.Random(ctx.seed)
    k = int(ctx.scale(5_000, 20_000))
    indexes = [rng.randrange(n) for _ in range(k)]
    old_sizes = [rng.randrange(1, n) for _ in range(k)]
    # The stored leaf hashes a store-less server would rehash for every proof.
    level0 = b"".join(leaf_hash(leaf) for leaf in plate) * batches

    def rehash_root() -> bytes:
        # Level by level, an unpaired last node moving up unchanged: the same tree as RFC 9162's split.
        run = level0
        while len(run) > 32:
            odd = run[-32:] if (len(run) // 32) % 2 else b""
            even = run[: len(run) - len(odd)]
            run = b"".join([sha256(b"\x01" + even[i : i + 64]).digest() for i in range(0, len(even), 64)]) + odd
        return run

    assert rehash_root() == root, "the naive baseline must compute the same root"
    reads_before = store.reads
    proofs = [inclusion_proof(store, i, n) for i in indexes[:1000]]
    reads_per_proof = (store.reads - reads_before) / 1000
    timed = int(ctx.scale(1, 2))

    def serve_inclusion() -> None:
        for i in indexes:
            inclusion_proof(store, i, n)

    def serve_consistency() -> None:
        for m in old_sizes:
            consistency_proof(store, m, n)

    def naive(count: int) -> Callable[[], None]:
        def go() -> None:
            for _ in range(count):
                rehash_root()
        return go

    figures.append(_scale_baseline(compare(
        f"serve inclusion proofs at {n:,} leaves", unit="proofs", amount=k, candidate=serve_inclusion, baseline=naive(timed),
        repeats=ctx.repeats, candidate_label="signing.merkle.inclusion_proof from stored subtree hashes",
        baseline_label="rehash the tree from the leaf hashes per proof", aim="log n per proof",
        extra={"node_reads_per_proof": reads_per_proof, "hashes_per_proof": len(proofs[0])}), k, timed))
    figures.append(_scale_baseline(compare(
        f"serve consistency proofs M→{n:,}", unit="proofs", amount=k, candidate=serve_consistency, baseline=naive(timed),
        repeats=ctx.repeats, candidate_label="signing.merkle.consistency_proof from stored subtree hashes",
        baseline_label="rehash the tree from the leaf hashes per proof", aim="log n per proof"), k, timed))

    sqlite_path = ctx.scratch / "transparency-nodes.sqlite3"
    sqlite_path.unlink(missing_ok=True)
    table = SqliteHashStore(sqlite_path)

    def append_sqlite() -> None:
        sql_log = MerkleLog(table)
        for _ in range(batches):
            table.db.execute("BEGIN")
            sql_log.append(plate)
            table.db.execute("COMMIT")

    def append_memory() -> None:
        mem = MerkleLog(MemoryHashStore())
        for _ in range(batches):
            mem.append(plate)

    # One timed build only: the table is append-only, so a second build would need a fresh file.
    figures.append(compare(
        f"append {n:,} leaves into an SQLite table (one transaction per batch)", unit="leaves", amount=n,
        candidate=append_sqlite, baseline=append_memory, repeats=1, warmup=False,
        candidate_label="MerkleLog over a WITHOUT ROWID (level, idx) → hash table, WAL",
        baseline_label="MerkleLog over MemoryHashStore"))
    figures[-1].extra["table_mb"] = round(sqlite_path.stat().st_size / 1e6, 1)
    assert MerkleLog(table).root() == root

    def serve_sqlite() -> None:
        for i in indexes:
            inclusion_proof(table, i, n)

    figures.append(compare(
        f"serve inclusion proofs from the SQLite table at {n:,} leaves", unit="proofs", amount=k, candidate=serve_sqlite,
        baseline=serve_inclusion, repeats=ctx.repeats, candidate_label="inclusion_proof, one SELECT (OR of primary-key pairs) per proof",
        baseline_label="inclusion_proof from MemoryHashStore", aim="log n per proof"))
    table.db.close()

    leaf_of = {i: leaf_hash(plate[i % BATCH]) for i in indexes}
    inc = [(leaf_of[i], i, inclusion_proof(store, i, n)) for i in indexes]
    con = [(m, consistency_proof(store, m, n), log.root_at(m)) for m in old_sizes[: k // 4]]

    def verify_inc() -> None:
        for lh, i, proof in inc:
            verify_inclusion(lh, i, n, proof, root)

    def bare_inc() -> None:
        for lh, _, proof in inc:
            r = lh
            for p in proof:
                r = sha256(b"\x01" + p + r).digest()

    def verify_con() -> None:
        for m, proof, old in con:
            verify_consistency(m, n, proof, old, root)

    def bare_con() -> None:
        for _, proof, old in con:
            fr = sr = old
            for p in proof:
                fr = sha256(b"\x01" + p + fr).digest()
                sr = sha256(b"\x01" + p + sr).digest()

    figures.append(compare(
        f"verify inclusion proofs at {n:,} leaves", unit="proofs", amount=len(inc), candidate=verify_inc, baseline=bare_inc,
        repeats=ctx.repeats, candidate_label="signing.merkle.verify_inclusion (RFC 9162 §2.1.3.2)",
        baseline_label="bare SHA-256 over the proof's hashes"))
    figures.append(compare(
        f"verify consistency proofs M→{n:,}", unit="proofs", amount=len(con), candidate=verify_con, baseline=bare_con,
        repeats=ctx.repeats, candidate_label="signing.merkle.verify_consistency (RFC 9162 §2.1.4.2)",
        baseline_label="bare SHA-256 ×2 over the proof's hashes"))

    keys = common.keys(ctx)
    origin = "bench.ketqua.example/log"
    signer = cpmod.checkpoint_signer(origin, keys.signer)
    verifier = signer.verifier
    heads = [cpmod.Checkpoint(origin, m, log.root_at(m)) for m in old_sizes[: int(ctx.scale(200, 1000))]]
    texts = [h.text().encode() for h in heads]
    ecdsa = common.raw_ecdsa()
    public = keys.private_key.public_key()
    verify_alg = ec.ECDSA(hashes.SHA256())

    def sign_open() -> None:
        for h in heads:
            cpmod.open_checkpoint(cpmod.sign_checkpoint(h, signer), [verifier], origin=origin)

    def raw_sign_verify() -> None:
        for t in texts:
            public.verify(keys.private_key.sign(t, ecdsa), t, verify_alg)

    figures.append(compare(
        "sign + open a checkpoint (ECDSA P-256 signed note)", unit="checkpoints", amount=len(heads), candidate=sign_open,
        baseline=raw_sign_verify, repeats=ctx.repeats, candidate_label="sign_checkpoint + open_checkpoint",
        baseline_label="cryptography ECDSA P-256 sign + verify of the note text", aim="≤ 2× raw ECDSA"))
    figures.append(_ledger_commit_figure(ctx, plate))
    return figures


def _ledger_commit_figure(ctx: Context, plate: list[bytes]) -> Figure:
    """The log's cost on the commit path: Ledger.commit_plate with its leaves vs the same commits without them."""
    plates = int(ctx.scale(5, 25))
    results = [
        [SignedResult(f"kq{p}-{i}", 1, f"S{p}-{i}", "NEGATIVE", f"{p:064d}", "{}", leaf.decode(), "HC1:x") for i, leaf in enumerate(plate)]
        for p in range(plates)
    ]
    runs = [0]

    def commits() -> None:
        runs[0] += 1
        path = ctx.scratch / f"transparency-ledger-{runs[0]}.sqlite3"
        with Ledger.open(path) as ledger:
            for p, rows in enumerate(results):
                ledger.receive_file(f"{p:064d}", f"{p}.csv", 1, "analyzer")
                ledger.commit_plate(PlateCommit(run_id=f"{p:064d}", source=f"{p}.csv", metadata={}, wells=len(rows), results=rows))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    def without_log() -> None:
        real = ledger_log.append_leaves
        count = [0]

        def no_leaves(conn: sqlite3.Connection, jws: Sequence[str]) -> int:
            first = count[0]
            count[0] += len(jws)
            return first

        ledger_log.append_leaves = no_leaves  # the same commits, leaf indexes handed out without the tree
        try:
            commits()
        finally:
            ledger_log.append_leaves = real

    n = plates * len(plate)
    return compare(
        f"ledger commit of {plates} plates × {len(plate):,} signed results (synchronous=FULL)", unit="results", amount=n,
        candidate=commits, baseline=without_log, repeats=ctx.repeats, warmup=False,
        candidate_label="Ledger.commit_plate with the leaves and subtree hashes in the same transaction",
        baseline_label="the same commits with engine.ledger.log.append_leaves stubbed (no tree)",
        aim="small beside signing (~100 µs/result for JWS + HC1)")

