"""Any HDF5 dataset by path (:func:`read_hdf5`), and the datacube of a legacy EMD 0.x /
py4DSTEM <= 0.13 file (:func:`read_legacy_emd`; what such a file says, its layouts and
calibration: :mod:`stem4d_dask.io.legacy_emd`), read lazily.

Each dask chunk is read by its own task. A contiguous, uncompressed dataset is mapped straight
from the file (its byte offset is read once at open): no h5py and no HDF5 lock in the tasks.
Chunked or compressed datasets are read through h5py (with hdf5plugin's filters when installed),
and the dask chunks are made of whole HDF5 chunks so that no stored chunk is decoded twice.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..checks import checked_scan_shape
from ..chunks import auto_chunks, normalize_chunks
from ..datacube import from_array, user_stacklevel
from ..lazy import RawFileLoader, lazy_from_loader
from .frames import frame_count_error
from .h5 import H5BlockLoader, h5_text, hdf5_filters, is_hdf5
from .legacy_emd import (
    cube_groups,
    is_emd1,
    is_legacy_emd,
    layout_name,
    legacy_calibration,
    pick_datacube,
)
from .metadata import json_value

_LIST = 20  # datasets listed in an error message


# --- any dataset ----------------------------------------------------------------------------


@dataclass
class _Layout:
    """How a stored dataset becomes a ``(Rx, Ry, Qx, Qy)`` datacube."""

    path: str
    dataset: str
    stored: tuple
    shape: tuple  # the datacube's
    dtype: np.dtype  # stored
    drop: int
    multiple_of: tuple  # (Rx, Ry) chunk sizes made of whole stored chunks
    offset: int | None  # byte offset of a contiguous, unfiltered dataset


def _datasets(f) -> list[str]:
    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            found.append(f"/{name} {tuple(obj.shape)} {obj.dtype}")

    f.visititems(visit)
    more = f" ... ({len(found) - _LIST} more)" if len(found) > _LIST else ""
    return found[:_LIST] + ([more] if more else [])


def _drop_axis(shape) -> int:
    """The length-1 axis of a 5D shape to drop: the last, else the first, else the only one."""
    ones = [i for i, n in enumerate(shape) if n == 1]
    if shape[-1] == 1:
        return len(shape) - 1
    if shape[0] == 1:
        return 0
    return ones[0] if len(ones) == 1 else -1


def _layout(path: str, f, dataset: str, scan_shape) -> _Layout:
    dset = f.get(dataset)
    if not isinstance(dset, h5py.Dataset):
        kind = "a group" if isinstance(dset, h5py.Group) else "missing"
        raise ValueError(
            f"dataset: {dataset!r} is {kind} in {path}; its datasets are: "
            + "; ".join(_datasets(f))
        )
    stored, dtype = tuple(int(n) for n in dset.shape), dset.dtype
    if dtype.kind not in "biuf":
        raise TypeError(
            f"dataset: {dset.name} in {path} holds {dtype}; a datacube holds real "
            "numbers or booleans"
        )
    chunks = dset.chunks or (1,) * len(stored)
    drop = -1
    if len(stored) == 5:
        drop = _drop_axis(stored)
        if drop < 0:
            raise ValueError(
                f"dataset: {dset.name} in {path} is 5D {stored} with no single "
                "length-1 axis to drop"
            )
        stored4 = stored[:drop] + stored[drop + 1 :]
        chunks = chunks[:drop] + chunks[drop + 1 :]
    elif len(stored) in (3, 4):
        stored4 = stored
    else:
        raise ValueError(
            f"dataset: {dset.name} in {path} is {len(stored)}D {stored}; expected 3D "
            "(N, Qx, Qy) with scan_shape, 4D (Rx, Ry, Qx, Qy), or 5D with a length-1 "
            "axis. Its datasets are: " + "; ".join(_datasets(f))
        )
    if len(stored4) == 3:
        if scan_shape is None:
            raise ValueError(
                f"scan_shape: {dset.name} in {path} is a 3D stack of "
                f"{stored4[0]} frames {stored4[1:]}; pass scan_shape=(Rx, Ry)"
            )
        rx, ry = checked_scan_shape(scan_shape)
        if rx * ry > stored4[0]:
            raise ValueError(
                "scan_shape: "
                + frame_count_error(f"{path}:{dset.name}", stored4[0], rx * ry, (rx, ry))
            )
        if rx * ry != stored4[0]:
            raise ValueError(
                f"scan_shape: {(rx, ry)} takes {rx * ry} of the {stored4[0]} frames "
                f"of {dset.name} in {path}; give a shape that holds them all"
            )
        shape = (rx, ry, *stored4[1:])
        k = chunks[0]
        multiple = (1, k) if ry % k == 0 else (k // ry, ry) if k % ry == 0 else (1, 1)
    else:
        shape = stored4
        if scan_shape is not None and checked_scan_shape(scan_shape) != shape[:2]:
            raise ValueError(
                f"scan_shape: {tuple(scan_shape)} differs from the scan {shape[:2]} "
                f"of {dset.name} {stored} in {path}; pass scan_shape=None"
            )
        multiple = chunks[:2]
    plist = dset.id.get_create_plist()
    offset = None
    if (
        plist.get_layout() == h5py.h5d.CONTIGUOUS
        and plist.get_nfilters() == 0
        and plist.get_external_count() == 0
        and dtype.isnative
    ):
        offset = dset.id.get_offset()  # None when no storage is allocated (never written)
    elif plist.get_nfilters() and not hdf5_filters():
        warnings.warn(
            f"dataset: {dset.name} in {path} is compressed; install hdf5plugin if reading it fails",
            stacklevel=user_stacklevel(),
        )
    return _Layout(path, dset.name, stored, shape, dtype, drop, tuple(multiple), offset)


def _lazy(layout: _Layout, chunks, name: str):
    shape, dtype = layout.shape, layout.dtype.newbyteorder("=")
    if isinstance(chunks, str) and chunks == "auto":
        chunks = auto_chunks(shape, dtype.itemsize, multiple_of=layout.multiple_of)
    norm = normalize_chunks(chunks, shape, dtype)
    mtime = os.stat(layout.path).st_mtime_ns
    if layout.offset is not None:  # the dataset is one C-ordered run of bytes in the file
        loader = RawFileLoader(layout.path, layout.dtype.str, shape, int(layout.offset), "C", mtime)
    else:
        loader = H5BlockLoader(
            layout.path, layout.dataset, dtype.str, layout.stored, shape[:2], layout.drop, mtime
        )
    return lazy_from_loader(loader, shape, dtype, norm, name)


def hdf5_path(path) -> str:
    """The absolute path of HDF5 file ``path``; ``FileNotFoundError`` or ``ValueError`` (no
    HDF5 signature) naming it."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: {path} does not exist or is not a file")
    if not is_hdf5(path):
        raise ValueError(f"path: {path} is not an HDF5 file (no HDF5 signature)")
    return path


