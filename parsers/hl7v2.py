"""HL7 v2 result messages: ``OUL^R22`` (Roche cobas 6800/8800/5800) and ``ORU^R01``.

Wire form: segments end with CR (LF and CRLF are tolerated, as files saved on
Windows or Linux have them), several messages may follow each other, each
optionally wrapped in MLLP (``VT`` … ``FS CR``). Delimiters are read from each
message's MSH: MSH-1 is the field separator, MSH-2 the component, repetition,
escape and sub-component characters.

Also accepted: the *JavaScript-escaped* form that LIS middleware logs write
(the real cobas fixture comes from one): the whole message on one line,
segments separated by the two characters ``\\n`` and a backslash written
``\\\\`` (``MSH|^~\\\\&``). It is recognised by its escaped segment breaks and
turned back into the wire form before parsing.

Where the specimen id is: SPM-2 (OUL^R22 and ORU^R01 v2.5.1, where SPM may
follow the OBX it describes), else OBR-3/OBR-2 (filler/placer order number),
else ORC-3/ORC-2, else an OBX whose observation is named "Sample ID", else
PID-3. cobas writes ``ValueNotSet`` in OBX-5 of a qualitative target and its
call (``POS``/``NEG``) in OBX-8 (abnormal flags). A numeric OBX whose
observation or units name a Ct (``TGT1-CT``, ``{Ct}``, LOINC "[Cycle
Threshold #]") is that target's Ct. One row per specimen x target; ``line`` is
the 1-based segment number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pyarrow as pa

from parsers.errors import ParseError
from parsers.schema import Role
from parsers.lis import ResultRows, field_at, iso_timestamp, numbered_records
from parsers.completeness import unterminated
from parsers.registry import register
from parsers.text import decode, head_text, normalise_call, normalise_role, split_lines

_MLLP_END = re.compile(r"(?:\r\n|\r|\n)?\x1c(?:\r\n|\r|\n)?")
#: The id of each non-blank segment line (leading NULs and blanks skipped), for the completeness test.
_SEGMENT_KIND = re.compile(r"^[\x00 \t\f\v]*([^\x00\s][^\n]{0,2})", re.MULTILINE)
_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")
# A segment break written as the two characters backslash + n, followed by a segment id and a field separator.
_ESCAPED_BREAK = re.compile(r"\\[nr]+(?=[A-Z][A-Z0-9]{2}[|^~&!#])")
_JS_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.S)
_JS_CHARS = {"n": "\r", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "'": "'", "/": "/", "0": "\x00"}
_CT_NAME = re.compile(r"(?:[\s_\-]*(?:\[\s*)?(?:cycle threshold|ct value|ct|cq|cp)\b.*)$", re.I)
_LOINC_TAIL = re.compile(r"\s*\[[^\]]*\].*$")
_CT_UNITS = frozenset({"ct", "{ct}", "cycles", "cycle", "{cycles}", "cq", "{cq}"})
_NO_VALUE = frozenset({"", "valuenotset", '"', '""', "na", "n/a"})
_SAMPLE_ID_OBS = frozenset({"sample id", "sampleid", "specimen id", "specimenid", "sample", "barcode", "sample barcode"})
_STANDARD_CODES = frozenset({"LN", "LOINC", "SCT", "SNM", "SNOMED", "SNOMEDCT"})


def is_js_escaped(text: str) -> bool:
    """True when segment breaks are written as backslash-n (a JavaScript string), not as line ends."""
    escaped = len(_ESCAPED_BREAK.findall(text[:65536]))
    real = len(split_lines(text[:65536]))
    return escaped > 0 and escaped >= real


def js_unescape(text: str) -> str:
    """Undo JavaScript string escaping (``\\n`` → CR segment break, ``\\\\`` → ``\\``, ``\\"`` → ``"``).

    Unknown escapes keep their backslash: they are HL7 escape sequences (``\\F\\``).
    """

    def one(m: re.Match[str]) -> str:
        code = m.group(1)
        if code in _JS_CHARS:
            return _JS_CHARS[code]
        if len(code) == 5 and code[0] == "u":
            return chr(int(code[1:], 16))
        return "\\" + code

    return _JS_ESCAPE.sub(one, text)


@dataclass(frozen=True)
class Encoding:
    """Delimiters declared by MSH-1 and MSH-2."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    def unescape(self, value: str) -> str:
        """Undo HL7 escapes (``\\F\\``, ``\\S\\``, ``\\T\\``, ``\\R\\``, ``\\E\\``, ``\\Xhh\\``, ``\\.br\\``)."""
        e = self.escape
        if not e or e not in value:
            return value
        table = {"F": self.field, "S": self.component, "T": self.subcomponent, "R": self.repetition, "E": e,
                 ".br": "\n"}

        def one(m: re.Match[str]) -> str:
            code = m.group(1)
            if code in table:
                return table[code]
            if code[:1] == "X" and re.fullmatch(r"X(?:[0-9A-Fa-f]{2})+", code):
                return bytes.fromhex(code[1:]).decode("latin-1")
            return m.group(0)

        return re.sub(re.escape(e) + r"([^" + re.escape(e) + r"]{1,32})" + re.escape(e), one, value)

    def components(self, value: str) -> list[str]:
        """Components of the first repetition, sub-components dropped, unescaped and stripped."""
        first = value.split(self.repetition, 1)[0] if self.repetition else value
        return [self.unescape(c.split(self.subcomponent, 1)[0] if self.subcomponent else c).strip()
                for c in first.split(self.component)]

    def first(self, value: str) -> str:
        """First non-empty component of the first repetition."""
        return next((c for c in self.components(value) if c), "")


