"""Loaded only by .ci/run's time-shifted passes (PYTHONPATH=.ci/faketime), never by the product.

Those passes move the calendar with libfaketime but keep the monotonic clock
real (FAKETIME_DONT_FAKE_MONOTONIC=1): a shifted monotonic clock makes every
timed wait of Python's threads wait a year. libfaketime 0.9.10 then mishandles
the absolute monotonic clock_nanosleep that time.sleep uses (EINVAL), so here
time.sleep waits through select() with a relative timeout instead.
"""

import select
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    select.select([], [], [], seconds)


time.sleep = _sleep
