"""Assay profiles: turn a run's per-target Ct values into one call per tube or pool.

A profile is data (``engine/rules/profiles/<name>.toml``): the kit's viral targets with
their dyes and Ct cut-offs, the internal control, the combination rule (how many
targets must amplify for ``detected`` / ``inconclusive``) and which run controls
the kit requires. :meth:`AssayProfile.interpret` applies it to a whole canonical
well table with Arrow compute and numpy — one pass over all rows, no loop per
well — and :meth:`AssayProfile.control_failures` says, in sentences a technician
can act on, why a run's controls do not let anything from it be signed.

Instruments spell targets differently ("ORF1ab", "ORF1a/b", "MS2 Phage"): names
are compared after case-folding and dropping everything but letters and digits,
against the canonical name plus the profile's ``aliases``. A row with no target
name falls back to its dye when that dye belongs to exactly one target.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.errors import AssayError
from engine.model import PoolOutcome, Role, run_metadata

__all__ = [
    "AssayProfile",
    "TUBE_SCHEMA",
    "available_profiles",
    "load_profile",
    "profile_for",
]

#: What :meth:`AssayProfile.interpret` returns: one row per tube/well (per sample for singleplex kits).
TUBE_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string()),
        pa.field("well", pa.string()),
        pa.field("sample_id", pa.string()),
        pa.field("role", pa.string()),
        pa.field("outcome", pa.string()),  # PoolOutcome value
        pa.field("ct_min", pa.float32()),  # lowest Ct among viral targets that count as amplified; NaN if none
        pa.field("cts", pa.map_(pa.string(), pa.float32())),  # canonical target -> Ct (NaN = not amplified)
        pa.field("rule", pa.string()),  # the rule applied, as evidence
    ]
)

_OUTCOME_WORDS = np.array(
    [PoolOutcome.NOT_DETECTED.value, PoolOutcome.DETECTED.value, PoolOutcome.INCONCLUSIVE.value, PoolOutcome.INVALID.value],
    dtype=object,
)
_NOT_DETECTED, _DETECTED, _INCONCLUSIVE, _INVALID = 0, 1, 2, 3


def normalise_target(name: str) -> str:
    """The comparison key of a target or dye name: case-folded letters and digits only."""
    return "".join(ch for ch in name.casefold() if ch.isalnum() and ch.isascii())


def _normalise_array(values: pa.Array) -> pa.Array:
    lowered = pc.utf8_lower(values.cast(pa.string()))
    return pc.replace_substring_regex(lowered, pattern=r"[^0-9a-z]+", replacement="")


@dataclass(frozen=True)
class Target:
    """One amplified sequence the kit reads: its canonical name, dye, Ct cut-off (cycles) and aliases."""

    name: str
    dye: str | None
    cutoff: float
    aliases: tuple[str, ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        """Normalised spellings that identify this target in an instrument file."""
        return tuple(dict.fromkeys(normalise_target(n) for n in (self.name, *self.aliases) if normalise_target(n)))


@dataclass(frozen=True)
class AssayProfile:
    """A kit's interpretation rule; build with :func:`load_profile`."""

    name: str
    kit: str
    viral: tuple[Target, ...]
    internal_control: Target | None
    detected_min: int
    inconclusive_min: int
    internal_control_when_negative: bool = True
    singleplex: bool = False
    strict_cutoff: bool = False
    require_ntc: bool = True
    require_pc: bool = True
    manufacturer: str = ""
    assay_names: tuple[str, ...] = ()
    source: str = ""
    trust_instrument_calls: bool = False
    detected_if_any: tuple[str, ...] = ()

    # -- the attributes docs/interfaces.md promises --------------------------------
    @property
    def targets(self) -> tuple[str, ...]:
        """Canonical names of the viral targets, in the profile's order."""
        return tuple(t.name for t in self.viral)

    @property
    def cutoff(self) -> dict[str, float]:
        """Ct cut-off (cycles) per canonical target, internal control included."""
        return {t.name: t.cutoff for t in self._all_targets}

    @property
    def _all_targets(self) -> tuple[Target, ...]:
        return self.viral + ((self.internal_control,) if self.internal_control else ())

    @property
    def rule_text(self) -> str:
        """The combination rule in words, quoted as evidence on every result."""
        op = "<" if self.strict_cutoff else "≤"
        names = "/".join(f"{t.name} Ct {op} {t.cutoff:g}" for t in self.viral)
        parts = [f"{self.name}: ≥{self.detected_min} of {names} → detected"]
        if self.detected_if_any:
            parts.append(f"{' or '.join(self.detected_if_any)} alone → detected")
        if self.inconclusive_min < self.detected_min:
            parts.append(f"≥{self.inconclusive_min} → inconclusive")
        if self.internal_control is not None:
            ic = self.internal_control
            parts.append(f"none with {ic.name} Ct {op} {ic.cutoff:g} → not_detected, else invalid")
        else:
            parts.append("none → not_detected")
        return "; ".join(parts)

    # -- matching ---------------------------------------------------------------------
    def _target_index(self, wells: pa.Table) -> np.ndarray:
        """Column index into ``_all_targets`` for every row, -1 where the row is not one of ours."""
        keys: list[str] = []
        index: list[int] = []
        for i, t in enumerate(self._all_targets):
            for k in t.keys:
                keys.append(k)
                index.append(i)
        lookup_idx = np.array(index + [-1], dtype=np.int64)
        names = wells.column("target").combine_chunks() if wells.num_rows else pa.array([], pa.string())
        pos = pc.index_in(_normalise_array(names), value_set=pa.array(keys, pa.string()))
        pos_np = pos.fill_null(len(keys)).to_numpy(zero_copy_only=False)
        result = lookup_idx[pos_np]
        # A row without a recognised target name may still be identified by its dye,
        # when the dye belongs to exactly one of the profile's targets.
        dyes = [normalise_target(t.dye) if t.dye else "" for t in self._all_targets]
        unique = [d for d in dyes if d and dyes.count(d) == 1]
        if unique and (result < 0).any():
            dye_idx = np.array([dyes.index(d) for d in unique] + [-1], dtype=np.int64)
            dcol = wells.column("dye").combine_chunks()
            dpos = pc.index_in(_normalise_array(dcol), value_set=pa.array(unique, pa.string()))
            by_dye = dye_idx[dpos.fill_null(len(unique)).to_numpy(zero_copy_only=False)]
            unnamed = pc.is_null(names).to_numpy(zero_copy_only=False) | (result < 0) & _is_blank(names)
            result = np.where(unnamed & (result < 0), by_dye, result)
        return result

    def matches(self, target_names: Iterable[str]) -> tuple[int, int]:
        """(viral targets found, all targets found) among ``target_names``: how well a run fits this kit."""
        found = {normalise_target(n) for n in target_names if n}
        viral = sum(1 for t in self.viral if found.intersection(t.keys))
        total = viral + (1 if self.internal_control and found.intersection(self.internal_control.keys) else 0)
        return viral, total

    # -- interpretation -----------------------------------------------------------------
    def interpret(self, wells: pa.Table) -> pa.Table:
        """One row per tube (well, or sample for singleplex kits) with its call under this profile.

        Replicate rows of one target in one tube count by their lowest Ct (a target
        amplified in any replicate is amplified). A tube lacking a viral target row
        cannot be proven negative and is ``invalid``; so is one the instrument itself
        flagged invalid.
        """
        if wells.num_rows == 0:
            return TUBE_SCHEMA.empty_table()
        tidx = self._target_index(wells)
        if not (tidx >= 0).any():
            seen = sorted({str(t) for t in pc.unique(wells.column("target").combine_chunks()).to_pylist() if t is not None})[:8]
            expected = ", ".join(t.name for t in self._all_targets)
            raise AssayError(
                f"none of the run's targets {seen} belong to assay profile '{self.name}' ({self.kit}); "
                f"expected {expected} or their aliases — choose the right profile or add the spelling to its aliases"
            )
        gid, first = _group_ids(wells, self.singleplex)
        n_groups = len(first)
        n_targets = len(self._all_targets)
        n_viral = len(self.viral)
        ct = wells.column("ct").combine_chunks().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        ours = tidx >= 0
        g, t = gid[ours], tidx[ours]
        ct_mat = np.full((n_groups, n_targets), np.inf, dtype=np.float32)
        np.fmin.at(ct_mat, (g, t), ct[ours])  # fmin ignores NaN, so a replicate that amplified wins
        present = np.zeros((n_groups, n_targets), dtype=bool)
        present[g, t] = True
        ct_mat[np.isinf(ct_mat)] = np.nan
        cut = np.array([tg.cutoff for tg in self._all_targets], dtype=np.float32)
        with np.errstate(invalid="ignore"):
            amplified = ct_mat < cut if self.strict_cutoff else ct_mat <= cut
        calls = wells.column("call").combine_chunks()
        has_calls = calls.null_count < len(calls)
        if self.trust_instrument_calls and has_calls:
            # Instruments that interpret (cobas over HL7/ASTM) often send the call without a Ct.
            said = pc.fill_null(pc.equal(pc.utf8_lower(calls), PoolOutcome.DETECTED.value), False).to_numpy(zero_copy_only=False)
            np.logical_or.at(amplified, (g, t), said[ours])
        n_pos = amplified[:, :n_viral].sum(axis=1)
        missing = ~present[:, :n_viral].all(axis=1)
        if self.internal_control is not None and self.internal_control_when_negative:
            ic_ok = amplified[:, n_viral]
        else:
            ic_ok = np.ones(n_groups, dtype=bool)
        flagged = np.zeros(n_groups, dtype=bool)
        if has_calls:
            bad = pc.fill_null(pc.equal(pc.utf8_lower(calls), "invalid"), False).to_numpy(zero_copy_only=False)
            np.logical_or.at(flagged, gid, bad)

        outcome = np.full(n_groups, _INVALID, dtype=np.int8)
        reason = np.full(n_groups, 3, dtype=np.int8)  # index into reasons below
        detected = n_pos >= self.detected_min
        if self.detected_if_any:
            sufficient = [i for i, tg in enumerate(self.viral) if tg.name in self.detected_if_any]
            detected |= amplified[:, sufficient].any(axis=1)
        inconclusive = ~detected & (n_pos >= self.inconclusive_min) & (n_pos > 0) & ~missing
        negative = (n_pos == 0) & ~missing & ic_ok
        outcome[detected] = _DETECTED
        reason[detected] = 0
        outcome[inconclusive] = _INCONCLUSIVE
        reason[inconclusive] = 1
        outcome[negative] = _NOT_DETECTED
        reason[negative] = 2
        reason[(outcome == _INVALID) & missing] = 4
        outcome[flagged] = _INVALID
        reason[flagged] = 5
        ic_name = self.internal_control.name if self.internal_control else "internal control"
        reasons = pa.array(
            [
                f"{self.rule_text} [detected]",
                f"{self.rule_text} [inconclusive]",
                f"{self.rule_text} [not_detected]",
                f"{self.rule_text} [invalid: no viral target and {ic_name} not amplified]",
                f"{self.rule_text} [invalid: a viral target has no reading in this tube]",
                f"{self.rule_text} [invalid: flagged invalid by the instrument]",
            ],
            pa.string(),
        )

        viral_amp = np.where(amplified[:, :n_viral], ct_mat[:, :n_viral], np.inf).min(axis=1)
        ct_min = np.where(np.isinf(viral_amp), np.nan, viral_amp).astype(np.float32)
        names = np.array([tg.name for tg in self._all_targets], dtype=object)
        flat = present.ravel()
        keys = pa.array(np.tile(names, n_groups)[flat], pa.string())
        items = pa.array(ct_mat.ravel()[flat], pa.float32())
        offsets = pa.array(np.concatenate([[0], np.cumsum(present.sum(axis=1))]).astype(np.int32))
        cts = pa.MapArray.from_arrays(offsets, keys, items, type=pa.map_(pa.string(), pa.float32()))

        first_arr = pa.array(first)
        role = wells.column("role").combine_chunks()
        if pa.types.is_dictionary(role.type):
            role = role.cast(pa.string())
        columns = [
            pc.take(wells.column("run_id").combine_chunks(), first_arr).cast(pa.string()),
            pc.take(wells.column("well").combine_chunks(), first_arr).cast(pa.string()),
            pc.take(wells.column("sample_id").combine_chunks(), first_arr).cast(pa.string()),
            pc.take(role, first_arr),
            pa.array(_OUTCOME_WORDS[outcome], pa.string()),
            pa.array(ct_min, pa.float32()),
            cts,
            pc.take(reasons, pa.array(reason)),
        ]
        return pa.Table.from_arrays(columns, schema=TUBE_SCHEMA)

    def control_failures(self, tubes: pa.Table) -> list[str]:
        """One readable sentence per failed run control; empty when the run's controls pass.

        NTC and extraction negative controls must not amplify any viral target; the
        positive control must amplify every viral target within its cut-off. A kit
        that requires a control fails a run that has none. Runs are checked separately.
        """
        failures: list[str] = []
        if tubes.num_rows == 0:
            return failures
        roles = tubes.column("role").to_pylist()
        run_ids = tubes.column("run_id").to_pylist()
        op = "<" if self.strict_cutoff else "≤"
        control_rows = [i for i, r in enumerate(roles) if r in (Role.NTC.value, Role.PC.value, Role.NC.value)]
        sub = tubes.take(pa.array(control_rows, pa.int64())).to_pylist() if control_rows else []
        for run in dict.fromkeys(run_ids):
            rows = [r for r in sub if r["run_id"] == run]
            label = f"run {run[:12]}" if run else "the run"
            for role, need, word in ((Role.NTC.value, self.require_ntc, "no-template control (NTC)"), (Role.PC.value, self.require_pc, "positive control (PC)")):
                if need and not any(r["role"] == role for r in rows):
                    failures.append(f"{label}: no {word} well was found; the {self.kit} requires one per plate — nothing from this run can be signed")
            for r in rows:
                where = f"{label}, well {r['well'] or '?'} ('{r['sample_id'] or ''}')"
                cts = dict(r["cts"] or [])
                if r["role"] in (Role.NTC.value, Role.NC.value):
                    hits = [
                        f"{t.name} at Ct {cts[t.name]:.2f}"
                        for t in self.viral
                        if t.name in cts and cts[t.name] == cts[t.name] and self._amplified(cts[t.name], t.cutoff)
                    ]
                    if hits:
                        kind = "no-template control" if r["role"] == Role.NTC.value else "negative extraction control"
                        failures.append(
                            f"{where}: the {kind} amplified {', '.join(hits)}; the run may be contaminated — repeat it, nothing from it can be signed"
                        )
                else:
                    misses = []
                    for t in self.viral:
                        value = cts.get(t.name)
                        if value is None:
                            misses.append(f"{t.name} (no reading)")
                        elif value != value:
                            misses.append(f"{t.name} (not amplified)")
                        elif not self._amplified(value, t.cutoff):
                            misses.append(f"{t.name} (Ct {value:.2f}, expected {op} {t.cutoff:g})")
                    if misses:
                        failures.append(
                            f"{where}: the positive control did not amplify {', '.join(misses)}; check the control and reagents and repeat the run"
                        )
        return failures

    def _amplified(self, ct: float, cutoff: float) -> bool:
        return ct < cutoff if self.strict_cutoff else ct <= cutoff


