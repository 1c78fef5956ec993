# mypy: disable-error-code="call-arg,call-overload,index,var-annotated,operator"
"""Detector binning on the GPU: the numba.cuda kernel that replaces :mod:`.binning`'s CPU loop
for cupy chunks (called through :func:`bin_frames_cuda`, see :mod:`.cuda_launch`).

One thread per output pixel sums its ``factor x factor`` input pixels in a register of the
accumulator dtype, in the CPU loop's order (rows of the block, then columns) with the same
casts, so results equal the CPU's exactly for every dtype (integers never wrap: the
accumulator is :func:`stem4d_dask.kernels.binning.accumulator_dtype`). Frames are read where they
lie (any strides), with no reshaped copy and no chunk-sized temporaries.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numba
import numpy as np
import numpy.typing as npt
from numba import cuda

from . import Array, array_module
from .cuda_launch import THREADS, blocks, device_arrays


def bin_frames_cuda(frames: Array, factor: int, acc: npt.DTypeLike) -> Array:
    """``(n, Qx, Qy)`` frames (cupy; numpy under the simulator) -> ``(n, Qx // factor, Qy //
    factor)`` of dtype ``acc``: sums of ``factor x factor`` pixel blocks (trailing remainder
    rows and columns cropped), of the frames' array module."""
    xp = array_module(frames)
    n, qx, qy = frames.shape
    out = xp.empty((n, qx // factor, qy // factor), dtype=np.dtype(acc))
    if out.size:
        frames, out = device_arrays(frames, out)
        _kernel(np.dtype(acc).str)[blocks(out.size), THREADS](frames, int(factor), out)
    return out


@functools.cache
def _kernel(acc: str) -> Callable:
    """The binning kernel accumulating in dtype ``acc`` (one compiled kernel per dtype)."""
    cast = numba.from_dtype(np.dtype(acc))

    @cuda.jit
    def bin_kernel(frames, factor, out):  # type: ignore[no-untyped-def]  # pragma: no cover
        n, ox, oy = out.shape
        per_frame = ox * oy
        for k in range(cuda.grid(1), n * per_frame, cuda.gridsize(1)):
            i = k // per_frame
            x = (k - i * per_frame) // oy
            y = k - i * per_frame - x * oy
            s = cast(0)
            for dx in range(factor):
                for dy in range(factor):
                    # the CPU loop's `out += frame value`, cast to the accumulator each step
                    s = cast(s + frames[i, x * factor + dx, y * factor + dy])
            out[i, x, y] = s

    return bin_kernel
