"""Console passwords: Argon2id (RFC 9106), stored as PHC strings that carry their own parameters.

Why argon2-cffi rather than :func:`hashlib.scrypt`: Argon2id is what RFC 9106
and OWASP recommend first, argon2-cffi is the maintained binding of the
reference C code, and its PHC strings (``$argon2id$v=19$m=…,t=…,p=…$salt$hash``)
let parameters be raised later without a schema change (``needs_rehash``).
Default: RFC 9106's second recommended option (t=3, 64 MiB, p=4), about 0.1 s
on a low-end PC; a stolen ledger then costs an attacker 64 MiB per guess.
"""

from __future__ import annotations

import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.profiles import RFC_9106_LOW_MEMORY

from engine.errors import KetquaError

MIN_LENGTH = 10
MAX_LENGTH = 1024  # beyond any passphrase; a megabyte "password" is a denial-of-service attempt

DEFAULT_HASHER = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)


class PasswordError(KetquaError):
    """A password that cannot be accepted (too short, too long)."""


def check_new_password(password: str) -> None:
    """Refuse passwords too short to resist guessing, with what to do."""
    if len(password) < MIN_LENGTH:
        raise PasswordError(f"the password must have at least {MIN_LENGTH} characters (a few words are easiest to remember)")
    if len(password) > MAX_LENGTH:
        raise PasswordError(f"the password must have at most {MAX_LENGTH} characters")


def hash_password(password: str, hasher: PasswordHasher = DEFAULT_HASHER) -> str:
    """The PHC string to store for ``password``."""
    check_new_password(password)
    return hasher.hash(password)


def verify_password(stored: str, password: str, hasher: PasswordHasher = DEFAULT_HASHER) -> bool:
    """True when ``password`` matches the stored hash (constant time inside Argon2); never raises for a mismatch."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@functools.lru_cache(maxsize=8)
def _decoy(hasher: PasswordHasher) -> str:
    return hasher.hash("not a password of anyone: timing decoy")


def burn_time(password: str, hasher: PasswordHasher = DEFAULT_HASHER) -> None:
    """Spend a verification's time on a decoy, so an unknown user name is not revealed by a faster answer."""
    verify_password(_decoy(hasher), password, hasher)
