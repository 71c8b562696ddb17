"""Result identity and payloads: deterministic ids, stable issued_at, corrections as new versions."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from engine.config import Lab
from engine.results.signed import (
    SCHEMA,
    build_payload,
    corrected_payload,
    ct_value,
    result_id,
    sign_payload,
    utc_instant,
)
from signing.canonical import canonical_json, reference_canonical_json

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


def _retest_payload() -> dict:
    pool = {"pool_id": "P1", "well": "A1", "outcome": "DETECTED", "ct": {"MS2": None, "N": 31.27, "ORF1ab": 30.0, "S": 29.999}}
    return build_payload(
        id="kqx", version=2, supersedes=1, issued_at="2026-11-29T01:02:03Z", outcome="POSITIVE",
        lab=Lab(id="LAB1", name='Phòng xét nghiệm "Hà Nội"', licence="123/BYT"), specimen=SPECIMEN,
        test={"assay": "taqpath", "kit": "TaqPath", "method": "RT-PCR", "pooled": True, "pool_id": "P1", "design": "dorfman:10", "decoder": "dorfman"},
        evidence={"run_id": "r", "source": "f.txt", "instrument": "QS5 SN 2720", "rule": "N or ORF1ab Ct ≤ 37", "pools": [pool], "ct": dict(pool["ct"])},
    )


# The signed bytes of _retest_payload() as the pure-Python JCS writer produced them before the
# C-encoder fast path existed: results already signed must canonicalise to these same bytes forever.
PINNED = (
    '{"correction":null,"evidence":{"ct":{"MS2":null,"N":31.27,"ORF1ab":30,"S":29.999},"instrument":"QS5 SN 2720",'
    '"pools":[{"ct":{"MS2":null,"N":31.27,"ORF1ab":30,"S":29.999},"outcome":"DETECTED","pool_id":"P1","well":"A1"}],'
    '"rule":"N or ORF1ab Ct ≤ 37","run_id":"r","source":"f.txt"},"id":"kqx","issued_at":"2026-11-29T01:02:03Z",'
    '"lab":{"id":"LAB1","licence":"123/BYT","name":"Phòng xét nghiệm \\"Hà Nội\\""},"outcome":"POSITIVE",'
    '"person":{"address":"Huế","date_of_birth":"1990-01-02","full_name":"Nguyễn Văn An","national_id":"079090000001","phone":null,"sex":"male"},'
    '"schema":"ketqua/result/1","specimen":{"collected_at":"2026-11-28T08:30:00+07:00","collection_site":"Trạm Y tế","id":"SP-1",'
    '"type":"nasopharyngeal swab"},"supersedes":{"id":"kqx","version":1},'
    '"test":{"assay":"taqpath","decoder":"dorfman","design":"dorfman:10","kit":"TaqPath","method":"RT-PCR","pool_id":"P1","pooled":true},"version":2}'
)


def test_payload_canonical_bytes_are_pinned() -> None:
    """A retest payload (quotes, Vietnamese text, integral and fractional Cts, nulls) canonicalises to the pinned bytes on both JCS paths."""
    payload = _retest_payload()
    assert canonical_json(payload) == PINNED.encode("utf-8")
    assert reference_canonical_json(payload) == PINNED.encode("utf-8")


def test_sign_payload_signs_exactly_the_pinned_bytes(dev_keys: Path) -> None:
    """sign_payload returns the pinned canonical text, a JWS over exactly those bytes, and an HC1 valid from issued_at for the configured days."""
    from signing.hc1 import decode_hc1
    from signing.jws import verify_compact
    from signing.keys import SignerSpec
    from signing.pki import ensure_development_pki

    pki = ensure_development_pki(dev_keys)
    signer = SignerSpec(kind="file", key=str(pki.signer_key), certificate=str(pki.signer_cert), chain=(str(pki.ca_cert),)).open()
    canonical, jws, hc1 = sign_payload(_retest_payload(), signer, hc1_validity_days=30)
    assert canonical == PINNED
    assert verify_compact(jws, [signer.certificate]) == PINNED.encode("utf-8")
    content = decode_hc1(hc1)
    assert (content.issued_at.isoformat(), content.expires_at.isoformat()) == ("2026-11-29T01:02:03+00:00", "2026-12-29T01:02:03+00:00")
