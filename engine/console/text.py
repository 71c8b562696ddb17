"""Text as people search it: Vietnamese without its diacritics, case folded.

Staff type "nguyen van a" on keyboards without a Vietnamese input method; the
manifest says "Nguyễn Văn A". Unicode NFD splits each letter from its tone and
vowel marks (combining characters, category Mn), which are dropped; đ/Đ is a
letter of its own (U+0111/U+0110, no decomposition) and is mapped to d by hand.
"""

from __future__ import annotations

import re
import unicodedata

_SPACES = re.compile(r"\s+")


def fold(text: str | None) -> str:
    """``text`` lower-cased, without diacritics, with runs of spaces made one (None → "")."""
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    bare = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    return _SPACES.sub(" ", bare.casefold()).strip()


def digits(text: str | None) -> str:
    """Only the digits of ``text``: "+84 901-234 567" and "84901234567" are one phone number."""
    return "".join(c for c in (text or "") if c.isdigit())


def like_pattern(text: str) -> str:
    """A SQL ``LIKE … ESCAPE '\\'`` pattern matching ``text`` anywhere (``%`` and ``_`` taken literally)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
