"""The ``ketqua`` command line: one entry point, subcommands discovered from engine.cli.commands and the ketqua.commands entry points."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import logging
import os
import pkgutil
import sys
from collections.abc import Iterator, Sequence

import engine.cli.commands as commands
from engine import __version__, stopping
from engine.config import read_config_file
from engine.datadir import DataDir
from engine.errors import USER_ERRORS

DEFAULT_DATA = "./ketqua-data"
COMMAND_GROUP = "ketqua.commands"
_DATA_HELP = "data folder (inbox/, archive/, quarantine/, certificates/, keys/, ledger.sqlite3); default ./ketqua-data"


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser; ``--data DIR`` is taken before the subcommand or after it."""
    # SUPPRESS: a subcommand's --data overrides the one given before it, and its absence does not
    # overwrite that one with a default (`ketqua --data X design …` and `ketqua design … --data X`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data", metavar="DIR", default=argparse.SUPPRESS, help=_DATA_HELP)
    parser = argparse.ArgumentParser(
        prog="ketqua",
        description="ketqua: analyzer files and pool manifests in, signed individual results out.",
    )
    parser.add_argument("--version", action="version", version=f"ketqua {__version__}")
    parser.add_argument("--data", metavar="DIR", default=DEFAULT_DATA, help=_DATA_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in command_modules():
        importlib.import_module(name).register(subparsers, common)
    return parser


def command_modules() -> list[str]:
    """The modules that register subcommands: ``engine.cli.commands.*``, then the ``ketqua.commands`` entry points.

    The entry points let another package add a command without the engine importing it
    (``ketqua bench`` comes from bench/ this way).
    """
    own = sorted(f"{commands.__name__}.{m.name}" for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_"))
    plugged = sorted(ep.value for ep in importlib.metadata.entry_points(group=COMMAND_GROUP))
    return own + [name for name in plugged if name not in own]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns (and exits with) the command's status."""
    if stopping.is_service_command(sys.argv[1:] if argv is None else argv):
        stopping.remember_early_stops()  # before the imports: a SIGTERM during start-up stops cleanly
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with contextlib.ExitStack() as held:
            held.enter_context(_warnings_to_stderr())
            data = DataDir.at(args.data)
            # One check of ketqua.toml for every command, all its problems at once, before anything runs.
            read_config_file(data)
            if getattr(args, "takes_lock", False):
                held.enter_context(data.lock())
            status = args.func(args)
    except USER_ERRORS as exc:
        print(f"ketqua {args.command}: {exc}", file=sys.stderr)
        status = 1
    except BrokenPipeError:
        status = _closed_stdout()
    except OSError as exc:
        if exc.filename is None:
            raise
        # A path the user gave that cannot be written or read (`--csv /missing/dir/x.csv`): say which and why.
        print(f"ketqua {args.command}: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        status = 130
    return int(status or 0)


@contextlib.contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """The engine's warnings (a data folder's permissions tightened, a file quarantined) on stderr for the
    length of a command; ``ketqua run`` replaces this with its configured log (engine.logs.configure)."""
    logger = logging.getLogger("ketqua")
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("ketqua: %(message)s"))
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _closed_stdout() -> int:
    """`ketqua results list --json | head`: the reader left; not an error worth a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
