"""RDML (Real-time PCR Data Markup Language) v1.0-1.3: a zip holding ``rdml_data.xml``, or bare XML.

Read with a streaming expat parser that keeps only what the canonical table
needs (samples and their types, targets and their dyes, each run's reactions
and their Cq) and skips the amplification/melting points, so large files stay
cheap. Safety: a document with a DTD or entity declarations is refused (no
entity expansion, no external resources), as is a zip member that would
inflate beyond :data:`MAX_XML_BYTES`.

Reaction ids are plate positions (``A1``, StepOne) or numbers counted row by
row (RDML 1.1+), converted with the run's ``pcrFormat`` columns; a number with
no plate layout (``free format`` in v1.0, rotor tubes) leaves ``well`` null.
``cq`` -1 means "not available" (no amplification). ``line`` is the XML line of
the reaction's ``<data>`` element.

Vendor quirk: Applied Biosystems StepOne software writes an NTC that did not
amplify as ``<cq>40.0</cq>`` (its cycle count) instead of -1; an NTC with Cq
exactly 40.0 from StepOne is read as not amplified (NaN).
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from xml.parsers import expat

import numpy as np
import pyarrow as pa

from parsers.errors import ParseError
from parsers.schema import Role
from parsers.completeness import zip_incomplete
from parsers.registry import register
from parsers.text import canonical_table, ct_array, normalise_role, normalise_wells

#: Largest XML accepted (inflated size): far above any real plate, far below a zip bomb.
MAX_XML_BYTES = 512 * 1024 * 1024
INNER_NAME = "rdml_data.xml"

# RDML sample types (v1.0-1.3) to roles. nac = no amplification control, ntp = no target
# present, nrt = minus reverse transcriptase: all must stay flat, the NTC family or a negative.
_SAMPLE_TYPES = {
    "unkn": Role.SAMPLE,
    "ntc": Role.NTC,
    "nac": Role.NTC,
    "ntp": Role.NC,
    "nrt": Role.NC,
    "neg": Role.NC,
    "pos": Role.PC,
    "std": Role.STD,
    "opt": Role.UNKNOWN,  # optical calibrator
}
_PLATE_FORMATS = {"384": (16, 24), "96": (8, 12), "48": (6, 8), "1536": (32, 48)}


# Possessive and stopping at the next <adp>, so an unclosed <adp> cannot make the scan quadratic.
_CURVE_POINTS = re.compile(rb"<((?:[\w.-]+:)?(?:adp|mdp))>[^<]*+(?:<(?!/?\1>)[^<]*+)*+</\1>")
_RDML_END = re.compile(rb"</(?:[\w.-]+:)?rdml\s*>$")
_RDML_ROOT = re.compile(r"<(?:[\w.-]+:)?rdml[\s>]")


def _first_member_head(head: bytes) -> str:
    """The first few KiB of a zip's first member, inflated from the local header in ``head`` (sniffing only)."""
    method = int.from_bytes(head[8:10], "little")
    start = 30 + int.from_bytes(head[26:28], "little") + int.from_bytes(head[28:30], "little")
    raw = head[start : start + 16384]
    try:
        body = zlib.decompressobj(-15).decompress(raw, 8192) if method == 8 else raw[:8192] if method == 0 else b""
    except zlib.error:
        return ""
    return body.decode("utf-8", "ignore")


class _Refused(Exception):
    """Raised from expat handlers to stop at a construct ketqua does not read (DTD, entities)."""


@dataclass
class _Run:
    run_id: str = ""
    instrument: str = ""
    software: list[str] = field(default_factory=list)
    run_date: str = ""
    fmt_text: str = ""
    rows: int | None = None
    columns: int | None = None
    reacts: list[tuple[str, str, str, str, int]] = field(default_factory=list)  # react id, sample, target, cq, line


