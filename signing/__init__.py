"""Signing: X.509 keys (file or PKCS#11), JWS, COSE/HC1, PAdES, and an offline verifier."""

import warnings

from cryptography.utils import CryptographyDeprecationWarning

# pyHanko imports cryptography's DSA key classes to recognise DSA signatures; cryptography
# warns about DSA at that import, so every `ketqua verify` printed a warning about an
# algorithm ketqua never uses. Only that warning, only when raised from pyHanko's own
# modules: the same warning from anywhere else, and every other warning, still shows.
warnings.filterwarnings(
    "ignore", message="DSA is deprecated", category=CryptographyDeprecationWarning, module=r"pyhanko(\.|$)"
)
