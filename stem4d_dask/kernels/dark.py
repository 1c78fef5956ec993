"""Dark-reference kernels: edge-strip sums of chosen frames, and dark subtraction."""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from . import Array, array_module


def strip_sums(
    block: Array,
    selected: Array,
    width: int,
    side: Literal["start", "end"],
    direction: Literal["x", "y"],
) -> Array:
    """Sum, over the frames of ``block`` ``(n1, n2, Qx, Qy)`` where ``selected`` ``(n1, n2)`` is
    True, of an edge strip collapsed across its width.

    direction ``'x'``: the first (``side='start'``) or last ``width`` detector rows, summed over
    those rows -> float64 ``(Qy,)``; ``'y'``: the first/last ``width`` columns -> ``(Qx,)``.
    """
    xp = array_module(block)
    frames = block[xp.asarray(selected)]  # (k, Qx, Qy)
    edge = slice(0, width) if side == "start" else slice(-width, None)
    if direction == "x":
        return frames[:, edge, :].sum(axis=(0, 1), dtype=np.float64)
    return frames[:, :, edge].sum(axis=(0, 2), dtype=np.float64)


def subtract_reference(block: Array, reference: Array, dtype: npt.DTypeLike) -> Array:
    """``block`` ``(..., Qx, Qy)`` minus ``reference`` ``(Qx, Qy)``, computed and returned in
    float ``dtype``."""
    xp = array_module(block)
    out = block.astype(dtype)
    out -= xp.asarray(reference, dtype=dtype)
    return out
