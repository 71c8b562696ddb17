"""Assay profiles: the shipped kits' rules, alias matching, run controls, profile choice."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import AssayError
from engine.model import well_table
from engine.rules.assays import (
    available_profiles,
    load_profile,
    normalise_target,
    profile_for,
)
from tests import shared

NAN = float("nan")
RUN = "a" * 64


def plate(tubes: list[tuple[str | None, str, str, dict[str, float]]], *, dyes: dict[str, str] | None = None, calls: dict[str, str] | None = None, assay: str | None = None):
    """A canonical well table from (well, sample, role, {target: ct}) tuples."""
    cols: dict[str, list] = {k: [] for k in ("run_id", "source", "line", "well", "sample_id", "role", "target", "dye", "ct", "call")}
    line = 0
    for well, sample, role, cts in tubes:
        for target, ct in cts.items():
            line += 1
            cols["run_id"].append(RUN)
            cols["source"].append("plate.csv")
            cols["line"].append(line)
            cols["well"].append(well)
            cols["sample_id"].append(sample)
            cols["role"].append(role)
            cols["target"].append(None if target.startswith("?") else target)
            cols["dye"].append((dyes or {}).get(target))
            cols["ct"].append(ct)
            cols["call"].append((calls or {}).get(f"{well}/{target}"))
    return well_table(cols, {"assay": assay} if assay else None)


def taqpath_tube(well: str, sample: str, orf: float, n: float, s: float, ms2: float, role: str = "sample"):
    return (well, sample, role, {"ORF1ab": orf, "N": n, "S": s, "MS2": ms2})


CONTROLS = [taqpath_tube("H11", "PC", 24, 25, 26, NAN, "pc"), taqpath_tube("H12", "NTC", NAN, NAN, NAN, NAN, "ntc")]


def test_shipped_profiles_load():
    """Every shipped TOML profile loads and names its kit, targets and cut-offs."""
    names = available_profiles()
    assert {"taqpath", "cdc-n1n2", "e-rdrp", "single"} <= set(names)
    for name in names:
        profile = load_profile(name)
        assert profile.name == name and profile.kit and profile.targets
        assert all(0 < c <= 45 for c in profile.cutoff.values())
    taqpath = load_profile("taqpath")
    assert taqpath.targets == ("ORF1ab", "N", "S")
    assert taqpath.cutoff == {"ORF1ab": 37.0, "N": 37.0, "S": 37.0, "MS2": 37.0}


@pytest.mark.parametrize(
    ("cts", "expected"),
    [
        ((25.0, 26.0, NAN, 28.0), "detected"),  # two targets
        ((25.0, 26.0, 27.0, NAN), "detected"),  # three targets, MS2 may fail on a strong positive
        ((NAN, 36.0, NAN, 28.0), "inconclusive"),  # one target
        ((NAN, NAN, NAN, 28.0), "not_detected"),
        ((NAN, NAN, NAN, NAN), "invalid"),  # MS2 failed and nothing amplified
        ((37.0, 37.0, NAN, 30.0), "detected"),  # the cut-off is inclusive
        ((37.01, 37.5, NAN, 30.0), "not_detected"),  # past the cut-off is not amplification
        ((NAN, NAN, NAN, 37.2), "invalid"),  # MS2 past its cut-off counts as failed
    ],
)
def test_taqpath_rule(cts, expected):
    """TaqPath: ≥2 of ORF1ab/N/S with Ct ≤ 37 detected, 1 inconclusive, none with MS2 not detected, else invalid."""
    tubes = load_profile("taqpath").interpret(plate([taqpath_tube("A1", "P1", *cts)]))
    assert tubes.column("outcome").to_pylist() == [expected]
    assert "taqpath" in tubes.column("rule")[0].as_py()


def test_interpret_columns_and_values():
    """interpret returns one row per well with ct_min over amplified viral targets and a target→Ct map."""
    tubes = load_profile("taqpath").interpret(plate([taqpath_tube("A1", "P1", 30.5, 28.25, NAN, 27.0), taqpath_tube("A2", "P2", NAN, NAN, NAN, 29.0)]))
    assert tubes.column_names == ["run_id", "well", "sample_id", "role", "outcome", "ct_min", "cts", "rule"]
    rows = tubes.to_pylist()
    assert [r["well"] for r in rows] == ["A1", "A2"]
    assert rows[0]["ct_min"] == pytest.approx(28.25)
    assert math.isnan(rows[1]["ct_min"])
    cts = dict(rows[0]["cts"])
    assert cts["ORF1ab"] == pytest.approx(30.5) and math.isnan(cts["S"]) and cts["MS2"] == pytest.approx(27.0)
    assert rows[0]["run_id"] == RUN and rows[0]["role"] == "sample"


def test_target_aliases_tolerate_instrument_spellings():
    """Case, punctuation and aliases ("ORF1a/b", "MS2 Phage", "n gene") map to the canonical targets."""
    table = plate([("B3", "P9", "sample", {"orf1a/b": 24.0, "n gene": NAN, "S Gene": 25.0, "MS2 Phage": 26.0})])
    row = load_profile("taqpath").interpret(table).to_pylist()[0]
    assert row["outcome"] == "detected"
    assert set(dict(row["cts"])) == {"ORF1ab", "N", "S", "MS2"}
    assert normalise_target(" ORF-1a/b ") == "orf1ab"


def test_dye_identifies_unnamed_targets():
    """A row with no target name is matched by its dye when the dye belongs to one target only."""
    table = plate([("A1", "P1", "sample", {"?a": 22.0, "?b": 23.0, "?c": NAN, "?d": 25.0})], dyes={"?a": "VIC", "?b": "ABY", "?c": "FAM", "?d": "JUN"})
    row = load_profile("taqpath").interpret(table).to_pylist()[0]
    assert row["outcome"] == "detected"
    assert dict(row["cts"])["N"] == pytest.approx(23.0)


def test_missing_target_reading_is_invalid_not_negative():
    """A tube lacking a viral target's row cannot be proven negative: it is invalid, with the reason."""
    table = plate([("A1", "P1", "sample", {"ORF1ab": NAN, "N": NAN, "MS2": 28.0})])
    row = load_profile("taqpath").interpret(table).to_pylist()[0]
    assert row["outcome"] == "invalid"
    assert "no reading" in row["rule"]


