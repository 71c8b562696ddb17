"""Offline verification of everything ketqua signs: JWS results, HC1 QR payloads, PAdES PDFs.

Each ``verify_*`` function returns a :class:`VerificationReport` (what was
signed, by whom, when) or raises :class:`signing.errors.VerificationError`
whose ``reason`` names the failed check:

====================  =========================================================
``bad-prefix``        the QR text is not ``HC1:``
``bad-base45``        Base45 decoding failed
``bad-compression``   not zlib, or does not inflate
``bad-cbor``          CBOR / CWT structure wrong
``bad-cose``          not a COSE_Sign1 message
``malformed``         JWS structure wrong
``unsupported-algorithm``  not ES256 / PS256
``unknown-kid``       no trusted or candidate certificate has the message's kid
``bad-signature``     the signature does not verify
``untrusted-chain``   the signer does not chain to the given trust roots
``certificate-expired`` / ``certificate-not-yet-valid``  signer invalid at signing time
``bad-key-usage``     the signer certificate may not sign documents
``expired``           the HC1 ``exp`` is before the verification time
``not-yet-valid``     the HC1 ``iat`` is after the verification time
``no-signature`` / ``pdf-invalid``  PDF unsigned, or pyHanko's validator refused it
====================  =========================================================
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from signing.errors import VerificationError
from signing.hc1 import decode_hc1
from signing.jws import verify_compact_report
from signing.signer import certificate_kid
from signing.pki import is_development
from signing.trust import CertificateSource, as_certificates, validate_chain, verify_raw_signature

# HC1 clocks: a QR scanned a few minutes before its iat (device clock drift) is still fine.
_CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass
class VerificationReport:
    """A successful verification: what was signed, by whom, when."""

    kind: str  # "jws" | "hc1" | "pdf"
    signer: str
    signer_sha256: str
    development: bool
    algorithm: str
    signed_at: dt.datetime | None
    content: Any
    expires_at: dt.datetime | None = None
    chain: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: The verified signer certificate (not serialised); a PDF's signer is a candidate for its own QR.
    certificate: x509.Certificate | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (times ISO 8601 UTC)."""
        return {
            "kind": self.kind,
            "valid": True,
            "signer": self.signer,
            "signer_sha256": self.signer_sha256,
            "development": self.development,
            "algorithm": self.algorithm,
            "signed_at": _iso(self.signed_at),
            "expires_at": _iso(self.expires_at),
            "chain": self.chain,
            "notes": self.notes,
            "content": _jsonable(self.content),
        }


def _iso(when: dt.datetime | None) -> str | None:
    return when.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z") if when else None


def _jsonable(value: Any) -> Any:
    """CBOR-decoded values (tagged dates, bytes) as JSON values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        return _iso(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _now(at: dt.datetime | None) -> dt.datetime:
    if at is None:
        return dt.datetime.now(dt.timezone.utc)
    return at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)


def verify_jws(
    token: str,
    trust: Iterable[CertificateSource] | CertificateSource | Mapping[str, Any],
    *,
    payload: bytes | None = None,
    at: dt.datetime | None = None,
) -> VerificationReport:
    """Verify a compact JWS over a result against trust roots (or a JWKS); the report's content is the decoded JSON."""
    body, header, path = verify_compact_report(token, trust, payload=payload, at=at)
    try:
        content: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        content = body.decode("utf-8", "replace")
    signed_at = None
    if isinstance(content, dict) and isinstance(content.get("issued_at"), str):
        try:
            signed_at = dt.datetime.fromisoformat(content["issued_at"].replace("Z", "+00:00"))
        except ValueError:
            signed_at = None
    if not path:  # verified with a published JWKS: the key is trusted as published
        return VerificationReport(
            kind="jws", signer=f"JWKS key {header.get('kid')}", signer_sha256="", development=False,
            algorithm=str(header.get("alg")), signed_at=signed_at, content=content,
        )
    return _signer_report("jws", path, algorithm=str(header.get("alg")), signed_at=signed_at, content=content)


def _signer_report(kind: str, path: Sequence[x509.Certificate], *, notes: Sequence[str] = (), **fields: Any) -> VerificationReport:
    """The report of a signature whose signer (``path[0]``) chained to trust through ``path``; DEVELOPMENT keys noted."""
    cert = path[0]
    development = is_development(cert)
    return VerificationReport(
        kind=kind,
        signer=cert.subject.rfc4514_string(),
        signer_sha256=_fingerprint(cert),
        development=development,
        chain=[c.subject.rfc4514_string() for c in path[1:]],
        notes=[*notes, *(["signed with a DEVELOPMENT key: not a clinical result"] if development else [])],
        **fields,
    )