def _encoding(segment: str, source: str, line: int) -> Encoding:
    if len(segment) < 8:
        raise ParseError("the MSH segment is too short to declare its delimiters", source=source, line=line,
                         field="MSH-2", expected="MSH|^~\\& (field separator and encoding characters)")
    fs = segment[3]
    chars = segment[4:].split(fs, 1)[0]
    if fs.isalnum() or fs.isspace() or len(chars) < 3 or len(chars) > 5 or fs in chars or len(set(chars)) != len(chars) \
            or any(c.isalnum() or c.isspace() for c in chars):
        raise ParseError(
            f"the MSH segment declares unusable delimiters {segment[3:8]!r}",
            source=source,
            line=line,
            field="MSH-2",
            expected="a field separator and 4 distinct encoding characters, e.g. MSH|^~\\&",
        )
    return Encoding(fs, chars[0], chars[1], chars[2], chars[3] if len(chars) > 3 else "")


@dataclass
class _Group:
    """Observations of one specimen: what identifies it, as met in the message."""

    spm: str = ""
    obr: str = ""
    orc: str = ""
    pid: str = ""
    obx_id: str = ""
    role_code: str = ""
    started_by: str = ""
    rows: dict[str, dict] = field(default_factory=dict)

    def sample_id(self) -> str:
        return self.spm or self.obr or self.orc or self.obx_id or self.pid


def _target(comps: list[str]) -> str:
    comps = comps + ["", "", ""]
    code, text, system = comps[0], comps[1], comps[2].upper()
    # LOINC/SNOMED codes are opaque numbers: the text says which gene it is.
    if system in _STANDARD_CODES and text:
        return _LOINC_TAIL.sub("", text).strip() or text
    return code or text


def _is_number(value: str) -> bool:
    return re.fullmatch(r"[+-]?(?:\d+(?:[.,]\d*)?|[.,]\d+)", value.strip()) is not None


#: Segments that open a message or an order group: a message never ends on one.
_OPENS_GROUP = frozenset({"MSH", "SFT", "PID", "PD1", "PV1", "PV2", "ORC", "OBR", "TQ1", "SAC"})


def _group_ends(kinds: list[str]) -> set[str]:
    """Segment types that end the file's whole order groups (the segment before the next ORC/OBR/MSH opens one)."""
    ends: set[str] = set()
    for i in range(1, len(kinds)):
        opens = kinds[i] in ("MSH", "ORC") or (kinds[i] == "OBR" and kinds[i - 1] not in ("ORC", "SPM", "SAC", "TQ1"))
        if opens and kinds[i - 1] not in _OPENS_GROUP:
            ends.add(kinds[i - 1])
    return ends