def test_instrument_invalid_flag_wins():
    """A well the instrument itself flagged invalid is invalid whatever its Cts say."""
    table = plate([taqpath_tube("A1", "P1", NAN, NAN, NAN, 28.0)], calls={"A1/MS2": "Invalid"})
    assert load_profile("taqpath").interpret(table).column("outcome").to_pylist() == ["invalid"]


def test_replicates_count_by_lowest_ct():
    """Two readings of one target in one well count by the lower Ct (amplified in any replicate)."""
    table = plate([("A1", "P1", "sample", {"ORF1ab": NAN, "N": 30.0, "S": NAN, "MS2": 28.0}), ("A1", "P1", "sample", {"ORF1ab": 31.0})])
    row = load_profile("taqpath").interpret(table).to_pylist()[0]
    assert row["outcome"] == "detected"


def test_cdc_singleplex_groups_wells_by_sample_and_cutoff_is_strict():
    """CDC N1/N2/RP reads one target per well: tubes are grouped by sample; Ct must be < 40.00."""
    table = plate(
        [
            ("A1", "S1", "sample", {"N1": 30.0}),
            ("B1", "S1", "sample", {"N2": 31.0}),
            ("C1", "S1", "sample", {"RP": 25.0}),
            ("A2", "S2", "sample", {"2019-nCoV_N1": 40.0}),
            ("B2", "S2", "sample", {"2019-nCoV_N2": NAN}),
            ("C2", "S2", "sample", {"RNase P": 26.0}),
            ("A3", "S3", "sample", {"N1": 35.0}),
            ("B3", "S3", "sample", {"N2": NAN}),
            ("C3", "S3", "sample", {"RP": 26.0}),
        ]
    )
    profile = load_profile("cdc-n1n2")
    tubes = profile.interpret(table)
    assert tubes.column("sample_id").to_pylist() == ["S1", "S2", "S3"]
    assert tubes.column("outcome").to_pylist() == ["detected", "not_detected", "inconclusive"]
    assert tubes.column("well").to_pylist()[0] == "A1"


