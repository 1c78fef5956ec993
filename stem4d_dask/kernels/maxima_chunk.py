"""py4DSTEM's ``get_maxima_2D`` on a whole chunk of frames at once: :func:`get_maxima_2D_chunk`
gives every frame exactly what :func:`~stem4d_dask.kernels.maxima.get_maxima_2D` gives it (the
same peaks in the same order, bit for bit), without a Python round per frame.

A chunk is a numpy or cupy array ``(..., Nx, Ny)``: frames over any leading axes, taken in C
order. Positions are in pixels of the frame, ``x`` along axis ``-2``, as in py4DSTEM.

How each step stays bit-identical to the per-frame kernel:

- **Smoothing** (``sigma > 0``): scipy's ``gaussian_filter(frame, sigma)`` filters each line of
  the frame along axis 0, then axis 1, in double precision with the symmetric kernel, reflect
  border, casting to the frame's dtype after each pass (integer frames are truncated). numpy
  frames of a native real dtype go through a compiled loop (GIL released) that does the same
  operations in the same order; it is checked against scipy once per dtype and process (a
  random frame, two widths) and scipy's ``gaussian_filter(chunk, (0, sigma, sigma))``, which
  filters the same lines, is used instead if they ever differ (e.g. a scipy built with fused
  multiply-adds). cupy chunks use ``cupyx.scipy.ndimage.gaussian_filter`` with ``sigma=0`` on
  the frame axis (skipped there), whose elementwise kernels compute each line as the per-frame
  call does.
- **Pixel maxima**: the same comparisons (py4DSTEM's asymmetric tie rule) in a compiled loop
  (numpy) or on whole-chunk slices (cupy, other dtypes); exact.
- **Sorting**: one stable ``lexsort`` of all candidates by frame, then intensity, reversed,
  gives every frame the per-frame order (descending intensity, ties by descending ``x``, ``y``).
- **Filters**: the absolute and relative thresholds are the same elementwise comparisons (the
  relative one divides by the ``relativeToPeak``-th peak of each frame); ``minSpacing`` takes the
  close pairs of every frame from one k-d tree (frames kept apart along a third axis), tests
  them with py4DSTEM's expression and suppresses greedily in list order in a compiled loop;
  ``maxNumPeaks`` keeps each frame's first peaks.
- **Refinement**: :func:`~stem4d_dask.kernels.maxima.refine_poly` over all the chunk's peaks
  (elementwise); ``'multicorr'`` then refines frame by frame
  (:func:`~stem4d_dask.kernels.maxima.refine_multicorr`: one FFT per frame with peaks).

On cupy chunks the image-sized work (smoothing, the neighbour comparisons, the 3x3
neighbourhoods, the FFT of ``'multicorr'``) stays on the device; only the candidate maxima and
their neighbourhoods come to the host.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from ..backend import Array, ArrayModule, array_module, to_host
from .maxima import MAXIMA_DTYPE, _ndimage, check_maxima_args, refine_multicorr, refine_poly
from .maxima_filter import frame_starts, spacing_keep_frames

#: dtypes the compiled loops take (native byte order)
_COMPILED = {np.dtype(t) for t in (np.float32, np.float64)} | {
    np.dtype(f"{k}{b}") for k in "iu" for b in (1, 2, 4, 8)
}


def get_maxima_2D_chunk(
    block: Array,
    subpixel: str = "poly",
    upsample_factor: float = 16,
    sigma: float = 0,
    minAbsoluteIntensity: float = 0,
    minRelativeIntensity: float = 0,
    relativeToPeak: int = 0,
    minSpacing: float = 0,
    edgeBoundary: int = 1,
    maxNumPeaks: int | None = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~stem4d_dask.kernels.maxima.get_maxima_2D` (same parameters, less ``_ar_FT``) on
    every frame of ``block``, a real numpy or cupy array ``(..., Nx, Ny)`` (not modified).

    Returns ``(indptr, maxima)`` on the host: ``indptr`` int64 ``(n + 1,)`` over the ``n``
    frames in C order of the leading axes, and ``maxima`` (:data:`MAXIMA_DTYPE`, positions in
    pixels) whose rows ``indptr[k]:indptr[k + 1]`` are exactly ``get_maxima_2D(frame_k, ...)``.
    """
    check_maxima_args(subpixel, upsample_factor, relativeToPeak, edgeBoundary, maxNumPeaks)
    if not hasattr(block, "ndim"):
        block = np.asarray(block)
    if block.ndim < 2:
        raise ValueError(f"block must be (..., Nx, Ny), got shape {block.shape}")
    xp = array_module(block)
    nx, ny = block.shape[-2:]
    n = int(np.prod(block.shape[:-2], dtype=np.int64))
    frames = block.reshape(n, nx, ny)
    if sigma > 0:
        frames = _smoothed(xp, frames, sigma)

    f, xs, ys, values = _candidates(xp, frames, max(int(edgeBoundary), 1))
    intensity = values.astype(np.float64)
    # stable: equal (frame, intensity) keep C order, reversed to descending x then y
    order = np.lexsort((intensity, -f))[::-1]
    f, xs, ys, intensity = f[order], xs[order], ys[order], intensity[order]

    if minAbsoluteIntensity > 0:
        f, xs, ys, intensity = _kept(~(intensity < minAbsoluteIntensity), f, xs, ys, intensity)
    if minRelativeIntensity > 0:
        start, count = frame_starts(f, n)
        has_ref = count > relativeToPeak
        ref = np.ones(n)
        ref[has_ref] = intensity[start[has_ref] + relativeToPeak]
        with np.errstate(divide="ignore", invalid="ignore"):
            too_dim = intensity / ref[f] < minRelativeIntensity
        f, xs, ys, intensity = _kept(~(too_dim & has_ref[f]), f, xs, ys, intensity)
    if minSpacing > 0:
        keep = spacing_keep_frames(f, xs.astype(np.float64), ys.astype(np.float64), minSpacing)
        f, xs, ys, intensity = _kept(keep, f, xs, ys, intensity)
    if maxNumPeaks is not None:
        start, _ = frame_starts(f, n)
        rank = np.arange(len(f)) - start[f]
        f, xs, ys, intensity = _kept(rank < maxNumPeaks, f, xs, ys, intensity)

    maxima = np.zeros(len(f), dtype=MAXIMA_DTYPE)
    maxima["x"] = xs
    maxima["y"] = ys
    maxima["intensity"] = intensity
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(f, minlength=n), out=indptr[1:])
    if subpixel == "pixel" or len(maxima) == 0:
        return indptr, maxima
    maxima = refine_poly(xp, frames, maxima, frame=f)
    if subpixel == "multicorr":
        for k in np.flatnonzero(np.diff(indptr)):
            part = slice(indptr[k], indptr[k + 1])
            maxima[part] = refine_multicorr(xp, frames[k], maxima[part], upsample_factor)
    return indptr, maxima


