"""The errors a parser raises, owned here so parsers never import the engine.

    ParseError                  an input file (analyzer export, manifest, profile, design) is malformed
    └── TruncatedError          an input file ends before its format says it should (cut short, still arriving)

A ``ParseError``'s text is what a lab technician reads in a quarantine report:
it names the file, the line and the field, and says what was expected. The
engine maps this tree into its own (``engine.errors`` re-exports both names and
derives ``ManifestError`` from ``ParseError``); neither is a ``KetquaError``,
so the engine catches them through ``engine.errors.USER_ERRORS``.
"""

from __future__ import annotations


class ParseError(Exception):
    """An input file cannot be read; says where (file, line, field) and what was expected."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        field: str | None = None,
        expected: str | None = None,
    ) -> None:
        self.reason = message
        self.source = source
        self.line = line
        self.field = field
        self.expected = expected
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.source:
            where.append(self.source)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.field:
            where.append(f"field '{self.field}'")
        text = ", ".join(where)
        text = f"{text}: {self.reason}" if text else self.reason
        if self.expected:
            text += f" (expected {self.expected})"
        return text

    def with_source(self, source: str) -> "ParseError":
        """Return the same error naming ``source`` when the raiser did not know the file name."""
        if self.source:
            return self
        return type(self)(self.reason, source=source, line=self.line, field=self.field, expected=self.expected)


class TruncatedError(ParseError):
    """A file ends before its format says it should: still being written, or cut short in transit.

    Intake leaves such a file waiting in the inbox; once it has stayed unchanged
    past ``[intake] incomplete_seconds`` it is quarantined as "appears truncated".
    Nothing is ever signed from it.
    """
