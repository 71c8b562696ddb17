"""RFC 8785 JSON canonicalisation: the RFC's own examples plus properties."""

from __future__ import annotations

import json
import math
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import SigningError
from signing import canonical
from signing.canonical import canonical_json, number_form, reference_canonical_json

IMPLEMENTATIONS = pytest.mark.parametrize("encode", [canonical_json, reference_canonical_json], ids=["fast", "reference"])

# RFC 8785 Appendix B: IEEE-754 bit patterns and their ECMAScript serialisation.
RFC8785_NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "expected"), RFC8785_NUMBERS)
def test_rfc8785_appendix_b_number_forms(bits: str, expected: str) -> None:
    """Every IEEE-754 sample of RFC 8785 Appendix B serialises exactly as the RFC lists."""
    value = struct.unpack(">d", bytes.fromhex(bits))[0]
    assert number_form(value) == expected


@IMPLEMENTATIONS
def test_rfc8785_section_3_2_2_example(encode) -> None:
    """The RFC's §3.2.2 example (numbers, escapes, literals) canonicalises to the RFC's output."""
    source = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert encode(json.loads(source)) == expected.encode("utf-8")


@IMPLEMENTATIONS
def test_rfc8785_section_3_2_3_sorting_example(encode) -> None:
    """Property names sort by UTF-16 code units, as in the RFC's §3.2.3 example (emoji before U+FB33)."""
    source = {
        "€": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One", "😀": "Emoji: Grinning Face", "\u0080": "Control", "ö": "Latin Small Letter O With Diaeresis",
    }
    keys = list(json.loads(encode(source)))
    assert keys == ["\r", "1", "\u0080", "ö", "€", "😀", "\ufb33"]


@IMPLEMENTATIONS
def test_nan_infinity_and_huge_integers_are_refused(encode) -> None:
    """Values JSON cannot carry exactly (NaN, ±inf, integers beyond 2**53) raise SigningError."""
    for bad in (math.nan, math.inf, -math.inf, 2**53 + 1):
        with pytest.raises(SigningError):
            encode({"ct": bad})


@IMPLEMENTATIONS
def test_lone_surrogate_is_refused(encode) -> None:
    """A string with a lone UTF-16 surrogate, as a value or as a key, cannot be canonicalised and says so."""
    for bad in ({"name": "\ud800"}, {"\udc00": 1}):
        with pytest.raises(SigningError, match="surrogate"):
            encode(bad)


json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=25,
)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_canonical_json_is_idempotent(value: object) -> None:
    """Parsing canonical JSON and canonicalising again gives the same bytes."""
    once = canonical_json(value)
    assert canonical_json(json.loads(once)) == once


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=8), json_scalars, min_size=1, max_size=12), st.randoms(use_true_random=False))
def test_canonical_json_ignores_key_order(mapping: dict, rnd: random.Random) -> None:
    """The same members inserted in any order give identical bytes."""
    items = list(mapping.items())
    rnd.shuffle(items)
    assert canonical_json(dict(items)) == canonical_json(mapping)


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_number_form_round_trips_and_has_no_python_artefacts(value: float) -> None:
    """Every finite double serialises to text that parses back to the same double, without '.0' or 'e+0' forms; numpy's float64 alike."""
    import numpy as np

    text = number_form(value)
    assert number_form(np.float64(value)) == text
    assert float(text) == value
    assert not text.endswith(".0") and "e+0" not in text and "e-0" not in text and "E" not in text


@IMPLEMENTATIONS
def test_integral_floats_and_ints_serialise_alike(encode) -> None:
    """1.0 and 1 are the same JSON number, so both serialise as 1 (Ct values stay stable)."""
    assert encode([1.0, 1, -0.0, 37.5]) == b"[1,1,0,37.5]"


# ---- the fast path (C json encoder) against the reference implementation

