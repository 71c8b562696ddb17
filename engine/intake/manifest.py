"""Pool manifests: which specimens are in which pool, with each person's details.

The sampling platform exports CSV (UTF-8, with or without BOM, header row) with
the columns of :data:`MANIFEST_COLUMNS` and an optional ``aliquot``. Whole
columns are validated with Arrow compute; the first offending row is reported
with its line number so the technician can fix the file and drop it again.

What a value may hold (also in docs/interfaces.md, "Pool manifests"):

- ``specimen_id`` and ``pool_id`` match :data:`ID_PATTERN`: 1 to 64 ASCII
  letters, digits, ``.``, ``_`` or ``-``, starting with a letter or digit. Ids
  end up in file names, URLs and spreadsheets; this keeps them inert in all
  three (no ``/``, no spaces, no leading ``.``, ``-`` or ``=``).
- No field holds a control character (C0 ``U+0000``–``U+001F``, DEL, C1
  ``U+0080``–``U+009F``): a NUL or an escape sequence is never a real name.
- Fields are at most :data:`MAX_LENGTHS` characters, counted as printed (NFC):
  ``full_name`` and ``collection_site`` are the longest that still fit their
  certificate row at the smallest type size (engine/certificates/layout.py);
  ``address`` is not printed and is bounded to keep payloads small.
- ``phone`` matches :data:`PHONE_PATTERN` (digits with the usual separators) or is empty.
"""

from __future__ import annotations

import io
import re
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from engine.errors import ManifestError, TruncatedError

MANIFEST_COLUMNS = (
    "pool_id",
    "specimen_id",
    "full_name",
    "date_of_birth",
    "sex",
    "national_id",
    "phone",
    "address",
    "collected_at",
    "collection_site",
)
OPTIONAL_COLUMNS = ("aliquot",)
REQUIRED_VALUES = ("pool_id", "specimen_id", "full_name", "collected_at")

MANIFEST_SCHEMA = pa.schema(
    [pa.field(name, pa.string()) for name in MANIFEST_COLUMNS] + [pa.field("aliquot", pa.bool_()), pa.field("line", pa.int32())]
)

_BOM = b"\xef\xbb\xbf"
# Calendar date (YYYY-MM-DD); the month/day ranges are checked here, day-of-month validity below.
_DATE = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"
# collected_at must carry its UTC offset: a swab time without one is ambiguous across time zones.
_INSTANT = r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d+)?)?(Z|[+-]([01]\d|2[0-3]):?[0-5]\d)$"
#: Specimen and pool ids (documented in docs/interfaces.md).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
ID_FIELDS = ("pool_id", "specimen_id")
#: Phone: optional +, optional (, a digit, then digits, spaces, ( ) . - ; 3 to 25 characters.
PHONE_PATTERN = r"^(\+?\(?[0-9][0-9 ().-]{2,22})?$"
#: Longest value per field, in characters as printed (NFC). full_name is drawn bold and
#: collection_site regular in a 353-point row, shrunk down to 6 pt: 83 upper-case
#: Vietnamese letters fit bold and about 98 regular, so these limits never get cut.
MAX_LENGTHS = {"full_name": 80, "national_id": 32, "phone": 25, "address": 200, "collected_at": 40, "collection_site": 90}
# C0 controls, DEL and C1 controls (RE2 syntax).
_CONTROL = r"[\x{0}-\x{1F}\x{7F}-\x{9F}]"
# Every byte but C0 controls other than CR/LF, and DEL: what ``bytes.translate`` deletes to find controls.
_NOT_CONTROL_BYTES = bytes(b for b in range(256) if (b >= 0x20 or b in (0x0A, 0x0D)) and b != 0x7F)
_C1_UTF8 = re.compile(rb"\xc2[\x80-\x9f]")
_SHOWN = 40  # characters of an offending value quoted in an error

_SEX = ("male", "female", "other", "unknown", "m", "f", "nam", "nữ", "")
_YES = ("yes", "y", "true", "1", "có")
_NO = ("no", "n", "false", "0", "không", "")


def _header(head: bytes) -> tuple[list[str], str]:
    text = head[len(_BOM) :] if head.startswith(_BOM) else head
    first = text.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", errors="replace")
    delimiter = ";" if first.count(";") > first.count(",") else ","
    return [h.strip().strip('"').strip().lower() for h in first.split(delimiter)], delimiter


def looks_like_manifest(head: bytes) -> bool:
    """True when the first line is a manifest header (has ``pool_id`` and ``specimen_id``)."""
    names, _ = _header(head[:4096])
    return "pool_id" in names and "specimen_id" in names