class _Reader:
    """Expat handlers collecting samples, targets, dyes and reactions; every other element is skipped."""

    def __init__(self) -> None:
        self.version = ""
        self.encoding = "utf-8"  # XML's default when the declaration names none
        self.root = ""
        self.sample_type: dict[str, str] = {}
        self.target_dye: dict[str, str] = {}
        self.runs: list[_Run] = []
        self.stack: list[str] = []
        self.text: list[str] = []
        self.capture = False
        self.sample_id = ""
        self.target_id = ""
        self.react_id = ""
        self.react_sample = ""
        self.data_target = ""
        self.data_cq = ""
        self.data_line = 0
        self.parser: expat.XMLParserType | None = None

    # Element paths (local names) whose text is kept.
    _TEXT = {
        ("sample", "type"),
        ("target", "dyeId"),
        ("run", "instrument"),
        ("dataCollectionSoftware", "name"),
        ("dataCollectionSoftware", "version"),
        ("run", "runDate"),
        ("run", "pcrFormat"),
        ("pcrFormat", "rows"),
        ("pcrFormat", "columns"),
        ("data", "cq"),
    }

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        name = tag.rsplit(" ", 1)[-1]
        parent = self.stack[-1] if self.stack else ""
        self.stack.append(name)
        if len(self.stack) == 1:
            self.root = name
            self.version = attrs.get("version", "")
            return
        depth = len(self.stack)
        if name == "sample" and depth == 2:
            self.sample_id = attrs.get("id", "")
            self.sample_type.setdefault(self.sample_id, "")
        elif name == "target" and depth == 2:
            self.target_id = attrs.get("id", "")
            self.target_dye.setdefault(self.target_id, "")
        elif name == "dyeId" and parent == "target" and attrs.get("id"):
            self.target_dye[self.target_id] = attrs["id"]  # v1.1+: <dyeId id="FAM"/>
        elif name == "run" and parent == "experiment":
            self.runs.append(_Run(run_id=attrs.get("id", "")))
        elif name == "react" and parent == "run":
            self.react_id, self.react_sample = attrs.get("id", ""), ""
        elif name == "sample" and parent == "react":
            self.react_sample = attrs.get("id", "")
        elif name == "data" and parent == "react":
            self.data_target, self.data_cq = "", ""
            self.data_line = self.parser.CurrentLineNumber if self.parser else 0
        elif name == "tar" and parent == "data":
            self.data_target = attrs.get("id", "")
        if (parent, name) in self._TEXT:
            self.capture, self.text = True, []

    def end(self, tag: str) -> None:
        name = self.stack.pop()
        parent = self.stack[-1] if self.stack else ""
        if self.capture:
            value = "".join(self.text).strip()
            self.capture = False
            run = self.runs[-1] if self.runs else None
            if (parent, name) == ("sample", "type") and not self.sample_type.get(self.sample_id):
                self.sample_type[self.sample_id] = value
            elif (parent, name) == ("target", "dyeId") and value and not self.target_dye.get(self.target_id):
                self.target_dye[self.target_id] = value  # v1.0: <dyeId>FAM</dyeId>
            elif (parent, name) == ("data", "cq"):
                self.data_cq = value
            elif run is not None:
                if name == "instrument":
                    run.instrument = value
                elif parent == "dataCollectionSoftware":
                    run.software.append(value)
                elif name == "runDate":
                    run.run_date = value
                elif (parent, name) == ("run", "pcrFormat"):
                    run.fmt_text = value
                elif name in ("rows", "columns"):
                    number = int(value) if value.isdigit() else None
                    setattr(run, name, number)
        if name == "data" and parent == "react" and self.runs:
            self.runs[-1].reacts.append((self.react_id, self.react_sample, self.data_target, self.data_cq,
                                         self.data_line))

    def chars(self, data: str) -> None:
        if self.capture:
            self.text.append(data)


def _refuse(*_args: object) -> None:
    raise _Refused()


def read_xml(xml: bytes, source: str) -> _Reader:
    """Stream ``xml`` through expat, refusing DTDs and entity declarations."""
    reader = _Reader()
    if not xml.startswith((b"\xff\xfe", b"\xfe\xff")):
        # Amplification/melting points are most of a file and unused here: cut them with one C-level
        # regex pass (keeping their line breaks, so line numbers stay true) instead of thousands of
        # Python callbacks.
        xml = _CURVE_POINTS.sub(lambda m: b"\n" * m.group(0).count(b"\n"), xml)
    parser = expat.ParserCreate(namespace_separator=" ")
    reader.parser = parser
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    parser.XmlDeclHandler = lambda _version, encoding, _standalone: setattr(
        reader, "encoding", (encoding or "utf-8").lower())
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.chars
    parser.buffer_text = True
    try:
        parser.Parse(xml, True)
    except _Refused:
        raise ParseError(
            "the RDML document declares a DTD or entities, which are refused for safety",
            source=source,
            line=parser.CurrentLineNumber,
            expected="plain RDML XML without <!DOCTYPE> or <!ENTITY>",
        ) from None
    except expat.ExpatError as exc:
        raise ParseError(
            f"the RDML XML is malformed ({expat.ErrorString(exc.code)})",
            source=source,
            line=exc.lineno,
            expected="a complete, well-formed RDML document",
        ) from None
    return reader


