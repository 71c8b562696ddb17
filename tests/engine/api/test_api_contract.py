"""Contract tests: the running server against its own OpenAPI 3.1 document (hypothesis-generated requests).

For generated operations, parameters (valid, malformed, huge), tokens (none,
garbage, wrong scope, valid) and methods, the server must never answer 500,
never give data without a valid token, answer only documented status codes,
and every documented JSON body must validate against the document's schema.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from engine.api.app import create_app
from engine.api.openapi import document
from tests.engine.api.api_world import (
    ServerThread,
    World,
    commit,
    make_world,
    signed_plate,
    token,
)

DOC = document()
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """A ledger with 2 plates of really signed results."""
    w = make_world(tmp_path_factory.mktemp("contract"))
    commit(w, signed_plate(w, 1, 12))
    commit(w, signed_plate(w, 2, 12))
    return w


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[ServerThread]:
    """The API over ``world``."""
    s = ServerThread(world).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def tokens(world: World) -> dict[str, str | None]:
    """Tokens by kind: none, garbage, well-formed unknown, metrics-only, results-only, both scopes."""
    return {
        "none": None,
        "garbage": "not-a-token",
        "unknown": "kq_0123456789abcdef_" + "x" * 43,
        "metrics": token(world, "read:metrics", name="m"),
        "results": token(world, "read:results", name="r"),
        "all": token(world, "read:results", "read:metrics", name="a"),
    }


@pytest.fixture(scope="module")
def known(server: ServerThread, tokens: dict[str, str | None]) -> dict[str, list[str]]:
    """Real ids and cursors, so generated requests also reach the success paths."""
    body = json.loads(server.request("/v1/results?limit=5", tokens["all"])[2])
    return {"id": [i["id"] for i in body["items"]], "cursor": [body["next"]]}


def _schema_validator(schema: dict[str, Any]) -> Draft202012Validator:
    return Draft202012Validator({**schema, "components": DOC["components"]})


def test_document_is_valid_openapi_3_1(server: ServerThread, tokens: dict[str, str | None]) -> None:
    """The served document validates as OpenAPI 3.1 and equals engine.api.openapi.document()."""
    validate(DOC)
    status, served = server.get_json("/v1/openapi.json", tokens["metrics"])
    assert status == 200 and served == DOC


def test_document_lists_exactly_the_server_routes(world: World) -> None:
    """Every route the app registers is in the document with the same method, and nothing else is.

    The lab console (``/console/``, HTML pages for people, docs/console.md) shares the port but is not the pull API.
    """
    app = create_app(world.data, world.ledger_path)
    served = {
        (route.resource.canonical, route.method)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None and not route.resource.canonical.startswith("/console")
    }
    documented = {(path, method.upper()) for path, ops in DOC["paths"].items() for method in ops}
    assert served == documented


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method.upper(), op) for path, ops in DOC["paths"].items() for method, op in ops.items()]


_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80)


@st.composite
def requests(draw: st.DrawFn, known: dict[str, list[str]]) -> tuple[str, str, str, str | None, dict[str, Any] | None]:
    """(method, url, token kind, path template or None when method is not documented, operation)."""
    path, method, op = draw(st.sampled_from(_operations()))
    if draw(st.integers(0, 9)) == 0:
        method = draw(st.sampled_from(METHODS))
    url = path
    for param in op.get("parameters", []):
        name = param["name"]
        if param["in"] == "path":
            choices = [st.sampled_from(known["id"]), _text, st.just("a" * 32), st.just("0" * 32)]
            value = draw(choices[0] if draw(st.booleans()) else st.one_of(*choices[1:])) or "x"
            url = url.replace("{" + name + "}", urllib.parse.quote(value, safe=""))
    query: list[tuple[str, str]] = []
    plausible = {
        "limit": st.integers(1, 40).map(str),
        "after": st.sampled_from(known["cursor"]),
        "version": st.integers(1, 3).map(str),
        "wait": st.sampled_from(["0", "0.01"]),
        "_type": st.sampled_from(["Result", "Result,Bundle"]),
        "_outputFormat": st.sampled_from(["ndjson", "application/fhir+ndjson"]),
    }
    for param in op.get("parameters", []):
        if param["in"] != "query" or not draw(st.booleans()):
            continue
        hostile = st.one_of(
            _text,
            st.integers(-(10**30), 10**30).map(str),
            st.sampled_from(["1", "0.5", "nan", "inf", "-1", "", "Bundle"]),
        )
        good = plausible.get(param["name"], _text)
        value = draw(good if draw(st.integers(0, 2)) else hostile)
        query.append((param["name"], value))
    if draw(st.booleans()):
        query.append((draw(st.sampled_from(["x", "after", "limit"])), draw(_text)))
    if query:
        url += "?" + urllib.parse.urlencode(query)
    kind = draw(st.sampled_from(["none", "garbage", "unknown", "metrics", "results", "all", "all", "results"]))
    documented = method in {m.upper() for m in DOC["paths"][path]}
    op_for_method = DOC["paths"][path].get(method.lower()) if documented else None
    return method, url, kind, path if documented else None, op_for_method


def _unroutable(url: str, template: str) -> bool:
    """True when a generated path value cannot match the route (it splits the path, or holds braces or dots only)."""
    segments = urllib.parse.unquote(url.split("?")[0]).split("/")
    parts = template.split("/")
    if len(segments) != len(parts):
        return True
    return any(p.startswith("{") and (s in ("", ".", "..") or "{" in s or "}" in s) for s, p in zip(segments, parts))


def _check(server: ServerThread, tokens: dict[str, str | None], req: tuple, accept: str | None) -> None:
    method, url, kind, path, op = req
    status, headers, body = server.request(url, tokens[kind], method=method, accept=accept)
    event(f"{path or 'undocumented method'} -> {status}")
    assert status != 500, (method, url, body)
    if op is None:
        assert status in (404, 405), (method, url, status)
        assert b"payload" not in body
        return
    if status == 404 and json.loads(body).get("detail") == "404: Not Found":
        # The router matched no resource (a path value holding '/', '{' or '}'): no handler ran.
        assert _unroutable(url, path), url
        return
    public = op["security"] == []
    if not public and kind in ("none", "garbage", "unknown"):
        assert b"payload" not in body and b'"keys"' not in body
        assert status == 401, (method, url, kind, status)
        return
    scopes = op["security"][0]["bearer"] if op["security"] else []
    if scopes and kind != "all" and scopes[0] != f"read:{kind}":
        assert status == 403, (method, url, kind, status)
        return
    assert str(status) in op["responses"], (method, url, status, body[:300])
    spec = op["responses"][str(status)]
    content = spec.get("content")
    if not content:
        return
    media = headers.get("content-type", "").split(";")[0]
    assert media in content, (url, media, list(content))
    schema = content[media].get("schema", {})
    if media in ("application/json", "application/problem+json", "application/fhir+json"):
        errors = list(_schema_validator(schema).iter_errors(json.loads(body)))
        assert not errors, (url, errors[0].message)
    elif media == "application/x-ndjson" and path == "/v1/results":
        item = _schema_validator({"$ref": "#/components/schemas/Item"})
        for line in body.splitlines():
            assert not list(item.iter_errors(json.loads(line)))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_generated_requests_honour_the_contract(
    server: ServerThread, tokens: dict[str, str | None], known: dict[str, list[str]], data: st.DataObject
) -> None:
    """Generated requests never get a 500, never data without a valid token, and only documented, schema-valid answers."""
    req = data.draw(requests(known))
    accept = data.draw(st.sampled_from([None, "application/json", "application/x-ndjson", "*/*"]))
    _check(server, tokens, req, accept)


@pytest.mark.parametrize(
    "url",
    [
        "/v1/results?limit=" + "9" * 400,
        "/v1/results?limit=" + "9" * 5000,
        "/v1/results?after=" + "A" * 5000,
        "/v1/results?after=%FF%FE",
        "/v1/results?wait=1e309",
        "/v1/results/%00",
        "/v1/results/" + "k" * 10_000,
        "/v1/exports/%2e%2e",
        "/v1/$export?_type=,,,",
    ],
)
def test_hostile_inputs_never_fail_the_server(server: ServerThread, tokens: dict[str, str | None], url: str) -> None:
    """Oversized, non-UTF-8 and traversal-shaped inputs get a 4xx (or, for a huge limit, a capped page), never a 5xx."""
    status, _, body = server.request(url, tokens["all"])
    if "limit=" in url:
        assert status == 200 and len(json.loads(body)["items"]) == 24
    else:
        assert 400 <= status < 500, (url, status)
