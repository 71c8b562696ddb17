"""Result identity and payloads: deterministic ids, stable issued_at, corrections as new versions."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.config import Lab
from engine.results import SCHEMA, build_payload, corrected_payload, ct_value, result_id, utc_instant

SPECIMEN = {
    "specimen_id": "SP-1", "full_name": "Nguyễn Văn An", "date_of_birth": "1990-01-02", "sex": "male", "national_id": "079090000001",
    "phone": "", "address": "Huế", "collected_at": "2026-11-28T08:30:00+07:00", "collection_site": "Trạm Y tế",
}


def _payload() -> dict:
    return build_payload(
        id="kqx", version=1, supersedes=None, issued_at="2026-11-29T01:02:03Z", outcome="NEGATIVE", lab=Lab(), specimen=SPECIMEN,
        test={"assay": "taqpath", "kit": "TaqPath", "method": "RT-PCR", "pooled": True, "pool_id": "P1", "design": "dorfman:10", "decoder": "dorfman"},
        evidence={"run_id": "r", "source": "f.txt", "instrument": "QS5", "rule": "x", "pools": [], "ct": {}},
    )


def test_payload_has_exactly_the_interface_members() -> None:
    """The payload object carries the members docs/interfaces.md fixes, empty person values as null."""
    payload = _payload()
    assert set(payload) == {"schema", "id", "version", "supersedes", "issued_at", "outcome", "lab", "person", "specimen", "test", "evidence", "correction"}
    assert payload["schema"] == SCHEMA
    assert set(payload["person"]) == {"full_name", "date_of_birth", "sex", "national_id", "phone", "address"}
    assert payload["person"]["phone"] is None
    assert payload["specimen"] == {"id": "SP-1", "type": "nasopharyngeal swab", "collected_at": "2026-11-28T08:30:00+07:00", "collection_site": "Trạm Y tế"}


@given(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=64))
def test_result_id_is_deterministic_and_url_safe(lab: str, specimen: str, run: str) -> None:
    """The id depends only on (lab, specimen, run), is lower-case base32 with the kq prefix, and is 26 characters."""
    rid = result_id(lab, specimen, run)
    assert rid == result_id(lab, specimen, run)
    assert len(rid) == 26 and rid.startswith("kq") and rid[2:].isalnum() and rid == rid.lower()
    assert rid != result_id(lab, specimen + "x", run)


def test_issued_at_is_normalised_to_whole_second_utc() -> None:
    """Ledger receipt times (microseconds, offsets) become whole-second UTC with Z."""
    assert utc_instant("2026-11-29T22:17:24.376602Z") == "2026-11-29T22:17:24Z"
    assert utc_instant("2026-11-30T05:17:24+07:00") == "2026-11-29T22:17:24Z"


def test_ct_values_are_rounded_and_nan_is_null() -> None:
    """Ct values are cycles rounded to 2 decimals; NaN (no amplification) is null."""
    assert ct_value(float("nan")) is None and ct_value(None) is None
    assert ct_value(31.234567) == 31.23


def test_correction_keeps_the_finding_and_changes_the_person() -> None:
    """A corrected version supersedes the old, carries the reason, and never changes outcome or evidence."""
    old = _payload()
    new = corrected_payload(old, {**SPECIMEN, "full_name": "Nguyễn Văn Ân"}, reason="name corrected", issued_at="2026-11-30T00:00:00Z")
    assert new["version"] == 2 and new["supersedes"] == {"id": "kqx", "version": 1}
    assert new["person"]["full_name"] == "Nguyễn Văn Ân" and old["person"]["full_name"] == "Nguyễn Văn An"
    assert new["correction"] == {"reason": "name corrected"}
    assert (new["outcome"], new["evidence"], new["test"], new["id"]) == (old["outcome"], old["evidence"], old["test"], old["id"])