def verify_hc1(
    text: str,
    trust: Iterable[CertificateSource] | CertificateSource,
    *,
    certificates: Iterable[CertificateSource] = (),
    at: dt.datetime | None = None,
) -> VerificationReport:
    """Verify an ``HC1:`` string: structure, kid, signature, chain at ``iat``, key usage, ``exp`` at ``at``.

    ``trust``: trust roots (a CA, or the signer certificate itself, as DCC test
    data does). ``certificates``: further candidate signer certificates (a DSC
    list); a candidate is used only if it chains to a trust root. Every
    certificate whose kid matches is tried, since kids may collide.
    """
    content = decode_hc1(text)
    cose = content.cose
    alg = cose.alg
    if alg is None:
        raise VerificationError(
            f"COSE algorithm {cose.protected.get(1, cose.unprotected.get(1))!r} is not accepted (expected ES256 or PS256)",
            reason="unsupported-algorithm",
        )
    kid = cose.kid
    if kid is None:
        raise VerificationError("the COSE message names no key (kid missing)", reason="unknown-kid")
    roots = as_certificates(trust)
    candidates = roots + [c for c in as_certificates(list(certificates)) if c not in roots]
    matching = [c for c in candidates if certificate_kid(c) == kid]
    if not matching:
        raise VerificationError(
            f"no trusted certificate has kid {kid.hex()} (the QR was signed by a key we were not given)",
            reason="unknown-kid",
        )
    now = _now(at)
    signed_at = content.issued_at or now
    to_be_signed = cose.to_be_signed()
    failure: VerificationError | None = None
    for cert in matching:
        if not verify_raw_signature(cert.public_key(), alg, cose.signature, to_be_signed):
            failure = failure or VerificationError(
                f"the QR signature does not verify with '{cert.subject.rfc4514_string()}' (kid {kid.hex()}); "
                "the content was altered or signed by another key",
                reason="bad-signature",
            )
            continue
        try:
            path = validate_chain(cert, candidates, roots, signed_at)
        except VerificationError as exc:
            failure = exc
            continue
        expires_at = content.expires_at
        if expires_at is not None and now > expires_at:
            raise VerificationError(
                f"the certificate in the QR expired at {_iso(expires_at)} (checked at {_iso(now)})", reason="expired"
            )
        if content.issued_at is not None and content.issued_at - _CLOCK_SKEW > now:
            raise VerificationError(
                f"the QR was issued at {_iso(content.issued_at)}, after the verification time {_iso(now)}",
                reason="not-yet-valid",
            )
        return _signer_report(
            "hc1", path, algorithm=alg, signed_at=content.issued_at, expires_at=expires_at,
            content={"iss": content.issuer, "dcc": content.dcc},
        )
    assert failure is not None
    raise failure


def _asn1(cert: x509.Certificate) -> Any:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def verify_pdf(
    pdf: bytes,
    trust: Iterable[CertificateSource] | CertificateSource,
    *,
    at: dt.datetime | None = None,
) -> VerificationReport:
    """Validate every PAdES signature in ``pdf`` with pyHanko against the trust roots.

    Requires, for each signature: intact and valid, the signer trusted (chain
    to a root, valid at the signing time), key usage digitalSignature or
    nonRepudiation, any timestamp valid; and the last signature covering the
    whole file. Returns the report of that last signature (earlier ones are
    listed in its notes).
    """
    from pyhanko.pdf_utils.misc import PdfReadError  # lazy: pyHanko's validator stack costs ~0.3 s to import; only PDF verification needs it
    from pyhanko.pdf_utils.reader import PdfFileReader  # lazy: as above
    from pyhanko.sign.validation import async_validate_pdf_signature  # lazy: as above
    from pyhanko.sign.validation.settings import KeyUsageConstraints  # lazy: as above
    from pyhanko.sign.validation.status import SignatureCoverageLevel  # lazy: as above
    from pyhanko_certvalidator import ValidationContext  # lazy: as above

    roots = as_certificates(trust)
    if not roots:
        raise VerificationError("no trust roots were given (use --trust PEM)", reason="no-trust-roots")
    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        signatures = list(reader.embedded_signatures)
    except (PdfReadError, ValueError, KeyError) as exc:
        raise VerificationError(f"the PDF cannot be read ({exc})", reason="malformed") from exc
    if not signatures:
        raise VerificationError("the PDF carries no signature", reason="no-signature")
    usage = KeyUsageConstraints(key_usage={"digital_signature", "non_repudiation"}, match_all_key_usages=False)

    def context() -> ValidationContext:
        # Offline: no OCSP/CRL fetching; a development PKI publishes no revocation info.
        return ValidationContext(
            trust_roots=[_asn1(c) for c in roots],
            allow_fetching=False,
            revocation_mode="soft-fail",
            moment=at,
        )

    async def validate_all() -> list[Any]:
        return [
            await async_validate_pdf_signature(
                sig, signer_validation_context=context(), ts_validation_context=context(), key_usage_settings=usage
            )
            for sig in signatures
        ]

    statuses = asyncio.run(validate_all())
    reports = []
    for index, (sig, status) in enumerate(zip(signatures, statuses), start=1):
        name = f"signature {index} ({sig.field_name})"
        if not status.intact or not status.valid:
            raise VerificationError(
                f"{name}: the signature does not match the document (altered after signing)", reason="bad-signature"
            )
        if not status.trusted:
            raise VerificationError(
                f"{name}: the signer '{status.signing_cert.subject.human_friendly}' does not chain to the given "
                "trust roots, or a certificate was not valid at the signing time",
                reason="untrusted-chain",
            )
        if index == len(signatures) and status.coverage != SignatureCoverageLevel.ENTIRE_FILE:
            raise VerificationError(
                f"{name}: content was added after the last signature ({status.coverage.name})", reason="pdf-invalid"
            )
        if status.timestamp_validity is not None and not (
            status.timestamp_validity.intact and status.timestamp_validity.valid and status.timestamp_validity.trusted
        ):
            raise VerificationError(f"{name}: the RFC 3161 timestamp does not verify or is not trusted", reason="pdf-invalid")
        if not status.bottom_line:
            raise VerificationError(f"{name}: rejected by the validator: {status.summary()}", reason="pdf-invalid")
        signer = x509.load_der_x509_certificate(status.signing_cert.dump())
        signed_at = status.timestamp_validity.timestamp if status.timestamp_validity else status.signer_reported_dt
        notes = [f"coverage: {status.coverage.name}", f"modification level: {status.modification_level.name}"]
        if status.timestamp_validity is not None:
            notes.append("timestamped (PAdES B-T)")
            tsa = x509.load_der_x509_certificate(status.timestamp_validity.signing_cert.dump())
            if is_development(tsa):
                notes.append("time-stamp from a DEVELOPMENT authority: the signing time is not independently attested")
        report = _signer_report(
            "pdf", [signer], notes=notes, algorithm=status.md_algorithm.upper() + " " + status.pkcs7_signature_mechanism,
            signed_at=signed_at, content={"field": sig.field_name, "bytes": len(pdf)}, certificate=signer,
        )
        if reports:
            report.notes.append("earlier signature(s) also valid: " + "; ".join(r.signer for r in reports))
        reports.append(report)
    return reports[-1]


