"""Argument checks of the radial background (:mod:`stem4d_dask.preprocess.radialbkgrd`): the
data (one pattern or a datacube), the ellipse ``p_ellipse = (qx0, qy0, a, b, theta)`` (pixels,
radians), the r bins, a 1D background and the options of the median and smoothing. Each raises
a ``ValueError`` (``TypeError`` for unknown option names) naming the parameter.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr

from ..backend import array_module
from ..checks import checked_int, flag, real
from ..datacube import DIMS, R_DIMS, check_datacube
from ..kernels.polar import polar_plan

OPTIONS = {  # get_1D_polar_background's options and defaults
    "center": None,
    "maskUpdateIter": 3,
    "min_relative_threshold": 4,
    "smoothing": False,
    "smoothingWindowSize": 3,
    "smoothingPolyOrder": 4,
    "smoothing_log": True,
    "min_background_value": 1e-3,
}


def merged_options(options: dict, caller: str) -> dict:
    """``OPTIONS`` updated with ``options`` (keyword arguments of ``caller``); ``TypeError``
    naming the unknown ones."""
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"{caller}: unknown options {unknown}; expected some of {sorted(OPTIONS)}")
    return {**OPTIONS, **options}


def data_kind(data, name):
    """``("frame", 2D numpy/cupy)``, ``("lazy", 2D dask array)`` or ``("cube", datacube)``."""
    if isinstance(data, xr.DataArray):
        if data.ndim == 4:
            kind, arr = "cube", check_datacube(data, parameter=name)
        elif data.ndim == 2:
            if set(data.dims) == set(DIMS[2:]):
                data = data.transpose(*DIMS[2:])
            inner = data.data
            kind, arr = (
                ("lazy", inner) if isinstance(inner, da.Array) else ("frame", np.asarray(inner))
            )
        else:
            raise ValueError(
                f"{name} must be a 2D pattern (Qx, Qy) or a datacube (Rx, Ry, Qx, "
                f"Qy), got a DataArray with dims {data.dims}"
            )
    elif isinstance(data, da.Array):
        if data.ndim != 2:
            raise ValueError(
                f"{name} must be a 2D pattern or a datacube DataArray, got a "
                f"{data.ndim}D dask array of shape {data.shape} (wrap a scan with "
                "stem4d_dask.from_array)"
            )
        kind, arr = "lazy", data
    else:
        if array_module(data) is np:
            try:
                data = np.asarray(data)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{name} must be a 2D array, got {type(data).__name__}") from err
        if data.ndim != 2:
            raise ValueError(
                f"{name} must be a 2D pattern (Qx, Qy) or a datacube DataArray "
                f"(Rx, Ry, Qx, Qy), got an array of shape {tuple(data.shape)}"
                + (" (wrap a scan with stem4d_dask.from_array)" if data.ndim == 4 else "")
            )
        kind, arr = "frame", data
    if np.dtype(arr.dtype).kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    return kind, arr


def ellipse(p_ellipse, center):
    """``(qx0, qy0, a, b, theta)`` as floats, the centre replaced by ``center`` if given."""
    try:
        p = np.array(p_ellipse, dtype=np.float64)
    except (TypeError, ValueError):
        p = None
    if p is None or p.shape != (5,) or not np.all(np.isfinite(p)):
        raise ValueError(
            "p_ellipse must be 5 finite numbers (qx0, qy0, a, b, theta) in pixels "
            f"and radians, got {p_ellipse!r}"
        )
    if p[2] <= 0 or p[3] <= 0:
        raise ValueError(
            f"p_ellipse: the semi-axes a and b must be > 0, got a={float(p[2])!r}, "
            f"b={float(p[3])!r} (p_ellipse={p_ellipse!r})"
        )
    if center is not None:
        try:
            c = np.array(center, dtype=np.float64)
        except (TypeError, ValueError):
            c = None
        if c is None or c.shape != (2,) or not np.all(np.isfinite(c)):
            raise ValueError(
                f"center must be None or two finite numbers (qx0, qy0) in pixels, got {center!r}"
            )
        p[:2] = c
    return tuple(float(v) for v in p)


def checked_plan(shape, p):
    """The :func:`~stem4d_dask.kernels.polar.polar_plan` of a ``shape`` pattern and the ellipse
    ``p``; ``ValueError`` naming ``p_ellipse`` when no polar sample falls inside the pattern."""
    plan = polar_plan(shape, p)
    if plan.n_valid_r == 0:
        raise ValueError(
            f"p_ellipse: no polar sample falls inside the {tuple(shape)} pattern "
            f"for the centre ({p[0]}, {p[1]}) (pixels)"
        )
    return plan


def background_options(
    n_r,
    maskUpdateIter,
    min_relative_threshold,
    smoothing,
    smoothingWindowSize,
    smoothingPolyOrder,
    smoothing_log,
    min_background_value,
):
    """Checked keyword arguments of :func:`stem4d_dask.kernels.polar.background_1d` from
    ``get_1D_polar_background``'s options, for ``n_r`` r bins (the smoothing window must fit)."""
    iterations = checked_int(maskUpdateIter, "maskUpdateIter", 0)
    threshold = real(min_relative_threshold, "min_relative_threshold", finite=False)
    if not 0 < threshold < np.inf:
        raise ValueError(
            f"min_relative_threshold must be a finite number > 0, got {min_relative_threshold!r}"
        )
    smoothing = flag(smoothing, "smoothing")
    smoothing_log = flag(smoothing_log, "smoothing_log")
    window = checked_int(smoothingWindowSize, "smoothingWindowSize", 1)
    if window % 2 == 0:
        raise ValueError(f"smoothingWindowSize must be odd, got {smoothingWindowSize!r}")
    order = min(checked_int(smoothingPolyOrder, "smoothingPolyOrder", 0), window - 1)
    floor = real(min_background_value, "min_background_value", finite=False)
    if smoothing and window > n_r:
        raise ValueError(
            f"smoothingWindowSize must not exceed the number of r bins ({n_r}), "
            f"got {smoothingWindowSize!r}"
        )
    if smoothing and smoothing_log and not floor > 0:
        raise ValueError(
            "min_background_value must be > 0 when smoothing in log space "
            f"(smoothing_log=True), got {min_background_value!r}"
        )
    return dict(
        mask_update_iter=iterations,
        min_relative_threshold=threshold,
        min_background_value=floor,
        smoothing=smoothing,
        window=window,
        polyorder=order,
        smoothing_log=smoothing_log,
    )