def open_hdf5(path) -> h5py.File:
    """``path`` opened read-only; ``ValueError`` naming it when HDF5 cannot read it."""
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise ValueError(
            f"path: {path} is not a readable HDF5 file; it may be truncated or corrupt ({err})"
        ) from None


def _open(path) -> tuple[str, h5py.File]:
    """(absolute path, the file open for reading), or an error naming the file."""
    path = hdf5_path(path)
    return path, open_hdf5(path)


def read_hdf5(path, *, dataset, scan_shape=None, chunks="auto"):
    """Open any HDF5 dataset lazily as a datacube (``read(path, dataset=...)`` calls this).

    Parameters
    ----------
    dataset : the dataset's path in the file, e.g. ``"entry/data/data"``. It may be 4D
        ``(Rx, Ry, Qx, Qy)``; 3D ``(N, Qx, Qy)`` frames in scan order with ``scan_shape``
        (``Rx * Ry == N``); or 5D with a length-1 axis (a colour channel, a singleton time
        axis: the last axis if it has length 1, else the first), which is dropped.
    scan_shape : ``(Rx, Ry)`` for a 3D dataset; for 4D/5D it must equal the stored scan.
    chunks : ``"auto"`` (whole frames, 32-128 MiB scan blocks made of whole HDF5 chunks),
        ``{dim: size}`` or a tuple as in :func:`stem4d_dask.from_array`.

    The axes are taken as stored (``Qx`` = the frame's rows). Compressed datasets need the
    filter's plugin (``pip install hdf5plugin``). No calibration is read (pass
    ``r_pixel_size=`` etc. to :func:`stem4d_dask.read`); ``attrs["metadata"]`` holds the
    dataset's path, stored shape and attributes. Errors name the dataset and list the file's
    datasets when it is missing or has the wrong rank.
    """
    path, f = _open(path)
    with f:
        layout = _layout(path, f, dataset, scan_shape)
        attrs = {k: json_value(h5_text(v)) for k, v in f[layout.dataset].attrs.items()}
    data = _lazy(layout, chunks, f"hdf5-{Path(path).name}")
    metadata = {
        "dataset": layout.dataset,
        "stored_shape": list(layout.stored),
        "dtype": layout.dtype.str,
        "attrs": attrs,
    }
    return from_array(data, chunks=None, attrs={"format": "hdf5", "metadata": metadata})


