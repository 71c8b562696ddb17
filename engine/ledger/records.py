"""What the pipeline hands the ledger to commit: plain data built in worker processes, whatever the backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.errors import LedgerError


def utc_now() -> str:
    """Wall-clock UTC timestamp, ISO 8601 with microseconds (ordering of ledger rows)."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class ConflictError(LedgerError):
    """A plate's results were computed against a ledger state that changed meanwhile; recompute."""


@dataclass
class SignedResult:
    """One signed result version ready to be committed (plain data, built in a worker)."""

    id: str
    version: int
    specimen_id: str
    status: str
    run_id: str
    payload: str  # canonical JSON text, exactly the bytes the JWS signs
    jws: str
    hc1: str
    supersedes: int | None = None  # version of the same id this one replaces
    reason: str | None = None


@dataclass
class PlateCommit:
    """Everything one plate decides, written in one transaction by :meth:`Ledger.commit_plate`."""

    run_id: str
    source: str
    metadata: dict[str, str]
    wells: int
    pool_decisions: list[dict[str, Any]] = field(default_factory=list)  # pool_id, well, outcome, evidence
    specimen_decisions: list[dict[str, Any]] = field(default_factory=list)  # specimen_id, outcome, retest, evidence, pool_id
    results: list[SignedResult] = field(default_factory=list)
    #: manifest generation the worker read its person records at; a newer manifest => recompute.
    manifest_generation: int | None = None
