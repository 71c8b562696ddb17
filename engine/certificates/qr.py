"""The HC1 QR code of a certificate, as one PDF image.

An ``HC1:`` string uses only the QR alphanumeric alphabet (Base45 was designed
for it), so the encoder picks alphanumeric mode by itself; the
error-correction level is Q, as the EU DCC specification asks.

Speed: pure-Python encoders spend tens of milliseconds per symbol, most of it
choosing the mask; zxing-cpp's native encoder takes ~1.8 ms, still mostly the
mask choice (it builds the whole symbol eight times). Here zxing-cpp builds
the symbol once, with mask 0; the other seven candidates differ from it only
in the data modules (XOR of two mask patterns) and the 15 format-information
bits, so they are derived in place and scored with ISO/IEC 18004's penalty
rules (N1 runs, N2 blocks, N3 finder-like patterns, N4 balance) in a numba
kernel, scored exactly as zxing scores them. The chosen symbol is the one
zxing would have produced (the tests compare them module for module) at about
a third of the cost.

The symbol goes into the PDF as a single 1-bit image XObject, one pixel per
module, drawn scaled without interpolation: a few hundred bytes and one ``Do``
operator instead of one path operator per module.
"""

from __future__ import annotations

import zlib
from functools import lru_cache

import numba
import numpy as np
import zxingcpp

from engine.errors import SigningError

__all__ = ["qr_modules", "qr_image_object", "QUIET_ZONE"]

#: Modules of white margin a QR reader needs around the symbol (ISO/IEC 18004).
QUIET_ZONE = 4
#: Error-correction level Q in the format information (L=01, M=00, Q=11, H=10).
_ECC_Q_BITS = 0b11


def _format_bits(ecc_bits: int, mask: int) -> int:
    """The 15-bit format information: BCH(15,5) over (ECC level, mask), XOR 101010000010010."""
    data = (ecc_bits << 3) | mask
    remainder = data
    for _ in range(10):
        remainder = (remainder << 1) ^ ((remainder >> 9) * 0x537)
    return ((data << 10) | remainder) ^ 0x5412


_FORMAT_Q = np.array([_format_bits(_ECC_Q_BITS, mask) for mask in range(8)], dtype=np.int64)


