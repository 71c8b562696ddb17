"""Structured logging: ``log.info("event", key=value, …)`` as readable text or JSON lines.

JSON lines (``[logging] json = true`` or ``ketqua run --json-logs``) are for log
shippers; the text form is for the technician watching a terminal. Secrets
never reach here: callers log file names, hashes and counts, not keys or PINs.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

_logger = logging.getLogger("ketqua")
_logger.addHandler(logging.NullHandler())


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        return json.dumps(entry, ensure_ascii=False, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{k}={v}" for k, v in getattr(record, "fields", {}).items())
        ts = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        return f"{ts} {record.levelname.lower():<7} {record.getMessage()}" + (f"  {fields}" if fields else "")


class StructuredLogger:
    """Thin front over :mod:`logging` that carries key/value fields."""

    def _emit(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if _logger.isEnabledFor(level):
            _logger.log(level, event, extra={"fields": fields})

    def debug(self, event: str, **fields: Any) -> None:
        self._emit(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._emit(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit(logging.ERROR, event, fields)


log = StructuredLogger()


def configure(*, json_lines: bool = False, level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Send ketqua's log to ``stream`` (stderr) as text or JSON lines; idempotent."""
    for handler in list(_logger.handlers):
        if not isinstance(handler, logging.NullHandler):
            _logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_JsonFormatter() if json_lines else _TextFormatter())
    _logger.addHandler(handler)
    _logger.setLevel(level)
    _logger.propagate = False