def _xml_of(data: bytes, source: str) -> bytes:
    """The XML document: the zip's ``rdml_data.xml`` (or its single .xml), or ``data`` itself."""
    if not data.startswith(b"PK"):
        return data
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = [i for i in archive.infolist() if not i.is_dir()]
            chosen = next((i for i in infos if i.filename.rsplit("/", 1)[-1] == INNER_NAME), None)
            if chosen is None:
                xmls = [i for i in infos if i.filename.lower().endswith(".xml")]
                if len(xmls) != 1:
                    raise ParseError(
                        f"the RDML archive holds {len(xmls)} XML files and no {INNER_NAME}",
                        source=source,
                        expected=f"a zip with {INNER_NAME} (or exactly one .xml file)",
                    )
                chosen = xmls[0]
            if chosen.file_size > MAX_XML_BYTES:
                raise ParseError(f"{chosen.filename} inflates to {chosen.file_size} bytes", source=source,
                                 expected=f"at most {MAX_XML_BYTES} bytes of XML")
            with archive.open(chosen) as member:
                xml = member.read(MAX_XML_BYTES + 1)
            if len(xml) > MAX_XML_BYTES:
                raise ParseError(f"{chosen.filename} inflates beyond {MAX_XML_BYTES} bytes", source=source,
                                 expected="a real RDML file, not a zip bomb")
            return xml
    except ParseError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError,
            RuntimeError, zlib.error) as exc:  # damaged archive, CRC mismatch, unsupported compression
        raise ParseError(f"the RDML zip archive is damaged ({type(exc).__name__}: {exc})", source=source,
                         expected="an .rdml file as written by the instrument software") from None


def _software(parts: list[str]) -> str | None:
    """Name and version of the writing software; StepOne repeats the name inside its version."""
    parts = [p for p in parts if p]
    if len(parts) == 2 and parts[0].replace(" ", "").lower() in parts[1].replace(" ", "").replace("\u2122", "").lower():
        return parts[1]
    return " ".join(dict.fromkeys(parts)) or None


def _plate(run: _Run) -> tuple[int, int] | None:
    """(rows, columns) of the run's plate; None for rotors and strips (one column, or more rows than a plate)."""
    if run.rows and run.columns:
        if run.columns == 1 or run.rows > 32:
            return None  # Rotor-Gene writes its 72/100-tube rotor as rows x 1 column
        return run.rows, run.columns
    m = re.search(r"\b(1536|384|96|48)\b", run.fmt_text)
    return _PLATE_FORMATS[m.group(1)] if m else None