def test_e_rdrp_and_single_profiles():
    """The E/RdRp kit needs both genes for detected; the single-target kit calls on its one target."""
    e_rdrp = load_profile("e-rdrp")
    table = plate([("A1", "P1", "sample", {"E gene": 30.0, "RdRP": 32.0, "IC": 28.0}), ("A2", "P2", "sample", {"E": 33.0, "RdRp": NAN, "Internal Control": 28.0})])
    assert e_rdrp.interpret(table).column("outcome").to_pylist() == ["detected", "inconclusive"]
    single = load_profile("single")
    table = plate([("A1", "P1", "sample", {"SARS-CoV-2": 39.0, "IC": 30.0}), ("A2", "P2", "sample", {"SARS-CoV-2": NAN, "IC": NAN})])
    assert single.interpret(table).column("outcome").to_pylist() == ["detected", "invalid"]


def test_control_failures_pass_on_good_run():
    """A run whose PC amplifies every target and whose NTC amplifies nothing has no control failures."""
    profile = load_profile("taqpath")
    tubes = profile.interpret(plate([taqpath_tube("A1", "P1", NAN, NAN, NAN, 28.0), *CONTROLS]))
    assert profile.control_failures(tubes) == []


def test_control_failures_name_well_target_and_action():
    """An amplified NTC and a PC missing a target each give a sentence naming the well, target and Ct."""
    profile = load_profile("taqpath")
    bad = [taqpath_tube("H11", "PC", 24, 25, 38.5, NAN, "pc"), taqpath_tube("H12", "NTC", NAN, 33.0, NAN, NAN, "ntc")]
    failures = profile.control_failures(profile.interpret(plate([taqpath_tube("A1", "P1", NAN, NAN, NAN, 28.0), *bad])))
    assert len(failures) == 2
    ntc = next(f for f in failures if "no-template" in f)
    assert "H12" in ntc and "N at Ct 33.00" in ntc and "repeat" in ntc
    pc = next(f for f in failures if "positive control" in f)
    assert "H11" in pc and "S (Ct 38.50, expected ≤ 37)" in pc


def test_control_failures_when_controls_missing():
    """A kit that requires an NTC and a PC fails a run that has neither."""
    profile = load_profile("taqpath")
    failures = profile.control_failures(profile.interpret(plate([taqpath_tube("A1", "P1", NAN, NAN, NAN, 28.0)])))
    assert any("no no-template control" in f for f in failures)
    assert any("no positive control" in f for f in failures)


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        (["ORF1ab", "N", "S", "MS2"], "taqpath"),
        (["ORF1a/b", "N gene", "S gene", "MS2 Phage"], "taqpath"),
        (["N1", "N2", "RP"], "cdc-n1n2"),
        (["E", "RdRp", "IC"], "e-rdrp"),
        (["SARS-CoV-2", "IC"], "single"),
        (["GAPDH"], "taqpath"),  # nothing fits: the default
    ],
)
def test_profile_for_picks_by_targets(targets, expected):
    """profile_for chooses the profile whose targets the run carries, else the default."""
    table = plate([("A1", "P1", "sample", {t: 30.0 for t in targets})])
    assert profile_for(table).name == expected


def test_interpret_refuses_a_run_of_another_assay():
    """Interpreting a run none of whose targets belong to the profile raises AssayError naming them."""
    with pytest.raises(AssayError, match="GAPDH"):
        load_profile("taqpath").interpret(plate([("A1", "P1", "sample", {"GAPDH": 20.0})]))


def test_load_profile_from_path_and_errors(tmp_path: Path):
    """A profile loads from a TOML path; malformed profiles and unknown names raise AssayError naming the file."""
    good = tmp_path / "mykit.toml"
    good.write_text('name = "mykit"\nkit = "My kit"\n[[targets]]\nname = "X"\ncutoff = 35\n[rule]\ndetected_min = 1\n', encoding="utf-8")
    profile = load_profile(good)
    assert profile.name == "mykit" and profile.cutoff == {"X": 35.0}
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nkit = "Bad"\n[[targets]]\nname = "X"\ncutoff = 500\n', encoding="utf-8")
    with pytest.raises(AssayError, match="bad.toml.*cutoff"):
        load_profile(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("name = ", encoding="utf-8")
    with pytest.raises(AssayError, match="broken.toml"):
        load_profile(broken)
    with pytest.raises(AssayError, match="available"):
        load_profile("no-such-kit")


def test_whole_plate_in_one_call():
    """A full 384-well TaqPath plate (4 targets per well) gives 384 tubes in well order."""
    rng = np.random.default_rng(1)
    tubes = []
    for i in range(384):
        well = f"{chr(65 + i // 24)}{i % 24 + 1}"
        cts = rng.choice([NAN, 20.0, 30.0, 36.0], size=3)
        tubes.append(taqpath_tube(well, f"P{i}", *cts, 28.0))
    out = load_profile("taqpath").interpret(plate(tubes))
    assert out.num_rows == 384
    assert out.column("well").to_pylist()[:2] == ["A1", "A2"]


ct_values = st.one_of(st.just(NAN), st.floats(min_value=10.0, max_value=45.0, allow_nan=False).map(lambda x: float(np.float32(x))))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(ct_values, ct_values, ct_values, ct_values), min_size=1, max_size=30))
def test_vectorized_rule_matches_per_tube_rule(rows):
    """The vectorized interpretation equals the TaqPath rule applied tube by tube in plain Python."""
    table = plate([taqpath_tube(f"A{i + 1}", f"P{i}", *cts) for i, cts in enumerate(rows)])
    got = load_profile("taqpath").interpret(table).column("outcome").to_pylist()

    def rule(orf: float, n: float, s: float, ms2: float) -> str:
        hits = sum(1 for c in (orf, n, s) if c == c and c <= 37.0)
        if hits >= 2:
            return "detected"
        if hits == 1:
            return "inconclusive"
        return "not_detected" if ms2 == ms2 and ms2 <= 37.0 else "invalid"

    assert got == [rule(*cts) for cts in rows]


