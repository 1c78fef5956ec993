"""Centre-of-mass kernel: one pass over each frame, no chunk-sized temporaries.

For every frame ``I`` (optionally weighted by a detector mask ``w``) it accumulates
``S = sum w I``, ``Sx = sum w I x`` and ``Sy = sum w I y`` (``x``, ``y``: pixel indices from the
corner, as py4DSTEM) and returns ``(S, Sx / S, Sy / S)``; ``S == 0`` gives NaN positions.
Integer frames with no mask or a boolean mask are summed in int64, exactly, without converting
any pixel to float and with only additions per pixel (row and column sums; that is what lets it
beat a plain float sum); other inputs in float64.
"""

from __future__ import annotations

import numba
import numpy as np

from . import Array, ArrayModule, array_module, cuda_launch, frame_rows, frame_stacks, native
from .virtual import masked_sums_stack


def center_of_mass_frames(block: Array, mask: Array | None = None) -> Array:
    """``(..., Qx, Qy)`` frames -> float64 ``(..., 3)``: intensity, com_x, com_y (pixels).

    Frames are read in place when each row is contiguous, whatever lies between frames (a
    strided view of a file's frames with headers between them) and in either byte order
    (big-endian unsigned pixels are swapped as they are read); other layouts are copied."""
    xp = array_module(block)
    *lead, qx, qy = block.shape
    if xp is not np:  # cupy: our numba.cuda kernel where it runs, else a matrix product
        if cuda_launch.enabled():
            from .cuda_com import com_sums

            return com_from_sums(com_sums(native(block), mask))
        return com_from_sums(masked_sums_stack(native(block), com_masks((qx, qy), mask, xp)))
    if block.dtype == np.bool_:
        block = block.view(np.uint8)
    out = np.empty((int(np.prod(lead, dtype=np.int64)), 3), dtype=np.float64)
    integer = block.dtype.kind in "ui" and (mask is None or np.asarray(mask).dtype == bool)
    if integer:
        weights = None if mask is None else np.asarray(mask, np.uint8)
    else:
        weights = np.ones((qx, qy)) if mask is None else np.asarray(mask, np.float64)
    start = 0
    for frames in frame_stacks(block):  # views: a stepped selection is not copied
        n = frames.shape[0]
        if integer:
            flat, stride, swap = frame_rows(frames)
            _com_integer(flat, stride, n, qx, qy, swap, weights, out[start : start + n])
        else:
            _com_float(np.ascontiguousarray(native(frames)), weights, out[start : start + n])
        start += n
    return out.reshape(*lead, 3)


@numba.njit(inline="always")
def _swapped(v, swap):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """``v`` (int64 holding an unsigned value of ``swap`` bytes) with its bytes reversed."""
    if swap == 2:
        return ((v >> 8) & 0xFF) | ((v & 0xFF) << 8)
    if swap == 4:
        return ((v >> 24) & 0xFF) | ((v >> 8) & 0xFF00) | ((v & 0xFF00) << 8) | ((v & 0xFF) << 24)
    return v


@numba.njit(nogil=True, cache=True)
def _com_integer(flat, stride, n, qx, qy, swap, weights, out):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    # rows are contiguous slices of ``flat`` (see frame_rows). Per pixel only additions: the
    # row sums give S and Sx, the column sums Sy (= sum_y y * column_y, once per frame). The
    # swap and weights tests are loop-invariant: the compiler hoists them and vectorises each
    # inner loop
    columns = np.zeros(qy, np.int64)
    for i in range(n):
        columns[:] = 0
        total = np.int64(0)
        sum_x = np.int64(0)
        for x in range(qx):
            begin = i * stride + x * qy
            row = flat[begin : begin + qy]
            row_sum = np.int64(0)
            if weights is None:
                for y in range(qy):
                    v = _swapped(np.int64(row[y]), swap)
                    row_sum += v
                    columns[y] += v
            else:
                w = weights[x]
                for y in range(qy):
                    v = _swapped(np.int64(row[y]), swap) * w[y]
                    row_sum += v
                    columns[y] += v
            total += row_sum
            sum_x += row_sum * x
        sum_y = np.int64(0)
        for y in range(qy):
            sum_y += columns[y] * y
        _finish(out, i, total, sum_x, sum_y)


@numba.njit(nogil=True, cache=True)
def _com_float(frames, weights, out):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    n, qx, qy = frames.shape
    for i in range(n):
        total = 0.0
        sum_x = 0.0
        sum_y = 0.0
        for x in range(qx):
            row = 0.0
            row_y = 0.0
            for y in range(qy):
                v = frames[i, x, y] * weights[x, y]
                row += v
                row_y += v * y
            total += row
            sum_x += row * x
            sum_y += row_y
        _finish(out, i, total, sum_x, sum_y)


@numba.njit(inline="always")
def _finish(out, i, total, sum_x, sum_y):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    out[i, 0] = total
    if total == 0:
        out[i, 1] = np.nan
        out[i, 2] = np.nan
    else:
        out[i, 1] = sum_x / total
        out[i, 2] = sum_y / total


def com_masks(shape: tuple[int, int], mask: Array | None = None, xp: ArrayModule = np) -> Array:
    """The three detector weights of a centre of mass, ``(Qx, Qy, 3)`` float64: ``w``,
    ``w * x`` and ``w * y`` (pixel indices from the corner; ``w`` = ``mask`` or ones). Masked
    sums with them (:func:`stem4d_dask.kernels.virtual.masked_sums_stack`, a virtual detector)
    give ``S, Sx, Sy``, which :func:`com_from_sums` turns into a centre of mass."""
    qx, qy = shape
    w = xp.ones((qx, qy)) if mask is None else xp.asarray(mask, dtype=xp.float64)
    x, y = xp.meshgrid(
        xp.arange(qx, dtype=xp.float64), xp.arange(qy, dtype=xp.float64), indexing="ij"
    )
    return xp.stack([w, w * x, w * y], axis=-1)


def com_from_sums(sums: Array) -> Array:
    """``(..., 3)`` sums ``S, Sx, Sy`` -> ``(..., 3)`` float64 ``S, Sx / S, Sy / S``, NaN
    positions where ``S == 0``: the finish step of every centre of mass (dense, GPU, events)."""
    xp = array_module(sums)
    total = sums[..., 0]
    empty = total == 0
    safe = xp.where(empty, 1, total)
    return xp.stack(
        [
            total,
            xp.where(empty, xp.nan, sums[..., 1] / safe),
            xp.where(empty, xp.nan, sums[..., 2] / safe),
        ],
        axis=-1,
    )
