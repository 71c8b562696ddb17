"""``ketqua keys init|show``: the development PKI, and what the configured signer is.

``init`` creates a DEVELOPMENT CA, result signer and TSA under ``<data>/keys/``
(kept if present). ``show`` prints the signer's chain with validity, key
usage, SHA-256 fingerprints and the DCC kid. Neither ever prints a key or a
passphrase.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("keys", parents=[common], help="create or show signing keys and certificates")
    actions = p.add_subparsers(dest="keys_action", metavar="ACTION")
    actions.required = True
    init = actions.add_parser("init", help="create the DEVELOPMENT CA, signer and TSA under <data>/keys/")
    init.set_defaults(func=run_init)
    show = actions.add_parser("show", help="print the signer's certificate chain and fingerprints")
    show.add_argument("--json", action="store_true", help="one JSON object instead of text")
    show.set_defaults(func=run_show)
    for action in (init, show):
        # Accept --data after the action too, without its default overwriting `keys --data DIR`.
        action.add_argument("--data", metavar="DIR", default=argparse.SUPPRESS, help="data folder (as for every command)")


def describe_certificate(cert: Any, role: str) -> dict[str, Any]:
    """The facts ``keys show`` prints for one certificate (no key material)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    from signing.keys import certificate_kid
    from signing.pki import is_development

    usage: list[str] = []
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        for name, label in (
            ("digital_signature", "digitalSignature"),
            ("content_commitment", "nonRepudiation"),
            ("key_cert_sign", "keyCertSign"),
            ("crl_sign", "cRLSign"),
        ):
            if getattr(ku, name):
                usage.append(label)
    except x509.ExtensionNotFound:
        pass
    extended: list[str] = []
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        extended = [oid._name if oid._name != "Unknown OID" else oid.dotted_string for oid in eku]
    except x509.ExtensionNotFound:
        pass
    kid = certificate_kid(cert)
    return {
        "role": role,
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.isoformat().replace("+00:00", "Z"),
        "not_after": cert.not_valid_after_utc.isoformat().replace("+00:00", "Z"),
        "key_usage": usage,
        "extended_key_usage": extended,
        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
        "kid": kid.hex(),
        "kid_b64": base64.b64encode(kid).decode("ascii"),
        "development": is_development(cert),
    }


def run_init(args: argparse.Namespace) -> int:
    from engine.datadir import DataDir
    from signing.pki import ensure_development_pki

    data = DataDir.at(args.data)
    pki = ensure_development_pki(data.keys)
    state = "created" if pki.created else "already present, kept"
    print(f"development PKI {state} in {pki.keys_dir}")
    print("  DEVELOPMENT keys: results signed with them are marked as not for clinical use.")
    print(f"  trust root for verifiers: {pki.ca_cert}")
    return _print_chain(data, as_json=False)


def run_show(args: argparse.Namespace) -> int:
    from engine.datadir import DataDir

    data = DataDir.at(args.data)
    if not data.config.exists() and not (data.keys / "ca.pem").exists():
        print(f"ketqua keys: no signer configured in {data.config} and no development PKI in {data.keys}; "
              "run 'ketqua keys init' or add a [signing] section", file=sys.stderr)
        return 1
    return _print_chain(data, as_json=args.json)


def _print_chain(data: Any, *, as_json: bool) -> int:
    from engine.results.signer import load_signer_spec
    from signing.keys import load_certificates

    spec = load_signer_spec(data)
    signer = spec.open()
    entries = [describe_certificate(signer.certificate, "signer")]
    for index, cert in enumerate(signer.chain):
        role = "root" if index == len(signer.chain) - 1 and cert.subject == cert.issuer else "issuer"
        entries.append(describe_certificate(cert, role))
    tsa = data.keys / "tsa.pem"
    if spec.key and spec.key.startswith(str(data.keys)) and tsa.exists():
        entries.append(describe_certificate(load_certificates(tsa)[0], "tsa"))
    summary = {
        "store": "PKCS#11 token " + repr(spec.token) if spec.kind == "pkcs11" else "key file",
        "algorithm": signer.algorithm,
        "development": signer.development,
        "certificates": entries,
    }
    if as_json:
        print(json.dumps(summary, ensure_ascii=False, indent=2))
        return 0
    print(f"signer: {summary['store']}, {signer.algorithm}" + ("  [DEVELOPMENT]" if signer.development else ""))
    for entry in entries:
        print(f"{entry['role']}:")
        print(f"  subject      {entry['subject']}")
        print(f"  issuer       {entry['issuer']}")
        print(f"  valid        {entry['not_before']} .. {entry['not_after']}")
        print(f"  key usage    {', '.join(entry['key_usage']) or '-'}"
              + (f"; extended: {', '.join(entry['extended_key_usage'])}" if entry["extended_key_usage"] else ""))
        print(f"  sha256       {entry['sha256']}")
        print(f"  kid          {entry['kid']} ({entry['kid_b64']})")
        print(f"  development  {'yes' if entry['development'] else 'no'}")
    return 0
