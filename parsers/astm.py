"""ASTM E1394 / CLSI LIS2-A2 result messages (GeneXpert, Panther, cobas, m2000 LIS output).

A message is a sequence of records, one per line: ``H`` header, ``P`` patient,
``O`` order (one specimen), ``R`` result, ``C`` comment, ``L`` terminator. The
header's second field *defines* the delimiters (``H|\\^&`` is the standard set;
GeneXpert writes ``H|@^\\`` with ``@`` for repeats), so nothing is assumed.

Captured from the wire the records travel inside ASTM E1381 (CLSI LIS1-A)
frames: ``STX FN text ETX|ETB C1 C2 CR LF``; ``FN`` is the frame number 0-7,
``ETB`` marks an intermediate frame whose text continues in the next one, and
``C1C2`` is the modulo-256 sum of the bytes from ``FN`` to ``ETX``/``ETB`` as two
hex digits. A frame whose checksum does not match was corrupted on the line and
is refused (the analyzer would have retransmitted it).

Each vendor puts the analyte and the kind of value in different components of
the universal test id (R-3); see ``_LAYOUTS``. One canonical row is produced per
specimen (O record) x target, gathering the target's call and Ct from its
several R records. Tube systems have no wells: ``well`` is null and ``line`` is
the record number in the message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from parsers.errors import ParseError
from parsers.schema import Role
from parsers.lis import ResultRows, field_at, iso_timestamp, numbered_records
from parsers.completeness import unterminated
from parsers.registry import register
from parsers.text import decode, head_text, normalise_call, normalise_role, split_lines

STX, ETX, ETB, ENQ, EOT, ACK, NAK = b"\x02", b"\x03", b"\x17", b"\x05", b"\x04", b"\x06", b"\x15"
_LINK_CONTROL = frozenset(b"\x04\x05\x06\x15\r\n \t")
_RECORD_TYPES = frozenset("HPOQRCLMS")


# ---------------------------------------------------------------------------
# E1381 framing
# ---------------------------------------------------------------------------


def deframe(data: bytes, source: str | None = None) -> bytes:
    """The message text carried by E1381 frames in ``data`` (ETB frames joined), checksums verified.

    Link-control bytes between frames (ENQ, EOT, ACK, NAK, line ends) are the
    session around the message and are dropped. A frame without its end, with a
    wrong checksum or out of sequence is a ParseError naming the frame.
    """
    out = bytearray()

    def broken(message: str, field: str, wanted: str) -> ParseError:
        # Every framing error names the record being rebuilt, which a technician can find in the message.
        return ParseError(message, source=source, line=_record_number(out), field=field, expected=wanted)

    pos = 0
    index = 0  # frames seen, 1-based in messages
    expected: int | None = None
    n = len(data)
    while pos < n:
        stx = data.find(STX, pos)
        gap = data[pos:] if stx < 0 else data[pos:stx]
        if any(b not in _LINK_CONTROL for b in gap):
            offset = pos + next(i for i, b in enumerate(gap) if b not in _LINK_CONTROL)
            raise broken(f"text outside an E1381 frame at byte {offset}", "frame",
                         "every record inside STX ... ETX frames, or no framing at all")
        if ENQ[0] in gap or EOT[0] in gap:
            expected = None  # a new transmission restarts frame numbering
        if stx < 0:
            break
        index += 1
        end = _frame_end(data, stx + 1)
        where = f"frame {index}"
        if end < 0:
            raise broken(f"{where} is truncated: it has no ETX/ETB end", "frame",
                         "each frame closed by ETX or ETB and a two-digit checksum")
        if end == stx + 1:
            raise broken(f"{where} has no frame number", "frame", "a digit 0-7 after STX")
        fn_byte = data[stx + 1]
        if not 0x30 <= fn_byte <= 0x37:
            raise broken(f"{where} has frame number {chr(fn_byte)!r}", "frame", "a digit 0-7 after STX")
        fn = fn_byte - 0x30
        if expected is not None and fn != expected:
            raise broken(f"{where} is numbered {fn} where {expected} was expected: a frame is missing or repeated",
                         "frame", f"frame number {expected}")
        written = data[end + 1 : end + 3]
        computed = sum(data[stx + 1 : end + 1]) & 0xFF
        if len(written) < 2:
            raise broken(f"{where} is truncated before its checksum", "checksum", "two hex digits after ETX/ETB")
        try:
            written_value = int(written.decode("ascii"), 16)
        except (UnicodeDecodeError, ValueError):
            written_value = -1
        if written_value != computed:
            raise broken(f"{where} (frame number {fn}) fails its checksum: written {written.decode('latin-1')!r}, "
                         f"computed {computed:02X}; the transmission was corrupted",
                         "checksum", f"checksum {computed:02X}")
        out += data[stx + 2 : end]
        if data[end] == ETX[0] and not out.endswith(b"\r") and not out.endswith(b"\n"):
            out += b"\r"  # an ETX frame ends a record even when the sender omits the CR
        expected = (fn + 1) % 8
        if data[end] == ETX[0] and data[stx + 2 : stx + 3] == b"L":
            # The L record ends the message; the next one is a new session that numbers from 1
            # again, and loggers that drop ENQ/EOT leave no other trace of it.
            expected = None
        pos = end + 3
    return bytes(out)


_FRAME_BYTE = re.compile(rb"[\x02\x03\x17]")


def _frame_end(data: bytes, start: int) -> int:
    """Offset of the ETX or ETB closing the frame begun before ``start``; -1 if cut (or a new STX comes first).

    One regex search for the next framing byte keeps deframing linear in the capture size.
    """
    m = _FRAME_BYTE.search(data, start)
    if m is None or data[m.start()] == STX[0]:
        return -1
    return m.start()


def _record_number(text: bytes | bytearray) -> int:
    """Number of the record being built after ``text`` (1-based), for error messages."""
    decoded = bytes(text).decode("latin-1")
    count = len(split_lines(decoded))
    return count + 1 if not decoded or decoded.endswith(("\r", "\n")) else count


# ---------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Delimiters:
    """The four delimiters an H record declares (field, repeat, component, escape)."""

    field: str = "|"
    repeat: str = "\\"
    component: str = "^"
    escape: str = "&"

    def unescape(self, value: str) -> str:
        """Undo ASTM escape sequences (``&F&`` field, ``&S&`` component, ``&R&`` repeat, ``&E&`` escape)."""
        e = self.escape
        if e not in value:
            return value
        for code, char in (("F", self.field), ("S", self.component), ("R", self.repeat), ("E", e)):
            value = value.replace(f"{e}{code}{e}", char)
        return value

    def components(self, value: str) -> list[str]:
        """Components of the first repeat of a field, unescaped and stripped."""
        first = value.split(self.repeat, 1)[0]
        return [self.unescape(c).strip() for c in first.split(self.component)]


def _delimiters(record: str, source: str, line: int) -> Delimiters:
    if len(record) < 5:
        raise ParseError("the H record is too short to declare its delimiters", source=source, line=line,
                         field="H-2 delimiters", expected="H followed by four delimiter characters, e.g. H|\\^&")
    chars = record[1:5]
    if len(set(chars)) != 4 or any(c.isalnum() or c in " \r\n" for c in chars):
        raise ParseError(
            f"the H record declares unusable delimiters {chars!r}",
            source=source,
            line=line,
            field="H-2 delimiters",
            expected="four distinct punctuation characters (field, repeat, component, escape), e.g. |\\^&",
        )
    return Delimiters(*chars)


# ---------------------------------------------------------------------------
# Vendor layouts of the universal test id
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    """Where a vendor writes the analyte (target) and the kind of value in R-3's components."""

    name: str
    target: tuple[int, ...]  # component indexes tried in order; first non-empty wins
    qualifier: int | None  # component saying which value this is (Ct, EndPt, interpretation...)


