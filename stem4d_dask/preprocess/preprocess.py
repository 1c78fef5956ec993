"""py4DSTEM ``preprocess.preprocess`` functions on lazy datacubes.

The shape operations live here; binning, resampling/padding, shifting and bad-pixel repair live
in their own modules and are re-exported. All return a new datacube and leave their input untouched.
Deviations of the shape operations from py4DSTEM 0.14.18:

- ``set_scan_shape`` raises ``ValueError`` for an impossible shape (py4DSTEM prints and returns
  the datacube unchanged);
- the swaps move coords and calibrations with their axes (py4DSTEM keeps ``R_pixel_size`` on axes
  0-1 after ``swap_RQ``).
"""

from __future__ import annotations

from ..datacube import check_datacube
from ..graph import positive_int, rebuild, whole_frames
from .binning import bin_data_diffraction, bin_data_mmap, bin_data_real, thin_data_real
from .pixels import filter_hot_pixels, median_filter_masked_pixels
from .resampling import pad_data_diffraction, resample_data_diffraction
from .shifting import center_patterns, datacube_diffraction_shift


def set_scan_shape(datacube, R_Nx, R_Ny):
    """Reshape the scan to ``(R_Nx, R_Ny)`` in C order (Ry fastest), keeping the detector axes.

    Raises ``ValueError`` when ``R_Nx * R_Ny`` differs from the number of frames. The reshape is
    lazy; the result is rechunked to the default whole-frame blocks (a reshape of the scan can
    not keep arbitrary scan chunks).
    """
    check_datacube(datacube)
    rx, ry, qx, qy = datacube.shape
    R_Nx, R_Ny = positive_int(R_Nx, "R_Nx"), positive_int(R_Ny, "R_Ny")
    if R_Nx * R_Ny != rx * ry:
        raise ValueError(
            f"R_Nx, R_Ny: scan shape ({R_Nx}, {R_Ny}) holds {R_Nx * R_Ny} frames, "
            f"the datacube has {rx} x {ry} = {rx * ry}"
        )
    data = datacube.data.reshape(rx * ry, qx, qy).reshape(R_Nx, R_Ny, qx, qy)
    return rebuild(datacube, whole_frames(data))


def swap_RQ(datacube):
    """Exchange scan and detector axes: ``(Rx, Ry, Qx, Qy) -> (Qx, Qy, Rx, Ry)`` relabelled as
    ``(Rx, Ry, Qx, Qy)``. The pixel sizes and units swap with their axes.

    The old scan axes become the detector axes, so the result is rechunked to whole frames (a
    full shuffle of the data when computed, as any R/Q transpose is)."""
    check_datacube(datacube)
    a = datacube.attrs
    data = whole_frames(datacube.data.transpose(2, 3, 0, 1))
    return rebuild(datacube, data, r_pixel_size=a["q_pixel_size"], r_units=a["q_units"],
                    q_pixel_size=a["r_pixel_size"], q_units=a["r_units"])


def swap_Rxy(datacube):
    """Exchange the two scan axes (Rx <-> Ry)."""
    check_datacube(datacube)
    return rebuild(datacube, datacube.data.transpose(1, 0, 2, 3))


def swap_Qxy(datacube):
    """Exchange the two detector axes (Qx <-> Qy)."""
    check_datacube(datacube)
    return rebuild(datacube, datacube.data.transpose(0, 1, 3, 2))


__all__ = [
    "set_scan_shape", "swap_RQ", "swap_Rxy", "swap_Qxy",
    "bin_data_diffraction", "bin_data_mmap", "bin_data_real", "thin_data_real",
    "resample_data_diffraction", "pad_data_diffraction",
    "datacube_diffraction_shift", "center_patterns",
    "filter_hot_pixels", "median_filter_masked_pixels",
]
