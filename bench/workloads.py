"""Workload generators: realistic analyzer files, manifests and pooled plates at any scale.

Everything is seeded, so two runs measure the same bytes. The plate model is
deliberately small — wells × targets of Ct values with roles — so one simulated
plate can be written in every supported instrument format and the parsers
compare on identical content. The pool/plate simulation and the QuantStudio +
manifest writers of ``engine/demo.py`` are reused when that module offers them
(the pipeline engineer owns it); the other formats are written here, following
the real exports in ``shared/fixtures/real/`` (see its SOURCES.md):

* Bio-Rad CFX "Quantification Cq Results" CSV: leading empty column, ``A01``
  wells, ``NaN`` for no Cq, CRLF; and the Vietnamese-locale variant with ``;``
  separators and decimal commas.
* Roche LightCycler 480 text: ``Experiment: … Selected Filter: …`` line, then a
  tab-separated ``Include Color Pos Name Cp …`` table, empty Cp = no
  amplification; one block per channel.
* Qiagen Rotor-Gene Q "Excel Analysed Data Export": UTF-8 BOM, ``;``, every
  line padded to 14 fields, one ``Quantitative analysis of Cycling A.<channel>
  (<target>)`` section per target.
* ASTM E1394 in E1381 frames (STX, frame number, ETB/ETX, checksum, CR LF),
  GeneXpert-style ``^^^SARS-CoV-2^^^<target>^Ct`` result ids.
* HL7 v2.5 ``OUL^R22`` as cobas 6800/8800 write it, one SPM group per specimen.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

#: Rows of the two plate sizes.
ROWS_96 = "ABCDEFGH"
ROWS_384 = "ABCDEFGHIJKLMNOP"


@dataclass
class Plate:
    """One run's readings, in the shape every writer here takes: per well a sample name,
    a role and a Ct per target (NaN = not amplified). Built from the demo's simulated plate."""

    wells: list[str]
    sample_ids: list[str]
    roles: list[str]  # engine.model.Role values
    targets: tuple[str, ...]
    dyes: tuple[str, ...]
    ct: np.ndarray  # float32 [wells, targets]
    run_name: str = "KQ-BENCH-001"
    started: datetime = field(default_factory=lambda: datetime(2026, 11, 29, 8, 30, tzinfo=UTC))
    simulated: Any = None  # the engine.demo.SimulatedPlate it came from (truth, manifest)

    @property
    def n_wells(self) -> int:
        return len(self.wells)


def well_names(n_wells: int, *, padded: bool = False) -> list[str]:
    """Row-major well names of a 96- or 384-well plate (``A1`` or ``A01``)."""
    rows, cols = (ROWS_96, 12) if n_wells <= 96 else (ROWS_384, 24)
    names = [f"{r}{c:02d}" if padded else f"{r}{c}" for r in rows for c in range(1, cols + 1)]
    return names[:n_wells]


def demo_module() -> Any | None:
    """``engine.demo`` when it exists: its plate simulation and writers are reused, not duplicated."""
    try:
        return importlib.import_module("engine.demo")
    except ModuleNotFoundError as exc:
        if exc.name == "engine.demo":
            return None
        raise


def simulated_plate(seed: int, *, size: int = 384, pool_size: int = 10, prevalence: float = 0.02) -> Any:
    """A Dorfman plate from ``engine.demo.simulate_plate`` (truth, Ct draws, Vietnamese manifest)."""
    demo = demo_module()
    if demo is None:
        raise ModuleNotFoundError("engine.demo is not written yet", name="engine.demo")
    return demo.simulate_plate(seed, size=size, pool_size=pool_size, prevalence=prevalence)


