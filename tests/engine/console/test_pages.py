"""The console's pages over a ledger the real pipeline filled: what each shows, escaping, downloads, dismissals."""

from __future__ import annotations

import csv
import io
import re

from engine.console import console_state
from engine.console.text import fold
from tests.engine.console.world import (
    NAME,
    XSS,
    ConsoleWorld,
    console_client,
    csrf_of,
    log_in,
    run,
)


def test_fold_drops_vietnamese_diacritics_and_case() -> None:
    """"Nguyễn Văn A", "NGUYỄN  văn a" and "Đặng Thị Hà" fold to what a keyboard without accents types."""
    assert fold("Nguyễn Văn A") == fold("NGUYỄN  văn a") == "nguyen van a"
    assert fold("Đặng Thị Hà") == "dang thi ha"
    assert fold(None) == ""


def test_overview_counts_today_and_file_states(world: ConsoleWorld) -> None:
    """Today's counts match the ledger; each file is listed with its state and its certificates so far."""

    async def go() -> None:
        async with console_client(world) as client:
            await log_in(client, "tech")
            html = await (await client.get("/console/")).text()
            counts = dict(re.findall(r'id="count-(\w+)">(\d+)<', html))
            signed = sum(1 for outcome in world.plate.expected.values() if outcome in ("POSITIVE", "NEGATIVE", "INCONCLUSIVE"))
            assert counts["files_received"] == "3" and counts["plates_done"] == "1" and counts["quarantined"] == "1"
            assert counts["results_signed"] == str(signed)
            assert counts["specimens_decided"] == str(len(world.plate.expected))
            assert int(counts["retests_waiting"]) == sum(1 for o in world.plate.expected.values() if o == "RETEST")
            assert "Hôm nay 2026-11-29" in html and 'data-live="/console/live"' in html
            assert "plate.txt" in html and "broken-manifest.csv" in html and "bị cách ly" in html
            live = await (await client.get("/console/live")).text()
            assert live.startswith('<div id="live-part">') and "count-results_signed" in live and "<header" not in live

    run(go())


def test_overview_counts_only_the_lab_day(world: ConsoleWorld) -> None:
    """The next day (pinned clock a day later) counts nothing received or signed today, but still what waits."""
    from datetime import timedelta

    from tests.engine.console.world import NOW

    async def go() -> None:
        async with console_client(world) as client:
            console_state(client.server.app).clock = lambda: NOW + timedelta(days=1)
            await log_in(client, "tech")
            counts = dict(re.findall(r'id="count-(\w+)">(\d+)<', await (await client.get("/console/")).text()))
            assert counts["files_received"] == counts["results_signed"] == "0"
            assert counts["quarantined"] == "1" and int(counts["retests_waiting"]) > 0

    run(go())


def test_quarantine_shows_reason_original_and_dismissal(world: ConsoleWorld) -> None:
    """A refused file shows the readable report, downloads byte for byte, and is dismissed only with a reason."""

    async def go() -> None:
        async with console_client(world) as client:
            await log_in(client, "tech")
            listing = await (await client.get("/console/quarantine")).text()
            assert "broken-manifest.csv" in listing
            sha = re.search(r'/console/quarantine/([0-9a-f]{64})"', listing).group(1)
            page = await client.get(f"/console/quarantine/{sha}")
            html = await page.text()
            assert "What to do:" in html and "line" in html and 'for="reason"' in html
            original = await client.get(f"/console/quarantine/{sha}/original")
            assert await original.read() == b"pool_id,specimen_id,full_name\nP1,S1\n"
            assert original.headers["Content-Disposition"] == 'attachment; filename="broken-manifest.csv"'
            token = csrf_of(html)
            empty = await client.post(f"/console/quarantine/{sha}/dismiss", data={"reason": "  ", "csrf_token": token})
            assert empty.status == 400
            done = await client.post(f"/console/quarantine/{sha}/dismiss", data={"reason": "sent again by the site", "csrf_token": token})
            assert done.status == 200 and "broken-manifest.csv" not in await done.text()
            dismissed = await (await client.get("/console/quarantine?dismissed=1")).text()
            assert "broken-manifest.csv" in dismissed and "sent again by the site" in dismissed
            assert (world.data.archive / sha).exists()  # nothing deleted
            state = console_state(client.server.app)
            assert state.ledger.file(sha)["state"] == "quarantined"
            assert {"quarantine_downloaded", "quarantine_dismissed"} <= {r["action"] for r in state.store.audit_trail()}

    run(go())


