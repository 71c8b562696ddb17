"""The ``ketqua`` command line: one entry point, subcommands discovered from engine.commands."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from engine import __version__
from engine.errors import KetquaError


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser; every subcommand takes ``--data DIR``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data",
        metavar="DIR",
        default="./ketqua-data",
        help="data folder (inbox/, archive/, quarantine/, certificates/, keys/, ledger.sqlite3); default ./ketqua-data",
    )
    parser = argparse.ArgumentParser(
        prog="ketqua",
        description="ketqua: analyzer files and pool manifests in, signed individual results out.",
    )
    parser.add_argument("--version", action="version", version=f"ketqua {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    import engine.commands as commands

    for module in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if module.name.startswith("_"):
            continue
        importlib.import_module(f"engine.commands.{module.name}").register(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns (and exits with) the command's status."""
    from engine import stopping

    if stopping.is_service_command(sys.argv[1:] if argv is None else argv):
        stopping.remember_early_stops()  # before the imports: a SIGTERM during start-up stops cleanly
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
    except KetquaError as exc:
        print(f"ketqua {args.command}: {exc}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        status = 130
    except BrokenPipeError:
        # `ketqua results list --json | head`: the reader left; not an error worth a traceback.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        status = 0
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
