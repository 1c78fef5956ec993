"""Bad detector pixels: ``filter_hot_pixels`` and ``median_filter_masked_pixels`` (py4DSTEM
names and parameters), lazy, one task per chunk after (for hot pixels) one mean-pattern pass.

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
import numpy as np
import xarray as xr

from ..checks import checked_int, detector_array, positive_int
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
    shape = data.shape[2:]
    width = positive_int(kernel_width, "kernel_width")
    if width > min(shape):
        raise ValueError(
            f"kernel_width {width} is larger than the detector {shape[0]} x {shape[1]}"
        )
    mask = detector_array(mask, datacube, "mask", kinds="biu").astype(bool)
    return _repair(datacube, data, mask, width // 2, "median_filter_masked_pixels")


def _repair(datacube, data, mask, half_width, name):
    """Each chunk repaired by one task; the repair plan is made once from the mask."""
    plan = dask.delayed(repair_plan, pure=True)(single_key(mask), half_width)
    repaired = data.map_blocks(repair_pixels, plan, dtype=data.dtype, meta=data._meta, token=name)
    return rebuild(datacube, repaired, value_range=value_range(datacube))
