"""Result payload → EU DCC test certificate (schema 1.3.0), with ICAO 9303 name transliteration.

Value sets are the EU eHealth Network ones: disease 840539006 (COVID-19),
test type LP6464-4 (NAAT / RT-PCR), result 260373001 (detected) or 260415000
(not detected). An INCONCLUSIVE result has no code in that value set; it is
written with SNOMED CT 419984006 ("Inconclusive") so the QR still states what
the lab signed, and EU verifier apps reject it as a travel test certificate,
which is the correct outcome for an inconclusive test.

Vietnamese names are written family name first ("Nguyễn Văn An"): the first
word is ``fn``, the rest ``gn``. Names are NFC-normalised; ``fnt``/``gnt`` are
the ICAO 9303 machine-readable forms (A-Z and ``<``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from signing.errors import SigningError

SCHEMA_VERSION = "1.3.0"
DISEASE_COVID19 = "840539006"
TEST_TYPE_NAAT = "LP6464-4"
RESULT_CODE = {"POSITIVE": "260373001", "NEGATIVE": "260415000", "INCONCLUSIVE": "419984006"}
COUNTRY = "VN"
_MAX_TEXT = 80  # DCC schema: names, nm, tc, is
_MAX_CI = 50

# ICAO 9303 Part 3 §6 transliterations that plain diacritic stripping would get wrong.
_ICAO_SPECIAL = {
    "Đ": "D", "đ": "D", "Ð": "D", "ð": "D",
    "Ä": "AE", "ä": "AE", "Æ": "AE", "æ": "AE",
    "Ö": "OE", "ö": "OE", "Ø": "OE", "ø": "OE", "Œ": "OE", "œ": "OE",
    "Ü": "UE", "ü": "UE",
    "Å": "AA", "å": "AA",
    "ß": "SS", "Þ": "TH", "þ": "TH", "Ĳ": "IJ", "ĳ": "IJ", "Ł": "L", "ł": "L", "Ħ": "H", "ħ": "H",
    "ı": "I", "Ŀ": "L", "ŀ": "L",
    " ": "<", "-": "<", ",": "<", "‐": "<", "–": "<",
}


class _IcaoTable(dict):
    """str.translate table computed on first sight of each character, then cached."""

    def __missing__(self, code: int) -> str:
        char = chr(code)
        if char in _ICAO_SPECIAL:
            out = _ICAO_SPECIAL[char]
        else:
            base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
            out = base.upper() if base.isascii() and base.isalpha() else ""
        self[code] = out
        return out


_ICAO = _IcaoTable()
_FILLERS = re.compile("<{2,}")


def transliterate(name: str) -> str:
    """ICAO 9303 machine-readable form: ``Nguyễn Văn An`` → ``NGUYEN<VAN<AN``, ``Đỗ`` → ``DO``."""
    text = unicodedata.normalize("NFC", name).strip().translate(_ICAO)
    return _FILLERS.sub("<", text).strip("<")[:_MAX_TEXT]


def split_vietnamese_name(full_name: str) -> tuple[str, str]:
    """(family name, given names) from a name written family-first, NFC-normalised."""
    words = unicodedata.normalize("NFC", full_name).split()
    if not words:
        return "", ""
    return words[0], " ".join(words[1:])


def uvci(result_id: str, version: int, lab_id: str | None = None) -> str:
    """A UVCI unique and stable per (result id, version): ``URN:UVCI:01:VN:<LAB>/<OPAQUE>#<check>``.

    Opaque part: Base32 of SHA-256 over id and version (same inputs, same UVCI;
    a new version, a new UVCI). The check character is the eHealth Network's
    Luhn mod N over the whole string before ``#`` (see :func:`luhn_mod_n`).
    """
    body = _uvci_body(result_id, version, lab_id)
    return f"{body}#{luhn_mod_n(body)}"


def _uvci_body(result_id: str, version: int, lab_id: str | None) -> str:
    digest = hashlib.sha256(f"{result_id}\x00{int(version)}".encode("utf-8")).digest()
    opaque = base64.b32encode(digest).decode("ascii").rstrip("=")
    lab = re.sub(r"[^A-Z0-9]", "", (lab_id or "").upper())[:8]
    body = f"URN:UVCI:01:{COUNTRY}:" + (f"{lab}/" if lab else "")
    return body + opaque[: _MAX_CI - len(body) - 2]


#: Code points of the eHealth Network UVCI check character (eu-dcc-schema, examples/Luhn-Mod-N): A-Z, 0-9, '/', ':'.
UVCI_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/:"
#: The ASCII-ordered alphabet ketqua used before issue 16. Certificates signed then carry a check character
#: computed over it; they are still authentic, so :func:`same_uvci` accepts that character for the same body.
LEGACY_UVCI_ALPHABET = "/0123456789:ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def luhn_mod_n(text: str, alphabet: str = UVCI_ALPHABET) -> str:
    """Luhn mod N check character of ``text``, as the eHealth Network reference computes it.

    The reference looks every character up in the alphabet and fails on one it
    lacks; so does this (a ``SigningError`` naming the character), rather than
    skipping it and signing a check character no other implementation reproduces.
    """
    n = len(alphabet)
    total = 0
    for position, char in enumerate(reversed(text)):
        code = alphabet.find(char)
        if code < 0:
            raise SigningError(
                f"UVCI {text!r}: character {char!r} at position {len(text) - position} is outside the"
                f" UVCI alphabet A-Z 0-9 / : (eHealth Network guidelines, Annex 2)"
            )
        # Luhn mod N doubles every second code point from the right and adds the base-N digits of the product.
        addend = code * 2 if position % 2 == 0 else code
        total += addend // n + addend % n
    return alphabet[(n - total % n) % n]


def same_uvci(found: str, expected: str) -> bool:
    """Whether a signed UVCI is the one ketqua issues for a result, also when signed before issue 16.

    Same body before ``#``; the check character either the eHealth Network one or
    the one of :data:`LEGACY_UVCI_ALPHABET` (signatures made then stay valid).
    """
    if found == expected:
        return True
    body, sep, check = found.rpartition("#")
    if not sep or body != expected.rpartition("#")[0]:
        return False
    try:
        return check == luhn_mod_n(body, LEGACY_UVCI_ALPHABET)
    except SigningError:
        return False


def _sample_time(value: str | None) -> str:
    """``sc`` as an ISO 8601 instant in UTC with ``Z`` (DCC recommends UTC, seconds precision)."""
    if not value:
        raise SigningError("the result has no specimen.collected_at; an EU DCC test entry needs the sampling time")
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise SigningError(
            f"specimen.collected_at {value!r} is not ISO 8601 (expected e.g. 2026-11-29T08:30:00+07:00)"
        ) from exc
    if when.tzinfo is None:
        raise SigningError(f"specimen.collected_at {value!r} has no UTC offset (expected e.g. +07:00)")
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(value: Any) -> str:
    return unicodedata.normalize("NFC", str(value or "")).strip()[:_MAX_TEXT]


def test_entry(result: Mapping[str, Any], *, issuer: str | None = None) -> dict[str, Any]:
    """The EU DCC JSON (``ver``, ``nam``, ``dob``, one ``t`` entry) of a result payload.

    ``issuer`` (``is``) defaults to the lab's name; the testing centre (``tc``)
    is the collection site, else the lab.
    """
    outcome = result.get("outcome")
    if outcome not in RESULT_CODE:
        raise SigningError(
            f"result {result.get('id')!r} has outcome {outcome!r}; only POSITIVE, NEGATIVE and INCONCLUSIVE are certified"
        )
    person = result.get("person") or {}
    specimen = result.get("specimen") or {}
    lab = result.get("lab") or {}
    test = result.get("test") or {}
    family, given = split_vietnamese_name(person.get("full_name") or "")
    if not family:
        raise SigningError(f"result {result.get('id')!r} has no person.full_name; a DCC needs at least a family name")
    nam: dict[str, str] = {"fn": family[:_MAX_TEXT], "fnt": transliterate(family)}
    if given:
        nam["gn"] = given[:_MAX_TEXT]
        nam["gnt"] = transliterate(given)
    entry = {
        "tg": DISEASE_COVID19,
        "tt": TEST_TYPE_NAAT,
        # nm is the test's product name ("Roche LightCycler qPCR" in EU data): the kit, not our profile id.
        "nm": _text(test.get("kit") or test.get("assay") or "RT-PCR"),
        "sc": _sample_time(specimen.get("collected_at")),
        "tr": RESULT_CODE[outcome],
        "tc": _text(specimen.get("collection_site") or lab.get("name")),
        "co": COUNTRY,
        "is": _text(issuer or lab.get("name") or "Viet Nam"),
        "ci": uvci(str(result.get("id")), int(result.get("version") or 1), lab.get("id")),
    }
    return {"ver": SCHEMA_VERSION, "nam": nam, "dob": str(person.get("date_of_birth") or ""), "t": [entry]}


# Not a pytest test, despite the name the interface fixes.
test_entry.__test__ = False  # type: ignore[attr-defined]
