"""The Vietnamese chip ID card (CCCD): its QR payload, and what its 12-digit number says about a person.

Why here (intake, not the console): the sampling station parses scanned cards,
and the manifest intake checks every dropped manifest's records against the
same rules, so both rooms share this module.

**The QR payload** printed on the back of a CCCD is UTF-8 text of seven fields
separated by ``|``::

    ID (12 digits) | old CMND (9 digits, or empty) | full name | date of birth DDMMYYYY
    | sex ("Nam" / "Nữ") | place of residence | date of issue DDMMYYYY

(field order as public readers document it, e.g. the README of
github.com/dangbaokhoa/identity-card: "Số CCCD, Số CMND cũ, Họ tên, Ngày sinh,
Giới tính, Địa chỉ thường trú, Ngày cấp"; the Ministry publishes no layout we
could find. The 2024 "thẻ căn cước" may carry more fields: not handled yet,
refused with the field count).

**The 12-digit number** (Decree 137/2015/NĐ-CP, Art. 7; Circular
07/2016/TT-BCA, Art. 7 and annex): 3 digits, the province (or centrally run
city) where the birth was registered; 1 digit, century of birth and sex
(0/1 men/women born 1900–1999, 2/3 born 2000–2099, 4/5 2100–2199, 6/7
2200–2299, 8/9 2300–2399); 2 digits, the last two of the birth year; 6 random
digits (text of the circular: tulieuvankien.dangcongsan.vn, "Thông tư số
07/2016/TT-BCA"). :data:`PROVINCES` is the annex's list of the 63 province codes (the
same numbers as the administrative unit codes of Decision 124/2004/QĐ-TTg).
The 2025 merger of provinces did not renumber issued cards, so these codes stay
valid for numbers already issued.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from engine.errors import ManifestError

#: Province of birth registration → code (Circular 07/2016/TT-BCA, annex "Danh sách mã tỉnh").
PROVINCES: dict[str, str] = {
    "001": "Hà Nội", "002": "Hà Giang", "004": "Cao Bằng", "006": "Bắc Kạn", "008": "Tuyên Quang",
    "010": "Lào Cai", "011": "Điện Biên", "012": "Lai Châu", "014": "Sơn La", "015": "Yên Bái",
    "017": "Hòa Bình", "019": "Thái Nguyên", "020": "Lạng Sơn", "022": "Quảng Ninh", "024": "Bắc Giang",
    "025": "Phú Thọ", "026": "Vĩnh Phúc", "027": "Bắc Ninh", "030": "Hải Dương", "031": "Hải Phòng",
    "033": "Hưng Yên", "034": "Thái Bình", "035": "Hà Nam", "036": "Nam Định", "037": "Ninh Bình",
    "038": "Thanh Hóa", "040": "Nghệ An", "042": "Hà Tĩnh", "044": "Quảng Bình", "045": "Quảng Trị",
    "046": "Thừa Thiên Huế", "048": "Đà Nẵng", "049": "Quảng Nam", "051": "Quảng Ngãi", "052": "Bình Định",
    "054": "Phú Yên", "056": "Khánh Hòa", "058": "Ninh Thuận", "060": "Bình Thuận", "062": "Kon Tum",
    "064": "Gia Lai", "066": "Đắk Lắk", "067": "Đắk Nông", "068": "Lâm Đồng", "070": "Bình Phước",
    "072": "Tây Ninh", "074": "Bình Dương", "075": "Đồng Nai", "077": "Bà Rịa - Vũng Tàu", "079": "Hồ Chí Minh",
    "080": "Long An", "082": "Tiền Giang", "083": "Bến Tre", "084": "Trà Vinh", "086": "Vĩnh Long",
    "087": "Đồng Tháp", "089": "An Giang", "091": "Kiên Giang", "092": "Cần Thơ", "093": "Hậu Giang",
    "094": "Sóc Trăng", "095": "Bạc Liêu", "096": "Cà Mau",
}
FIELDS = ("national_id", "old_id", "full_name", "date_of_birth", "sex", "address", "issued_on")
_SEXES = {"nam": "male", "nữ": "female", "nu": "female"}
_DIGITS12 = re.compile(r"^[0-9]{12}$")
_DIGITS9 = re.compile(r"^[0-9]{9}$")
_DDMMYYYY = re.compile(r"^[0-9]{8}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class CardError(ManifestError):
    """A scanned card payload that is not a valid CCCD QR (names the field and what is wrong)."""


@dataclass(frozen=True)
class Card:
    """One parsed card: dates as ISO strings, sex as the manifest spells it (male/female)."""

    national_id: str
    old_id: str
    full_name: str
    date_of_birth: str
    sex: str
    address: str
    issued_on: str

    @property
    def province(self) -> str:
        return PROVINCES[self.national_id[:3]]

    def record(self) -> dict[str, str]:
        """The person fields of a manifest row."""
        return {"full_name": self.full_name, "date_of_birth": self.date_of_birth, "sex": self.sex,
                "national_id": self.national_id, "address": self.address}


@dataclass(frozen=True)
class Finding:
    """One problem of a record: the field, what is wrong, and whether it is impossible (not merely doubtful)."""

    field: str
    message: str
    impossible: bool
    code: str = ""  # short name of the rule (events carry it, not the message, which may quote personal data)


def _date(text: str, field: str) -> date:
    if not _DDMMYYYY.match(text):
        raise CardError(f"not a date DDMMYYYY (found {text!r})", source="card QR", field=field, expected="8 digits, day month year, e.g. 02091990")
    try:
        return date(int(text[4:]), int(text[2:4]), int(text[:2]))
    except ValueError:
        raise CardError(f"no such calendar date (found {text!r})", source="card QR", field=field, expected="a real date DDMMYYYY") from None


def parse_card(payload: str, *, today: date) -> Card:
    """Parse and strictly check a CCCD QR payload (as a scanner types it); raises :class:`CardError`.

    ``today`` bounds the dates (no birth or issue in the future); the caller
    passes the station's clock, so tests pin it.
    """
    text = payload.strip("\r\n\t ")
    if not text:
        raise CardError("nothing was scanned", source="card QR", expected="the QR code on the back of the chip ID card")
    parts = text.split("|")
    if len(parts) != len(FIELDS):
        raise CardError(f"{len(parts)} field(s) separated by |, a CCCD QR has {len(FIELDS)}", source="card QR",
                        expected="ID|old CMND|full name|DDMMYYYY|Nam or Nữ|address|DDMMYYYY")
    values = dict(zip(FIELDS, (unicodedata.normalize("NFC", p.strip()) for p in parts), strict=True))
    for field, value in values.items():
        if _CONTROL.search(value):
            raise CardError("contains a control character", source="card QR", field=field, expected="printable text only; scan again")
    if not _DIGITS12.match(values["national_id"]):
        raise CardError(f"not a 12-digit ID number (found {values['national_id']!r})", source="card QR", field="national_id", expected="12 digits")
    if values["old_id"] and not _DIGITS9.match(values["old_id"]):
        raise CardError(f"not a 9-digit CMND number (found {values['old_id']!r})", source="card QR", field="old_id", expected="9 digits or empty")
    if not values["full_name"]:
        raise CardError("the name is empty", source="card QR", field="full_name", expected="the holder's full name")
    if len(values["full_name"]) > 80:
        raise CardError("the name is longer than 80 characters", source="card QR", field="full_name", expected="at most 80 characters")
    if len(values["address"]) > 200:
        raise CardError("the address is longer than 200 characters", source="card QR", field="address", expected="at most 200 characters")
    sex = _SEXES.get(values["sex"].lower())
    if sex is None:
        raise CardError(f"unknown sex (found {values['sex']!r})", source="card QR", field="sex", expected="Nam or Nữ")
    born = _date(values["date_of_birth"], "date_of_birth")
    issued = _date(values["issued_on"], "issued_on")
    if born > today:
        raise CardError(f"born in the future ({born.isoformat()})", source="card QR", field="date_of_birth", expected="a date not after today")
    if issued > today:
        raise CardError(f"issued in the future ({issued.isoformat()})", source="card QR", field="issued_on", expected="a date not after today")
    if issued < born:
        raise CardError(f"issued ({issued.isoformat()}) before the holder was born ({born.isoformat()})", source="card QR", field="issued_on",
                        expected="an issue date after the date of birth")
    card = Card(values["national_id"], values["old_id"], values["full_name"], born.isoformat(), sex, values["address"], issued.isoformat())
    for finding in check_record(card.record(), today=today):
        if finding.impossible:
            raise CardError(finding.message, source="card QR", field=finding.field, expected="a card whose number agrees with its holder; scan again or check the card")
    return card


def check_rows(rows: list[dict[str, Any]], *, today: date) -> list[dict[str, Any]]:
    """The findings of every manifest row, as event details: line, specimen, field, rule, impossible (no personal data)."""
    out: list[dict[str, Any]] = []
    for row in rows:
        for f in check_record(row, today=today):
            out.append({"line": row.get("line"), "specimen_id": row.get("specimen_id"), "field": f.field, "code": f.code, "impossible": f.impossible})
    return out


def id_digit(year: int, sex: str) -> int | None:
    """The 4th digit of a 12-digit number for a birth year and sex; None outside 1900–2399 or for other sexes."""
    century = (year - 1900) // 100
    if not 0 <= century <= 4 or sex not in ("male", "female"):
        return None
    return 2 * century + (1 if sex == "female" else 0)


def check_record(record: Mapping[str, Any], *, today: date) -> list[Finding]:
    """Every impossible or doubtful combination in one person record (a manifest row or a scanned card).

    Impossible: an unknown province code; a century digit that disagrees with
    the year of birth; a sex digit that disagrees with the sex; two birth-year
    digits that disagree; a date of birth in the future. Doubtful: an ID of
    digits that is neither 9 (old CMND) nor 12 (CCCD) long. Other ids
    (passports, letters) are not judged: not every person has a CCCD.
    """
    findings: list[Finding] = []
    nid = str(record.get("national_id") or "").strip()
    sex = str(record.get("sex") or "").strip().lower()
    sex = {"m": "male", "f": "female", "nam": "male", "nữ": "female"}.get(sex, sex)
    born: date | None = None
    text = str(record.get("date_of_birth") or "").strip()
    if text:
        try:
            born = date.fromisoformat(text)
        except ValueError:
            findings.append(Finding("date_of_birth", f"not a date YYYY-MM-DD ({text!r})", True, "date"))
    if born is not None and born > today:
        findings.append(Finding("date_of_birth", f"born in the future ({born.isoformat()})", True, "future_birth"))
    if nid.isdigit() and len(nid) not in (9, 12):
        findings.append(Finding("national_id", f"{len(nid)} digits: neither a 12-digit CCCD nor a 9-digit CMND", False, "id_length"))
    if not (nid.isdigit() and len(nid) == 12):
        return findings
    if nid[:3] not in PROVINCES:
        findings.append(Finding("national_id", f"province code {nid[:3]} is not in the list of Circular 07/2016/TT-BCA", True, "province"))
    digit = int(nid[3])
    if born is not None:
        century = 1900 + 100 * (digit // 2)
        if not century <= born.year < century + 100:
            findings.append(Finding("national_id", f"digit 4 ({digit}) means born {century}–{century + 99}, the date of birth is {born.isoformat()}", True, "century"))
        elif int(nid[4:6]) != born.year % 100:
            findings.append(Finding("national_id", f"digits 5–6 ({nid[4:6]}) are not the birth year's last two ({born.year % 100:02d})", True, "birth_year"))
    if sex in ("male", "female") and (digit % 2 == 1) != (sex == "female"):
        findings.append(Finding("national_id", f"digit 4 ({digit}) means {'female' if digit % 2 else 'male'}, the sex is {sex}", True, "sex"))
    return findings
