# mypy: disable-error-code="call-arg,call-overload,index,var-annotated,operator"
"""Centre of mass on the GPU: the numba.cuda kernel that replaces :mod:`.com`'s CPU loops for
cupy chunks (called through :func:`com_sums`, see :mod:`.cuda_launch`).

One thread block per frame: each thread sums ``S = sum w I``, ``Sx = sum w I x`` and ``Sy = sum
w I y`` over a stride of the frame's pixels, then the block adds the threads' sums in shared
memory. As on the CPU, integer (and boolean) frames with no mask or a boolean mask accumulate
in int64, exactly (so the centre of mass equals the CPU's to the last bit), other inputs in
float64 (equal to the CPU's within rounding: the order of the additions differs). The frames
are read where they lie (any strides, any real dtype in native byte order): no float copy of the
chunk, unlike a matrix product with the masks.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import cuda

from . import Array, array_module
from .cuda_launch import MAX_BLOCKS, THREADS, device_arrays


def com_sums(block: Array, mask: Array | None = None) -> Array:
    """``(..., Qx, Qy)`` frames (cupy; numpy under the simulator) -> float64 ``(..., 3)`` sums
    ``S, Sx, Sy`` (pixel indices from the corner), of the frames' array module; finish with
    :func:`stem4d_dask.kernels.com.com_from_sums`."""
    xp = array_module(block)
    *lead, qx, qy = block.shape
    frames = block.reshape(-1, qx, qy)
    n = frames.shape[0]
    integer = block.dtype.kind in "uib" and (mask is None or np.dtype(mask.dtype) == np.bool_)
    if integer:
        weights = xp.ones((qx, qy), xp.uint8) if mask is None else xp.asarray(mask, xp.uint8)
        sums = xp.zeros((n, 3), xp.int64)
        kernel = _com_integer
    else:
        weights = xp.ones((qx, qy)) if mask is None else xp.asarray(mask, xp.float64)
        sums = xp.zeros((n, 3), xp.float64)
        kernel = _com_float
    if n and qx * qy:
        kernel[min(n, MAX_BLOCKS), THREADS](*device_arrays(frames, weights, sums))
    return sums.astype(xp.float64).reshape(*lead, 3)


@cuda.jit
def _com_integer(frames, weights, sums):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    part = cuda.shared.array((3, THREADS), numba.int64)
    t = cuda.threadIdx.x
    n, qx, qy = frames.shape
    for i in range(cuda.blockIdx.x, n, cuda.gridDim.x):
        total = numba.int64(0)
        sum_x = numba.int64(0)
        sum_y = numba.int64(0)
        for p in range(t, qx * qy, cuda.blockDim.x):
            x = p // qy
            y = p - x * qy
            v = numba.int64(frames[i, x, y]) * numba.int64(weights[x, y])
            total += v
            sum_x += v * x
            sum_y += v * y
        part[0, t] = total
        part[1, t] = sum_x
        part[2, t] = sum_y
        _reduce_and_store(part, t, sums, i)


@cuda.jit
def _com_float(frames, weights, sums):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    part = cuda.shared.array((3, THREADS), numba.float64)
    t = cuda.threadIdx.x
    n, qx, qy = frames.shape
    for i in range(cuda.blockIdx.x, n, cuda.gridDim.x):
        total = numba.float64(0)
        sum_x = numba.float64(0)
        sum_y = numba.float64(0)
        for p in range(t, qx * qy, cuda.blockDim.x):
            x = p // qy
            y = p - x * qy
            v = numba.float64(frames[i, x, y]) * weights[x, y]
            total += v
            sum_x += v * x
            sum_y += v * y
        part[0, t] = total
        part[1, t] = sum_x
        part[2, t] = sum_y
        _reduce_and_store(part, t, sums, i)


@cuda.jit(device=True)
def _reduce_and_store(part, t, sums, i):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """Add the block's per-thread sums ``part`` ``(3, THREADS)`` (a tree in shared memory) and
    store them in ``sums[i]``; every thread of the block calls it."""
    cuda.syncthreads()
    stride = cuda.blockDim.x // 2
    while stride > 0:
        if t < stride:
            for c in range(3):
                part[c, t] += part[c, t + stride]
        cuda.syncthreads()
        stride //= 2
    if t == 0:
        for c in range(3):
            sums[i, c] = part[c, 0]
    cuda.syncthreads()  # part is rewritten for the block's next frame
