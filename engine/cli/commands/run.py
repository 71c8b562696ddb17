"""``ketqua run``: watch the inbox, run the pipeline and serve the pull API until SIGTERM."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.pipeline.engine import Engine


def add_pipeline_options(p: argparse.ArgumentParser) -> None:
    """The options of every command that runs the pipeline (run, ingest, demo); they take the data folder's lock."""
    p.set_defaults(takes_lock=True)  # engine.cli takes it before the command runs: one writer per data folder
    p.add_argument("--workers", type=int, default=None, help="worker processes for plates (default: one per core; 0 = inline)")
    p.add_argument("--no-certificates", action="store_true", help="do not render PDF certificates (signed JSON and QR only)")


def open_engine(args: argparse.Namespace) -> "Engine":
    """The pipeline on ``--data`` (created if new) with the options of :func:`add_pipeline_options`."""
    from engine.config import Lab
    from engine.datadir import DataDir
    from engine.pipeline.engine import Engine
    from engine.results.signer import check_signer

    engine = Engine(DataDir.at(args.data).create(), workers=args.workers, certificates=not args.no_certificates)
    try:
        check_signer(engine.signer_spec, lab_configured=engine.config.lab != Lab())  # a refused PIN or passphrase stops here, once, before any plate
    except BaseException:
        engine.close()
        raise
    return engine


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("run", parents=[common], help="watch the inbox, process, serve the API (until SIGTERM)")
    p.add_argument("--port", type=int, default=8080, help="API port (default 8080; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="API listen address (default 127.0.0.1)")
    p.add_argument("--no-api", action="store_true", help="pipeline only, no HTTP server")
    add_pipeline_options(p)
    p.add_argument("--json-logs", action="store_true", help="log JSON lines to stderr (also [logging] json = true)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine import stopping
    from engine.config import load_config
    from engine.datadir import DataDir
    from engine.logs import configure, log
    from engine.pipeline import run_service

    # Logging first, so what opening the data folder reports (permissions tightened) is in the log.
    configure(json_lines=args.json_logs or load_config(DataDir.at(args.data)).json_logs)
    engine = open_engine(args)
    log.info("start", data=str(engine.data.root), inbox=str(engine.data.inbox), workers=engine.workers, api=None if args.no_api else f"{args.host}:{args.port}")
    try:
        run_service(engine, port=None if args.no_api else args.port, host=args.host)
    finally:
        stopping.ignore_stops()
        engine.close()
    return 0
