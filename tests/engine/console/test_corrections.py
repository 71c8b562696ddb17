"""Corrections in the console: a required reason, a new signed version through the manifest path, four eyes."""

from __future__ import annotations

import hashlib
import json
import re

from engine.console import console_state
from signing.jws import verify_compact
from tests.engine.console.world import (
    ConsoleWorld,
    console_client,
    csrf_of,
    log_in,
    run,
)


async def _result_of(client, world: ConsoleWorld) -> tuple[str, str]:
    html = await (await client.get("/console/search", params={"q": world.name_specimen})).text()
    rid = re.search(r'/console/results/([A-Za-z0-9._-]+)"', html).group(1)
    page = await (await client.get(f"/console/results/{rid}")).text()
    return rid, csrf_of(page)


def _form(token: str, **fields: str) -> dict[str, str]:
    return {"csrf_token": token, "based_on": "1", **fields}


def test_correction_signs_a_new_version_that_supersedes(world: ConsoleWorld) -> None:
    """Correcting a name with a reason signs v2 (valid JWS, reason with who), marks v1 superseded, audits it."""

    async def go() -> None:
        async with console_client(world) as client:
            await log_in(client, "tech")
            rid, token = await _result_of(client, world)
            response = await client.post(f"/console/results/{rid}/correct", data=_form(token, full_name="Nguyễn Văn Anh", reason="sai chính tả tên"))
            assert response.status == 200 and response.url.query.get("done") == "2"
            html = await response.text()
            assert "Đã ký phiên bản 2" in html and "Nguyễn Văn Anh" in html and "đã bị thay bằng phiên bản 2" in html
            state = console_state(client.server.app)
            v1, v2 = state.ledger.result_versions(rid)
            assert v1["superseded_by"] == 2 and v2["supersedes"] == {"id": rid, "version": 1}
            payload = json.loads(verify_compact(v2["jws"], state.trust()))
            assert payload["person"]["full_name"] == "Nguyễn Văn Anh" and payload["outcome"] == json.loads(v1["payload"])["outcome"]
            assert payload["correction"]["reason"] == "sai chính tả tên — tech (technician), lab console"
            assert state.store.specimen(world.name_specimen)["full_name"] == "Nguyễn Văn Anh"
            trail = state.store.audit_trail()
            assert trail[0]["action"] == "corrected" and trail[0]["user"] == "tech" and trail[0]["detail"]["version"] == 2
            assert state.ledger.events(kind="correction")[-1]["detail"]["version"] == 2
            manifest = [f for f in state.ledger.files(kind="manifest") if f["name"].startswith("console-correction-")]
            assert len(manifest) == 1 and manifest[0]["state"] == "done" and (world.data.archive / manifest[0]["sha256"]).exists()

    run(go())


def test_correction_needs_a_reason_a_change_and_valid_data(world: ConsoleWorld) -> None:
    """No reason, no change, or a bad date of birth: the form comes back with the message, nothing is signed."""

    async def go() -> None:
        async with console_client(world) as client:
            await log_in(client, "tech")
            rid, token = await _result_of(client, world)
            for fields, message in (
                ({"full_name": "Nguyễn Văn Bé", "reason": " "}, "Hãy ghi lý do"),
                ({"reason": "không đổi gì"}, "Không có trường nào thay đổi"),
                ({"date_of_birth": "1990-13-45", "reason": "ngày sinh"}, "Dữ liệu chưa hợp lệ"),
            ):
                response = await client.post(f"/console/results/{rid}/correct", data=_form(token, **fields))
                assert response.status == 400 and message in await response.text(), fields
            assert len(console_state(client.server.app).ledger.result_versions(rid)) == 1

    run(go())


def test_correction_of_a_stale_version_is_refused(world: ConsoleWorld) -> None:
    """A form based on version 1 after version 2 was signed is refused: the user must look again."""

    async def go() -> None:
        async with console_client(world) as client:
            await log_in(client, "tech")
            rid, token = await _result_of(client, world)
            await client.post(f"/console/results/{rid}/correct", data=_form(token, phone="0901234567", reason="số điện thoại"))
            again = await client.post(f"/console/results/{rid}/correct", data=_form(token, phone="0907654321", reason="lại"))
            assert again.status == 400 and "phiên bản mới (2)" in await again.text()
            assert len(console_state(client.server.app).ledger.result_versions(rid)) == 2

    run(go())


def test_completing_an_incomplete_record_is_a_correction(world: ConsoleWorld) -> None:
    """Adding the missing national id signs a new version and the record leaves the incomplete list."""

    async def go() -> None:
        async with console_client(world) as client:
            await log_in(client, "tech")
            rid, token = await _result_of(client, world)
            assert world.name_specimen in await (await client.get("/console/incomplete")).text()
            await client.post(f"/console/results/{rid}/correct", data=_form(token, national_id="079090001234", reason="bổ sung CCCD"))
            assert world.name_specimen not in await (await client.get("/console/incomplete")).text()

    run(go())


