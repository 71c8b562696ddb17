"""Schemathesis (an independent OpenAPI fuzzer) against the live server: every schema-valid request is answered
as the document says — accepted, with a documented status, content type, headers and a body matching its schema.

Schema-valid but unknowable values are mapped to real ones first: a cursor the pattern allows but this server
never issued, and the one cross-parameter rule of ``$export`` (``Result`` is not FHIR NDJSON) that OpenAPI
cannot express; both are in the document's descriptions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance
from hypothesis import HealthCheck, settings

from engine.api.openapi import document
from tests.engine.api.api_world import ServerThread, World, commit, make_world, signed_plate, token

schema = schemathesis.openapi.from_dict(document())
schema.config.generation.update(allow_extra_parameters=True)  # unknown query parameters are ignored, as HTTP APIs do
KNOWN: dict[str, list[str]] = {}
CURSOR = re.compile(r"[A-Za-z0-9_-]{26}")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerThread, str]]:
    world: World = make_world(tmp_path_factory.mktemp("schemathesis"))
    commit(world, signed_plate(world, 1, 12))
    server = ServerThread(world).start()
    secret = token(world, "read:results", "read:metrics", name="schemathesis")
    body = json.loads(server.request("/v1/results?limit=3", secret)[2])
    KNOWN.update(cursor=[body["next"]], id=[item["id"] for item in body["items"]], size=[12])
    yield server, secret
    server.stop()


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 1


@schema.hook
def map_query(ctx: Any, query: dict[str, Any] | None) -> dict[str, Any] | None:
    """Make schema-valid values real; schema-invalid ones (the negative cases) are left alone."""
    if not query:
        return query
    if isinstance(query.get("after"), str) and CURSOR.fullmatch(query["after"]) and KNOWN:
        query["after"] = KNOWN["cursor"][0]  # well-formed, and issued by this server
    size = KNOWN["size"][0] if KNOWN else 1
    if ctx.operation.path == "/v1/log/consistency":
        # 0 < from ≤ to ≤ the log's size: the same ranges RFC 9162 proves; others are documented 400s.
        low, high = sorted(_int(query.get(k)) for k in ("from", "to"))
        query.update({"from": max(1, min(low, size)), "to": max(1, min(high, size))})
    if ctx.operation.path == "/v1/results/{id}/proof" and "tree_size" in query:
        query["tree_size"] = size  # a size that holds the leaf (the world's whole log)
    if ctx.operation.path == "/v1/$export":
        types = str(query.get("_type", ""))
        fmt = query.get("_outputFormat")
        if "Result" in types and "Bundle" in types:
            query.pop("_outputFormat", None)  # both kinds: each file in its own media type
        elif "Result" in types and fmt is not None:
            query["_outputFormat"] = "application/x-ndjson"
        elif fmt == "application/x-ndjson":
            query["_type"] = "Result"
    return query


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_schema_valid_requests_are_answered_as_documented(case: Any, live: tuple[ServerThread, str]) -> None:
    server, secret = live
    response = case.call(base_url=f"http://127.0.0.1:{server.port}", headers={"Authorization": f"Bearer {secret}"})
    # Every check but "schema-violating request accepted": a query parameter the API does not know is ignored
    # (HTTP APIs do), which that check counts as accepting a violation. The checks that hold: no server error,
    # schema-valid requests accepted, documented status codes, content types, headers and bodies.
    excluded = [negative_data_rejection]
    query = case.query or {}
    if case.operation.path == "/v1/log/consistency" and _int(query.get("from")) > _int(query.get("to")):
        excluded.append(positive_data_acceptance)  # from > to: a cross-parameter rule OpenAPI cannot state (a documented 400)
    case.validate_response(response, excluded_checks=excluded)
