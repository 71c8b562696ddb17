"""``ketqua bench``: the benchmark suite, same flags as ``python -m bench``.

Provided by bench/ itself through the ``ketqua.commands`` entry point (pyproject.toml),
so the engine never imports the benchmarks; ``engine.cli`` adds every command that
group names after its own.
"""

from __future__ import annotations

import argparse

from bench.runner import add_arguments, run_from_args


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "bench",
        parents=[common],
        help="measure each stage next to its baseline (table, bench.json, bench.png)",
        description="Benchmarks work in their own scratch folders; --data is accepted but not used.",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return run_from_args(args)
