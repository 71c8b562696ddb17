"""Certificates: the bilingual PDF a person keeps, with its QR code, signed as PAdES.

Owns the page layout (fonts, rows), the QR code's modules, rendering and the
writer that signs and stores each PDF beside the ledger.
"""

from engine.certificates.writer import (
    CertificateWriter,
    render_certificate,
    sign_certificate,
)

__all__ = ["CertificateWriter", "render_certificate", "sign_certificate"]
