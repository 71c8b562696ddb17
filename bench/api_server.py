"""A server process for the API stage: ketqua's pull API, or the bare aiohttp baseline.

Run as ``python -m bench.api_server --mode ketqua|bare --data DIR``; prints the
bound port on stdout and serves until terminated. The server runs in its own
process so it has its own core and GIL, as in production; the bench's client
runs in the parent. Both modes run on uvloop over the same ledger file.

The bare baseline is the least a server must do for the same answers: read the
stored rows from SQLite and write them out (NDJSON lines assembled from the
stored strings; one result as JSON) — no authentication, cursor signing,
metrics or rate limits. The ratio is therefore the price of ketqua's API over
the I/O itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
from pathlib import Path

from aiohttp import web

_Q = json.dumps


def bare_app(ledger_path: Path) -> web.Application:
    """Two handlers over a read-only SQLite connection: a seq-keyed NDJSON feed and one result by id."""
    conn = sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True, check_same_thread=False)

    def line(row: tuple) -> str:
        seq, rid, version, status, payload, jws, hc1 = row
        return f'{{"seq":{seq},"id":{_Q(rid)},"version":{version},"status":{_Q(status)},"payload":{payload},"jws":{_Q(jws)},"hc1":{_Q(hc1)}}}'

    async def feed(request: web.Request) -> web.StreamResponse:
        after = int(request.query.get("after", "0"))
        limit = int(request.query.get("limit", "1000"))
        response = web.StreamResponse()
        response.content_type = "application/x-ndjson"
        await response.prepare(request)
        pos, left = after, limit
        while left > 0:
            rows = conn.execute(
                "SELECT seq, id, version, status, payload, jws, hc1 FROM results WHERE seq > ? ORDER BY seq LIMIT ?", (pos, min(1000, left))
            ).fetchall()
            if not rows:
                break
            await response.write(("\n".join(line(r) for r in rows) + "\n").encode())
            pos, left = rows[-1][0], left - len(rows)
        await response.write_eof()
        return response

    async def one(request: web.Request) -> web.Response:
        row = conn.execute(
            "SELECT seq, id, version, status, payload, jws, hc1 FROM results WHERE id = ? ORDER BY version DESC LIMIT 1",
            (request.match_info["id"],),
        ).fetchone()
        if row is None:
            raise web.HTTPNotFound()
        return web.Response(body=line(row).encode(), content_type="application/json")

    app = web.Application()
    app.router.add_get("/bare/results", feed)
    app.router.add_get("/bare/results/{id}", one)
    return app


async def _serve(mode: str, data: Path) -> None:
    if mode == "ketqua":
        from engine.api.app import create_app, serve
        from engine.datadir import DataDir

        runner = await serve(create_app(DataDir.at(data)), port=0)
    else:
        runner = web.AppRunner(bare_app(data / "ledger.sqlite3"), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api_server")
    parser.add_argument("--mode", choices=("ketqua", "bare"), required=True)
    parser.add_argument("--data", required=True, type=Path)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency off Windows
        pass
    try:
        asyncio.run(_serve(args.mode, args.data))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
