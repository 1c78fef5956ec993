"""``.npy`` files and raw binary files, read lazily through per-chunk memory maps."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np

from ..chunks import normalize_chunks
from ..datacube import from_array
from ..lazy import lazy_from_loader, raw_file_loader


def _scan_shape_4d(shape, scan_shape, parameter="shape"):
    """Full 4D shape from a 4D ``shape`` or a 3D ``(N, Qx, Qy)`` one plus ``scan_shape``."""
    shape = tuple(int(s) for s in shape)
    if scan_shape is not None and len(shape) == 4 and tuple(scan_shape) != shape[:2]:
        raise ValueError(
            f"scan_shape: {tuple(scan_shape)} differs from the scan {shape[:2]} of the 4D array "
            f"{shape}; pass scan_shape=None to keep it, or reshape explicitly with "
            "stem4d_dask.preprocess.set_scan_shape"
        )
    if scan_shape is not None:
        rx, ry = (int(s) for s in scan_shape)
        n = int(np.prod(shape[:-2]))
        if rx < 1 or ry < 1 or rx * ry != n:
            raise ValueError(
                f"scan_shape: {tuple(scan_shape)} does not hold the {n} frames of shape {shape}"
            )
        return (rx, ry) + shape[-2:]
    if len(shape) != 4:
        raise ValueError(
            f"{parameter}: expected a 4D (Rx, Ry, Qx, Qy) array, got shape {shape}; "
            "pass scan_shape=(Rx, Ry) for a 3D stack of frames"
        )
    return shape


def read_raw(
    path, *, shape, dtype=None, offset=0, order="C", scan_shape=None, chunks="auto", **calibration
):
    """Lazy datacube from a headerless binary file.

    ``shape``: 4D ``(Rx, Ry, Qx, Qy)``, or 3D ``(N, Qx, Qy)`` with ``scan_shape=(Rx, Ry)``;
    ``dtype``: numpy dtype (endianness included, e.g. ``">u2"``), required (``ValueError``
    without: the file has no header to tell it, and none is guessed); ``offset``: header bytes to
    skip; ``order``: ``"C"`` or ``"F"``. The file must hold exactly ``offset`` + the array's
    bytes (else ``ValueError`` with both sizes: a wrong shape or dtype never reads silently).
    ``scan_shape`` reshapes a 3D stack; for a 4D ``shape`` it must equal ``shape[:2]``.
    Each chunk memory-maps and copies only its own bytes.
    ``calibration``: keyword arguments of :func:`stem4d_dask.from_array`.
    """
    if dtype is None:  # a raw file has no header to say it, and a guess reads wrong values
        raise ValueError(
            f"dtype: a raw file has no header to tell its dtype; pass dtype= for {path} (a "
            "numpy dtype with its byte order, e.g. 'uint16', '<u2' or '>f4')"
        )
    known = [k for k in inspect.signature(from_array).parameters if k not in ("data", "chunks")]
    unknown = sorted(set(calibration) - set(known))
    if unknown:
        raise TypeError(f"{unknown[0]}: not an option of raw or .npy files")
    if order not in ("C", "F"):
        raise ValueError(f"order must be 'C' or 'F', got {order!r}")
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: not a numpy dtype: {dtype!r}") from None
    if order == "F" and scan_shape is not None:
        raise ValueError("scan_shape: reshaping a Fortran-ordered file is not supported")
    full = _scan_shape_4d(shape, scan_shape)
    loader = raw_file_loader(path, dtype, full, offset, order, exact=True)
    norm = normalize_chunks(chunks, full, dtype)
    data = lazy_from_loader(loader, full, dtype, norm, f"raw-{Path(path).name}")
    return from_array(data, chunks=None, **calibration)


def read_npy(path, *, scan_shape=None, chunks="auto", **calibration):
    """Lazy datacube from a ``.npy`` file (4D, or 3D with ``scan_shape``); header parsed only."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = header(f)
        offset = f.tell()
    if dtype.hasobject:
        raise ValueError(f"path: {path} holds Python objects, not a numeric array")
    return read_raw(
        path,
        shape=shape,
        dtype=dtype,
        offset=offset,
        order="F" if fortran else "C",
        scan_shape=scan_shape,
        chunks=chunks,
        **calibration,
    )


def is_npy(path) -> bool:
    """True for a file that starts with the ``.npy`` magic string."""
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(6) == b"\x93NUMPY"
