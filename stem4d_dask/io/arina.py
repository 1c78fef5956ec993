"""DECTRIS ARINA / EIGER NeXus files (``X_master.h5`` + ``X_data_00000N.h5``), read lazily.

Layout (DECTRIS firmware, as in the ARINA test files)::

    X_master.h5   /entry/data/data_000001 ...   ExternalLinks to X_data_00000N.h5:/entry/data/data
                  /entry/instrument/detector/   bit_depth_image, saturation_value, x_pixel_size (m),
                                                frame_time, count_time, detectorSpecific/{nimages,
                                                ntrigger, x_pixels_in_detector, pixel_mask,
                                                flatfield, photon_energy (eV), ...}
    X_data_00000N.h5  /entry/data/data          (n, rows, cols) frames, HDF5 chunks of one frame,
                                                filter 32008 (bitshuffle + LZ4); attrs
                                                image_nr_low / image_nr_high (1-based)
    X.h5          "STEM Metadata" group attrs   NumPixelsX (fast), NumPixelsY (slow), Pixel Size
                                                (nm), High Tension (V), Camera Length (m), ...

The data files are stacked in link order (``data_000001``, ``data_000002`` ...). Opening reads
metadata and the chunk index only (``chunk_iter``: where each frame's compressed bytes are;
:mod:`stem4d_dask.io.arina_index`); each dask task then reads its frames with ``os.preadv``
(one call per run of consecutive chunks) and decodes the run straight into its block with the
compiled bitshuffle-LZ4 decoder (:mod:`stem4d_dask.kernels.bslz4`), which runs without the GIL:
no h5py and no HDF5 lock in the tasks, and the decode runs in parallel in dask's threads. Other
filters or layouts are read through h5py + hdf5plugin instead
(:mod:`stem4d_dask.io.arina_loader`). Each task carries only the index of its own frames, so
graphs stay small.

Orientation (see ``docs/formats.md``): ``Qx`` = the stored rows, ``Qy`` = columns, no flip;
scan position ``(rx, ry)`` is frame ``rx * Ry + ry``; ``(Rx, Ry) = (NumPixelsY, NumPixelsX)``.
Values keep their dtype (uint32 stays uint32; RosettaSciIO and py4DSTEM cast to uint16).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import xarray as xr

from ..checks import checked_scan_shape
from ..coords import regular_coord
from ..datacube import from_array, user_stacklevel
from ..lazy import lazy_from_loader
from .arina_index import SIDECAR_GROUP, SPECIFIC, Acquisition, open_acquisition
from .arina_loader import ArinaBlockLoader, lazy_scan
from .frames import frame_count_error
from .h5 import hdf5_filters, is_hdf5
from .metadata import depth_range, positive_number

# --- detection ------------------------------------------------------------------------------


def is_arina(path) -> bool:
    """True for a DECTRIS NeXus master file (``/entry/data`` holding ``data_00000N`` links) or
    one of its data files (``/entry/data/data`` with ``image_nr_low``). Reads HDF5 metadata
    only."""
    path = Path(path)
    if (
        not path.is_file()
        or path.suffix.lower() not in (".h5", ".hdf5", ".nxs")
        or not is_hdf5(path)
    ):
        return False
    try:
        with h5py.File(path, "r") as f:
            group = f.get("entry/data", getclass=True)
            if group is not h5py.Group:
                return False
            group = f["entry/data"]
            for key in group:
                link = group.get(key, getlink=True)
                if key.startswith("data_") and isinstance(link, h5py.ExternalLink):
                    return True
            if group.get("data", getclass=True) is h5py.Dataset:
                return "image_nr_low" in group["data"].attrs
            return any(
                k.startswith("data_") and group.get(k, getclass=True) is h5py.Dataset for k in group
            )
    except (OSError, KeyError, ValueError):
        return False


# --- scan shape and calibration -------------------------------------------------------------


def _scan_shape(acq: Acquisition, scan_shape) -> tuple[tuple, str]:
    """``(scan shape, where it came from)``: ``scan_shape=``, else the side-car's, else a
    guess (square, else ``(frames, 1)``) with a warning."""
    n = acq.n_frames
    if scan_shape is not None:
        return checked_scan_shape(scan_shape), "scan_shape="
    side = acq.sidecar
    if side is not None and "NumPixelsX" in side and "NumPixelsY" in side:
        shape = (int(side["NumPixelsY"]), int(side["NumPixelsX"]))
        if shape[0] * shape[1] < n:
            raise ValueError(
                f"scan_shape: {side['file']} gives a {side['NumPixelsX']} x "
                f"{side['NumPixelsY']} (X x Y) scan, {shape[0] * shape[1]} frames, but the "
                f"data files hold {n}; pass scan_shape=(Rx, Ry)"
            )
        return shape, f"{side['file']} NumPixelsY x NumPixelsX"
    root = math.isqrt(n)
    if root * root == n:
        shape, how = (root, root), "square"
    else:
        shape, how = (n, 1), "(frames, 1)"
    hint = f" ({acq.expected} frames in the master)" if acq.expected not in (None, n) else ""
    warnings.warn(
        f"scan_shape: no scan shape in {acq.master or acq.files[0].path} (no side-car "
        f"'{SIDECAR_GROUP}' file); reading the {n} frames{hint} as a {how} scan {shape}; pass "
        "scan_shape=(Rx, Ry) to say what it is",
        stacklevel=user_stacklevel(),
    )
    return shape, f"guess: {how}"


def _number(value):
    """A metadata value (bare, or ``{"value": ..., "units": ...}``) when a positive number."""
    return positive_number(value.get("value") if isinstance(value, dict) else value)


def _calibration(acq: Acquisition) -> dict:
    """``from_array`` keywords from the side-car and the master (see :func:`read_arina`)."""
    side, det = acq.sidecar or {}, acq.metadata
    out, notes = {}, {}
    step = _number(side.get("Pixel Size"))
    if step is not None:
        out.update(r_pixel_size=step, r_units="nm")
        notes["r"] = "side-car 'Pixel Size' (nm)"
    energy = _number(side.get("High Tension"))
    source = "side-car 'High Tension' (V)"
    if energy is None:
        energy = _number(det.get("detectorSpecific", {}).get("photon_energy"))
        source = "master photon_energy (eV)"
    if energy is not None:
        out["energy"] = energy
        notes["energy"] = source
    length = _number(side.get("Camera Length"))
    px, py = _number(det.get("x_pixel_size")), _number(det.get("y_pixel_size"))
    if length is not None and px is not None and px == py:
        out.update(q_pixel_size=px / length * 1e3, q_units="mrad")
        notes["q"] = "x_pixel_size (m) / side-car 'Camera Length' (m): nominal"
    return {"kwargs": out, "notes": notes}


def read_arina(path, *, scan_shape=None, chunks="auto"):
    """Open a DECTRIS ARINA / EIGER acquisition lazily as a datacube ``(Rx, Ry, Qx, Qy)``.

    Parameters
    ----------
    path : the ``X_master.h5`` file, or one of its ``X_data_00000N.h5`` files (the master
        beside it is then used, so all data files are read; without a master, that data file
        alone is read, with a warning).
    scan_shape : ``(Rx, Ry)`` = (slow, fast). Default: the side-car ``X.h5`` ("STEM Metadata"
        ``NumPixelsY``, ``NumPixelsX``); without one, a square scan when the frame count is a
        perfect square, else ``(frames, 1)``, with a warning either way. The files must hold
        at least ``Rx * Ry`` frames (else ``ValueError`` saying how many they hold).
    chunks : ``"auto"`` (whole frames, 32-128 MiB scan blocks), ``{dim: size}`` or a tuple as
        in :func:`stem4d_dask.from_array`; detector axes are never split.

    Values keep the stored dtype (an ARINA's uint32 stays uint32). Calibration, where the files
    carry it: scan step from the side-car's ``Pixel Size`` (nm); energy (eV) from its
    ``High Tension``, else the master's ``photon_energy``; detector pixels in mrad as
    ``x_pixel_size / Camera Length`` (nominal camera length: override with ``q_pixel_size=``
    in :func:`stem4d_dask.read` when calibrated). A bit depth below the dtype's is recorded as
    the value range. ``attrs["metadata"]``: the master's detector metadata (``bit_depth_image``,
    ``saturation_value``, ``frame_time``, ``count_time``, ``detectorSpecific/...``) and the
    side-car's attributes. The pixel mask and flat field: :func:`read_arina_masks`.

    Corrupt chunks raise ``ValueError`` naming the file, frame and scan position when read.
    """
    acq = open_acquisition(path)
    shape, source = _scan_shape(acq, scan_shape)
    needed = shape[0] * shape[1]
    if needed > acq.n_present:
        where = acq.master or acq.files[0].path
        hint = (
            ""
            if acq.n_present == acq.n_frames
            else f" (frames from {acq.n_present} on have no stored chunk)"
        )
        raise ValueError(frame_count_error(where, acq.n_present, needed, shape, hint))
    data = lazy_scan(acq, shape, chunks, f"arina-{Path(acq.files[0].path).name}")
    cal = _calibration(acq)
    metadata = {
        "master": Path(acq.master).name if acq.master else None,
        "data_files": [Path(f.path).name for f in acq.files],
        "frames": acq.n_frames,
        "frames_expected": acq.expected,
        "frame_shape": list(acq.frame_shape),
        "dtype": acq.dtype.str,
        "decoder": "bslz4 (stem4d_dask.kernels.bslz4)"
        if all(f.bslz4 for f in acq.files)
        else "h5py",
        "scan_shape_source": source,
        "calibration": cal["notes"],
        "detector": acq.metadata,
        "stem_metadata": acq.sidecar,
    }
    value_range = depth_range(acq.metadata.get("bit_depth_image"), acq.dtype)
    return from_array(
        data,
        chunks=None,
        value_range=value_range,
        attrs={"format": "arina", "metadata": metadata},
        **cal["kwargs"],
    )


@dataclass(frozen=True)
class _MaskLoader:
    """Block ``slices`` of a ``(rows, cols)`` dataset of the master (opened in the call)."""

    path: str
    dataset: str
    dtype: str

    def __call__(self, slices):
        hdf5_filters()
        with h5py.File(self.path, "r") as f:
            return np.asarray(f[self.dataset][slices], dtype=self.dtype)


def read_arina_masks(path) -> xr.Dataset:
    """The detector's ``pixel_mask`` and ``flatfield`` from the master file, lazily, as
    ``(Qx, Qy)`` variables of an ``xarray.Dataset`` with the same ``Qx``/``Qy`` coords as
    :func:`read_arina`'s datacube (variables absent from the file are left out).

    ``pixel_mask`` (uint32): 0 for a good pixel, else DECTRIS flag bits (1 gap, 2 dead,
    4 under-responding, 8 noisy, ...); ``flatfield`` (float32): the flat-field factors, not
    applied to the data by the detector when ``flatfield_correction_applied`` is 0 (see
    ``attrs["metadata"]["detector"]``). E.g. ``bad = read_arina_masks(p).pixel_mask != 0``.
    """

    acq = open_acquisition(path)
    if acq.master is None:
        raise ValueError(f"path: no master file for {path}; the masks are stored there")
    rows, cols = acq.frame_shape
    q = _calibration(acq)["kwargs"]
    size, units = q.get("q_pixel_size", 1.0), q.get("q_units", "pixels")
    coords = {
        "Qx": regular_coord(rows, size, units, "Qx"),
        "Qy": regular_coord(cols, size, units, "Qy"),
    }
    out = {}
    with h5py.File(acq.master, "r") as f:
        for name in ("pixel_mask", "flatfield"):
            dset = f.get(f"{SPECIFIC}/{name}")
            if not isinstance(dset, h5py.Dataset):
                continue
            if dset.shape != (rows, cols):
                raise ValueError(
                    f"path: {acq.master}: {dset.name} is {dset.shape}, frames are {(rows, cols)}"
                )
            dtype = dset.dtype.newbyteorder("=")
            loader = _MaskLoader(acq.master, dset.name, dtype.str)
            data = lazy_from_loader(
                loader, (rows, cols), dtype, ((rows,), (cols,)), f"arina-{name}"
            )
            out[name] = xr.DataArray(data, dims=("Qx", "Qy"), coords=coords)
    return xr.Dataset(out, attrs={"format": "arina", "master": Path(acq.master).name})


__all__ = ["is_arina", "read_arina", "read_arina_masks", "ArinaBlockLoader"]
