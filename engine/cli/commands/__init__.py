"""Subcommands of the ``ketqua`` CLI, one module each.

Each module defines ``register(subparsers) -> None``, which adds its
subcommand(s) with ``set_defaults(func=...)``; ``func(args) -> int`` is the
exit status. Modules are discovered, so a new command is a new file.
"""