def _is_blank(values: pa.Array) -> np.ndarray:
    stripped = pc.utf8_trim_whitespace(values.cast(pa.string()))
    return pc.fill_null(pc.equal(stripped, ""), True).to_numpy(zero_copy_only=False)


def _group_ids(wells: pa.Table, singleplex: bool) -> tuple[np.ndarray, np.ndarray]:
    """Tube id per row (in order of first appearance) and the first row of each tube.

    Multiplex kits read every target from one well: a tube is (run, well, sample).
    Singleplex kits (CDC panel) put each target in its own well: a tube is
    (run, sample), falling back to the well when the sample has no name.
    """
    run = wells.column("run_id").combine_chunks().cast(pa.string())
    well = pc.fill_null(wells.column("well").combine_chunks().cast(pa.string()), "")
    sample = pc.fill_null(wells.column("sample_id").combine_chunks().cast(pa.string()), "")
    if singleplex:
        blank = pc.equal(sample, "")
        sample_or_well = pc.if_else(blank, pc.binary_join_element_wise("~well", well, ""), sample)
        key = pc.binary_join_element_wise(run, sample_or_well, "\x1f")
    else:
        key = pc.binary_join_element_wise(run, well, sample, "\x1f")
    encoded = pc.dictionary_encode(key)
    gid = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    _, first = np.unique(gid, return_index=True)
    return gid, first.astype(np.int64)


