"""Pool manifests: the DESIGN.md CSV, read column-wise, errors naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.demo import manifest_csv
from engine.errors import ManifestError
from engine.intake.manifest import MANIFEST_SCHEMA, looks_like_manifest, read_manifest

DATA = Path(__file__).resolve().parents[2] / "data"
HEADER = "pool_id,specimen_id,full_name,date_of_birth,sex,national_id,phone,address,collected_at,collection_site"


def _row(**over: str) -> dict[str, str]:
    row = {
        "pool_id": "P1", "specimen_id": "S1", "full_name": "Phạm Thu Hà", "date_of_birth": "1990-01-02", "sex": "female",
        "national_id": "079190000001", "phone": "0901234567", "address": "1 Lê Lợi, Huế",
        "collected_at": "2026-11-28T08:30:00+07:00", "collection_site": "Trạm Y tế", "aliquot": "yes",
    }
    row.update(over)
    return row


def test_reads_bom_crlf_quoted_commas_and_diacritics() -> None:
    """A platform export with BOM, CRLF, quoted commas and Vietnamese text reads into the manifest schema."""
    table = read_manifest((DATA / "manifest_good.csv").read_bytes(), "manifest_good.csv")
    assert table.schema.equals(MANIFEST_SCHEMA)
    rows = table.to_pylist()
    assert [r["line"] for r in rows] == [2, 3, 4]
    assert rows[0]["full_name"] == "Nguyễn Thị Hương"
    assert rows[0]["address"] == "12 Lê Lợi, Phường Bến Nghé, Quận 1"
    assert [r["aliquot"] for r in rows] == [True, False, True]
    assert rows[2]["pool_id"] == rows[2]["specimen_id"]  # tested alone


def test_bad_date_names_file_line_and_field() -> None:
    """A date of birth not in ISO 8601 is reported with file, line 3 and the field."""
    with pytest.raises(ManifestError) as err:
        read_manifest((DATA / "manifest_bad_date.csv").read_bytes(), "manifest_bad_date.csv")
    assert err.value.source == "manifest_bad_date.csv" and err.value.line == 3 and err.value.field == "date_of_birth"
    assert "YYYY-MM-DD" in str(err.value)


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"collected_at": "2026-11-28T08:30:00"}, "collected_at"),  # no offset: ambiguous
        ({"collected_at": "28/11/2026 08:30"}, "collected_at"),
        ({"date_of_birth": "2001-02-30"}, "date_of_birth"),
        ({"sex": "robot"}, "sex"),
        ({"aliquot": "maybe"}, "aliquot"),
        ({"specimen_id": ""}, "specimen_id"),
        ({"pool_id": "  "}, "pool_id"),
    ],
)
def test_invalid_values_are_refused_with_their_field(over: dict[str, str], field: str) -> None:
    """Each malformed value is refused, naming its field and the line of the offending row."""
    data = manifest_csv([_row(specimen_id="S0"), _row(**over)], bom=False)
    with pytest.raises(ManifestError) as err:
        read_manifest(data, "m.csv")
    assert err.value.field == field and err.value.line == 3


def test_missing_header_column_is_named() -> None:
    """A header lacking a required column is refused at line 1, naming the column."""
    with pytest.raises(ManifestError, match="national_id") as err:
        read_manifest(HEADER.replace(",national_id", "").encode() + b"\n", "m.csv")
    assert err.value.line == 1


def test_same_specimen_with_two_identities_is_refused() -> None:
    """One specimen in two pools must be the same person; different names are an error."""
    data = manifest_csv([_row(pool_id="R1"), _row(pool_id="C1", full_name="Someone Else")], bom=False)
    with pytest.raises(ManifestError, match="different person"):
        read_manifest(data, "m.csv")


def test_combinatorial_rows_for_one_person_are_accepted() -> None:
    """The same specimen in a row pool and a column pool with the same person reads as two rows."""
    table = read_manifest(manifest_csv([_row(pool_id="R1"), _row(pool_id="C1")], bom=False), "m.csv")
    assert table.column("pool_id").to_pylist() == ["R1", "C1"]


def test_semicolon_separated_manifest_is_read() -> None:
    """A manifest re-saved by Excel in a Vietnamese locale (semicolons) still reads."""
    text = manifest_csv([_row()], bom=False).decode().replace(",", ";").replace('"1 Lê Lợi; Huế"', "1 Lê Lợi - Huế")
    assert read_manifest(text.encode(), "m.csv").column("specimen_id").to_pylist() == ["S1"]


def test_not_utf8_is_refused_with_a_hint() -> None:
    """A manifest saved in a legacy code page is refused with the line and a hint to save as UTF-8."""
    data = (HEADER + "\nP1,S1,Ph\xe1m,1990-01-02,male,1,2,3,2026-11-28T08:30:00Z,x\n").encode("latin-1")
    with pytest.raises(ManifestError, match="UTF-8") as err:
        read_manifest(data, "m.csv")
    assert err.value.line == 2


def test_looks_like_manifest_only_for_manifest_headers() -> None:
    """Sniffing recognises the manifest header (with BOM) and nothing else."""
    assert looks_like_manifest((DATA / "manifest_good.csv").read_bytes()[:200])
    assert not looks_like_manifest(b"* Chemistry = TAQMAN\r\n[Results]\r\n")
    assert not looks_like_manifest(b"Well,Sample,Target,Cq\n")


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=20).map(str.strip)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_text, _text, st.booleans()), min_size=1, max_size=8, unique_by=lambda t: t[0]))
def test_written_rows_read_back_unchanged(people: list[tuple[str, str, bool]]) -> None:
    """Any names and addresses (quotes, commas, diacritics) survive a write/read round trip."""
    rows = [
        _row(pool_id="P1", specimen_id=f"S{i}", full_name=name or "x", address=address, aliquot="yes" if aliquot else "no")
        for i, (name, address, aliquot) in enumerate(people)
    ]
    table = read_manifest(manifest_csv(rows), "m.csv")
    got = table.to_pylist()
    assert [r["full_name"] for r in got] == [r["full_name"] for r in rows]
    assert [r["address"] for r in got] == [r["address"] for r in rows]
    assert [r["aliquot"] for r in got] == [r["aliquot"] == "yes" for r in rows]


def _read(rows: list[dict[str, str]]) -> ManifestError:
    with pytest.raises(ManifestError) as err:
        read_manifest(manifest_csv(rows, bom=False), "m.csv")
    return err.value


def test_duplicate_specimen_is_reported_at_the_duplicate_line() -> None:
    """A specimen listed twice in one pool is reported at its second row, where the copy-paste happened."""
    err = _read([_row(specimen_id="S0"), _row(specimen_id="S1"), _row(specimen_id="S2"), _row(specimen_id="S1")])
    assert err.line == 5 and err.field == "specimen_id"
    assert "line 3" in str(err)  # points back at the first occurrence too


def test_earliest_duplicate_in_the_file_is_reported() -> None:
    """With two duplicated specimens, the one whose copy comes first in the file is reported."""
    rows = [_row(specimen_id="B"), _row(specimen_id="A"), _row(specimen_id="A"), _row(specimen_id="B")]
    assert _read(rows).line == 4


def test_conflicting_person_is_reported_at_the_row_that_differs() -> None:
    """The row whose person details differ from the specimen's first row is the one named, with its field."""
    rows = [
        _row(pool_id="R1", specimen_id="A"),
        _row(pool_id="R1", specimen_id="B"),
        _row(pool_id="C1", specimen_id="A"),  # same person: fine
        _row(pool_id="D1", specimen_id="A", date_of_birth="1990-01-03"),
    ]
    err = _read(rows)
    assert err.line == 5 and err.field == "date_of_birth"
    assert "line 2" in str(err)


