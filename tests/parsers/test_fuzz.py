"""Fuzzing every registered analyzer format with mutated real files.

The corpus is every real instrument file under ``../shared/fixtures/real`` plus
every analyzer file the project keeps in ``tests/data`` (anything a sniffer
recognises), so a new parser and its fixtures are covered without editing this
file. Each case mutates one file the way files really get damaged (cut short,
bytes flipped, inserted or lost, re-saved as UTF-16 or cp1252, a field dropped,
lines duplicated or shuffled; inside the zip for .xlsx/.rdml) and feeds it both
to its own parser directly and to ``parsers.parse_bytes``. The contract: the only
exception is ``ParseError``, and any table returned has the canonical schema
with Ct in 0-50 cycles or NaN.

The default run is derandomised and sized to stay well under a minute; the
``slow`` variant draws many more, fresh examples.
"""

from __future__ import annotations

import gzip
import io
import random
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import parsers
from engine.errors import ParseError
from engine.model import WELL_SCHEMA
from parsers.text import decode
from tests import shared
from tests.parsers.helpers import DATA, REAL

RUN_ID = "0" * 64

#: Which family each real-fixture folder holds (SOURCES.md); folders added later are still fuzzed.
REAL_FAMILY = {
    "abbott_m2000_log": "m2000",
    "abi_sds_txt": "sds",
    "astm_e1394": "astm",
    "biorad_cfx_csv": "cfx",
    "hl7_v2": "hl7v2",
    "lightcycler480_txt": "lightcycler",
    "quantstudio_design_analysis_xlsx": "quantstudio-xlsx",
    "quantstudio_txt": "quantstudio",
    "rdml": "rdml",
    "rotorgene_q_csv": "rotorgene",
}
#: tests/data files are named <format>_... (the registry name, ``-`` written ``_``); prefixes that differ from it.
DATA_PREFIX = {"hl7": "hl7v2"}

#: Known crashes of parsers owned by others, by corpus file name: reported, not fixed here.
KNOWN_CRASHES: dict[str, str] = {}


def _real_files() -> list[Path]:
    if not REAL.is_dir():
        return []
    return sorted(p for p in REAL.rglob("*") if p.is_file() and p.name != "SOURCES.md")


def _data_files() -> list[Path]:
    out = []
    for path in sorted(DATA.iterdir()) if DATA.is_dir() else []:
        if path.is_file():
            try:
                parsers.detect(path.read_bytes(), path.name)
            except ParseError:
                continue  # not an analyzer export (manifests, designs...)
            out.append(path)
    return out


def _data_family(name: str) -> str | None:
    """The format a tests/data file name announces; the longest prefix wins (quantstudio_xlsx_ is quantstudio-xlsx)."""
    prefixes = {f.name.replace("-", "_"): f.name for f in parsers.formats()} | DATA_PREFIX
    matching = [p for p in prefixes if name.startswith(p + "_")]
    return prefixes[max(matching, key=len)] if matching else None


def _expected_family(path: Path) -> str | None:
    if REAL in path.parents or path.resolve().is_relative_to(REAL.resolve()):
        return REAL_FAMILY.get(path.parent.name)
    return _data_family(path.name)


CORPUS = _real_files() + _data_files()
#: Each corpus file's family, decided at collection, so a test using it reads no fixture path itself
#: (without ../shared the sniffing tests of tests/data files still run).
EXPECTED_FAMILY = {path: _expected_family(path) for path in CORPUS}


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _params(paths: list[Path]) -> list:
    out = []
    for path in paths:
        marks = []
        if path.name in KNOWN_CRASHES:
            marks.append(pytest.mark.xfail(reason=KNOWN_CRASHES[path.name], strict=False))
        out.append(pytest.param(path, id=_id(path), marks=marks))
    return out


@lru_cache(maxsize=None)
def _original(path: Path) -> tuple[bytes, str]:
    data = path.read_bytes()
    return data, parsers.detect(data, path.name).name


# ---------------------------------------------------------------------------
# Mutations
# ---------------------------------------------------------------------------

_TOKENS = [b"\t", b";", b",", b"|", b"^", b"\r", b"\n", b"\r\n", b"-1", b"NaN", b"Undetermined", b"999", b"-5",
           b"1e9", b"\x00", b"\x02", b"\x03", b"\x17", b"\x0b", b"\x1c", b"<", b">", b"&", b'"', b"</data>",
           b"<cq>", b"A1", b"Z99", "Nguyễn".encode(), b"\xff\xfe", b"\xef\xbb\xbf"]

OPERATION = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(1, 255)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=12)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.sampled_from(_TOKENS)),
    st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 80)),
    st.tuples(st.just("reencode"), st.sampled_from(["utf-16", "utf-16-le", "utf-16-be", "cp1252", "utf-8-sig"])),
    st.tuples(st.just("drop_field"), st.floats(0, 1), st.integers(0, 30)),
    st.tuples(st.just("duplicate_line"), st.floats(0, 1)),
    st.tuples(st.just("swap_lines"), st.floats(0, 1), st.floats(0, 1)),
    st.tuples(st.just("shuffle"), st.integers(0, 2**32 - 1)),
)


