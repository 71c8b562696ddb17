"""Result identity, the signed result payload, versions and supersession.

The payload object is fixed by docs/interfaces.md; its JCS canonical JSON is the
exact byte string the JWS signs and the ledger stores. Everything in it is a
function of ledger facts (file bytes, manifest rows, the time the analyzer file
was *received*), never of the wall clock at signing time, so re-processing a
plate after a crash reproduces the same payload.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.config import Lab
from engine.ledger.records import SignedResult
from engine.model import PERSON_FIELDS
from engine.results.payloads import SCHEMA
from engine.results.signer import open_signer
from signing.canonical import canonical_json
from signing.dcc import test_entry
from signing.hc1 import sign_hc1
from signing.jws import sign_compact

SPECIMEN_TYPE = "nasopharyngeal swab"
ID_PREFIX = "kq"


def result_id(lab_id: str, specimen_id: str, run_id: str) -> str:
    """Deterministic result id: base32 of SHA-256 over (lab, specimen, first run), ``kq``-prefixed.

    120 bits (24 base32 characters) keep collisions out of reach for any
    national volume while staying short enough to type from a certificate.
    """
    digest = hashlib.sha256("\x1f".join((lab_id, specimen_id, run_id)).encode("utf-8")).digest()
    return ID_PREFIX + base64.b32encode(digest[:15]).decode("ascii").lower()


def utc_instant(text: str) -> str:
    """Normalise an ISO 8601 timestamp to whole-second UTC with ``Z`` (the payload's ``issued_at`` form)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_instant(text: str) -> datetime:
    """The UTC datetime of an ``issued_at`` string."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def expiry(issued_at: str, days: int) -> datetime:
    """End of validity of the QR certificate (CWT ``exp``), counted from ``issued_at``."""
    return parse_instant(issued_at) + timedelta(days=days)


def ct_value(value: float | None) -> float | None:
    """A Ct as it appears in payloads: cycles rounded to 2 decimals, None for no amplification.

    Rounding makes the JSON independent of float32 → float64 noise, so the
    signed bytes are identical on every machine.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    value = float(value)
    if math.isnan(value):
        return None
    return round(value, 2)


def person_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """The ``person`` member from a specimen record (empty values become null)."""
    return {k: (record.get(k) or None) for k in PERSON_FIELDS}


def build_payload(
    *,
    id: str,
    version: int,
    supersedes: int | None,
    issued_at: str,
    outcome: str,
    lab: Lab,
    specimen: Mapping[str, Any],
    test: Mapping[str, Any],
    evidence: Mapping[str, Any],
    correction: str | None = None,
    release: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The result object of docs/interfaces.md (sign its canonical JSON); ``release`` as docs/payload.md says."""
    payload = {
        "schema": SCHEMA,
        "id": id,
        "version": version,
        "supersedes": {"id": id, "version": supersedes} if supersedes is not None else None,
        "issued_at": issued_at,
        "outcome": outcome,
        "lab": {"id": lab.id, "name": lab.name, "licence": lab.licence},
        "person": person_of(specimen),
        "specimen": {
            "id": specimen["specimen_id"],
            "type": SPECIMEN_TYPE,
            "collected_at": specimen.get("collected_at") or None,
            "collection_site": specimen.get("collection_site") or None,
        },
        "test": dict(test),
        "evidence": dict(evidence),
        "correction": {"reason": correction} if correction else None,
    }
    if release is not None:
        payload["release"] = dict(release)
    return payload


def corrected_payload(previous: Mapping[str, Any], specimen: Mapping[str, Any], *, reason: str, issued_at: str) -> dict[str, Any]:
    """The next version of ``previous`` with the person/specimen details from a corrected manifest row.

    Outcome, test and evidence stay exactly as signed before: a correction
    changes who the result belongs to, never what the test found.
    """
    payload = dict(previous)
    payload["version"] = int(previous["version"]) + 1
    payload["supersedes"] = {"id": previous["id"], "version": int(previous["version"])}
    payload["issued_at"] = issued_at
    payload["person"] = person_of(specimen)
    payload["specimen"] = {
        **previous["specimen"],
        "collected_at": specimen.get("collected_at") or None,
        "collection_site": specimen.get("collection_site") or None,
    }
    payload["correction"] = {"reason": reason}
    return payload


def correction_reason(changed: list[str], manifest_name: str) -> str:
    """Readable reason recorded with a corrected version."""
    return f"corrected manifest {manifest_name}: {', '.join(changed)} changed"


def sign_payload(payload: Mapping[str, Any], signer: Any, *, hc1_validity_days: int) -> tuple[str, str, str]:
    """Canonical JSON, compact JWS and HC1 QR string of one payload.

    Returns ``(canonical_json_text, jws, hc1)``.
    """
    canonical = canonical_json(payload)
    jws = sign_compact(canonical, signer)
    issued, expires = _hc1_window(payload["issued_at"], hc1_validity_days)
    hc1 = sign_hc1(test_entry(payload), signer, issued_at=issued, expires_at=expires)
    return canonical.decode("utf-8"), jws, hc1


@functools.lru_cache(maxsize=64)
def _hc1_window(issued_at: str, days: int) -> tuple[datetime, datetime]:
    """(issued, expires) of an HC1; every result of a plate shares its issued_at, so this is parsed once."""
    return parse_instant(issued_at), expiry(issued_at, days)


def sign_corrections(items: list[dict[str, Any]], signer_spec: Any, hc1_validity_days: int) -> list[SignedResult]:
    """Sign correction versions: each item carries ``payload`` (the new version's dict) and ``run_id``.

    Used by the pipeline (a corrected manifest) and the console (a person's record corrected by hand).
    """
    signer = open_signer(signer_spec)
    out = []
    for item in items:
        payload = item["payload"]
        canonical, jws, hc1 = sign_payload(payload, signer, hc1_validity_days=hc1_validity_days)
        out.append(SignedResult(payload["id"], payload["version"], payload["specimen"]["id"], payload["outcome"], item["run_id"],
                                canonical, jws, hc1, payload["supersedes"]["version"], payload["correction"]["reason"]))
    return out
