"""Generic CSV/TSV results, read through a small mapping profile (TOML).

For instruments or LIS exports ketqua has no dedicated parser for, a lab writes
a mapping once and names it when parsing. Content sniffing never picks this
format (its sniffer returns 0): it is used with ``--format generic-csv`` plus
the mapping file in the ``KETQUA_CSV_MAPPING`` environment variable, or from
Python with :func:`parse_with_mapping`.

Mapping profile (every key optional except the Ct source)::

    separator = ";"          # ",", ";", "\\t", "|" or "auto" (default)
    decimal = ","            # "." (default) or ","
    encoding = "auto"        # or an explicit codec, e.g. "cp1258" (legacy Vietnamese Windows)
    header_line = 1          # 1-based line of the column header (default: first non-empty line)
    missing = ["Âm tính"]    # extra spellings of "no Ct", besides Undetermined/NaN/N/A/empty/-1
    plate = 96               # plate size for well validation (96 or 384)
    instrument = "..."       # run metadata to record (also: operator, serial, software, assay, plate_name)

    [columns]                # long format: one row per well x target
    sample = "Mã mẫu"
    ct = "Ct"
    target = "Gen"           # or a fixed name:  target_name = "N"
    well = "Giếng"
    role = "Loại mẫu"
    dye = "Kênh"
    call = "Kết luận"

    [targets]                # wide format instead of columns.ct: target -> its Ct column
    ORF1ab = "Ct ORF1ab"
    N = "Ct N"

    [dyes]                   # optional, wide format: target -> dye
    ORF1ab = "FAM"

    [roles]                  # optional extra role words -> sample/ntc/pc/nc/std
    "Chứng âm" = "nc"
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from parsers.errors import ParseError
from parsers.schema import Role
from parsers.completeness import unterminated
from parsers.registry import register
from parsers.text import (
    Block,
    canonical_table,
    clean_metadata,
    ct_array,
    decode_lines,
    normalise_calls,
    normalise_roles,
    normalise_wells,
    occupied_wells,
    read_block,
    require_rows,
    roles_from_names,
)

#: Environment variable naming the mapping file used by ``--format generic-csv``.
MAPPING_ENV = "KETQUA_CSV_MAPPING"
_SEPARATORS = {",": ",", ";": ";", "\\t": "\t", "\t": "\t", "tab": "\t", "|": "|"}
_ROLE_NAMES = {r.value for r in Role}


@dataclass(frozen=True)
class CsvMapping:
    """Where a CSV keeps each canonical field, and how it writes numbers."""

    sample: str
    ct: str | None = None
    targets: Mapping[str, str] = field(default_factory=dict)
    dyes: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    target_name: str | None = None
    well: str | None = None
    role: str | None = None
    dye: str | None = None
    call: str | None = None
    separator: str = "auto"
    decimal: str = "."
    encoding: str | None = None
    header_line: int | None = None
    missing: tuple[str, ...] = ()
    plate: int = 384
    roles: Mapping[str, str] = field(default_factory=dict)
    run: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "mapping") -> CsvMapping:
        """Validate a parsed TOML mapping; ParseError names the key that is wrong."""

        def fail(key: str, expected: str) -> ParseError:
            return ParseError(f"mapping key '{key}' is missing or invalid", source=source, field=key, expected=expected)

        columns = raw.get("columns", {})
        if not isinstance(columns, Mapping):
            raise fail("columns", "a [columns] table")
        sample = columns.get("sample")
        if not isinstance(sample, str) or not sample:
            raise fail("columns.sample", "the name of the column holding sample ids")
        targets = raw.get("targets", {})
        if not isinstance(targets, Mapping) or not all(isinstance(v, str) for v in targets.values()):
            raise fail("targets", "a [targets] table of target = \"Ct column\"")
        ct = columns.get("ct")
        if (ct is None) == (not targets):
            raise fail("columns.ct", "either columns.ct (long format) or a [targets] table (wide format), not both")
        separator = str(raw.get("separator", "auto"))
        if separator != "auto" and separator not in _SEPARATORS:
            raise fail("separator", "one of ',', ';', '\\t', '|' or 'auto'")
        decimal = str(raw.get("decimal", "."))
        if decimal not in {".", ","}:
            raise fail("decimal", "'.' or ','")
        plate = raw.get("plate", 384)
        if plate not in (96, 384):
            raise fail("plate", "96 or 384")
        header_line = raw.get("header_line")
        if header_line is not None and (not isinstance(header_line, int) or header_line < 1):
            raise fail("header_line", "a line number from 1")
        missing = raw.get("missing", [])
        if not isinstance(missing, list) or not all(isinstance(m, str) for m in missing):
            raise fail("missing", "a list of strings")
        roles = raw.get("roles", {})
        if not isinstance(roles, Mapping) or not all(v in _ROLE_NAMES for v in roles.values()):
            raise fail("roles", f"a [roles] table mapping words to one of {sorted(_ROLE_NAMES)}")
        encoding = raw.get("encoding")
        run = {k: str(raw[k]) for k in ("instrument", "operator", "serial", "software", "assay") if k in raw}
        if "plate_name" in raw:
            run["plate"] = str(raw["plate_name"])
        return cls(
            sample=sample,
            ct=ct,
            targets=dict(targets),
            dyes=dict(raw.get("dyes", {})),
            target=columns.get("target"),
            target_name=columns.get("target_name") or raw.get("target_name"),
            well=columns.get("well"),
            role=columns.get("role"),
            dye=columns.get("dye"),
            call=columns.get("call"),
            separator=separator,
            decimal=decimal,
            encoding=None if encoding in (None, "auto") else str(encoding),
            header_line=header_line,
            missing=tuple(missing),
            plate=int(plate),
            roles=dict(roles),
            run=run,
        )


def load_mapping(path: str | Path) -> CsvMapping:
    """Read a mapping profile from a TOML file."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ParseError(f"cannot read the CSV mapping file: {exc.strerror}", source=str(path)) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ParseError(f"the CSV mapping is not valid TOML ({exc})", source=str(path)) from None
    return CsvMapping.from_dict(raw, source=path.name)


