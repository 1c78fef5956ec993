"""Radial (polar-elliptical) background of diffraction patterns: ``get_1D_polar_background`` and
``get_2D_polar_background`` (py4DSTEM names and parameters) and ``subtract_polar_background``.

The 1D background is the median over the polar angle of the pattern resampled on an elliptical
polar grid (``p_ellipse = (qx0, qy0, a, b, theta)``: centre in pixels, semi-axes, orientation
in radians; ``r`` in semi-major pixels, bins of 1 pixel, 180 angular bins of 2 degrees), with the
bright cells (Bragg peaks) masked iteratively. The 2D background interpolates it linearly at
the elliptical radius of every pixel (linear extrapolation outside the r bins). See
:mod:`stem4d_dask.kernels.polar` for the geometry.

Each function takes one pattern (a 2D numpy array: numpy results, as py4DSTEM; a 2D dask array
or DataArray such as :func:`stem4d_dask.virtual.mean_diffraction_pattern`: lazy results) or a
datacube (lazy, one task per chunk, a background per pattern). The r bins depend only on the
frame shape and the geometry, so they are known while the graph is built and are returned as a
numpy array. Nothing here calls ``.compute()``.

Differences from py4DSTEM 0.14.18
---------------------------------
- ``center=(qx0, qy0)`` works in ``get_1D_polar_background`` (it overrides the centre of
  ``p_ellipse``, as in ``get_2D_polar_background``); py4DSTEM always raises ``TypeError`` (it
  builds ``tuple[...]``).
- The mask-update iterations iterate: ``maskUpdateIter + 1`` medians over phi, the cells with
  ``value / median > min_relative_threshold`` masked (on top of the geometric mask, never a whole
  r column) before each median but the first, so Bragg peaks stop biasing the background.
  py4DSTEM computes the median once (before its loop), so ``maskUpdateIter`` has no effect;
  ``maskUpdateIter=0`` gives its result. With ``return_polararr`` the polar array is masked as
  it was for the final median (py4DSTEM: the peak mask of its loop, which its median never used).
- ``smoothingPolyOrder >= smoothingWindowSize`` uses ``polyorder = smoothingWindowSize - 1``, so
  the defaults (window 3, order 4) smooth with a quadratic instead of raising ``ValueError``;
  bad smoothing parameters (even or non-positive window, negative order, a window longer than
  the r bins) raise a ``ValueError`` naming the parameter.
- The crop to the r bins that reach into the pattern keeps the last such bin (py4DSTEM drops it,
  and drops the last bin whenever any bin is entirely outside the pattern).
- ``r_max`` is the largest centre-to-corner distance over all four corners ``(0, 0), (Nx, 0),
  (0, Ny), (Nx, Ny)``; py4DSTEM uses ``(0, 0), (0, Nx), (0, Ny), (Nx, Ny)`` and misses the far
  corner ``(Nx, 0)`` when the centre is near ``(0, Ny)``.
- ``background1D`` is a plain float64 array (NaN in a bin with no sample inside the pattern,
  which needs a centre outside it); py4DSTEM returns a ``numpy.ma.MaskedArray`` unless it
  smooths.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ..backend import array_module
from ..checks import flag
from ..datacube import DIMS, R_DIMS, calibration_attrs
from ..graph import frame_blocks, rebuild, result_float_dtype
from ..kernels.polar import (
    background_1d,
    background_1d_frames,
    background_2d,
    background_2d_frames,
    polar_plan,
    subtract_background_frames,
    subtract_fixed_background,
)
from .radialbkgrd_checks import (
    background_options,
    checked_background,
    checked_plan,
    checked_r_bins,
    data_kind,
    ellipse,
    merged_options,
)


def get_1D_polar_background(
    data,
    p_ellipse,
    center=None,
    maskUpdateIter=3,
    min_relative_threshold=4,
    smoothing=False,
    smoothingWindowSize=3,
    smoothingPolyOrder=4,
    smoothing_log=True,
    min_background_value=1e-3,
    return_polararr=False,
):
    """Radial background: the median over the polar angle of the elliptical polar transform.

    Parameters
    ----------
    data : one pattern ``(Qx, Qy)`` (numpy array; or a dask array / DataArray for a lazy
        result) or a datacube DataArray ``(Rx, Ry, Qx, Qy)`` (a background per pattern, lazy).
    p_ellipse : ``(qx0, qy0, a, b, theta)``: centre (pixels, array axes 0 and 1), semi-axes
        (any unit, only ``b / a`` matters, both > 0) and orientation (radians).
    center : ``(qx0, qy0)`` in pixels overriding the centre of ``p_ellipse``, or None.
    maskUpdateIter : number of peak-masking passes (>= 0): ``maskUpdateIter + 1`` medians.
    min_relative_threshold : a cell brighter than this multiple of its r bin's median is
        masked for the next median (> 0).
    smoothing : smooth with a Savitzky-Golay filter of ``smoothingWindowSize`` bins (odd,
        >= 1) and order ``smoothingPolyOrder`` (>= 0; ``smoothingWindowSize - 1`` when larger),
        in log space when ``smoothing_log``.
    min_background_value : the background is clamped to at least this (counts); must be > 0
        when smoothing in log space.
    return_polararr : also return the masked polar array (2D numpy patterns only).

    Returns
    -------
    ``(background1D, r_bins)`` and, with ``return_polararr``, the ``numpy.ma`` polar array
    ``(N_phi, N_r)`` (axis 0 phi, axis 1 r) masked as for the final median.

    - ``r_bins`` : numpy ``(N_r,)`` bin centres in semi-major pixels, 0.5, 1.5, ..., up to the
      last bin with a sample inside the pattern.
    - ``background1D`` : for a numpy pattern a float64 numpy ``(N_r,)``; for a lazy pattern a
      lazy DataArray with dim ``r``; for a datacube a lazy float64 DataArray ``(Rx, Ry, r)``
      (one task per chunk), with coord ``r = r_bins`` (units pixels).
    """
    kind, arr = data_kind(data, "data")
    data = arr if kind == "cube" else data
    p = ellipse(p_ellipse, center)
    return_polararr = flag(return_polararr, "return_polararr")
    plan = checked_plan(arr.shape[-2:], p)
    n = plan.n_valid_r
    options = background_options(
        n,
        maskUpdateIter,
        min_relative_threshold,
        smoothing,
        smoothingWindowSize,
        smoothingPolyOrder,
        smoothing_log,
        min_background_value,
    )
    r_bins = plan.rr[0, :n].copy()
    if kind == "frame":
        result = background_1d(arr, plan, return_polar=return_polararr, **options)
        return (result[0], r_bins, result[1]) if return_polararr else (result, r_bins)
    if return_polararr:
        raise ValueError(
            "return_polararr=True needs a 2D numpy pattern; got a lazy "
            f"{'datacube' if kind == 'cube' else 'pattern'}"
        )
    attrs = {"p_ellipse": list(p)}
    r_coord = xr.DataArray(r_bins, dims=("r",), attrs={"units": "pixels"})
    if kind == "lazy":
        delayed = dask.delayed(_pattern_background, pure=True)(arr, p, options)
        bg = da.from_delayed(delayed, (n,), dtype=np.float64, meta=np.empty((0,)))
        return xr.DataArray(
            bg, dims=("r",), coords={"r": r_coord}, name="background1D", attrs=attrs
        ), r_bins
    data, blocks = frame_blocks(data, "data")
    xp = array_module(blocks._meta)
    bg = blocks.map_blocks(
        background_1d_frames,
        p_ellipse=p,
        options=options,
        drop_axis=3,
        chunks=blocks.chunks[:2] + ((n,),),
        dtype=np.float64,
        meta=xp.empty((0, 0, 0)),
        token="get_1D_polar_background",
    )
    coords = {d: data.coords[d] for d in R_DIMS}
    coords["r"] = r_coord
    attrs.update(calibration_attrs(data.attrs, ("r",)))
    return xr.DataArray(
        bg, dims=(*R_DIMS, "r"), coords=coords, name="background1D", attrs=attrs
    ), r_bins


def get_2D_polar_background(data, background1D, r_bins, p_ellipse, center=None):
    """2D background: ``background1D`` interpolated linearly at the elliptical radius of every
    pixel, extrapolated linearly outside ``[r_bins[0], r_bins[-1]]``.

    Parameters
    ----------
    data : a pattern ``(Qx, Qy)`` or a datacube; only its shape (and chunks) are used.
    background1D : ``(N_r,)`` (one background; numpy, dask or a DataArray with dim ``r``) or,
        with a datacube, ``(Rx, Ry, N_r)`` (a background per pattern, e.g. the lazy result of
        :func:`get_1D_polar_background` on that datacube; DataArray dims ``(Rx, Ry, r)``).
    r_bins : numpy ``(N_r,)`` increasing elliptical radii (semi-major pixels), N_r >= 2.
    p_ellipse : ``(qx0, qy0, a, b, theta)`` (pixels, radians); center : ``(qx0, qy0)``
        overriding its centre, or None.

    Returns
    -------
    For a pattern: float64 ``(Qx, Qy)``, numpy when ``background1D`` is numpy, else a lazy
    DataArray. For a datacube: a lazy datacube of backgrounds (float32 for data of <= 16 bits,
    float64 otherwise; see ``result_float_dtype``), one task per chunk, no pixel data read.
    """
    kind, arr = data_kind(data, "data")
    data = arr if kind == "cube" else data
    p = ellipse(p_ellipse, center)
    r = checked_r_bins(r_bins)
    bg = checked_background(background1D, r.shape[0])
    shape = tuple(arr.shape[-2:])
    if kind != "cube" or bg.ndim == 1:
        if bg.ndim != 1:
            raise ValueError(
                f"background1D must be 1D (N_r,) for a single pattern, got shape {tuple(bg.shape)}"
            )
        if not isinstance(bg, da.Array):
            single = background_2d(shape, bg, r, p)
            if kind != "cube":
                return single
        else:
            single = dask.delayed(background_2d, pure=True)(shape, bg, r, p)
            if kind != "cube":
                out = da.from_delayed(
                    single, shape, dtype=np.float64, meta=array_module(bg._meta).empty((0, 0))
                )
                return xr.DataArray(
                    out, dims=DIMS[2:], name="background2D", attrs={"p_ellipse": list(p)}
                )
        return _broadcast_background(data, single)
    data, blocks = frame_blocks(data, "data")
    scan = tuple(blocks.shape[:2])
    if bg.ndim != 3 or tuple(bg.shape[:2]) != scan:
        raise ValueError(
            f"background1D must be (N_r,) or (Rx, Ry, N_r) = {scan + r.shape} "
            f"for this datacube, got shape {tuple(bg.shape)}"
        )
    chunks = blocks.chunks[:2] + ((r.shape[0],),)
    bg = bg.rechunk(chunks) if isinstance(bg, da.Array) else da.from_array(bg, chunks=chunks)
    dtype = result_float_dtype(blocks.dtype)
    out = da.blockwise(
        _background_2d_block,
        "ijkl",
        bg,
        "ijm",
        new_axes={"k": shape[0], "l": shape[1]},
        concatenate=True,
        dtype=dtype,
        meta=array_module(bg._meta).empty((0, 0, 0, 0), dtype=dtype),
        token="get_2D_polar_background",
        r_bins=r,
        shape=shape,
        p_ellipse=p,
        out_dtype=dtype,
    )
    return rebuild(data, out)


def subtract_polar_background(datacube, p_ellipse, per_pattern=True, **options):
    """Lazy datacube of every pattern minus its radial background.

    per_pattern : True: each pattern's own background (:func:`get_1D_polar_background` then
        :func:`get_2D_polar_background` of that pattern, fused in one task per chunk). False:
        one background, from the mean pattern (:func:`stem4d_dask.virtual.mean_diffraction_
        pattern`), subtracted from every pattern; computing the result then reads the data
        twice (once for the mean).
    options : ``center``, ``maskUpdateIter``, ``min_relative_threshold``, ``smoothing``,
        ``smoothingWindowSize``, ``smoothingPolyOrder``, ``smoothing_log``,
        ``min_background_value`` of :func:`get_1D_polar_background`.

    Returns float32 for data of <= 16 bits (float64 for float64 or wider integers).
    """
    from ..virtual import mean_diffraction_pattern

    merged = merged_options(options, "subtract_polar_background")
    per_pattern = flag(per_pattern, "per_pattern")
    p = ellipse(p_ellipse, merged.pop("center"))
    datacube, blocks = frame_blocks(datacube)
    dtype = result_float_dtype(blocks.dtype)
    plan = checked_plan(blocks.shape[2:], p)
    opts = background_options(plan.n_valid_r, **merged)
    meta = array_module(blocks._meta).empty((0, 0, 0, 0), dtype=dtype)
    if per_pattern:
        out = blocks.map_blocks(
            subtract_background_frames,
            p_ellipse=p,
            options=opts,
            out_dtype=dtype,
            dtype=dtype,
            meta=meta,
            token="subtract_polar_background",
        )
    else:
        mean = mean_diffraction_pattern(datacube).data
        background = dask.delayed(_mean_background_2d, pure=True)(mean, p, opts)
        out = blocks.map_blocks(
            subtract_fixed_background,
            background,
            out_dtype=dtype,
            dtype=dtype,
            meta=meta,
            token="subtract_polar_background",
        )
    return rebuild(datacube, out)


# ---- helpers ----------------------------------------------------------------------------------


def _pattern_background(frame, p_ellipse, options):
    return background_1d(frame, polar_plan(frame.shape, p_ellipse), **options)


def _mean_background_2d(mean, p_ellipse, options):
    plan = polar_plan(mean.shape, p_ellipse)
    bg = background_1d(mean, plan, **options)
    return background_2d(mean.shape, bg, plan.rr[0, : plan.n_valid_r], p_ellipse)


def _background_2d_block(backgrounds, *, r_bins, shape, p_ellipse, out_dtype):
    return background_2d_frames(backgrounds, r_bins, shape, p_ellipse, out_dtype)


def _fill_block(background2d, *, out_dtype, block_info=None):
    xp = array_module(background2d)
    out = xp.empty(block_info[None]["chunk-shape"], dtype=out_dtype)
    out[...] = background2d
    return out


def _broadcast_background(datacube, background2d):
    """A lazy datacube with ``background2d`` (numpy, or a Delayed) as every pattern."""
    datacube, blocks = frame_blocks(datacube, "data")
    dtype = result_float_dtype(blocks.dtype)
    if isinstance(background2d, np.ndarray):
        background2d = dask.delayed(background2d)  # one graph key, not one copy per task
    out = da.map_blocks(
        _fill_block,
        background2d,
        chunks=blocks.chunks,
        out_dtype=dtype,
        dtype=dtype,
        meta=np.empty((0, 0, 0, 0), dtype=dtype),
        token="polar_background_2d",
    )
    return rebuild(datacube, out)
