"""A realistic simulated plate: ground truth, Ct draws, a QuantStudio export and its pool manifest.

Used by ``ketqua demo``, by the tests (the truth is what the pipeline must
reproduce) and by ``bench/`` to generate workloads. Everything is a function of
the seed, so a workload is reproducible.

Virology behind the numbers (public, textbook facts):
- an infected person's swab gives Ct ~ N(27, 4.5) cycles on ORF1ab, clipped to
  the range real labs see (14–32 here, so that a 1-in-10 pool still amplifies);
- pooling k specimens dilutes the template: concentrations add, so the pool
  Ct is -log2(sum(2^-Ct_i) / k), i.e. about +3.3 cycles for one positive in 10;
- N runs ~0.5 cycles earlier than ORF1ab, S ~0.8 later, and ~30 % of
  infections show S-gene target failure (Omicron BA.1/BA.4/BA.5 SGTF);
- the MS2 phage internal control is spiked at extraction: Ct ~ 25 in every
  extracted well, absent from the positive control (not extracted) and NTC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np

TARGETS = (("ORF1ab", "VIC", 0.0), ("N", "ABY", -0.5), ("S", "FAM", 0.8))
CONTROL = ("MS2", "JUN")
UNDETERMINED = "Undetermined"
VN = timezone(timedelta(hours=7))

_FAMILY = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô", "Dương", "Lý")
_MIDDLE_M = ("Văn", "Hữu", "Đức", "Minh", "Quang", "Thành", "Công", "Gia")
_MIDDLE_F = ("Thị", "Ngọc", "Thu", "Thanh", "Minh", "Kim", "Bảo", "Diệu")
_GIVEN_M = ("An", "Bình", "Cường", "Dũng", "Duy", "Hải", "Hiếu", "Hùng", "Khánh", "Long", "Nam", "Phúc", "Quân", "Sơn", "Thắng", "Trung", "Tuấn", "Việt")
_GIVEN_F = ("Anh", "Châu", "Giang", "Hà", "Hạnh", "Hoa", "Hương", "Lan", "Linh", "Mai", "Nga", "Ngân", "Phương", "Tâm", "Thảo", "Trang", "Uyên", "Vy", "Yến")
_STREETS = ("Lê Lợi", "Trần Hưng Đạo", "Nguyễn Huệ", "Hai Bà Trưng", "Điện Biên Phủ", "Lý Thường Kiệt", "Phan Đình Phùng", "Võ Văn Tần")
_WARDS = ("Phường Bến Nghé, Quận 1, TP. Hồ Chí Minh", "Phường 6, Quận 3, TP. Hồ Chí Minh", "Phường Hàng Bạc, Quận Hoàn Kiếm, Hà Nội",
          "Phường Láng Hạ, Quận Đống Đa, Hà Nội", "Phường Thạch Thang, Quận Hải Châu, Đà Nẵng", "Phường Vĩnh Ninh, TP. Huế")
_SITES = ("Trạm Y tế Phường Bến Nghé", "Bệnh viện Chợ Rẫy", "Trung tâm Y tế Quận 3", "Điểm lấy mẫu Sân bay Tân Sơn Nhất", "Trạm Y tế Phường Hàng Bạc")
_PROVINCES = ("079", "001", "048", "046")


@dataclass
class Well:
    """One reaction well: what was loaded and the Ct (cycles; NaN = Undetermined) per target."""

    position: str
    sample_name: str
    task: str  # QuantStudio task: UNKNOWN or NTC
    ct: dict[str, float]
    pool_id: str | None = None


@dataclass
class SimulatedPlate:
    """A simulated run: wells, manifest rows and the truth the pipeline must reproduce."""

    name: str
    run_start: datetime
    wells: list[Well]
    manifest: list[dict[str, Any]]  # manifest rows (DESIGN.md columns), one per (pool, specimen)
    infected: dict[str, bool]  # specimen_id -> truly infected
    expected: dict[str, str]  # specimen_id -> SpecimenOutcome value the pipeline should reach
    pool_size: int
    serial: str = "272312345"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def specimen_ids(self) -> list[str]:
        return list(self.expected)

    def expected_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for outcome in self.expected.values():
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts


def well_positions(size: int) -> list[str]:
    """Row-major well names of a 96- or 384-well plate (A1, A2, …)."""
    rows, cols = {96: (8, 12), 384: (16, 24)}[size]
    return [f"{chr(ord('A') + r)}{c + 1}" for r in range(rows) for c in range(cols)]


def _person(rng: np.random.Generator, collected: datetime) -> dict[str, Any]:
    female = bool(rng.random() < 0.5)
    family = _FAMILY[rng.integers(len(_FAMILY))]
    middle = (_MIDDLE_F if female else _MIDDLE_M)[rng.integers(8)]
    given = (_GIVEN_F if female else _GIVEN_M)[rng.integers(len(_GIVEN_F) if female else len(_GIVEN_M))]
    born = datetime(1940, 1, 1) + timedelta(days=int(rng.integers(0, 365 * 80)))
    # CCCD (12 digits): province code, century+sex digit, 2-digit birth year, 6 random digits.
    century_sex = (0 if born.year < 2000 else 2) + (1 if female else 0)
    national_id = f"{_PROVINCES[rng.integers(len(_PROVINCES))]}{century_sex}{born.year % 100:02d}{int(rng.integers(0, 10**6)):06d}"
    return {
        "full_name": f"{family} {middle} {given}",
        "date_of_birth": born.date().isoformat(),
        "sex": "female" if female else "male",
        "national_id": national_id,
        "phone": f"09{int(rng.integers(0, 10**8)):08d}",
        "address": f"{int(rng.integers(1, 300))} {_STREETS[rng.integers(len(_STREETS))]}, {_WARDS[rng.integers(len(_WARDS))]}",
        "collected_at": collected.isoformat(timespec="seconds"),
        "collection_site": _SITES[rng.integers(len(_SITES))],
    }


def _target_cts(rng: np.random.Generator, base_ct: float, sgtf: bool) -> dict[str, float]:
    cts = {}
    for name, _dye, offset in TARGETS:
        if name == "S" and sgtf:
            cts[name] = math.nan
        else:
            cts[name] = float(base_ct + offset + rng.normal(0, 0.3))
    return cts


def simulate_plate(
    seed: int = 0,
    *,
    size: int = 96,
    pool_size: int = 10,
    prevalence: float = 0.02,
    individual: int = 2,
    name: str | None = None,
    run_start: datetime | None = None,
    aliquot_rate: float = 0.9,
) -> SimulatedPlate:
    """A Dorfman plate: ``size - individual - 2`` pools of ``pool_size``, ``individual`` lone specimens, PC and NTC.

    Expected outcomes (Dorfman stage 1): a detected pool makes each of its
    specimens RETEST, a negative pool makes them NEGATIVE; a lone specimen
    (``pool_id == specimen_id``) gets its own call. The first lone specimen is
    infected, so every plate shows one POSITIVE.
    """
    rng = np.random.default_rng(seed)
    start = run_start or datetime(2026, 11, 29, 8, 0, tzinfo=VN) + timedelta(minutes=int(seed % 1000) * 7)
    name = name or f"PL{start:%y%m%d}-{seed:05d}"
    positions = well_positions(size)
    n_pools = size - individual - 2
    wells: list[Well] = []
    manifest: list[dict[str, Any]] = []
    infected: dict[str, bool] = {}
    expected: dict[str, str] = {}
    serial = 0

    def specimen() -> tuple[str, dict[str, Any]]:
        nonlocal serial
        serial += 1
        sid = f"{name.replace('PL', 'SP')}-{serial:05d}"
        collected = start - timedelta(hours=float(rng.uniform(3, 20)))
        return sid, _person(rng, collected.replace(microsecond=0))

    for p in range(n_pools):
        pool_id = f"{name}-P{p + 1:03d}"
        members = [specimen() for _ in range(pool_size)]
        sick = rng.random(pool_size) < prevalence
        aliquot = rng.random() < aliquot_rate
        conc = 0.0
        for (sid, person), is_sick in zip(members, sick):
            infected[sid] = bool(is_sick)
            manifest.append({"pool_id": pool_id, "specimen_id": sid, **person, "aliquot": "yes" if aliquot else "no"})
            if is_sick:
                conc += 2.0 ** -float(np.clip(rng.normal(27, 4.5), 14, 32))
        if conc > 0:
            pool_ct = -math.log2(conc / pool_size)
            ct = _target_cts(rng, pool_ct, bool(rng.random() < 0.3))
        else:
            ct = {t[0]: math.nan for t in TARGETS}
        ct[CONTROL[0]] = float(rng.normal(25, 0.7))
        wells.append(Well(positions[p], pool_id, "UNKNOWN", ct, pool_id))
        # A detected pool sends its specimens to stage 2, unless it holds one specimen: then it is that specimen's own test.
        outcome = ("POSITIVE" if pool_size == 1 else "RETEST") if conc > 0 else "NEGATIVE"
        for sid, _ in members:
            expected[sid] = outcome
    for i in range(individual):
        sid, person = specimen()
        sick = i == 0
        infected[sid] = sick
        manifest.append({"pool_id": sid, "specimen_id": sid, **person, "aliquot": "yes"})
        ct = _target_cts(rng, float(np.clip(rng.normal(26, 3), 16, 32)), False) if sick else {t[0]: math.nan for t in TARGETS}
        ct[CONTROL[0]] = float(rng.normal(25, 0.7))
        wells.append(Well(positions[n_pools + i], sid, "UNKNOWN", ct, sid))
        expected[sid] = "POSITIVE" if sick else "NEGATIVE"
    pc = {t[0]: float(rng.normal(25.5, 0.4)) for t in TARGETS}
    pc[CONTROL[0]] = math.nan
    wells.append(Well(positions[size - 2], "Positive Control", "UNKNOWN", pc))
    wells.append(Well(positions[size - 1], "NTC", "NTC", {t: math.nan for t in (*[x[0] for x in TARGETS], CONTROL[0])}))
    return SimulatedPlate(name, start, wells, manifest, infected, expected, pool_size)


def retest_plate(previous: SimulatedPlate, seed: int = 1, *, name: str | None = None) -> SimulatedPlate:
    """Dorfman stage 2: every RETEST specimen of ``previous`` run alone (sample name = specimen id).

    No manifest is needed: the specimens are known from the first plate's
    manifest, and a lone specimen's call is its own result.
    """
    rng = np.random.default_rng(seed)
    retests = [sid for sid, outcome in previous.expected.items() if outcome == "RETEST"]
    size = 96 if len(retests) + 2 <= 96 else 384
    if len(retests) + 2 > size:
        raise ValueError(f"{len(retests)} retests do not fit one plate")
    positions = well_positions(size)
    start = previous.run_start + timedelta(hours=4)
    name = name or f"{previous.name}-R"
    wells: list[Well] = []
    expected: dict[str, str] = {}
    for i, sid in enumerate(retests):
        sick = previous.infected[sid]
        ct = _target_cts(rng, float(np.clip(rng.normal(26, 4), 14, 32)), bool(rng.random() < 0.3)) if sick else {t[0]: math.nan for t in TARGETS}
        ct[CONTROL[0]] = float(rng.normal(25, 0.7))
        wells.append(Well(positions[i], sid, "UNKNOWN", ct, sid))
        expected[sid] = "POSITIVE" if sick else "NEGATIVE"
    pc = {t[0]: float(rng.normal(25.5, 0.4)) for t in TARGETS}
    pc[CONTROL[0]] = math.nan
    wells.append(Well(positions[len(retests)], "Positive Control", "UNKNOWN", pc))
    wells.append(Well(positions[len(retests) + 1], "NTC", "NTC", {t: math.nan for t in (*[x[0] for x in TARGETS], CONTROL[0])}))
    infected = {sid: previous.infected[sid] for sid in retests}
    return SimulatedPlate(name, start, wells, [], infected, expected, 1, previous.serial)


def quantstudio_text(plate: SimulatedPlate, *, size: int | None = None) -> bytes:
    """The plate as a QuantStudio 5/7 "Export > Results" text file (tab-separated, CRLF, as Windows writes it)."""
    size = size or (384 if len(plate.wells) > 96 else 96)
    index = {pos: i + 1 for i, pos in enumerate(well_positions(size))}
    end = plate.run_start + timedelta(minutes=58)
    header = [
        ("Block Type", f"{size}-Well Block (0.2mL)" if size == 96 else "384-Well Block"),
        ("Chemistry", "TAQMAN"),
        ("Date Created", f"{plate.run_start:%Y-%m-%d %H:%M:%S %p} ICT"),
        ("Experiment Barcode", plate.name),
        ("Experiment File Name", f"D:\\TaqPath\\{plate.name}.eds"),
        ("Experiment Name", plate.name),
        ("Experiment Run End Time", f"{end:%Y-%m-%d %H:%M:%S %p} ICT"),
        ("Experiment Type", "Presence/Absence"),
        ("Instrument Name", f"QS5-{plate.serial}"),
        ("Instrument Serial Number", plate.serial),
        ("Instrument Type", "QuantStudio(TM) 5 System"),
        ("Passive Reference", ""),
        ("Quantification Cycle Method", "Ct"),
        ("Signal Smoothing On", "true"),
        ("Stage/ Cycle where Analysis is performed", "Stage 3, Step 2"),
        ("User Name", "ktv.lan"),
    ]
    lines = [f"* {k} = {v}" for k, v in header]
    lines += ["", "[Results]"]
    columns = ["Well", "Well Position", "Omit", "Sample Name", "Target Name", "Task", "Reporter", "Quencher", "CT",
               "Ct Mean", "Ct SD", "Quantity", "Quantity Mean", "Quantity SD", "Automatic Ct Threshold", "Ct Threshold",
               "Automatic Baseline", "Baseline Start", "Baseline End", "Comments"]
    lines.append("\t".join(columns))
    targets = [(t[0], t[1]) for t in TARGETS] + [CONTROL]
    thresholds = {"ORF1ab": "0.152", "N": "0.198", "S": "0.113", "MS2": "0.087"}
    for well in plate.wells:
        for target, dye in targets:
            ct = well.ct.get(target, math.nan)
            text = UNDETERMINED if math.isnan(ct) else f"{ct:.3f}"
            lines.append("\t".join([str(index[well.position]), well.position, "false", well.sample_name, target, well.task, dye,
                                    "None", text, "", "", "", "", "", "true", thresholds[target], "true", "3", "15", ""]))
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


MANIFEST_HEADER = ("pool_id", "specimen_id", "full_name", "date_of_birth", "sex", "national_id", "phone", "address",
                   "collected_at", "collection_site", "aliquot")


def manifest_csv(rows: list[dict[str, Any]], *, bom: bool = True) -> bytes:
    """Manifest rows as the sampling platform exports them (UTF-8 with BOM, Excel-friendly, CRLF)."""

    def cell(value: Any) -> str:
        text = "" if value is None else str(value)
        return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\n') else text

    lines = [",".join(MANIFEST_HEADER)] + [",".join(cell(r.get(k)) for k in MANIFEST_HEADER) for r in rows]
    return (("\ufeff" if bom else "") + "\r\n".join(lines) + "\r\n").encode("utf-8")


def now_utc() -> datetime:
    return datetime.now(UTC)