_LAYOUTS = {
    # Cepheid: ^^^host test code^assay name^assay version^analyte^complementary result (Ct, EndPt).
    "genexpert": _Layout("genexpert", (6,), 7),
    # Hologic Panther: ^^^test^analyte^^replicate; the Ct is an analyte named "<target> Ct".
    "panther": _Layout("panther", (4, 3), None),
    # Roche ASTM+: ^^^test code^treatment^pre-treatment^result evaluation type.
    "cobas": _Layout("cobas", (3,), 6),
    # Abbott m2000: ^^^assay^assay name^...^result type (F final, I interpretation, P cycle number).
    "m2000": _Layout("m2000", (4, 3), 8),
    "generic": _Layout("generic", (3, 4, 5), None),
}

_CT_WORDS = frozenset({"ct", "cq", "cp", "cn", "ct value", "cycle number", "cycle threshold"})
_IGNORED_WORDS = frozenset({"endpt", "endpoint", "end point", "rfu", "log", "loglevel", "delta ct"})
_VALIDITY_WORDS = frozenset({"resultvalid", "result valid", "icresult", "validity"})


def _vendor(sender: list[str]) -> str:
    text = " ".join(sender).lower()
    for key, words in (
        ("genexpert", ("genexpert", "cepheid", "xpert")),
        ("panther", ("panther", "hologic")),
        ("m2000", ("m2000", "abbott")),
        ("cobas", ("cobas", "roche")),
    ):
        if any(w in text for w in words):
            return key
    return "generic"


