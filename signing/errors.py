"""The errors of signing and verifying, owned here so ``signing/`` never imports the engine.

    SigningError                a key, certificate, token or time-stamp authority cannot sign
    ├── SignerConfigError       the signer's settings name something missing or wrong
    │                           (no key path, an unset passphrase variable, an unreadable
    │                           certificate file, no such token or key label)
    └── PinRefused              the token refused the PIN (incorrect, locked, wrong length):
                                fatal, never retried, lest the token lock
    VerificationError           a signature, chain or signed payload does not verify (carries ``reason``)
    ├── NoteError               a signed note or checkpoint is malformed (``bad-note``, ``bad-checkpoint``)
    ├── NoteSignatureError      no trusted key signed the note, or a trusted key's signature fails
    │                           (``untrusted-note``, ``bad-signature``)
    ├── ProofError              a Merkle inclusion or consistency proof does not verify (``bad-proof``)
    └── ForkDetected            two signed checkpoints of one log cannot both be true (``fork``)
    LogError                    the transparency log cannot answer: a size or index beyond the log,
                                or a stored subtree hash missing (``out-of-range``, ``missing-node``)

A failed verification is not a failure to sign, so ``VerificationError`` is not
a ``SigningError``: catch the one you mean (both where either may come). The
engine maps this tree into its own: ``engine.errors`` re-exports these names,
and since none is a ``KetquaError`` the engine reports them through
``engine.errors.USER_ERRORS``. ``LogError`` is neither tree: whoever serves proofs
maps ``out-of-range`` to a bad request and ``missing-node`` to a server fault.
"""

from __future__ import annotations


class SigningError(Exception):
    """A key, certificate, token or passphrase cannot be used to sign."""


class SignerConfigError(SigningError):
    """The ``[signing]`` settings (or what they name: key file, secret source, token) are missing or wrong."""


class PinRefused(SigningError):
    """The token refused the configured PIN (CKR_PIN_INCORRECT, CKR_PIN_LOCKED, CKR_PIN_LEN_RANGE, ...).

    Fatal for signing: every further attempt with the same PIN counts against the
    token's retry limit, and USB tokens lock after a few. Nobody may retry it
    automatically; an operator fixes the PIN source and restarts.
    """


class VerificationError(Exception):
    """A signature, certificate chain or signed payload failed verification.

    ``reason`` is a short machine-friendly code (``bad-signature``, ``expired``,
    ``untrusted-chain``, ``bad-prefix``, ``unknown-kid``, ...); the message is for people.
    """

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        self.reason = reason
        super().__init__(message)


class NoteError(VerificationError):
    """A signed note (c2sp.org/signed-note) or checkpoint (c2sp.org/tlog-checkpoint) is not well-formed."""

    def __init__(self, message: str, *, reason: str = "bad-note") -> None:
        super().__init__(message, reason=reason)


class NoteSignatureError(VerificationError):
    """No signature of a trusted key verifies on a note, or one of a trusted key fails."""

    def __init__(self, message: str, *, reason: str = "bad-signature") -> None:
        super().__init__(message, reason=reason)


class ProofError(VerificationError):
    """A Merkle inclusion or consistency proof (RFC 9162 §2.1) does not verify."""

    def __init__(self, message: str, *, reason: str = "bad-proof") -> None:
        super().__init__(message, reason=reason)


class ForkDetected(VerificationError):
    """Two checkpoints signed for one log cannot both be true: the log was rewritten, or shows two histories.

    Keep both signed checkpoints: together they are the evidence.
    """

    def __init__(self, message: str, *, reason: str = "fork") -> None:
        super().__init__(message, reason=reason)


class LogError(Exception):
    """The transparency log cannot answer a request: a tree size or leaf index beyond the log, or a lost node.

    Not a verification failure (nothing was proven false) and not a signing
    failure: the request asks for what the log does not hold (``out-of-range``,
    an API 400/404), or the store lost a subtree hash (``missing-node``, a 500).
    """

    def __init__(self, message: str, *, reason: str = "out-of-range") -> None:
        self.reason = reason
        super().__init__(message)
