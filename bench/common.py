"""Fixtures several stages share: the development PKI and a signer opened from it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.runner import Context


@dataclass(frozen=True)
class Keys:
    """The development PKI of the bench's scratch data folder, and the raw key for baselines."""

    data_dir: Path
    ca_cert: Path
    signer_cert: Path
    signer_key: Path
    spec: Any  # signing.keys.SignerSpec
    signer: Any  # signing.keys.Signer
    private_key: Any  # cryptography EC private key, for the raw-ECDSA baselines


def keys(ctx: Context) -> Keys:
    """Create (once per run) a development PKI through ketqua's own signing.pki and open its signer."""

    def make() -> Keys:
        from cryptography.hazmat.primitives import serialization

        from engine.datadir import DataDir
        from engine.results.signer import load_signer_spec
        from signing.pki import ensure_development_pki

        data = DataDir.at(ctx.scratch / "data").create()
        pki = ensure_development_pki(data.keys)
        spec = load_signer_spec(data)
        private_key = serialization.load_pem_private_key(pki.signer_key.read_bytes(), password=None)
        return Keys(data.root, pki.ca_cert, pki.signer_cert, pki.signer_key, spec, spec.open(), private_key)

    return ctx.cached("keys", make)


def raw_ecdsa() -> Any:
    """The ECDSA algorithm object for the raw-signature baselines: RFC 6979 deterministic nonces,
    as ketqua's file-key signer uses, so both sides do the same arithmetic."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        return ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
    except TypeError:  # cryptography < 43 has no deterministic nonces
        return ec.ECDSA(hashes.SHA256())
