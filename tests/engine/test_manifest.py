"""Pool manifests: the DESIGN.md CSV, read column-wise, errors naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.demo import manifest_csv
from engine.errors import ManifestError
from engine.manifest import MANIFEST_SCHEMA, looks_like_manifest, read_manifest

DATA = Path(__file__).resolve().parents[1] / "data"
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
