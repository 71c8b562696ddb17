"""Development PKI, key-file signers (encrypted PKCS#8, PKCS#12) and signer configuration."""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from engine.datadir import DataDir
from engine.errors import ConfigError
from signing.errors import SignerConfigError, SigningError
from engine.results.signer import load_signer_spec
from signing.keys import FileKeySigner, Signer, SignerSpec, certificate_kid
from signing.pki import ensure_development_pki, issue_leaf

PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="module")
def dev_pki(tmp_path_factory: pytest.TempPathFactory):
    """One development PKI shared by the tests of this module."""
    return ensure_development_pki(tmp_path_factory.mktemp("pki") / "keys")


def _ca(dev_pki):
    cert = x509.load_pem_x509_certificate(dev_pki.ca_cert.read_bytes())
    key = serialization.load_pem_private_key(dev_pki.ca_key.read_bytes(), password=None)
    return cert, key


def test_development_pki_files_modes_and_marks(dev_pki) -> None:
    """keys init writes CA, signer and TSA files, private (0600), every subject marked DEVELOPMENT."""
    for name in ("ca.pem", "ca.key", "signer.pem", "signer.key", "tsa.pem", "tsa.key"):
        path = dev_pki.keys_dir / name
        assert path.exists(), name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
    for name in ("ca.pem", "signer.pem", "tsa.pem"):
        cert = x509.load_pem_x509_certificate((dev_pki.keys_dir / name).read_bytes())
        assert "DEVELOPMENT" in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        assert "DEVELOPMENT" in cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)[0].value


def test_development_signer_certificate_profile(dev_pki) -> None:
    """The signer is ECDSA P-256, not a CA, with key usage digitalSignature + nonRepudiation, issued by the CA."""
    ca = x509.load_pem_x509_certificate(dev_pki.ca_cert.read_bytes())
    cert = x509.load_pem_x509_certificate(dev_pki.signer_cert.read_bytes())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment and not usage.key_cert_sign
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    cert.verify_directly_issued_by(ca)
    tsa = x509.load_pem_x509_certificate(dev_pki.tsa_cert.read_bytes())
    eku = tsa.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [x509.ExtendedKeyUsageOID.TIME_STAMPING]


def test_ensure_development_pki_is_idempotent(tmp_path: Path) -> None:
    """A second call keeps every file byte for byte and reports nothing created."""
    first = ensure_development_pki(tmp_path / "keys")
    before = {p.name: p.read_bytes() for p in first.keys_dir.iterdir()}
    second = ensure_development_pki(tmp_path / "keys")
    assert first.created and not second.created
    assert {p.name: p.read_bytes() for p in second.keys_dir.iterdir()} == before


def test_missing_leaf_is_reissued_from_the_existing_ca(tmp_path: Path) -> None:
    """Deleting signer.pem re-issues the signer from the same CA; the CA is not replaced."""
    pki = ensure_development_pki(tmp_path / "keys")
    ca_before = pki.ca_cert.read_bytes()
    pki.signer_cert.unlink()
    again = ensure_development_pki(tmp_path / "keys")
    assert again.created and again.ca_cert.read_bytes() == ca_before
    x509.load_pem_x509_certificate(again.signer_cert.read_bytes()).verify_directly_issued_by(
        x509.load_pem_x509_certificate(ca_before)
    )


def test_load_signer_spec_defaults_to_development_pki(tmp_path: Path) -> None:
    """Without [signing] in ketqua.toml, the spec opens the development signer, which satisfies the protocol."""
    data = DataDir.at(tmp_path)
    spec = load_signer_spec(data)
    signer = spec.open()
    assert isinstance(signer, Signer)
    assert signer.development and signer.algorithm == "ES256"
    assert signer.kid == certificate_kid(signer.certificate) and len(signer.kid) == 8
    assert [c.subject for c in signer.chain] == [x509.load_pem_x509_certificate((data.keys / "ca.pem").read_bytes()).subject]
    assert pickle.loads(pickle.dumps(spec)) == spec


