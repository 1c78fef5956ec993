"""Filtering a set of local maxima, as py4DSTEM's ``filter_2D_maxima``: absolute and relative
intensity thresholds, a minimum spacing (greedy, in list order) and a maximum count, plus the
check of the filter arguments shared with :func:`~stem4d_dask.kernels.maxima.get_maxima_2D`;
and the minimum-spacing suppression of many frames' maxima at once
(:func:`spacing_keep_frames`, for :mod:`stem4d_dask.kernels.maxima_chunk`).

A set of maxima is a numpy structured array ``(n,)`` with float64 fields ``x``, ``y`` (pixels;
``x`` along array axis 0) and ``intensity`` (:data:`~stem4d_dask.kernels.maxima.MAXIMA_DTYPE`).
Its differences from py4DSTEM 0.14.18 (errors naming the parameter instead of ``assert``, no
negative indices, always a new array) are listed in :mod:`stem4d_dask.kernels.maxima`.
"""

from __future__ import annotations

import numbers

import numba
import numpy as np
from scipy.spatial import cKDTree

from ..backend import to_host


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def check_filter_args(relativeToPeak: int, edgeBoundary: int, maxNumPeaks: int | None) -> None:
    """Check the filters' arguments, raising ``ValueError`` naming the parameter:
    ``relativeToPeak`` an int >= 0, ``edgeBoundary`` an int (pixels), ``maxNumPeaks`` None or an
    int >= 0."""
    if not (_is_int(relativeToPeak) and relativeToPeak >= 0):
        raise ValueError(
            f"relativeToPeak must be an int >= 0 (the index of the reference "
            f"peak), got {relativeToPeak!r}"
        )
    if not _is_int(edgeBoundary):
        raise ValueError(f"edgeBoundary must be an int (pixels), got {edgeBoundary!r}")
    if maxNumPeaks is not None and not (_is_int(maxNumPeaks) and maxNumPeaks >= 0):
        raise ValueError(f"maxNumPeaks must be None or an int >= 0, got {maxNumPeaks!r}")


def _spacing_keep(x: np.ndarray, y: np.ndarray, min_spacing: float) -> np.ndarray:
    """Greedy suppression in list order: peak ``j`` is dropped when an earlier *kept* peak ``i``
    has ``(x[j] - x[i])**2 + (y[j] - y[i])**2 < min_spacing**2``. ``x``, ``y``: ``(n,)`` float
    (pixels). Returns the ``(n,)`` bool keep-mask.

    The close pairs come from a k-d tree (searched with a slightly larger radius, then tested
    with py4DSTEM's exact expression). The greedy pass is done in rounds, each vectorised: a
    still-undecided peak with no undecided earlier neighbour is kept (its earlier neighbours are
    all dropped, by induction), and the later neighbours of kept peaks are dropped. This gives
    exactly the sequential result.
    """
    n = len(x)
    keep_state = np.zeros(n, dtype=np.int8)  # 0 undecided, 1 kept, 2 dropped
    finite = np.flatnonzero(np.isfinite(x) & np.isfinite(y))  # NaN/inf are never "close"
    if len(finite) >= 2:
        tree = cKDTree(np.column_stack([x[finite], y[finite]]))
        pairs = tree.query_pairs(r=float(min_spacing) * (1 + 1e-9), output_type="ndarray")
        a, b = finite[pairs[:, 0]], finite[pairs[:, 1]]
        a, b = np.minimum(a, b), np.maximum(a, b)
        close = ((x[b] - x[a]) ** 2 + (y[b] - y[a]) ** 2) < min_spacing**2
        a, b = a[close], b[close]
    else:
        a = b = np.zeros(0, dtype=np.intp)
    while True:
        undecided = keep_state == 0
        if not undecided.any():
            break
        blocked = np.zeros(n, dtype=bool)
        blocked[b[undecided[a]]] = True
        keep_state[undecided & ~blocked] = 1
        drop = (keep_state[a] == 1) & (keep_state[b] == 0)
        keep_state[b[drop]] = 2
    return keep_state == 1


