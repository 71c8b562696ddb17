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

Two implementations, one output. :func:`reference_canonical_json` writes the
rules above member by member in Python; it is the specification in code and
handles every input. :func:`canonical_json` first tries the C ``json``
encoder, which already writes JCS whitespace, string escapes and literals, and
whose ``sort_keys`` order equals UTF-16 code-unit order when no key holds a
character beyond U+FFFF. What the C encoder cannot be trusted with is numbers:
it writes floats with Python's ``repr`` (``1.0``, ``1e-05``, ``1e+16``), so a
value is taken by the fast path only when ``repr`` already is the ECMAScript
form (a non-integral double of magnitude ≥ 1e-4: both write plain decimals of
the same shortest digits there) or when it is an integral double up to 2**53,
which becomes the int of the same value. Anything else (other number ranges,
non-BMP keys, non-dict mappings, subclasses, numpy scalars) goes to the
reference, so the fast path only ever changes speed. Property tests hold the
two to identical bytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from signing.errors import SigningError

# The C-accelerated encoder of json with ensure_ascii=False escapes exactly the
# set JCS requires, with the same short forms and lower-case \u00xx.
_encode_string = getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring

_MAX_EXACT_INT = 2**53
# Smallest magnitude at which Python's float repr stops using exponent form
# (repr switches to 'e' when the decimal exponent is below -4); ECMAScript's
# switch is at 1e-6, so from here up both write the same plain decimal.
_MIN_PLAIN_REPR = 1e-4

_c_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False, check_circular=False)


class _NeedsReference(Exception):
    """Raised inside the fast path's check when a value must go through the reference implementation."""


def canonical_json(obj: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``obj`` (dict/list/tuple/str/int/float/bool/None)."""
    try:
        prepared = _prepare(obj)
    except _NeedsReference:
        return reference_canonical_json(obj)
    try:
        return _c_encoder.encode(prepared).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SigningError(
            "a text field contains a lone UTF-16 surrogate, which JSON canonicalisation (RFC 8785) cannot represent"
        ) from exc


def _prepare(obj: Any) -> Any:
    """``obj`` ready for the C encoder (integral floats as ints), or :class:`_NeedsReference`.

    Containers are copied only when something inside them changed, so the
    usual payload (no integral floats) is checked without being rebuilt.
    """
    kind = type(obj)
    if kind is str or kind is bool or obj is None:
        return obj
    if kind is dict:
        try:
            names = "".join(obj)  # TypeError for a non-string key
        except TypeError:
            raise _NeedsReference from None
        if not names.isascii() and max(names) > "\uffff":
            raise _NeedsReference  # beyond the BMP, code-point order differs from UTF-16 order
        changed: dict[str, Any] | None = None
        for key, value in obj.items():
            vkind = type(value)
            if vkind is str or value is None or vkind is bool:
                continue
            new = _prepare(value)
            if new is not value:
                if changed is None:
                    changed = {}
                changed[key] = new
        return obj if changed is None else {**obj, **changed}
    if kind is list or kind is tuple:
        out: list[Any] | None = None
        for i, value in enumerate(obj):
            vkind = type(value)
            if vkind is str or value is None or vkind is bool:
                continue
            new = _prepare(value)
            if new is not value:
                if out is None:
                    out = list(obj)
                out[i] = new
        return obj if out is None else out
    if kind is int:
        if -_MAX_EXACT_INT <= obj <= _MAX_EXACT_INT:
            return obj
        raise _NeedsReference
    if kind is float:
        if obj.is_integer():
            if -_MAX_EXACT_INT <= obj <= _MAX_EXACT_INT:
                return int(obj)  # also -0.0 → 0
            raise _NeedsReference
        # Non-integral doubles are all below 2**52; the upper bound keeps out ±inf, and NaN fails both.
        if _MIN_PLAIN_REPR <= abs(obj) < _MAX_EXACT_INT:
            return obj
        raise _NeedsReference
    raise _NeedsReference


def reference_canonical_json(obj: Any) -> bytes:
    """RFC 8785 bytes written rule by rule in Python: the reference the fast path is tested against."""
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
    # Python's float repr is the shortest round-tripping digit string, as ECMAScript's. Called on
    # float itself: a subclass (numpy's float64 from Arrow columns) reprs as "np.float64(...)".
    text = float.__repr__(float(value))
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
