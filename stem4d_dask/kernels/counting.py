"""Electron-counting kernels: thresholded, dark-subtracted local maxima of every frame, with
optional sub-pixel centroids and binning, returned as per-chunk CSR event lists.

An :class:`EventBlock` holds the events of a block of scan positions ``(n1, n2)`` in C order:
``indptr`` (int64, ``n1 * n2 + 1``) indexes ``qx``, ``qy`` (detector positions: uint16 pixel
indices, or float32 pixel coordinates with sub-pixel positions, the centre of pixel ``i`` at
``i``) so the events of scan position ``k`` are ``qx[indptr[k]:indptr[k+1]]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

import numba
import numpy as np
import numpy.typing as npt

from ..backend import to_host
from . import Array, array_module, cuda_launch, native_dtype


class EventBlock(NamedTuple):
    """Electron events of a block of scan positions, CSR over the positions (C order)."""

    indptr: np.ndarray  # int64 (n1 * n2 + 1,)
    qx: np.ndarray  # uint16 or float32 (n_events,)
    qy: np.ndarray
    scan_shape: tuple  # (n1, n2)


def count_frames(
    block: Array,
    dark: Array,
    thresh_bkgrnd: float,
    thresh_xray: float,
    *,
    sub_pixel: bool = True,
    binfactor: int = 1,
    centroid_floor: float = 0.0,
) -> EventBlock:
    """Electron events of every frame of ``block`` ``(n1, n2, Qx, Qy)`` -> :class:`EventBlock`.

    With ``w = frame - dark`` (``dark``: ``(Qx, Qy)``), a pixel is an event when
    ``thresh_bkgrnd < w < thresh_xray`` and ``w`` is a strict maximum of its 8 neighbours, ties
    going to the first pixel in C order (a neighbour at or above the X-ray threshold, e.g. next
    to an X-ray hit, never yields an event). ``sub_pixel``: the position is the centroid of
    ``max(w - centroid_floor, 0)`` in the 3x3 window (clipped at the edges), float32 (a floor a
    little above the noise keeps read noise out of the centroid); else the pixel, uint16.
    ``binfactor`` > 1 maps positions to binned pixels (``(q + 0.5) / b - 0.5``, rounded down to
    the binned pixel without sub-pixel) and drops events in the cropped remainder.
    """
    n1, n2, qx, qy = block.shape
    if array_module(block) is not np:  # cupy: our numba.cuda kernels where they run
        count: Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]] = _count_array_module
        if cuda_launch.enabled():
            from .cuda_counting import count_events_cuda

            count = count_events_cuda
        indptr, xs, ys = count(
            block.reshape(n1 * n2, qx, qy),
            dark,
            thresh_bkgrnd,
            thresh_xray,
            sub_pixel,
            centroid_floor,
        )
        return _finish_events(indptr, xs, ys, (n1, n2), qx, qy, sub_pixel, binfactor)
    frames = np.ascontiguousarray(block, dtype=native_dtype(block.dtype)).reshape(n1 * n2, qx, qy)
    dark = np.ascontiguousarray(dark, dtype=np.float32)
    capacity = max(1024, frames.shape[0] * qx * qy // 256)
    while True:
        xs = np.empty(capacity, np.float32)
        ys = np.empty(capacity, np.float32)
        indptr = np.empty(frames.shape[0] + 1, np.int64)
        found = _count(
            frames,
            dark,
            np.float32(thresh_bkgrnd),
            np.float32(thresh_xray),
            bool(sub_pixel),
            np.float32(centroid_floor),
            xs,
            ys,
            indptr,
        )
        if found >= 0:
            break
        capacity *= 4
    return _finish_events(indptr, xs[:found], ys[:found], (n1, n2), qx, qy, sub_pixel, binfactor)


def _finish_events(
    indptr: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    scan_shape: tuple[int, int],
    qx: int,
    qy: int,
    sub_pixel: bool,
    binfactor: int,
) -> EventBlock:
    if binfactor > 1:
        xs, ys, indptr = _bin_events(xs, ys, indptr, int(binfactor), qx, qy, sub_pixel)
    if sub_pixel:
        return EventBlock(indptr, xs, ys, scan_shape)
    return EventBlock(indptr, xs.astype(np.uint16), ys.astype(np.uint16), scan_shape)


def _count_array_module(
    frames: Array, dark: Array, t_bg: float, t_xray: float, sub_pixel: bool, floor: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised version of the compiled loop for GPU (cupy) frames ``(n, Qx, Qy)``: the same
    events, found with shifted comparisons; only the events come back to the host."""
    xp = array_module(frames)
    n, qx, qy = frames.shape
    w = frames.astype(xp.float32) - xp.asarray(dark, dtype=xp.float32)
    padded = xp.pad(w, ((0, 0), (1, 1), (1, 1)), constant_values=-xp.inf)
    event = (w > t_bg) & (w < t_xray)
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            if dx == 0 and dy == 0:
                continue
            nb = padded[:, 1 + dx : 1 + dx + qx, 1 + dy : 1 + dy + qy]
            before = dx < 0 or (dx == 0 and dy < 0)
            event &= (nb < w) if before else (nb <= w)
            event &= nb < t_xray
    frame, x, y = xp.nonzero(event)
    if sub_pixel:
        total = xp.zeros(x.shape, xp.float64)
        sx, sy = xp.zeros_like(total), xp.zeros_like(total)
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                v = xp.maximum(padded[frame, x + 1 + dx, y + 1 + dy] - floor, 0)
                v = v.astype(xp.float64)
                total += v
                sx += v * (x + dx)
                sy += v * (y + dy)
        xs, ys = sx / total, sy / total
    else:
        xs, ys = x, y
    counts = xp.bincount(frame, minlength=n)
    indptr = xp.concatenate([xp.zeros(1, xp.int64), xp.cumsum(counts).astype(xp.int64)])
    host = (lambda a: a.get()) if hasattr(indptr, "get") else np.asarray
    return host(indptr), host(xs).astype(np.float32), host(ys).astype(np.float32)


