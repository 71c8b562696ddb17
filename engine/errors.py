"""The exception tree of ketqua, in one place.

    KetquaError                 anything the engine refuses, with a message a person can act on
    ├── ConfigError             data folder, configuration file, missing optional dependency
    ├── AssayError              an assay profile is invalid or cannot be applied to a run
    │   └── RunControlError     a run's controls failed (NTC amplified, positive control did not)
    ├── DesignError             a pool design is malformed or does not fit the plate
    ├── DecodeError             pool results cannot be decoded against the design
    ├── LedgerError             the ledger cannot be opened, migrated or written
    ├── IntakeError             a file in the inbox cannot be taken safely
    └── ApiError                the pull API or its client failed

    ParseError                  (parsers.errors) an input file is malformed: names file, line, field
    ├── TruncatedError          (parsers.errors) an input file ends before its format says it should
    └── ManifestError           a pool manifest is malformed or inconsistent (the engine's own parse error)

    SigningError                (signing.errors) a key, certificate, token or TSA cannot sign
    └── SignerConfigError       (signing.errors) the signer's settings name something missing or wrong
    VerificationError           (signing.errors) a signature, chain or payload does not verify (``reason``)

``parsers/`` and ``signing/`` own their errors so they never import the engine;
this module re-exports them, and they are *not* ``KetquaError`` subclasses.
Whoever reports a user's mistake catches :data:`USER_ERRORS`, never
``KetquaError`` alone. A failed verification is not a failure to sign:
``VerificationError`` is not a ``SigningError``.

Lower-level errors are translated into the most specific type here with
``raise ... from exc`` so callers catch one tree. A ``ParseError``'s text is
what a lab technician reads in a quarantine report: it names the file, the line
and the field, and says what was expected.
"""

from __future__ import annotations

from parsers.errors import ParseError, TruncatedError
from signing.errors import SignerConfigError, SigningError, VerificationError

__all__ = [
    "USER_ERRORS",
    "ApiError",
    "AssayError",
    "ConfigError",
    "DecodeError",
    "DesignError",
    "IntakeError",
    "KetquaError",
    "LedgerError",
    "ManifestError",
    "ParseError",
    "RunControlError",
    "SignerConfigError",
    "SigningError",
    "TruncatedError",
    "VerificationError",
]


class KetquaError(Exception):
    """Base class of every error ketqua raises on purpose."""


class ConfigError(KetquaError):
    """The data folder, a configuration value or an optional dependency is missing or wrong."""


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


class LedgerError(KetquaError):
    """The ledger cannot be opened, migrated or written."""


class IntakeError(KetquaError):
    """A file in the inbox cannot be taken safely (symlink, outside the inbox, unreadable)."""


class ApiError(KetquaError):
    """The pull API server or its reference client failed."""


#: Everything that is a person's mistake to fix rather than a bug: what the CLI, the API and the
#: pipeline report as a message instead of a traceback. The parsers' and signing's trees are
#: separate from ``KetquaError``, so they are named here once.
USER_ERRORS: tuple[type[Exception], ...] = (KetquaError, ParseError, SigningError, VerificationError)
