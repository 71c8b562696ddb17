"""The lab console: web pages where technicians and reviewers see, fix and release what the engine did.

:func:`add_console` mounts it on the API's application at ``/console/``; see
docs/console.md for the pages and :mod:`engine.console.app` for its security.
"""

from engine.console.mount import add_console, console_state, create_console

__all__ = ["add_console", "console_state", "create_console"]
