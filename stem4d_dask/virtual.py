"""Virtual detectors: images from a stack of masks in one pass, and the mean pattern.

Mask builders (circle, annulus, angular segments) live in :mod:`stem4d_dask.detectors`;
``circle_mask`` is re-exported here.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .checks import mask_stack
from .datacube import calibration_attrs, check_datacube
from .detectors import circle_mask
from .graph import map_frames
from .kernels.virtual import masked_sums_stack

__all__ = ["circle_mask", "virtual_image", "virtual_images", "mean_diffraction_pattern"]


def virtual_images(datacube, masks) -> xr.DataArray:
    """Lazy float64 ``(Rx, Ry, detector)`` images, one per mask, from one pass over the data.

    Parameters
    ----------
    datacube : datacube ``(Rx, Ry, Qx, Qy)``, any real dtype.
    masks : ``(n, Qx, Qy)`` stack of detector weights (bool, int or float; a list of ``(Qx, Qy)``
        arrays, such as :func:`~stem4d_dask.detectors.annular_segmented_detectors`' result, or
        one ``(Qx, Qy)`` mask, which gives ``n = 1``).

    Returns
    -------
    DataArray ``(Rx, Ry, detector)``: ``image[..., m] = sum_{qx, qy} I * masks[m]`` in float64
    (integer data sum exactly below 2**53), with the datacube's scan coords, a ``detector`` coord
    ``0 .. n-1`` and its ``r_*``, ``q_*`` and ``energy`` attrs.

    Each chunk's frames, flattened to ``(frames, Qx*Qy)``, are multiplied by the ``(Qx*Qy, n)``
    mask matrix (a BLAS matrix product; numpy or cupy following the chunk). The mask stack is one
    graph key shared by all tasks, and the graph has one task per chunk.
    """
    datacube = check_datacube(datacube)
    weights = mask_stack(masks, datacube)
    n = weights.shape[-1]
    return map_frames(
        masked_sums_stack,
        datacube,
        weights,
        out_dims=("detector",),
        out_sizes=(n,),
        name="virtual_images",
        coords={"detector": np.arange(n)},
    )


def virtual_image(datacube, mask) -> xr.DataArray:
    """Lazy ``(Rx, Ry)`` float64 image: each pattern summed with weights ``mask`` ``(Qx, Qy)``.

    The one-mask case of :func:`virtual_images` (one task per chunk).
    """
    datacube = check_datacube(datacube)
    weights = mask_stack(mask, datacube, parameter="mask")
    if weights.shape[-1] != 1:
        raise ValueError(
            f"mask must be one (Qx, Qy) mask, got a stack of {weights.shape[-1]}; "
            "use virtual_images for a stack"
        )
    return map_frames(
        _first_image,
        datacube,
        weights,
        name="virtual_image",
        attrs=calibration_attrs(datacube.attrs, ("r",)),
    )


def mean_diffraction_pattern(datacube) -> xr.DataArray:
    """Lazy ``(Qx, Qy)`` float64 mean of all patterns (accumulated in float64)."""
    datacube = check_datacube(datacube)
    mean = datacube.data.mean(axis=(0, 1), dtype=np.float64)
    return xr.DataArray(
        mean,
        dims=("Qx", "Qy"),
        coords={d: datacube.coords[d] for d in ("Qx", "Qy")},
        name="mean_pattern",
        attrs=calibration_attrs(datacube.attrs, ("q",)),
    )


def _first_image(block, weights):
    return masked_sums_stack(block, weights)[..., 0]
