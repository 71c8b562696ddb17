"""``[console]`` in ``<data>/ketqua.toml``: how the lab console behaves.

    [console]
    enabled = true                  # serve /console/ beside the pull API
    corrections_need_review = false # true: a technician's correction waits for a reviewer (four eyes)
    session_hours = 12.0            # a login lasts at most this long (one lab shift)
    idle_minutes = 30.0             # and ends after this long without a request
    login_max_failures = 5          # failed logins of one name (or from one address, x4) ...
    login_window_minutes = 15.0     # ... within this window lock that name out for the window
    language = "vi"                 # default language of the pages: "vi" or "en"
    timezone = "Asia/Ho_Chi_Minh"   # the lab's day, for "today" on the overview
    refresh_seconds = 10.0          # how often the overview refreshes itself
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.config import dataclass_problems, read_config_file
from engine.datadir import DataDir

LANGUAGES = ("vi", "en")


@dataclass(frozen=True)
class ConsoleSettings:
    """The console's settings; every one has a default, so no ``[console]`` table is needed."""

    enabled: bool = True
    corrections_need_review: bool = False
    session_hours: float = 12.0
    idle_minutes: float = 30.0
    login_max_failures: int = 5
    login_window_minutes: float = 15.0
    language: str = "vi"
    timezone: str = "Asia/Ho_Chi_Minh"
    refresh_seconds: float = 10.0

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def console_problems(table: dict[str, Any]) -> tuple[set[str], list[tuple[str, str]]]:
    """The settings ``[console]`` knows and every problem of their values (see ``engine.config.SECTIONS``)."""
    known, problems = dataclass_problems(table, ConsoleSettings)
    if "language" in table and table["language"] not in LANGUAGES:
        problems.append(("language", f"must be one of {', '.join(LANGUAGES)}, got {table['language']!r}"))
    if isinstance(table.get("timezone"), str):
        try:
            ZoneInfo(table["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(("timezone", f"must be an IANA time zone such as Asia/Ho_Chi_Minh, got {table['timezone']!r}"))
    for key in ("session_hours", "idle_minutes", "login_window_minutes", "refresh_seconds", "login_max_failures"):
        value = table.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0:
            problems.append((key, "must be more than 0"))
    return known, problems


def console_settings(data: DataDir) -> ConsoleSettings:
    """The ``[console]`` table of ``<data>/ketqua.toml`` (defaults when absent); already checked by the reader."""
    raw, _ = read_config_file(data)
    table = (raw or {}).get("console", {})
    defaults = ConsoleSettings()
    values = {k: (type(getattr(defaults, k))(v) if not isinstance(v, bool) else v) for k, v in table.items()}
    return ConsoleSettings(**values)