def _bin_events(
    xs: np.ndarray, ys: np.ndarray, indptr: np.ndarray, b: int, qx: int, qy: int, sub_pixel: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if sub_pixel:
        bx, by = (xs + 0.5) / b - 0.5, (ys + 0.5) / b - 0.5
    else:
        bx, by = np.floor(xs / b), np.floor(ys / b)
    keep = (np.rint(bx) < qx // b) & (np.rint(by) < qy // b)
    frame = np.repeat(np.arange(indptr.size - 1), np.diff(indptr))
    counts = np.bincount(frame[keep], minlength=indptr.size - 1)
    new_indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return bx[keep].astype(np.float32), by[keep].astype(np.float32), new_indptr


def events_to_dense(
    events: EventBlock, detector_shape: tuple[int, int], dtype: npt.DTypeLike = np.bool_
) -> np.ndarray:
    """``(n1, n2, Qx, Qy)`` array with each event added at its (rounded) pixel."""
    n1, n2 = events.scan_shape
    qx, qy = detector_shape
    out = np.zeros((n1 * n2, qx, qy), dtype=dtype)
    frame = np.repeat(np.arange(n1 * n2), np.diff(events.indptr))
    x = np.rint(events.qx).astype(np.int64)
    y = np.rint(events.qy).astype(np.int64)
    if dtype == np.bool_:
        out[frame, x, y] = True
    else:
        np.add.at(out, (frame, x, y), 1)
    return out.reshape(n1, n2, qx, qy)


@numba.njit(nogil=True, cache=True)
def _count(frames, dark, t_bg, t_xray, sub_pixel, floor, xs, ys, indptr):  # type: ignore[no-untyped-def]  # pragma: no cover
    n, qx, qy = frames.shape
    rows = np.empty((3, qy + 2), np.float32)  # w of rows x-1, x, x+1, padded with -inf
    k = 0
    capacity = xs.shape[0]
    for i in range(n):
        indptr[i] = k
        rows[:, 0] = -np.inf
        rows[:, qy + 1] = -np.inf
        rows[0, 1 : qy + 1] = -np.inf
        _fill_row(frames, dark, i, 0, rows[1])
        for x in range(qx):
            cur = rows[(x + 1) % 3]
            nxt = rows[(x + 2) % 3]
            prev = rows[x % 3]
            if x + 1 < qx:
                _fill_row(frames, dark, i, x + 1, nxt)
            else:
                nxt[1 : qy + 1] = -np.inf
            for y in range(1, qy + 1):
                w = cur[y]
                if w <= t_bg or w >= t_xray:
                    continue
                if not _is_maximum(prev, cur, nxt, y, w, t_xray):
                    continue
                if k == capacity:
                    return -1
                if sub_pixel:
                    cx, cy = _centroid(prev, cur, nxt, x, y, floor)
                    xs[k] = cx
                    ys[k] = cy
                else:
                    xs[k] = x
                    ys[k] = y - 1
                k += 1
    indptr[n] = k
    return k


@numba.njit(inline="always")
def _fill_row(frames, dark, i, x, row):  # type: ignore[no-untyped-def]  # pragma: no cover
    qy = frames.shape[2]
    for y in range(qy):
        row[y + 1] = np.float32(frames[i, x, y]) - dark[x, y]


@numba.njit(inline="always")
def _is_maximum(prev, cur, nxt, y, w, t_xray):  # type: ignore[no-untyped-def]  # pragma: no cover
    """``w = cur[y]`` above its 8 neighbours: strictly above the ones before it in C order
    (row above, left), at least equal to the ones after; no neighbour at the X-ray level."""
    for v in range(y - 1, y + 2):
        a, c = prev[v], nxt[v]
        if a >= w or c > w or a >= t_xray or c >= t_xray:
            return False
    left, right = cur[y - 1], cur[y + 1]
    if left >= w or right > w or left >= t_xray or right >= t_xray:
        return False
    return True


@numba.njit(inline="always")
def _centroid(prev, cur, nxt, x, y, floor):  # type: ignore[no-untyped-def]  # pragma: no cover
    """Centroid of ``max(w - floor, 0)`` in the 3x3 window (row ``x``, padded column ``y``)."""
    total = 0.0
    sx = 0.0
    sy = 0.0
    for dx, row in ((-1, prev), (0, cur), (1, nxt)):
        for dy in range(-1, 2):
            w = row[y + dy] - floor
            if w > 0:
                total += w
                sx += w * (x + dx)
                sy += w * (y - 1 + dy)
    if total == 0:
        return float(x), float(y - 1)
    return sx / total, sy / total


def fit_thresholds(
    values: npt.ArrayLike, thresh_bkgrnd_Nsigma: float = 4, thresh_xray_Nsigma: float = 10
) -> tuple[float, float, np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Background and X-ray thresholds from pooled dark-subtracted pixel values (1D float).

    ``thresh_xray = mean + thresh_xray_Nsigma * std`` over all values, but at least ``mu`` plus
    three times the median above-threshold value (sparse data whose sample holds no X-ray have a
    small std, which would cut electrons). A histogram of the values
    within ``mean +- thresh_xray_Nsigma * std`` (clipped to the data; unit-wide bins for
    integer-valued data, up to 1000 bins) is fitted with a Gaussian at the bin centres, over
    the noise peak (within 5 robust sigmas of the most populated bin);
    ``thresh_bkgrnd = mu + thresh_bkgrnd_Nsigma * |sigma|``.

    Returns ``(thresh_bkgrnd, thresh_xray, counts, edges, (A, mu, sigma))``.
    """
    from scipy.optimize import curve_fit

    values = np.asarray(values, dtype=np.float64).ravel()
    mean, std = values.mean(), values.std()
    thresh_xray = mean + thresh_xray_Nsigma * std
    lo = max(values.min(), mean - thresh_xray_Nsigma * std)
    hi = min(values.max(), mean + thresh_xray_Nsigma * std)
    integer = np.allclose(values[:1000], np.rint(values[:1000]))
    width = max(1.0, np.ceil((hi - lo) / 1000)) if integer else max((hi - lo) / 1000, 1e-12)
    start = np.floor(lo) - 0.5 if integer else lo
    edges = np.arange(start, hi + width, width)
    counts, edges = np.histogram(values, edges)
    centres = (edges[:-1] + edges[1:]) / 2
    peak = int(np.argmax(counts))
    below = values[values <= centres[peak]]
    robust = np.median(np.abs(below - centres[peak])) / 0.6745 if below.size else std
    robust = max(robust, width)
    core = np.abs(centres - centres[peak]) <= 5 * robust
    gauss = lambda x, a, mu, sigma: a * np.exp(-0.5 * ((x - mu) / sigma) ** 2)  # noqa: E731
    popt, _ = curve_fit(
        gauss, centres[core], counts[core], p0=(counts[peak], centres[peak], robust), maxfev=10000
    )
    a, mu, sigma = (float(v) for v in popt)
    thresh_bkgrnd = mu + thresh_bkgrnd_Nsigma * abs(sigma)
    signal = values[values > thresh_bkgrnd]
    if signal.size:  # never below 3x the typical electron pixel: sparse samples without X-rays
        thresh_xray = max(thresh_xray, mu + 3 * (np.median(signal) - mu))
    return thresh_bkgrnd, float(thresh_xray), counts, edges, (a, mu, abs(sigma))


def pooled_values(
    frames_and_masks: Iterable[tuple[np.ndarray, np.ndarray]], dark: np.ndarray
) -> np.ndarray:
    """Dark-subtracted values of the selected frames: ``[(block, local_mask), ...]`` -> 1D."""
    parts = [
        to_host(block)[np.asarray(local)].astype(np.float64) - to_host(dark)
        for block, local in frames_and_masks
    ]
    return np.concatenate([p.ravel() for p in parts])
