# mypy: disable-error-code="call-arg,call-overload,index,var-annotated,operator"
"""Electron counting on the GPU: the numba.cuda kernels that replace :mod:`.counting`'s CPU loop
for cupy chunks (called through :func:`count_events_cuda`, see :mod:`.cuda_launch`).

The same events as the CPU loop, in the same order, with the same float32 arithmetic: with
``w = float32(frame) - dark``, a pixel is an event when ``thresh_bkgrnd < w < thresh_xray`` and
it is a strict maximum of its 8 neighbours (ties to the first pixel in C order, pixels outside
the frame at ``-inf``) with no neighbour at the X-ray level; its sub-pixel position is the
centroid of ``max(w - floor, 0)`` in the 3x3 window, summed in float64 in the CPU's order.

Two passes, one thread per frame row: the first counts each row's events, a cumulative sum
gives every row its place in the output (so the events of a frame come out in C order, as on
the CPU), the second writes them there. Output arrays have exactly the events' size; only
they come back to the host.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import cuda

from ..backend import to_host
from . import Array, array_module
from .cuda_launch import THREADS, blocks, device_arrays


def count_events_cuda(
    frames: Array,
    dark: Array,
    thresh_bkgrnd: float,
    thresh_xray: float,
    sub_pixel: bool,
    centroid_floor: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Events of ``(n, Qx, Qy)`` frames (cupy; numpy under the simulator) with ``dark``
    ``(Qx, Qy)`` -> host arrays ``(indptr int64 (n + 1,), qx float32, qy float32)``: CSR over
    the frames, sub-pixel centroids or pixel indices (as :func:`.counting.count_frames`)."""
    xp = array_module(frames)
    n, qx, qy = frames.shape
    if n * qx * qy == 0:
        empty = np.empty(0, np.float32)
        return np.zeros(n + 1, np.int64), empty, empty
    dark = xp.asarray(dark, dtype=xp.float32)
    t_bg, t_xray = np.float32(thresh_bkgrnd), np.float32(thresh_xray)
    counts = xp.empty(n * qx, xp.int64)
    frames, dark, counts = device_arrays(frames, dark, counts)
    grid = blocks(n * qx)
    _row_counts[grid, THREADS](frames, dark, t_bg, t_xray, counts)
    ends = xp.cumsum(counts)
    total = int(ends[-1])
    starts = ends - counts
    xs = xp.empty(max(total, 1), xp.float32)
    ys = xp.empty(max(total, 1), xp.float32)
    if total:
        floor = np.float32(centroid_floor)
        starts, xs, ys = device_arrays(starts, xs, ys)
        _row_events[grid, THREADS](
            frames, dark, t_bg, t_xray, bool(sub_pixel), floor, starts, xs, ys
        )
    indptr = xp.concatenate([starts[::qx], ends[-1:]])
    return to_host(indptr), to_host(xs[:total]), to_host(ys[:total])


@cuda.jit(device=True)
def _w(frames, dark, i, x, y):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """``float32(frames[i, x, y]) - dark[x, y]``, ``-inf`` outside the frame."""
    if x < 0 or y < 0 or x >= frames.shape[1] or y >= frames.shape[2]:
        return numba.float32(-math.inf)
    return numba.float32(frames[i, x, y]) - dark[x, y]


@cuda.jit(device=True)
def _is_event(frames, dark, i, x, y, t_bg, t_xray):  # type: ignore[no-untyped-def]  # pragma: no cover
    w = _w(frames, dark, i, x, y)
    if w <= t_bg or w >= t_xray:
        return False
    for dy in range(-1, 2):  # rows above and below: strictly above, at least equal
        a = _w(frames, dark, i, x - 1, y + dy)
        c = _w(frames, dark, i, x + 1, y + dy)
        if a >= w or c > w or a >= t_xray or c >= t_xray:
            return False
    left = _w(frames, dark, i, x, y - 1)
    right = _w(frames, dark, i, x, y + 1)
    return not (left >= w or right > w or left >= t_xray or right >= t_xray)


@cuda.jit
def _row_counts(frames, dark, t_bg, t_xray, counts):  # type: ignore[no-untyped-def]  # pragma: no cover
    n, qx, qy = frames.shape
    for r in range(cuda.grid(1), n * qx, cuda.gridsize(1)):
        i = r // qx
        x = r - i * qx
        found = 0
        for y in range(qy):
            if _is_event(frames, dark, i, x, y, t_bg, t_xray):
                found += 1
        counts[r] = found


@cuda.jit
def _row_events(frames, dark, t_bg, t_xray, sub_pixel, floor, starts, xs, ys):  # type: ignore[no-untyped-def]  # pragma: no cover
    n, qx, qy = frames.shape
    for r in range(cuda.grid(1), n * qx, cuda.gridsize(1)):
        i = r // qx
        x = r - i * qx
        k = starts[r]
        for y in range(qy):
            if not _is_event(frames, dark, i, x, y, t_bg, t_xray):
                continue
            if sub_pixel:
                total = numba.float64(0)
                sx = numba.float64(0)
                sy = numba.float64(0)
                for dx in range(-1, 2):
                    for dy in range(-1, 2):
                        w = _w(frames, dark, i, x + dx, y + dy) - floor
                        if w > 0:
                            wf = numba.float64(w)
                            total += wf
                            sx += wf * (x + dx)
                            sy += wf * (y + dy)
                if total == 0:
                    xs[k] = x
                    ys[k] = y
                else:
                    xs[k] = sx / total
                    ys[k] = sy / total
            else:
                xs[k] = x
                ys[k] = y
            k += 1
