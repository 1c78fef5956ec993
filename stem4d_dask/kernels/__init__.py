"""Kernels: pure functions of one chunk (numpy or cupy); no dask, no xarray.

Each kernel takes its array module from its input, so one kernel serves CPU and GPU chunks.
"""

from __future__ import annotations

import numpy as np

# re-exported: the kernels' array types and backend helpers
from ..backend import Array, ArrayModule, array_module, native, native_dtype  # noqa: F401


def frame_stacks(block: np.ndarray) -> list[np.ndarray]:
    """``(..., Qx, Qy)`` numpy frames as a list of 3D ``(n, Qx, Qy)`` arrays in C order of the
    frames, without copying: one view of all frames when the leading axes merge into one
    stride (a C-contiguous block, or frames at a fixed stride such as a file's frames with
    headers between them), else one view per index of the leading axes but the last (a chunk
    of a stepped or cropped selection). Compiled loops take any strides, so a selection is
    read in place instead of being copied first."""
    qx, qy = block.shape[-2:]
    if block.flags.c_contiguous or block.ndim <= 3:
        return [block.reshape(-1, qx, qy)]
    lead = [(n, s) for n, s in zip(block.shape[:-2], block.strides[:-2], strict=True) if n != 1]
    if all(outer[1] == inner[0] * inner[1] for outer, inner in zip(lead, lead[1:], strict=False)):
        n = int(np.prod(block.shape[:-2], dtype=np.int64))
        return [
            np.lib.stride_tricks.as_strided(
                block, shape=(n, qx, qy), strides=(lead[-1][1] if lead else 0, *block.strides[-2:])
            )
        ]
    flat = block.reshape(-1, *block.shape[-3:]) if block.ndim > 4 else block
    return [flat[i] for i in range(flat.shape[0])]


def frame_rows(frames: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``(flat, stride, swap)`` to read ``(n, Qx, Qy)`` numpy frames row by row in a compiled
    loop, without copying when each row is contiguous: frame ``i``'s row ``x`` is
    ``flat[i * stride + x * Qy: i * stride + (x + 1) * Qy]``.

    ``flat`` is a 1D C-contiguous view (the bytes from the first to the last pixel, whatever
    lies between frames, e.g. per-frame headers) in the machine's byte order; ``swap`` is the
    itemsize (2 or 4) when the values must be byte-swapped as they are read (big-endian
    ``uint16``/``uint32`` frames), else 0. Frames whose rows are not contiguous (a transposed
    or stepped detector), that go backwards, or other big-endian frames (signed, float, 8-byte)
    are copied into native order first (``stride = Qx * Qy``, ``swap = 0``).
    """
    n, qx, qy = frames.shape
    dtype = frames.dtype
    itemsize = dtype.itemsize
    s0, s1, s2 = frames.strides
    view = (
        (qy == 1 or s2 == itemsize)
        and (qx == 1 or s1 == qy * itemsize)
        and (n == 1 or (s0 >= 0 and s0 % itemsize == 0))
        and (dtype.isnative or (dtype.kind == "u" and itemsize in (2, 4)))
    )
    if not view or frames.size == 0:
        copy = np.ascontiguousarray(frames, dtype=native_dtype(dtype))
        return copy.reshape(-1), qx * qy, 0
    stride = s0 // itemsize if n > 1 else qx * qy
    length = (n - 1) * stride + qx * qy
    flat = np.lib.stride_tricks.as_strided(
        frames.view(native_dtype(dtype)), shape=(length,), strides=(itemsize,), writeable=False
    )
    return flat, stride, 0 if dtype.isnative or itemsize == 1 else itemsize
