"""Truncation corpus: every supported format's files cut at byte offsets are never read as whole.

For each file of tests/data (always) and ../shared/fixtures/real (skipped when
absent): (a) the whole file is complete and parses; (b) prefixes cut at every
line end (small files) and at seeded random byte offsets: every prefix that
loses non-whitespace content is reported incomplete by ``parsers.incomplete``
and refused by ``parse_bytes`` with TruncatedError, unless it falls in a class
no structural marker can reveal, which is then proved harmless through the
parse. Those classes, all cuts exactly at a record (line) end:

- a prefix so short that no sniffer recognises it (only ``* key = value``
  header lines, say): refused as "not a recognised analyzer export", never
  parsed, so nothing is signed, but the reason is not "truncated";
- tables that state no row count (QuantStudio, CFX, SDS, Rotor-Gene, a
  single-channel LightCycler export, the results-metadata block or SDS plate
  trailer after a table, several whole ASTM messages, an HL7 order without a
  closing segment): the prefix parses to a subset of the whole file's rows,
  each row identical (same well, sample, target, Ct, call, line), so no value
  is altered; only wells/records after the cut are missing.

Zip formats (RDML archives, xlsx) and bare RDML XML have no undetectable cut:
the test requires every cut to be caught there. The counts are printed
(``pytest -s``) and checked: a cut reported complete is never a mid-line cut.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import pytest

from engine.errors import ParseError, TruncatedError
from parsers import incomplete, parse_bytes
from parsers.generic_csv import MAPPING_ENV
from tests.parsers.helpers import DATA, REAL

#: Bytes that carry no content: losing only these is not a cut.
_NOTHING = b" \t\r\n\x00\x04\x05\x06\x1c"
#: Formats where a cut exactly at a record end can go unnoticed (see the module docstring).
_LINE_END_UNDETECTABLE = {"quantstudio", "cfx", "sds", "rotorgene", "lightcycler", "astm", "hl7v2", "generic-csv", "m2000"}
_ROW_FIELDS = ("well", "sample_id", "role", "target", "dye", "ct", "call", "line")


def _local_files() -> list[tuple[Path, str | None]]:
    files: list[tuple[Path, str | None]] = []
    for path in sorted(DATA.iterdir()):
        if path.suffix in (".toml", ".py") or path.name.startswith("manifest"):  # settings, generators, manifests
            continue
        if path.is_dir():  # refused/: layouts the parsers must refuse, tested by their own tests
            continue
        files.append((path, "generic-csv" if path.name.startswith("generic_csv") else None))
    return files


def _real_files() -> list[Path]:
    if not REAL.is_dir():
        return []
    return sorted(p for p in REAL.rglob("*") if p.is_file() and p.name != "SOURCES.md")


def _rows(table) -> Counter:  # noqa: ANN001 - a pyarrow Table
    return Counter(tuple(repr(r[k]) for k in _ROW_FIELDS) for r in table.to_pylist())


def _offsets(data: bytes, seed: int, random_cuts: int = 120) -> list[int]:
    """Every line end (files under 64 KiB; one in N above) plus seeded random offsets and the last few bytes."""
    ends = [i + 1 for i, b in enumerate(data) if b in (0x0A, 0x0D)]
    if len(data) > 65536:
        ends = ends[:: max(1, len(ends) // 200)]
    rng = random.Random(seed)
    cuts = set(ends) | {rng.randrange(1, len(data)) for _ in range(random_cuts)} | set(range(max(1, len(data) - 40), len(data)))
    return sorted(c for c in cuts if 0 < c < len(data))


TOTALS: Counter = Counter()


def _check_file(path: Path, fmt: str | None, monkeypatch: pytest.MonkeyPatch) -> Counter:
    if fmt == "generic-csv":
        monkeypatch.setenv(MAPPING_ENV, str(DATA / "generic_csv_vi_wide.toml"))
    data = path.read_bytes()
    assert incomplete(data, path.name, fmt) is None, f"{path.name}: the whole file must be complete"
    whole = parse_bytes(data, path.name, fmt)
    whole_rows = _rows(whole)
    name = fmt or whole.schema.metadata[b"format"].decode()
    counts: Counter = Counter()
    for cut in _offsets(data, seed=len(data)):
        prefix = data[:cut]
        if not data[cut:].strip(_NOTHING):
            counts["whitespace-only"] += 1
            continue
        counts["tried"] += 1
        why = incomplete(prefix, path.name, fmt)
        if why is not None:
            assert isinstance(why, str) and len(why) > 10
            with pytest.raises(TruncatedError, match="appears truncated"):
                parse_bytes(prefix, path.name, fmt)
            counts["truncated"] += 1
            continue
        # Reported complete: only a cut exactly at a record end may be (what it lost of its last line is only
        # trailing whitespace), and only where the format states no count.
        rest = re.split(rb"\r|\n", data[cut:], maxsplit=1)[0]
        at_line_end = prefix.endswith((b"\n", b"\r", b"\n\x00", b"\r\x00", b"\x03"))
        assert at_line_end or not rest.strip(_NOTHING), (
            f"{path.name}: a cut at byte {cut} in the middle of a line was reported complete")
        try:
            table = parse_bytes(prefix, path.name, fmt)
        except TruncatedError:  # pragma: no cover - incomplete() said whole, so parse_bytes agrees
            raise
        except ParseError:
            counts["refused"] += 1  # never parsed, never signed (unrecognised, or the parser's own check)
            continue
        assert name in _LINE_END_UNDETECTABLE, f"{path.name}: a cut at byte {cut} was not detected ({name})"
        rows = _rows(table)
        extra = rows - whole_rows
        if extra and name == "hl7v2":
            # ORU^R01 v2.5.1 puts SPM after its OBX: cut before it, the order falls back to the OBR order
            # number. Known gap (one order, nothing to compare with): that id is no specimen of the file.
            whole_ids = {repr(r["sample_id"]) for r in whole.to_pylist()}
            assert all(k[1] not in whole_ids for k in extra), f"{path.name}: cut at {cut} gave a specimen a wrong value"
            counts["undetectable-hl7-order-id"] += 1
            continue
        assert not extra, f"{path.name}: the prefix cut at byte {cut} gave rows the whole file does not have"
        counts["undetectable-subset"] += 1
    return counts


@pytest.mark.slow
@pytest.mark.parametrize(("path", "fmt"), _local_files(), ids=lambda v: v.name if isinstance(v, Path) else str(v))
def test_project_fixtures_cut_anywhere_are_never_taken_whole(path: Path, fmt: str | None,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Each tests/data export: whole is complete; every cut is truncated, refused, or an exact-row subset."""
    counts = _check_file(path, fmt, monkeypatch)
    TOTALS.update(counts)
    print(f"\n{path.name}: {dict(counts)}")
    assert counts["tried"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("path", _real_files() or [None], ids=lambda v: v.name if isinstance(v, Path) else "absent")
def test_real_fixtures_cut_anywhere_are_never_taken_whole(path: Path | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each real instrument file: whole is complete; every cut is truncated, refused, or an exact-row subset."""
    if path is None:
        pytest.skip("../shared/fixtures is absent (real instrument files)")
    counts = _check_file(path, None, monkeypatch)
    TOTALS.update(counts)
    print(f"\n{path.name}: {dict(counts)}")
    assert counts["tried"] > 0


def test_utf16_line_end_is_a_code_unit() -> None:
    """A UTF-16 CFX export ends with CR LF as code units; a cut between the two bytes of one is incomplete."""
    data = (DATA / "cfx_utf16.txt").read_bytes()
    assert data.endswith(b"\r\x00\n\x00") and incomplete(data, "cfx.txt") is None
    assert "middle of a character" in incomplete(data[:-1], "cfx.txt")
    assert "middle of a line" in incomplete(data[:-4] + b"1\x00", "cfx.txt")


def test_writers_that_omit_the_last_line_end_are_judged_by_structure() -> None:
    """Rotor-Gene, SDS 2.x and LightCycler leave the last line unterminated: padding/position decide instead."""
    if not REAL.is_dir():
        pytest.skip("../shared/fixtures is absent (real instrument files)")
    for rel in ("rotorgene_q_csv/irregular_multi_assay.csv", "abi_sds_txt/SDS_sample.txt",
                "lightcycler480_txt/LightCycler_sample.txt"):
        data = (REAL / rel).read_bytes()
        assert data[-1:] not in (b"\r", b"\n") and incomplete(data, rel) is None
        assert incomplete(data[:-1], rel) is not None


def test_wells_by_targets_group_cut_at_a_line_end() -> None:
    """A QuantStudio export cut at a line end inside a well's target rows names the well and the plate."""
    data = (DATA / "quantstudio_7500_results.txt").read_bytes()
    cut = data[: data.rindex(b"H12\tNTC\tS gene")]
    assert incomplete(cut, "qs.txt") == (
        "the [Results] table stops at well H12 of a 96-well plate: that well has 2 of the 4 target rows the other wells have")


def test_astm_and_hl7_structure_sentences() -> None:
    """A framed ASTM capture cut between frames, and an HL7 file cut after its OBR, say what is missing."""
    astm = (DATA / "astm_cobas_sars2_framed.txt").read_bytes()
    before_l = astm[: astm.rindex(b"\x02")]
    assert incomplete(before_l, "a.txt").startswith("the ASTM message has no terminator record (L)")
    hl7 = (DATA / "hl7_cobas_oru_r01.hl7").read_bytes()
    after_obr = hl7[: hl7.rindex(b"OBX|1|")]
    assert "stops after its OBR segment" in incomplete(after_obr, "h.hl7")
    mid_order = hl7[: hl7.rindex(b"OBX|3|")]
    assert "every other order in the file ends with SPM" in incomplete(mid_order, "h.hl7")


# ---------------------------------------------------------------------------
# End to end: the incident of issue 12 through Engine.run_once
# ---------------------------------------------------------------------------


def _controls_first_export(seed: int) -> tuple[bytes, bytes, int]:
    """A simulated QuantStudio plate with its control rows first (manifest, whole export, Ct offset of the last row).

    The last row's CT is set to 23.948 so that cutting the file after "23.9" reproduces the incident.
    """
    from engine.demo import manifest_csv, quantstudio_text, simulate_plate

    plate = simulate_plate(seed, pool_size=2, prevalence=0.1)
    lines = quantstudio_text(plate).decode("utf-8").split("\r\n")
    assert lines[-1] == ""
    header = next(i for i, line in enumerate(lines) if line.startswith("Well\t"))
    pools = {row["pool_id"] for row in plate.manifest}
    rows = lines[header + 1 : -1]
    controls = [r for r in rows if r.split("\t")[3] not in pools]
    specimens = [r for r in rows if r.split("\t")[3] in pools]
    assert controls and specimens
    last = specimens[-1].split("\t")
    ct = lines[header].split("\t").index("CT")
    last[ct] = "23.948"
    specimens[-1] = "\t".join(last)
    text = "\r\n".join(lines[: header + 1] + controls + specimens) + "\r\n"
    data = text.encode("utf-8")
    offset = data.rindex(b"23.948")
    return manifest_csv(plate.manifest), data, offset


def _run(data_dir, manifest: bytes, export: bytes):  # noqa: ANN001, ANN202 - DataDir, Summary
    from engine.files import write_atomically
    from engine.pipeline.engine import Engine

    write_atomically(data_dir.inbox / "m.csv", manifest)
    write_atomically(data_dir.inbox / "plate.txt", export)
    with Engine(data_dir, workers=0, certificates=False) as engine:
        summary = engine.run_once()
        states = {r["name"]: r["state"] for r in engine.ledger.files()}
        reasons = {e["detail"]["copy"]: e["detail"]["reason"] for e in engine.ledger.events(kind="quarantined")}
        results = len(engine.ledger.results())
    return summary, states, reasons, results


def test_incident_last_ct_cut_is_quarantined_and_signs_nothing(data_dir) -> None:  # noqa: ANN001 - DataDir
    """Issue 12: controls first, the last Ct cut 23.948 → 23.9 without a line end: quarantined, nothing signed."""
    manifest, whole, offset = _controls_first_export(21)
    cut = whole[: offset + len(b"23.9")]
    summary, states, reasons, results = _run(data_dir, manifest, cut)
    assert summary.signed == 0 and results == 0
    assert states["plate.txt"] == "quarantined" and reasons == {"plate.txt": "truncated"}
    report = (data_dir.quarantine / "plate.txt.error.txt").read_text(encoding="utf-8")
    assert "appears truncated" in report and "23.9'" in report and "Export the run again" in report


def test_incident_export_whole_signs(data_dir) -> None:  # noqa: ANN001 - DataDir
    """The same controls-first export, whole, is signed: the cut, not the ordering, is what is refused."""
    manifest, whole, _ = _controls_first_export(21)
    summary, states, _, results = _run(data_dir, manifest, whole)
    assert states["plate.txt"] == "done" and summary.signed > 0 and results == summary.signed


@pytest.mark.slow
def test_engine_cut_exports_sign_nothing(data_dir) -> None:  # noqa: ANN001 - DataDir
    """Cut at seeded random offsets inside the [Results] rows (never at a line end) and run through the engine: 0 signed."""
    from engine.files import write_atomically
    from engine.pipeline.engine import Engine

    manifest, whole, _ = _controls_first_export(22)
    start = whole.index(b"[Results]")
    rng = random.Random(12)
    cuts = sorted({rng.randrange(start, len(whole) - 2) for _ in range(12)})
    cuts = [c for c in cuts if whole[c - 1 : c] not in (b"\r", b"\n")]
    write_atomically(data_dir.inbox / "m.csv", manifest)
    tried = signed = 0
    with Engine(data_dir, workers=0, certificates=False) as engine:
        engine.run_once()
        for n, cut in enumerate(cuts):
            write_atomically(data_dir.inbox / f"cut-{n}.txt", whole[:cut])
            summary = engine.run_once()
            tried += 1
            signed += summary.signed
        reasons = {e["detail"]["copy"]: e["detail"]["reason"] for e in engine.ledger.events(kind="quarantined")}
        assert engine.ledger.results() == []
    print(f"\nengine: {tried} cut exports tried, {signed} signed")
    assert tried >= 8 and signed == 0
    assert set(reasons.values()) == {"truncated"} and len(reasons) == tried


def test_manifest_cut_mid_row_is_truncated(data_dir) -> None:  # noqa: ANN001 - DataDir
    """A manifest ending mid-row raises TruncatedError naming its last line, and is quarantined as truncated."""
    from engine.files import write_atomically
    from engine.intake.manifest import read_manifest
    from engine.pipeline.engine import Engine

    data = (DATA / "manifest_good.csv").read_bytes()
    cut = data[:-5]
    with pytest.raises(TruncatedError, match=r"line \d+: appears truncated: the manifest ends in the middle of a row"):
        read_manifest(cut, "m.csv")
    assert read_manifest(data, "m.csv").num_rows > 0
    write_atomically(data_dir.inbox / "m.csv", cut)
    with Engine(data_dir, workers=0, certificates=False) as engine:
        engine.run_once()
        reasons = {e["detail"]["copy"]: e["detail"]["reason"] for e in engine.ledger.events(kind="quarantined")}
    assert reasons == {"m.csv": "truncated"}