def read_manifest(data: bytes, source: str) -> pa.Table:
    """Parse and validate a manifest; returns :data:`MANIFEST_SCHEMA` (``line`` is the 1-based file line).

    Line numbers assume one record per line (the platform does not write
    newlines inside quoted fields); a quoted newline shifts later numbers.

    A manifest ending mid-line is cut short (every CSV writer ends the last row
    with a line end) and raises TruncatedError, so its half row is never read as
    a person's details. A cut exactly at a line end is undetectable in CSV: the
    shorter file is a valid manifest of fewer rows (those pools then wait).
    """
    if data and data[-1:] not in (b"\n", b"\r"):
        line = data.count(b"\n") + 1
        raise TruncatedError("appears truncated: the manifest ends in the middle of a row", source=source, line=line,
                             expected="the whole manifest, ending with a line end; copy or export it again")
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ManifestError("the file is not UTF-8 text", source=source, line=line, expected="a CSV saved as UTF-8") from None
    names, delimiter = _header(data)
    missing = [c for c in MANIFEST_COLUMNS if c not in names]
    if missing:
        raise ManifestError(
            f"the header lacks column(s) {', '.join(missing)}", source=source, line=1, expected=",".join(MANIFEST_COLUMNS) + "[,aliquot]"
        )
    dupes = sorted({n for n in names if names.count(n) > 1 and n})
    if dupes:
        raise ManifestError(f"column(s) {', '.join(dupes)} appear twice in the header", source=source, line=1)
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        text = str(exc)
        raise ManifestError(f"not a well-formed CSV ({text.splitlines()[0]})", source=source, expected="one value per header column on every row") from None
    n = table.num_rows
    if n == 0:
        raise ManifestError("the manifest has a header but no rows", source=source, line=2, expected="one row per specimen and pool")
    lines = pa.array(range(2, n + 2), type=pa.int32())
    cols: dict[str, pa.ChunkedArray] = {c: pc.utf8_trim_whitespace(table[c]) for c in MANIFEST_COLUMNS}

    def fail_at(idx: int, field: str, message: str, expected: str) -> None:
        value = cols[field][idx].as_py() if field in cols else None
        raise ManifestError(f"{message} (found {_shown(value)})", source=source, line=int(lines[idx].as_py()), field=field, expected=expected)

    def fail(mask: pa.ChunkedArray | pa.Array, field: str, message: str, expected: str) -> None:
        mask = pc.fill_null(mask, True)
        if pc.any(mask).as_py():
            fail_at(pc.index(mask, True).as_py(), field, message, expected)

    for field in REQUIRED_VALUES:
        fail(pc.equal(cols[field], ""), field, "value missing", "a non-empty value")
    for field in ID_FIELDS:
        fail(pc.invert(pc.match_substring_regex(cols[field], ID_PATTERN)), field, "not a valid id",
             "1 to 64 of A-Za-z0-9 . _ - starting with a letter or digit")
    if _has_control_bytes(data):  # one pass over the bytes; the regex per column only names row and field
        for field in MANIFEST_COLUMNS:
            fail(pc.match_substring_regex(cols[field], _CONTROL), field, "contains a control character",
                 "printable text only; re-export the file from the platform")
    for field, limit in MAX_LENGTHS.items():
        idx = _first_too_long(cols[field], limit)
        if idx is not None:
            fail_at(idx, field, f"longer than {limit} characters", f"at most {limit} characters; shorten it on the platform")
    fail(pc.invert(pc.match_substring_regex(cols["phone"], PHONE_PATTERN)), "phone", "not a phone number",
         "digits with optional +, spaces, dots, dashes or brackets, e.g. +84 901 234 567")
    fail(pc.invert(pc.match_substring_regex(cols["collected_at"], _INSTANT)), "collected_at", "not an ISO 8601 date-time with UTC offset", "e.g. 2026-11-28T08:30:00+07:00")
    dob = cols["date_of_birth"]
    fail(pc.and_(pc.not_equal(dob, ""), pc.invert(pc.match_substring_regex(dob, _DATE))), "date_of_birth", "not an ISO 8601 date", "YYYY-MM-DD")
    # Day-of-month validity (no 2001-02-30): strptime on the distinct non-empty dates only.
    bad_days = [d for d in pc.unique(dob).to_pylist() if d and not _valid_date(d)]
    if bad_days:
        fail(pc.is_in(dob, value_set=pa.array(bad_days)), "date_of_birth", "no such calendar date", "a real date YYYY-MM-DD")
    sex = pc.utf8_lower(cols["sex"])
    fail(pc.invert(pc.is_in(sex, value_set=pa.array(_SEX))), "sex", "unknown sex", "male, female, other or unknown")
    cols["sex"] = sex

    if "aliquot" in names:
        raw = pc.utf8_lower(pc.utf8_trim_whitespace(table["aliquot"]))
        cols["aliquot"] = raw
        fail(pc.invert(pc.is_in(raw, value_set=pa.array(_YES + _NO))), "aliquot", "not yes/no", "yes or no")
        aliquot = pc.is_in(raw, value_set=pa.array(_YES))
    else:
        aliquot = pa.chunked_array([pa.array([False] * n)])

    # The same (pool, specimen) twice is a copy-paste error on the platform side; the copy is named.
    keys = pc.binary_join_element_wise(cols["pool_id"], cols["specimen_id"], "\x1f")
    counts = pc.value_counts(keys)
    if pc.any(pc.greater(counts.field("counts"), 1)).as_py():
        idx = _first_repeat(keys)
        first = pc.index(keys, keys[idx]).as_py()
        fail_at(idx, "specimen_id", f"specimen listed twice in the same pool (first on line {lines[first].as_py()})",
                "each specimen once per pool; delete one of the two rows")

    out = pa.table({c: cols[c] for c in MANIFEST_COLUMNS} | {"aliquot": aliquot, "line": lines})
    _check_one_person_per_specimen(out, source)
    return out.cast(MANIFEST_SCHEMA)


