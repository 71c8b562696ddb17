"""An instrument's own interpretation of a well (``NOT DETECTED``, ``Pos``, ``INVALID``) as a canonical call.

Calls are free text chosen by each vendor (the LIS formats ASTM and HL7 above
all, and the call columns of CFX, m2000 and QuantStudio exports). The scalar
and column forms share one set of patterns and one precedence, so a word is
read the same whichever path a parser takes; anything that is no detection
call becomes None and the assay rule decides from the Ct values.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from parsers.columns import string_array

__all__ = ["normalise_call", "normalise_calls"]

# Order matters: "NOT DETECTED" contains "detected", so the negative words are
# tried before the positive ones. "Presumptive positive" (Xpert Xpress: only N2
# amplified) is deliberately no call: the assay rule decides from the Ct values.
_CALL_INVALID = re.compile(r"\b(invalid|inv|error|err|fail(?:ed)?|no result|aborted|indeterminate)\b")
_CALL_NEGATIVE = re.compile(r"\b(not detected|target not detected|undetected|negative|neg|non[- ]?reactive|nd)\b")
_CALL_POSITIVE = re.compile(r"\b(detected|positive|pos|reactive)\b")
_CALL_NONE = re.compile(r"\bpresumptive\b")


def normalise_call(value: str | None) -> str | None:
    """An instrument's own interpretation (``NOT DETECTED``, ``Pos``, ``NEG``, ``INVALID``) as a canonical call.

    Returns ``detected``, ``not_detected``, ``invalid`` or None when the text is
    no detection call (``PASS``, ``Valid``, ``ValueNotSet``, a number, a
    presumptive result). Used by the LIS parsers (ASTM, HL7), where the call is
    free text chosen by each vendor.
    """
    if value is None:
        return None
    key = re.sub(r"[\s_]+", " ", value.strip().lower())
    if not key or _CALL_NONE.search(key):
        return None
    if _CALL_INVALID.search(key):
        return "invalid"
    if _CALL_NEGATIVE.search(key):
        return "not_detected"
    if _CALL_POSITIVE.search(key):
        return "detected"
    return None


#: Bare symbols some instruments write for a call (no word boundary to match on).
_CALL_SYMBOLS = {"+": "detected", "-": "not_detected", "amp": "detected", "no amp": "not_detected", "noamp": "not_detected"}


def normalise_calls(values: pa.Array | Sequence[str | None]) -> pa.Array:
    """Vectorised :func:`normalise_call` over a call column (``POSITIVE``, ``Negative``, ``Invalid``…).

    Same words and precedence as the scalar form (invalid, then negative, then
    positive); anything else, ``Inconclusive`` or empty becomes null so the
    assay rule decides from the Ct values.
    """
    values = string_array(values)
    if len(values) == 0:
        return pa.array([], type=pa.string())
    key = pc.replace_substring_regex(pc.utf8_lower(pc.utf8_trim_whitespace(pc.fill_null(values, ""))), r"[\s_]+", " ")

    def matches(pattern: re.Pattern[str]) -> pa.Array:
        return pc.match_substring_regex(key, pattern.pattern)

    symbol = pc.take(pa.array(list(_CALL_SYMBOLS.values())), pc.index_in(key, value_set=pa.array(list(_CALL_SYMBOLS))))
    null = pa.scalar(None, pa.string())
    call = pc.if_else(
        matches(_CALL_INVALID),
        pa.scalar("invalid"),
        pc.if_else(matches(_CALL_NEGATIVE), pa.scalar("not_detected"),
                   pc.if_else(matches(_CALL_POSITIVE), pa.scalar("detected"), symbol)),
    )
    return pc.if_else(pc.or_(matches(_CALL_NONE), pc.equal(key, "")), null, call)
