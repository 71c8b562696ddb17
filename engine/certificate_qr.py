"""The HC1 QR code of a certificate, as one PDF image.

zxing-cpp's native encoder chooses the mask in about a millisecond, where
pure-Python encoders spend tens of milliseconds. An ``HC1:`` string uses only
the QR alphanumeric alphabet (Base45 was designed for it), so the encoder
picks alphanumeric mode by itself; the error-correction level is Q, as the EU
DCC specification asks.

The symbol goes into the PDF as a single 1-bit image XObject, one pixel per
module, drawn scaled without interpolation: a few hundred bytes and one ``Do``
operator instead of one path operator per module.
"""

from __future__ import annotations

import zlib

import numpy as np
import zxingcpp

from engine.errors import SigningError

__all__ = ["qr_modules", "qr_image_object"]

#: Modules of white margin a QR reader needs around the symbol (ISO/IEC 18004).
QUIET_ZONE = 4


def qr_modules(text: str) -> np.ndarray:
    """The QR symbol for ``text`` at ECC level Q as a bool matrix (True = dark module), no margin."""
    if not text:
        raise SigningError("cannot draw an empty HC1 payload as a QR code")
    try:
        symbol = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode, ec_level="Q")
    except Exception as exc:  # zxing raises plain RuntimeError/ValueError for oversize content
        raise SigningError(
            f"the HC1 payload ({len(text)} characters) cannot be encoded as a QR code at level Q ({exc})"
        ) from exc
    # to_image gives 0 for dark and 255 for light modules.
    pixels = np.asarray(symbol.to_image(scale=1, add_quiet_zones=False))
    return pixels < 128


def qr_image_object(modules: np.ndarray) -> bytes:
    """A complete PDF image XObject (dictionary + stream) for a module matrix.

    DeviceGray at 1 bit per component: 0 is black, so dark modules are 0 bits.
    ``packbits`` pads each row to a whole byte, which is what PDF image rows need.
    """
    rows, cols = modules.shape
    packed = np.packbits(~modules, axis=1).tobytes()
    stream = zlib.compress(packed, 6)
    head = (
        f"<< /Type /XObject /Subtype /Image /Width {cols} /Height {rows} "
        f"/ColorSpace /DeviceGray /BitsPerComponent 1 /Interpolate false "
        f"/Filter /FlateDecode /Length {len(stream)} >>\nstream\n"
    ).encode("ascii")
    return head + stream + b"\nendstream"
