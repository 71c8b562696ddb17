"""The lab's signed tree heads: which log a checkpoint names, and signing one for the ledger's current size.

The origin line (also the note's key name) is derived from ``[lab] id``:
``ketqua/<lab id>/results``, the id percent-encoded where a note key name
cannot hold it (spaces, ``+``, ``%`` and anything outside printable ASCII),
e.g. ``ketqua/VN-79-PASTEUR/results``. One lab, one log, one origin, stable as
long as the lab id is: a relying party pins it with the first checkpoint it trusts.

With a TSA configured (``[signing] tsa_url`` or ``tsa``), each checkpoint also gets
one RFC 3161 time-stamp over its note (:func:`stamp_checkpoint`).

Checkpoints are signed off the commit path: the API signs one lazily when it is
asked and the tree grew since the newest stored one, and keeps every note it
gave out in the ledger (``log_checkpoints``).
"""

from __future__ import annotations

import hashlib
import urllib.parse

from engine.config import load_config
from engine.datadir import DataDir
from engine.ledger.sqlite import Ledger
from signing.checkpoint import Checkpoint, checkpoint_signer, sign_checkpoint
from signing.signer import Signer
from signing.timestamp import TimeStamperLike, fetch_token

#: Characters kept as they are in the origin (RFC 3986 unreserved plus a few sub-delims).
_SAFE = "-._~!$&'()*,;=:@"


def log_origin(lab_id: str) -> str:
    """The checkpoint origin of the lab's results log (see the module docstring for the rule)."""
    return f"ketqua/{urllib.parse.quote(lab_id, safe=_SAFE)}/results"


def data_log_origin(data: DataDir) -> str:
    """The origin of the log kept in ``data`` (from ``[lab] id`` of its ``ketqua.toml``)."""
    return log_origin(load_config(data).lab.id)


def sign_current_checkpoint(ledger: Ledger, signer: Signer, origin: str, timestamper: TimeStamperLike | None = None) -> str:
    """The signed note for the log's current size: the stored one when the tree has not grown, else a new one, kept.

    ``ledger`` must be writable (the new note is stored before it is returned,
    so every checkpoint the lab ever gave out is in its own ledger).
    """
    size = ledger.log_size()
    latest = ledger.latest_checkpoint()
    if latest is not None and latest["size"] == size and str(latest["note"]).startswith(origin + "\n"):
        note = str(latest["note"])
    else:
        root = ledger.log_root(size)
        note = sign_checkpoint(Checkpoint(origin, size, root), checkpoint_signer(origin, signer)).decode("utf-8")
        note = ledger.store_checkpoint(size, root, note)
    if timestamper is not None:
        stamp_checkpoint(ledger, size, note, timestamper)
    return note


def stamp_checkpoint(ledger: Ledger, size: int, note: str, timestamper: TimeStamperLike) -> bytes:
    """The RFC 3161 token over SHA-256 of the note's bytes, fetched once per checkpoint and kept.

    One time-stamp per checkpoint instead of one per result: a plate of thousands
    of results costs one TSA request, and every result's time is proven through
    its inclusion in a stamped checkpoint.
    """
    stored = ledger.checkpoint_timestamp(size)
    if stored is not None and stored[2] is not None:
        return stored[2]
    token = fetch_token(timestamper, hashlib.sha256(note.encode("utf-8")).digest())
    ledger.store_timestamp(size, token)
    return token
