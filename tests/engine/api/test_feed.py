"""The feed's hot path (engine.api.feed): items assembled as bytes equal the ledger's reference items."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from engine.api.feed import FeedReader, item_json, loads_items
from engine.ledger import Ledger
from tests.engine.api.api_world import commit, make_world, signed_plate, superseding_plate


def test_byte_feed_equals_the_ledger_reference_items(tmp_path: Path) -> None:
    """FeedReader's byte-assembled items equal item_json over Ledger.feed_page rows (versions, certificates included)."""
    w = make_world(tmp_path)
    commit(w, signed_plate(w, 1, 6))
    with Ledger.open(w.ledger_path) as ledger:
        first = [json.loads(item_json(r)) for r in ledger.feed_page(0, 6)]
        ledger.set_certificates([(first[0]["id"], 1, str(w.data.certificates / "a.pdf"))])
    commit(w, superseding_plate(w, 2, first[:2]))
    reader = FeedReader(w.ledger_path)
    try:
        items, last = reader.items(0, 100, 100)
        with Ledger.open(w.ledger_path) as ledger:
            reference = [json.loads(item_json(r)) for r in ledger.feed_page(0, 100)]
        assert last == 8 and [json.loads(i) for i in items] == reference
        assert reader.page(0, 100, 100) == (b"\n".join(items) + b"\n", 8, 8)
        assert reader.page(2, 5, 100, b",") == (b",".join(items[2:5]) + b",", 3, 5)
        assert reference[0]["links"]["certificate"].endswith("/certificate.pdf?version=1")
        assert reference[0]["superseded_by"] == 2 and reference[6]["supersedes"] == {"id": first[0]["id"], "version": 1}
        assert json.loads(reader.one(first[0]["id"], None) or b"null") == reference[6]
        assert reader.one(first[0]["id"], 9) is None
    finally:
        reader.close()


def test_row_needing_json_escapes_takes_the_safe_path(tmp_path: Path) -> None:
    """A stored field holding a quote or backslash is JSON-escaped, so the item stays valid JSON."""
    w = make_world(tmp_path)
    commit(w, signed_plate(w, 1, 2))
    conn = sqlite3.connect(w.ledger_path)
    conn.execute("""UPDATE results SET created_at='2026-11-29T00:00:00Z "quoted" \\ back' WHERE seq=1""")
    conn.commit()
    conn.close()
    reader = FeedReader(w.ledger_path)
    try:
        items, _ = reader.items(0, 2, 2)
    finally:
        reader.close()
    assert json.loads(items[0])["created_at"] == '2026-11-29T00:00:00Z "quoted" \\ back'
    assert json.loads(items[1])["seq"] == 2


def test_upper_bound_never_passes_what_is_committed(tmp_path: Path) -> None:
    """A page's bound is the limit-th seq after the cursor, or the last committed seq when fewer remain."""
    w = make_world(tmp_path)
    reader = FeedReader(w.ledger_path)
    try:
        assert reader.last_seq() == 0 and reader.upper_bound(0, 10) == 0
        commit(w, signed_plate(w, 1, 5))
        assert reader.last_seq() == 5
        assert reader.upper_bound(0, 2) == 2
        assert reader.upper_bound(3, 10) == 5
        assert reader.upper_bound(5, 10) == 5
        body, count, last = reader.page(reader.upper_bound(0, 2), 5, 10)
        assert (count, last) == (3, 5) and [i["seq"] for i in loads_items(body)] == [3, 4, 5]
        assert reader.page(5, 5, 10) == (b"", 0, 5)
    finally:
        reader.close()
