"""Result payloads: the documented canonical JSON, the FHIR R4 Bundle, NDJSON."""

from __future__ import annotations

import base64
import copy
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ParseError, SigningError
from engine.results.payloads import (
    LOINC_SARS_COV_2_RNA,
    OUTCOME_SNOMED,
    RESULT_FIELDS,
    canonical_result,
    check_result,
    fhir_bundle,
    ndjson_line,
    ndjson_lines,
    read_ndjson,
)
from signing.canonical import canonical_json
from tests.engine.certificates.test_certificates import result

DOCS = Path(__file__).resolve().parents[3] / "docs" / "payload.md"
JWS = "eyJhbGciOiJFUzI1NiJ9.eyJ4IjoxfQ.c2lnbmF0dXJl"


def resources(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["resource"]["resourceType"]: e["resource"] for e in bundle["entry"]}


# -- canonical JSON and its documentation -------------------------------------------------------------


def test_docs_document_every_field_and_only_those() -> None:
    """docs/payload.md's field table lists exactly the fields engine.results.payloads.RESULT_FIELDS knows, with the same types."""
    rows = re.findall(r"^\| `([^`]+)` \| ([a-z ]+) \|", DOCS.read_text(encoding="utf-8"), flags=re.M)
    documented = {name: tuple(kind.split(" or ")) for name, kind in rows}
    assert documented == RESULT_FIELDS


def test_canonical_result_is_the_jcs_of_the_object() -> None:
    """The JWS input is the RFC 8785 canonical JSON of the result, keys sorted, no whitespace."""
    payload = result("POSITIVE")
    raw = canonical_result(payload)
    assert raw == canonical_json(payload)
    assert json.loads(raw) == payload
    assert raw.startswith(b'{"correction":null,"evidence":')


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("issued_at"), "field 'issued_at' is missing"),
        (lambda r: r.update(outcome="RETEST"), "field 'outcome' is 'RETEST'"),
        (lambda r: r.update(version=0), "field 'version' is 0"),
        (lambda r: r.update(schema="ketqua/result/2"), "field 'schema'"),
        (lambda r: r["person"].update(full_name=42), "field 'person.full_name' is integer"),
        (lambda r: r["test"].update(pooled="yes"), "field 'test.pooled' is string"),
        (lambda r: r["evidence"]["ct"].update(N="23,4"), "Ct 'evidence.ct.N'"),
        (lambda r: r.update(note="x"), "field 'note' is not part of"),
    ],
)
def test_malformed_result_is_refused_naming_the_field(change: Any, message: str) -> None:
    """A result that does not match the documented shape is refused with the offending field named."""
    payload = copy.deepcopy(result())
    change(payload)
    with pytest.raises(SigningError, match=re.escape(message)):
        canonical_result(payload)


def test_bundle_tolerates_fields_from_a_newer_producer() -> None:
    """fhir_bundle accepts a payload with a field this version does not know; signing it is still refused."""
    payload = copy.deepcopy(result())
    payload["lab"]["address"] = "167 Pasteur, Quận 3"
    Bundle.model_validate(fhir_bundle(payload, JWS))
    with pytest.raises(SigningError, match="lab.address"):
        canonical_result(payload)


def test_stages_may_add_test_and_evidence_details() -> None:
    """Extra members under test and evidence (decoder details) are accepted and signed as they are."""
    payload = copy.deepcopy(result())
    payload["evidence"]["design_matrix"] = {"pools": 12}
    payload["test"]["plate"] = "PL-1"
    check_result(payload)


