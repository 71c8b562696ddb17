"""``ketqua run``: watch the inbox, run the pipeline and serve the pull API until SIGTERM."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("run", parents=[common], help="watch the inbox, process, serve the API (until SIGTERM)")
    p.add_argument("--port", type=int, default=8080, help="API port (default 8080; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="API listen address (default 127.0.0.1)")
    p.add_argument("--no-api", action="store_true", help="pipeline only, no HTTP server")
    p.add_argument("--workers", type=int, default=None, help="worker processes for plates (default: one per core)")
    p.add_argument("--no-certificates", action="store_true", help="do not render PDF certificates")
    p.add_argument("--json-logs", action="store_true", help="log JSON lines to stderr (also [logging] json = true)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.datadir import DataDir
    from engine.logs import configure, log
    from engine.pipeline import Engine, run_service

    data = DataDir.at(args.data).create()
    engine = Engine(data, workers=args.workers, certificates=not args.no_certificates)
    configure(json_lines=args.json_logs or engine.config.json_logs)
    log.info("start", data=str(data.root), inbox=str(data.inbox), workers=engine.workers, api=None if args.no_api else f"{args.host}:{args.port}")
    try:
        run_service(engine, port=None if args.no_api else args.port, host=args.host)
    finally:
        engine.close()
    return 0
