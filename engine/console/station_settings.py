"""``[station]`` in ``<data>/ketqua.toml``: the sampling station of one collection site.

    [station]
    design = "dorfman:5"      # how tubes are pooled: Dorfman, K tubes per pool (K = 2..32)
    site = "Trạm y tế Phường 1" # the collection site written into every scanned manifest row
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from engine.config import dataclass_problems, read_config_file
from engine.datadir import DataDir

_DORFMAN = re.compile(r"^dorfman:([0-9]{1,2})$")


@dataclass(frozen=True)
class StationSettings:
    """The station's settings; defaults serve a station that has not been configured yet."""

    design: str = "dorfman:5"
    site: str = ""

    @property
    def pool_size(self) -> int:
        match = _DORFMAN.match(self.design)
        assert match, "checked by station_problems"
        return int(match.group(1))


def station_problems(table: dict[str, Any]) -> tuple[set[str], list[tuple[str, str]]]:
    """The settings ``[station]`` knows and every problem of their values (see ``engine.config.SECTIONS``)."""
    known, problems = dataclass_problems(table, StationSettings)
    design = table.get("design")
    if isinstance(design, str):
        match = _DORFMAN.match(design)
        if not match or not 2 <= int(match.group(1)) <= 32:
            problems.append(("design", f"must be dorfman:K with K from 2 to 32 (the station pools tubes one pool at a time), got {design!r}"))
    site = table.get("site")
    if isinstance(site, str) and len(site) > 90:
        problems.append(("site", "must be at most 90 characters (it is printed on the certificate)"))
    return known, problems


def station_settings(data: DataDir) -> StationSettings:
    """The ``[station]`` table of ``<data>/ketqua.toml`` (defaults when absent); already checked by the reader."""
    raw, _ = read_config_file(data)
    table = (raw or {}).get("station", {})
    return StationSettings(**{k: str(v) for k, v in table.items()})
