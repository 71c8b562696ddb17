"""Optional lab configuration: ``<data>/ketqua.toml``.

Every setting has a default so a fresh data folder works (the demo runs with no
file at all). Sections read here: ``[lab]``, ``[assay]``, ``[intake]``,
``[results]``, ``[logging]``. ``[signing]`` belongs to :mod:`signing.keys`.

    [lab]
    id = "VN-79-PASTEUR"
    name = "Viện Pasteur TP.HCM"
    licence = "BYT-79-001"

    [assay]
    default = "taqpath"

    [intake]
    recursive = true
    stable_seconds = 2.0        # size, mtime and inode unchanged this long (and no writer has it open) => complete
    incomplete_seconds = 600.0  # a file that looks cut short (ends mid-line, fails its format's structure
                                # test) or is empty waits this long unchanged, then is quarantined as truncated
    poll_seconds = 0.5          # how often the inbox is looked at (network shares give no events)
    rescan_seconds = 60.0       # full rescan even when events are available (inotify queues overflow)
    max_attempts = 5            # transient failures before a file is parked for an operator
    backoff_seconds = 1.0       # first retry delay; doubles each attempt
    manifest_wait_hours = 72.0  # a plate whose pools never get a manifest is quarantined after this

    [results]
    hc1_validity_days = 365

    [logging]
    json = false
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from typing import Any

from engine.datadir import DataDir
from engine.errors import ConfigError


@dataclass(frozen=True)
class Lab:
    """The issuing laboratory, as printed on results and certificates."""

    id: str = "VN-DEV-LAB"
    name: str = "Phòng xét nghiệm (DEVELOPMENT)"
    licence: str = "DEV-0000"


@dataclass(frozen=True)
class IntakeSettings:
    """How the inbox is watched (see the module docstring for meanings; times in seconds)."""

    recursive: bool = True
    stable_seconds: float = 2.0
    incomplete_seconds: float = 600.0
    poll_seconds: float = 0.5
    rescan_seconds: float = 60.0
    max_attempts: int = 5
    backoff_seconds: float = 1.0
    manifest_wait_hours: float = 72.0


@dataclass(frozen=True)
class Config:
    """The whole configuration; :func:`load_config` fills it from the TOML file."""

    lab: Lab = field(default_factory=Lab)
    default_assay: str = "taqpath"
    intake: IntakeSettings = field(default_factory=IntakeSettings)
    hc1_validity_days: int = 365
    json_logs: bool = False


def _section(raw: dict[str, Any], name: str, cls: type, source: str) -> Any:
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ConfigError(f"{source}: [{name}] has unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    values = {}
    for key, value in table.items():
        default = getattr(cls(), key)
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"{source}: [{name}] {key} must be true or false")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{source}: [{name}] {key} must be a non-negative number")
            value = type(default)(value)
        if isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"{source}: [{name}] {key} must be a string")
        values[key] = value
    return cls(**values)


def read_config_file(data: DataDir) -> tuple[dict[str, Any] | None, str]:
    """The parsed ``<data>/ketqua.toml`` (None when there is none) and its path for messages.

    Every section's reader starts here, so a broken file is reported the same way by each.
    """
    path = data.config
    if not path.exists():
        return None, str(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")), str(path)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc


def load_config(data: DataDir) -> Config:
    """Read ``<data>/ketqua.toml`` if present; defaults otherwise. ConfigError names the bad setting."""
    raw, source = read_config_file(data)
    if raw is None:
        return Config()
    assay = raw.get("assay", {})
    results = raw.get("results", {})
    logging = raw.get("logging", {})
    default_assay = assay.get("default", "taqpath") if isinstance(assay, dict) else "taqpath"
    validity = results.get("hc1_validity_days", 365) if isinstance(results, dict) else 365
    json_logs = logging.get("json", False) if isinstance(logging, dict) else False
    if not isinstance(default_assay, str):
        raise ConfigError(f"{source}: [assay] default must be a profile name")
    if not isinstance(validity, int) or validity <= 0:
        raise ConfigError(f"{source}: [results] hc1_validity_days must be a positive whole number of days")
    if not isinstance(json_logs, bool):
        raise ConfigError(f"{source}: [logging] json must be true or false")
    return Config(
        lab=_section(raw, "lab", Lab, source),
        default_assay=default_assay,
        intake=_section(raw, "intake", IntakeSettings, source),
        hc1_validity_days=validity,
        json_logs=json_logs,
    )
