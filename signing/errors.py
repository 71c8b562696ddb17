"""The errors of signing and verifying, owned here so ``signing/`` never imports the engine.

    SigningError                a key, certificate, token or time-stamp authority cannot sign
    └── SignerConfigError       the signer's settings name something missing or wrong
                                (no key path, an unset passphrase variable, an unreadable
                                certificate file, no such token or key label)
    VerificationError           a signature, chain or signed payload does not verify (carries ``reason``)

A failed verification is not a failure to sign, so ``VerificationError`` is not
a ``SigningError``: catch the one you mean (both where either may come). The
engine maps this tree into its own: ``engine.errors`` re-exports these names,
and since none is a ``KetquaError`` the engine reports them through
``engine.errors.USER_ERRORS``.
"""

from __future__ import annotations


class SigningError(Exception):
    """A key, certificate, token or passphrase cannot be used to sign."""


class SignerConfigError(SigningError):
    """The ``[signing]`` settings (or what they name: key file, secret source, token) are missing or wrong."""


class VerificationError(Exception):
    """A signature, certificate chain or signed payload failed verification.

    ``reason`` is a short machine-friendly code (``bad-signature``, ``expired``,
    ``untrusted-chain``, ``bad-prefix``, ``unknown-kid``, ...); the message is for people.
    """

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        self.reason = reason
        super().__init__(message)
