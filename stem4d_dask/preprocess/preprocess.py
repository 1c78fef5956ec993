"""py4DSTEM ``preprocess.preprocess`` functions on lazy datacubes.

All return a new datacube and leave their input untouched. Deviations from py4DSTEM 0.14.18:

- ``set_scan_shape`` raises ``ValueError`` for an impossible shape (py4DSTEM prints and returns
  the datacube unchanged);
- the swaps move coords and calibrations with their axes (py4DSTEM keeps ``R_pixel_size`` on axes
  0-1 after ``swap_RQ``).
"""

from __future__ import annotations

import xarray as xr

from ..datacube import check_datacube, from_array, normalize_chunks

_CAL = ("r_pixel_size", "r_units", "q_pixel_size", "q_units")


def _rebuild(dc: xr.DataArray, data, **attrs) -> xr.DataArray:
    """A datacube over ``data`` with ``dc``'s attrs updated by ``attrs``."""
    merged = {**dc.attrs, **attrs}
    cal = {k: merged.pop(k) for k in _CAL}
    energy = merged.pop("energy", None)
    return from_array(data, chunks=None, energy=energy, attrs=merged, **cal)


def set_scan_shape(datacube, R_Nx, R_Ny):
    """Reshape the scan to ``(R_Nx, R_Ny)`` in C order (Ry fastest), keeping the detector axes.

    Raises ``ValueError`` when ``R_Nx * R_Ny`` differs from the number of frames. The reshape is
    lazy; the result is rechunked to the default whole-frame blocks (a reshape of the scan can
    not keep arbitrary scan chunks).
    """
    check_datacube(datacube)
    rx, ry, qx, qy = datacube.shape
    R_Nx, R_Ny = _positive_int(R_Nx, "R_Nx"), _positive_int(R_Ny, "R_Ny")
    if R_Nx * R_Ny != rx * ry:
        raise ValueError(
            f"R_Nx, R_Ny: scan shape ({R_Nx}, {R_Ny}) holds {R_Nx * R_Ny} frames, "
            f"the datacube has {rx} x {ry} = {rx * ry}"
        )
    data = datacube.data.reshape(rx * ry, qx, qy).reshape(R_Nx, R_Ny, qx, qy)
    return _rebuild(datacube, _whole_frames(data))


def _positive_int(value, name) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__") or int(value) < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _whole_frames(data):
    """Rechunk to the default policy (whole frames, 32-128 MiB scan blocks)."""
    return data.rechunk(normalize_chunks("auto", data.shape, data.dtype))


def swap_RQ(datacube):
    """Exchange scan and detector axes: ``(Rx, Ry, Qx, Qy) -> (Qx, Qy, Rx, Ry)`` relabelled as
    ``(Rx, Ry, Qx, Qy)``. The pixel sizes and units swap with their axes.

    The old scan axes become the detector axes, so the result is rechunked to whole frames (a
    full shuffle of the data when computed, as any R/Q transpose is)."""
    check_datacube(datacube)
    a = datacube.attrs
    data = _whole_frames(datacube.data.transpose(2, 3, 0, 1))
    return _rebuild(datacube, data, r_pixel_size=a["q_pixel_size"], r_units=a["q_units"],
                    q_pixel_size=a["r_pixel_size"], q_units=a["r_units"])


def swap_Rxy(datacube):
    """Exchange the two scan axes (Rx <-> Ry)."""
    check_datacube(datacube)
    return _rebuild(datacube, datacube.data.transpose(1, 0, 2, 3))


def swap_Qxy(datacube):
    """Exchange the two detector axes (Qx <-> Qy)."""
    check_datacube(datacube)
    return _rebuild(datacube, datacube.data.transpose(0, 1, 3, 2))


__all__ = ["set_scan_shape", "swap_RQ", "swap_Rxy", "swap_Qxy"]
