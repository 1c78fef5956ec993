"""stem4d_dask: lazy, out-of-core 4D-STEM processing on Dask, xarray and zarr.

A datacube is an ``xarray.DataArray`` with dims ``(Rx, Ry, Qx, Qy)`` over a dask array; see
:func:`from_array` and :func:`read`. Importing the package registers the ``.stem4d`` accessor.
"""

from . import accessor as _accessor  # noqa: F401  (registers .stem4d)
from .calibration import electron_wavelength_angstrom, inv_angstrom_to_mrad, mrad_to_inv_angstrom
from .convert import convert, read_provenance
from .datacube import DIMS, as_datacube, describe, from_array, with_calibration, with_q_units
from .frame_functions import FrameFunctionError, map_frames, reduce_frames
from .io import read, read_npy, read_raw, to_h5, to_zarr, write
from .peaks import BraggPeaks, find_peaks
from .ragged import RaggedFrames
from .steps import apply_steps

__version__ = "0.1.0"


__all__ = [
    "DIMS",
    "from_array",
    "as_datacube",
    "describe",
    "with_calibration",
    "with_q_units",
    "read",
    "read_npy",
    "read_raw",
    "to_zarr",
    "to_h5",
    "write",
    "convert",
    "read_provenance",
    "apply_steps",
    "map_frames",
    "reduce_frames",
    "FrameFunctionError",
    "RaggedFrames",
    "find_peaks",
    "BraggPeaks",
    "electron_wavelength_angstrom",
    "mrad_to_inv_angstrom",
    "inv_angstrom_to_mrad",
]
