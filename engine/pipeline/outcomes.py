"""The pipeline's outcome vocabulary: what a worker found, what committing it did, why a file was refused.

Enums rather than bare strings, so a misspelt kind fails where it is written and
the advice a quarantine report gives is looked up with exactly the key the
worker set. They are ``StrEnum``: the ledger's events, the logs and the metrics
keep the plain words they always had.
"""

from __future__ import annotations

from enum import StrEnum


class PlateKind(StrEnum):
    """What a worker found for one analyzer file."""

    COMMIT = "commit"  # decided and signed: commit it
    HELD = "held"  # decided, signed nothing: the plate waits for a reviewer's release ([results] release = "review")
    WAITING = "waiting"  # some pools are in no manifest yet
    BAD = "bad"  # the file itself is wrong: quarantine it
    TRANSIENT = "transient"  # the machine failed (I/O, a token): try again later


class Applied(StrEnum):
    """What committing a worker's outcome did (:meth:`engine.pipeline.engine.Engine.apply`)."""

    DONE = "done"
    WAITING = "waiting"
    RETRY = "retry"
    BAD = "bad"
    CONFLICT = "conflict"  # the ledger moved on meanwhile: recompute the plate against it


class Refusal(StrEnum):
    """Why a file was quarantined; each has its advice for the person who dropped it."""

    PARSE = "parse"
    TRUNCATED = "truncated"
    ASSAY = "assay"
    CONTROLS = "controls"
    DECODE = "decode"
    MANIFEST = "manifest"
    UNKNOWN_POOLS = "unknown_pools"


ADVICE: dict[Refusal, str] = {
    Refusal.PARSE: "Export the run again from the instrument software (Results export, text/CSV), then drop the new file in the inbox.",
    Refusal.ASSAY: "Check that the run used a supported assay (see `ketqua formats` and the profiles), or set [assay] default in ketqua.toml.",
    Refusal.CONTROLS: "The run's controls failed, so none of its results can be released. Repeat the run with fresh controls, then drop the new export in the inbox.",
    Refusal.DECODE: "The pools on the plate do not match the manifest's design. Check the manifest for this plate, correct it and drop it in the inbox again.",
    Refusal.MANIFEST: "Correct the manifest at the line and column named above (save as CSV UTF-8) and drop the corrected file in the inbox.",
    Refusal.TRUNCATED: "The file appears cut short (the export or the copy stopped before the end, or it is still being copied): nothing from it was signed. Export the run again from the instrument software, or copy the whole file again, then drop the new file in the inbox.",
    Refusal.UNKNOWN_POOLS: "No manifest names these pools. Drop the pool manifest for this plate in the inbox; if the pool names are wrong, export the run again with the right sample names.",
}


def advice(kind: str) -> str:
    """What to do about a refusal of ``kind``; a general line for a kind this version does not know (old ledgers)."""
    try:
        return ADVICE[Refusal(kind)]
    except ValueError:
        return "Correct the file and drop it in the inbox again."


def refusal_report(name: str, received_at: str, sha256: str, error: str, kind: str) -> str:
    """The ``.error.txt`` beside a quarantined copy: the file, the problem at its line and field, what to do."""
    return (
        f"File: {name}\n"
        f"Received: {received_at} (SHA-256 {sha256})\n"
        f"Problem ({kind}):\n  " + error.replace("\n", "\n  ") + "\n"
        f"What to do: {advice(kind)}\n"
        f"Nothing from this file was signed. The original bytes stay in archive/{sha256}.\n"
    )
