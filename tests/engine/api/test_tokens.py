"""Tests of engine.api.tokens and `ketqua tokens`: hashed storage, scopes, revocation, authentication."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.api.tokens import (
    TokenCache,
    add_token,
    hash_token,
    list_tokens,
    revoke_token,
    token_id,
)
from engine.cli.main import main
from engine.errors import ApiError


@pytest.fixture()
def ledger_path(tmp_path: Path) -> Path:
    """A ledger file in a fresh data folder."""
    return tmp_path / "ledger.sqlite3"


def test_token_is_stored_only_as_its_hash(ledger_path: Path) -> None:
    """The database holds SHA-256 of the token, and the token text appears nowhere in it."""
    token, info = add_token(ledger_path, "national-platform", ["read:results"])
    conn = sqlite3.connect(ledger_path)
    rows = conn.execute("SELECT id, name, token_hash, scopes FROM api_tokens").fetchall()
    conn.close()
    assert rows == [(info.id, "national-platform", hash_token(token), "read:results")]
    secret = token[len("kq_0123456789abcdef_"):]
    assert secret.encode() not in ledger_path.read_bytes()


def test_token_has_256_bit_secret_and_names_its_row(ledger_path: Path) -> None:
    """A token is kq_<id>_<43 base64url chars> (256 bits), and its id is the row id."""
    token, info = add_token(ledger_path, "n", ["read:results"])
    assert token_id(token) == info.id
    assert len(token[len("kq_0123456789abcdef_"):]) == 43
    assert token != add_token(ledger_path, "n", ["read:results"])[0]


def test_unknown_scope_and_missing_name_are_refused(ledger_path: Path) -> None:
    """Scopes outside the known set and empty names are errors that list what is accepted."""
    with pytest.raises(ApiError, match="read:results"):
        add_token(ledger_path, "x", ["write:everything"])
    with pytest.raises(ApiError, match="--name"):
        add_token(ledger_path, "  ", ["read:results"])


def test_cache_authenticates_valid_token_with_scopes(ledger_path: Path) -> None:
    """A valid token authenticates as its id, name and scopes; a token with one changed character does not."""
    token, info = add_token(ledger_path, "np", ["read:results", "read:metrics"])
    cache = TokenCache(ledger_path, refresh_s=60)
    principal = cache.authenticate(token)
    assert principal is not None and principal.token_id == info.id
    assert principal.scopes == {"read:results", "read:metrics"}
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert cache.authenticate(tampered) is None
    assert cache.authenticate("") is None
    assert cache.authenticate("Bearer " + token) is None


def test_new_token_works_at_once_and_revoked_token_stops(ledger_path: Path) -> None:
    """A token added after the cache loaded is found immediately; after revocation it fails once the cache refreshes."""
    add_token(ledger_path, "first", ["read:results"])
    cache = TokenCache(ledger_path, refresh_s=0.0)
    assert cache.authenticate("kq_0000000000000000_" + "A" * 43) is None
    token, info = add_token(ledger_path, "second", ["read:results"])
    assert cache.authenticate(token) is not None
    revoked = revoke_token(ledger_path, info.id)
    assert revoked.revoked_at is not None
    assert cache.authenticate(token) is None
    # revoking again keeps the first revocation time
    assert revoke_token(ledger_path, info.id).revoked_at == revoked.revoked_at


def test_revoking_unknown_id_is_an_error(ledger_path: Path) -> None:
    """Revoking an id that does not exist says how to find the ids."""
    with pytest.raises(ApiError, match="tokens list"):
        revoke_token(ledger_path, "0123456789abcdef")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_arbitrary_text_never_authenticates(text: str) -> None:
    """No arbitrary string (including ones shaped like tokens) authenticates against a fresh token table."""
    cache = _Shared.cache
    assert cache.authenticate(text) is None


class _Shared:
    """Holds one cache over a ledger with one real token, shared by the property test."""

    cache: TokenCache


@pytest.fixture(autouse=True, scope="module")
def _property_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Builds the shared cache for the property test."""
    path = tmp_path_factory.mktemp("tokens") / "ledger.sqlite3"
    add_token(path, "real", ["read:results"])
    _Shared.cache = TokenCache(path, refresh_s=60)


def test_cli_add_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ketqua tokens add` prints the token once; `list` shows id, name, scopes but never the token; `revoke` marks it."""
    data = str(tmp_path / "data")
    assert main(["tokens", "add", "--data", data, "--name", "np", "--scope", "read:results", "--scope", "read:metrics"]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith("kq_") and "not shown again" in out.err
    assert main(["tokens", "list", "--data", data, "--json"]) == 0
    listed = capsys.readouterr().out
    row = json.loads(listed)
    assert row["name"] == "np" and row["scopes"] == ["read:results", "read:metrics"] and row["revoked_at"] is None
    assert token not in listed and token[len("kq_0123456789abcdef_"):] not in listed
    assert main(["tokens", "revoke", "--data", data, row["id"]]) == 0
    capsys.readouterr()
    assert [t.revoked_at is not None for t in list_tokens(Path(data) / "ledger.sqlite3")] == [True]
    assert main(["tokens", "revoke", "--data", data, "ffffffffffffffff"]) == 1
