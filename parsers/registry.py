"""One registry of analyzer formats, filled by a decorator in each parser module.

A parser module registers one object (a class with static methods, or any
object) exposing:

    sniff(head: bytes, name: str) -> float
        confidence in [0, 1] that ``head`` (the first 64 KiB of the file, raw
        bytes) is this format; ``name`` is the file name, a weak hint only.
    parse(data: bytes, source: str, run_id: str) -> pyarrow.Table
        the canonical well table (parsers.schema.WELL_SCHEMA); raise ParseError
        naming line and field for anything it cannot read.
    complete(data: bytes) -> str | None            (optional)
        why ``data`` looks cut short by this format's own structure (declared
        well count, terminator record, closing tag, zip directory, ...), or None
        when it looks whole. Cheap: intake calls it before taking a file.

Modules in this package are imported on first use, so adding a file that calls
``@register`` is all it takes to add a format: there is no list to keep.
"""

from __future__ import annotations

import hashlib
import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import pyarrow as pa

from parsers.completeness import gunzipped, last_line_number, mid_line
from parsers.errors import ParseError, TruncatedError
from parsers.schema import WELL_SCHEMA

SNIFF_BYTES = 64 * 1024
#: Below this confidence no parser is chosen and the file is refused.
MIN_CONFIDENCE = 0.5


class Parser(Protocol):
    def sniff(self, head: bytes, name: str) -> float: ...

    def parse(self, data: bytes, source: str, run_id: str) -> pa.Table: ...


@dataclass(frozen=True)
class Format:
    """A registered analyzer format."""

    name: str
    description: str
    instruments: tuple[str, ...]
    parser: Any

    def sniff(self, head: bytes, name: str) -> float:
        try:
            return float(self.parser.sniff(head, name))
        except Exception:  # a sniffer must never break detection of the others
            return 0.0


_FORMATS: dict[str, Format] = {}
_loaded = False


def register(name: str, *, description: str, instruments: tuple[str, ...] | list[str] = ()) -> Callable[[Any], Any]:
    """Class/object decorator adding a parser under ``name`` (unique)."""

    def decorate(parser: Any) -> Any:
        if name in _FORMATS and _FORMATS[name].parser is not parser:
            raise RuntimeError(f"analyzer format '{name}' registered twice")
        _FORMATS[name] = Format(name, description, tuple(instruments), parser)
        return parser

    return decorate


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    # The package's folder, not ``import parsers``: the package imports this module.
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if not module.name.startswith("_") and module.name not in {"registry"}:
            importlib.import_module(f"parsers.{module.name}")
    _loaded = True


def formats() -> list[Format]:
    """Every registered format, by name."""
    _load_all()
    return [_FORMATS[k] for k in sorted(_FORMATS)]


def get_format(name: str) -> Format:
    _load_all()
    try:
        return _FORMATS[name]
    except KeyError:
        raise ParseError(f"unknown format '{name}'", expected=f"one of {sorted(_FORMATS)}") from None


def detect(data: bytes, source: str) -> Format:
    """The format whose sniffer is most confident about ``data``; ParseError when none is."""
    _load_all()
    head = data[:SNIFF_BYTES]
    name = Path(source).name
    scored = sorted(((fmt.sniff(head, name), fmt.name) for fmt in _FORMATS.values()), reverse=True)
    if not scored or scored[0][0] < MIN_CONFIDENCE:
        raise ParseError(
            "not a recognised analyzer export",
            source=source,
            line=1,
            expected="an export of a supported instrument (see `ketqua formats`)",
        )
    return _FORMATS[scored[0][1]]


def incomplete(data: bytes, source: str, format: str | None = None) -> str | None:
    """Why ``data`` looks cut short (a sentence for the technician), or None when it looks whole.

    Every supported instrument ends a text export with a line terminator, so a
    text file ending mid-line is not complete; a format replaces that test with
    its own (:class:`Parser` ``complete``) where its structure says more, or
    where its writer may leave the last line unterminated. A gzipped export
    must hold a whole gzip stream, and is then judged by what it inflates to.
    ``format`` names the format when the caller chose it (``--format``);
    otherwise it is detected. A file no format recognises is not judged here:
    it is refused later as unrecognised.
    """
    if not data:
        return "the file is empty"
    try:
        fmt = get_format(format) if format else detect(data, source)
    except ParseError:
        fmt = None
    text, why = gunzipped(data)
    if text is None:
        return why
    hook = getattr(fmt.parser, "complete", None) if fmt is not None else None
    if hook is not None:
        try:
            return hook(text)
        except Exception:  # noqa: BLE001 - a bug in a format's test must not stop intake; fall back to the line end
            return mid_line(text)
    return mid_line(text)


def check_complete(data: bytes, source: str, format: str | None = None) -> None:
    """Raise :class:`TruncatedError` naming ``source`` when :func:`incomplete` finds the file cut short."""
    why = incomplete(data, source, format)
    if why is not None:
        text, _ = gunzipped(data)
        line = last_line_number(text) if text and not text.startswith(b"PK") else None
        raise TruncatedError(f"appears truncated: {why}", source=source, line=line,
                             expected="the whole export as the instrument wrote it")


def run_id_of(data: bytes) -> str:
    """A run's identity is the SHA-256 of the exact bytes received."""
    return hashlib.sha256(data).hexdigest()


def parse_bytes(data: bytes, source: str, format: str | None = None) -> pa.Table:
    """Parse ``data`` (named ``source``) into the canonical well table.

    A file cut short raises TruncatedError (a ParseError) before any row is
    read, so nothing is ever interpreted or signed from part of an export. Only
    ParseError escapes: any other exception from a parser is a bug, but the
    file is still refused with a readable message rather than crashing the engine.
    """
    try:
        fmt = get_format(format) if format else detect(data, source)
    except ParseError:
        check_complete(data, source)  # a cut so early that no format is recognised yet is still "truncated"
        raise
    check_complete(data, source, fmt.name)
    run_id = run_id_of(data)
    try:
        table = fmt.parser.parse(data, source, run_id)
    except ParseError as exc:
        raise exc.with_source(source) from None
    except Exception as exc:  # noqa: BLE001 - translated for the technician
        raise ParseError(
            f"could not be read as {fmt.description} ({type(exc).__name__}: {exc})", source=source
        ) from exc
    if not isinstance(table, pa.Table) or not table.schema.equals(WELL_SCHEMA, check_metadata=False):
        raise ParseError(f"parser '{fmt.name}' returned a table that is not the canonical schema", source=source)
    if table.num_rows == 0:
        raise ParseError("the file holds no results", source=source, expected="at least one well with a target")
    meta = dict(table.schema.metadata or {})
    meta.setdefault(b"format", fmt.name.encode())
    return table.replace_schema_metadata(meta)


def parse_file(path: str | Path, format: str | None = None) -> pa.Table:
    """Read and parse one file from disk."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ParseError(f"cannot read file: {exc.strerror}", source=str(path)) from exc
    return parse_bytes(data, path.name, format)