# -- FHIR ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["POSITIVE", "NEGATIVE", "INCONCLUSIVE"])
def test_bundle_validates_as_fhir_and_carries_the_right_codes(outcome: str) -> None:
    """The Bundle passes fhir.resources R4B validation; Observation uses LOINC 94500-6 and the outcome's SNOMED CT code."""
    bundle = fhir_bundle(result(outcome), JWS)
    Bundle.model_validate(bundle)
    found = resources(bundle)
    assert list(found) == ["Organization", "Patient", "Specimen", "Observation", "DiagnosticReport", "Provenance"]
    observation, report = found["Observation"], found["DiagnosticReport"]
    for resource in (observation, report):
        assert resource["status"] == "final"
        assert resource["code"]["coding"][0] == {
            "system": "http://loinc.org", "code": "94500-6", "display": LOINC_SARS_COV_2_RNA[1]
        }
    value = observation["valueCodeableConcept"]["coding"][0]
    assert value["system"] == "http://snomed.info/sct"
    assert value["code"] == {"POSITIVE": "260373001", "NEGATIVE": "260415000", "INCONCLUSIVE": "419984006"}[outcome]
    assert report["conclusionCode"][0]["coding"][0]["code"] == OUTCOME_SNOMED[outcome][0]
    assert found["Specimen"]["type"]["coding"][0]["code"] == "258500001"


def test_corrected_version_has_status_corrected_and_names_what_it_revises() -> None:
    """A version that supersedes another is 'corrected' in Observation and DiagnosticReport, with a revision entity."""
    payload = result("NEGATIVE", version=2, supersedes={"id": "r-0d5c2a9e7b41f386", "version": 1},
                     correction={"reason": "Sửa ngày sinh"})
    bundle = fhir_bundle(payload, JWS)
    Bundle.model_validate(bundle)
    found = resources(bundle)
    assert found["Observation"]["status"] == found["DiagnosticReport"]["status"] == "corrected"
    entity = found["Provenance"]["entity"][0]
    assert entity["role"] == "revision"
    assert entity["what"]["identifier"]["value"] == "r-0d5c2a9e7b41f386#1"
    assert found["Provenance"]["reason"][0]["text"] == "Sửa ngày sinh"


def test_provenance_carries_a_verifiable_jws_over_the_canonical_json(tmp_path: Path) -> None:
    """The Provenance signature decodes to the compact JWS, which verifies and whose payload is the canonical result."""
    from signing.jws import sign_compact, verify_compact
    from signing.keys import SignerSpec
    from tests.conftest import make_test_pki

    pki = make_test_pki(tmp_path / "keys")  # valid at the pinned issued_at of result()
    signer = SignerSpec(kind="file", key=str(pki.signer_key), certificate=str(pki.signer_cert),
                        chain=(str(pki.ca_cert),)).open()
    payload = result("POSITIVE")
    jws = sign_compact(canonical_result(payload), signer)
    signature = resources(fhir_bundle(payload, jws))["Provenance"]["signature"][0]
    assert signature["sigFormat"] == "application/jose"
    carried = base64.b64decode(signature["data"]).decode("ascii")
    assert carried == jws
    assert verify_compact(carried, [signer.certificate]) == canonical_result(payload)


def test_patient_name_and_identifiers_are_unmasked_and_family_first() -> None:
    """The Patient keeps the full national ID and splits a Vietnamese name family-first."""
    patient = resources(fhir_bundle(result(), JWS))["Patient"]
    assert patient["identifier"][0]["value"] == "079190001234"
    assert patient["name"][0] == {"use": "official", "text": "Nguyễn Thị Ánh Tuyết", "family": "Nguyễn",
                                  "given": ["Thị", "Ánh", "Tuyết"]}
    assert patient["gender"] == "female" and patient["birthDate"] == "1990-05-12"


def test_ct_values_become_components_in_cycles() -> None:
    """Each target's Ct is an Observation component in UCUM {Ct}; a target that did not amplify has a data-absent reason."""
    payload = result("POSITIVE", evidence=dict(result()["evidence"], ct={"N": 23.1, "S": None}))
    components = resources(fhir_bundle(payload, JWS))["Observation"]["component"]
    assert components[0]["code"]["text"] == "Ct N"
    assert components[0]["valueQuantity"] == {"value": 23.1, "unit": "cycles", "system": "http://unitsofmeasure.org", "code": "{Ct}"}
    assert components[1]["dataAbsentReason"]["coding"][0]["code"] == "not-applicable"


