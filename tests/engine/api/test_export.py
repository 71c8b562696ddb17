"""Bulk export after FHIR Bulk Data's $export (engine.api.export): kick-off, status, manifest, files, clean-up."""

from __future__ import annotations

import json
import os
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
from fhir.resources.bundle import Bundle
from fhir.resources.operationoutcome import OperationOutcome

from tests.engine.api.api_world import ServerThread, World, feed_pages

ASYNC = {"Prefer": "respond-async"}


def _path(url: str) -> str:
    """The path and query of an absolute URL from a manifest (the test client speaks to one host)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _finished(server: ServerThread, token: str, location: str) -> tuple[dict[str, str], dict[str, Any]]:
    for _ in range(400):
        status, headers, body = server.request(_path(location), token)
        if status == 200:
            return headers, json.loads(body)
        assert status == 202 and headers["x-progress"].endswith("%") and "retry-after" in headers
        time.sleep(0.05)
    raise AssertionError("the export never finished")


def _outcome(status: int, headers: dict[str, str], body: bytes) -> OperationOutcome:
    """The error body as the FHIR model reads it (fhir.resources validates it against R4)."""
    assert headers["content-type"].startswith("application/fhir+json"), headers
    outcome = OperationOutcome.model_validate_json(body) if hasattr(OperationOutcome, "model_validate_json") else OperationOutcome.parse_raw(body)
    assert outcome.issue and outcome.issue[0].severity in ("error", "fatal")
    return outcome


def test_bulk_export_manifest_files_and_cursor(server: ServerThread, results_token: str) -> None:
    """$export → 202 + Content-Location → manifest whose NDJSON files hold the feed items, and whose `next` continues the feed."""
    status, headers, body = server.request("/v1/$export?_type=Result,Bundle", results_token, headers=ASYNC)
    assert status == 202
    location = headers["content-location"]
    _, manifest = _finished(server, results_token, location)
    assert manifest["requiresAccessToken"] is True and manifest["error"] == []
    lines: dict[str, list[dict]] = {"Result": [], "Bundle": []}
    for output in manifest["output"]:
        status, headers, data = server.request(_path(output["url"]), results_token)
        assert status == 200 and output["count"] == len(data.splitlines())
        lines[output["type"]].extend(json.loads(line) for line in data.splitlines())
    feed = feed_pages(server, results_token, 1000)
    assert lines["Result"] == feed
    assert [b["resourceType"] for b in lines["Bundle"]] == ["Bundle"] * len(feed)
    status, _, body = server.request(f"/v1/results?after={manifest['next']}", results_token)
    assert status == 200 and json.loads(body)["items"] == []
    assert server.request(_path(output["url"]), None)[0] == 401
    assert server.request(_path(location), results_token, method="DELETE")[0] == 202
    assert server.request(_path(location), results_token)[0] == 404


def test_export_rejects_bad_parameters(server: ServerThread, results_token: str) -> None:
    """Unknown _type, unknown _outputFormat, a bad cursor and a malformed job id are 400/404, never 500."""
    for query in ("_type=Patient", "_outputFormat=csv", "after=xyz", "_since=yesterday", "_since=2026-06-01T08:00:00"):
        status, headers, body = server.request(f"/v1/$export?{query}", results_token, headers=ASYNC)
        assert status == 400, query
        _outcome(status, headers, body)
    for path in ("/v1/exports/../../etc", "/v1/exports/" + "a" * 32 + "/..%2Fmanifest.json"):
        assert server.request(path, results_token)[0] == 404


def test_old_exports_are_deleted_at_the_next_kickoff(server: ServerThread, results_token: str, world: World) -> None:
    """An export finished more than a day ago is removed from the exports folder when a new export starts."""
    old = world.data.exports / ("b" * 32)
    old.mkdir(parents=True, exist_ok=True)
    (old / "result-0001.ndjson").write_text("{}\n")
    (old / "manifest.json").write_text("{}")
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(old / "manifest.json", (day_ago, day_ago))
    status, headers, _ = server.request("/v1/$export", results_token, headers=ASYNC)
    assert status == 202 and not old.exists()
    assert server.request(_path(headers["content-location"]), results_token, method="DELETE")[0] == 202


def test_default_export_is_fhir_with_absolute_urls(server: ServerThread, results_token: str) -> None:
    """Without _type the output is FHIR R4 Bundles as application/fhir+ndjson; every URL in the answer is absolute."""
    status, headers, _ = server.request("/v1/$export", results_token, headers={**ASYNC, "Accept": "application/fhir+json"})
    assert status == 202
    location = headers["content-location"]
    assert location.startswith(f"http://127.0.0.1:{server.port}/v1/exports/")
    done, manifest = _finished(server, results_token, location)
    assert "expires" in done
    assert manifest["request"] == f"http://127.0.0.1:{server.port}/v1/$export"
    assert {o["type"] for o in manifest["output"]} == {"Bundle"}
    total = 0
    for output in manifest["output"]:
        assert output["url"].startswith(f"http://127.0.0.1:{server.port}/v1/exports/")
        status, headers, data = server.request(_path(output["url"]), results_token)
        assert status == 200 and headers["content-type"].startswith("application/fhir+ndjson")
        for line in data.splitlines():
            bundle = Bundle.model_validate_json(line) if hasattr(Bundle, "model_validate_json") else Bundle.parse_raw(line)
            assert bundle.type == "collection"
            total += 1
    assert total == len(feed_pages(server, results_token, 1000))
    server.request(_path(location), results_token, method="DELETE")


def test_ketqua_items_are_asked_for_explicitly_and_are_not_called_fhir(server: ServerThread, results_token: str) -> None:
    """_outputFormat=application/x-ndjson gives the feed's own signed items; FHIR NDJSON with _type=Result is refused."""
    status, headers, body = server.request("/v1/$export?_type=Result&_outputFormat=application/fhir+ndjson", results_token, headers=ASYNC)
    assert status == 400 and "not a FHIR resource" in body.decode()
    _outcome(status, headers, body)
    status, headers, body = server.request("/v1/$export?_type=Result&_outputFormat=application%2Ffhir%2Bndjson", results_token, headers=ASYNC)
    assert status == 400 and "not a FHIR resource" in body.decode()
    status, headers, _ = server.request("/v1/$export?_outputFormat=application/x-ndjson", results_token, headers=ASYNC)
    assert status == 202
    _, manifest = _finished(server, results_token, headers["content-location"])
    assert {o["type"] for o in manifest["output"]} == {"Result"}
    status, headers, data = server.request(_path(manifest["output"][0]["url"]), results_token)
    assert headers["content-type"].startswith("application/x-ndjson")
    assert [json.loads(line) for line in data.splitlines()][:5] == feed_pages(server, results_token, 1000)[:5]


