"""Lazy readers and writers. :func:`read` detects the format of a path."""

from __future__ import annotations

from pathlib import Path

from ..datacube import CALIBRATION_KEYS, with_calibration
from .emd import is_hdf5, read_emd, to_h5
from .raw import read_npy, read_raw
from .zarr_store import is_zarr, read_zarr, to_zarr

SUPPORTED = (
    "zarr stores (v3 written by stem4d_dask, or any xarray store with dims Rx, Ry, Qx, Qy)",
    "py4DSTEM / EMD 1.0 .h5 files",
    ".npy files",
    "raw binary (pass shape=, dtype= and optionally offset=)",
)


class UnsupportedFormatError(ValueError):
    """The path is not in any format stem4d_dask reads."""


def read(path, **options):
    """Open a 4D-STEM dataset lazily as a datacube; the format is detected from the path.

    Supported: zarr stores, py4DSTEM/EMD ``.h5``, ``.npy`` and raw binary (``shape=``,
    ``dtype=``, ``offset=``). Options: ``chunks``, ``scan_shape`` (3D npy/raw), ``name`` (which
    datacube in a zarr/h5 holding several), and calibration overrides (``r_pixel_size``,
    ``r_units``, ``q_pixel_size``, ``q_units``, ``energy``) applied after reading.
    Reads no pixel data.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"path: {path} does not exist")
    overrides = {k: options.pop(k) for k in CALIBRATION_KEYS if k in options}
    if is_zarr(path):
        dc = read_zarr(path, **options)
    elif is_hdf5(path):
        dc = read_emd(path, **options)
    elif "shape" in options or "dtype" in options:
        return read_raw(path, **options, **overrides)
    elif path.suffix.lower() == ".npy":
        return read_npy(path, **options, **overrides)
    else:
        raise UnsupportedFormatError(
            f"path: cannot read {path}: not a supported format. Supported: " + "; ".join(SUPPORTED)
        )
    return with_calibration(dc, **overrides) if overrides else dc


def write(dc, path, **options):
    """Write ``dc`` to ``path``: ``.h5``/``.hdf5``/``.emd`` in py4DSTEM's EMD 1.0 layout,
    anything else as a zarr v3 store."""
    if Path(path).suffix.lower() in (".h5", ".hdf5", ".emd"):
        return to_h5(dc, path, **options)
    return to_zarr(dc, path, **options)


__all__ = ["read", "write", "to_zarr", "to_h5", "read_emd", "read_zarr", "read_npy",
           "read_raw", "SUPPORTED", "UnsupportedFormatError"]
