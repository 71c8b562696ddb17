"""The transparency log's routes: the signed checkpoint, inclusion proofs of results, consistency proofs.

- ``GET /v1/log/checkpoint`` → ``text/plain`` signed note (C2SP checkpoint) for
  the log's current size, signed lazily with the lab's key when the tree grew
  since the newest stored one (one signature per size, never on the commit path);
- ``GET /v1/results/{id}/proof?version=V&tree_size=N`` →
  ``{"leaf_index", "tree_size", "hashes"}``;
- ``GET /v1/log/consistency?from=M&to=N`` → ``{"hashes"}``;
- ``GET /v1/log/checkpoint/timestamp[?size=N]`` → the RFC 3161 ``TimeStampResp`` over
  the checkpoint's note, when a TSA is configured (one time-stamp per checkpoint).

A size beyond the log or a proof the tree cannot give (``LogError``
``out-of-range``) is a 400; a subtree hash missing from the store is a 500
(the lab must repair its ledger; nothing the client can change).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from asn1crypto import cms, tsp

from engine.api.state import ApiState, _state, problem
from engine.ledger.sqlite import Ledger
from engine.logs import log
from engine.results.checkpoints import data_log_origin, sign_current_checkpoint
from engine.results.signer import load_signer_spec, load_timestamper
from signing.errors import LogError
from signing.merkle import ConsistencyProof, InclusionProof

_MAX_SIZE = 2**62  # beyond any ledger: answered as out of range without touching the store


def _sign(state: ApiState, origin: str) -> tuple[int, bytes]:
    """Sign (or fetch the stored) checkpoint for the current size, on a connection of this thread."""
    signer = load_signer_spec(state.data).open()
    try:
        with Ledger.open(state.ledger_path) as ledger:
            note = sign_current_checkpoint(ledger, signer, origin, load_timestamper(state.data))
    finally:
        close = getattr(signer, "close", None)
        if close is not None:  # a PKCS#11 session is not kept open between checkpoints
            close()
    size = int(note.split("\n", 2)[1])
    return size, note.encode("utf-8")


async def log_checkpoint(request: web.Request) -> web.Response:
    """The signed checkpoint of the log as it is now."""
    state = _state(request)
    cache = state.checkpoints
    size = state.ledger.log_size()
    if cache.size != size:
        async with cache.lock:
            if cache.size != size:
                loop = asyncio.get_running_loop()
                if cache.origin is None:
                    cache.origin = await loop.run_in_executor(None, data_log_origin, state.data)
                cache.size, cache.note = await loop.run_in_executor(None, _sign, state, cache.origin)
    return web.Response(body=cache.note, content_type="text/plain", charset="utf-8", headers={"Cache-Control": "no-store"})


def _size_param(request: web.Request, name: str, *, required: bool) -> int | None:
    text = request.query.get(name)
    if text is None or text == "":
        if required:
            raise web.HTTPBadRequest(text=f"query parameter {name} is required (a tree size, a whole number)")
        return None
    if not (text.isascii() and text.isdigit()):
        raise web.HTTPBadRequest(text=f"query parameter {name} must be a tree size (a whole number), got {text[:40]!r}")
    return int(text) if len(text) <= 19 else _MAX_SIZE


def _log_call(fn: Any, *args: int) -> Any:
    try:
        return fn(*args)
    except LogError as exc:
        if exc.reason == "missing-node":
            # The ledger lost a subtree hash: nothing the client did or can change.
            log.error("transparency log node missing", error=str(exc))
            raise web.HTTPInternalServerError(
                text="the lab's transparency log is missing a subtree hash it needs; the lab must repair its ledger"
            ) from None
        raise web.HTTPBadRequest(text=str(exc)) from None


def _json(body: dict[str, Any]) -> web.Response:
    return web.Response(text=json.dumps(body, separators=(",", ":")), content_type="application/json")


async def result_proof(request: web.Request) -> web.Response:
    """Inclusion proof of one result version at ``tree_size`` (default: the current size)."""
    state = _state(request)
    rid = request.match_info["id"]
    version_text = request.query.get("version")
    version = _size_param(request, "version", required=False) if version_text not in (None, "") else None
    if version is not None and version < 1:
        raise web.HTTPBadRequest(text="query parameter version must be at least 1")
    if len(rid) > 128 or (version is not None and version > 2**62):
        raise web.HTTPNotFound(text="no such result in this ledger")
    row = state.ledger.get_result(rid, version)
    if row is None:
        what = f"version {version} of result {rid}" if version is not None else f"result {rid}"
        raise web.HTTPNotFound(text=f"no {what} in this ledger")
    index = row.get("log_index")
    if index is None:
        return problem(503, "Service Unavailable", "this result is not in the transparency log yet; retry shortly")
    size = _size_param(request, "tree_size", required=False)
    size = state.ledger.log_size() if size is None else size
    if size <= index:
        raise web.HTTPBadRequest(text=f"result {rid} v{row['version']} is leaf {index}; a tree of {size} leaves does not hold it")
    hashes = _log_call(state.ledger.log_inclusion, index, size)
    return _json(InclusionProof(index, size, tuple(hashes)).to_json())


async def log_consistency(request: web.Request) -> web.Response:
    """Consistency proof from the tree of ``from`` leaves to the one of ``to``."""
    state = _state(request)
    old = _size_param(request, "from", required=True)
    new = _size_param(request, "to", required=True)
    assert old is not None and new is not None
    if old < 1 or old > new:
        raise web.HTTPBadRequest(text=f"a consistency proof needs 0 < from ≤ to; got from={old}, to={new}")
    hashes = _log_call(state.ledger.log_consistency, old, new)
    return _json(ConsistencyProof(tuple(hashes)).to_json())


async def checkpoint_timestamp(request: web.Request) -> web.Response:
    """The TimeStampResp over a checkpoint's note: ``openssl ts -verify -data note.txt -in this.tsr -CAfile tsa-ca.pem``."""
    state = _state(request)
    size = _size_param(request, "size", required=False)
    if size is None:
        await log_checkpoint(request)  # the newest checkpoint exists (and is stamped) before it is asked for
    stored = state.ledger.checkpoint_timestamp(size)  # one indexed row, on the loop's own connection
    if stored is None:
        return problem(404, "Not Found", f"no checkpoint of size {size} was given out; GET /v1/log/checkpoint signs the current one")
    if stored[2] is None:
        return problem(404, "Not Found", "this checkpoint has no time-stamp: the lab has no TSA configured ([signing] tsa_url)")
    reply = tsp.TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": cms.ContentInfo.load(stored[2])})
    return web.Response(body=reply.dump(), content_type="application/timestamp-reply",
                        headers={"X-Checkpoint-Size": str(stored[0]), "Cache-Control": "max-age=3600"})


def add_log_routes(app: web.Application) -> None:
    """Register the transparency log's routes on the API app."""
    app.router.add_get("/v1/log/checkpoint", log_checkpoint)
    app.router.add_get("/v1/log/checkpoint/timestamp", checkpoint_timestamp)
    app.router.add_get("/v1/log/consistency", log_consistency)
    app.router.add_get("/v1/results/{id}/proof", result_proof)
