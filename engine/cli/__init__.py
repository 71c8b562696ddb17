"""The ``ketqua`` command line: one entry point (``main``) and one module per subcommand in ``commands/``."""

from engine.cli.main import main

__all__ = ["main"]