def qr_texts_from_image(image: Any) -> list[str]:
    """Texts of all QR codes in a PIL image (zxing-cpp)."""
    import zxingcpp  # lazy: native QR decoder; JWS and HC1 text verification must work where it does not load

    return [b.text for b in zxingcpp.read_barcodes(image) if b.valid and b.format == zxingcpp.BarcodeFormat.QRCode]


def qr_texts_from_file(data: bytes, *, is_pdf: bool) -> list[str]:
    """QR texts in an image file, or on page 1 of a PDF (rendered at ~300 dpi with pypdfium2)."""
    if is_pdf:
        import pypdfium2  # lazy: optional (test extra); only rendering a PDF page to find its QR needs it

        document = pypdfium2.PdfDocument(data)
        try:
            image = document[0].render(scale=300 / 72).to_pil()
        finally:
            document.close()
    else:
        from PIL import Image, UnidentifiedImageError  # lazy: Pillow, only for reading QR codes from image files

        try:
            image = Image.open(io.BytesIO(data))
            image.load()
        except (UnidentifiedImageError, OSError) as exc:
            raise VerificationError(f"the image cannot be read ({exc})", reason="unusable") from exc
    return qr_texts_from_image(image)


def describe(report: VerificationReport) -> list[str]:
    """Readable lines for a report (what ``ketqua verify`` prints)."""
    lines = [f"OK {report.kind.upper()} signature ({report.algorithm})"]
    lines.append(f"  signed by   {report.signer}")
    lines.append(f"  cert sha256 {report.signer_sha256}")
    if report.chain:
        lines.append(f"  chain       {' → '.join(report.chain)}")
    if report.signed_at:
        lines.append(f"  signed at   {_iso(report.signed_at)}")
    if report.expires_at:
        lines.append(f"  expires at  {_iso(report.expires_at)}")
    for note in report.notes:
        lines.append(f"  note        {note}")
    content = report.content
    if report.kind == "hc1" and isinstance(content, dict):
        dcc = content.get("dcc") or {}
        nam = dcc.get("nam") or {}
        lines.append(f"  person      {nam.get('fn', '')} {nam.get('gn', '')} ({nam.get('fnt', '')}<<{nam.get('gnt', '')}), born {dcc.get('dob', '')}")
        for entry in dcc.get("t") or []:
            result = {"260373001": "DETECTED", "260415000": "NOT DETECTED", "419984006": "INCONCLUSIVE"}.get(
                entry.get("tr"), entry.get("tr")
            )
            lines.append(f"  test        {entry.get('nm', entry.get('tt'))}: {result}, sampled {_jsonable(entry.get('sc'))}")
            lines.append(f"  issued by   {entry.get('is')} ({entry.get('co')}), certificate {entry.get('ci')}")
    elif report.kind == "jws" and isinstance(content, dict):
        person = content.get("person") or {}
        lines.append(
            f"  result      {content.get('id')} v{content.get('version')}: {content.get('outcome')} "
            f"for {person.get('full_name')} (specimen {(content.get('specimen') or {}).get('id')})"
        )
    return lines


def certificates_from_pem_files(paths: Sequence[str]) -> list[x509.Certificate]:
    """Certificates from PEM/DER files (convenience for the CLI)."""
    return as_certificates(list(paths))
