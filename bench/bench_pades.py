"""PAdES B-B signing (signing/pades.py) vs pyHanko's ``sign_pdf`` on the same PDF.

Both sign the same one-page certificate PDF with the same development key and
chain, SubFilter ``ETSI.CAdES.detached``. pyHanko is the general-purpose
reference (it re-reads the document and signs twice to size the signature);
ketqua's signer reuses a constant CMS template. One signature from each side
is validated with pyHanko's validator against the development root before
anything is timed, so the figure never compares against a broken signature.
Aim (issue 6): ≥ 500 PAdES B-B signatures per second per core.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from bench import common, workloads
from bench.runner import Context, Figure, compare, module_exists, stage


def certificate_pdf(ctx: Context) -> tuple[bytes, str]:
    """The PDF both sides sign: a rendered result certificate when engine/certificates/ exists,
    else a plain one-page reportlab page of similar size (and the figure says which)."""
    if module_exists("engine.certificates.writer") and module_exists("signing.hc1"):
        from engine.certificates.writer import render_certificate
        from signing.dcc import test_entry
        from signing.hc1 import sign_hc1

        k = common.keys(ctx)
        payload = workloads.result_payloads(1, ctx.seed)[0]
        hc1 = sign_hc1(test_entry(payload), k.signer, issued_at=datetime(2026, 11, 29, tzinfo=UTC), expires_at=datetime(2026, 12, 29, tzinfo=UTC))
        pdf = render_certificate(payload, hc1, signer_name="DEVELOPMENT signer", development=True)
        return pdf, "engine.certificates.writer.render_certificate"
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    c.drawString(72, 770, "KET QUA XET NGHIEM / TEST RESULT (bench page)")
    c.showPage()
    c.save()
    return buf.getvalue(), "reportlab one-page (engine/certificates/ not written yet)"


def pyhanko_signer(k: common.Keys) -> Any:
    from pyhanko.sign import signers

    return signers.SimpleSigner.load(str(k.signer_key), str(k.signer_cert), ca_chain_files=(str(k.ca_cert),), key_passphrase=None)


def pyhanko_sign(pdf: bytes, signer: Any) -> bytes:
    """pyHanko's documented way: an incremental writer and ``sign_pdf`` with PAdES metadata."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers

    meta = signers.PdfSignatureMetadata(field_name="Signature1", subfilter=fields.SigSeedSubFilter.PADES)
    out = signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(pdf)), meta, signer=signer)
    return out.getvalue()


def check_valid(pdf: bytes, ca_cert_path: str, who: str) -> None:
    """Refuse to time a signer whose output pyHanko's validator does not accept."""
    from asn1crypto import pem
    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    raw = open(ca_cert_path, "rb").read()
    _, _, der = pem.unarmor(raw)
    vc = ValidationContext(trust_roots=[asn1_x509.Certificate.load(der)])
    sig = PdfFileReader(io.BytesIO(pdf)).embedded_signatures[-1]
    status = validate_pdf_signature(sig, vc)
    if not (status.intact and status.valid and status.trusted):
        raise AssertionError(f"{who}: signature not valid per pyHanko ({status.summary()})")


@stage("pades", "PAdES B-B signing vs pyHanko sign_pdf on the same PDF", requires=("signing.pades", "signing.keys", "signing.pki"), order=40)
def run(ctx: Context) -> list[Figure]:
    from signing.pades import PadesSigner

    k = common.keys(ctx)
    pdf, source = certificate_pdf(ctx)
    ours = PadesSigner(k.signer)
    theirs = pyhanko_signer(k)
    check_valid(ours.sign(pdf), str(k.ca_cert), "signing.pades.PadesSigner")
    check_valid(pyhanko_sign(pdf, theirs), str(k.ca_cert), "pyHanko sign_pdf")
    n_ours = int(ctx.scale(200, 1000))
    n_theirs = int(ctx.scale(10, 60))
    # Unequal counts keep pyHanko's side affordable; the ratio is per signature.
    fig = compare(
        "PAdES B-B, one-page certificate",
        unit="signatures",
        amount=n_ours,
        candidate=lambda: [ours.sign(pdf) for _ in range(n_ours)],
        baseline=lambda: [pyhanko_sign(pdf, theirs) for _ in range(n_theirs)],
        repeats=ctx.heavy_repeats,
        candidate_label="signing.pades.PadesSigner.sign",
        baseline_label="pyhanko.sign.signers.sign_pdf",
        aim="≥ 500/s/core",
    )
    return [_per_item(fig, n_ours, n_theirs, pdf=source, pdf_bytes=len(pdf))]


def _per_item(fig: Figure, n_candidate: int, n_baseline: int, **extra: Any) -> Figure:
    """Rescale a figure whose two sides processed different counts so both time the same amount."""
    if fig.baseline:
        scale = n_candidate / n_baseline
        fig.baseline.wall = [w * scale for w in fig.baseline.wall]
        fig.baseline.cpu = [c * scale for c in fig.baseline.cpu]
        fig.extra["baseline_items_timed"] = n_baseline
    fig.extra.update(extra)
    return fig
