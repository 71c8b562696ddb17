"""Well roles (specimen, NTC, positive/negative control, standard) from the words exports use.

Each instrument names a well's type or task in its own words (``Unkn``,
``NTC``, ``Pos Ctrl``, ``STANDARD``, Diomni's ``POSITIVE_CONTROL``), and labs
in Vietnam type plate maps in Vietnamese; one word table maps them all to a
:class:`~parsers.schema.Role`, so a new spelling is added once for every format.
:func:`roles_from_names` covers labs that leave every task "Unknown" and only
name the controls.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from parsers.columns import BY_DICTIONARY, string_array
from parsers.schema import Role

__all__ = ["normalise_role", "normalise_roles", "roles_from_names"]

_ROLE_WORDS: dict[str, Role] = {}


def _words(role: Role, *words: str) -> None:
    for w in words:
        _ROLE_WORDS[w] = role


# Instrument spellings (compared lower-case, spaces collapsed).
_words(Role.SAMPLE, "unkn", "unknown", "unk", "sample", "samples", "patient", "specimen", "pool", "u",
       "target", "endogenous control", "s")  # QuantStudio/SDS "Task" UNKNOWN/Target = a specimen
_words(Role.NTC, "ntc", "no template control", "no template", "non template control", "non-template control",
       "blank", "h2o", "water", "ntc control", "reagent blank", "nac")
_words(Role.PC, "pos ctrl", "pos ctl", "positive control", "positive", "pos", "pc", "ptc", "pos control",
       "ctrl+", "control+", "+ctrl", "positive ctrl", "hpc", "lpc", "high positive control", "low positive control",
       "positive template control")
_words(Role.NC, "neg ctrl", "neg ctl", "negative control", "negative", "neg", "nc", "neg control", "ctrl-",
       "control-", "-ctrl", "negative ctrl", "extraction control", "nec", "negative extraction control")
_words(Role.STD, "std", "standard", "standards", "std curve", "calibrator", "cal")
# Vietnamese lab words (plate maps typed on site): chứng = control, dương/âm = positive/negative.
_words(Role.PC, "chứng dương", "đối chứng dương", "mẫu chứng dương", "k+", "c+")
_words(Role.NC, "chứng âm", "đối chứng âm", "mẫu chứng âm", "k-", "c-")
_words(Role.SAMPLE, "mẫu", "mẫu bệnh phẩm", "bệnh phẩm", "mẫu gộp")

_ROLE_KEYS = pa.array(list(_ROLE_WORDS))
_ROLE_VALUES = pa.array([r.value for r in _ROLE_WORDS.values()])


def _role_key(value: str) -> str:
    return re.sub(r"[\s_]+", " ", value.strip().lower())


def normalise_role(value: str | None, default: Role = Role.UNKNOWN) -> Role:
    """An instrument's well type/task/content (``Unkn``, ``NTC``, ``Pos Ctrl``, ``STANDARD``, …) as a Role.

    Numbered variants (``Std-01``, ``PC 2``) count as their base word.
    """
    if value is None or not value.strip():
        return default
    key = _role_key(value)
    if key in _ROLE_WORDS:
        return _ROLE_WORDS[key]
    base = re.sub(r"[\s\-_#]*\d+$", "", key)
    return _ROLE_WORDS.get(base, default)


def normalise_roles(
    values: pa.Array | Sequence[str | None], default: Role = Role.UNKNOWN, *, empty: Role | None = None
) -> pa.Array:
    """Vectorised :func:`normalise_role`: a string array of Role values.

    Unrecognised words become ``default``; empty cells become ``empty`` (or ``default``).
    """
    values = string_array(values)
    if len(values) == 0:
        return pa.array([], type=pa.string())
    if len(values) >= BY_DICTIONARY:
        # Few distinct words (or sample names repeated per target): map each once.
        encoded = pc.dictionary_encode(pc.fill_null(values, ""))
        return normalise_roles(encoded.dictionary, default, empty=empty).take(encoded.indices)
    key = pc.utf8_lower(pc.utf8_trim_whitespace(pc.fill_null(values, "")))
    key = pc.replace_substring_regex(key, r"[\s_]+", " ")  # Diomni writes POSITIVE_CONTROL
    idx = pc.index_in(key, value_set=_ROLE_KEYS)
    base = pc.replace_substring_regex(key, r"[\s\-_#]*\d+$", "")
    idx = pc.coalesce(idx, pc.index_in(base, value_set=_ROLE_KEYS))
    roles = pc.fill_null(pc.take(_ROLE_VALUES, idx), default.value)
    if empty is not None and empty != default:
        roles = pc.if_else(pc.equal(key, ""), pa.scalar(empty.value), roles)
    return roles

def roles_from_names(role: pa.Array, sample: pa.Array) -> pa.Array:
    """Promote wells named like a control (``NTC``, ``PC``, ``Neg Ctrl``) to that role.

    Many labs leave the instrument's task/type as "Unknown" for every well and
    only name the controls; a well named ``NTC`` is the no-template control
    whatever its task says. Only sample/unknown wells are changed.
    """
    if len(role) == 0:
        return role
    by_name = normalise_roles(sample, default=Role.SAMPLE)
    controls = pc.is_in(by_name, value_set=pa.array([Role.NTC.value, Role.PC.value, Role.NC.value]))
    patient = pc.is_in(role, value_set=pa.array([Role.SAMPLE.value, Role.UNKNOWN.value]))
    return pc.if_else(pc.and_(controls, patient), by_name, role)
