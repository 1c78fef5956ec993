"""Bad detector pixels: ``filter_hot_pixels`` and ``median_filter_masked_pixels`` (py4DSTEM
names and parameters), lazy, one task per chunk after (for hot pixels) one mean-pattern pass;
``median_filter_masked_pixels_2D``, the same repair of one 2D frame (numpy, cupy, dask or a
``(Qx, Qy)`` DataArray), which returns a new array where py4DSTEM repairs its input in place.

Differences from py4DSTEM 0.14.18 (which repairs in place, pixel after pixel):

- a pixel is repaired with the median of its *good* neighbours, all read from the unrepaired
  frame, so the result does not depend on the order of the pixels and a bad pixel never votes
  for its own value (py4DSTEM includes it and any already-repaired neighbour);
- hot-pixel detection and repair both clip their windows at the detector edges (py4DSTEM wraps
  around for detection and clips for repair);
- ``ind_compare`` counts the pixel's neighbours only: ``0`` compares with the brightest
  neighbour, the default ``1`` with the second brightest, so isolated hot pixels *and* adjacent
  pairs are found (py4DSTEM counts the pixel itself: its ``ind_compare=0`` can never fire, ``1``
  misses pairs; our ``k`` equals its ``k + 1``);
- even ``kernel_width`` windows are centred (width + 1) rather than lopsided;
- integer medians are rounded to nearest, not truncated.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ..backend import to_host
from ..checks import checked_array, checked_int, detector_array, positive_int
from ..coords import align
from ..datacube import Q_DIMS
from ..graph import frame_blocks, rebuild, single_key
from ..kernels.pixels import CROSS_OFFSETS, hot_pixel_mask, repair_pixels, repair_plan
from ..values import value_range
from ..virtual import mean_diffraction_pattern


def filter_hot_pixels(datacube, thresh, ind_compare=1, return_mask=False):
    """Find pixels that are hot in the mean pattern and repair them in every pattern.

    A pixel is hot when its mean-pattern value exceeds the ``ind_compare``-th brightest of its
    20 neighbours (5x5 window without corners) by more than ``thresh`` (counts). Each hot pixel
    of every pattern becomes the median of its non-hot 3x3 neighbours. Lazy: the mean pattern
    and the mask are computed once, then each chunk is repaired by its own task. The dtype is
    kept. Returns the datacube, or ``(datacube, mask)`` with a lazy bool ``(Qx, Qy)`` mask.
    """
    datacube, data = frame_blocks(datacube)
    if not np.isscalar(thresh) or not np.isfinite(thresh) or thresh < 0:
        raise ValueError(f"thresh must be a number >= 0 (counts), got {thresh!r}")
    ind_compare = checked_int(ind_compare, "ind_compare", 0, len(CROSS_OFFSETS))
    mean = mean_diffraction_pattern(datacube).data
    mask = mean.map_blocks(
        hot_pixel_mask, float(thresh), int(ind_compare), dtype=bool, token="hot_pixel_mask"
    )
    repaired = _repair(datacube, data, mask, 1, "filter_hot_pixels")
    if not return_mask:
        return repaired
    return repaired, xr.DataArray(
        mask, dims=Q_DIMS, name="hot_pixels", coords={d: datacube.coords[d] for d in Q_DIMS}
    )


def median_filter_masked_pixels(datacube, mask, kernel_width: int = 3):
    """Replace the pixels where ``mask`` ``(Qx, Qy)`` is True, in every pattern, by the median
    of the unmasked pixels in the ``kernel_width`` square around them (widened until it holds
    one). Lazy, dtype kept."""
    datacube, data = frame_blocks(datacube)
    width = _width(kernel_width, data.shape[2:], "the detector")
    mask = detector_array(mask, datacube, "mask", kinds="biu").astype(bool)
    return _repair(datacube, data, mask, width // 2, "median_filter_masked_pixels")


def median_filter_masked_pixels_2D(array, mask, kernel_width: int = 3):
    """Replace the pixels of the 2D frame ``array`` ``(Qx, Qy)`` where ``mask`` (bool or int,
    same shape) is True by the median of the unmasked pixels in the ``kernel_width``-pixel square
    around them (widened until it holds one): the repair of :func:`median_filter_masked_pixels`
    on one frame, with its differences from py4DSTEM (listed above).

    ``array``: numpy or cupy (returns a new array of the same kind), a dask array (returns a
    lazy dask array, one chunk) or a DataArray with dims Qx, Qy (returns a DataArray with its
    coords and attrs, lazy when it holds a dask array). The input is never modified; the dtype
    is kept (integer medians rounded to nearest). ``mask``: numpy, cupy, dask or a DataArray
    (aligned to a DataArray ``array`` by dim name and coords, else positional by dim name).
    """
    if isinstance(array, xr.DataArray):
        if array.ndim != 2 or set(array.dims) != set(Q_DIMS):
            raise ValueError(f"array: a DataArray needs the dims {Q_DIMS}, got {array.dims}")
        frame = array.transpose(*Q_DIMS)
        repaired = _repair_2d(frame.data, _mask_2d(mask, frame), kernel_width)
        return frame.copy(data=repaired).transpose(*array.dims)
    return _repair_2d(array, _mask_2d(mask, None), kernel_width)


def _repair_2d(array, mask, kernel_width):
    """:func:`median_filter_masked_pixels_2D` of a plain array (numpy, cupy or dask)."""
    if not isinstance(array, da.Array) and not hasattr(array, "__array_function__"):
        array = np.asarray(array)
    if array.ndim != 2 or 0 in array.shape or np.dtype(array.dtype).kind not in "biuf":
        raise ValueError(
            "array must be a non-empty 2D frame (Qx, Qy) of real numbers or booleans, got "
            f"shape {tuple(array.shape)}, dtype {array.dtype}"
        )
    half_width = _width(kernel_width, array.shape, "the array") // 2
    if not isinstance(mask, da.Array) and not hasattr(mask, "__array_function__"):
        mask = np.asarray(mask)
    if not isinstance(array, da.Array):
        mask = mask.compute() if isinstance(mask, da.Array) else to_host(mask)
        mask = checked_array(mask, array.shape, "mask", kinds="biu").astype(bool)
        return _repair_frame(array, repair_plan(mask, half_width))
    if not isinstance(mask, da.Array):
        mask = da.from_array(to_host(mask), chunks=-1)
    mask = checked_array(mask, array.shape, "mask", kinds="biu").astype(bool)
    plan = dask.delayed(repair_plan, pure=True)(single_key(mask), half_width)
    frame = array.rechunk(-1)
    return frame.map_blocks(
        _repair_frame,
        plan,
        dtype=frame.dtype,
        meta=frame._meta,
        token="median_filter_masked_pixels_2D",
    )


def _mask_2d(mask, frame):
    """``mask`` as an array in the order of ``frame`` (a ``(Qx, Qy)`` DataArray, or None for
    a plain array): a DataArray mask is aligned by dim name, and by its coords where ``frame``
    has coords too; anything else is returned as it is (positional)."""
    if not isinstance(mask, xr.DataArray):
        return mask
    if mask.ndim != 2 or set(mask.dims) != set(Q_DIMS):
        raise ValueError(f"mask: a DataArray mask needs the dims {Q_DIMS}, got {mask.dims}")
    mask = mask.transpose(*Q_DIMS)
    if frame is None:
        return mask.data
    positional = [d for d in Q_DIMS if d in mask.coords and d not in frame.coords]
    return align(mask.drop_vars(positional), frame, Q_DIMS, "mask")


def _repair_frame(frame, plan):
    """A repaired copy of one frame ``(Qx, Qy)`` (numpy or cupy): the kernel on a
    ``(1, 1, Qx, Qy)`` view."""
    return repair_pixels(frame[None, None], plan)[0, 0] if plan else frame.copy()


def _width(value, shape, what) -> int:
    """``kernel_width`` as an int in ``[1, min(shape)]``; ``ValueError`` naming it otherwise."""
    width = positive_int(value, "kernel_width")
    if width > min(shape):
        raise ValueError(f"kernel_width {width} is larger than {what} {shape[0]} x {shape[1]}")
    return width


def _repair(datacube, data, mask, half_width, name):
    """Each chunk repaired by one task; the repair plan is made once from the mask."""
    plan = dask.delayed(repair_plan, pure=True)(single_key(mask), half_width)
    repaired = data.map_blocks(repair_pixels, plan, dtype=data.dtype, meta=data._meta, token=name)
    return rebuild(datacube, repaired, value_range=value_range(datacube))
