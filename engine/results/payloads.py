"""Result payloads for other systems: the canonical JSON, a FHIR R4 Bundle, NDJSON for bulk.

* The **canonical JSON** of a result object (docs/payload.md documents every
  field) is what the JWS signs: :func:`canonical_result` checks the object's
  shape and returns its RFC 8785 bytes.
* :func:`fhir_bundle` maps one result version to a FHIR R4 ``collection``
  Bundle: Organization (the lab), Patient, Specimen (nasopharyngeal swab),
  Observation (LOINC 94500-6, SNOMED CT value), DiagnosticReport, and a
  Provenance whose ``signature`` carries the JWS, so a FHIR consumer can check
  the lab's signature over the canonical JSON it was built from.
* :func:`ndjson_line` writes one object per line for bulk exports.

Resource ids are UUIDs derived from (result id, version, resource type), so
the same result version always produces the same Bundle.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from engine.errors import ParseError, SigningError
from signing.canonical import canonical_json

__all__ = [
    "RESULT_FIELDS",
    "OUTCOME_SNOMED",
    "LOINC_SARS_COV_2_RNA",
    "canonical_result",
    "check_result",
    "fhir_bundle",
    "fhir_status",
    "ndjson_line",
    "ndjson_lines",
    "read_ndjson",
]

SCHEMA = "ketqua/result/1"

#: Every field of the canonical result object, as a dotted path → JSON type(s).
#: ``docs/payload.md`` documents exactly these (a test keeps the two in step).
RESULT_FIELDS: dict[str, tuple[str, ...]] = {
    "schema": ("string",),
    "id": ("string",),
    "version": ("integer",),
    "supersedes": ("object", "null"),
    "supersedes.id": ("string",),
    "supersedes.version": ("integer",),
    "issued_at": ("string",),
    "outcome": ("string",),
    "lab": ("object",),
    "lab.id": ("string",),
    "lab.name": ("string",),
    "lab.licence": ("string",),
    "person": ("object",),
    "person.full_name": ("string", "null"),
    "person.date_of_birth": ("string", "null"),
    "person.sex": ("string", "null"),
    "person.national_id": ("string", "null"),
    "person.phone": ("string", "null"),
    "person.address": ("string", "null"),
    "specimen": ("object",),
    "specimen.id": ("string",),
    "specimen.type": ("string",),
    "specimen.collected_at": ("string", "null"),
    "specimen.collection_site": ("string", "null"),
    "test": ("object",),
    "test.assay": ("string",),
    "test.kit": ("string", "null"),
    "test.method": ("string",),
    "test.pooled": ("boolean",),
    "test.pool_id": ("string", "null"),
    "test.design": ("string", "null"),
    "test.decoder": ("string", "null"),
    "evidence": ("object",),
    "evidence.run_id": ("string",),
    "evidence.source": ("string",),
    "evidence.instrument": ("string", "null"),
    "evidence.rule": ("string", "null"),
    "evidence.pools": ("array",),
    "evidence.pools[].pool_id": ("string",),
    "evidence.pools[].well": ("string", "null"),
    "evidence.pools[].outcome": ("string",),
    "evidence.pools[].ct": ("object",),
    "evidence.ct": ("object",),
    "correction": ("object", "null"),
    "correction.reason": ("string",),
    "release": ("object",),
    "release.rule": ("string",),
    "release.by": ("string",),
    "release.at": ("string",),
}

#: Fields a result must carry (the rest may be absent in older or partial payloads).
REQUIRED = ("schema", "id", "version", "issued_at", "outcome", "lab", "person", "specimen", "test", "evidence")

OUTCOMES = ("POSITIVE", "NEGATIVE", "INCONCLUSIVE")

#: SNOMED CT qualifier values for the observation result.
OUTCOME_SNOMED: dict[str, tuple[str, str]] = {
    "POSITIVE": ("260373001", "Detected"),
    "NEGATIVE": ("260415000", "Not detected"),
    "INCONCLUSIVE": ("419984006", "Inconclusive"),
}
#: HL7 v3 ObservationInterpretation codes for the same outcomes.
OUTCOME_INTERPRETATION: dict[str, tuple[str, str]] = {
    "POSITIVE": ("POS", "Positive"),
    "NEGATIVE": ("NEG", "Negative"),
    "INCONCLUSIVE": ("IND", "Indeterminate"),
}
LOINC_SARS_COV_2_RNA = (
    "94500-6",
    "SARS-CoV-2 (COVID-19) RNA [Presence] in Respiratory system specimen by NAA with probe detection",
)
SNOMED_NASOPHARYNGEAL_SWAB = ("258500001", "Nasopharyngeal swab")
SNOMED_RT_PCR = ("9718006", "Polymerase chain reaction analysis")

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
SIGNATURE_TYPE = "urn:iso-astm:E1762-95:2013"
PROVENANCE_ACTIVITY = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"

#: Identifier systems (URIs in ketqua's namespace; a national platform may map them to its own).
SYSTEM_RESULT = "urn:ketqua:result"
SYSTEM_LAB = "urn:ketqua:lab"
SYSTEM_LAB_LICENCE = "urn:ketqua:lab-licence"
SYSTEM_NATIONAL_ID = "urn:ketqua:vn:national-id"
SYSTEM_SPECIMEN = "urn:ketqua:specimen"
SYSTEM_POOL = "urn:ketqua:pool"

_NAMESPACE = uuid.UUID("6f1d7c1e-3a52-5b7e-9c41-6b0f2d8a4e11")

_TYPE_NAMES = {str: "string", bool: "boolean", int: "integer", float: "number", dict: "object", list: "array"}


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def check_result(result: Mapping[str, Any], *, strict: bool = True) -> None:
    """Raise :class:`SigningError` naming the field when ``result`` is not a signable result object.

    ``strict=False`` accepts fields this version does not know (a newer
    producer's additions) while still checking the known ones: readers use it,
    the signer does not.
    """
    rid = result.get("id", "?") if isinstance(result, Mapping) else "?"
    if not isinstance(result, Mapping):
        raise SigningError(f"a result payload must be a JSON object, got {_json_type(result)}")
    for key in REQUIRED:
        if key not in result:
            raise SigningError(f"result {rid}: field '{key}' is missing")
    if result["schema"] != SCHEMA:
        raise SigningError(f"result {rid}: field 'schema' is {result['schema']!r} (expected {SCHEMA!r})")
    if result["outcome"] not in OUTCOMES:
        raise SigningError(
            f"result {rid}: field 'outcome' is {result['outcome']!r} (expected one of {', '.join(OUTCOMES)})"
        )
    if isinstance(result["version"], bool) or not isinstance(result["version"], int) or result["version"] < 1:
        raise SigningError(f"result {rid}: field 'version' is {result['version']!r} (expected an integer ≥ 1)")

    def walk(value: Any, path: str) -> None:
        allowed = RESULT_FIELDS.get(path)
        if allowed is None:
            if path.startswith(("evidence.ct.", "evidence.pools[].ct.")):
                if value is not None and _json_type(value) not in ("number", "integer"):
                    raise SigningError(f"result {rid}: Ct '{path}' is {value!r} (expected cycles as a number, or null)")
                return
            if path.startswith(("test.", "evidence.")) or not strict:
                return  # stages may add evidence/test details; they are signed as they are
            raise SigningError(f"result {rid}: field '{path}' is not part of {SCHEMA}")
        kind = _json_type(value)
        if kind not in allowed and not (kind == "integer" and "number" in allowed):
            raise SigningError(f"result {rid}: field '{path}' is {kind} (expected {' or '.join(allowed)})")
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(item, f"{path}.{key}")
        elif isinstance(value, list):
            for item in value:
                walk(item, f"{path}[]")

    for key, value in result.items():
        walk(value, key)


def canonical_result(result: Mapping[str, Any]) -> bytes:
    """The JWS input: RFC 8785 canonical JSON of a checked result object."""
    check_result(result)
    return canonical_json(result)


# -- FHIR R4 ------------------------------------------------------------------------------------


def fhir_status(result: Mapping[str, Any]) -> str:
    """``corrected`` for a version that supersedes another (retest or demographic correction), else ``final``."""
    return "corrected" if result.get("supersedes") or result.get("correction") else "final"


def _uuid(result: Mapping[str, Any], kind: str) -> str:
    key = f"{result['id']}#{result['version']}#{kind}"
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, key)}"


def _coding(system: str, code_display: tuple[str, str]) -> dict[str, str]:
    return {"system": system, "code": code_display[0], "display": code_display[1]}


def _instant(value: str | None) -> str | None:
    """FHIR instants need seconds and a zone; our payload times already have both (``Z`` or an offset)."""
    return value or None


_GENDER = {"male": "male", "m": "male", "nam": "male", "female": "female", "f": "female", "nữ": "female",
           "nu": "female", "other": "other", "o": "other", "khác": "other"}


def fhir_bundle(result: Mapping[str, Any], jws: str) -> dict[str, Any]:
    """A FHIR R4 ``collection`` Bundle for one result version, signed by reference to its JWS.

    The Provenance's ``signature.data`` is the compact JWS (base64 of its ASCII,
    as ``base64Binary`` requires) with ``sigFormat`` ``application/jose``; the
    JWS payload is the canonical JSON of ``result``, from which every resource
    here was derived.
    """
    check_result(result, strict=False)  # a Bundle can be built from a payload a newer version signed
    if not jws or jws.count(".") != 2:
        raise SigningError(f"result {result['id']}: the JWS is not a compact JWS (three dot-separated parts)")
    status = fhir_status(result)
    outcome = result["outcome"]
    person = result.get("person") or {}
    specimen = result.get("specimen") or {}
    test = result.get("test") or {}
    lab = result.get("lab") or {}
    evidence = result.get("evidence") or {}
    urls = {kind: _uuid(result, kind) for kind in
            ("Organization", "Patient", "Specimen", "Observation", "DiagnosticReport", "Provenance")}
    result_identifier = {"system": SYSTEM_RESULT, "value": f"{result['id']}", "assigner": {"reference": urls["Organization"]}}
    issued = _instant(result.get("issued_at"))
    collected = _instant(specimen.get("collected_at"))

    organization: dict[str, Any] = {
        "resourceType": "Organization",
        "identifier": [{"system": SYSTEM_LAB, "value": lab.get("id") or "unknown"}],
        "name": lab.get("name") or lab.get("id") or "unknown",
    }
    if lab.get("licence"):
        organization["identifier"].append({"system": SYSTEM_LAB_LICENCE, "value": lab["licence"]})

    patient: dict[str, Any] = {"resourceType": "Patient"}
    if person.get("national_id"):
        patient["identifier"] = [{"system": SYSTEM_NATIONAL_ID, "value": person["national_id"]}]
    if person.get("full_name"):
        words = person["full_name"].split()
        # Vietnamese names are written family name first.
        name: dict[str, Any] = {"use": "official", "text": person["full_name"], "family": words[0]}
        if len(words) > 1:
            name["given"] = words[1:]
        patient["name"] = [name]
    if person.get("phone"):
        patient["telecom"] = [{"system": "phone", "value": person["phone"]}]
    patient["gender"] = _GENDER.get(str(person.get("sex") or "").strip().lower(), "unknown")
    if person.get("date_of_birth"):
        patient["birthDate"] = person["date_of_birth"]
    if person.get("address"):
        patient["address"] = [{"text": person["address"], "country": "VN"}]

    specimen_resource: dict[str, Any] = {
        "resourceType": "Specimen",
        "identifier": [{"system": SYSTEM_SPECIMEN, "value": specimen.get("id") or "unknown"}],
        "status": "available",
        "type": {"coding": [_coding(SNOMED, SNOMED_NASOPHARYNGEAL_SWAB)], "text": specimen.get("type") or "nasopharyngeal swab"},
        "subject": {"reference": urls["Patient"]},
    }
    if collected:
        specimen_resource["collection"] = {"collectedDateTime": collected}
    if specimen.get("collection_site"):
        specimen_resource["note"] = [{"text": f"Collection site: {specimen['collection_site']}"}]

    code = {"coding": [_coding(LOINC, LOINC_SARS_COV_2_RNA)], "text": "SARS-CoV-2 RNA (RT-PCR)"}
    value = {"coding": [_coding(SNOMED, OUTCOME_SNOMED[outcome])], "text": outcome}
    method_text = test.get("method") or "RT-PCR"
    if test.get("pooled"):
        method_text += f", pooled (pool {test.get('pool_id') or '?'}, design {test.get('design') or '?'})"
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [dict(result_identifier, value=f"{result['id']}#{result['version']}")],
        "status": status,
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory", "display": "Laboratory"}]}],
        "code": code,
        "subject": {"reference": urls["Patient"]},
        "performer": [{"reference": urls["Organization"]}],
        "valueCodeableConcept": value,
        "interpretation": [{"coding": [_coding(V3_INTERPRETATION, OUTCOME_INTERPRETATION[outcome])]}],
        "method": {"coding": [_coding(SNOMED, SNOMED_RT_PCR)], "text": method_text},
        "specimen": {"reference": urls["Specimen"]},
    }
    if collected:
        observation["effectiveDateTime"] = collected
    if issued:
        observation["issued"] = issued
    kit = test.get("kit") or test.get("assay")
    if kit:
        observation["note"] = [{"text": f"Kit: {kit}"}]
    components = []
    for target, ct in sorted((evidence.get("ct") or {}).items()):
        component: dict[str, Any] = {"code": {"text": f"Ct {target}"}}
        if ct is None:
            # No amplification: there is no cycle number to report, say why instead.
            component["dataAbsentReason"] = {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                            "code": "not-applicable", "display": "Not Applicable"}],
                "text": "not amplified",
            }
        else:
            component["valueQuantity"] = {"value": ct, "unit": "cycles", "system": UCUM, "code": "{Ct}"}
        components.append(component)
    if components:
        observation["component"] = components

    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "identifier": [dict(result_identifier, value=f"{result['id']}#{result['version']}")],
        "status": status,
        "category": [{"coding": [{"system": V2_0074, "code": "LAB", "display": "Laboratory"}]}],
        "code": code,
        "subject": {"reference": urls["Patient"]},
        "performer": [{"reference": urls["Organization"]}],
        "specimen": [{"reference": urls["Specimen"]}],
        "result": [{"reference": urls["Observation"]}],
        "conclusion": outcome,
        "conclusionCode": [value],
    }
    if collected:
        report["effectiveDateTime"] = collected
    if issued:
        report["issued"] = issued

    provenance: dict[str, Any] = {
        "resourceType": "Provenance",
        "target": [{"reference": urls["DiagnosticReport"]}, {"reference": urls["Observation"]}],
        "recorded": issued or "1970-01-01T00:00:00Z",
        "activity": {"coding": [{"system": PROVENANCE_ACTIVITY,
                                 "code": "UPDATE" if status == "corrected" else "CREATE",
                                 "display": "revise" if status == "corrected" else "create"}]},
        "agent": [{"who": {"reference": urls["Organization"]}}],
        "signature": [
            {
                "type": [{"system": SIGNATURE_TYPE, "code": "1.2.840.10065.1.12.1.1", "display": "Author's Signature"}],
                "when": issued or "1970-01-01T00:00:00Z",
                "who": {"reference": urls["Organization"]},
                "targetFormat": "application/json",
                "sigFormat": "application/jose",
                "data": base64.b64encode(jws.encode("ascii")).decode("ascii"),
            }
        ],
    }
    superseded = result.get("supersedes")
    if superseded:
        provenance["entity"] = [
            {
                "role": "revision",
                "what": {
                    "identifier": {"system": SYSTEM_RESULT, "value": f"{superseded['id']}#{superseded['version']}"},
                    "display": f"supersedes version {superseded['version']}",
                },
            }
        ]
        if result.get("correction"):
            provenance["reason"] = [{"text": result["correction"].get("reason") or "correction"}]

    entries = [organization, patient, specimen_resource, observation, report, provenance]
    return {
        "resourceType": "Bundle",
        "identifier": {"system": SYSTEM_RESULT, "value": f"{result['id']}#{result['version']}"},
        "type": "collection",
        "timestamp": issued,
        "entry": [{"fullUrl": urls[r["resourceType"]], "resource": r} for r in entries],
    }


# -- NDJSON -------------------------------------------------------------------------------------------

#: The media type of ketqua's own NDJSON (the feed, export files): one signed-result item per line.
NDJSON = "application/x-ndjson"


def ndjson_line(obj: Mapping[str, Any]) -> bytes:
    """One NDJSON line: compact UTF-8 JSON (non-ASCII kept, no newline inside) and ``\\n``."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8") + b"\n"


def ndjson_lines(objects: Iterable[Mapping[str, Any]]) -> Iterator[bytes]:
    """Lines for a stream of objects, one at a time (bulk exports never hold the whole set)."""
    for obj in objects:
        yield ndjson_line(obj)


def read_ndjson(stream: IO[bytes] | bytes, *, source: str = "<ndjson>") -> Iterator[dict[str, Any]]:
    """Objects from NDJSON bytes or a binary stream; a bad line raises ParseError naming it."""
    lines = stream.splitlines() if isinstance(stream, (bytes, bytearray)) else stream
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ParseError(f"not valid JSON ({exc})", source=source, line=number, expected="one JSON object per line") from exc
        if not isinstance(value, dict):
            raise ParseError(f"a JSON {_json_type(value)} instead of an object", source=source, line=number,
                             expected="one JSON object per line")
        yield value
