"""Centre of mass of every diffraction pattern, lazily, in one pass over the data."""

from __future__ import annotations

import xarray as xr

from ..checks import detector_array
from ..coords import coord_values, make_axis
from ..datacube import Q_DIMS, R_DIMS, check_datacube
from ..graph import map_frames
from ..kernels.com import center_of_mass_frames


def center_of_mass(datacube, mask=None) -> xr.Dataset:
    """Lazy ``xr.Dataset`` over ``(Rx, Ry)`` with

    - ``com_x``, ``com_y``: centre of mass in detector pixels, counted from the corner pixel
      ``(0, 0)`` as py4DSTEM's DPC does (float64);
    - ``com_qx``, ``com_qy``: the same as coordinates of the datacube's Qx, Qy coords
      (``origin + step * com``, units ``q_units``: a cropped detector gives the same values as
      the full one), when the detector is calibrated and its coords are regular;
    - ``intensity``: the (masked) total intensity of each pattern.

    ``mask``: optional ``(Qx, Qy)`` detector weights (bool or float; a DataArray is aligned by
    dim name and coords) multiplied into every pattern. A pattern with zero (masked) intensity
    has NaN centre of mass. One fused compiled pass per chunk (integer data accumulate exactly
    in int64), one task per chunk.
    """
    datacube = check_datacube(datacube)
    weights = () if mask is None else (detector_array(mask, datacube, "mask"),)
    stacked = map_frames(
        center_of_mass_frames,
        datacube,
        *weights,
        out_dims=("c",),
        out_sizes=(3,),
        name="center_of_mass",
    )
    return com_dataset(
        stacked.data,
        {d: datacube.coords[d] for d in R_DIMS},
        {d: datacube.coords[d] for d in Q_DIMS},
        stacked.attrs,
    )


def com_dataset(stacked, r_coords: dict, q_coords: dict, attrs: dict) -> xr.Dataset:
    """The centre-of-mass Dataset (``com_x``, ``com_y``, ``intensity``, and ``com_qx``,
    ``com_qy`` when calibrated) from a lazy ``(Rx, Ry, 3)`` stack of (intensity, com_x, com_y)
    in pixels: the one layout of every centre of mass (dense and events)."""
    pixels = {"units": "pixels", "origin": "corner pixel (0, 0)"}
    variables = {
        "com_x": xr.DataArray(stacked[..., 1], dims=R_DIMS, attrs=pixels),
        "com_y": xr.DataArray(stacked[..., 2], dims=R_DIMS, attrs=pixels),
        "intensity": xr.DataArray(stacked[..., 0], dims=R_DIMS, attrs={"units": "counts"}),
    }
    variables.update(calibrated_com(q_coords, stacked[..., 1], stacked[..., 2]))
    return xr.Dataset(variables, coords=r_coords, attrs=attrs)


def calibrated_com(q_coords: dict, com_x, com_y) -> dict:
    """``{"com_qx", "com_qy"}`` ``(Rx, Ry)`` DataArrays: pixel centres of mass ``com_x``,
    ``com_y`` (from the corner pixel) as coordinates of the detector coords ``q_coords``
    (``{"Qx": coord, "Qy": coord}``). Empty when the detector is in pixels or an axis is
    irregular (there is then no coordinate frame to put a fractional pixel in)."""
    axes = [
        make_axis(coord_values(q_coords[d].values, d), d, q_coords[d].attrs.get("units", "pixels"))
        for d in Q_DIMS
    ]
    if axes[0].units == "pixels" or any(a.step is None and a.size > 1 for a in axes):
        return {}
    out = {}
    for name, a, com in (("com_qx", axes[0], com_x), ("com_qy", axes[1], com_y)):
        step = a.step if a.step is not None else 0.0
        out[name] = xr.DataArray(a.origin + com * step, dims=R_DIMS, attrs={"units": a.units})
    return out
