"""Kernels: pure functions of one chunk (numpy or cupy); no dask, no xarray.

Each kernel takes its array module from its input, so one kernel serves CPU and GPU chunks.
"""

from __future__ import annotations

import numpy as np


def array_module(x):
    """``cupy`` when ``x`` is a cupy array, else ``numpy``."""
    if type(x).__module__.split(".")[0] == "cupy":
        import cupy
        return cupy
    return np


def frame_stacks(block):
    """``(..., Qx, Qy)`` numpy frames as a list of 3D ``(n, Qx, Qy)`` arrays in C order of the
    frames, without copying: the whole block when it is C-contiguous, else one view per index
    of the leading axes but the last (a chunk of a stepped or cropped selection). Compiled
    loops take any strides, so a selection is read in place instead of being copied first."""
    qx, qy = block.shape[-2:]
    if block.flags.c_contiguous or block.ndim <= 3:
        return [block.reshape(-1, qx, qy)]
    flat = block.reshape(-1, *block.shape[-3:]) if block.ndim > 4 else block
    return [flat[i] for i in range(flat.shape[0])]
