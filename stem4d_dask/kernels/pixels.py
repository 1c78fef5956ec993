"""Bad-pixel kernels: hot-pixel detection on a mean pattern, and an order-independent repair of
listed pixels by the median of their good neighbours, for every frame of a chunk.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ..backend import to_host
from . import Array, array_module

# the 20 neighbours of py4DSTEM's hot-pixel window: a 5x5 square without its corners and centre
CROSS_OFFSETS = tuple(
    (dx, dy)
    for dx in range(-2, 3)
    for dy in range(-2, 3)
    if (dx, dy) != (0, 0) and not (abs(dx) == 2 and abs(dy) == 2)
)
FRAMES_PER_BATCH = 256  # bounds the (frames, pixels, neighbours) gather


def hot_pixel_mask(mean: Array, thresh: float, ind_compare: int = 1) -> Array:
    """Pixels of the mean pattern ``mean`` ``(Qx, Qy)`` brighter by more than ``thresh`` than the
    ``ind_compare``-th brightest (0 = brightest) of their 20 neighbours (5x5 window without
    corners and centre). Windows are clipped at the detector edges (no wrap-around); a pixel with
    fewer than ``ind_compare + 1`` neighbours is never flagged. Returns bool ``(Qx, Qy)``."""
    xp = array_module(mean)
    mean = xp.asarray(mean, dtype=xp.float64)
    qx, qy = mean.shape
    padded = xp.full((qx + 4, qy + 4), -xp.inf)
    padded[2:-2, 2:-2] = mean
    stack = xp.stack(
        [padded[2 + dx : 2 + dx + qx, 2 + dy : 2 + dy + qy] for dx, dy in CROSS_OFFSETS]
    )
    stack = -xp.sort(-stack, axis=0)  # descending; missing (-inf) neighbours sort last
    compare = stack[int(ind_compare)]
    return xp.isfinite(compare) & ((mean - compare) > thresh)


def repair_plan(mask: npt.ArrayLike, half_width: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each True pixel of ``mask`` ``(Qx, Qy)``: the flat indices of the unmasked pixels in
    its ``(2 h + 1)``-square window (clipped at the edges), widening ``h`` until there is one.

    Returns a list of ``(targets (m,), neighbours (m, c))`` groups, one per neighbour count
    ``c``, flat indices into a frame. A pixel with no unmasked pixel anywhere is left out.
    A cupy ``mask`` is copied to the host (the plan is numpy: small, made once).
    """
    mask = np.asarray(to_host(mask), dtype=bool)
    qx, qy = mask.shape
    groups: dict[int, tuple[list, list]] = {}
    for x, y in zip(*np.nonzero(mask), strict=True):
        for h in range(int(half_width), max(qx, qy) + 1):
            x0, x1, y0, y1 = max(x - h, 0), min(x + h + 1, qx), max(y - h, 0), min(y + h + 1, qy)
            wx, wy = np.nonzero(~mask[x0:x1, y0:y1])
            if wx.size:
                targets, neighbours = groups.setdefault(wx.size, ([], []))
                targets.append(x * qy + y)
                neighbours.append((wx + x0) * qy + (wy + y0))
                break
    return [(np.array(t, dtype=np.int64), np.array(n, dtype=np.int64)) for t, n in groups.values()]


def repair_pixels(block: Array, plan: Sequence[tuple[np.ndarray, np.ndarray]]) -> Array:
    """Replace, in a copy of ``block`` ``(..., Qx, Qy)``, each planned pixel of every frame by
    the median of its planned neighbours (values of the input frame, so the order of repairs
    does not matter). Integer data are rounded to nearest. Returns ``block`` itself when the
    plan is empty."""
    if not plan:
        return block
    xp = array_module(block)
    out = block.copy()
    flat = out.reshape(-1, block.shape[-2] * block.shape[-1])
    source = block.reshape(flat.shape)
    integer = np.dtype(block.dtype).kind in "uib"
    for start in range(0, flat.shape[0], FRAMES_PER_BATCH):
        frames = source[start : start + FRAMES_PER_BATCH]
        for targets, neighbours in plan:
            values = frames[:, xp.asarray(neighbours)].astype(xp.float64)
            median = xp.median(values, axis=-1)
            if integer:
                median = xp.rint(median)
            flat[start : start + FRAMES_PER_BATCH, xp.asarray(targets)] = median
    return out
