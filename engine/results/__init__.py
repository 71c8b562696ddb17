"""Results: the signed individual result and the forms it travels in.

Owns the result id, the payload object and its versions (corrections,
supersession), signing a payload into JWS and HC1 (through ``signing/``), the
FHIR R4 Bundle and NDJSON forms, and reading the ``[signing]`` configuration.
"""

from engine.results.payloads import (
    canonical_result,
    check_result,
    fhir_bundle,
    ndjson_lines,
    read_ndjson,
)
from engine.results.signed import (
    build_payload,
    corrected_payload,
    result_id,
    sign_payload,
)
from engine.results.signer import load_signer_spec, load_timestamper

__all__ = [
    "build_payload", "canonical_result", "check_result", "corrected_payload", "fhir_bundle",
    "load_signer_spec", "load_timestamper", "ndjson_lines", "read_ndjson", "result_id", "sign_payload",
]