def _kept(keep: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(a[keep] for a in arrays)


# --------------------------------------------------------------------------------------------
# smoothing


def _smoothed(xp: ArrayModule, frames: Array, sigma: float) -> Array:
    """``frames`` ``(n, Nx, Ny)`` each smoothed as ``gaussian_filter(frame, sigma)`` does it, in
    the frames' dtype (module docstring)."""
    if frames.size == 0 or sigma <= 1e-15:  # scipy: a copy (its weights would be NaN)
        return frames
    dtype = np.dtype(frames.dtype)
    if xp is np and dtype in _COMPILED and _compiled_matches_scipy(dtype):
        out = np.empty(frames.shape, dtype)
        _gaussian_frames(np.ascontiguousarray(frames), _half_kernel(sigma), out)
        return out
    return _ndimage(xp).gaussian_filter(frames, (0, sigma, sigma))


def _half_kernel(sigma: float) -> np.ndarray:
    """scipy's Gaussian weights ``w[j]`` at offsets ``j = 0 .. r`` (``r = int(4 sigma + 0.5)``),
    read off scipy's own ``gaussian_filter1d`` of a unit impulse, float64 ``(r + 1,)``."""
    import scipy.ndimage as ndi

    r = int(4.0 * float(sigma) + 0.5)
    impulse = np.zeros(4 * r + 1)
    impulse[2 * r] = 1.0
    return np.ascontiguousarray(ndi.gaussian_filter1d(impulse, sigma)[2 * r : 3 * r + 1])


@functools.cache
def _compiled_matches_scipy(dtype: np.dtype) -> bool:
    """Whether :func:`_gaussian_frames` gives scipy's bits for ``dtype`` (checked once)."""
    import scipy.ndimage as ndi

    rng = np.random.default_rng(0)
    if dtype.kind == "f":
        frame = rng.normal(0.0, 100.0, (13, 29)).astype(dtype)
    else:
        info = np.iinfo(dtype)
        frame = rng.integers(max(info.min, -1000), min(info.max, 1000), (13, 29)).astype(dtype)
    for sigma in (1.3, 4.1):  # radius 5 and 16 (> 13: reflected more than once)
        out = np.empty((1, *frame.shape), dtype)
        _gaussian_frames(frame[None], _half_kernel(sigma), out)
        if not np.array_equal(out[0], ndi.gaussian_filter(frame, sigma)):
            return False
    return True


@numba.njit(nogil=True, cache=True)
def _reflected(n_out, n, r):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    # index k - r of a line of n, extended by scipy's 'reflect' (d c b a | a b c d | d c b a)
    idx = np.empty(n_out, np.int64)
    for k in range(n_out):
        m = (k - r) % (2 * n)
        idx[k] = m if m < n else 2 * n - 1 - m
    return idx


@numba.njit(nogil=True, inline="always")
def _taps(acc, ext, w, step, n):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    # acc[p] += (ext[p + (r - j) step] + ext[p + (r + j) step]) * w[j] for j = r .. 1, in that
    # order for every p; four taps a sweep (fewer loads and stores, the same operations)
    r = w.size - 1
    j = r
    while j >= 4:
        l0, h0 = ext[(r - j) * step :], ext[(r + j) * step :]
        l1, h1 = ext[(r - j + 1) * step :], ext[(r + j - 1) * step :]
        l2, h2 = ext[(r - j + 2) * step :], ext[(r + j - 2) * step :]
        l3, h3 = ext[(r - j + 3) * step :], ext[(r + j - 3) * step :]
        w0, w1, w2, w3 = w[j], w[j - 1], w[j - 2], w[j - 3]
        for p in range(n):
            v = acc[p] + (l0[p] + h0[p]) * w0
            v = v + (l1[p] + h1[p]) * w1
            v = v + (l2[p] + h2[p]) * w2
            acc[p] = v + (l3[p] + h3[p]) * w3
        j -= 4
    while j >= 1:
        lo, hi = ext[(r - j) * step :], ext[(r + j) * step :]
        wj = w[j]
        for p in range(n):
            acc[p] += (lo[p] + hi[p]) * wj
        j -= 1


@numba.njit(nogil=True, cache=True)
def _gaussian_frames(frames, w, out):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    # scipy's NI_Correlate1D with a symmetric kernel, per line: acc = x[l] * w[0], then for
    # j = r .. 1: acc += (x[l - j] + x[l + j]) * w[j], in double, cast to the dtype. Axis 0
    # first (a row of outputs at a time, vectorised along y), then axis 1 on the cast result.
    n, nx, ny = frames.shape
    r = w.size - 1
    rows = _reflected(nx + 2 * r, nx, r)
    cols = _reflected(ny + 2 * r, ny, r)
    ext = np.empty((nx + 2 * r, ny), np.float64)  # the frame's rows, extended along axis 0
    flat = ext.reshape(-1)
    line = np.empty(ny + 2 * r, np.float64)  # one row, extended along axis 1
    acc = np.empty(ny, np.float64)
    w0 = w[0]
    for i in range(n):
        frame = frames[i]
        dst = out[i]
        for k in range(nx + 2 * r):
            src = frame[rows[k]]
            e = ext[k]
            for y in range(ny):
                e[y] = src[y]
        for x in range(nx):
            c = ext[x + r]
            for y in range(ny):
                acc[y] = c[y] * w0
            _taps(acc, flat[x * ny :], w, ny, ny)
            d = dst[x]
            for y in range(ny):
                d[y] = acc[y]
        for x in range(nx):
            d = dst[x]
            for k in range(ny + 2 * r):
                line[k] = d[cols[k]]
            for y in range(ny):
                acc[y] = line[y + r] * w0
            _taps(acc, line, w, 1, ny)
            for y in range(ny):
                d[y] = acc[y]


# --------------------------------------------------------------------------------------------
# pixel maxima


def _candidates(
    xp: ArrayModule, frames: Array, edge: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pixel maxima of every frame of ``frames`` ``(n, Nx, Ny)`` at least ``edge >= 1``
    pixels from every border, with :func:`~stem4d_dask.kernels.maxima._pixel_maxima`'s tie
    rule. Returns host arrays ``(frame, x, y, value)`` ``(m,)`` (int64, int64, int64, the
    frames' dtype) in C order of ``(frame, x, y)``."""
    n, nx, ny = frames.shape
    x0, x1 = edge, max(nx - edge, edge)
    y0, y1 = edge, max(ny - edge, edge)
    if xp is np and np.dtype(frames.dtype) in _COMPILED:
        frames = np.ascontiguousarray(frames)
        cap = ((x1 - x0 + 1) // 2) * ((y1 - y0 + 1) // 2)  # no two maxima are neighbours
        size = min(n * cap, 64 * n + cap)  # grown (doubled) while frames are left
        flat, f = np.empty(size, dtype=np.int64), np.empty(size, dtype=np.int64)
        m, done = _pixel_maxima_frames(frames, 0, 0, x0, x1, y0, y1, cap, flat, f)
        while done < n:
            size = min(max(2 * size, m + cap), n * cap)
            flat = np.concatenate([flat[:m], np.empty(size - m, dtype=np.int64)])
            f = np.concatenate([f[:m], np.empty(size - m, dtype=np.int64)])
            m, done = _pixel_maxima_frames(frames, done, m, x0, x1, y0, y1, cap, flat, f)
        f = f[:m].copy()
        xs, ys = np.divmod(flat[:m], ny)
        return f, xs, ys, frames[f, xs, ys]

    def nb(dx: int, dy: int) -> Array:
        return frames[:, x0 + dx : x1 + dx, y0 + dy : y1 + dy]

    c = nb(0, 0)
    is_max = (
        (c >= nb(1, 0))
        & (c > nb(-1, 0))
        & (c >= nb(0, 1))
        & (c > nb(0, -1))
        & (c >= nb(1, 1))
        & (c > nb(1, -1))
        & (c >= nb(-1, 1))
        & (c > nb(-1, -1))
    )
    f, xs, ys = xp.nonzero(is_max)
    xs = xs + x0
    ys = ys + y0
    values = frames[f, xs, ys]
    return (
        to_host(f).astype(np.int64),
        to_host(xs).astype(np.int64),
        to_host(ys).astype(np.int64),
        to_host(values),
    )


@numba.njit(nogil=True, cache=True)
def _pixel_maxima_frames(frames, i0, m, x0, x1, y0, y1, cap, flat, frame):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    # from frame i0 on, while a frame's most (cap) still fit: the 8 comparisons of a row at once
    # (vectorised), then the row's maxima appended at m as (frame, x * Ny + y). Returns m and
    # the first frame not done
    n, nx, ny = frames.shape
    w = y1 - y0
    is_max = np.empty(w, np.bool_)
    for i in range(i0, n):
        if m + cap > flat.size:
            return m, i
        a = frames[i]
        for x in range(x0, x1):
            # rows above, at and below x, each seen from y - 1, y and y + 1
            ul, uc, ur = a[x - 1, y0 - 1 : y1 - 1], a[x - 1, y0:y1], a[x - 1, y0 + 1 : y1 + 1]
            cl, c, cr = a[x, y0 - 1 : y1 - 1], a[x, y0:y1], a[x, y0 + 1 : y1 + 1]
            dl, dc, dr = a[x + 1, y0 - 1 : y1 - 1], a[x + 1, y0:y1], a[x + 1, y0 + 1 : y1 + 1]
            for k in range(w):
                v = c[k]
                is_max[k] = (
                    (v >= dc[k])
                    & (v > uc[k])
                    & (v >= cr[k])
                    & (v > cl[k])
                    & (v >= dr[k])
                    & (v > dl[k])
                    & (v >= ur[k])
                    & (v > ul[k])
                )
            for k in range(w):
                if is_max[k] and m < flat.size:  # (always: at most cap maxima a frame)
                    flat[m] = x * ny + y0 + k
                    frame[m] = i
                    m += 1
    return m, n


__all__ = ["get_maxima_2D_chunk"]