def plate_from_demo(sim: Any) -> Plate:
    """The demo's wells (Ct per target in a dict) as the column form the writers use."""
    demo = demo_module()
    pairs = [(t[0], t[1]) for t in demo.TARGETS] + [tuple(demo.CONTROL)]
    roles = []
    for well in sim.wells:
        if well.task == "NTC":
            roles.append("ntc")
        elif well.pool_id is None and "positive" in well.sample_name.lower():
            roles.append("pc")
        else:
            roles.append("sample")
    ct = np.array([[well.ct.get(t, np.nan) for t, _ in pairs] for well in sim.wells], dtype=np.float32)
    return Plate(
        wells=[w.position for w in sim.wells],
        sample_ids=[w.sample_name for w in sim.wells],
        roles=roles,
        targets=tuple(t for t, _ in pairs),
        dyes=tuple(d for _, d in pairs),
        ct=np.round(ct, 3),
        run_name=sim.name,
        started=sim.run_start,
        simulated=sim,
    )


def bench_plate(seed: int) -> Plate:
    """The reference workload: a 384-well TaqPath plate (ORF1ab/N/S + MS2) of 10-specimen pools, 2 % prevalence."""
    return plate_from_demo(simulated_plate(seed, size=384, pool_size=10, prevalence=0.02))


@dataclass
class PooledPlates:
    """Many plates of one design, for the decoders: truth and what the pools showed."""

    incidence: np.ndarray  # bool [pools, specimens]
    truth: np.ndarray  # bool [plates, specimens]
    pool_codes: np.ndarray  # int8 [plates, pools] (POOL_CODE: 0 not detected, 1 detected)
    pool_ct: np.ndarray  # float32 [plates, pools]


def simulate_design(incidence: np.ndarray, n_plates: int, *, prevalence: float | None = None, positives: int | None = None, seed: int = 0) -> PooledPlates:
    """Noiseless pool outcomes of ``n_plates`` plates of one design.

    Either every specimen is infected with probability ``prevalence``, or
    exactly ``positives`` specimens per plate are (how P-BEST and Tapestry are
    evaluated). Vectorised over plates: a pool is detected when any member is.
    """
    rng = np.random.default_rng(seed)
    incidence = np.asarray(incidence, dtype=bool)
    n_pools, n_specimens = incidence.shape
    if positives is not None:
        keys = rng.random((n_plates, n_specimens), dtype=np.float32)
        idx = np.argpartition(keys, positives, axis=1)[:, :positives] if positives else np.empty((n_plates, 0), int)
        truth = np.zeros((n_plates, n_specimens), dtype=bool)
        np.put_along_axis(truth, idx, True, axis=1)
    else:
        truth = rng.random((n_plates, n_specimens), dtype=np.float32) < (prevalence or 0.0)
    # float32 so the product goes through BLAS (integer matmul in numpy is a slow loop); counts are exact.
    hits = truth.astype(np.float32) @ incidence.T.astype(np.float32)
    codes = (hits > 0).astype(np.int8)
    ct = np.full(codes.shape, np.nan, dtype=np.float32)
    detected = codes > 0
    ct[detected] = rng.normal(28.0, 3.0, int(detected.sum()))
    return PooledPlates(incidence=incidence, truth=truth, pool_codes=codes, pool_ct=ct)


# --------------------------------------------------------------------------- writers


def _fmt_ct(values: np.ndarray, missing: str, decimal: str = ".", digits: int = 3) -> list[str]:
    out = [missing if np.isnan(v) else f"{v:.{digits}f}" for v in values.tolist()]
    if decimal != ".":
        out = [s.replace(".", decimal) for s in out]
    return out