def test_search_without_diacritics_by_name_id_and_phone(world: ConsoleWorld) -> None:
    """"nguyen van a" finds Nguyễn Văn A; the specimen id, national id and phone find their person, with versions."""

    async def go() -> None:
        async with console_client(world) as client:
            await log_in(client, "tech")
            html = await (await client.get("/console/search", params={"q": "nguyen van a"})).text()
            assert NAME in html and world.name_specimen in html and "Chữ ký hợp lệ" in html and "v1" in html
            other = next(r for r in world.plate.manifest if r["specimen_id"] not in (world.name_specimen, world.xss_specimen)
                         and world.plate.expected[r["specimen_id"]] == "NEGATIVE")
            for q in (other["specimen_id"].lower(), other["national_id"], other["phone"][:3] + " " + other["phone"][3:]):
                found = await (await client.get("/console/search", params={"q": q})).text()
                assert other["specimen_id"] in found, q
            nothing = await (await client.get("/console/search", params={"q": "zzzz qqqq"})).text()
            assert "Không tìm thấy" in nothing
            trail = console_state(client.server.app).store.audit_trail()
            assert trail[0]["action"] == "search" and "nguyen" not in str(trail)  # the query (a name) is not in the trail

    run(go())


def test_script_names_are_shown_as_text_everywhere(world: ConsoleWorld) -> None:
    """A person named <script>alert(1)</script> is escaped on the search, result, retest and incomplete pages."""

    async def go() -> None:
        async with console_client(world) as client:
            await log_in(client, "tech")
            html = await (await client.get("/console/search", params={"q": "script"})).text()
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and XSS not in html
            rid = re.search(r'/console/results/([A-Za-z0-9._-]+)"', html).group(1)
            page = await (await client.get(f"/console/results/{rid}")).text()
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and XSS not in page
            for path in ("/console/retests", "/console/incomplete", "/console/"):
                assert XSS not in await (await client.get(path)).text()

    run(go())


def test_retests_page_and_csv(world: ConsoleWorld) -> None:
    """The worklist lists each retest with what to do and why; the CSV has the same rows, formulas inert."""

    async def go() -> None:
        async with console_client(world) as client:
            await log_in(client, "tech")
            html = await (await client.get("/console/retests")).text()
            waiting = [sid for sid, o in world.plate.expected.items() if o == "RETEST"]
            assert all(sid in html for sid in waiting) and ("chạy lại" in html or "lấy mẫu mới" in html) and "data-print" in html
            assert "the design cannot tell which" in html and "dorfman:2" in html and "phát hiện, Ct " in html  # why, in words
            response = await client.get("/console/retests.csv")
            assert response.headers["Content-Type"].startswith("text/csv")
            rows = list(csv.DictReader(io.StringIO((await response.read()).decode("utf-8-sig"))))
            assert sorted(r["specimen_id"] for r in rows) == sorted(waiting)
            assert all(r["kind"] in ("rerun", "recollect") and r["reason"] and r["why"] for r in rows)

    run(go())


def test_plate_grid_and_pools(world: ConsoleWorld) -> None:
    """The plate page draws 8×12 wells coloured by outcome with Ct in each well's title, and each pool's specimens."""

    async def go() -> None:
        async with console_client(world) as client:
            await log_in(client, "tech")
            plates = await (await client.get("/console/plates")).text()
            run_id = re.search(r'/console/plates/([0-9a-f]{64})"', plates).group(1)
            html = await (await client.get(f"/console/plates/{run_id}")).text()
            assert html.count('class="well ') == 96
            assert html.count('class="well control"') == 2 and "NTC" in html and "Positive Control" in html  # read again from the archived file
            assert 'class="well detected"' in html and 'class="well not_detected"' in html
            assert re.search(r'title="A1 · [^"]*ORF1ab', html)
            pool = world.plate.manifest[0]
            assert f'id="pool-{pool["pool_id"]}"' in html and pool["specimen_id"] in html

    run(go())


def test_incomplete_records_link_to_their_correction(world: ConsoleWorld) -> None:
    """A signed result without a national id is listed, with a link to its correction form."""

    async def go() -> None:
        async with console_client(world) as client:
            await log_in(client, "tech")
            html = await (await client.get("/console/incomplete")).text()
            assert world.name_specimen in html and "Số CCCD/CMND" in html and "#f-national_id" in html
            title = html.split("<title>", 1)[1].split("</title>", 1)[0]
            assert "<" not in title and html.count('id="flagged"') == 1  # the record checks once, in the page body

    run(go())


def test_audit_page_for_admin(world: ConsoleWorld) -> None:
    """The admin's audit page lists logins with who and from where."""

    async def go() -> None:
        async with console_client(world) as client:
            await log_in(client, "boss")
            html = await (await client.get("/console/audit")).text()
            assert "login" in html and "boss" in html and "127.0.0.1" in html

    run(go())


def test_unknown_pages_are_a_readable_404(world: ConsoleWorld) -> None:
    """An unknown page or result id is an HTML 404 page, not a problem+json."""

    async def go() -> None:
        async with console_client(world) as client:
            await log_in(client, "tech")
            for path in ("/console/results/NOPE", "/console/quarantine/" + "0" * 64, "/console/plates/" + "0" * 64):
                response = await client.get(path)
                assert response.status == 404 and "Không tìm thấy trang" in await response.text(), path

    run(go())
