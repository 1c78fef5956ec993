"""py4DSTEM ``preprocess.utils`` functions on plain arrays (numpy or cupy).

Same semantics as py4DSTEM 0.14.18, except that ``bin2D`` with an integer ``dtype`` accumulates
wide and raises ``OverflowError`` instead of wrapping. ``get_maxima_2D`` and ``filter_2D_maxima``
live in ``kernels/maxima.py`` (their differences are listed there). ``bin2D``,
``get_shifted_ar`` and ``get_maxima_2D`` also take a frame of a datacube as it comes,
``dc.isel(Rx=0, Ry=0)``: a 2D ``xarray.DataArray``, numpy-, cupy- or dask-backed (computed).
"""

from __future__ import annotations

import functools
import inspect

import numpy as np

from ..backend import array_module, device_module, native, to_host
from ..checks import positive_int
from ..kernels import maxima
from ..kernels.binning import bin_frames
from ..kernels.maxima import filter_2D_maxima
from ..kernels.shift import shift_frames

__all__ = [
    "bin2D",
    "make_Fourier_coords2D",
    "get_shifted_ar",
    "linear_interpolation_2D",
    "get_maxima_2D",
    "filter_2D_maxima",
]


def plain_frame(ar, parameter: str = "ar"):
    """``ar`` as the kernels take it: an ``xarray.DataArray`` (a frame ``dc.isel(Rx=0, Ry=0)``)
    or a dask array becomes its computed numpy or cupy array; other arrays pass unchanged.
    ``ValueError`` naming ``parameter`` for a DataArray that is not 2D."""
    import dask.array as da
    import xarray as xr

    if isinstance(ar, xr.DataArray):
        if ar.ndim != 2:
            raise ValueError(
                f"{parameter} must be a 2D frame, e.g. dc.isel(Rx=0, Ry=0); got a DataArray "
                f"with dims {ar.dims} and shape {ar.shape}"
            )
        ar = ar.data
    return ar.compute() if isinstance(ar, da.Array) else ar


@functools.wraps(maxima.get_maxima_2D, assigned=("__name__", "__qualname__"))
def get_maxima_2D(ar, *args, **kwargs):
    """Local maxima of a 2D array (or frame DataArray), as py4DSTEM's ``get_maxima_2D``: see
    :func:`stem4d_dask.kernels.maxima.get_maxima_2D` for the parameters (its signature) and
    the result; ``ar`` and ``_ar_FT`` may be DataArrays or dask arrays."""
    if len(args) >= _AR_FT_POSITION:
        args = (*args[: _AR_FT_POSITION - 1], plain_frame(args[_AR_FT_POSITION - 1], "_ar_FT"))
    if kwargs.get("_ar_FT") is not None:
        kwargs["_ar_FT"] = plain_frame(kwargs["_ar_FT"], "_ar_FT")
    return maxima.get_maxima_2D(plain_frame(ar), *args, **kwargs)


# _ar_FT's place among the arguments after ``ar`` (1-based)
_AR_FT_POSITION = list(inspect.signature(maxima.get_maxima_2D).parameters).index("_ar_FT")


def bin2D(array, factor, dtype=np.float64):
    """Sum ``factor x factor`` blocks of a 2D array: ``(Nx, Ny)`` -> ``(Nx // f, Ny // f)``
    (trailing remainder cropped), accumulated in ``dtype`` (float) or wide (integer)."""
    array = plain_frame(array, "array")
    factor = positive_int(factor, "factor")
    if np.ndim(array) != 2:
        raise ValueError(f"array must be 2D, got shape {np.shape(array)}")
    if factor > min(array.shape):
        raise ValueError(f"factor {factor} is larger than the array {array.shape}")
    return bin_frames(array, factor, np.dtype(dtype))


def make_Fourier_coords2D(Nx, Ny, pixelSize=1):
    """Spatial frequencies ``qx, qy`` ``(Nx, Ny)`` (ij indexing, unshifted FFT order) of an
    ``Nx x Ny`` grid with pixel size ``pixelSize`` (a number or ``(px, py)``); cycles per unit
    of ``pixelSize``."""
    Nx, Ny = positive_int(Nx, "Nx"), positive_int(Ny, "Ny")
    px, py = (pixelSize, pixelSize) if np.ndim(pixelSize) == 0 else tuple(pixelSize)
    return np.meshgrid(np.fft.fftfreq(Nx, px), np.fft.fftfreq(Ny, py), indexing="ij")


def get_shifted_ar(ar, xshift, yshift, periodic=True, bilinear=False, device="cpu"):
    """``ar`` shifted by ``(xshift, yshift)`` pixels (positive moves content to higher
    indices), Fourier (default) or bilinear, periodic or with the wrapped rows/columns zeroed.
    Returns float64 on ``device`` (``'cpu'``: numpy, ``'gpu'``: cupy, and ``ImportError``
    saying so without cupy and a GPU: py4DSTEM silently computes on the CPU instead)."""
    xp = device_module(device, "get_shifted_ar(device='gpu')")
    ar = plain_frame(ar)
    ar = xp.asarray(native(to_host(ar) if xp is np else ar))  # cupy misreads other orders
    if ar.ndim != 2:
        raise ValueError(f"ar must be 2D, got shape {ar.shape}")
    for name, value in (("xshift", xshift), ("yshift", yshift)):
        if np.ndim(value) != 0 or not np.isfinite(float(value)):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    return shift_frames(
        ar, float(xshift), float(yshift), periodic=periodic, bilinear=bilinear, dtype=np.float64
    )


def linear_interpolation_2D(ar, x, y):
    """Bilinear interpolation of ``ar`` at ``(x, y)`` (numbers or arrays) from the
    ``floor``/``ceil`` neighbours; exact at integer coordinates; no bounds checks (negative
    indices wrap, as in py4DSTEM)."""
    xp = array_module(ar)
    x, y = xp.asarray(x, dtype=xp.float64), xp.asarray(y, dtype=xp.float64)
    x0, x1 = xp.floor(x).astype(xp.int64), xp.ceil(x).astype(xp.int64)
    y0, y1 = xp.floor(y).astype(xp.int64), xp.ceil(y).astype(xp.int64)
    dx, dy = x - x0, y - y0
    value = (
        (1 - dx) * (1 - dy) * ar[x0, y0]
        + (1 - dx) * dy * ar[x0, y1]
        + dx * (1 - dy) * ar[x1, y0]
        + dx * dy * ar[x1, y1]
    )
    return value[()] if value.ndim == 0 else value
