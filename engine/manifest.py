"""Pool manifests: which specimens are in which pool, with each person's details.

The sampling platform exports CSV (UTF-8, with or without BOM, header row) with
the columns of :data:`MANIFEST_COLUMNS` and an optional ``aliquot``. Whole
columns are validated with Arrow compute; the first offending row is reported
with its line number so the technician can fix the file and drop it again.
"""

from __future__ import annotations

import io

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

    def fail(mask: pa.ChunkedArray | pa.Array, field: str, message: str, expected: str) -> None:
        mask = pc.fill_null(mask, True)
        if pc.any(mask).as_py():
            idx = pc.index(mask, True).as_py()
            value = cols[field][idx].as_py() if field in cols else None
            raise ManifestError(f"{message} (found {value!r})", source=source, line=int(lines[idx].as_py()), field=field, expected=expected)

    for field in REQUIRED_VALUES:
        fail(pc.equal(cols[field], ""), field, "value missing", "a non-empty value")
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

    # The same (pool, specimen) twice is a copy-paste error on the platform side.
    keys = pc.binary_join_element_wise(cols["pool_id"], cols["specimen_id"], "\x1f")
    counts = pc.value_counts(keys)
    repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    if len(repeated):
        fail(pc.is_in(keys, value_set=repeated), "specimen_id", "specimen listed twice in the same pool", "each specimen once per pool")

    out = pa.table({c: cols[c] for c in MANIFEST_COLUMNS} | {"aliquot": aliquot, "line": lines})
    _check_one_person_per_specimen(out, source)
    return out.cast(MANIFEST_SCHEMA)


def _valid_date(text: str) -> bool:
    from datetime import date

    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _check_one_person_per_specimen(table: pa.Table, source: str) -> None:
    """A specimen in several pools (combinatorial designs) must carry the same person on every row."""
    person = ["specimen_id", "full_name", "date_of_birth", "national_id"]
    distinct = table.select(person).group_by(person).aggregate([])
    if distinct.num_rows == pc.count_distinct(table["specimen_id"]).as_py():
        return
    counts = pc.value_counts(distinct["specimen_id"])
    bad = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
    mask = pc.is_in(table["specimen_id"], value_set=bad)
    rows = pc.filter(table["line"], mask).to_pylist()
    raise ManifestError(
        f"specimen {bad[0].as_py()!r} appears with different person details on lines {rows[:5]}",
        source=source,
        line=int(rows[1] if len(rows) > 1 else rows[0]),
        field="full_name",
        expected="the same name, date of birth and ID on every row of a specimen",
    )