def test_four_eyes_technician_request_reviewer_approves(world: ConsoleWorld) -> None:
    """With corrections_need_review a technician's correction waits; a reviewer (not the author) approves and signs it."""

    async def go() -> None:
        async with console_client(world, corrections_need_review=True) as client:
            state = console_state(client.server.app)
            await log_in(client, "tech")
            rid, token = await _result_of(client, world)
            queued = await client.post(f"/console/results/{rid}/correct", data=_form(token, full_name="Nguyễn Văn Ân", reason="tên có dấu"))
            assert "chờ người duyệt" in await queued.text()
            assert len(state.ledger.result_versions(rid)) == 1
            assert (await client.get("/console/corrections")).status == 403  # a technician cannot approve
            client.session.cookie_jar.clear()
            await log_in(client, "rev")
            page = await (await client.get("/console/corrections")).text()
            assert "Nguyễn Văn Ân" in page and "tên có dấu" in page
            number = re.search(r'/console/corrections/(\d+)"', page).group(1)
            done = await client.post(f"/console/corrections/{number}", data={"csrf_token": csrf_of(page), "decision": "approve"})
            assert done.status == 200 and "Đã ký phiên bản 2" in await done.text()
            payload = json.loads(state.ledger.get_result(rid)["payload"])
            assert payload["correction"]["reason"] == "tên có dấu — tech (technician), lab console, approved by rev (reviewer)"
            assert state.store.corrections("applied")[0]["version"] == 2

    run(go())


def test_four_eyes_reviewer_cannot_approve_own_request(world: ConsoleWorld) -> None:
    """A request a reviewer approves is never their own: the author is refused (403); reject leaves no version."""

    async def go() -> None:
        async with console_client(world, corrections_need_review=True) as client:
            state = console_state(client.server.app)
            number = state.store.request_correction("x", 1, world.name_specimen, {"full_name": "X Y"}, "r", "rev", None)
            await log_in(client, "rev")
            page = await (await client.get("/console/corrections")).text()
            assert "Không thể tự duyệt" in page
            own = await client.post(f"/console/corrections/{number}", data={"csrf_token": csrf_of(page), "decision": "approve"})
            assert own.status == 403
            client.session.cookie_jar.clear()
            await log_in(client, "boss")
            page = await (await client.get("/console/corrections")).text()
            await client.post(f"/console/corrections/{number}", data={"csrf_token": csrf_of(page), "decision": "reject"})
            assert state.store.corrections("rejected")[0]["decided_by"] == "boss"

    run(go())


def test_correction_keeps_commas_quotes_and_leading_signs(world: ConsoleWorld) -> None:
    """A corrected value with a comma, quotes and a leading '-' is signed exactly as typed (the manifest is read back)."""

    async def go() -> None:
        async with console_client(world) as client:
            await log_in(client, "tech")
            rid, token = await _result_of(client, world)
            typed = '-Lê, "Bé" Na'
            await client.post(f"/console/results/{rid}/correct", data=_form(token, full_name=typed, address="1, Lê Lợi", reason="tên"))
            person = json.loads(console_state(client.server.app).ledger.get_result(rid)["payload"])["person"]
            assert person["full_name"] == typed and person["address"] == "1, Lê Lợi"

    run(go())


def test_search_finds_a_corrected_name(world: ConsoleWorld) -> None:
    """The search index follows corrections: the new name is found (folded) right after it is signed, the old one no more."""

    async def go() -> None:
        async with console_client(world) as client:
            await log_in(client, "tech")
            rid, token = await _result_of(client, world)
            assert "Không tìm thấy" in await (await client.get("/console/search", params={"q": "trinh cong son"})).text()
            await client.post(f"/console/results/{rid}/correct", data=_form(token, full_name="Trịnh Công Sơn", reason="đổi tên"))
            found = await (await client.get("/console/search", params={"q": "TRINH cong  son"})).text()
            assert world.name_specimen in found and "v2" in found
            assert world.name_specimen not in await (await client.get("/console/search", params={"q": "nguyen van a"})).text()

    run(go())


def test_correcting_back_and_forth_signs_each_version(world: ConsoleWorld) -> None:
    """A → B → A → B: each step is a new signed version, although the last manifest's bytes repeat the first's."""

    async def go() -> None:
        async with console_client(world) as client:
            await log_in(client, "tech")
            rid, token = await _result_of(client, world)
            for version, name in enumerate(("Nguyễn Văn Ba", "Nguyễn Văn A", "Nguyễn Văn Ba"), start=2):
                data = {**_form(token, full_name=name, reason=f"bước {version}"), "based_on": str(version - 1)}
                response = await client.post(f"/console/results/{rid}/correct", data=data)
                assert response.url.query.get("done") == str(version), await response.text()
            state = console_state(client.server.app)
            assert [json.loads(v["payload"])["person"]["full_name"] for v in state.ledger.result_versions(rid)][1:] == [
                "Nguyễn Văn Ba", "Nguyễn Văn A", "Nguyễn Văn Ba"]
            for f in state.ledger.files(kind="manifest"):
                assert hashlib.sha256((world.data.archive / f["sha256"]).read_bytes()).hexdigest() == f["sha256"]

    run(go())
