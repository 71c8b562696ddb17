"""Signing: X.509 keys (file or PKCS#11), JWS, COSE/HC1, PAdES, and an offline verifier."""