FIXTURES = shared.REAL


def test_real_cobas_hl7_result_is_interpreted():
    """The real cobas 6800 HL7 SARS-CoV-2 message (calls, no Ct) picks the cobas profile and reads not detected."""
    from parsers import parse_file

    wells = parse_file(FIXTURES / "hl7_v2" / "hl7.txt")
    profile = profile_for(wells)
    assert profile.name == "cobas"
    tubes = profile.interpret(wells)
    assert tubes.column("sample_id").to_pylist() == ["TBY 7363"]
    assert tubes.column("outcome").to_pylist() == ["not_detected"]
    assert profile.control_failures(tubes) == []  # the instrument validates its own run controls


@pytest.mark.parametrize(
    ("calls", "expected"),
    [
        (("detected", "not_detected"), "detected"),  # Target 1 alone is SARS-CoV-2 specific
        (("not_detected", "detected"), "inconclusive"),  # Target 2 alone: presumptive positive
        (("detected", "detected"), "detected"),
        (("not_detected", "not_detected"), "not_detected"),
        (("invalid", "not_detected"), "invalid"),
    ],
)
def test_cobas_rule_uses_instrument_calls(calls, expected):
    """cobas: Target 1 detected → detected, Target 2 only → inconclusive, from the instrument's calls."""
    table = plate([(None, "X1", "sample", {"TGT1": NAN, "TGT2": NAN})], calls={"None/TGT1": calls[0], "None/TGT2": calls[1]})
    assert load_profile("cobas").interpret(table).column("outcome").to_pylist() == [expected]


def test_real_non_covid_run_is_refused():
    """A real QuantStudio run of another assay (3'UTR standard curve) is refused with its target named."""
    from parsers import parse_file

    wells = parse_file(FIXTURES / "quantstudio_txt" / "example_quantsudio_results_only.txt")
    with pytest.raises(AssayError, match="3'UTR"):
        profile_for(wells).interpret(wells)


def test_two_runs_in_one_table_are_kept_apart():
    """Tubes of different runs never merge, and each run's controls are judged on their own."""
    import pyarrow as pa

    good = plate([taqpath_tube("A1", "P1", NAN, NAN, NAN, 28.0), *CONTROLS])
    bad_tubes = [taqpath_tube("A1", "P1", 25.0, 26.0, NAN, 28.0), taqpath_tube("H11", "PC", 24, 25, 26, NAN, "pc"), taqpath_tube("H12", "NTC", 35.0, NAN, NAN, NAN, "ntc")]
    bad = plate(bad_tubes)
    bad = bad.set_column(0, good.schema.field("run_id"), pa.array(["b" * 64] * bad.num_rows))
    both = pa.concat_tables([good, bad])
    profile = load_profile("taqpath")
    tubes = profile.interpret(both)
    assert tubes.num_rows == 6
    assert tubes.column("outcome").to_pylist()[:1] + tubes.column("outcome").to_pylist()[3:4] == ["not_detected", "detected"]
    failures = profile.control_failures(tubes)
    assert len(failures) == 1 and failures[0].startswith("run bbbbbbbbbbbb") and "ORF1ab at Ct 35.00" in failures[0]
