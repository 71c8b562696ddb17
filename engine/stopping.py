"""A stop request (SIGTERM/SIGINT) that arrives while ``ketqua run`` is still starting up.

A service manager may send SIGTERM at any moment, including the second or so
in which the engine imports its stack and forks its workers, before the event
loop installs its own handlers. Python's default would kill the process
(exit -15) in the middle of opening the ledger. Instead the request is
remembered here from the first line of the CLI, and the service stops cleanly
as soon as it is up (:func:`engine.pipeline.service.serve` reads :data:`REQUESTED`).
After the service has returned, further signals are ignored: the engine is
already stopping and closing its workers must not be cut short.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from types import FrameType

#: Set by SIGTERM/SIGINT before the event loop took over the signals.
REQUESTED = threading.Event()
_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _remember(signum: int, frame: FrameType | None) -> None:
    REQUESTED.set()


def is_service_command(argv: Sequence[str]) -> bool:
    """True when ``argv`` runs the long-lived service (``ketqua [--data X] run …``)."""
    words = list(argv)
    for i, word in enumerate(words):
        if word == "--data":
            continue
        if i > 0 and words[i - 1] == "--data":
            continue
        if word.startswith("-"):
            continue
        return word == "run"
    return False


def remember_early_stops() -> None:
    """From now on a stop signal is recorded instead of killing the process (call first thing)."""
    for sig in _SIGNALS:
        signal.signal(sig, _remember)


def ignore_stops() -> None:
    """While shutting down: a repeated SIGTERM must not interrupt closing the workers and the ledger."""
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