def _at(data: bytes, where: float) -> int:
    return min(len(data), int(where * len(data)))


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True) or [data]


def _apply(data: bytes, op: tuple) -> bytes:
    kind = op[0]
    if kind == "truncate":
        return data[: _at(data, op[1])]
    if kind == "flip":
        if not data:
            return data
        i = min(len(data) - 1, _at(data, op[1]))
        return data[:i] + bytes([data[i] ^ op[2]]) + data[i + 1 :]
    if kind == "insert":
        i = _at(data, op[1])
        return data[:i] + op[2] + data[i:]
    if kind == "delete":
        i = _at(data, op[1])
        return data[:i] + data[i + op[2] :]
    if kind == "reencode":
        try:
            text, _ = decode(data)
        except ParseError:
            return data
        return text.encode(op[1], errors="replace")
    lines = _lines(data)
    if kind == "drop_field":
        i = min(len(lines) - 1, int(op[1] * len(lines)))
        line = lines[i]
        sep = max((b"\t", b";", b",", b"|"), key=line.count)
        fields = line.split(sep)
        if len(fields) > 1:
            del fields[op[2] % len(fields)]
            lines[i] = sep.join(fields)
        return b"".join(lines)
    if kind == "duplicate_line":
        i = min(len(lines) - 1, int(op[1] * len(lines)))
        return b"".join(lines[: i + 1] + [lines[i]] + lines[i + 1 :])
    if kind == "swap_lines":
        i = min(len(lines) - 1, int(op[1] * len(lines)))
        j = min(len(lines) - 1, int(op[2] * len(lines)))
        lines[i], lines[j] = lines[j], lines[i]
        return b"".join(lines)
    if kind == "shuffle":
        random.Random(op[1]).shuffle(lines)
        return b"".join(lines)
    raise AssertionError(kind)


def mutate(data: bytes, ops: list[tuple], inner: float | None) -> bytes:
    """Apply ``ops`` to ``data``; for a zip (xlsx, rdml) to one member chosen by ``inner``, then re-zip."""
    if inner is not None and data.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                members = [(i, archive.read(i)) for i in archive.infolist()]
        except (zipfile.BadZipFile, OSError, ValueError):
            members = []
        if members:
            k = min(len(members) - 1, int(inner * len(members)))
            out = io.BytesIO()
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
                for j, (info, content) in enumerate(members):
                    if j == k:
                        for op in ops:
                            content = _apply(content, op)
                    archive.writestr(info.filename, content)
            return out.getvalue()
    if inner is not None and data[:2] == b"\x1f\x8b":  # gzip (LightCycler export stored compressed)
        try:
            content = gzip.decompress(data)
        except (OSError, EOFError):
            content = None
        if content is not None:
            for op in ops:
                content = _apply(content, op)
            return gzip.compress(content, mtime=0)
    for op in ops:
        data = _apply(data, op)
    return data


# ---------------------------------------------------------------------------
# The contract
# ---------------------------------------------------------------------------


def check_table(table: object) -> None:
    """A parser's output: the canonical schema, Ct in 0-50 cycles or NaN."""
    assert isinstance(table, pa.Table)
    assert table.schema.equals(WELL_SCHEMA, check_metadata=False), table.schema
    ct = table.column("ct").to_numpy(zero_copy_only=False).astype(np.float64)
    finite = ~np.isnan(ct)
    assert ((ct[finite] >= 0.0) & (ct[finite] <= 50.0)).all(), ct[finite & ((ct < 0) | (ct > 50))]


def run_both(fmt_name: str, data: bytes, force: bool = False) -> None:
    """Feed ``data`` to its parser directly and through parse_bytes; only ParseError may escape."""
    fmt = parsers.registry.get_format(fmt_name)
    try:
        table = fmt.parser.parse(data, "fuzz.txt", RUN_ID)
    except ParseError:
        pass
    else:
        check_table(table)
    try:
        table = parsers.parse_bytes(data, "fuzz.txt", format=fmt_name if force else None)
    except ParseError:
        pass
    else:
        check_table(table)


MUTANT = st.tuples(st.lists(OPERATION, min_size=1, max_size=3), st.one_of(st.none(), st.floats(0, 1)))


def _fuzz(path: Path, mutant: tuple) -> None:
    data, fmt_name = _original(path)
    ops, inner = mutant
    run_both(fmt_name, mutate(data, ops, inner))