def test_signature_is_der_over_sha256(tmp_path: Path) -> None:
    """Signer.sign returns a DER ECDSA signature over SHA-256 of the data, verifiable with the certificate."""
    signer = load_signer_spec(DataDir.at(tmp_path)).open()
    signature = signer.sign(b"ketqua")
    signer.certificate.public_key().verify(signature, b"ketqua", ec.ECDSA(hashes.SHA256()))


def _issue_file_key(dev_pki, tmp_path: Path):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = issue_leaf(*_ca(dev_pki), key.public_key(), common_name="ketqua test production-like signer")
    return key, cert


def test_encrypted_pkcs8_with_passphrase_from_environment(dev_pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An encrypted PKCS#8 key opens with the passphrase from the named environment variable."""
    key, cert = _issue_file_key(dev_pki, tmp_path)
    key_path = tmp_path / "signer.p8"
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSPHRASE.encode()),
    ))
    cert_path = tmp_path / "signer.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "ketqua.toml").write_text(
        f'[signing]\nkind = "file"\nkey = "signer.p8"\ncertificate = "signer.pem"\n'
        f'chain = ["{dev_pki.ca_cert}"]\npassphrase_env = "KETQUA_TEST_PASSPHRASE"\n'
    )
    monkeypatch.setenv("KETQUA_TEST_PASSPHRASE", PASSPHRASE)
    spec = load_signer_spec(DataDir.at(tmp_path))
    assert PASSPHRASE.encode() not in pickle.dumps(spec) and PASSPHRASE not in repr(spec)
    signer = spec.open()
    assert signer.certificate == cert and len(signer.chain) == 1
    monkeypatch.setenv("KETQUA_TEST_PASSPHRASE", "zebra-77-quux")
    with pytest.raises(SigningError) as info:
        spec.open()
    assert "zebra-77-quux" not in str(info.value) and "signer.p8" in str(info.value)
    monkeypatch.delenv("KETQUA_TEST_PASSPHRASE")
    with pytest.raises(SignerConfigError, match="KETQUA_TEST_PASSPHRASE"):
        spec.open()


def test_pkcs12_with_passphrase_file(dev_pki, tmp_path: Path) -> None:
    """A PKCS#12 bundle (key, certificate, CA) opens with a passphrase read from a file."""
    key, cert = _issue_file_key(dev_pki, tmp_path)
    ca, _ = _ca(dev_pki)
    bundle = pkcs12.serialize_key_and_certificates(
        b"signer", key, cert, [ca], serialization.BestAvailableEncryption(PASSPHRASE.encode())
    )
    (tmp_path / "signer.p12").write_bytes(bundle)
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    spec = SignerSpec(kind="file", key=str(tmp_path / "signer.p12"), passphrase_file=str(secret))
    signer = spec.open()
    assert signer.certificate == cert and signer.chain == (ca,)
    assert not signer.development or "DEVELOPMENT" in cert.issuer.rfc4514_string()


def test_rsa_key_signs_ps256(dev_pki, tmp_path: Path) -> None:
    """An RSA-2048 key gives a PS256 signer whose signatures are RSASSA-PSS over SHA-256 (salt 32)."""
    from cryptography.hazmat.primitives.asymmetric import padding

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_cert, ca_key = _ca(dev_pki)
    now = ca_cert.not_valid_before_utc
    cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "rsa signer")]))
        .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(7)
        .not_valid_before(now).not_valid_after(ca_cert.not_valid_after_utc).sign(ca_key, hashes.SHA256())
    )
    signer = FileKeySigner(key, cert)
    assert signer.algorithm == "PS256"
    signature = signer.sign(b"data")
    cert.public_key().verify(
        signature, b"data", padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256()
    )


def test_key_and_certificate_mismatch_is_refused(dev_pki, tmp_path: Path) -> None:
    """A key file configured with someone else's certificate is refused before anything is signed."""
    _, cert = _issue_file_key(dev_pki, tmp_path)
    with pytest.raises(SigningError, match="does not belong"):
        FileKeySigner(ec.generate_private_key(ec.SECP256R1()), cert)