def _repeat(head: str, body: str, tail: str, target_bytes: int | None, encoding: str = "utf-8") -> bytes:
    """``head + body * n + tail`` with n chosen so the file reaches ``target_bytes`` (at least once)."""
    n = 1
    if target_bytes:
        per = len(body.encode(encoding))
        n = max(1, -(-(target_bytes - len(head.encode(encoding))) // per))
    return (head + body * n + tail).encode(encoding)


_CFX_HEADER = (
    "Well,Fluor,Target,Content,Sample,Biological Set Name,Cq,Cq Mean,Cq Std. Dev,"
    "Starting Quantity (SQ),Log Starting Quantity,SQ Mean,SQ Std. Dev,Set Point,Well Note"
)
_CFX_CONTENT = {"sample": "Unkn", "ntc": "NTC", "pc": "Pos Ctrl", "nc": "Neg Ctrl", "std": "Std", "unknown": "Unkn"}


def cfx_csv(plate: Plate, *, target_bytes: int | None = None, locale: str = "en") -> bytes:
    """Bio-Rad CFX Maestro "Quantification Cq Results" CSV, one row per well × fluor.

    ``locale="vi"`` writes what a Vietnamese-locale Windows PC writes: ``;`` as the
    separator and a decimal comma (``21,188``). No Cq is ``NaN`` as CFX Maestro
    writes it (the older CFX Manager wrote ``N/A``).
    """
    sep, dec = (";", ",") if locale == "vi" else (",", ".")
    wells = well_names(plate.n_wells, padded=True)
    lines = []
    for t, (target, dye) in enumerate(zip(plate.targets, plate.dyes)):
        cts = _fmt_ct(plate.ct[:, t], "NaN", dec)
        for w, well in enumerate(wells):
            content = _CFX_CONTENT.get(plate.roles[w], "Unkn")
            cq = cts[w]
            mean = cq if cq != "NaN" else "0"
            lines.append(sep.join(["", well, dye, target, content, plate.sample_ids[w], "", cq, mean, "0", "NaN", "NaN", "NaN", "0", f"60{dec}0", ""]))
    head = sep + _CFX_HEADER.replace(",", sep) + "\r\n"
    return _repeat(head, "\r\n".join(lines) + "\r\n", "", target_bytes)


_LC_FILTERS = {"FAM": "FAM (465-510)", "VIC": "HEX (533-580)", "ABY": "Red 610 (533-610)", "JUN": "Cy 5 (618-660)"}


def lightcycler_txt(plate: Plate, *, target_bytes: int | None = None, channel: int | None = None) -> bytes:
    """Roche LightCycler 480 "export in text format" of Abs Quant/2nd Derivative Max results.

    The software exports one filter (channel) per block; all channels of the run
    are written one block after the other (``channel`` picks one). Empty Cp = not
    amplified; CRLF; ``Color`` is the Windows RGB integer the plate view used.
    """
    chans = [channel] if channel is not None else list(range(len(plate.targets)))
    body = []
    for t in chans:
        filt = _LC_FILTERS.get(plate.dyes[t], plate.dyes[t])
        body.append(f"Experiment: {plate.run_name} {plate.targets[t]}  Selected Filter: {filt}\r\n")
        body.append("Include\tColor\tPos\tName\tCp\tConcentration\tStandard\tStatus\r\n")
        cts = _fmt_ct(plate.ct[:, t], "", digits=2)
        for w, well in enumerate(plate.wells):
            color = "255" if plate.roles[w] == "sample" else "65280"
            body.append(f"True\t{color}\t{well}\t{plate.sample_ids[w]}\t{cts[w]}\t\t0\t\r\n")
    return _repeat("", "".join(body), "", target_bytes)


_RG_CHANNEL = {"FAM": "Green", "VIC": "Yellow", "ABY": "Orange", "JUN": "Red"}
_RG_TYPE = {"sample": "Unknown", "ntc": "NTC", "pc": "Positive Control", "nc": "Negative Control", "std": "Standard", "unknown": "Unknown"}
_RG_FIELDS = 14


def rotorgene_csv(plate: Plate, *, target_bytes: int | None = None) -> bytes:
    """Qiagen Rotor-Gene Q "Excel Analysed Data Export": BOM, ``;``, lines padded to 14 fields.

    Rotor-Gene is a tube system: tubes are numbered (``No.``), there are no well
    positions; one ``Quantitative analysis of Cycling A.<colour> (<target>)``
    section per target channel.
    """
    pad = ";" * (_RG_FIELDS - 1)
    head = (
        f"Excel Analysed Data Export{pad}\r\n"
        f"Copyright (c) 2013 QIAGEN GmbH. All Rights Reserved.{pad}\r\n"
        f"File;{plate.run_name}.rex{';' * (_RG_FIELDS - 2)}\r\n"
        f"Date;{plate.started:%m/%d/%Y}{';' * (_RG_FIELDS - 2)}\r\n"
        f"Time;{plate.started:%I:%M:%S %p}{';' * (_RG_FIELDS - 2)}\r\n"
        f"{pad}\r\n"
    )
    cols = "No.;Color;Name;Type;Ct;Ct Comment;Given Conc (Copies);Calc Conc (Copies);% Var;Rep. Ct;Rep. Ct Std. Dev.;Rep. Ct (95% CI);Rep. Calc. Conc.;Rep. Calc. Conc. (95% CI)"
    body = []
    for t, (target, dye) in enumerate(zip(plate.targets, plate.dyes)):
        body.append(f"Quantitative analysis of Cycling A.{_RG_CHANNEL.get(dye, 'Green')} ({target}){pad}\r\n{pad}\r\n{cols}\r\n")
        cts = _fmt_ct(plate.ct[:, t], "", digits=2)
        for w in range(plate.n_wells):
            body.append(f"{w + 1};5775359;{plate.sample_ids[w]};{_RG_TYPE.get(plate.roles[w], 'Unknown')};{cts[w]}" + ";" * (_RG_FIELDS - 5) + "\r\n")
        body.append(f"{pad}\r\n{pad}\r\n")
    return _repeat("\ufeff" + head, "".join(body), "", target_bytes)


_SDS_TASK = {"sample": "Unknown", "ntc": "NTC", "pc": "Unknown", "nc": "Unknown", "std": "Standard", "unknown": "Unknown"}


def sds_txt(plate: Plate, *, target_bytes: int | None = None) -> bytes:
    """Applied Biosystems SDS 2.3 (7900HT) "Results" export: CR-only line ends (the software came
    from the Mac), a ``key<TAB>value`` header, then one row per well × detector with
    ``Undetermined`` when nothing amplified."""
    head = (
        "SDS 2.3 RQ Results\t1.2\r"
        f"Filename\t{plate.run_name}.sds\r"
        "Assay Type\tAbsolute Quantification\r"
        f"Run DateTime\t{plate.started:%a %b %d %H:%M:%S} ICT {plate.started:%Y}\r"
        "Operator\tktv.lan\r"
        "\r"
        "#\tPlate\tPos\tFlag\tSample\tDetector\tTask\tCt\tDelta Ct\tAvg Delta Ct\tOmit\r"
    )
    rows = []
    n = 0
    for t, target in enumerate(plate.targets):
        cts = _fmt_ct(plate.ct[:, t], "Undetermined", digits=6)
        for w, well in enumerate(plate.wells):
            n += 1
            rows.append(f"{n}\t{plate.run_name}\t{well}\tPassed\t{plate.sample_ids[w]}\t{target}\t{_SDS_TASK.get(plate.roles[w], 'Unknown')}\t{cts[w]}\t\t\tFALSE\r")
    return _repeat(head, "".join(rows), "", target_bytes)


STX, ETX, ETB = "\x02", "\x03", "\x17"


def _astm_frames(records: Sequence[str], start: int = 1) -> str:
    """E1381 framing of a message: the records (each ended by CR) cut into frames of at most
    240 characters; intermediate frames end with ETB, the last with ETX; frame numbers count
    1..7, 0, ...; checksum = sum of the bytes from the frame number to ETB/ETX, mod 256, in hex."""
    text = "".join(rec + "\r" for rec in records)
    out = []
    fn = start % 8
    for i in range(0, len(text), 240):
        chunk = text[i : i + 240]
        framed = f"{fn}{chunk}" + (ETB if i + 240 < len(text) else ETX)
        out.append(f"{STX}{framed}{sum(framed.encode('utf-8')) % 256:02X}\r\n")
        fn = (fn + 1) % 8
    return "".join(out)


def astm(plate: Plate, *, target_bytes: int | None = None) -> bytes:
    """An ASTM E1394 transmission in E1381 frames, GeneXpert style, one P/O group per tube.

    Result ids follow the GeneXpert pattern ``^SARS-CoV-2^^Xpert^^^<target>^`` (the
    interpretation) and ``…^<target>^Ct`` (the Ct as ``^<value>``, 0.0 when not amplified).
    """
    ts = plate.started.strftime("%Y%m%d%H%M%S")
    groups: list[str] = []
    for w in range(plate.n_wells):
        groups.append(f"P|{w + 1}||||^^^^|||||||||||||||||||||")
        groups.append(f"O|1|{plate.sample_ids[w]}||^^^SARS-CoV-2|R|{ts}|||||||||ORH||||||||||F")
        seq = 1
        for t, target in enumerate(plate.targets):
            ct = plate.ct[w, t]
            call = "NEG" if np.isnan(ct) else "POS"
            groups.append(f"R|{seq}|^SARS-CoV-2^^Xpert^^^{target}^|{call}^|||")
            groups.append(f"R|{seq + 1}|^SARS-CoV-2^^Xpert^^^{target}^Ct|^{0.0 if np.isnan(ct) else round(float(ct), 1)}|||")
            seq += 2
    per_repeat = sum(len(r) + 8 for r in groups)
    n = max(1, -(-target_bytes // per_repeat)) if target_bytes else 1
    records = [f"H|@^\\|KQ-{plate.run_name}||ketqua-bench^GeneXpert^6.4|||||LIS||P|1394-97|{ts}", *(groups * n), "L|1|N"]
    return _astm_frames(records).encode("utf-8")


def hl7_oul(plate: Plate, *, target_bytes: int | None = None) -> bytes:
    """HL7 v2.5 ``OUL^R22`` as a cobas 6800/8800 sends it: one SPM/OBR group per tube, an
    OBX per target with ``ValueNotSet`` and the call in OBX-8, and a Ct OBX where amplified.
    Segments end with CR (the wire form)."""
    ts = plate.started.strftime("%Y%m%d%H%M%S")
    msh = f"MSH|^~\\&|COBAS6800/8800||LIS||{ts}||OUL^R22|KQ-{plate.run_name}|P|2.5||||||UNICODE UTF-8|||LAB-23^ROCHE\r"
    segs = []
    for w in range(plate.n_wells):
        segs.append(f"SPM|{w + 1}|{plate.sample_ids[w]}||CPM^cobas PCR Media^99ROC|||||||P||||||||||||||||\r")
        segs.append(f"OBR|{w + 1}|||SARS-COV-2^SARS-COV-2^99ROC|||||||A\r")
        n = 1
        for t, target in enumerate(plate.targets):
            ct = plate.ct[w, t]
            flag = "NEG" if np.isnan(ct) else "POS"
            segs.append(f"OBX|{n}|ST|{target}^{target}^99ROC||ValueNotSet|||{flag}|||F|||||Operator||C6800/8800^Roche^^|{ts}\r")
            n += 1
            if not np.isnan(ct):
                segs.append(f"OBX|{n}|NM|{target}^Ct^99ROC||{float(ct):.2f}|||{flag}|||F|||||Operator||C6800/8800^Roche^^|{ts}\r")
                n += 1
    return _repeat(msh, "".join(segs), "", target_bytes)


# --------------------------------------------------------------------------- registry of writers

#: format key → (writer, the parser module that must read it). QuantStudio first: it is the demo's own writer.
WRITERS: dict[str, tuple[Callable[..., bytes], str]] = {
    "quantstudio": (lambda plate, **kw: quantstudio_txt(plate, **kw), "parsers.quantstudio"),
    "cfx": (cfx_csv, "parsers.cfx"),
    "cfx-vi": (lambda plate, **kw: cfx_csv(plate, locale="vi", **kw), "parsers.cfx"),
    "lightcycler": (lightcycler_txt, "parsers.lightcycler"),
    "sds": (sds_txt, "parsers.sds"),
    "rotorgene": (rotorgene_csv, "parsers.rotorgene"),
    "astm": (astm, "parsers.astm"),
    "hl7": (hl7_oul, "parsers.hl7v2"),
}


def quantstudio_txt(plate: Plate, *, target_bytes: int | None = None) -> bytes:
    """The demo's QuantStudio ``[Results]`` export of the plate, its result rows repeated to ``target_bytes``."""
    demo = demo_module()
    one = demo.quantstudio_text(plate.simulated, size=384 if plate.n_wells > 96 else 96)
    marker = one.index(b"[Results]")
    body_at = one.index(b"\n", one.index(b"\n", marker) + 1) + 1  # after the column-names line
    head, body = one[:body_at], one[body_at:]
    n = max(1, -(-(target_bytes - len(head)) // len(body))) if target_bytes else 1
    return head + body * n


def result_payloads(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` result payloads (docs/interfaces.md shape, built by ``engine.results.build_payload``)
    for the specimens of simulated 384-well plates: Vietnamese names, real-looking evidence."""
    from engine.config import Lab
    from engine.results.signed import build_payload, result_id

    lab = Lab()
    out: list[dict[str, Any]] = []
    plate_seed = seed
    while len(out) < n:
        sim = simulated_plate(plate_seed, size=384, pool_size=10, prevalence=0.02)
        plate = plate_from_demo(sim)
        run_id = f"{plate_seed:064x}"
        by_pool = {w.pool_id: w for w in sim.wells if w.pool_id}
        issued = (sim.run_start + timedelta(hours=2)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for row in sim.manifest:
            if len(out) >= n:
                break
            well = by_pool[row["pool_id"]]
            cts = {t: (None if np.isnan(v) else round(float(v), 2)) for t, v in well.ct.items()}
            outcome = "POSITIVE" if sim.infected[row["specimen_id"]] else "NEGATIVE"
            pooled = row["pool_id"] != row["specimen_id"]
            out.append(
                build_payload(
                    id=result_id(lab.id, row["specimen_id"], run_id),
                    version=1,
                    supersedes=None,
                    issued_at=issued,
                    outcome=outcome,
                    lab=lab,
                    specimen=row,
                    test={"assay": "TaqPath COVID-19", "kit": "TaqPath COVID-19 CE-IVD RT-PCR Kit", "method": "RT-PCR",
                          "pooled": pooled, "pool_id": row["pool_id"] if pooled else None,
                          "design": f"dorfman:{sim.pool_size}" if pooled else "individual", "decoder": "dorfman"},
                    evidence={"run_id": run_id, "source": f"{sim.name}.txt", "instrument": "QuantStudio 5", "rule": "taqpath: >=2 of ORF1ab/N/S <= 37",
                              "pools": [{"pool_id": row["pool_id"], "well": well.position, "outcome": "detected" if any(v is not None for t, v in cts.items() if t != "MS2") else "not_detected", "ct": cts}],
                              "ct": cts},
                )
            )
        plate_seed += 1
    return out


def manifest(plate: Plate, *, target_bytes: int | None = None) -> bytes:
    """The plate's pool manifest as the sampling platform exports it (the demo's writer: UTF-8 BOM,
    CRLF, Vietnamese names), its rows repeated to ``target_bytes`` under fresh pool and specimen
    ids (the plate name is part of every id, so each repeat renames it)."""
    demo = demo_module()
    sim = plate.simulated
    one = demo.manifest_csv(sim.manifest)
    head_end = one.index(b"\n") + 1
    head, body = one[:head_end], one[head_end:].decode("utf-8")
    n = max(1, -(-(target_bytes - len(head)) // len(body.encode("utf-8")))) if target_bytes else 1
    stem = sim.name.replace("PL", "")
    parts = [body.replace(stem, f"{stem}R{i}") if i else body for i in range(n)]
    return head + "".join(parts).encode("utf-8")