@dataclass
class _Order:
    sample_id: str
    role: str
    line: int
    # (test code, target) -> row being built: GeneXpert repeats probe names under each sub-test.
    rows: dict[tuple[str, str], dict] = field(default_factory=dict)
    invalid: bool = False
    pending: list[tuple[int, str, str]] = field(default_factory=list)


def _classify(layout: _Layout, comps: list[str], units: str) -> tuple[str, str]:
    """(target, kind) of one R record; kind is ``ct``, ``call``, ``validity`` or ``ignore``."""
    written = len(comps)
    comps = comps + [""] * 10
    if layout.name == "genexpert" and written < 8:
        # Short GeneXpert form ^^^test^analyte^complementary (e.g. ^^^SARS-CoV-2^N2^Ct); the
        # test-level interpretation is ^^^SARS-CoV-2 alone, named after the test.
        layout = _Layout("genexpert-short", (4, 3), 5)
    target = next((comps[i] for i in layout.target if comps[i]), "")
    qualifier = comps[layout.qualifier] if layout.qualifier is not None else ""
    q = qualifier.lower()
    if layout.name == "generic":
        names = [c for c in comps[3:] if c]
        target = names[0] if names else ""
        q = names[-1].lower() if len(names) > 1 else ""
    if layout.name == "m2000":
        # Result type P is the cycle number (m2000 CN, its Ct); I and F carry text.
        if q == "p" or "cycle" in units.lower():
            return target, "ct"
        return target, "call"
    low = target.lower()
    if low in _VALIDITY_WORDS:
        return target, "validity"
    if q in _CT_WORDS:
        return target, "ct"
    if q in _IGNORED_WORDS:
        return target, "ignore"
    for suffix in (" ct", " cq", "_ct", "-ct"):
        if low.endswith(suffix) and len(low) > len(suffix):
            return target[: -len(suffix)].strip(), "ct"
    return target, "call"


# ---------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------


def _message_records(data: bytes, source: str) -> tuple[list[str], str]:
    """The records of the file (deframed if it is an E1381 capture) and the text encoding."""
    if STX in data[:4096] or (STX in data and ETX in data):
        payload = deframe(data, source)
        text, encoding = decode(payload, source) if payload.strip() else ("", "ascii")
    else:
        text, encoding = decode(data, source)
        if "\x02" in text:  # a framed capture re-encoded (e.g. UTF-16): frame the text's bytes
            text, _ = decode(deframe(text.encode("utf-8"), source), source)
    return split_lines(text), encoding