@register(
    "hl7v2",
    description="HL7 v2 result message (OUL^R22 / ORU^R01, MLLP tolerated)",
    instruments=("Roche cobas 6800/8800", "Roche cobas 5800", "HL7 v2 LIS middleware"),
)
class Hl7v2Parser:
    """Registered parser for HL7 v2 OUL^R22 / ORU^R01 files."""

    @staticmethod
    def sniff(head: bytes, name: str) -> float:
        """HL7 starts with MSH (or a FHS/BHS batch header) and a field separator."""
        text = head_text(head[:8192]).lstrip("\x0b\x1c\r\n \t\ufeff")
        m = re.match(r"(MSH|FHS|BHS)([^A-Za-z0-9\s])([^A-Za-z0-9\s]{3,5})", text)
        if not m:
            return 0.0
        fs = re.escape(m.group(2))
        if re.search(rf"(?:[\r\n]|\\n)(?:OBX|SPM|OBR|PID|ORC){fs}", text):
            return 0.97
        return 0.85

    @staticmethod
    def complete(data: bytes) -> str | None:
        """Whole when every message's structure is closed and its last segment terminated.

        MLLP-wrapped messages end with FS (CR): every VT block must be closed.
        Otherwise the last segment must end with a segment terminator (CR/LF; a
        JavaScript-escaped log ends its one line). A batch (FHS/BHS) must end
        with its FTS/BTS trailer. A message may not stop on a segment that opens
        a group (MSH, PID, ORC, OBR, ...) before its results, nor, when the
        file's other orders all end with one segment type (ORU v2.5.1: SPM
        after its OBX), on another type. Undetectable: a cut exactly at a
        segment end after an OBX of an order whose group has no closing segment
        (the count of OBX per order is not stated), or between whole messages.
        """
        text = data.decode("utf-8", "replace").removeprefix("\ufeff")
        body = text.strip("\r\n\t \x00")
        if body.startswith("\x0b"):
            if not body.endswith("\x1c") or body.count("\x0b") != body.count("\x1c"):
                return "the last HL7 message has no MLLP end (FS): the transmission stops inside it"
            return None
        why = unterminated(data)
        if why is not None:
            return why
        if is_js_escaped(text):
            text = js_unescape(text)
        # Segment ids of the whole file in one regex pass (first three characters of each non-blank line).
        lines = _MLLP_END.sub("\r", text).replace("\x0b", "").replace("\r\n", "\n").replace("\r", "\n")
        kinds = _SEGMENT_KIND.findall(lines)
        if not kinds:
            return "the file holds no HL7 segments"
        for header, trailer in (("FHS", "FTS"), ("BHS", "BTS")):
            if header in kinds and trailer not in kinds[kinds.index(header):]:
                return f"the HL7 batch has no {trailer} trailer: it stops after a {kinds[-1]} segment"
        body_kinds = [k for k in kinds if k not in ("FHS", "BHS", "FTS", "BTS")]
        last = body_kinds[-1] if body_kinds else kinds[-1]
        if last in _OPENS_GROUP:
            return f"the last HL7 message stops after its {last} segment, before the results (OBX) it announces"
        ends = _group_ends(body_kinds)
        if ends and last not in ends:
            return (f"the last HL7 message stops after an {last} segment; every other order in the file ends with "
                    f"{' or '.join(sorted(ends))}")
        return None

    @staticmethod
    def parse(data: bytes, source: str, run_id: str) -> pa.Table:
        """Canonical rows (one per specimen x target) of every message in the file."""
        text, encoding = decode(data, source)
        escaped = is_js_escaped(text)
        if escaped:
            text = js_unescape(text)
        # MLLP: VT starts a block, FS CR ends it; the block end is a segment end, not an empty segment.
        text = _MLLP_END.sub("\r", text).replace("\x0b", "")
        segments = split_lines(text)
        meta: dict[str, str] = {"encoding": encoding}
        groups: list[_Group] = []
        enc: Encoding | None = None
        group: _Group | None = None
        message_type = ""
        pid = ""
        pending_orc = ""
        messages = 0
        for line, segment in numbered_records(segments, lambda raw: raw.strip("\x00").lstrip()):
            seg_id = segment[:3]
            if seg_id == "MSH":
                enc = _encoding(segment, source, line)
                fields = segment.split(enc.field)
                # MSH-1 is the separator itself, so MSH-n is fields[n - 1].
                message_type = "^".join(enc.components(field_at(fields, 8))[:2])
                _msh_metadata(meta, enc, fields)
                group, pid, pending_orc = None, "", ""
                messages += 1
                continue
            if seg_id in ("FHS", "BHS", "FTS", "BTS"):
                continue
            if enc is None:
                raise ParseError(
                    f"segment '{seg_id}' comes before any MSH segment",
                    source=source,
                    line=line,
                    expected="an HL7 v2 message starting with MSH|^~\\&",
                )
            if not _SEGMENT_ID.match(seg_id) or (len(segment) > 3 and segment[3] != enc.field):
                raise ParseError(
                    f"line is not an HL7 segment: {segment[:20]!r}",
                    source=source,
                    line=line,
                    expected=f"a three-letter segment id followed by '{enc.field}'",
                )
            fields = segment.split(enc.field)
            if seg_id == "SFT" and "software" not in meta:
                product = " ".join(x for x in (enc.first(field_at(fields, 3)), enc.first(field_at(fields, 2))) if x)
                if product:
                    meta["software"] = product
            elif seg_id == "PID":
                pid = enc.first(field_at(fields, 3))
                group = None
            elif seg_id == "ORC":
                pending_orc = enc.first(field_at(fields, 3)) or enc.first(field_at(fields, 2))
            elif seg_id == "SPM":
                spm = enc.first(field_at(fields, 2))
                role_code = enc.first(field_at(fields, 11)).upper()
                if group is not None and group.started_by == "OBR" and not group.spm:
                    group.spm, group.role_code = spm, role_code  # ORU v2.5.1: SPM after its OBX
                else:
                    group = _Group(spm=spm, pid=pid, role_code=role_code, started_by="SPM")
                    groups.append(group)
            elif seg_id == "OBR":
                obr = enc.first(field_at(fields, 3)) or enc.first(field_at(fields, 2))
                assay = enc.components(field_at(fields, 4))
                if "assay" not in meta and any(assay):
                    meta["assay"] = (assay + ["", ""])[1] or assay[0]
                if group is not None and group.started_by == "SPM" and not group.obr and not group.rows:
                    group.obr = obr
                else:
                    inherited = group.spm if group is not None and group.started_by == "SPM" else ""
                    role = group.role_code if inherited and group is not None else ""
                    group = _Group(spm=inherited, obr=obr, orc=pending_orc, pid=pid, role_code=role,
                                   started_by="OBR")
                    groups.append(group)
                pending_orc = ""
            elif seg_id == "OBX":
                if group is None:
                    group = _Group(pid=pid, orc=pending_orc, started_by="OBX")
                    groups.append(group)
                _observation(group, enc, fields, line, meta, source)
        if enc is None:
            raise ParseError("no MSH segment found", source=source, line=1,
                             expected="an HL7 v2 message starting with MSH|^~\\&")
        meta.setdefault("message_type", message_type)
        return _table(groups, meta, source, run_id)


