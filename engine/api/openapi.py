"""The OpenAPI 3.1 document of the pull API (served at ``/v1/openapi.json``).

Written by hand next to the handlers in :mod:`engine.api.app` and :mod:`engine.api.export`;
the contract tests (``tests/engine/api/test_api_contract.py``) check that the
server's routes, status codes, content types and bodies match it, so the two
cannot drift apart silently.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from engine import __version__

_PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {"schema": _PROBLEM}}}


_AUTH_ERRORS = {
    "401": _problem("No token, an unknown or revoked token (header WWW-Authenticate: Bearer error=\"invalid_token\")"),
    "403": _problem("The token lacks the scope this endpoint needs"),
    "429": {
        "description": "Rate limit of the token exceeded",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}},
        "content": {"application/problem+json": {"schema": _PROBLEM}},
    },
}

_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 128}, "description": "result id (kq…)"}
_VERSION = {
    "name": "version",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1},
    "description": "a version of the result; default the latest",
}
_JOB = {"name": "job", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}

_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
        },
    },
    "Item": {
        "type": "object",
        "description": "One signed result version. `payload` is the canonical JSON (RFC 8785) that `jws` signs.",
        "required": [
            "seq", "log_index", "id", "version", "status", "supersedes", "superseded_by", "created_at", "payload", "jws", "hc1", "links",
        ],
        "properties": {
            "seq": {"type": "integer", "minimum": 1, "description": "ledger sequence number (feed order)"},
            "log_index": {
                "type": ["integer", "null"],
                "minimum": 0,
                "description": "leaf index of this version in the transparency log (the leaf is the UTF-8 of `jws`); "
                "outside the signed payload",
            },
            "id": {"type": "string"},
            "version": {"type": "integer", "minimum": 1},
            "status": {"type": "string", "enum": ["POSITIVE", "NEGATIVE", "INCONCLUSIVE"]},
            "supersedes": {
                "oneOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "required": ["id", "version"],
                        "properties": {"id": {"type": "string"}, "version": {"type": "integer", "minimum": 1}},
                    },
                ]
            },
            "superseded_by": {"type": ["integer", "null"], "description": "the newer version, when this one is superseded"},
            "created_at": {"type": "string", "description": "UTC time the ledger committed this version"},
            "payload": {"type": "object", "description": "the result object (schema ketqua/result/1)"},
            "jws": {"type": "string", "pattern": "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+$", "description": "compact JWS (ES256/PS256)"},
            "hc1": {"type": "string", "pattern": "^HC1:", "description": "EU-DCC compatible QR payload"},
            "links": {
                "type": "object",
                "required": ["self", "fhir"],
                "properties": {
                    "self": {"type": "string"},
                    "fhir": {"type": "string"},
                    "certificate": {"type": "string"},
                },
            },
        },
    },
    "Page": {
        "type": "object",
        "required": ["items", "next", "more"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
            "next": {"type": "string", "description": "cursor for the following page (pass as `after`)"},
            "more": {"type": "boolean", "description": "true when more results were committed beyond this page"},
        },
    },
    "Jwks": {
        "type": "object",
        "required": ["keys"],
        "properties": {
            "keys": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["kid", "kty", "x5c"],
                    "properties": {
                        "kid": {"type": "string"},
                        "kty": {"type": "string"},
                        "alg": {"type": "string"},
                        "x5c": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    },
                },
            }
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "last_seq": {"type": "integer"},
            "uptime_s": {"type": "number"},
        },
    },
    "OperationOutcome": {
        "type": "object",
        "description": "FHIR R4 OperationOutcome: the error body of the bulk export routes",
        "required": ["resourceType", "issue"],
        "properties": {
            "resourceType": {"const": "OperationOutcome"},
            "issue": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["severity", "code"],
                    "properties": {
                        "severity": {"enum": ["fatal", "error", "warning", "information"]},
                        "code": {"type": "string"},
                        "diagnostics": {"type": "string"},
                    },
                },
            },
        },
    },
    "InclusionProof": {
        "type": "object",
        "description": "RFC 9162 §2.1.3.1 audit path of the result's leaf, leaf level first",
        "required": ["leaf_index", "tree_size", "hashes"],
        "properties": {
            "leaf_index": {"type": "integer", "minimum": 0},
            "tree_size": {"type": "integer", "minimum": 1},
            "hashes": {"type": "array", "items": {"$ref": "#/components/schemas/Hash"}},
        },
    },
    "ConsistencyProof": {
        "type": "object",
        "description": "RFC 9162 §2.1.4.1 consistency proof (empty when from = to)",
        "required": ["hashes"],
        "properties": {"hashes": {"type": "array", "items": {"$ref": "#/components/schemas/Hash"}}},
    },
    "Hash": {"type": "string", "pattern": "^[A-Za-z0-9+/]{43}=$", "description": "SHA-256, standard base64"},
    "ExportKickoff": {
        "type": "object",
        "required": ["job", "status"],
        "properties": {"job": {"type": "string"}, "status": {"type": "string"}},
    },
    "ExportProgress": {
        "type": "object",
        "required": ["status", "progress"],
        "properties": {"status": {"const": "in-progress"}, "progress": {"type": "number", "minimum": 0, "maximum": 1}},
    },
    "ExportManifest": {
        "type": "object",
        "required": ["transactionTime", "request", "requiresAccessToken", "output", "error", "next"],
        "properties": {
            "transactionTime": {"type": "string"},
            "request": {"type": "string", "format": "uri"},
            "requiresAccessToken": {"type": "boolean"},
            "output": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["type", "url", "count"],
                    "properties": {
                        "type": {"type": "string", "enum": ["Result", "Bundle"]},
                        "url": {"type": "string", "format": "uri"},
                        "count": {"type": "integer", "minimum": 0},
                    },
                },
            },
            "error": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["type", "url"],
                    "properties": {"type": {"const": "OperationOutcome"}, "url": {"type": "string", "format": "uri"}},
                },
            },
            "next": {"type": "string", "description": "feed cursor right after the last exported result"},
        },
    },
}


def _op(summary: str, responses: dict[str, Any], *, params: list[dict[str, Any]] | None = None,
        scope: str | None = "read:results", op_id: str, description: str | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "responses": dict(responses)}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
    op["responses"]["413"] = _problem("The request carries a body (or headers) larger than the server accepts")
    op["responses"].setdefault("503", _problem("The ledger or a signing resource is unavailable; retry later"))
    if scope is None:
        op["security"] = []
    else:
        op["security"] = [{"bearer": [scope] if scope else []}]
        op["responses"].update(_AUTH_ERRORS)
    return op


def _fhir_errors(op: dict[str, Any]) -> dict[str, Any]:
    """The bulk routes answer every error as a FHIR OperationOutcome (FHIR Bulk Data Access IG)."""
    responses = deepcopy(op["responses"])  # the auth errors are shared with every other route: never edit them in place
    for response in responses.values():
        content = response.get("content", {})
        if "application/problem+json" in content:
            del content["application/problem+json"]
            content["application/fhir+json"] = {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}
    return {**op, "responses": responses}


def _json(description: str, schema: dict[str, Any], media: str = "application/json", **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": schema}}, **extra}


_PATHS: dict[str, Any] = {
    "/v1/results": {
        "get": _op(
            "The signed result feed, in ledger order",
            {
                "200": {
                    "description": "A page. JSON (`items`, `next`, `more`), or with `Accept: application/x-ndjson` "
                    "one item per line and the next cursor in the `X-Next-Cursor` header.",
                    "headers": {
                        "X-Next-Cursor": {"schema": {"type": "string"}, "description": "cursor for the next page"},
                        "X-More": {"schema": {"type": "string", "enum": ["true", "false"]}},
                    },
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Page"}},
                        "application/x-ndjson": {
                            "schema": {"type": "string", "description": "newline-delimited Item objects"}
                        },
                    },
                },
                "400": _problem("Malformed cursor, limit or wait"),
            },
            params=[
                {"name": "after", "in": "query", "required": False, "allowEmptyValue": True,
                 "schema": {"type": "string", "pattern": "^([A-Za-z0-9_-]{26})?$"},
                 "description": "opaque cursor from a previous page (`next`); absent or empty: from the beginning. "
                 "A cursor this server did not issue is a 400"},
                {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1},
                 "description": "items per page (default 100); capped at 1000 for JSON and 100000 for NDJSON"},
                {"name": "wait", "in": "query", "required": False, "schema": {"type": "number", "minimum": 0, "maximum": 30},
                 "description": "long poll: seconds (≤ 30) to wait for new results when none are available"},
            ],
            op_id="listResults",
            description="Keyset pagination over the ledger's monotonic sequence: no gaps and no duplicates "
            "while results are being committed. Superseded versions stay in the feed.",
        )
    },
    "/v1/results/{id}": {
        "get": _op(
            "One result (latest version unless `version` is given)",
            {"200": _json("The result", {"$ref": "#/components/schemas/Item"}), "400": _problem("Bad version"),
             "404": _problem("No such result or version")},
            params=[_ID, _VERSION],
            op_id="getResult",
        )
    },
    "/v1/results/{id}/certificate.pdf": {
        "get": _op(
            "The PAdES-signed certificate PDF (Vietnamese and English, with the QR)",
            {"200": {"description": "The PDF", "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}},
             "400": _problem("Bad version"),
             "404": _problem("No such result, or its certificate is not rendered yet")},
            params=[_ID, _VERSION],
            op_id="getCertificate",
        )
    },
    "/v1/results/{id}/fhir": {
        "get": _op(
            "The result as a FHIR R4 Bundle",
            {"200": _json("FHIR Bundle", {"type": "object", "required": ["resourceType"]}, "application/fhir+json"),
             "400": _problem("Bad version"), "404": _problem("No such result or version"),
             "503": _problem("FHIR output not available in this build")},
            params=[_ID, _VERSION],
            op_id="getResultFhir",
        )
    },
    "/v1/results/{id}/proof": {
        "get": _op(
            "Inclusion proof of one result version in the transparency log",
            {"200": _json("Audit path", {"$ref": "#/components/schemas/InclusionProof"}),
             "400": _problem("Bad version or tree_size (0, beyond the log, or not containing this result)"),
             "404": _problem("No such result or version"),
             "500": _problem("The log lost a subtree hash it needs")},
            params=[
                _ID, _VERSION,
                {"name": "tree_size", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1},
                 "description": "size of the checkpoint the proof is for; default the current log size"},
            ],
            op_id="getInclusionProof",
        )
    },
    "/v1/log/checkpoint": {
        "get": _op(
            "The log's latest signed checkpoint (C2SP tlog-checkpoint in a signed note, signed with the lab's key)",
            {"200": {"description": "Signed note", "content": {"text/plain": {"schema": {"type": "string"}}}}},
            op_id="getCheckpoint",
        )
    },
    "/v1/log/checkpoint/timestamp": {
        "get": _op(
            "The RFC 3161 time-stamp of a checkpoint's signed note (when the lab has a TSA)",
            {"200": {"description": "A TimeStampResp (status granted) whose token's message imprint is SHA-256 of the note's bytes",
                     "content": {"application/timestamp-reply": {"schema": {"type": "string", "format": "binary"}}}},
             "400": _problem("Bad size"),
             "404": _problem("No checkpoint of that size, or it has no time-stamp (no TSA configured)")},
            params=[{"name": "size", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0},
                     "description": "the checkpoint's tree size; default the newest checkpoint"}],
            op_id="getCheckpointTimestamp",
        )
    },
    "/v1/log/consistency": {
        "get": _op(
            "Consistency proof between two tree sizes of the log",
            {"200": _json("Proof", {"$ref": "#/components/schemas/ConsistencyProof"}),
             "400": _problem("Missing or bad from/to: need 0 < from ≤ to ≤ the log's size"),
             "500": _problem("The log lost a subtree hash it needs")},
            params=[
                {"name": "from", "in": "query", "required": True, "schema": {"type": "integer", "minimum": 1}},
                {"name": "to", "in": "query", "required": True, "schema": {"type": "integer", "minimum": 1}},
            ],
            op_id="getConsistencyProof",
        )
    },
    "/v1/keys": {
        "get": _op("JWKS of the result signer, with its X.509 chain in x5c",
                   {"200": _json("JWK Set", {"$ref": "#/components/schemas/Jwks"})}, op_id="getKeys")
    },
    "/v1/health": {
        "get": _op("Liveness and ledger position (no token needed)",
                   {"200": _json("Healthy", {"$ref": "#/components/schemas/Health"}),
                    "503": _json("Ledger unavailable", {"$ref": "#/components/schemas/Health"})},
                   scope=None, op_id="getHealth")
    },
    "/v1/metrics": {
        "get": _op("Prometheus metrics (text exposition format 0.0.4)",
                   {"200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}},
                   scope="read:metrics", op_id="getMetrics")
    },
    "/v1/openapi.json": {
        "get": _op("This document", {"200": _json("OpenAPI 3.1", {"type": "object"})}, scope="", op_id="getOpenApi")
    },
    "/v1/$export": {
        "get": _fhir_errors(_op(
            "Kick off a bulk export (FHIR Bulk Data Access IG)",
            {"202": _json("Accepted; poll the absolute status URL in Content-Location", {"$ref": "#/components/schemas/ExportKickoff"},
                          headers={"Content-Location": {"schema": {"type": "string", "format": "uri"}}}),
             "400": _problem("No Prefer: respond-async, or a bad _type, _outputFormat, _since or cursor"),
             "406": _problem("Accept names no JSON type"),
             "429": _problem("Too many exports running (Retry-After)")},
            params=[
                {"name": "Prefer", "in": "header", "required": True, "schema": {"type": "string", "pattern": "respond-async"}},
                {"name": "_type", "in": "query", "required": False,
                 "schema": {"type": "string", "pattern": "^(Bundle|Result)(,(Bundle|Result))*$"},
                 "description": "comma-separated: Bundle (FHIR R4, the default), Result (ketqua's signed-result items, not FHIR)"},
                {"name": "_outputFormat", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": ["application/fhir+ndjson", "application/ndjson", "ndjson", "application/x-ndjson"]},
                 "description": "FHIR NDJSON (default; for Bundle) or application/x-ndjson (for Result)"},
                {"name": "_since", "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"},
                 "description": "only results committed at or after this FHIR instant"},
                {"name": "after", "in": "query", "required": False, "allowEmptyValue": True,
                 "schema": {"type": "string", "pattern": "^([A-Za-z0-9_-]{26})?$"},
                 "description": "export only results after this feed cursor (absent or empty: from the beginning)"},
            ],
            op_id="kickOffExport",
        ))
    },
    "/v1/exports/{job}": {
        "get": _fhir_errors(_op(
            "Status of an export: 202 while running, 200 with the manifest when done",
            {"200": _json("Manifest", {"$ref": "#/components/schemas/ExportManifest"},
                          headers={"Expires": {"schema": {"type": "string"}, "description": "when the files are removed"}}),
             "202": _json("In progress", {"$ref": "#/components/schemas/ExportProgress"},
                          headers={"X-Progress": {"schema": {"type": "string"}}, "Retry-After": {"schema": {"type": "integer"}}}),
             "404": _problem("No such job")},
            params=[_JOB],
            op_id="getExportStatus",
        )),
        "delete": _fhir_errors(_op(
            "Cancel an export and delete its files",
            {"202": _json("Cancelled", {"type": "object"}), "404": _problem("No such job")},
            params=[_JOB],
            op_id="cancelExport",
        )),
    },
    "/v1/exports/{job}/{name}": {
        "get": _fhir_errors(_op(
            "One NDJSON file of a finished export",
            {"200": {"description": "FHIR NDJSON (Bundle, error files) or ketqua's NDJSON (Result files)",
                     "content": {"application/fhir+ndjson": {"schema": {"type": "string"}},
                                 "application/x-ndjson": {"schema": {"type": "string"}}}},
             "404": _problem("No such file")},
            params=[_JOB, {"name": "name", "in": "path", "required": True,
                           "schema": {"type": "string", "pattern": "^(result|bundle|error)-[0-9]{4}[.]ndjson$"}}],
            op_id="getExportFile",
        ))
    },
}


def document() -> dict[str, Any]:
    """A fresh copy of the OpenAPI document (callers may modify it)."""
    return deepcopy(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "ketqua pull API",
                "version": __version__,
                "description": "Signed SARS-CoV-2 RT-PCR results for the national platform. Every endpoint but "
                "/v1/health needs `Authorization: Bearer <token>` (`ketqua tokens add`). The server may also "
                "require a TLS client certificate (mutual TLS).",
            },
            "servers": [{"url": "/"}],
            "paths": _PATHS,
            "components": {
                "schemas": _SCHEMAS,
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer", "description": "token from `ketqua tokens add`; "
                               "scopes read:results, read:metrics"},
                    "mutualTLS": {"type": "mutualTLS", "description": "optional, when the lab configures a client CA"},
                },
            },
        }
    )
