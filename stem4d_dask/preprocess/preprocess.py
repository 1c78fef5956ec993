"""py4DSTEM ``preprocess.preprocess`` functions on lazy datacubes.

The shape operations live here; binning, crops, resampling/padding, shifting and bad-pixel repair
live in their own modules and are re-exported, as are ``bin2D`` and ``get_shifted_ar`` (from
``utils``), which py4DSTEM's module offers too. All return a new datacube and leave their input
untouched.
Deviations of the shape operations from py4DSTEM 0.14.18:

- ``set_scan_shape`` raises ``ValueError`` for an impossible shape (py4DSTEM prints and returns
  the datacube unchanged);
- ``swap_Rxy``/``swap_Qxy`` move the coords with their axes; ``swap_RQ`` keeps each space's
  calibration (as py4DSTEM) on the new axes of that space.
"""

from __future__ import annotations

import warnings

from .. import coords as cal
from ..checks import positive_int
from ..datacube import DIMS, check_datacube
from ..graph import rebuild, whole_frames
from ..values import value_range
from .binning import bin_data_diffraction, bin_data_mmap, bin_data_real, thin_data_real
from .crop import crop_data_diffraction, crop_data_real
from .pixels import filter_hot_pixels, median_filter_masked_pixels, median_filter_masked_pixels_2D
from .resampling import pad_data_diffraction, resample_data_diffraction
from .shifting import center_patterns, datacube_diffraction_shift
from .utils import bin2D, get_shifted_ar


def set_scan_shape(datacube, R_Nx, R_Ny):
    """Reshape the scan to ``(R_Nx, R_Ny)`` in C order (Ry fastest), keeping the detector axes.

    Raises ``ValueError`` when ``R_Nx * R_Ny`` differs from the number of frames. The reshape is
    lazy; the result is rechunked to the default whole-frame blocks (a reshape of the scan can
    not keep arbitrary scan chunks). The new scan coords start at 0 with the old scan pixel size
    (pixels, with a warning, when the old coords define none).
    """
    datacube = check_datacube(datacube, complex_ok=True)
    rx, ry, qx, qy = datacube.shape
    R_Nx, R_Ny = positive_int(R_Nx, "R_Nx"), positive_int(R_Ny, "R_Ny")
    if R_Nx * R_Ny != rx * ry:
        raise ValueError(
            f"R_Nx, R_Ny: scan shape ({R_Nx}, {R_Ny}) holds {R_Nx * R_Ny} frames, "
            f"the datacube has {rx} x {ry} = {rx * ry}"
        )
    data = datacube.data.reshape(rx * ry, qx, qy).reshape(R_Nx, R_Ny, qx, qy)
    try:
        step, unit = cal.pixel_size(datacube, "r", "set_scan_shape"), cal.units(datacube, "r")
    except ValueError as err:
        warnings.warn(f"{err}; the new scan coords are in pixels", stacklevel=2)
        step, unit = 1.0, "pixels"
    coords = {d: cal.regular_coord(n, step, unit, d) for d, n in (("Rx", R_Nx), ("Ry", R_Ny))}
    return rebuild(datacube, whole_frames(data), coords, value_range(datacube))


def swap_RQ(datacube):
    """Exchange scan and detector axes: ``(Rx, Ry, Qx, Qy) -> (Qx, Qy, Rx, Ry)`` relabelled as
    ``(Rx, Ry, Qx, Qy)``, for data stored with the two swapped.

    Each space keeps its calibration (as py4DSTEM, whose ``R_pixel_size`` stays with the scan):
    the new scan axes get the scan pixel size, units and origin, sized to their new length, and
    likewise for the detector. A space whose coords define no pixel size becomes pixels, with a
    warning. The old scan axes become the detector axes, so the result is rechunked to whole
    frames (a full shuffle of the data when computed, as any R/Q transpose is)."""
    datacube = check_datacube(datacube, complex_ok=True)
    data = whole_frames(datacube.data.transpose(2, 3, 0, 1))
    coords = {}
    for space, dims in cal.SPACES.items():
        try:
            step, unit = cal.pixel_size(datacube, space, "swap_RQ"), cal.units(datacube, space)
            origins = [cal.axis(datacube, d).origin for d in dims]
        except ValueError as err:
            warnings.warn(f"{err}; its new axes are in pixels", stacklevel=2)
            step, unit, origins = 1.0, "pixels", [0.0, 0.0]
        for d, o, n in zip(dims, origins, data.shape[DIMS.index(dims[0]) :][:2], strict=True):
            coords[d] = cal.regular_coord(n, step, unit, d, o)
    return rebuild(datacube, data, coords, value_range(datacube))


def swap_Rxy(datacube):
    """Exchange the two scan axes (Rx <-> Ry), coords included."""
    return _swap(datacube, "Rx", "Ry", (1, 0, 2, 3))


def swap_Qxy(datacube):
    """Exchange the two detector axes (Qx <-> Qy), coords included."""
    return _swap(datacube, "Qx", "Qy", (0, 1, 3, 2))


def _swap(datacube, a, b, axes):
    datacube = check_datacube(datacube, complex_ok=True)
    coords = {
        a: cal.coord(datacube.coords[b].values, a, datacube.coords[b].attrs["units"]),
        b: cal.coord(datacube.coords[a].values, b, datacube.coords[a].attrs["units"]),
    }
    return rebuild(datacube, datacube.data.transpose(*axes), coords, value_range(datacube))


__all__ = [
    "set_scan_shape",
    "swap_RQ",
    "swap_Rxy",
    "swap_Qxy",
    "bin_data_diffraction",
    "bin_data_mmap",
    "bin_data_real",
    "thin_data_real",
    "crop_data_diffraction",
    "crop_data_real",
    "resample_data_diffraction",
    "pad_data_diffraction",
    "datacube_diffraction_shift",
    "center_patterns",
    "filter_hot_pixels",
    "median_filter_masked_pixels",
    "median_filter_masked_pixels_2D",
    "bin2D",
    "get_shifted_ar",
]