def _msh_metadata(meta: dict[str, str], enc: Encoding, fields: list[str]) -> None:
    app = enc.components(field_at(fields, 2))
    if "instrument" not in meta and (app[0] if app else ""):
        meta["instrument"] = app[0]
    stamp = field_at(fields, 6)
    if "run_end" not in meta and stamp.strip():
        meta["message_time"] = iso_timestamp(enc.components(stamp)[0], fraction_and_zone=True)


def _observation(group: _Group, enc: Encoding, fields: list[str], line: int, meta: dict[str, str],
                 source: str) -> None:
    ident = enc.components(field_at(fields, 3))
    value_type = field_at(fields, 2).strip().upper()
    value = enc.first(field_at(fields, 5))
    units = enc.first(field_at(fields, 6)).lower()
    flags = enc.first(field_at(fields, 8))
    status = field_at(fields, 11).strip().upper()
    name = _target(ident)
    words = " ".join(ident).lower()
    if any(c.lower() in _SAMPLE_ID_OBS for c in ident[:2]):
        group.obx_id = value
        return
    if not name:
        raise ParseError("the observation has no identifier", source=source, line=line, field="OBX-3",
                         expected="the target or test code, e.g. TGT1^TGT1^99ROC")
    ct_named = bool(_CT_NAME.search(" ".join(c for c in ident if c))) and not re.search(r"\bpresence\b", words)
    is_ct = _is_number(value) and (ct_named or units in _CT_UNITS) and value_type in ("NM", "ST", "SN", "")
    if is_ct:
        target = _CT_NAME.sub("", name).strip() or name
        if target == name and ct_named and len(ident) > 1 and ident[1]:
            target = _CT_NAME.sub("", _LOINC_TAIL.sub("", ident[1])).strip() or name
    else:
        target = name
    row = group.rows.get(target)
    if row is None:
        row = group.rows[target] = {"line": line, "ct": None, "ct_line": line, "call": None}
    if is_ct:
        if row["ct"] is None:
            row["ct"], row["ct_line"] = value.replace(",", "."), line
    else:
        call = None
        # A coded value (CWE: 260373001^Detected^SCT) carries the word in its text component.
        for part in enc.components(field_at(fields, 5)):
            if part.lower() not in _NO_VALUE and not _is_number(part):
                call = normalise_call(part)
                if call is not None:
                    break
        if call is None:
            call = normalise_call(flags)
        if status == "X":  # result status X: the observation could not be obtained
            call = "invalid"
        if row["call"] is None:
            row["call"] = call
    operator = enc.components(field_at(fields, 16))
    if "operator" not in meta:
        who = operator[0] if operator and operator[0] and not operator[0].isdigit() else " ".join(
            c for c in operator[1:3][::-1] if c)
        if who:
            meta["operator"] = who
    analysed = enc.first(field_at(fields, 19)) or enc.first(field_at(fields, 14))
    if analysed and "run_end" not in meta:
        meta["run_end"] = iso_timestamp(analysed, fraction_and_zone=True)


