"""Centre of mass of every diffraction pattern, lazily, in one pass over the data."""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr

from ..datacube import R_DIMS, calibration_attrs
from ..graph import frame_blocks, only_block
from ..kernels.com import center_of_mass_frames


def center_of_mass(datacube, mask=None) -> xr.Dataset:
    """Lazy ``xr.Dataset`` over ``(Rx, Ry)`` with

    - ``com_x``, ``com_y``: centre of mass in detector pixels, counted from the corner pixel
      ``(0, 0)`` as py4DSTEM's DPC does (float64);
    - ``com_qx``, ``com_qy``: the same in calibrated units (``q_pixel_size`` x pixels, units
      ``q_units``), when the detector is calibrated;
    - ``intensity``: the (masked) total intensity of each pattern.

    ``mask``: optional ``(Qx, Qy)`` detector weights (bool or float) multiplied into every
    pattern. A pattern with zero (masked) intensity has NaN centre of mass. One fused compiled
    pass per chunk (integer data accumulate exactly in int64), one task per chunk.
    """
    data = frame_blocks(datacube)
    qx, qy = data.shape[2:]
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != (qx, qy):
            raise ValueError(f"mask must have the detector shape {(qx, qy)}, got {mask.shape}")
        if mask.dtype.kind not in "biuf":
            raise ValueError(f"mask must be boolean or real weights, got dtype {mask.dtype}")
    weights = None if mask is None else da.from_array(mask, chunks=-1)
    args = (data, "ijkl") if weights is None else (data, "ijkl", weights, "kl")
    stacked = da.blockwise(_com_block, "ijc", *args, new_axes={"c": 3}, concatenate=False,
                           dtype=np.float64, meta=np.empty((0, 0, 0), dtype=np.float64),
                           token="center_of_mass")
    coords = {d: datacube.coords[d] for d in R_DIMS}
    attrs = calibration_attrs(datacube.attrs)
    pixels = {"units": "pixels", "origin": "corner pixel (0, 0)"}
    variables = {
        "com_x": xr.DataArray(stacked[..., 1], dims=R_DIMS, attrs=pixels),
        "com_y": xr.DataArray(stacked[..., 2], dims=R_DIMS, attrs=pixels),
        "intensity": xr.DataArray(stacked[..., 0], dims=R_DIMS, attrs={"units": "counts"}),
    }
    if datacube.attrs.get("q_units", "pixels") != "pixels":
        size, units = datacube.attrs["q_pixel_size"], datacube.attrs["q_units"]
        for axis in ("x", "y"):
            variables[f"com_q{axis}"] = xr.DataArray(stacked[..., 1 if axis == "x" else 2] * size,
                                                     dims=R_DIMS, attrs={"units": units})
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def _com_block(block, mask=None):
    # concatenate=False: the contracted Qx, Qy axes hold one block each, which dask hands over
    # in nested lists; concatenating them would copy every chunk
    return center_of_mass_frames(only_block(block), None if mask is None else only_block(mask))