def _valid_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _has_control_bytes(data: bytes) -> bool:
    """Whether the UTF-8 file holds a control character anywhere (line ends aside).

    A C pass over the bytes is several times cheaper than a regex over every
    column, and almost every manifest holds none.
    """
    return bool(data.translate(None, _NOT_CONTROL_BYTES)) or _C1_UTF8.search(data) is not None


def _shown(value: object) -> str:
    """A value as quoted in an error: escapes visible, long text cut (a 5,000-character address stays readable)."""
    if isinstance(value, str) and len(value) > _SHOWN:
        return f"{value[:_SHOWN]!r}… ({len(value)} characters)"
    return repr(value)


def _first_too_long(column: pa.ChunkedArray, limit: int) -> int | None:
    """Index of the first row longer than ``limit`` characters as printed (NFC), or None.

    Only rows over the limit in their stored form are normalised: a decomposed
    (NFD) name from a Mac export has more code points than it prints.
    """
    over = pc.indices_nonzero(pc.greater(pc.utf8_length(column), limit))
    if not len(over):
        return None
    composed = pc.utf8_length(pc.utf8_normalize(pc.take(column, over), "NFC"))
    bad = pc.filter(over, pc.greater(composed, limit))
    return int(bad[0].as_py()) if len(bad) else None


def _first_repeat(values: pa.ChunkedArray | pa.Array) -> int:
    """Index of the earliest row whose value already appeared on an earlier row (the caller knows one does)."""
    order = pc.sort_indices(values)  # stable: equal values keep file order
    ordered = pc.take(values, order)
    repeat = pc.equal(ordered[1:], ordered[:-1])
    return int(pc.min(pc.filter(order[1:], repeat)).as_py())


def _check_one_person_per_specimen(table: pa.Table, source: str) -> None:
    """A specimen in several pools (combinatorial designs) must carry the same person on every row.

    The earliest row that differs from its specimen's first row is reported, naming the differing field.
    """
    person = ["specimen_id", "full_name", "date_of_birth", "national_id"]
    distinct = table.select(person).group_by(person).aggregate([])
    if distinct.num_rows == pc.count_distinct(table["specimen_id"]).as_py():
        return
    specimen = table["specimen_id"]
    group = pc.index_in(specimen, value_set=pc.unique(specimen))
    firsts = (
        pa.table({"group": group, "row": pa.array(range(table.num_rows), pa.int64())})
        .group_by("group", use_threads=False)
        .aggregate([("row", "min")])
        .sort_by("group")["row_min"]
    )
    first_row = pc.take(firsts, group)
    fields = person[1:]
    differs = {f: pc.not_equal(pc.take(table[f], first_row), table[f]) for f in fields}
    mask = differs[fields[0]]
    for f in fields[1:]:
        mask = pc.or_(mask, differs[f])
    idx = pc.index(mask, True).as_py()
    field = next(f for f in fields if differs[f][idx].as_py())
    first = int(first_row[idx].as_py())
    first_line = table["line"][first].as_py()
    raise ManifestError(
        f"specimen {specimen[idx].as_py()!r} appears with different person details than on line {first_line}"
        f" ({field} {_shown(table[field][idx].as_py())} here, {_shown(table[field][first].as_py())} there)",
        source=source,
        line=int(table["line"][idx].as_py()),
        field=field,
        expected="the same name, date of birth and ID on every row of a specimen",
    )