def _role(group: _Group) -> str:
    sample_id = group.sample_id()
    role = normalise_role(sample_id, default=Role.SAMPLE)
    code = group.role_code
    # SPM-11 (HL7 table 0369): Q control specimen, C calibrator; P patient.
    if code == "C":
        return Role.STD.value
    if code in ("Q", "E", "F", "O", "V") and role == Role.SAMPLE:
        # cobas names its control lots "4169_pos" / "4170_neg".
        words = set(re.split(r"[^a-z]+", sample_id.lower()))
        if words & {"pos", "positive", "pc"}:
            return Role.PC.value
        if words & {"neg", "negative", "nc"}:
            return Role.NC.value
        if "ntc" in words:
            return Role.NTC.value
        return Role.UNKNOWN.value
    return role.value


def _table(groups: list[_Group], meta: dict[str, str], source: str, run_id: str) -> pa.Table:
    rows = ResultRows()
    for group in groups:
        if not group.rows:
            continue
        sample_id = group.sample_id()
        if not sample_id:
            first = min(r["line"] for r in group.rows.values())
            raise ParseError("the observations name no specimen", source=source, line=first, field="SPM-2",
                             expected="the specimen id in SPM-2, OBR-3/OBR-2 or ORC-3")
        role = _role(group)
        for target, row in group.rows.items():
            rows.add(line=row["line"], ct_line=row["ct_line"], sample_id=sample_id, role=role, target=target,
                     ct=row["ct"], call=row["call"])
    if not rows:
        raise ParseError("the message holds no observations (OBX segments)", source=source,
                         expected="at least one OBX segment with a result")
    ct = rows.cts(source=source, field="OBX-5 Ct value")
    metadata = {k: v for k, v in meta.items() if k not in ("message_type", "message_time")}
    if "run_end" not in metadata and meta.get("message_time"):
        metadata["run_end"] = meta["message_time"]
    return rows.table(ct, run_id=run_id, source=source, metadata=metadata)