def test_earliest_conflicting_person_in_the_file_is_reported() -> None:
    """Of two specimens with conflicting rows, the conflict earliest in the file is named."""
    rows = [
        _row(pool_id="R1", specimen_id="B"),
        _row(pool_id="R1", specimen_id="A"),
        _row(pool_id="C1", specimen_id="A", full_name="Someone Else"),
        _row(pool_id="C1", specimen_id="B", full_name="Another One"),
    ]
    err = _read(rows)
    assert err.line == 4 and err.field == "full_name"


@pytest.mark.parametrize(
    "value",
    ["../../../../tmp/x", "S\x001", "S 1", "/etc/passwd", ".hidden", "-S1", "S1/2", "S1\\2", "Ső1", "x" * 65, "=HYPERLINK(1)"],
)
@pytest.mark.parametrize("field", ["specimen_id", "pool_id"])
def test_ids_outside_the_documented_pattern_are_refused(field: str, value: str) -> None:
    """Specimen and pool ids must match the documented id pattern; path tricks, NULs and spaces are refused."""
    err = _read([_row(specimen_id="S0"), _row(**{field: value})])
    assert err.line == 3 and err.field == field
    assert "A-Za-z0-9" in str(err)


@pytest.mark.parametrize("value", ["SP261129-00001", "P-001", "a.b_c-9", "0", "X" * 64, "PL261129-00000-P001"])
def test_ids_in_the_documented_pattern_are_accepted(value: str) -> None:
    """Real-looking ids (the demo's, the platform's) pass the id pattern, up to 64 characters."""
    table = read_manifest(manifest_csv([_row(pool_id=value, specimen_id=value)], bom=False), "m.csv")
    assert table.column("specimen_id").to_pylist() == [value]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("full_name", "Nguyễn\x00Văn"),
        ("full_name", "Nguyễn\tVăn"),
        ("address", "1 Lê Lợi\x1b[31m"),
        ("address", "1 Lê Lợi\x85Huế"),  # C1 NEL
        ("collection_site", "Trạm\x7fY tế"),
        ("national_id", "0791\x0b90"),
    ],
)
def test_control_characters_are_refused(field: str, value: str) -> None:
    """Control characters (C0, DEL, C1) in any field are refused with file, line and field."""
    err = _read([_row(specimen_id="S0"), _row(**{field: value})])
    assert (err.source, err.line, err.field) == ("m.csv", 3, field)
    assert "control character" in str(err)