def test_references_resolve_inside_the_bundle_and_ids_are_stable() -> None:
    """Every reference points at an entry's fullUrl, and the same version gives the same Bundle."""
    bundle = fhir_bundle(result(), JWS)
    urls = {e["fullUrl"] for e in bundle["entry"]}
    references = re.findall(r'"reference": "([^"]+)"', json.dumps(bundle))
    assert references and set(references) <= urls
    assert bundle == fhir_bundle(result(), JWS)
    assert bundle != fhir_bundle(result(version=2, supersedes={"id": "x", "version": 1}), JWS)


def test_bundle_needs_a_compact_jws() -> None:
    """A missing or malformed JWS is refused instead of emitting an unsigned Bundle."""
    with pytest.raises(SigningError, match="compact JWS"):
        fhir_bundle(result(), "not-a-jws")


names = st.text(alphabet="aăâbcdđeêghiklmnoôơpqrstuưvxyàằầèềìòồờùừỳáắấéếíóốớúứýảẳẩẻểỉỏổởủửỷãẵẫẽễĩõỗỡũữỹạặậẹệịọộợụựỵ", min_size=1, max_size=7)


@settings(max_examples=30, deadline=None)
@given(
    outcome=st.sampled_from(["POSITIVE", "NEGATIVE", "INCONCLUSIVE"]),
    words=st.lists(names, min_size=1, max_size=4),
    cts=st.dictionaries(st.sampled_from(["ORF1ab", "N", "S", "E", "RdRp", "MS2"]),
                        st.one_of(st.none(), st.floats(min_value=5, max_value=45).map(lambda x: round(x, 2)))),
    version=st.integers(min_value=1, max_value=5),
    sex=st.sampled_from(["male", "female", "other", "nam", "nữ", None]),
)
def test_any_result_gives_a_valid_bundle_and_ndjson_round_trip(
    outcome: str, words: list[str], cts: dict[str, float | None], version: int, sex: str | None
) -> None:
    """For any outcome, name, Ct set and version the Bundle validates and survives an NDJSON round trip."""
    payload = copy.deepcopy(result(outcome))
    payload["person"].update(full_name=" ".join(w.capitalize() for w in words), sex=sex)
    payload["evidence"]["ct"] = cts
    payload["version"] = version
    payload["supersedes"] = {"id": payload["id"], "version": version - 1} if version > 1 else None
    bundle = fhir_bundle(payload, JWS)
    Bundle.model_validate(bundle)
    assert resources(bundle)["Observation"]["status"] == ("corrected" if version > 1 else "final")
    line = ndjson_line(bundle)
    assert line.count(b"\n") == 1 and line.endswith(b"\n")
    assert next(read_ndjson(line)) == bundle


# -- NDJSON ----------------------------------------------------------------------------------------


def test_ndjson_keeps_unicode_and_escapes_newlines() -> None:
    """Lines are UTF-8 with diacritics as they are; a newline inside a value cannot split a record."""
    line = ndjson_line({"full_name": "Nguyễn Văn Đức", "note": "line 1\nline 2"})
    assert "Nguyễn Văn Đức".encode("utf-8") in line
    assert line.count(b"\n") == 1


def test_ndjson_refuses_nan() -> None:
    """NaN is not JSON: a Ct that slipped through as NaN is refused, not written."""
    with pytest.raises(ValueError):
        ndjson_line({"ct": float("nan")})


def test_ndjson_stream_round_trip() -> None:
    """Objects written as a stream of lines read back in order from bytes or a file object."""
    objects = [{"seq": i, "id": f"r-{i}"} for i in range(5)]
    data = b"".join(ndjson_lines(objects))
    assert list(read_ndjson(data)) == objects
    assert list(read_ndjson(io.BytesIO(data + b"\n"))) == objects


def test_ndjson_bad_line_names_the_line() -> None:
    """A corrupt line is reported with the file and line number."""
    data = b'{"seq": 1}\n{"seq": 2\n'
    with pytest.raises(ParseError, match=r"export-0001.ndjson, line 2"):
        list(read_ndjson(data, source="export-0001.ndjson"))
    with pytest.raises(ParseError, match="array instead of an object"):
        list(read_ndjson(b"[1, 2]\n"))