def _guess_separator(line: str) -> str:
    counts = {sep: line.count(sep) for sep in ("\t", ";", ",", "|")}
    return max(counts, key=lambda s: counts[s])


def _column(block: Block, name: str, key: str, source: str) -> pa.Array:
    col = block.get(name)
    if col is None:
        raise ParseError(
            f"column '{name}' (mapping {key}) is not in the header",
            source=source,
            line=block.header_line,
            field=name,
            expected=f"one of the header's columns: {', '.join(h for h in block.header if h)}",
        )
    return col


def _extra_roles(values: pa.Array, mapping: CsvMapping, default: pa.Array) -> pa.Array:
    if not mapping.roles:
        return default
    keys = pa.array([k.strip().lower() for k in mapping.roles])
    idx = pc.index_in(pc.utf8_lower(pc.utf8_trim_whitespace(pc.fill_null(values, ""))), value_set=keys)
    return pc.coalesce(pc.take(pa.array(list(mapping.roles.values())), idx), default)


def parse_with_mapping(
    data: bytes, source: str, run_id: str, mapping: CsvMapping | Mapping[str, Any] | str | Path
) -> pa.Table:
    """Parse a CSV/TSV export whose columns are described by ``mapping`` (object, dict or TOML path)."""
    if isinstance(mapping, str | Path):
        mapping = load_mapping(mapping)
    elif not isinstance(mapping, CsvMapping):
        mapping = CsvMapping.from_dict(mapping)
    lines, encoding = decode_lines(data, source, mapping.encoding)
    if mapping.header_line is not None:
        header = mapping.header_line - 1
        if header >= len(lines):
            raise ParseError(f"the file has only {len(lines)} lines", source=source, line=len(lines),
                             expected=f"a header on line {mapping.header_line} (mapping header_line)")
    else:
        header = next((i for i, line in enumerate(lines) if line.strip()), 0)
    sep = _guess_separator(lines[header]) if mapping.separator == "auto" else _SEPARATORS[mapping.separator]
    block = read_block(lines, header, None, sep, source=source)
    require_rows(block, "CSV", source=source)
    sample = _column(block, mapping.sample, "columns.sample", source)
    role_col = _column(block, mapping.role, "columns.role", source) if mapping.role else None
    if role_col is not None:
        role = _extra_roles(role_col, mapping, normalise_roles(role_col, default=Role.UNKNOWN, empty=Role.SAMPLE))
    else:
        role = pa.repeat(pa.scalar(Role.SAMPLE.value), block.num_rows)
    role = roles_from_names(role, sample)
    well = None
    if mapping.well:
        well = normalise_wells(_column(block, mapping.well, "columns.well", source), plate=mapping.plate,
                               source=source, lines=block.lines, field=mapping.well)
    call = normalise_calls(_column(block, mapping.call, "columns.call", source)) if mapping.call else None
    # One (target, Ct column, dye) triple per target: a single one in long format.
    if mapping.ct is not None:
        target: pa.Array | str | None
        if mapping.target:
            target = _column(block, mapping.target, "columns.target", source)
        else:
            target = mapping.target_name or mapping.ct
        dye = _column(block, mapping.dye, "columns.dye", source) if mapping.dye else None
        parts = [(target, mapping.ct, dye)]
    else:
        parts = [(name, column, mapping.dyes.get(name)) for name, column in mapping.targets.items()]
    meta = clean_metadata([("format", "generic-csv"), ("encoding", encoding), *mapping.run.items()])
    tables = []
    for target, ct_column, dye in parts:
        ct = ct_array(_column(block, ct_column, "Ct column", source), lines=block.lines, source=source,
                      field=ct_column, decimal=mapping.decimal, missing=mapping.missing)
        keep = occupied_wells(sample, role, ct, block.lines, source=source, field=mapping.sample)
        mask = pa.array(keep)

        def kept(values: Any) -> Any:
            return values.filter(mask) if isinstance(values, pa.Array) else values

        if not keep.any():
            continue
        tables.append(
            canonical_table(
                run_id=run_id, source=source, line=block.lines[keep], metadata=meta, well=kept(well),
                sample_id=kept(sample), role=kept(role), target=kept(target), dye=kept(dye), ct=ct[keep],
                call=kept(call),
            )
        )
    if not tables:
        raise ParseError("no row has a sample id", source=source, line=block.header_line,
                         expected=f"sample ids in column '{mapping.sample}'")
    # Wide files give one table per target; keep the file's row order (the sort is stable).
    return pa.concat_tables(tables).sort_by([("line", "ascending")])


