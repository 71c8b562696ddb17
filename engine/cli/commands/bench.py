"""``ketqua bench``: the benchmark suite, same flags as ``python -m bench``."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "bench",
        parents=[common],
        help="measure each stage next to its baseline (table, bench.json, bench.png)",
        description="Benchmarks work in their own scratch folders; --data is accepted but not used.",
    )
    from bench.runner import add_arguments

    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bench.runner import run_from_args

    return run_from_args(args)