# -- loading ------------------------------------------------------------------------------


def available_profiles() -> list[str]:
    """Names of the profiles shipped in ``engine/rules/profiles``."""
    folder = resources.files("engine.rules") / "profiles"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_profile(name_or_path: str | Path) -> AssayProfile:
    """A shipped profile by name (``taqpath``) or a profile TOML file by path."""
    text = str(name_or_path)
    path = Path(text)
    if text.endswith(".toml") or path.exists():
        if not path.is_file():
            raise AssayError(f"assay profile file {path} does not exist")
        return _load_file(str(path.resolve()))
    if text not in available_profiles():
        raise AssayError(f"unknown assay profile '{text}'; available: {', '.join(available_profiles())}, or give a .toml path")
    return _load_shipped(text)


@functools.lru_cache(maxsize=32)
def _load_shipped(name: str) -> AssayProfile:
    data = (resources.files("engine.rules") / "profiles" / f"{name}.toml").read_bytes()
    return _from_toml(data, f"engine/rules/profiles/{name}.toml")


@functools.lru_cache(maxsize=32)
def _load_file(path: str) -> AssayProfile:
    return _from_toml(Path(path).read_bytes(), path)


def _from_toml(data: bytes, source: str) -> AssayProfile:
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise AssayError(f"{source}: not a valid TOML assay profile ({exc})") from exc

    def need(table: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
        if key not in table:
            raise AssayError(f"{source}: '{where}{key}' is missing")
        value = table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind):
            raise AssayError(f"{source}: '{where}{key}' must be a {kind.__name__}, got {value!r}")
        return value

    def target(table: Mapping[str, Any], where: str) -> Target:
        cutoff = need(table, "cutoff", float, where)
        if not 0 < cutoff <= 60:
            raise AssayError(f"{source}: '{where}cutoff' = {cutoff} is not a plausible Ct cut-off (cycles, 0–60)")
        aliases = table.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise AssayError(f"{source}: '{where}aliases' must be a list of strings")
        return Target(need(table, "name", str, where), table.get("dye"), cutoff, tuple(aliases))

    raw_targets = doc.get("targets")
    if not isinstance(raw_targets, list) or not raw_targets:
        raise AssayError(f"{source}: at least one [[targets]] table is required")
    viral = tuple(target(t, f"targets[{i}].") for i, t in enumerate(raw_targets))
    ic = target(doc["internal_control"], "internal_control.") if "internal_control" in doc else None
    rule = doc.get("rule", {})
    detected_min = int(rule.get("detected_min", 1))
    inconclusive_min = int(rule.get("inconclusive_min", detected_min))
    if not 1 <= inconclusive_min <= detected_min <= len(viral):
        raise AssayError(
            f"{source}: rule needs 1 ≤ inconclusive_min ({inconclusive_min}) ≤ detected_min ({detected_min}) ≤ number of targets ({len(viral)})"
        )
    keys = [k for t in viral + ((ic,) if ic else ()) for k in t.keys]
    clashes = sorted({k for k in keys if keys.count(k) > 1})
    if clashes:
        raise AssayError(f"{source}: target names/aliases {clashes} are used by more than one target")
    reactions = doc.get("reactions", "multiplex")
    if reactions not in ("multiplex", "singleplex"):
        raise AssayError(f"{source}: 'reactions' must be 'multiplex' or 'singleplex', got {reactions!r}")
    controls = doc.get("controls", {})
    sufficient = rule.get("detected_if_any", [])
    names = {t.name for t in viral}
    if not isinstance(sufficient, list) or any(n not in names for n in sufficient):
        raise AssayError(f"{source}: 'rule.detected_if_any' must list viral target names among {sorted(names)}")
    return AssayProfile(
        name=need(doc, "name", str, ""),
        kit=need(doc, "kit", str, ""),
        viral=viral,
        internal_control=ic,
        detected_min=detected_min,
        inconclusive_min=inconclusive_min,
        internal_control_when_negative=bool(rule.get("internal_control_when_negative", ic is not None)),
        singleplex=reactions == "singleplex",
        strict_cutoff=bool(doc.get("strict_cutoff", False)),
        require_ntc=bool(controls.get("require_ntc", True)),
        require_pc=bool(controls.get("require_pc", True)),
        manufacturer=str(doc.get("manufacturer", "")),
        assay_names=tuple(str(a) for a in doc.get("assay_names", [])),
        source=source,
        trust_instrument_calls=bool(doc.get("trust_instrument_calls", False)),
        detected_if_any=tuple(sufficient),
    )


def profile_for(wells: pa.Table, default: str = "taqpath") -> AssayProfile:
    """The shipped profile that fits a run, chosen by the run's target names.

    A profile qualifies when every one of its viral targets appears in the run;
    among those the one explaining the most of the run's targets wins (TaqPath
    over the generic single-target profile on an ORF1ab/N/S/MS2 run). The assay
    name the instrument wrote breaks ties; ``default`` is used when nothing fits.
    """
    names = [n for n in pc.unique(wells.column("target").combine_chunks()).to_pylist() if n]
    assay = run_metadata(wells).get("assay", "").casefold()
    best: tuple[int, int, int, int] | None = None
    chosen = default
    for name in available_profiles():
        profile = load_profile(name)
        viral, total = profile.matches(names)
        if viral < len(profile.viral):
            continue
        named = int(bool(assay) and any(a.casefold() in assay for a in profile.assay_names))
        score = (total, named, int(name == default), len(profile.viral))
        if best is None or score > best:
            best, chosen = score, name
    return load_profile(chosen)
