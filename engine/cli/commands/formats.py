"""``ketqua formats``: the analyzer formats this build reads."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("formats", parents=[common], help="list the supported analyzer formats")
    p.add_argument("--json", action="store_true", help="one JSON object per format")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from parsers import formats

    for fmt in formats():
        if args.json:
            print(json.dumps({"name": fmt.name, "description": fmt.description, "instruments": list(fmt.instruments)}))
        else:
            instruments = f" ({', '.join(fmt.instruments)})" if fmt.instruments else ""
            print(f"{fmt.name:<22} {fmt.description}{instruments}")
    return 0
