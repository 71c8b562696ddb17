"""``ketqua ingest PATH…``: process existing files once (backfill), with a progress display."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from engine.cli.commands.run import add_pipeline_options, open_engine


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("ingest", parents=[common], help="process existing files or folders once (backfill)")
    p.add_argument("paths", nargs="*", metavar="PATH", help="files or folders (searched recursively); originals are left in place")
    add_pipeline_options(p)
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--retry-parked", action="store_true", help="first put files parked after repeated transient failures back in line")
    p.set_defaults(func=run)


class Progress:
    """One status line on stderr, redrawn at most 10 times a second (a plain line per 5 s when not a terminal)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.start = time.monotonic()
        self.last = 0.0

    def __call__(self, state: dict[str, Any]) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        done, total = state["done"], state["total"]
        if now - self.last < (0.1 if self.tty else 5.0) and done < total:
            return
        self.last = now
        elapsed = max(now - self.start, 1e-9)
        width = 30
        filled = int(width * done / total) if total else width
        bar = "#" * filled + "." * (width - filled)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else 0
        line = f"[{bar}] {done}/{total} plates  {state.get('plates', 0)} committed  {state.get('quarantined', 0)} quarantined  {rate:.1f} plates/s  ETA {eta:.0f} s"
        if self.tty:
            sys.stderr.write("\r" + line[:160])
            if done >= total:
                sys.stderr.write("\n")
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    engine = open_engine(args)
    try:
        t0 = time.monotonic()
        if args.retry_parked:
            print(f"{engine.retry_parked()} parked file(s) put back in line", file=sys.stderr)
        def receiving(n: int, total: int) -> None:
            if not args.quiet and (n % 500 == 0 or n == total) and total >= 500:
                print(f"received {n}/{total} files", file=sys.stderr, flush=True)

        def refused(path: Any, why: str) -> None:
            print(f"ketqua ingest: {path}: {why}", file=sys.stderr, flush=True)

        taken = engine.ingest_paths(args.paths, progress=receiving, refused=refused)
        fresh = sum(1 for t in taken if t.fresh)
        if not args.quiet:
            print(f"received {fresh} new file(s), {len(taken) - fresh} already known, in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        summary = engine.run_once(progress=Progress(args.quiet))
    finally:
        engine.close()
    print(
        f"{summary.manifests} manifest(s), {summary.plates} plate(s) committed, {summary.quarantined} quarantined, "
        f"{summary.waiting} waiting for a manifest; {summary.signed} signed result(s), {summary.certificates} certificate(s); "
        f"{summary.retests} open retest(s); {summary.seconds:.1f} s"
    )
    return 1 if summary.quarantined else 0
