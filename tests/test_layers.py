"""The layers hold: ``parsers/`` and ``signing/`` import nothing from the engine, no import cycle among them,
and no project module imported inside one of their functions without a ``# lazy:`` reason on the line.

Read statically with ``ast`` so every import counts: module level, inside a
function, under ``if TYPE_CHECKING``. A function-level import hides a cycle from
the interpreter but not from a reader, so it counts here too.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The packages that must stand without the engine (usable and testable on their own).
LOWER = ("parsers", "signing")
#: What they may never import.
FORBIDDEN = ("engine", "bench", "tests")
#: The project's own top-level packages: an import of one inside a function needs a ``# lazy:`` reason.
PROJECT = ("engine", "parsers", "signing", "bench", "tests")
#: The reason a function-level import gives on its own line (a word at least after the colon).
LAZY = re.compile(r"#\s*lazy:\s*\S")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for package in LOWER for path in sorted((ROOT / package).rglob("*.py"))}


def _imports(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every module ``path`` imports (absolute names), with the line, wherever the statement stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module, node.lineno
            # ``from signing import keys`` imports the submodule signing.keys.
            for alias in node.names:
                yield f"{module}.{alias.name}", node.lineno


def _unexplained_function_imports(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """Imports of project modules inside a function of ``path`` whose first line carries no ``# lazy:`` reason."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for function in ast.walk(ast.parse(source, str(path))):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    targets = [".".join(base[: len(base) - (node.level - 1)] + ([node.module] if node.module else []))]
                else:
                    targets = [node.module or ""]
            else:
                continue
            project = [t for t in targets if t.split(".")[0] in PROJECT]
            if project and not LAZY.search(lines[node.lineno - 1]):
                yield project[0], node.lineno


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for target, _ in _imports(name, path):
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_parsers_and_signing_import_nothing_from_the_engine() -> None:
    """No module under parsers/ or signing/ imports engine, bench or tests, not even inside a function."""
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: imports {target}"
        for name, path in _modules().items()
        for target, line in _imports(name, path)
        if target.split(".")[0] in FORBIDDEN
    ]
    assert not offenders, "parsers/ and signing/ must not depend on the engine:\n  " + "\n  ".join(offenders)


def test_no_import_cycle_among_parsers_and_signing() -> None:
    """The import graph of parsers/ and signing/ (function-level and TYPE_CHECKING imports included) has no cycle."""
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_unexplained_import_inside_a_function() -> None:
    """Every import of a project module inside a function of parsers/ or signing/ says on its line why it is lazy."""
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: imports {target} inside a function"
        for name, path in _modules().items()
        for target, line in _unexplained_function_imports(name, path)
    ]
    assert not offenders, (
        "move these imports to module level (break a cycle by moving the shared piece into the lower module), "
        "or give a one-line '# lazy: <reason>' on the import line:\n  " + "\n  ".join(offenders)
    )


def test_function_import_checker_reads_the_source_line(tmp_path: Path) -> None:
    """The checker flags an unexplained project import in a function (absolute or relative), and nothing else."""
    path = tmp_path / "mod.py"
    path.write_text(
        "import json\n"
        "from signing.errors import SigningError\n"
        "def f():\n"
        "    import zlib\n"
        "    from signing.keys import Signer\n"
        "    from . import cose\n"
        "    from signing.pades import PadesSigner  # lazy: a reason\n"
        "    from parsers.text import decode  # lazy:\n"
        "class C:\n"
        "    async def g(self):\n"
        "        import parsers.registry\n"
    )
    assert list(_unexplained_function_imports("signing.mod", path)) == [
        ("signing.keys", 5), ("signing", 6), ("parsers.text", 8), ("parsers.registry", 11),
    ]


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"b"}, "b": {"b2"}, "b2": {"b"}}, ["b", "b2", "b"]),
    ],
)
def test_cycle_finder_reports_the_cycle(graph: dict[str, set[str]], expected: list[str] | None) -> None:
    """The checker itself finds a cycle and names its modules in order (so a failure says what to break)."""
    assert _cycle(graph) == expected


def test_imports_inside_functions_are_seen(tmp_path: Path) -> None:
    """An import inside a function body or under TYPE_CHECKING is reported like a module-level one."""
    path = tmp_path / "mod.py"
    path.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import engine.model\ndef f():\n    from engine.errors import ParseError\n")
    assert {t for t, _ in _imports("signing.mod", path)} >= {"engine.model", "engine.errors", "engine.errors.ParseError"}