def _examples(path: Path, base: int) -> int:
    """Fewer examples for files that are slow to parse (xlsx through openpyxl)."""
    return max(5, base // 4) if path.suffix.lower() == ".xlsx" else base


@shared.requires_shared
def test_corpus_covers_every_real_family():
    """The fuzz corpus holds the real fixtures, one family per fixture folder at least."""
    assert len(CORPUS) >= 13
    covered = {_original(p)[1] for p in CORPUS}
    assert set(REAL_FAMILY.values()) <= covered


def test_every_format_has_a_project_data_file():
    """Each registered format keeps at least one tests/data file named after it, so a clone alone tests every parser."""
    named = {_data_family(p.name) for p in DATA.iterdir() if p.is_file()}
    assert [f.name for f in parsers.formats() if f.name not in named] == []


def _uncovered() -> list[str]:
    covered = {_original(p)[1] for p in CORPUS}
    return [f.name for f in parsers.formats() if f.name not in covered]


@pytest.mark.parametrize("fmt_name", _uncovered() or [pytest.param(None, marks=pytest.mark.skip("all covered"))])
def test_formats_without_own_file_only_raise_parse_error(fmt_name):
    """A format no corpus file is detected as (e.g. one chosen only by --format) still gets mutated corpus files."""

    @settings(max_examples=40, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.sampled_from(CORPUS), MUTANT)
    def fuzz(path, mutant):
        data, _ = _original(path)
        ops, inner = mutant
        run_both(fmt_name, mutate(data, ops, inner), force=True)

    fuzz()


@pytest.mark.parametrize("path", _params(CORPUS))
def test_fuzzed_files_only_raise_parse_error(path):
    """Mutated copies of each corpus file give a canonical table or a ParseError, nothing else."""

    @settings(max_examples=_examples(path, 36), deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(MUTANT)
    def fuzz(mutant):
        _fuzz(path, mutant)

    fuzz()


@pytest.mark.slow
@pytest.mark.parametrize("path", _params(CORPUS))
def test_fuzzed_files_only_raise_parse_error_heavy(path):
    """The same contract over many more, freshly random mutations per file."""

    @settings(max_examples=_examples(path, 200), deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(MUTANT)
    def fuzz(mutant):
        _fuzz(path, mutant)

    fuzz()


@pytest.mark.parametrize("path", _params(CORPUS))
def test_unmutated_corpus_parses(path):
    """Every corpus file parses cleanly as-is, through detection, into a valid non-empty table."""
    data, _ = _original(path)
    table = parsers.parse_bytes(data, path.name)
    check_table(table)
    assert table.num_rows > 0


@pytest.mark.parametrize("path", _params(CORPUS))
def test_every_parser_refuses_other_formats_cleanly(path):
    """Each registered parser, handed another family's file, returns a valid table or raises ParseError."""
    data, own = _original(path)
    for fmt in parsers.formats():
        if fmt.name == own:
            continue
        try:
            table = fmt.parser.parse(data, path.name, RUN_ID)
        except ParseError:
            continue
        check_table(table)


@pytest.mark.parametrize("path", [pytest.param(p, id=_id(p)) for p in CORPUS])
def test_sniffing_is_stable(path):
    """A file is detected as its own family whatever its name, and no other sniffer outranks it."""
    data, detected = _original(path)
    expected = EXPECTED_FAMILY[path]
    if expected is not None:
        assert detected == expected

    @settings(max_examples=15, deadline=None, derandomize=True, database=None)
    @given(stem=st.text(min_size=0, max_size=20), ext=st.sampled_from(
        ["", ".txt", ".csv", ".xml", ".rdml", ".hl7", ".log", ".xls", ".xlsx", ".dat", ".TXT", ".astm", ".zip"]))
    def renamed(stem, ext):
        assert parsers.detect(data, stem.replace("/", "_") + ext).name == detected

    renamed()


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(head=st.one_of(
    st.binary(max_size=512),
    st.text(max_size=300).map(lambda t: t.encode("utf-8")),
    st.tuples(st.sampled_from(CORPUS), MUTANT).map(lambda pm: mutate(_original(pm[0])[0], *pm[1])[:4096]),
), name=st.sampled_from(["", "x.txt", "x.csv", "x.rdml", "x.xlsx", "x.hl7"]))
def test_sniffers_never_raise_and_stay_in_range(head, name):
    """Every sniffer returns a confidence in [0, 1] for any bytes, without raising."""
    for fmt in parsers.formats():
        score = fmt.parser.sniff(head, name)
        assert 0.0 <= float(score) <= 1.0, (fmt.name, score)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.one_of(st.binary(max_size=2048), st.text(max_size=600).map(lambda t: t.encode("utf-8"))))
def test_every_parser_survives_arbitrary_bytes(data):
    """Arbitrary bytes or text handed to any parser directly give a valid table or a ParseError."""
    for fmt in parsers.formats():
        try:
            table = fmt.parser.parse(data, "random.bin", RUN_ID)
        except ParseError:
            continue
        check_table(table)
