"""The pull client's checks of a lab's transparency log: pure functions over what the puller fetched.

The feed holds every leaf in order, so the client hashes the JWSs it pulls and
keeps the frontier of its own tree (:class:`signing.merkle.CompactRange`). A
batch is accepted when the lab's signed checkpoint (1) verifies with the lab's
trusted key, (2) extends the last checkpoint the client trusted, and (3) has
the client's own tree as its prefix (one consistency proof from the client's
size), which proves the inclusion of every result of the batch at once.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence

from cryptography import x509

from engine.errors import SigningError, VerificationError
from signing.checkpoint import (
    Checkpoint,
    NoteVerifier,
    open_checkpoint,
    parse_note,
    verify_extends,
)
from signing.errors import ForkDetected, ProofError
from signing.merkle import CompactRange, leaf_hashes, verify_consistency

#: Fetches the consistency proof between two sizes from the lab.
ConsistencyFetch = Callable[[int, int], Awaitable[tuple[bytes, ...]]]


def batch_leaf_hashes(lines: Sequence[bytes], start: int) -> bytes:
    """Leaf hashes of feed lines that must be leaves ``start``, ``start + 1``, …; ``log-gap`` otherwise."""
    jws: list[bytes] = []
    for k, line in enumerate(lines):
        item = json.loads(line)
        index = item.get("log_index")
        if index != start + k:
            raise VerificationError(
                f"result {item.get('id')} (seq {item.get('seq')}) is leaf {index!r} of the transparency log, "
                f"expected leaf {start + k}: the feed skips or reorders logged results",
                reason="log-gap",
            )
        jws.append(str(item["jws"]).encode("utf-8"))
    return leaf_hashes(jws)


def open_lab_checkpoint(note: str, signers: Sequence[x509.Certificate], trusted_note: str | None, *, source: str) -> Checkpoint:
    """Verify a checkpoint note with the lab's signer certificates; its origin pinned by the trusted one, if any."""
    origin = (trusted_note or note).split("\n", 1)[0]
    verifiers = []
    for cert in signers:
        try:
            verifiers.append(NoteVerifier.from_public_key(origin, cert.public_key()))
        except (VerificationError, SigningError):
            continue  # an RSA key cannot sign checkpoints; another key may
    if not verifiers:
        raise VerificationError(f"{source}: no trusted key of the lab can verify its checkpoints", reason="unknown-key")
    try:
        return open_checkpoint(note, verifiers, origin=origin, source=source)
    except VerificationError as exc:
        raise VerificationError(f"the lab's checkpoint does not verify with its trusted key: {exc}", reason=exc.reason) from exc


async def check_head(cp: Checkpoint, trusted_note: str | None, frontier: CompactRange, consistency: ConsistencyFetch) -> None:
    """Check that ``cp`` extends the trusted checkpoint and that the client's tree (``frontier``) is its prefix.

    Raises :class:`ForkDetected` when either fails.
    """
    if trusted_note is not None:
        trusted = Checkpoint.from_text(parse_note(trusted_note, source="trusted checkpoint").text)
        proof: tuple[bytes, ...] = ()
        if 0 < trusted.size < cp.size:
            proof = await consistency(trusted.size, cp.size)
        verify_extends(trusted, cp, proof)
    if frontier.size > cp.size:
        raise ForkDetected(
            f"log {cp.origin!r}: the feed gave {frontier.size} logged results but the lab's checkpoint signs only {cp.size}"
        )
    if not frontier.size:  # every tree extends the empty one
        return
    try:
        own = () if frontier.size == cp.size else await consistency(frontier.size, cp.size)
        verify_consistency(frontier.size, cp.size, own, frontier.root(), cp.root_hash)
    except ProofError as exc:
        raise ForkDetected(
            f"log {cp.origin!r}: the {frontier.size} results pulled are not the first leaves of the lab's signed tree "
            f"of {cp.size} ({exc}); the lab changed a result it had already published, or serves two histories"
        ) from exc