@register(
    "generic-csv",
    description="Generic CSV/TSV described by a mapping profile (set KETQUA_CSV_MAPPING=mapping.toml)",
    instruments=("any instrument or LIS exporting a results table",),
)
class GenericCsv:
    """Mapping-driven CSV; never auto-detected. Mapping file from ``$KETQUA_CSV_MAPPING``."""

    @staticmethod
    def sniff(head: bytes, name: str) -> float:
        """Never chosen by content: a CSV's meaning depends on the lab's mapping."""
        return 0.0

    @staticmethod
    def complete(data: bytes) -> str | None:
        """Whole when the file ends with a line end (spreadsheet and LIS CSV writers end every row with one).

        Undetectable: a cut exactly at a line end (a CSV states no row count).
        """
        return unterminated(data)

    @staticmethod
    def parse(data: bytes, source: str, run_id: str) -> pa.Table:
        """Parse with the mapping named by ``$KETQUA_CSV_MAPPING``."""
        path = os.environ.get(MAPPING_ENV)
        if not path:
            raise ParseError(
                "the generic-csv format needs a column mapping",
                source=source,
                expected=f"the path of a mapping TOML in the {MAPPING_ENV} environment variable",
            )
        return parse_with_mapping(data, source, run_id, load_mapping(path))
