"""Bulk export after FHIR Bulk Data's $export (engine.api.export): kick-off, status, manifest, files, clean-up."""

from __future__ import annotations

import json
import os
import time

from tests.engine.api.api_world import ServerThread, World, feed_pages


def test_bulk_export_manifest_files_and_cursor(server: ServerThread, results_token: str) -> None:
    """$export → 202 + Content-Location → manifest whose NDJSON files hold the feed items, and whose `next` continues the feed."""
    status, headers, body = server.request("/v1/$export?_type=Result,Bundle", results_token, headers={"Prefer": "respond-async"})
    assert status == 202
    location = headers["content-location"]
    for _ in range(200):
        status, headers, body = server.request(location, results_token)
        if status == 200:
            break
        assert status == 202 and headers["x-progress"].endswith("%")
        time.sleep(0.05)
    manifest = json.loads(body)
    assert manifest["requiresAccessToken"] is True and manifest["error"] == []
    lines: dict[str, list[dict]] = {"Result": [], "Bundle": []}
    for output in manifest["output"]:
        status, headers, data = server.request(output["url"], results_token)
        assert status == 200 and output["count"] == len(data.splitlines())
        lines[output["type"]].extend(json.loads(line) for line in data.splitlines())
    feed = feed_pages(server, results_token, 1000)
    assert lines["Result"] == feed
    assert [b["resourceType"] for b in lines["Bundle"]] == ["Bundle"] * len(feed)
    status, _, body = server.request(f"/v1/results?after={manifest['next']}", results_token)
    assert status == 200 and json.loads(body)["items"] == []
    assert server.request(output["url"], None)[0] == 401
    assert server.request(location, results_token, method="DELETE")[0] == 202
    assert server.request(location, results_token)[0] == 404


def test_export_rejects_bad_parameters(server: ServerThread, results_token: str) -> None:
    """Unknown _type, unknown _outputFormat, a bad cursor and a malformed job id are 400/404, never 500."""
    assert server.request("/v1/$export?_type=Patient", results_token)[0] == 400
    assert server.request("/v1/$export?_outputFormat=csv", results_token)[0] == 400
    assert server.request("/v1/$export?after=xyz", results_token)[0] == 400
    assert server.request("/v1/exports/../../etc", results_token)[0] == 404
    assert server.request("/v1/exports/" + "a" * 32 + "/..%2Fmanifest.json", results_token)[0] == 404


def test_old_exports_are_deleted_at_the_next_kickoff(server: ServerThread, results_token: str, world: World) -> None:
    """An export finished more than a day ago is removed from the exports folder when a new export starts."""
    old = world.data.exports / ("b" * 32)
    old.mkdir(parents=True, exist_ok=True)
    (old / "result-0001.ndjson").write_text("{}\n")
    (old / "manifest.json").write_text("{}")
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(old / "manifest.json", (day_ago, day_ago))
    status, headers, _ = server.request("/v1/$export", results_token)
    assert status == 202 and not old.exists()
    assert server.request(headers["content-location"], results_token, method="DELETE")[0] == 202
