"""The pull API (engine/api/) vs a bare aiohttp handler over the same ledger.

A ledger is filled with real signed results (JWS + HC1 through
``engine.results.sign_payload``, committed per plate through
``Ledger.commit_plate``), then two server processes serve it: ketqua's API and
the bare baseline of ``bench/api_server.py``. The client runs here, on uvloop.

* **Pull rate**: one client reads the whole feed as NDJSON pages, following
  ketqua's opaque cursor (the baseline's numeric ``after``), and counts the
  lines. Aim (issue 8): ≥ 100,000 results/s.
* **Single GET**: 50 concurrent clients, each on its own keep-alive connection
  (a minimal HTTP/1.1 client, so client overhead does not mask the server),
  fetch random results by id one after another; latency p50/p99 per side. ketqua's side authenticates every
  request: each client holds its own bearer token, as 50 consumers would, so
  the per-token rate limit is not what is measured. Aim: p99 < 10 ms at 50 clients.

Any non-200 answer fails the stage: a figure of error responses means nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import common, workloads
from bench.runner import Context, Figure, compare, stage

REPO = Path(__file__).resolve().parents[1]
PLATE = 3840
CLIENTS = 50


def fill_ledger(ctx: Context, n: int) -> tuple[Path, list[str]]:
    """Commit ``n`` signed results, one ledger transaction per 3,840-result plate; returns (data dir, ids)."""
    from engine.ledger.sqlite import Ledger, PlateCommit, SignedResult
    from engine.results.signed import sign_payload

    k = common.keys(ctx)
    ledger = Ledger.open(k.data_dir / "ledger.sqlite3")
    ids: list[str] = []
    try:
        if ledger.last_seq() >= n:
            return k.data_dir, [r["id"] for r in ledger.feed_page(0, n)]
        payloads = workloads.result_payloads(n, ctx.seed + 1000)
        for start in range(0, n, PLATE):
            chunk = payloads[start : start + PLATE]
            run_id = hashlib.sha256(f"bench-plate-{ctx.seed}-{start}".encode()).hexdigest()
            ledger.receive_file(run_id, f"bench-plate-{start // PLATE}.txt", 1, "analyzer")
            results = []
            for p in chunk:
                canonical, jws, hc1 = sign_payload(p, k.signer, hc1_validity_days=30)
                results.append(SignedResult(p["id"], 1, p["specimen"]["id"], p["outcome"], run_id, canonical, jws, hc1))
                ids.append(p["id"])
            ledger.commit_plate(PlateCommit(run_id=run_id, source=f"bench-plate-{start // PLATE}.txt", metadata={}, wells=384, results=results))
    finally:
        ledger.close()
    return k.data_dir, ids


class Server:
    """A server subprocess started by this stage (and only ever stopped by its own pid)."""

    def __init__(self, mode: str, data: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.api_server", "--mode", mode, "--data", str(data)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=env, text=True,
        )
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=60):
            self.stop()
            raise RuntimeError(f"the {mode} API server did not start within 60 s")
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.stop()
            raise RuntimeError(f"the {mode} API server failed to start: {line!r} {err[-2000:]}")
        self.port = int(line)
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


async def pull_all(session: Any, url: str, headers: dict[str, str], *, cursor_param: str, first: str, page: int, expect: int) -> int:
    """Read the feed to its end; returns the number of results received."""
    got = 0
    after = first
    while True:
        async with session.get(url, params={"limit": str(page), **({cursor_param: after} if after else {})}, headers=headers) as resp:
            if resp.status != 200:
                raise AssertionError(f"GET {url} answered {resp.status}: {(await resp.text())[:300]}")
            body = await resp.read()
            lines = body.count(b"\n")
            got += lines
            if "X-Next-Cursor" in resp.headers:
                after = resp.headers["X-Next-Cursor"]
                more = resp.headers.get("X-More") == "true"
            else:  # the bare baseline: the next page starts after the last seq received
                if lines == 0:
                    break
                last = body.rstrip(b"\n").rsplit(b"\n", 1)[-1]
                after = last[7 : last.index(b",")].decode()
                more = got < expect
        if not more:
            break
    if got != expect:
        raise AssertionError(f"pulled {got} results from {url}, expected {expect}")
    return got


class KeepAliveClient:
    """One HTTP/1.1 keep-alive connection speaking just enough HTTP for ``GET`` with a
    ``Content-Length`` answer. aiohttp's client costs several times what its server does;
    with 50 clients in one process that cost, not the server, would set the latency."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, headers: dict[str, str]) -> None:
        self.reader, self.writer = reader, writer
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.prefix = "GET {} HTTP/1.1\r\nHost: " + host + "\r\n" + extra + "\r\n"

    @classmethod
    async def connect(cls, port: int, headers: dict[str, str]) -> "KeepAliveClient":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, f"127.0.0.1:{port}", headers)

    async def get(self, path: str) -> tuple[int, bytes]:
        self.writer.write(self.prefix.format(path).encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
                break
        body = await self.reader.readexactly(length)
        return status, body

    def close(self) -> None:
        self.writer.close()


async def get_many(port: int, path_of: Any, tokens: list[dict[str, str]], ids: list[str], total: int, latencies: list[float], seed: int) -> None:
    """``len(tokens)`` concurrent clients, each on its own connection, GETting random results one after another."""
    per = total // len(tokens)
    clients = [await KeepAliveClient.connect(port, t) for t in tokens]

    async def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        for _ in range(per):
            path = path_of(ids[rng.randrange(len(ids))])
            t0 = time.perf_counter()
            status, _ = await clients[i].get(path)
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                raise AssertionError(f"GET {path} answered {status}")

    try:
        await asyncio.gather(*(client(i) for i in range(len(tokens))))
    finally:
        for c in clients:
            c.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


@stage(
    "api",
    "pull API (NDJSON feed, single GET at 50 clients) vs bare aiohttp",
    requires=("engine.api", "engine.ledger.sqlite", "engine.api.tokens", "engine.results.signed", "signing.hc1", "engine.demo"),
    order=70,
)
def run(ctx: Context) -> list[Figure]:
    import aiohttp

    from engine.api.tokens import add_token

    n = int(ctx.scale(2000, 40_000))
    gets = int(ctx.scale(1000, 20_000)) // CLIENTS * CLIENTS
    data, ids = ctx.cached(f"api-ledger-{n}", lambda: fill_ledger(ctx, n))
    ledger_path = data / "ledger.sqlite3"
    tokens = [{"Authorization": f"Bearer {add_token(ledger_path, f'bench-client-{i}', ['read:results'])[0]}"} for i in range(CLIENTS)]
    ndjson = {"Accept": "application/x-ndjson"}
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        loop = asyncio.new_event_loop()
    ours = Server("ketqua", data)
    bare = Server("bare", data)
    try:
        session = loop.run_until_complete(_session(aiohttp))
        page = 10_000
        pull_ours = lambda: loop.run_until_complete(pull_all(session, f"{ours.base}/v1/results", {**tokens[0], **ndjson}, cursor_param="after", first="", page=page, expect=n))  # noqa: E731
        pull_bare = lambda: loop.run_until_complete(pull_all(session, f"{bare.base}/bare/results", ndjson, cursor_param="after", first="0", page=page, expect=n))  # noqa: E731
        figures = [
            compare("NDJSON feed, whole ledger, one client", unit="results", amount=n, candidate=pull_ours, baseline=pull_bare,
                    repeats=ctx.heavy_repeats, candidate_label="engine.api.app GET /v1/results (NDJSON)", baseline_label="bare aiohttp + sqlite3",
                    aim="≥ 100k results/s", extra={"page": page, "results": n}),
        ]
        lat_ours: list[float] = []
        lat_bare: list[float] = []
        no_auth = [{} for _ in range(CLIENTS)]
        get_ours = lambda: loop.run_until_complete(get_many(ours.port, lambda rid: f"/v1/results/{rid}", tokens, ids, gets, lat_ours, ctx.seed))  # noqa: E731
        get_bare = lambda: loop.run_until_complete(get_many(bare.port, lambda rid: f"/bare/results/{rid}", no_auth, ids, gets, lat_bare, ctx.seed))  # noqa: E731
        get_ours()  # warm both servers' caches and connections, then measure from a clean slate
        get_bare()
        lat_ours.clear()
        lat_bare.clear()
        fig = compare(f"single GET by id, {CLIENTS} concurrent clients", unit="requests", amount=gets, candidate=get_ours, baseline=get_bare,
                      repeats=ctx.heavy_repeats, candidate_label="engine.api.app GET /v1/results/{id}", baseline_label="bare aiohttp + sqlite3",
                      aim="p99 < 10 ms", warmup=False)
        fig.extra.update(
            {
                "p50_ms": round(_percentile(lat_ours, 0.50) * 1e3, 2),
                "p99_ms": round(_percentile(lat_ours, 0.99) * 1e3, 2),
                "baseline_p50_ms": round(_percentile(lat_bare, 0.50) * 1e3, 2),
                "baseline_p99_ms": round(_percentile(lat_bare, 0.99) * 1e3, 2),
                "requests_measured": len(lat_ours),
            }
        )
        figures.append(fig)
        loop.run_until_complete(session.close())
        return figures
    finally:
        ours.stop()
        bare.stop()
        loop.close()


async def _session(aiohttp: Any) -> Any:
    # One pooled connection per client, as 50 independent consumers would hold.
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CLIENTS + 4))
