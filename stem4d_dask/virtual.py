"""Virtual detectors (minimal: a circular mask, masked-sum images, the mean pattern)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr

from .datacube import check_datacube
from .kernels.virtual import masked_sums


def circle_mask(datacube_or_shape, radius, center=None) -> np.ndarray:
    """Boolean ``(Qx, Qy)`` mask of pixels whose centres lie within ``radius`` pixels of
    ``center`` (pixels, default: the detector centre ``((Qx-1)/2, (Qy-1)/2)``)."""
    shape = (datacube_or_shape.shape[-2:] if hasattr(datacube_or_shape, "shape")
             else tuple(datacube_or_shape))
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"datacube_or_shape: expected a datacube or (Qx, Qy), got {shape}")
    if not np.isfinite(radius) or radius <= 0:
        raise ValueError(f"radius must be a positive number of pixels, got {radius!r}")
    cx, cy = ((shape[0] - 1) / 2, (shape[1] - 1) / 2) if center is None else center
    qx, qy = np.ogrid[: shape[0], : shape[1]]
    return (qx - cx) ** 2 + (qy - cy) ** 2 <= radius**2


def virtual_image(datacube, mask) -> xr.DataArray:
    """Lazy ``(Rx, Ry)`` float64 image: each pattern summed with weights ``mask`` ``(Qx, Qy)``.

    One task per chunk (a matrix-vector product per batch of frames).
    """
    check_datacube(datacube)
    mask = np.asarray(mask)
    if mask.shape != datacube.shape[2:]:
        raise ValueError(f"mask must have the detector shape {datacube.shape[2:]}, "
                         f"got {mask.shape}")
    # the mask is one graph key shared by all tasks; Qx, Qy are whole in every chunk
    weights = da.from_array(mask, chunks=-1)
    image = da.blockwise(masked_sums, "ij", datacube.data, "ijkl", weights, "kl",
                         concatenate=True, dtype=np.float64,
                         meta=np.empty((0, 0), dtype=np.float64))
    return xr.DataArray(image, dims=("Rx", "Ry"),
                        coords={d: datacube.coords[d] for d in ("Rx", "Ry")},
                        name="virtual_image", attrs=_attrs(datacube, "r"))


def mean_diffraction_pattern(datacube) -> xr.DataArray:
    """Lazy ``(Qx, Qy)`` float64 mean of all patterns (accumulated in float64)."""
    check_datacube(datacube)
    mean = datacube.data.mean(axis=(0, 1), dtype=np.float64)
    return xr.DataArray(mean, dims=("Qx", "Qy"),
                        coords={d: datacube.coords[d] for d in ("Qx", "Qy")},
                        name="mean_pattern", attrs=_attrs(datacube, "q"))


def _attrs(datacube, space):
    keys = (f"{space}_pixel_size", f"{space}_units", "energy")
    return {k: datacube.attrs[k] for k in keys if k in datacube.attrs}
