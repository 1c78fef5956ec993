"""Binning kernels: sum ``factor x factor`` blocks of the detector or of the scan.

Integers are accumulated in a dtype wide enough for the worst case (``accumulator_dtype``), so
a sum never wraps; narrowing to a requested integer dtype is checked (``narrow``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
import numpy.typing as npt

from . import Array, array_module, cuda_launch, frame_stacks, native_dtype

COPY_BYTES = 8 * 2**20  # the most a non-contiguous or big-endian chunk is copied at once


def accumulator_dtype(
    dtype: npt.DTypeLike, n_summed: int, value_range: Sequence[int] | None = None
) -> np.dtype:
    """The smallest dtype that holds a sum of ``n_summed`` values of ``dtype`` exactly.

    Integers and bool: the smallest of uint8/16/32/64 (unsigned and bool data) or
    int8/16/32/64 (signed) holding ``n_summed * min`` and ``n_summed * max``, where ``(min,
    max)`` is ``value_range`` when given (the values the data can really take, e.g. a 12-bit
    detector in uint16, or an earlier binning's result) and the dtype's range otherwise.
    float16 -> float32; other floats are kept.
    """
    dtype = np.dtype(dtype)
    if dtype == np.float16:
        return np.dtype(np.float32)
    if dtype.kind not in "uib":
        return dtype
    if value_range is None:
        value_range = (0, 1) if dtype.kind == "b" else (np.iinfo(dtype).min, np.iinfo(dtype).max)
    lo, hi = int(value_range[0]) * n_summed, int(value_range[1]) * n_summed
    for candidate in (
        (np.int8, np.int16, np.int32, np.int64)
        if dtype.kind == "i"
        else (np.uint8, np.uint16, np.uint32, np.uint64)
    ):
        info = np.iinfo(candidate)
        if info.min <= lo and hi <= info.max:
            return np.dtype(candidate)
    return np.dtype(np.int64 if dtype.kind == "i" else np.uint64)


def narrow(result: Array, dtype: npt.DTypeLike) -> Array:
    """``result.astype(dtype)``; raises ``OverflowError`` if an integer value does not fit."""
    xp = array_module(result)
    dtype = np.dtype(dtype)
    if dtype.kind in "ui" and result.size and result.dtype != dtype:
        info = np.iinfo(dtype)
        lo, hi = result.min(), result.max()
        if lo < info.min or hi > info.max:
            raise OverflowError(
                f"binned values span [{lo}, {hi}], outside {dtype} "
                f"[{info.min}, {info.max}]; choose a wider dtype"
            )
    return result.astype(dtype, copy=False) if xp is np else result.astype(dtype)


def bin_frames(block: Array, factor: int, dtype: npt.DTypeLike | None = None) -> Array:
    """Sum ``factor x factor`` pixel blocks of the last two axes.

    block: ``(..., Qx, Qy)``; returns ``(..., Qx // factor, Qy // factor)`` (trailing remainder
    rows/columns cropped). Accumulates in ``accumulator_dtype(block.dtype, factor**2)`` (or in
    ``dtype`` if that is a float), then narrows to ``dtype`` (default: the accumulator).
    """
    factor = int(factor)
    acc = accumulator_dtype(block.dtype, factor * factor)
    if dtype is not None and np.dtype(dtype).kind in "fc":
        acc = np.dtype(dtype)  # py4DSTEM's bin2D casts first and accumulates in the float dtype
    *lead, qx, qy = block.shape
    ox, oy = qx // factor, qy // factor
    xp = array_module(block)
    if xp is np and block.dtype != np.bool_:
        out = np.empty((int(np.prod(lead, dtype=np.int64)), ox, oy), dtype=acc)
        start = 0
        batch = max(COPY_BYTES // (qx * qy * block.dtype.itemsize), 1)
        for frames in frame_stacks(block):
            # C-contiguous native frames are used in place; others (a stepped selection, a
            # file's frames with headers between them, big-endian pixels) are copied in
            # batches of at most COPY_BYTES
            for first in range(0, frames.shape[0], batch):
                part = frames[first : first + batch]
                n = part.shape[0]
                _bin_frames_loop(
                    np.ascontiguousarray(part, dtype=native_dtype(part.dtype)),
                    factor,
                    out[start : start + n],
                )
                start += n
    elif xp is not np and cuda_launch.enabled():  # cupy chunks: our numba.cuda kernel
        from .cuda_binning import bin_frames_cuda

        out = bin_frames_cuda(block.reshape(-1, qx, qy), factor, acc)
    else:
        frames = block[..., : ox * factor, : oy * factor].reshape(-1, ox, factor, oy, factor)
        out = frames.sum(axis=(2, 4), dtype=acc)
    out = out.reshape(*lead, ox, oy)
    return out if dtype is None else narrow(out, dtype)


@numba.njit(nogil=True, cache=True)
def _bin_frames_loop(frames, factor, out):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    n, ox, oy = out.shape
    for i in range(n):
        for x in range(ox):
            orow = out[i, x]
            orow[:] = 0
            for dx in range(factor):
                row = frames[i, x * factor + dx]
                for dy in range(factor):
                    for y in range(oy):
                        orow[y] += row[y * factor + dy]


def bin_scan(block: Array, factor: int, dtype: npt.DTypeLike | None = None) -> Array:
    """Sum ``factor x factor`` blocks of scan positions (the first two axes).

    block: ``(Rx, Ry, ...)`` with ``Rx`` and ``Ry`` multiples of ``factor``; returns
    ``(Rx // factor, Ry // factor, ...)``, accumulated as in ``bin_frames``.
    """
    factor = int(factor)
    acc = accumulator_dtype(block.dtype, factor * factor)
    xp = array_module(block)
    out = xp.array(block[0::factor, 0::factor], dtype=acc)
    for dx in range(factor):
        for dy in range(factor):
            if dx or dy:
                out += block[dx::factor, dy::factor]
    return out if dtype is None else narrow(out, dtype)
