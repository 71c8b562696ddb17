"""The exception tree of ketqua, in one place.

    KetquaError                 anything ketqua refuses, with a message a person can act on
    ├── ConfigError             data folder, configuration file, missing optional dependency
    ├── ParseError              an input file (analyzer export, manifest, profile, design) is malformed
    │   ├── TruncatedError      an input file ends before its format says it should (cut short, still arriving)
    │   └── ManifestError       a pool manifest is malformed or inconsistent
    ├── AssayError              an assay profile is invalid or cannot be applied to a run
    │   └── RunControlError     a run's controls failed (NTC amplified, positive control did not)
    ├── DesignError             a pool design is malformed or does not fit the plate
    ├── DecodeError             pool results cannot be decoded against the design
    ├── SigningError            a key, certificate or token cannot sign
    │   └── VerificationError   a signature, chain or payload does not verify (carries the reason)
    ├── LedgerError             the ledger cannot be opened, migrated or written
    ├── IntakeError             a file in the inbox cannot be taken safely
    └── ApiError                the pull API or its client failed

Lower-level errors are translated into the most specific type here with
``raise ... from exc`` so callers catch one tree. A ``ParseError``'s text is
what a lab technician reads in a quarantine report: it names the file, the line
and the field, and says what was expected.
"""

from __future__ import annotations


class KetquaError(Exception):
    """Base class of every error ketqua raises on purpose."""


class ConfigError(KetquaError):
    """The data folder, a configuration value or an optional dependency is missing or wrong."""


class ParseError(KetquaError):
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


class ManifestError(ParseError):
    """A pool manifest row is malformed, or the manifest contradicts itself."""


class AssayError(KetquaError):
    """An assay profile is invalid, or a run does not carry the targets the profile needs."""


class RunControlError(AssayError):
    """A run's controls failed; nothing from that run may be signed."""


class DesignError(KetquaError):
    """A pool design is malformed, inconsistent, or does not match the plate."""


class DecodeError(KetquaError):
    """Pool outcomes cannot be decoded against the design (shape or identity mismatch)."""


class SigningError(KetquaError):
    """A key, certificate, token or passphrase cannot be used to sign."""


class VerificationError(SigningError):
    """A signature, certificate chain or signed payload failed verification.

    ``reason`` is a short machine-friendly code (``bad-signature``, ``expired``,
    ``untrusted-chain``, ``bad-prefix``, ``unknown-kid``, ...); the message is for people.
    """

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        self.reason = reason
        super().__init__(message)


class LedgerError(KetquaError):
    """The ledger cannot be opened, migrated or written."""


class IntakeError(KetquaError):
    """A file in the inbox cannot be taken safely (symlink, outside the inbox, unreadable)."""


class ApiError(KetquaError):
    """The pull API server or its reference client failed."""
