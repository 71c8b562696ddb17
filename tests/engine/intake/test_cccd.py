"""The CCCD QR parser and the record check: generated payloads (valid, damaged, old-CMND-only, foreign)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from engine.errors import ManifestError
from engine.intake.cccd import PROVINCES, CardError, check_record, id_digit, parse_card

TODAY = date(2026, 12, 7)
NAMES = st.text(alphabet="ABCDĐEGHIKLMNOPQRSTUVXYÀÁẠẢÃÂĂỄỄỆƠƯỮỨễệ ", min_size=1, max_size=60).map(str.strip).filter(bool)


@st.composite
def people(draw: st.DrawFn) -> dict[str, object]:
    born = draw(st.dates(min_value=date(1900, 1, 1), max_value=TODAY))
    issued = draw(st.dates(min_value=born, max_value=TODAY))
    female = draw(st.booleans())
    province = draw(st.sampled_from(sorted(PROVINCES)))
    digit = id_digit(born.year, "female" if female else "male")
    nid = f"{province}{digit}{born.year % 100:02d}{draw(st.integers(0, 999_999)):06d}"
    old = draw(st.one_of(st.just(""), st.integers(0, 10**9 - 1).map(lambda n: f"{n:09d}")))
    return {"nid": nid, "old": old, "name": draw(NAMES), "born": born, "issued": issued, "female": female,
            "address": draw(st.text(alphabet="0123456789 abcđ,-/Phường", max_size=60)).strip()}


def payload(p: dict[str, object]) -> str:
    born, issued = p["born"], p["issued"]
    assert isinstance(born, date) and isinstance(issued, date)
    return "|".join([str(p["nid"]), str(p["old"]), str(p["name"]), born.strftime("%d%m%Y"),
                     "Nữ" if p["female"] else "Nam", str(p["address"]), issued.strftime("%d%m%Y")])


def test_a_known_card() -> None:
    card = parse_card("079090001234|025123456|Nguyễn Văn A|02091990|Nam|12 Lê Lợi, Phường Bến Nghé, Quận 1, TP. Hồ Chí Minh|15042021\r\n", today=TODAY)
    assert card.national_id == "079090001234" and card.old_id == "025123456"
    assert (card.full_name, card.date_of_birth, card.sex, card.issued_on) == ("Nguyễn Văn A", "1990-09-02", "male", "2021-04-15")
    assert card.province == "Hồ Chí Minh"


def test_the_province_list_is_the_63_of_the_circular() -> None:
    assert len(PROVINCES) == 63 and PROVINCES["001"] == "Hà Nội" and PROVINCES["096"] == "Cà Mau"


@given(people())
def test_every_valid_card_parses_back_to_what_was_printed(p: dict[str, object]) -> None:
    card = parse_card(payload(p), today=TODAY)
    assert card.national_id == p["nid"] and card.old_id == p["old"] and card.full_name == p["name"]
    assert card.date_of_birth == p["born"].isoformat() and card.issued_on == p["issued"].isoformat()  # type: ignore[union-attr]
    assert card.sex == ("female" if p["female"] else "male")
    assert check_record(card.record(), today=TODAY) == []


@given(people(), st.integers(0, 6))
def test_a_damaged_field_is_named(p: dict[str, object], which: int) -> None:
    parts = payload(p).split("|")
    broken = {0: parts[0][:11], 1: "12345", 2: "", 3: "31022001", 4: "X", 5: "a\x07b", 6: "99999999"}[which]
    parts[which] = broken
    field = ("national_id", "old_id", "full_name", "date_of_birth", "sex", "address", "issued_on")[which]
    with pytest.raises(CardError) as caught:
        parse_card("|".join(parts), today=TODAY)
    assert caught.value.field == field
    assert isinstance(caught.value, ManifestError)


@given(people(), st.integers(-3, 3).filter(lambda n: n != 0))
def test_the_wrong_field_count_is_refused(p: dict[str, object], extra: int) -> None:
    parts = payload(p).split("|")
    parts = parts + ["x"] * extra if extra > 0 else parts[:extra]
    with pytest.raises(CardError, match="field"):
        parse_card("|".join(parts), today=TODAY)


@given(people())
def test_a_number_that_contradicts_its_holder_is_impossible(p: dict[str, object]) -> None:
    nid = str(p["nid"])
    flipped = nid[:3] + str(int(nid[3]) ^ 1) + nid[4:]  # same century, the other sex
    record = {"national_id": flipped, "date_of_birth": p["born"].isoformat(), "sex": "female" if p["female"] else "male"}  # type: ignore[union-attr]
    findings = check_record(record, today=TODAY)
    assert [f.field for f in findings] == ["national_id"] and findings[0].impossible
    with pytest.raises(CardError, match="digit 4"):
        parse_card(payload({**p, "nid": flipped}), today=TODAY)


@given(people(), st.integers(1, 99))
def test_a_birth_year_the_number_does_not_encode_is_impossible(p: dict[str, object], shift: int) -> None:
    born = p["born"]
    assert isinstance(born, date)
    other = born.year + shift if born.year + shift <= TODAY.year else born.year - shift
    assume(other >= 1900)
    record = {"national_id": p["nid"], "date_of_birth": born.replace(year=other, day=1).isoformat(), "sex": "female" if p["female"] else "male"}
    assert any(f.field == "national_id" and f.impossible for f in check_record(record, today=TODAY))


@given(st.integers(0, 999).map(lambda n: f"{n:03d}").filter(lambda c: c not in PROVINCES))
def test_an_unknown_province_is_impossible(code: str) -> None:
    findings = check_record({"national_id": code + "090000001", "date_of_birth": "1990-01-01", "sex": "male"}, today=TODAY)
    assert [(f.field, f.impossible) for f in findings] == [("national_id", True)] and code in findings[0].message


@given(st.text(alphabet="ABCXYZ0123456789", min_size=1, max_size=20))
def test_foreign_and_old_ids_are_never_impossible(nid: str) -> None:
    assume(not (nid.isdigit() and len(nid) == 12))
    findings = check_record({"national_id": nid, "date_of_birth": "1990-01-01", "sex": "male"}, today=TODAY)
    assert all(not f.impossible for f in findings)
    assert bool(findings) == (nid.isdigit() and len(nid) != 9)


def test_future_births_and_issues() -> None:
    tomorrow = TODAY + timedelta(days=1)
    assert check_record({"date_of_birth": tomorrow.isoformat()}, today=TODAY)[0].impossible
    with pytest.raises(CardError, match="issued in the future"):
        parse_card(f"001090000001||A|01011990|Nam||{tomorrow:%d%m%Y}", today=TODAY)
    with pytest.raises(CardError, match="before the holder was born"):
        parse_card("001090000001||A|01011990|Nam||01011989", today=TODAY)


@given(st.text(max_size=200))
def test_any_text_parses_or_raises_card_error(text: str) -> None:
    try:
        card = parse_card(text, today=TODAY)
    except CardError:
        return
    assert len(card.national_id) == 12
