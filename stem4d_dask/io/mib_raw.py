"""RAW (``R64``) Merlin frames decoded: each row's pixels packed in 64-bit words written
byte-reversed (1 bit per pixel; 6 bits in a byte; 12 bits in two bytes; 24 bits as two 12-bit
frames, high bits first), and a 2x2 quad's 256 rows of ``[chip 4 | chip 3 | chip 2 | chip 1]``
assembled as the detector's processed frames show them: chips 1 and 2 on top, chips 3 and 4
below, turned by 180 degrees.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .mib_header import MibHeader


def decode_raw(payload, h: MibHeader) -> np.ndarray:
    """``(n, payload bytes)`` RAW (``R64``) records -> ``(n, Qx, Qy)`` native pixels."""
    n = payload.shape[0]
    if h.depth == 24:  # two 12-bit frames, the high 12 bits first
        half = payload.shape[1] // 2
        twelve = dataclasses.replace(h, cols=h.cols // 2, depth=12)
        high = decode_raw(payload[:, :half], twelve).astype(np.uint32)
        return (high << 12) | decode_raw(payload[:, half:], twelve)
    words = payload.reshape(n, h.rows, -1, 8)[..., ::-1].reshape(n, h.rows, -1)
    if h.depth == 1:
        raw = np.unpackbits(words, axis=-1, bitorder="little")
    elif h.depth == 6:
        raw = words
    else:
        raw = words.view("<u2").astype(np.uint16)
    if not h.quad:
        return raw
    rows, width = h.rows, h.cols // 4  # RAW quad rows: [chip 4 | chip 3 | chip 2 | chip 1]
    out = np.empty((n, 2 * rows, 2 * width), raw.dtype)
    out[:, :rows, :width] = raw[..., 3 * width :]
    out[:, :rows, width:] = raw[..., 2 * width : 3 * width]
    out[:, rows:, :width] = raw[:, ::-1, width : 2 * width][..., ::-1]  # turned by 180 degrees
    out[:, rows:, width:] = raw[:, ::-1, :width][..., ::-1]
    return out