def frame_starts(f: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """First index and count of each of the ``n`` frames in ``f`` (sorted, int ``(m,)``)."""
    count = np.bincount(f, minlength=n)
    start = np.zeros(n, dtype=np.int64)
    np.cumsum(count[:-1], out=start[1:])
    return start, count


def spacing_keep_frames(
    f: np.ndarray, x: np.ndarray, y: np.ndarray, min_spacing: float
) -> np.ndarray:
    """:func:`~stem4d_dask.kernels.maxima_filter._spacing_keep` of every frame at once: ``f``
    (int ``(m,)``, sorted: the frame of each peak), ``x``, ``y`` (float ``(m,)``, pixels, each
    frame's peaks in list order). Peak ``j`` is dropped when an earlier kept peak ``i`` of its
    frame has ``(x[j] - x[i])**2 + (y[j] - y[i])**2 < min_spacing**2``. Returns the bool
    keep-mask ``(m,)``."""
    m = len(f)
    s = float(min_spacing)
    sep = 2.0 * s + 2.0  # frames this far apart along a third axis: never close
    finite = bool(np.isfinite(x).all() and np.isfinite(y).all())
    if m == 0 or not finite or not np.isfinite(sep) or (f[-1] + 1) * sep > 2.0**50:
        keep = np.zeros(m, dtype=bool)  # frame by frame
        start, count = frame_starts(f, int(f[-1]) + 1 if m else 0)
        for a, c in zip(start[count > 0], count[count > 0], strict=True):
            keep[a : a + c] = _spacing_keep(x[a : a + c], y[a : a + c], min_spacing)
        return keep
    tree = cKDTree(np.column_stack([x, y, f * sep]))
    pairs = tree.query_pairs(r=s * (1 + 1e-9), output_type="ndarray")
    a, b = np.minimum(pairs[:, 0], pairs[:, 1]), np.maximum(pairs[:, 0], pairs[:, 1])
    close = (f[a] == f[b]) & (((x[b] - x[a]) ** 2 + (y[b] - y[a]) ** 2) < min_spacing**2)
    a, b = a[close], b[close]
    order = np.argsort(a, kind="stable")
    return _greedy_keep(m, a[order].astype(np.int64), b[order].astype(np.int64))


@numba.njit(nogil=True, cache=True)
def _greedy_keep(m, a, b):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    # walk the peaks in list order; a kept peak drops its later close peaks (pairs sorted by a)
    keep = np.ones(m, np.bool_)
    k = 0
    for i in range(m):
        while k < a.size and a[k] == i:
            if keep[i]:
                keep[b[k]] = False
            k += 1
    return keep


def filter_2D_maxima(
    maxima: np.ndarray,
    minAbsoluteIntensity: float = 0,
    minRelativeIntensity: float = 0,
    relativeToPeak: int = 0,
    minSpacing: float = 0,
    edgeBoundary: int = 1,
    maxNumPeaks: int | None = 1,
) -> np.ndarray:
    """Filter a set of maxima, as py4DSTEM's ``filter_2D_maxima``.

    maxima: structured array ``(n,)`` with fields ``x``, ``y`` (pixels) and ``intensity``,
    expected in order of descending intensity (the order decides which peak of a close pair
    survives). The filters run in this order:

    1. ``minAbsoluteIntensity > 0``: drop peaks with ``intensity < minAbsoluteIntensity``;
    2. ``minRelativeIntensity > 0`` and more than ``relativeToPeak`` peaks left: drop peaks with
       ``intensity / intensity[relativeToPeak] < minRelativeIntensity``;
    3. ``minSpacing > 0`` (pixels): walking down the list, each peak not yet dropped drops every
       later peak closer than ``minSpacing`` (Euclidean, strictly less);
    4. ``maxNumPeaks`` not None: keep the first ``maxNumPeaks`` (default 1).

    ``edgeBoundary`` is accepted and ignored, as in py4DSTEM. Returns a new structured array of
    the input's dtype, shape ``(m,)``, ``m <= n``.
    """
    check_filter_args(relativeToPeak, edgeBoundary, maxNumPeaks)
    maxima = np.array(to_host(maxima), copy=True)
    names = maxima.dtype.names or ()
    if maxima.ndim != 1 or not {"x", "y", "intensity"} <= set(names):
        raise ValueError(
            "maxima must be a 1D structured array with fields 'x', 'y', "
            f"'intensity', got dtype {maxima.dtype} and shape {maxima.shape}"
        )

    if minAbsoluteIntensity > 0:
        maxima = maxima[~(maxima["intensity"] < minAbsoluteIntensity)]

    if (minRelativeIntensity > 0) & (len(maxima) > relativeToPeak):
        intensity = maxima["intensity"]
        with np.errstate(divide="ignore", invalid="ignore"):
            too_dim = intensity / intensity[relativeToPeak] < minRelativeIntensity
        maxima = maxima[~too_dim]

    if minSpacing > 0:
        maxima = maxima[_spacing_keep(maxima["x"], maxima["y"], minSpacing)]

    if maxNumPeaks is not None:
        maxima = maxima[:maxNumPeaks]
    return maxima