def checked_r_bins(r_bins):
    """``r_bins`` as a float64 numpy ``(N_r,)`` of at least 2 finite, increasing radii (pixels);
    a lazy array is refused (the bins are needed while the graph is built)."""
    if isinstance(r_bins, da.Array) or (
        isinstance(r_bins, xr.DataArray) and isinstance(r_bins.data, da.Array)
    ):
        raise ValueError(
            "r_bins must be a numpy array (it is known when the graph is built), got a dask array"
        )
    try:
        r = np.array(r_bins, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"r_bins must be a 1D array of numbers, got {r_bins!r}") from err
    if r.ndim != 1 or r.shape[0] < 2 or not np.all(np.isfinite(r)) or np.any(np.diff(r) <= 0):
        raise ValueError(
            "r_bins must be a 1D array of at least 2 finite, increasing radii "
            f"(pixels), got shape {r.shape}: {r!r}"
        )
    return r


def checked_background(background1D, n_r):
    """``background1D`` as a numpy or dask array, its last axis checked against ``n_r``."""
    if isinstance(background1D, xr.DataArray):
        if "r" in background1D.dims and background1D.ndim == 3:
            background1D = background1D.transpose(*R_DIMS, "r")
        background1D = background1D.data
    if not isinstance(background1D, da.Array) and array_module(background1D) is np:
        try:
            background1D = np.asarray(background1D, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"background1D must be an array of numbers, got {type(background1D).__name__}"
            ) from err
    if background1D.ndim not in (1, 3) or background1D.shape[-1] != n_r:
        raise ValueError(
            f"background1D and r_bins must have the same length: background1D has "
            f"shape {tuple(background1D.shape)}, r_bins has {n_r} bins"
        )
    return background1D