@pytest.mark.parametrize(
    ("field", "limit"),
    [("full_name", 80), ("address", 200), ("collection_site", 90), ("national_id", 32)],
)
def test_over_long_fields_are_refused_at_their_limit(field: str, limit: int) -> None:
    """A field longer than what the certificate and payload hold is refused; one at the limit is accepted."""
    read_manifest(manifest_csv([_row(**{field: "a" * limit})], bom=False), "m.csv")
    err = _read([_row(specimen_id="S0"), _row(**{field: "a" * (limit + 1)})])
    assert (err.line, err.field) == (3, field)
    assert f"at most {limit}" in str(err)


def test_huge_address_error_message_stays_short() -> None:
    """A 5,000-character address is refused, and the message quotes only its start, not the whole value."""
    err = _read([_row(address=("Đường " * 1000)[:5000])])
    assert (err.line, err.field) == (2, "address")
    assert len(str(err)) < 400 and "5000 characters" in str(err)


def test_length_counts_composed_characters() -> None:
    """A decomposed (NFD, as macOS writes) name is measured as it prints (NFC), so it is not refused early."""
    import unicodedata

    name = unicodedata.normalize("NFD", "Ễ" * 80)
    assert len(name) == 240
    table = read_manifest(manifest_csv([_row(full_name=name)], bom=False), "m.csv")
    assert table.column("full_name").to_pylist() == [name]


@pytest.mark.parametrize("value", ["0901234567", "+84 901 234 567", "(028) 3822-1234", "028.3822.1234", ""])
def test_phone_numbers_in_common_writings_are_accepted(value: str) -> None:
    """Phones with country code, spaces, dots, dashes or brackets pass; an empty phone is allowed."""
    assert read_manifest(manifest_csv([_row(phone=value)], bom=False), "m.csv").column("phone").to_pylist() == [value]


@pytest.mark.parametrize("value", ["call me", "=1+2", "0901234567 ext. 5", "+" + "1" * 30])
def test_malformed_phone_numbers_are_refused(value: str) -> None:
    """A phone that is not digits with the usual separators is refused with its field."""
    err = _read([_row(specimen_id="S0"), _row(phone=value)])
    assert (err.line, err.field) == (3, "phone")
