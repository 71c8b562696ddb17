"""Diacritic folding for search, the message catalogue's coverage, and cookies under TLS."""

from __future__ import annotations

import re
import ssl
import unicodedata
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from engine.console.app import PREFIX, set_cookie
from engine.console.i18n import MESSAGES
from engine.console.store import ROLES
from engine.console.text import digits, fold, like_pattern
from engine.ledger.schema import FILE_KINDS, FILE_STATES
from engine.model import PoolOutcome, SpecimenOutcome

TEMPLATES = Path(__file__).resolve().parents[3] / "engine" / "console" / "templates"
SOURCES = Path(__file__).resolve().parents[3] / "engine" / "console"


@given(st.text())
def test_fold_is_idempotent_bare_and_case_free(text: str) -> None:
    """Folding twice changes nothing; the result has no combining mark, no đ, and ignores case."""
    once = fold(text)
    assert fold(once) == once
    assert not any(unicodedata.category(c) == "Mn" for c in once) and "đ" not in once
    if text.isascii():
        assert fold(text.upper()) == fold(text.lower())


@given(st.text(alphabet="aăâeêioôơuưyđ" + "AĂÂEÊIOÔƠUƯYĐ" + " ", min_size=1))
def test_fold_maps_vietnamese_vowels_to_ascii(text: str) -> None:
    """Every Vietnamese vowel (with its marks) and đ fold to plain ASCII letters."""
    assert fold(text).isascii()


def test_digits_and_like_pattern() -> None:
    """Phones compare by digits only; LIKE wildcards typed by a user are literal."""
    assert digits("+84 (90) 123-45.67") == "84901234567"
    assert like_pattern("50%_a") == "%50\\%\\_a%"


def test_every_message_key_in_templates_and_code_exists() -> None:
    """Each t('key') in the templates and modules, and each dynamic family (states, outcomes, roles), has both languages."""
    used = set()
    for path in [*TEMPLATES.glob("*.html"), *SOURCES.glob("*.py")]:
        used |= set(re.findall(r"""t\(['"]([a-z_]+\.[A-Za-z0-9_.]+)['"]""", path.read_text(encoding="utf-8")))
        used |= set(re.findall(r"""['"]((?:correct|error|quarantine|review)\.[a-z_]+)['"]""", path.read_text(encoding="utf-8"))) - {"error.html", "quarantine.html"}
    families = {
        "state": FILE_STATES,
        "kind": FILE_KINDS,
        "role": ROLES,
        "outcome": [o.value for o in SpecimenOutcome],
        "pool": [o.value for o in PoolOutcome],
        "retest": ("rerun", "recollect"),
        "control": ("pc", "nc", "ntc"),
        "problem": ("parse", "assay", "controls", "decode", "manifest", "truncated", "design", "unknown_pools", "correction"),
    }
    used |= {f"{family}.{value}" for family, values in families.items() for value in values}
    missing = sorted(k for k in used if k not in MESSAGES)
    assert not missing
    assert all(vi and en for vi, en in MESSAGES.values())


def test_session_cookie_is_secure_under_tls() -> None:
    """Over TLS the console's cookies carry Secure (and stay HttpOnly, SameSite=Strict, scoped to /console/)."""
    request = make_mocked_request("GET", "/console/login", sslcontext=ssl.create_default_context())
    response = web.Response()
    set_cookie(request, response, "kq_session", "value")
    cookie = response.cookies["kq_session"]
    assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == PREFIX + "/"