@lru_cache(maxsize=48)
def _layout(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per symbol size: the eight mask patterns over data modules, and the two format-information copies.

    Function patterns (finders + separators + format areas, timing lines,
    alignment patterns, version information) are never masked.
    """
    version = (size - 17) // 4
    function = np.zeros((size, size), dtype=np.bool_)
    function[0:9, 0:9] = True
    function[0:9, size - 8:] = True
    function[size - 8:, 0:9] = True
    function[6, :] = True
    function[:, 6] = True
    if version >= 2:
        count = version // 7 + 2
        step = 26 if version == 32 else (version * 4 + count * 2 + 1) // (count * 2 - 2) * 2
        centres = [6] + sorted(size - 7 - i * step for i in range(count - 1))
        corners = {(6, 6), (6, size - 7), (size - 7, 6)}
        for r in centres:
            for c in centres:
                if (r, c) not in corners:
                    function[r - 2:r + 3, c - 2:c + 3] = True
    if version >= 7:
        function[0:6, size - 11:size - 8] = True
        function[size - 11:size - 8, 0:6] = True
    i, j = np.indices((size, size))
    patterns = np.stack(
        [
            (i + j) % 2 == 0,
            i % 2 == 0,
            j % 3 == 0,
            (i + j) % 3 == 0,
            (i // 2 + j // 3) % 2 == 0,
            (i * j) % 2 + (i * j) % 3 == 0,
            ((i * j) % 2 + (i * j) % 3) % 2 == 0,
            ((i + j) % 2 + (i * j) % 3) % 2 == 0,
        ]
    ) & ~function
    # (row, column) of format bit 0..14, first copy around the top-left finder, second split top-right/bottom-left.
    first = [(r, 8) for r in range(6)] + [(7, 8), (8, 8), (8, 7)] + [(8, 14 - k) for k in range(9, 15)]
    second = [(8, size - 1 - k) for k in range(8)] + [(size - 15 + k, 8) for k in range(8, 15)]
    return patterns.astype(np.uint8), np.array(first, dtype=np.int64), np.array(second, dtype=np.int64)


@numba.njit(cache=True, nogil=True)
def _line_penalty(m: np.ndarray, prefix: np.ndarray) -> int:  # pragma: no cover - compiled
    """N1 (runs of ≥ 5) and N3 (1:1:3:1:1 with 4 light modules on one side) along the rows of ``m``.

    Branch-free where it can be: the run length and a sliding 7-bit window are
    updated arithmetically; prefix sums answer "are these 4 modules light".
    Modules outside the symbol count as light, as zxing counts them.
    """
    n = m.shape[0]
    total = 0
    for y in range(n):
        row = m[y]
        prefix[0] = 0
        for x in range(n):
            prefix[x + 1] = prefix[x] + np.int64(row[x])
        run = 1
        window = np.int64(row[0])
        for x in range(1, n):
            bit = np.int64(row[x])
            same = 1 - (bit ^ np.int64(row[x - 1]))
            run = run * same + 1
            total += 3 * (run == 5) + (run > 5)  # 3 for the 5th module of a run, 1 per module after
            window = ((window << 1) | bit) & 0x7F
            if window == 0x5D and x >= 6:  # dark-light-dark-dark-dark-light-dark ending at x
                start = x - 6
                left = prefix[start] - prefix[max(start - 4, 0)]
                right = prefix[min(x + 5, n)] - prefix[x + 1]
                if left == 0 or right == 0:
                    total += 40
    return total


@numba.njit(cache=True, nogil=True)
def _penalty(m: np.ndarray) -> int:  # pragma: no cover - compiled
    """ISO/IEC 18004 mask penalty of a whole symbol (1 = dark)."""
    n = m.shape[0]
    prefix = np.empty(n + 1, np.int64)
    total = _line_penalty(m, prefix) + _line_penalty(m.T.copy(), prefix)
    for y in range(n - 1):
        for x in range(n - 1):
            v = np.int64(m[y, x])
            differ = (v ^ np.int64(m[y, x + 1])) | (v ^ np.int64(m[y + 1, x])) | (v ^ np.int64(m[y + 1, x + 1]))
            total += 3 * (differ == 0)
    dark = 0
    for y in range(n):
        for x in range(n):
            dark += np.int64(m[y, x])
    cells = n * n
    total += abs(dark * 2 - cells) * 10 // cells * 10
    return total


@numba.njit(cache=True, nogil=True)
def _choose_mask(unmasked: np.ndarray, patterns: np.ndarray, first: np.ndarray, second: np.ndarray,
                 formats: np.ndarray) -> tuple[int, np.ndarray]:  # pragma: no cover - compiled
    """The mask with the lowest penalty (first one on ties, as the encoders do) and its symbol."""
    n = unmasked.shape[0]
    best, best_score = -1, np.int64(1) << 60
    chosen = np.empty_like(unmasked)
    candidate = np.empty_like(unmasked)
    for k in range(8):
        for y in range(n):
            for x in range(n):
                candidate[y, x] = unmasked[y, x] ^ patterns[k, y, x]
        bits = formats[k]
        for b in range(15):
            bit = (bits >> b) & 1
            candidate[first[b, 0], first[b, 1]] = bit
            candidate[second[b, 0], second[b, 1]] = bit
        candidate[n - 8, 8] = 1  # the dark module
        score = _penalty(candidate)
        if score < best_score:
            best, best_score = k, score
            chosen[:, :] = candidate
    return best, chosen


def _symbol_pixels(text: str, **options: object) -> np.ndarray:
    try:
        symbol = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode, ec_level="Q", **options)
    except (RuntimeError, ValueError) as exc:  # zxing's errors for oversize content
        raise SigningError(
            f"the HC1 payload ({len(text)} characters) cannot be encoded as a QR code at level Q ({exc})"
        ) from exc
    # to_image gives 0 for dark and 255 for light modules.
    return (np.asarray(symbol.to_image(scale=1, add_quiet_zones=False)) < 128).astype(np.uint8)


def qr_modules(text: str) -> np.ndarray:
    """The QR symbol for ``text`` at ECC level Q as a bool matrix (True = dark module), no margin."""
    if not text:
        raise SigningError("cannot draw an empty HC1 payload as a QR code")
    try:
        masked0 = _symbol_pixels(text, data_mask=0)
    except TypeError:  # an older zxing-cpp without data_mask: let it choose (slower, same result)
        return _symbol_pixels(text).astype(bool)
    patterns, first, second = _layout(masked0.shape[0])
    _, symbol = _choose_mask(masked0 ^ patterns[0], patterns, first, second, _FORMAT_Q)
    return symbol.astype(bool)


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