def test_passphrase_in_configuration_is_refused(tmp_path: Path) -> None:
    """A passphrase written into ketqua.toml is rejected with advice to use an environment variable or file."""
    (tmp_path / "ketqua.toml").write_text('[signing]\nkey = "k.p8"\npassphrase = "secret"\n')
    with pytest.raises(ConfigError, match="passphrase_env"):
        load_signer_spec(DataDir.at(tmp_path))


def test_pkcs11_configuration_requires_token_and_label(tmp_path: Path) -> None:
    """[signing] kind = 'pkcs11' without module/token/key_label is a configuration error."""
    (tmp_path / "ketqua.toml").write_text('[signing]\nkind = "pkcs11"\nmodule = "/x.so"\n')
    with pytest.raises(ConfigError, match="key_label"):
        load_signer_spec(DataDir.at(tmp_path))


def test_keys_folder_is_private(tmp_path: Path) -> None:
    """The keys folder is created owner-only (0700)."""
    pki = ensure_development_pki(tmp_path / "keys")
    assert stat.S_IMODE(os.stat(pki.keys_dir).st_mode) == 0o700


def test_file_key_ecdsa_signatures_are_deterministic(tmp_path) -> None:
    """ES256 signing uses RFC 6979 nonces, so re-signing the same bytes after a crash gives identical signatures."""
    from engine.datadir import DataDir

    signer = load_signer_spec(DataDir.at(tmp_path).create()).open()
    assert signer.algorithm == "ES256"
    assert signer.sign(b"result payload") == signer.sign(b"result payload")
    assert signer.sign(b"result payload") != signer.sign(b"result payload!")


def test_time_stamping_authority_configuration(tmp_path: Path) -> None:
    """[signing] tsa_url gives a picklable HTTP RFC 3161 client, tsa = "development" the DEVELOPMENT TSA, neither gives B-B; mistakes are named."""
    from pyhanko.sign.timestamps import HTTPTimeStamper

    from engine.results.signer import load_timestamper
    from signing.pades import DevelopmentTimeStamper

    data = DataDir.at(tmp_path)
    data.root.mkdir(parents=True, exist_ok=True)
    assert load_timestamper(data) is None
    data.config.write_text('[signing]\ntsa_url = "https://tsa.example.vn/tsr"\n', encoding="utf-8")
    stamper = pickle.loads(pickle.dumps(load_timestamper(data)))  # what certificate worker processes receive
    assert isinstance(stamper, HTTPTimeStamper) and stamper.url == "https://tsa.example.vn/tsr"
    # Naming only the TSA keeps the development signer.
    assert load_signer_spec(data).key == str(data.keys / "signer.key")
    data.config.write_text('[signing]\ntsa = "development"\n', encoding="utf-8")
    assert isinstance(pickle.loads(pickle.dumps(load_timestamper(data))), DevelopmentTimeStamper)
    for text, word in (
        ('tsa = "development"\ntsa_url = "https://tsa.example.vn/tsr"', "both"),
        ('tsa = "freetsa"', "only value is 'development'"),
        ('tsa_url = "tsa.example.vn/tsr"', "http:// or https://"),
        ("tsa_url = 3", "http:// or https://"),
        ('tsa_server = "x"', "unknown setting"),
    ):
        data.config.write_text(f"[signing]\n{text}\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=word):
            load_timestamper(data)
            load_signer_spec(data)


def test_tsa_settings_beside_a_production_key_are_not_key_settings(dev_pki, tmp_path: Path) -> None:
    """A [signing] table with a key file and tsa_url opens the configured key; the TSA keys do not disturb the signer spec."""
    key, cert = _issue_file_key(dev_pki, tmp_path)
    key_path, cert_path = tmp_path / "signer.key", tmp_path / "signer.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    data = DataDir.at(tmp_path / "data")
    data.root.mkdir()
    data.config.write_text(
        f'[signing]\nkey = "{key_path}"\ncertificate = "{cert_path}"\ntsa_url = "http://tsa.example.vn"\n', encoding="utf-8"
    )
    spec = load_signer_spec(data)
    assert spec.key == str(key_path) and spec.open().certificate == cert
