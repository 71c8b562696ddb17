"""Bearer tokens for the pull API, stored only as hashes in the ledger's ``api_tokens`` table.

A token is ``kq_<id>_<secret>``: ``id`` (8 hex bytes) names the row, ``secret``
is 256 random bits in base64url. Only SHA-256 of the whole token is stored. A
single fast hash is enough here (unlike passwords): the secret has 256 bits of
entropy, so nothing can be guessed faster than brute force over 2^256. The id
prefix lets the server find the row without looking the hash up by value, and
the hash is then compared in constant time (:func:`hmac.compare_digest`).

Scopes (space-separated in the table, as in OAuth 2.0):

- ``read:results``  the result feed, single results, certificates, FHIR, keys, bulk export
- ``read:metrics``  ``/v1/metrics`` (for the monitoring system, which need not see results)

The server keeps an in-memory copy (:class:`TokenCache`) refreshed every second
and on every unknown id, so a revoked token stops working within a second
without a database read per request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from engine.errors import ApiError, ConfigError
from engine.ledger.sqlite import Ledger

SCOPES: dict[str, str] = {
    "read:results": "read the result feed, single results, certificates, FHIR bundles, signing keys, bulk exports",
    "read:metrics": "read /v1/metrics (Prometheus)",
}

_TOKEN = re.compile(r"^kq_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class TokenInfo:
    """One token row as shown to people: never the token, never its hash."""

    id: str
    name: str
    scopes: tuple[str, ...]
    created_at: str
    revoked_at: str | None

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "scopes": list(self.scopes),
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }


def hash_token(token: str) -> str:
    """Hex SHA-256 of the token text: what the table stores."""
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def token_id(token: str) -> str | None:
    """The row id a well-formed token names, or None when the text is not a ketqua token."""
    m = _TOKEN.match(token)
    return m.group(1) if m else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _ledger(ledger_path: str | Path) -> Ledger:
    """The ledger, opened (and migrated, which creates ``api_tokens``) for one token operation."""
    path = Path(ledger_path)
    if not path.parent.exists():
        raise ConfigError(f"data folder {path.parent} does not exist; run `ketqua keys init` or `ketqua run` first")
    return Ledger.open(path)


def _info(row: dict[str, object]) -> TokenInfo:
    return TokenInfo(str(row["id"]), str(row["name"]), tuple(str(row["scopes"]).split()), str(row["created_at"]), row["revoked_at"])  # type: ignore[arg-type]


def _check_scopes(scopes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    if not scopes:
        raise ApiError(f"a token needs at least one scope; known scopes: {', '.join(SCOPES)}")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise ApiError(f"unknown scope(s) {', '.join(unknown)}; known scopes: {', '.join(SCOPES)}")
    return tuple(dict.fromkeys(scopes))


def add_token(ledger_path: str | Path, name: str, scopes: list[str] | tuple[str, ...]) -> tuple[str, TokenInfo]:
    """Create a token; returns ``(token, info)``. The token text exists only in the return value."""
    name = name.strip()
    if not name:
        raise ApiError("a token needs a --name saying who uses it (e.g. 'national-platform')")
    scopes = _check_scopes(scopes)
    ident = secrets.token_hex(8)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
    token = f"kq_{ident}_{secret}"
    created = _now()
    with _ledger(ledger_path) as ledger:
        ledger.insert_token(ident, name, hash_token(token), scopes, created)
    return token, TokenInfo(ident, name, scopes, created, None)


def list_tokens(ledger_path: str | Path) -> list[TokenInfo]:
    """Every token ever issued (revoked ones too, with their revocation time), oldest first."""
    with _ledger(ledger_path) as ledger:
        return [_info(row) for row in ledger.token_rows()]


def revoke_token(ledger_path: str | Path, ident: str) -> TokenInfo:
    """Mark a token revoked (the row stays, for the audit trail). Revoking twice keeps the first time."""
    with _ledger(ledger_path) as ledger:
        ledger.revoke_token(ident, _now())
        rows = ledger.token_rows(ident)
    if not rows:
        raise ApiError(f"no token with id {ident!r}; `ketqua tokens list` shows the ids")
    return _info(rows[0])


@dataclass(frozen=True)
class Principal:
    """Who a request authenticated as: the token's id, name and scopes (the token itself is not kept)."""

    token_id: str
    name: str
    scopes: frozenset[str]


class TokenCache:
    """Authenticates bearer tokens against an in-memory copy of ``api_tokens``.

    Refreshed when older than ``refresh_s`` and whenever a request names an
    unknown id (so a token added a moment ago works at once); unknown-id
    refreshes are limited to one per ``refresh_s`` so garbage tokens cannot
    turn into a database read each.
    """

    def __init__(self, ledger_path: str | Path, refresh_s: float = 1.0) -> None:
        self.ledger_path = Path(ledger_path)
        self.refresh_s = refresh_s
        self._rows: dict[str, tuple[str, str, frozenset[str]]] = {}
        self._loaded_at = -1e18
        self._lock = threading.Lock()
        self._ledger: Ledger | None = None

    def close(self) -> None:
        with self._lock:
            if self._ledger is not None:
                self._ledger.close()
                self._ledger = None

    def _reload(self) -> None:
        if self._ledger is None:
            self._ledger = _ledger(self.ledger_path)
        rows = self._ledger.active_token_hashes()
        self._rows = {r["id"]: (r["token_hash"], r["name"], frozenset(r["scopes"].split())) for r in rows}
        self._loaded_at = time.monotonic()

    def authenticate(self, token: str) -> Principal | None:
        """The principal for a valid, unrevoked token; None otherwise."""
        ident = token_id(token)
        if ident is None:
            return None
        with self._lock:
            age = time.monotonic() - self._loaded_at
            if age >= self.refresh_s or (ident not in self._rows and age >= min(self.refresh_s, 0.05)):
                self._reload()
            row = self._rows.get(ident)
        if row is None:
            return None
        stored_hash, name, scopes = row
        if not hmac.compare_digest(stored_hash.encode(), hash_token(token).encode()):
            return None
        return Principal(ident, name, scopes)
