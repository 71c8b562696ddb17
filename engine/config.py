"""Optional lab configuration: ``<data>/ketqua.toml``.

Every setting has a default so a fresh data folder works (the demo runs with no
file at all). Sections read here: ``[lab]``, ``[assay]``, ``[intake]``,
``[results]``, ``[logging]``. ``[signing]`` belongs to :mod:`signing.keys`,
``[api]`` to :mod:`engine.api`; :data:`SECTIONS` lists every section and its
checker, and :func:`read_config_file` checks them all whenever the file is read.

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
    release = "auto"            # or "review": a plate's results are signed once a reviewer releases it (lab console)

    [logging]
    json = false
"""

from __future__ import annotations

import difflib
import importlib
import re
import tomllib
from collections.abc import Iterable
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
    release: str = "auto"


#: Every section ketqua.toml may have, and the ``module:function`` that checks it. A checker
#: takes the section's table and returns (the settings it knows, [(setting, problem), …]);
#: unknown settings and sections are found here, once, for all of them. Checkers of other
#: packages are imported only when their section is present.
SECTIONS: dict[str, str] = {
    "lab": "engine.config:lab_problems",
    "assay": "engine.config:assay_problems",
    "intake": "engine.config:intake_problems",
    "results": "engine.config:results_problems",
    "logging": "engine.config:logging_problems",
    "signing": "signing.keys:signing_problems",
    "api": "engine.api.settings:api_problems",
    "console": "engine.console.settings:console_problems",
}

Problems = list[tuple[str, str]]


def dataclass_problems(table: dict[str, Any], cls: type) -> tuple[set[str], Problems]:
    """Type checks of a section whose settings are the fields of ``cls`` (typed by their defaults)."""
    defaults = cls()
    known = {f.name for f in fields(cls)}
    problems: Problems = []
    for key in sorted(known & set(table)):
        default, value = getattr(defaults, key), table[key]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                problems.append((key, f"must be true or false, got {value!r}"))
        elif isinstance(default, (int, float)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                problems.append((key, f"must be a non-negative number, got {value!r}"))
            elif isinstance(default, int) and not isinstance(value, int):
                problems.append((key, f"must be a whole number, got {value!r}"))
        elif isinstance(default, str):
            if not isinstance(value, str):
                problems.append((key, f"must be a string, got {value!r}"))
        elif isinstance(default, (tuple, list)):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problems.append((key, f"must be a list of strings, got {value!r}"))
    return known, problems


def _from_table(table: dict[str, Any], cls: type) -> Any:
    """An instance of ``cls`` from an already checked section (numbers take the default's type)."""
    defaults = cls()
    values: dict[str, Any] = {}
    for key, value in table.items():
        default = getattr(defaults, key)
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            value = type(default)(value)
        elif isinstance(default, tuple):
            value = tuple(value)
        values[key] = value
    return cls(**values)


def lab_problems(table: dict[str, Any]) -> tuple[set[str], Problems]:
    return dataclass_problems(table, Lab)


def intake_problems(table: dict[str, Any]) -> tuple[set[str], Problems]:
    return dataclass_problems(table, IntakeSettings)


def assay_problems(table: dict[str, Any]) -> tuple[set[str], Problems]:
    value = table.get("default", "taqpath")
    return {"default"}, [] if isinstance(value, str) and value else [("default", f"must be a profile name, got {value!r}")]


RELEASE_RULES = ("auto", "review")


def results_problems(table: dict[str, Any]) -> tuple[set[str], Problems]:
    value = table.get("hc1_validity_days", 365)
    ok = isinstance(value, int) and not isinstance(value, bool) and value > 0
    problems = [] if ok else [("hc1_validity_days", f"must be a positive whole number of days, got {value!r}")]
    if table.get("release", "auto") not in RELEASE_RULES:
        problems.append(("release", f"must be \"auto\" or \"review\", got {table['release']!r}"))
    return {"hc1_validity_days", "release"}, problems


def logging_problems(table: dict[str, Any]) -> tuple[set[str], Problems]:
    value = table.get("json", False)
    return {"json"}, [] if isinstance(value, bool) else [("json", f"must be true or false, got {value!r}")]


def _did_you_mean(name: str, known: Iterable[str], brackets: bool = False) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    show = (lambda k: f"[{k}]") if brackets else (lambda k: k)
    if close:
        return f"did you mean {show(close[0])}?"
    return "known: " + ", ".join(show(k) for k in known)


def _lines(text: str) -> dict[tuple[str, str | None], int]:
    """Line numbers of ``[section]`` headers and ``key =`` lines, for messages (plain TOML layouts)."""
    where: dict[tuple[str, str | None], int] = {}
    section = ""
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"\s*\[\s*([^\]\s]+)\s*\]", line)
        if header:
            section = header.group(1).strip("\"'")
            where.setdefault((section, None), number)
            continue
        key = re.match(r"\s*([A-Za-z0-9_\-\"']+)\s*=", line)
        if key:
            name = key.group(1).strip("\"'")
            where.setdefault((section, name) if section else (name, None), number)
    return where


def config_problems(raw: dict[str, Any], text: str = "") -> list[str]:
    """Every problem of a parsed ketqua.toml, one readable line each (line, [section] setting: what is wrong)."""
    lines = _lines(text)

    def at(section: str, key: str | None) -> str:
        line = lines.get((section, key)) or lines.get((section, None))
        return f"line {line}: " if line else ""

    problems: list[str] = []
    for name, table in raw.items():
        if name not in SECTIONS:
            problems.append(f"{at(name, None)}[{name}]: unknown section; {_did_you_mean(name, SECTIONS, brackets=True)}")
            continue
        if not isinstance(table, dict):
            problems.append(f"{at(name, None)}[{name}]: must be a table (a [{name}] header with settings under it), got {table!r}")
            continue
        module, function = SECTIONS[name].split(":")
        known, found = getattr(importlib.import_module(module), function)(table)
        for key in sorted(set(table) - set(known)):
            problems.append(f"{at(name, key)}[{name}] {key}: unknown setting; {_did_you_mean(key, known)}")
        problems.extend(f"{at(name, key)}[{name}] {key}: {message}" for key, message in found)
    return problems


def read_config_file(data: DataDir) -> tuple[dict[str, Any] | None, str]:
    """The parsed ``<data>/ketqua.toml`` (None when there is none) and its path, every section checked.

    Every reader of a section starts here, and ``ketqua`` calls it before any command,
    so a broken file is refused the same way everywhere, with all its problems at once.
    """
    path = data.config
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, str(path)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from exc
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}); nothing in it was used") from exc
    problems = config_problems(raw, text)
    if len(problems) == 1:
        raise ConfigError(f"{path}: {problems[0]}")
    if problems:
        raise ConfigError(f"{path}: {len(problems)} problems; fix them and run again:\n  " + "\n  ".join(problems))
    return raw, str(path)


def load_config(data: DataDir) -> Config:
    """Read ``<data>/ketqua.toml`` if present; defaults otherwise. ConfigError names every bad setting."""
    raw, _ = read_config_file(data)
    if raw is None:
        return Config()
    return Config(
        lab=_from_table(raw.get("lab", {}), Lab),
        default_assay=raw.get("assay", {}).get("default", "taqpath"),
        intake=_from_table(raw.get("intake", {}), IntakeSettings),
        hc1_validity_days=raw.get("results", {}).get("hc1_validity_days", 365),
        json_logs=raw.get("logging", {}).get("json", False),
        release=raw.get("results", {}).get("release", "auto"),
    )