@register(
    "astm",
    description="ASTM E1394 / LIS2-A2 result message (raw or in E1381 frames)",
    instruments=("Cepheid GeneXpert", "Hologic Panther", "Roche cobas (ASTM+)", "Abbott m2000 (ASTM)"),
)
class AstmParser:
    """Registered parser for ASTM E1394 messages."""

    @staticmethod
    def sniff(head: bytes, name: str) -> float:
        """An ASTM file starts with an H record (possibly after ENQ and STX+frame number)."""
        head = head[:8192]
        if STX in head:
            # Frames may be tiny (a record split over many ETB frames): join what the head holds.
            texts = re.findall(rb"\x02[0-7]([^\x02\x03\x17]*)(?:[\x03\x17]|$)", head)
            head = b"".join(texts)
        text = head_text(head).lstrip("\x05\x04\x06\r\n \t\ufeff")
        m = re.match(r"H([^A-Za-z0-9\s])([^A-Za-z0-9\s])([^A-Za-z0-9\s])([^A-Za-z0-9\s])", text)
        if not m or len(set(m.groups())) != 4:
            return 0.0
        fs = re.escape(m.group(1))
        others = len(re.findall(rf"[\r\n\x02][0-7]?[POR]{fs}", text))
        return 0.97 if others else 0.8

    @staticmethod
    def complete(data: bytes) -> str | None:
        """Whole when the last record is the L (terminator) record, and (framed) every frame is closed.

        A message ends with its L record; in an E1381 capture every frame ends
        with ETX/ETB and a two-digit checksum, so a cut frame is found by
        deframing (EOT after the last frame is not required: loggers drop it).
        A raw message must also end with its record terminator. Undetectable: a
        file of several whole messages cut exactly between two of them.
        """
        if STX in data[:4096] or (STX in data and ETX in data):
            try:
                text = deframe(data).decode("latin-1")
            except ParseError as exc:
                if "truncated" in exc.reason:
                    return f"the ASTM transmission is cut: {exc.reason}"
                return None  # corrupted (checksum, sequence), not cut: the parser says where
            if data.rstrip(b"\r\n\x04\x05\x06 \t").endswith(ETB) or not text.strip():
                return "the ASTM transmission stops after an intermediate frame (ETB): its last frame is missing"
        else:
            why = unterminated(data)
            if why is not None:
                return why
            text = data.decode("latin-1")
        # Only the first and the last record matter: look at a head and a tail, not every record.
        records = [r for r in (r.strip("\x00\r\n\t ") for r in split_lines(text[:4096])) if r]
        tail = [r for r in (r.strip("\x00\r\n\t ") for r in split_lines(text[-4096:])) if r]
        if not records or not tail:
            records = [r for r in (r.strip("\x00\r\n\t ") for r in split_lines(text)) if r]
            tail = records
        if not records:
            return "the ASTM file holds no records"
        first = records[0].lstrip("\ufeff\xef\xbb\xbf")
        delimiter = first[1:2] if first[:1] == "H" else "|"
        last = tail[-1]
        if not (last[:1].upper() == "L" and last[1:2] == delimiter):
            return f"the ASTM message has no terminator record (L): it stops after a '{last[:1]}' record"
        return None

    @staticmethod
    def parse(data: bytes, source: str, run_id: str) -> pa.Table:
        """Canonical rows (one per specimen x target) of every message in the file."""
        records, encoding = _message_records(data, source)
        meta: dict[str, str] = {"encoding": encoding}
        orders: list[_Order] = []
        delims: Delimiters | None = None
        layout = _LAYOUTS["generic"]
        order: _Order | None = None
        patient_id = ""
        in_message = False
        last_line = 0
        for line_no, record in numbered_records(records, lambda raw: raw.strip("\x00\r\n")):
            last_line = line_no
            kind = record[0].upper()
            if kind == "H":
                if in_message:
                    raise ParseError("a new H record starts before the previous message's L record", source=source,
                                     line=line_no, expected="an L (terminator) record closing each message")
                delims = _delimiters(record, source, line_no)
                fields = [record[0], record[2:5]] + record[5:].split(delims.field)[1:]
                sender = delims.components(field_at(fields, 4))
                vendor = _vendor(sender)
                layout = _LAYOUTS[vendor]
                _header_metadata(meta, vendor, sender, fields, delims)
                in_message, order, patient_id = True, None, ""
                continue
            if delims is None or not in_message:
                raise ParseError(
                    f"record '{record[:1]}' comes before any H (header) record" if delims is None
                    else f"record '{record[:1]}' comes after the L record that ended the message",
                    source=source,
                    line=line_no,
                    expected="a message that starts with an H record (H|\\^&...) and ends with an L record",
                )
            if kind not in _RECORD_TYPES or len(record) < 2 or record[1] != delims.field:
                raise ParseError(
                    f"line is not an ASTM record: {record[:20]!r}",
                    source=source,
                    line=line_no,
                    expected=f"a record type letter (H, P, O, R, C, L) followed by '{delims.field}'",
                )
            fields = record.split(delims.field)
            if kind == "L":
                in_message = False
                order = None
            elif kind == "P":
                order = None
                patient_id = next((delims.components(field_at(fields, i))[0] for i in (3, 2, 4)
                                   if field_at(fields, i).strip()), "")
            elif kind == "O":
                order = _new_order(fields, delims, patient_id, line_no, source)
                orders.append(order)
            elif kind == "R":
                if order is None:
                    raise ParseError("an R (result) record has no O (order) record before it", source=source,
                                     line=line_no, expected="each result after the order record of its specimen")
                _add_result(order, layout, delims, fields, line_no, meta, source)
        if in_message:
            raise ParseError(
                "the message has no L (terminator) record: the file is truncated",
                source=source,
                line=last_line + 1,
                expected="a complete message ending with an L record",
            )
        if delims is None:
            raise ParseError("no H (header) record found", source=source, line=1,
                             expected="an ASTM E1394 message starting with H|\\^&")
        return _table(orders, layout, meta, source, run_id)


