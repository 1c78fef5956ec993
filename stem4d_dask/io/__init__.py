"""Lazy readers and writers. :func:`read` detects the format of a path.

Every reader lives in its own module and is listed in :data:`FORMATS` with a cheap test of the
path (extension and a few header bytes, never pixel data). :func:`read` tries them in order;
``format=`` names one directly.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from ..datacube import CALIBRATION_KEYS, with_calibration
from ..faults import promoted, reading
from .emd import to_h5
from .raw import read_npy, read_raw
from .zarr_store import is_url, is_zarr, read_zarr, to_zarr


@dataclass(frozen=True)
class Format:
    """A readable format: ``module.sniff(path) -> bool`` and ``module.reader(path, **options)``
    (``module`` inside :mod:`stem4d_dask.io`)."""

    name: str
    module: str
    sniff: str
    reader: str
    description: str

    def load(self, attribute):
        return getattr(importlib.import_module(f"{__name__}.{self.module}"), attribute)


FORMATS = (
    Format(
        "zarr",
        "zarr_store",
        "is_zarr",
        "read_zarr",
        "zarr stores (v3 written by stem4d_dask, or any xarray store with dims Rx, Ry, Qx, Qy)",
    ),
    Format(
        "merlin",
        "mib",
        "is_mib",
        "read_mib",
        "Quantum Detectors Merlin .mib (+ .hdr): single chip, quad, 1-24 bit, RAW",
    ),
    Format(
        "arina",
        "arina",
        "is_arina",
        "read_arina",
        "DECTRIS ARINA / EIGER NeXus *_master.h5 (+ data files, bitshuffle-LZ4)",
    ),
    Format("emd", "emd", "is_emd", "read_emd", "py4DSTEM / EMD 1.0 .h5 files"),
    Format(
        "emd-legacy",
        "hdf5",
        "is_legacy_emd",
        "read_legacy_emd",
        "EMD 0.x and py4DSTEM <= 0.13 .h5 files",
    ),
    Format("empad", "empad", "is_empad", "read_empad", "EMPAD .raw (+ .xml)"),
    Format("mrc", "mrc", "is_mrc", "read_mrc", "Direct Electron 4D MRC (+ _info.txt)"),
    Format("dm", "dm", "is_dm", "read_dm", "Gatan DM4 / DM3 4D-STEM"),
    Format("blo", "blo", "is_blo", "read_blo", "NanoMegas .blo block files"),
    Format("npy", "raw", "is_npy", "read_npy", ".npy files"),
)
OTHER = (
    "any HDF5 dataset: read(path, dataset='group/data') (3D with scan_shape, 4D, or 5D with a "
    "length-1 axis)",
    "raw binary: read(path, shape=..., dtype=..., offset=...)",
)
SUPPORTED = tuple(f.description for f in FORMATS) + OTHER


class UnsupportedFormatError(ValueError):
    """The path is not in any format stem4d_dask reads."""


def detect(path) -> Format | None:
    """The first format of :data:`FORMATS` whose test accepts ``path``, or None."""
    for fmt in FORMATS:
        if fmt.load(fmt.sniff)(path):
            return fmt
    return None


def read(path, format=None, on_error="raise", **options):  # noqa: A002 - the natural name
    """Open a 4D-STEM dataset lazily as a datacube; the format is detected from the path.

    Supported: see :data:`SUPPORTED` (``stem4d_dask.io.SUPPORTED``). ``format`` names a reader
    of :data:`FORMATS` instead of detecting it; ``dataset=`` reads any HDF5 dataset; ``shape=``
    / ``dtype=`` read raw binary. Other options go to the reader: ``chunks``, ``scan_shape``,
    ``name`` (which datacube in a zarr/h5 holding several), reader-specific ones (such as
    ``sync_offset`` for Merlin), and calibration overrides (``r_pixel_size``, ``r_units``,
    ``q_pixel_size``, ``q_units``, ``energy``) applied after reading. Reads no pixel data.

    A zarr store can also be read from an fsspec URL (``memory://``, ``http://`` with the
    ``remote`` extra, ``s3://`` with s3fs ...); ``storage_options=`` go to fsspec.

    ``on_error``: what a chunk that cannot be read (a corrupt shard, a damaged file) does when
    computed. ``"raise"`` (default): :class:`stem4d_dask.faults.ChunkReadError` naming the store
    or file, the chunk's scan positions (and shard or bytes) and the original error.
    ``"mask"``: the chunk is NaN, a :class:`~stem4d_dask.faults.BadChunkWarning` names it and
    :func:`stem4d_dask.faults.bad_chunks` lists it after the computation; the datacube is then
    float (integer data become float32, or float64 from 32 bits: every chunk is converted) and
    has no value range. See ``docs/faults.md``.
    """
    with reading(on_error) as state:
        dc = _read(path, format, options)
    return promoted(dc, state) if state.on_error == "mask" else dc


def _read(path, format, options):  # noqa: A002
    overrides = {k: options.pop(k) for k in CALIBRATION_KEYS if k in options}
    if is_url(path):
        if format not in (None, "zarr"):
            raise ValueError(f"format: only zarr stores are read from URLs, got {format!r}")
        if not is_zarr(path, options.get("storage_options")):
            raise FileNotFoundError(f"path: no zarr store at {path}")
        dc = read_zarr(path, **options)
        return with_calibration(dc, **overrides) if overrides else dc
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"path: {path} does not exist")
    if format is not None:
        names = {f.name: f for f in FORMATS}
        if format not in names:
            raise ValueError(f"format must be one of {sorted(names)}, got {format!r}")
        dc = names[format].load(names[format].reader)(path, **options)
    elif "dataset" in options:
        from .hdf5 import read_hdf5

        dc = read_hdf5(path, **options)
    elif "shape" in options or "dtype" in options:
        return read_raw(path, **options, **overrides)
    else:
        fmt = detect(path)
        if fmt is None:
            raise UnsupportedFormatError(
                f"path: cannot read {path}: not a supported format. Supported: "
                + "; ".join(SUPPORTED)
            )
        dc = fmt.load(fmt.reader)(path, **options)
    return with_calibration(dc, **overrides) if overrides else dc


def write(dc, path, **options):
    """Write ``dc`` to ``path``: ``.h5``/``.hdf5``/``.emd`` in py4DSTEM's EMD 1.0 layout,
    anything else as a zarr v3 store."""
    if Path(path).suffix.lower() in (".h5", ".hdf5", ".emd"):
        return to_h5(dc, path, **options)
    return to_zarr(dc, path, **options)


__all__ = [
    "read",
    "write",
    "to_zarr",
    "to_h5",
    "read_zarr",
    "read_npy",
    "read_raw",
    "detect",
    "FORMATS",
    "SUPPORTED",
    "UnsupportedFormatError",
]