# Doubles on both sides of every place where Python's repr and ECMAScript's form change shape.
_EDGES = [1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1.0, 1e15, 1e16, 2.0**52, 2.0**53, 1e21, 1e22, 5e-324, 1.7976931348623157e308]
edge_floats = st.sampled_from(_EDGES).flatmap(
    lambda x: st.sampled_from([x, math.nextafter(x, 0), math.nextafter(x, math.inf), -x, -math.nextafter(x, 0), -math.nextafter(x, math.inf)])
)
any_float = st.floats() | edge_floats | st.floats(min_value=0, max_value=60).map(lambda x: round(x, 2))
any_key = st.text(max_size=6) | st.sampled_from(["€", "😀", "\ufb33", "\U0001f600a", "\uffff", "\ud7ff", "\ue000"])
any_scalar = (
    st.none() | st.booleans() | st.integers() | st.integers(-(2**53) - 2, 2**53 + 2) | any_float | st.text()
    | st.sampled_from([2**60, -(2**70), 295147905179352825856])  # beyond 2**53; some already canonical doubles
)
any_value = st.recursive(
    any_scalar,
    lambda children: st.lists(children, max_size=5) | st.lists(children, max_size=3).map(tuple) | st.dictionaries(any_key, children, max_size=5),
    max_leaves=30,
)


def _outcome(encode, value: object) -> bytes | str:
    try:
        return encode(value)
    except SigningError as exc:
        return f"SigningError: {exc}"


@settings(max_examples=400, deadline=None)
@given(any_value)
def test_fast_path_writes_exactly_the_reference_bytes(value: object) -> None:
    """For any JSON value (numbers of every range, non-BMP keys, big integers, tuples), both implementations give the same bytes or the same error."""
    assert _outcome(canonical_json, value) == _outcome(reference_canonical_json, value)


@settings(max_examples=400, deadline=None)
@given(any_float)
def test_fast_path_numbers_match_the_reference(value: float) -> None:
    """Every double, alone and inside an object, serialises identically on the fast path and in the reference."""
    for wrapped in (value, [value], {"ct": value}):
        assert _outcome(canonical_json, wrapped) == _outcome(reference_canonical_json, wrapped)


def test_values_outside_the_fast_path_get_the_reference_bytes() -> None:
    """Other mappings, dict/str/int subclasses and numpy scalars are written exactly as the reference writes them."""
    import collections
    import enum
    import types

    import numpy as np

    class Code(enum.IntEnum):
        POSITIVE = 1

    class Word(str):
        pass

    value = {
        "proxy": types.MappingProxyType({"b": 1, "a": 2}), "ordered": collections.OrderedDict([("z", 0.5), ("y", 3.0)]),
        "enum": Code.POSITIVE, "word": Word("x\n"), "np": [np.float32(31.25), np.float64(1e-7), np.int64(7), np.bool_(True)],
    }
    expected = (b'{"enum":1,"np":[31.25,1e-7,7,true],"ordered":{"y":3,"z":0.5},"proxy":{"a":2,"b":1},"word":"x\\n"}')
    assert reference_canonical_json(value) == expected
    assert canonical_json(value) == expected


def test_fast_path_does_not_change_its_input() -> None:
    """Integral floats are written as integers from a copy; the caller's object keeps its floats."""
    value = {"ct": {"N": 31.0, "E": 28.5}, "pools": [[2.0, 0.5]], "t": (1.0,)}
    assert canonical_json(value) == b'{"ct":{"E":28.5,"N":31},"pools":[[2,0.5]],"t":[1]}'
    assert value == {"ct": {"N": 31.0, "E": 28.5}, "pools": [[2.0, 0.5]], "t": (1.0,)}
    assert type(value["ct"]["N"]) is float and type(value["pools"][0][0]) is float


def test_result_shaped_values_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A result-like object (Vietnamese text, nulls, rounded Cts, nested evidence) never needs the reference."""
    def refuse(obj: object) -> bytes:
        raise AssertionError("fell back to the reference implementation")

    value = {
        "person": {"full_name": "Nguyễn Văn An", "phone": None}, "version": 1, "supersedes": None,
        "evidence": {"pools": [{"well": "A1", "ct": {"N": 31.27, "ORF1ab": 30.0, "MS2": None}}], "ct": {"N": 31.27}},
        "test": {"pooled": True, "design": "dorfman:10"},
    }
    expected = reference_canonical_json(value)
    monkeypatch.setattr(canonical, "reference_canonical_json", refuse)
    assert canonical_json(value) == expected