def _header_metadata(meta: dict[str, str], vendor: str, sender: list[str], fields: list[str],
                     delims: Delimiters) -> None:
    sender = sender + [""] * 7
    if vendor == "genexpert":  # system name^GeneXpert^software version
        instrument, software, serial = sender[1] or "GeneXpert", sender[2], ""
    elif vendor == "m2000":  # m2000^software^serial^interface
        instrument, software, serial = "Abbott " + sender[0], sender[1], sender[2]
    elif vendor == "cobas":  # name^manufacturer^instrument type^software^protocol^serial
        instrument, software, serial = sender[2] or sender[0], sender[3], sender[5]
    else:
        instrument, software, serial = sender[0], sender[2] if len(sender) > 2 else "", sender[3]
    for key, value in (("instrument", instrument), ("software", software), ("serial", serial)):
        if value and key not in meta:
            meta[key] = value


def _new_order(fields: list[str], delims: Delimiters, patient_id: str, line: int, source: str) -> _Order:
    specimen = delims.components(field_at(fields, 2))[0]
    instrument_specimen = delims.components(field_at(fields, 3))[0]
    sample_id = specimen or instrument_specimen or patient_id
    if not sample_id:
        raise ParseError("the order record names no specimen", source=source, line=line, field="O-3 specimen ID",
                         expected="the specimen (or pool) id in O-3 or O-4")
    role = normalise_role(sample_id, default=Role.SAMPLE)
    # O-12 action code Q = quality control: a control whose kind the name did not reveal is not a patient.
    if field_at(fields, 11).strip().upper() == "Q" and role == Role.SAMPLE:
        role = Role.UNKNOWN
    return _Order(sample_id=sample_id, role=role.value, line=line)


def _add_result(order: _Order, layout: _Layout, delims: Delimiters, fields: list[str], line: int,
                meta: dict[str, str], source: str) -> None:
    comps = delims.components(field_at(fields, 2))
    value_parts = delims.components(field_at(fields, 3))
    value = next((v for v in value_parts if v), "")
    target, kind = _classify(layout, comps, field_at(fields, 4))
    if layout.name == "genexpert" and not target:
        # GeneXpert omits the analyte on some interpretation records (e.g. IS1081-IS6110 FAIL);
        # it is the analyte of the Ct/EndPt records that follow, resolved when they arrive.
        order.pending.append((line, kind, value))
        return
    if not target:
        raise ParseError("the result record names no test/analyte", source=source, line=line,
                         field="R-3 universal test ID", expected="a test code such as ^^^SARS-CoV-2")
    key = (comps[3] if len(comps) > 3 else "", target)
    for p_line, p_kind, p_value in order.pending:
        _merge(order, key, p_kind, p_value, p_line)
    order.pending.clear()
    _merge(order, key, kind, value, line)
    for key, index in (("operator", 10), ("run_start", 11), ("run_end", 12)):
        raw = delims.components(field_at(fields, index))[0] if field_at(fields, index) else ""
        if raw and key not in meta:
            meta[key] = iso_timestamp(raw) if key != "operator" else raw
    if "serial" not in meta and field_at(fields, 13).strip():
        meta["serial"] = delims.components(field_at(fields, 13))[0]
    if layout.name == "genexpert" and "assay" not in meta and len(comps) > 4 and comps[4]:
        meta["assay"] = comps[4]


def _merge(order: _Order, key: tuple[str, str], kind: str, value: str, line: int) -> None:
    if kind == "ignore":
        return
    if kind == "validity":
        if normalise_call(value) == "invalid":
            order.invalid = True
        return
    row = order.rows.get(key)
    if row is None:
        row = order.rows[key] = {"line": line, "ct": None, "call": None}
    if kind == "ct":
        if row["ct"] is None:
            row["ct"] = value
            row["ct_line"] = line
    elif row["call"] is None:
        row["call"] = normalise_call(value)


def _table(orders: list[_Order], layout: _Layout, meta: dict[str, str], source: str, run_id: str) -> pa.Table:
    rows = ResultRows()
    for order in orders:
        for (_, target), row in order.rows.items():
            rows.add(line=row["line"], ct_line=row.get("ct_line", row["line"]), sample_id=order.sample_id,
                     role=order.role, target=target, ct=row["ct"], call="invalid" if order.invalid else row["call"])
    if not rows:
        raise ParseError("the message holds no result (R) records", source=source,
                         expected="at least one R record with a test result")
    ct = rows.cts(source=source, field="R-4 Ct value")
    if layout.name == "genexpert":
        ct[ct == 0.0] = np.nan  # GeneXpert reports Ct 0.0 for a probe that did not amplify
    return rows.table(ct, run_id=run_id, source=source, metadata=meta)