def _wells(run: _Run, ids: list[str], lines: np.ndarray, source: str) -> list[str | None]:
    """Reaction ids as canonical well names (None for numbered tubes without a plate layout)."""
    plate = _plate(run)
    numeric = np.array([i.strip().isdigit() for i in ids], dtype=bool)
    out: list[str | None] = [None] * len(ids)
    if (~numeric).any():
        size = plate[0] * plate[1] if plate else 1536
        size = size if size in (48, 96, 384, 1536) else 1536
        named = normalise_wells([ids[i] for i in np.flatnonzero(~numeric)], plate=size, source=source,
                                lines=lines[~numeric], field="react id")
        for i, well in zip(np.flatnonzero(~numeric), named.to_pylist()):
            out[i] = well
    if numeric.any() and plate is not None:
        rows, cols = plate
        number = np.array([int(ids[i]) for i in np.flatnonzero(numeric)], dtype=np.int64)
        bad = (number < 1) | (number > rows * cols)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise ParseError(f"reaction {number[k]} is outside the {rows}x{cols} plate", source=source,
                             line=int(lines[np.flatnonzero(numeric)[k]]), field="react id",
                             expected=f"1 to {rows * cols}")
        r, c = (number - 1) // cols, (number - 1) % cols + 1
        for i, rr, cc in zip(np.flatnonzero(numeric), r, c):
            letters = chr(65 + rr) if rr < 26 else chr(64 + rr // 26) + chr(65 + rr % 26)
            out[i] = f"{letters}{cc}"
    return out


@register(
    "rdml",
    description="RDML v1.0-1.3 (zip with rdml_data.xml, or bare XML)",
    instruments=("Applied Biosystems StepOne", "Bio-Rad CFX", "Roche LightCycler", "Qiagen Rotor-Gene", "any RDML writer"),
)
class RdmlParser:
    """Registered parser for RDML files."""

    @staticmethod
    def sniff(head: bytes, name: str) -> float:
        """A zip whose first member is rdml_data.xml, a zip named .rdml, or XML with an <rdml> root."""
        if head.startswith(b"PK\x03\x04") and len(head) >= 30:
            length = int.from_bytes(head[26:28], "little")
            first = head[30 : 30 + length].decode("latin-1").rsplit("/", 1)[-1]
            if first == INNER_NAME or b"/" + INNER_NAME.encode() in head or b"\x00" + INNER_NAME.encode() in head:
                return 0.97
            if first.lower().endswith(".xml") and _RDML_ROOT.search(_first_member_head(head)):
                return 0.95  # a single XML under another name: recognised by its <rdml> root
            return 0.0
        text = head[:4096]
        for enc in ("utf-8", "utf-16"):
            try:
                decoded = text.decode(enc, "ignore")
            except LookupError:  # pragma: no cover
                continue
            if _RDML_ROOT.search(decoded) and "<" in decoded.lstrip("\ufeff \r\n\t")[:1]:
                return 0.95
        return 0.0

    @staticmethod
    def complete(data: bytes) -> str | None:
        """Whole when a zipped RDML has its zip directory at the end, and bare XML its closing root tag.

        Both are written last, so any cut loses them. Undetectable: none.
        """
        if data.startswith(b"PK"):
            return zip_incomplete(data, "RDML archive")
        tail = data[-512:].rstrip(b"\r\n\t \x00")
        if _RDML_END.search(tail) is None:
            last = tail[-40:].decode("utf-8", "replace").replace("\n", " ")
            return f"the RDML document has no closing </rdml> tag: it stops at '…{last}'"
        return None

    @staticmethod
    def parse(data: bytes, source: str, run_id: str) -> pa.Table:
        """Canonical rows (one per reaction x target) of every run in the document."""
        xml = _xml_of(bytes(data), source)
        reader = read_xml(xml, source)
        if reader.root != "rdml":
            raise ParseError(f"the XML root element is <{reader.root}>", source=source, line=1,
                             expected="an <rdml> document")
        runs = [r for r in reader.runs if r.reacts]
        if not runs:
            raise ParseError("the RDML document holds no reactions with data", source=source,
                             expected="<experiment><run><react><data> elements")
        first = runs[0]
        meta = {
            "encoding": reader.encoding,
            "instrument": first.instrument or None,
            "software": _software(first.software),
            "run_start": first.run_date or None,
            "plate": first.run_id or None,
        }
        wells: list[str | None] = []
        samples: list[str] = []
        roles: list[str] = []
        targets: list[str] = []
        dyes: list[str | None] = []
        cqs: list[str] = []
        lines: list[int] = []
        stepone: list[bool] = []
        for run in runs:
            ids = [r[0] for r in run.reacts]
            run_lines = np.array([r[4] for r in run.reacts], dtype=np.int64)
            wells.extend(_wells(run, ids, run_lines, source))
            is_stepone = "stepone" in (run.instrument + " " + " ".join(run.software)).lower().replace(" ", "")
            for react_id, sample, target, cq, line in run.reacts:
                samples.append(sample)
                kind = reader.sample_type.get(sample, "").strip().lower()
                role = _SAMPLE_TYPES.get(kind) or normalise_role(kind or sample, default=Role.UNKNOWN)
                roles.append(role.value)
                targets.append(target)
                dyes.append(reader.target_dye.get(target) or None)
                cqs.append(cq)
                lines.append(line)
                stepone.append(is_stepone)
        line_arr = np.asarray(lines, dtype=np.int32)
        ct = ct_array(pa.array(cqs, type=pa.string()), lines=line_arr, source=source, field="cq")
        # StepOne writes a flat NTC as its last cycle (40.0) instead of -1: not an amplification.
        quirk = np.asarray(stepone) & (np.asarray(roles) == Role.NTC.value) & (ct == np.float32(40.0))
        ct[quirk] = np.nan
        return canonical_table(
            run_id=run_id,
            source=source,
            line=line_arr,
            metadata=meta,
            well=pa.array(wells, type=pa.string()),
            sample_id=pa.array(samples, type=pa.string()),
            role=pa.array(roles, type=pa.string()),
            target=pa.array(targets, type=pa.string()),
            dye=pa.array(dyes, type=pa.string()),
            ct=ct,
        )
