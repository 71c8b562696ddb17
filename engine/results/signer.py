"""The engine's side of signing: read ``[signing]`` from ``<data>/ketqua.toml`` and lay keys in the data folder.

``signing/`` knows nothing of ketqua's configuration file or data folder; it
builds a :class:`~signing.keys.SignerSpec` or a time-stamper from a plain table
and plain paths. This module supplies them, and maps a configuration mistake
found in the table (``SignerConfigError``) to the engine's ``ConfigError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.config import read_config_file
from engine.datadir import DataDir
from engine.errors import ConfigError
from signing.errors import PinRefused, SignerConfigError
from signing.keys import SignerSpec, signer_spec_from_table, timestamper_from_config

if TYPE_CHECKING:
    from signing.pades import TimeStamperLike


def _signing_section(data: DataDir) -> tuple[dict[str, Any] | None, str]:
    """The ``[signing]`` table (None when absent) and the file's name for messages; the whole file is checked first."""
    config, source = read_config_file(data)
    return (config or {}).get("signing"), source


def load_signer_spec(data: DataDir) -> SignerSpec:
    """The configured signer (``[signing]`` in ``<data>/ketqua.toml``), else the development PKI of ``<data>/keys``.

    The development PKI is created on first use, so a fresh data folder can sign
    (every artefact then says DEVELOPMENT).
    """
    section, source = _signing_section(data)
    try:
        return signer_spec_from_table(section, data.root, data.keys, source=source)
    except SignerConfigError as exc:
        raise ConfigError(str(exc)) from exc


def load_timestamper(data: DataDir) -> "TimeStamperLike | None":
    """The time-stamper for PAdES B-T from ``[signing] tsa_url``/``tsa``; None (B-B) when neither is set.

    The object is picklable, so certificate worker processes receive it as is.
    """
    section, source = _signing_section(data)
    try:
        return timestamper_from_config(section or {}, data.keys, source=source)
    except SignerConfigError as exc:
        raise ConfigError(str(exc)) from exc


# One opened signer per spec and process: a key file is read once, a token gets one session.
_signers: dict[SignerSpec, Any] = {}


#: Specs whose PIN a token refused in this process (or its parent, before the fork): never tried again.
_refused: dict[SignerSpec, PinRefused] = {}


def production_signer(section: dict[str, Any] | None) -> bool:
    """True when a ``[signing]`` table names a key or token (not only a time-stamping authority)."""
    return bool(section) and bool(set(section) - {"tsa", "tsa_url"})  # type: ignore[arg-type]


def open_signer(spec: SignerSpec) -> Any:
    """The process's opened signer for ``spec`` (worker processes each open their own).

    A refused PIN is remembered and raised again without a second login: every
    attempt counts against the token's retry limit.
    """
    if spec in _refused:
        raise _refused[spec]
    signer = _signers.get(spec)
    if signer is None:
        try:
            signer = _signers[spec] = spec.open()
        except PinRefused as exc:
            _refused[spec] = exc
            raise
    return signer


def check_signer(spec: SignerSpec, *, lab_configured: bool = True) -> None:
    """Open the signer once before any work (``ketqua run``/``demo``/``ingest``), so a wrong PIN, passphrase or
    key path stops the command at start with one message instead of failing every plate later.

    The signer is closed again, not cached: worker processes forked later open their own session.
    """
    if spec in _refused:
        raise _refused[spec]
    try:
        signer = spec.open()
    except PinRefused as exc:
        _refused[spec] = exc
        raise
    try:
        if not signer.development and not lab_configured:
            raise ConfigError(
                f"the signer {signer.certificate.subject.rfc4514_string()} is a production key but ketqua.toml has no [lab]"
                " section, so production results would say DEVELOPMENT (lab 'VN-DEV-LAB'); add [lab] id, name and licence"
                " (docs/operations.md)"
            )
    finally:
        close = getattr(signer, "close", None)
        if close is not None:
            close()
