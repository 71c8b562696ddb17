"""The ledger: the single source of truth for what was received, decided, signed and published.

Owns every table (files, plates, manifests, specimens, results and their
versions, retests, events, API tokens), its schema and migrations. Today one
backend, SQLite under the data folder; other modules reach the store only
through :class:`Ledger`'s methods, never through raw SQL.
"""

from engine.ledger.sqlite import (
    ConflictError,
    Ledger,
    PlateCommit,
    SignedResult,
    utc_now,
)

__all__ = ["ConflictError", "Ledger", "PlateCommit", "SignedResult", "utc_now"]