def test_kickoff_needs_prefer_respond_async_and_errors_are_operation_outcomes(server: ServerThread, results_token: str) -> None:
    """The IG's kick-off requires Prefer: respond-async; a missing one, no token, or an unknown job is an OperationOutcome."""
    status, headers, body = server.request("/v1/$export", results_token)
    assert status == 400 and "respond-async" in _outcome(status, headers, body).issue[0].diagnostics
    _outcome(*server.request("/v1/$export", None, headers=ASYNC))
    status, headers, body = server.request("/v1/exports/" + "0" * 32, results_token)
    assert status == 404 and _outcome(status, headers, body).issue[0].code == "not-found"
    status, headers, body = server.request("/v1/$export", results_token, headers={**ASYNC, "Accept": "text/csv"})
    assert status == 406
    _outcome(status, headers, body)


def test_since_exports_only_what_was_committed_from_then_on(server: ServerThread, results_token: str, world: World) -> None:
    """_since (a FHIR instant) starts the snapshot at the first result committed at or after it."""
    from engine.ledger import Ledger

    with Ledger.open(world.ledger_path) as ledger:
        rows = ledger.feed_page(0, 1000)
    cut = rows[len(rows) // 2]["created_at"]
    status, headers, _ = server.request(f"/v1/$export?_outputFormat=application/x-ndjson&_since={cut}", results_token, headers=ASYNC)
    assert status == 202, _
    _, manifest = _finished(server, results_token, headers["content-location"])
    seqs = []
    for output in manifest["output"]:
        seqs += [json.loads(line)["seq"] for line in server.request(_path(output["url"]), results_token)[2].splitlines()]
    assert seqs == [r["seq"] for r in rows if r["created_at"] >= cut]
