"""RFC 8785 JSON Canonicalization Scheme (JCS): one byte string per JSON value.

A signature covers bytes, not objects; JCS makes those bytes a function of the
object alone (key order, whitespace, number and string forms fixed), so any
party can re-serialise a result and check the JWS over it.

Rules implemented (RFC 8785 §3.2):
- no whitespace; object members sorted by their names as UTF-16 code units;
- strings as ECMAScript ``JSON.stringify`` writes them: only ``"``, ``\\`` and
  U+0000..U+001F escaped (``\\b \\t \\n \\f \\r`` short forms, others ``\\u00xx``
  lower-case), everything else literal UTF-8; lone surrogates are refused;
- numbers as IEEE-754 doubles in ECMAScript ``Number.prototype.toString`` form
  (shortest round-trip digits; exponent form below 1e-6 and from 1e21; ``-0`` →
  ``0``); NaN and infinities are refused, and so are integers that a double
  could not carry exactly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from engine.errors import SigningError

# The C-accelerated encoder of json with ensure_ascii=False escapes exactly the
# set JCS requires, with the same short forms and lower-case \u00xx.
_encode_string = getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring

_MAX_EXACT_INT = 2**53


def canonical_json(obj: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``obj`` (dict/list/tuple/str/int/float/bool/None)."""
    parts: list[str] = []
    _emit(obj, parts)
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SigningError(
            "a text field contains a lone UTF-16 surrogate, which JSON canonicalisation (RFC 8785) cannot represent"
        ) from exc


def _emit(obj: Any, parts: list[str]) -> None:
    if isinstance(obj, str):
        parts.append(_encode_string(obj))
    elif obj is None:
        parts.append("null")
    elif obj is True:
        parts.append("true")
    elif obj is False:
        parts.append("false")
    elif isinstance(obj, int):
        if -_MAX_EXACT_INT <= obj <= _MAX_EXACT_INT:
            parts.append(str(int(obj)))
        elif abs(obj) < 2**1024 and number_form(float(obj)) == str(obj):
            # Already in canonical form of a double (e.g. canonical JSON parsed back by Python).
            parts.append(str(obj))
        else:
            raise SigningError(
                f"integer {obj} is beyond 2**53 and would change value as a JSON number; send it as a string"
            )
    elif isinstance(obj, float):
        parts.append(number_form(obj))
    elif isinstance(obj, Mapping):
        items = []
        for key, value in obj.items():
            if not isinstance(key, str):
                raise SigningError(f"JSON object keys must be strings, got {type(key).__name__} {key!r}")
            items.append((key.encode("utf-16-be", "surrogatepass"), key, value))
        # Big-endian UTF-16 bytes compare exactly as the RFC's UTF-16 code units do.
        items.sort(key=lambda item: item[0])
        parts.append("{")
        first = True
        for _, key, value in items:
            if not first:
                parts.append(",")
            first = False
            parts.append(_encode_string(key))
            parts.append(":")
            _emit(value, parts)
        parts.append("}")
    elif isinstance(obj, (list, tuple)):
        parts.append("[")
        for i, value in enumerate(obj):
            if i:
                parts.append(",")
            _emit(value, parts)
        parts.append("]")
    else:
        # numpy scalars reach here from Arrow columns; accept them by value.
        item = getattr(obj, "item", None)
        if callable(item):
            value = item()
            if isinstance(value, (int, float, bool, str)) or value is None:
                _emit(value, parts)
                return
        raise SigningError(f"{type(obj).__name__} cannot be written as canonical JSON")


def number_form(value: float) -> str:
    """ECMAScript Number.prototype.toString of a double (RFC 8785 §3.2.2.3)."""
    if value != value or value in (float("inf"), float("-inf")):
        raise SigningError("NaN and infinity are not JSON numbers; write a Ct that did not amplify as null")
    if value == 0:
        return "0"  # also -0
    text = repr(value)  # Python's repr is the shortest round-tripping digit string, as ECMAScript's
    sign = ""
    if text[0] == "-":
        sign, text = "-", text[1:]
    mantissa, _, exp_text = text.partition("e")
    exponent = int(exp_text) if exp_text else 0
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + exponent  # the decimal point sits after `point` digits
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0") or "0"
    k, n = len(digits), point
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        body = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e >= 0 else "-") + str(abs(e))
    return sign + body
