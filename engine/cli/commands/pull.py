"""``ketqua pull``: the reference client of the pull API (verifies everything it writes)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "pull",
        parents=[common],
        help="pull signed results from a ketqua API, verify them, append them to DIR/results.ndjson",
        description=(
            "Pulls the result feed from the saved cursor (DIR/state.json), verifies every JWS and HC1, and "
            "appends each result exactly once. With --trust, the server's signing keys must chain to that CA; "
            "without it, the keys the server publishes are trusted as published (trust on first use). "
            "It also checks the lab's transparency log: the signed checkpoint (lab's key), its consistency with "
            "the last one verified (kept in DIR/state.json) and that every result pulled is in it. A fork (the "
            "lab rewrote or forked its history) stops the pull with nothing written and the evidence in DIR/fork.note."
        ),
    )
    p.add_argument("--url", required=True, help="base URL of the lab's API, e.g. https://lab.example:8443")
    p.add_argument("--token", default=os.environ.get("KETQUA_TOKEN"),
                   help="bearer token (default: $KETQUA_TOKEN, which keeps it out of the process list)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (results.ndjson, state.json)")
    p.add_argument("--follow", action="store_true", help="keep pulling as results arrive, until Ctrl-C")
    p.add_argument("--trust", action="append", metavar="PEM", help="the lab's CA certificate (repeatable)")
    p.add_argument("--limit", type=int, default=1000, help="results per page (default 1000)")
    p.add_argument("--wait", type=float, default=10.0, help="with --follow: long-poll seconds per request")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="processes verifying signatures in parallel (default: cores, at most 8)")
    p.add_argument("--cacert", metavar="PEM", help="CA that issued the server's TLS certificate")
    p.add_argument("--cert", metavar="PEM", help="client certificate for mutual TLS")
    p.add_argument("--key", metavar="PEM", help="private key of --cert")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.client.puller import PullClient, client_ssl_context
    from engine.errors import ApiError

    if not args.token:
        raise ApiError("no token: give --token or set KETQUA_TOKEN (create one with `ketqua tokens add`)")
    if args.limit < 1:
        raise ApiError("--limit must be at least 1")
    trust = None
    if args.trust:
        from signing.verify import certificates_from_pem_files

        trust = certificates_from_pem_files(args.trust)
    ssl_context = None
    if args.url.startswith("https:") and (args.cacert or args.cert):
        ssl_context = client_ssl_context(args.cacert, args.cert, args.key)

    async def main() -> int:
        async with PullClient(args.url, args.token, args.out, trust=trust, limit=args.limit, ssl_context=ssl_context,
                              workers=args.workers) as client:
            try:
                stats = await client.pull(follow=args.follow, wait=args.wait)
            finally:
                s = client.state
                print(f"{s.count} results in {args.out}/results.ndjson, last seq {s.last_seq}", file=sys.stderr)
            rate = stats.items / stats.seconds if stats.seconds else 0.0
            print(f"pulled and verified {stats.items} results in {stats.pages} pages ({rate:,.0f}/s)", file=sys.stderr)
        return 0

    try:
        import uvloop

        return uvloop.run(main())
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.run(main())