# --- legacy EMD / py4DSTEM ------------------------------------------------------------------


def read_legacy_emd(path, *, name=None, chunks="auto"):
    """Open the 4D datacube of a py4DSTEM <= 0.13 or EMD 0.x ``.h5``/``.emd`` file lazily.

    Parameters
    ----------
    name : which datacube (its group name or HDF5 path) when the file holds several.
    chunks : ``"auto"`` (whole frames, 32-128 MiB scan blocks made of whole HDF5 chunks),
        ``{dim: size}`` or a tuple as in :func:`stem4d_dask.from_array`.

    The stored axes are ``(Rx, Ry, Qx, Qy)`` as py4DSTEM wrote them. Calibration: py4DSTEM
    0.13's Calibration group (``R_pixel_size``/``R_pixel_units``, ``Q_...``), else a
    ``metadata/calibration`` group, else the dim vectors (units such as ``'[n_m]'`` become
    nm, ``'[n_m^-1]'`` 0.1 A^-1), else pixels; origins from the dim vectors. ``attrs[
    "metadata"]``: the layout and version, the group read and the calibration items.
    """
    path, f = _open(path)
    with f:
        if is_emd1(f):
            raise ValueError(f"path: {path} is an EMD 1.0 file; read it with read_emd")
        groups = cube_groups(f)
        if not groups:
            raise ValueError(
                f"path: {path} ({layout_name(f)[0]}) holds no 4D datacube (an EMD "
                "data group with a 4D 'data' dataset); its datasets are: "
                + "; ".join(_datasets(f))
                + ". Read one with read(path, "
                "dataset=..., scan_shape=...)"
            )
        group_path, key = pick_datacube(f, groups, name, path)
        group = f[group_path]
        layout = _layout(path, f, f"{group_path}/{key}", None)
        calibration, items = legacy_calibration(f, group, group[key])
        kind, version = layout_name(f)
    data = _lazy(layout, chunks, f"emd-legacy-{Path(path).name}")
    metadata = {
        "layout": kind,
        "version": version,
        "group": group_path,
        "dataset": layout.dataset,
        "calibration": items,
    }
    return from_array(
        data, chunks=None, attrs={"format": "emd-legacy", "metadata": metadata}, **calibration
    )


__all__ = [
    "read_hdf5",
    "is_legacy_emd",
    "read_legacy_emd",
    "H5BlockLoader",
    "hdf5_path",
    "open_hdf5",
]
