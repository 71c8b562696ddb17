"""The hot path of the pull API: feed items assembled as bytes straight from the ledger rows.

The ledger stores each result's canonical JSON payload, its JWS (base64url) and
its HC1 (Base45) as text. An item of the feed is those strings plus a few
small fields, so it is assembled by byte concatenation on a connection whose
``text_factory`` is ``bytes``: no UTF-8 decode/encode round trip, no JSON
parsing or serialising per item. That keeps one stream at ~10^5 items/s.

The rows come from :class:`engine.ledger.feed_rows.FeedRows` (columns
:data:`engine.ledger.schema.FEED_COLUMNS`); ``tests/engine/api/test_api.py`` checks
that its items equal those built from ``Ledger.feed_page``.

Safety: JSON strings are inserted unquoted only when they cannot need
escaping; JWS and HC1 alphabets contain neither ``"`` nor ``\\``, ids are
base32, and this is checked per row (``memchr`` speed). A row that fails the
check takes the slow path through the JSON encoder instead.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as _quote
from pathlib import Path
from typing import Any

from engine.ledger.feed_rows import FeedRows


def _needs_escape(rid: bytes, created: bytes, jws: bytes, hc1: bytes) -> bool:
    """True when a stored string holds '"' or '\\' (all our encoders could ever produce that JSON must escape).

    ``status`` is not checked: the ledger's CHECK constraint limits it to three words.
    """
    return (
        b'"' in jws or b"\\" in jws or b'"' in hc1 or b"\\" in hc1
        or b'"' in rid or b"\\" in rid or b'"' in created or b"\\" in created
    )


def _extend_items(rows: list[tuple[Any, ...]], out: list[bytes], sep: bytes) -> None:
    """Append the byte pieces of each row's item, each followed by ``sep``, to ``out`` (joined once by the caller)."""
    add = out.extend
    for seq, rid, version, status, sup, by, created, payload, jws, hc1, cert, leaf in rows:
        if _needs_escape(rid, created, jws, hc1):
            add((_slow_item((seq, rid, version, status, sup, by, created, payload, jws, hc1, cert, leaf)), sep))
            continue
        v = b"%d" % version
        base = b"/v1/results/" + rid
        add((
            b'{"seq":%d,"log_index":' % seq, b"null" if leaf is None else b"%d" % leaf, b',"id":"', rid, b'","version":', v, b',"status":"', status,
            b'","supersedes":null' if sup is None else b'","supersedes":{"id":"%s","version":%d}' % (rid, sup),
            b',"superseded_by":null,"created_at":"' if by is None else b',"superseded_by":%d,"created_at":"' % by,
            created, b'","payload":', payload, b',"jws":"', jws, b'","hc1":"', hc1,
            b'","links":{"self":"', base, b"?version=", v, b'","fhir":"', base, b"/fhir?version=", v,
            b'"}}' if cert is None else b'","certificate":"' + base + b"/certificate.pdf?version=" + v + b'"}}',
            sep,
        ))


def _item(row: tuple[Any, ...]) -> bytes:
    """One item (a JSON object, no separator) from a row of :data:`engine.ledger.schema.FEED_COLUMNS` read as bytes."""
    out: list[bytes] = []
    _extend_items([row], out, b"")
    return b"".join(out)


def _slow_item(row: tuple[Any, ...]) -> bytes:
    seq, rid, version, status, sup, by, created, payload, jws, hc1, cert, leaf = row
    d = lambda b: b.decode("utf-8")  # noqa: E731
    return item_json(
        {"seq": seq, "log_index": leaf, "id": d(rid), "version": version, "status": d(status),
         "supersedes": None if sup is None else {"id": d(rid), "version": sup}, "superseded_by": by,
         "created_at": d(created), "payload": d(payload), "jws": d(jws), "hc1": d(hc1),
         "certificate": None if cert is None else d(cert)}
    ).encode("utf-8")


def item_json(row: dict[str, Any]) -> str:
    """One item from a ``Ledger.feed_page`` / ``get_result`` dict (reference form of the byte path).

    ``payload`` is inserted verbatim: it is the canonical JSON the JWS signs,
    so a consumer may compare it byte for byte with the JWS payload.
    ``log_index`` is the result's leaf in the transparency log (the leaf is the
    JWS, so the index stays outside the signed payload).
    """
    rid = row["id"]
    version = int(row["version"])
    sup = row["supersedes"]
    sup_text = "null" if sup is None else f'{{"id":{_quote(sup["id"])},"version":{int(sup["version"])}}}'
    by = row.get("superseded_by")
    base = "/v1/results/" + _quote(rid)[1:-1]
    cert = f',"certificate":"{base}/certificate.pdf?version={version}"' if row.get("certificate") else ""
    leaf = row.get("log_index")
    return (
        f'{{"seq":{int(row["seq"])},"log_index":{"null" if leaf is None else int(leaf)},"id":{_quote(rid)},"version":{version},"status":{_quote(row["status"])},'
        f'"supersedes":{sup_text},"superseded_by":{"null" if by is None else int(by)},'
        f'"created_at":{_quote(row["created_at"])},"payload":{row["payload"]},"jws":{_quote(row["jws"])},'
        f'"hc1":{_quote(row["hc1"])},"links":{{"self":"{base}?version={version}",'
        f'"fhir":"{base}/fhir?version={version}"{cert}}}}}'
    )


class FeedReader:
    """Feed items as bytes, assembled from the ledger's byte rows (:class:`engine.ledger.feed_rows.FeedRows`)."""

    def __init__(self, ledger_path: str | Path) -> None:
        self.rows = FeedRows(ledger_path)

    def close(self) -> None:
        self.rows.close()

    def last_seq(self) -> int:
        """Highest committed seq (0 when empty)."""
        return self.rows.last_seq()

    def upper_bound(self, after: int, limit: int) -> int:
        """The highest seq a page of ``limit`` items after ``after`` may hold (see :meth:`FeedRows.upper_bound`)."""
        return self.rows.upper_bound(after, limit)

    def page(self, after: int, upto: int, limit: int, sep: bytes = b"\n") -> tuple[bytes, int, int]:
        """Items for ``after < seq ≤ upto`` (at most ``limit``), each followed by ``sep``, as one bytes object.

        Returns ``(bytes, count, last seq included)``; ``last`` is ``after`` when there is none.
        """
        rows = self.rows.between(after, upto, limit)
        if not rows:
            return b"", 0, after
        out: list[bytes] = []
        _extend_items(rows, out, sep)
        return b"".join(out), len(rows), int(rows[-1][0])

    def items(self, after: int, upto: int, limit: int) -> tuple[list[bytes], int]:
        """Items as separate JSON byte strings (for callers that need them one by one, e.g. export files)."""
        rows = self.rows.between(after, upto, limit)
        return [_item(row) for row in rows], (int(rows[-1][0]) if rows else after)

    def one(self, rid: str, version: int | None) -> bytes | None:
        """The item of one result version (the latest when ``version`` is None), or None."""
        row = self.rows.one(rid, version)
        return None if row is None else _item(row)


def loads_items(ndjson: bytes) -> list[dict[str, Any]]:
    """Parse NDJSON item bytes (tests and small tools)."""
    return [json.loads(line) for line in ndjson.splitlines() if line.strip()]
