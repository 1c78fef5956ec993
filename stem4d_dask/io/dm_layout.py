"""The two 4D layouts of Gatan DM files (see :mod:`stem4d_dask.io.dm`): which one an image
uses, where its axes are, and the lazy array of the older scan-fastest layout.

- **frames**: Dimensions ``(kx, ky, scan x, scan y)`` (X first), every frame contiguous; read
  like any frame stack (by :func:`~stem4d_dask.io.dm.read_dm`).
- **scan-fastest**: Dimensions ``(scan x, scan y, kx, ky)``: for each detector pixel in C
  order, the whole scan. :class:`ScanFastestLoader` reads a block of positions as, for each
  detector pixel, its runs of positions, transposed in tiles of detector pixels.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..chunks import MAX_CHUNK_BYTES, auto_chunks, normalize_chunks
from ..datacube import user_stacklevel
from ..lazy import lazy_from_loader
from .frames import scan_runs
from .metadata import Q_VENDOR_UNITS, R_VENDOR_UNITS

LAYOUTS = ("frames", "scan-fastest")


@dataclass(frozen=True)
class ScanFastestLoader:
    """Blocks ``(nrx, nry, Qx, Qy)`` of a file storing, for each detector pixel in C order,
    the whole scan (``n_positions`` values, C order): ``(Qx, Qy, positions)`` at ``offset``."""

    path: str
    offset: int
    dtype: str  # stored
    frame_shape: tuple
    n_positions: int
    scan_shape: tuple
    mtime_ns: int = 0
    tile: int = 8  # detector pixels copied per step of the transpose

    def chunk_detail(self, slices) -> str:
        """Where the block's values lie: one run per detector pixel, all over the file."""
        return f"scan-fastest data from byte {self.offset}, one run per detector pixel"

    def __call__(self, slices):
        nrx, nry, runs = scan_runs(slices, self.scan_shape)
        runs = [(first, first + count) for first, count in runs]
        stored = np.dtype(self.dtype)
        pixels = int(np.prod(self.frame_shape))
        mm = np.memmap(
            self.path, dtype=stored, mode="r", offset=self.offset, shape=(pixels, self.n_positions)
        )
        n = nrx * nry
        out = np.empty((n, pixels), dtype=stored.newbyteorder("="))
        tmp = np.empty((min(self.tile, pixels), n), dtype=stored)
        for p0 in range(0, pixels, self.tile):
            p1 = min(p0 + self.tile, pixels)
            at = 0
            for a, b in runs:  # one run of positions per detector pixel
                tmp[: p1 - p0, at : at + b - a] = mm[p0:p1, a:b]
                at += b - a
            out[:, p0:p1] = tmp[: p1 - p0].T
        del mm
        return out.reshape(nrx, nry, *self.frame_shape)


def _is_q(c) -> bool:
    """A calibration (dict) in detector units: reciprocal length or angle."""
    return str(c.get("Units", "")).strip() in Q_VENDOR_UNITS


def _is_r(c) -> bool:
    """A calibration (dict) in scan units: length."""
    return str(c.get("Units", "")).strip() in R_VENDOR_UNITS


def choose_layout(image, cals, layout, path) -> tuple[str, str]:
    """``(layout, how it was decided)`` of a 4D image: ``layout`` when given (one of
    :data:`LAYOUTS`), else the ``Data Order Swapped`` tag, else the calibration units ``cals``
    (four, X first: the pair in reciprocal or angle units is the detector), else
    ``"scan-fastest"`` with a warning."""
    if layout is not None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS} or None, got {layout!r}")
        return layout, "layout="
    meta = image.get("ImageTags", {}).get("Meta Data", {})
    if isinstance(meta, dict) and "Data Order Swapped" in meta:
        try:
            swapped = bool(int(meta["Data Order Swapped"]))
        except (TypeError, ValueError):
            swapped = str(meta["Data Order Swapped"]).strip().lower() in ("true", "yes")
        return ("frames" if swapped else "scan-fastest"), "Data Order Swapped tag"
    first, last = cals[:2], cals[2:4]
    if all(map(_is_q, first)) and not any(map(_is_q, last)) and all(map(_is_r, last)):
        return "frames", "calibration units"
    if all(map(_is_q, last)) and not any(map(_is_q, first)) and all(map(_is_r, first)):
        return "scan-fastest", "calibration units"
    warnings.warn(
        f"{path}: neither a 'Data Order Swapped' tag nor the calibration units say "
        "how the 4D data are ordered; assuming the older scan-fastest layout (pass "
        "layout='frames' if the frames are contiguous)",
        stacklevel=user_stacklevel(),
    )
    return "scan-fastest", "assumed"


def layout_axes(dims, cals, layout) -> tuple:
    """``(frame, positions, native_scan, q_cals, r_cals)`` of a 4D image of ``dims`` (X first)
    stored in ``layout``: the frame ``(Qx, Qy)`` (DM's ``(ky, kx)``), the number of scan
    positions, the scan ``(Rx, Ry)`` (DM's ``(scan y, scan x)``) and the detector's and the
    scan's two calibrations (of ``cals``, X first)."""
    if layout == "frames":
        return (dims[1], dims[0]), dims[2] * dims[3], (dims[3], dims[2]), cals[:2], cals[2:4]
    return (dims[3], dims[2]), dims[0] * dims[1], (dims[1], dims[0]), cals[2:4], cals[:2]


def scan_fastest_array(path: Path, offset, stored, frame, positions, shape, chunks, truncated):
    """The lazy ``(*shape, *frame)`` array of a scan-fastest image of ``positions`` positions
    of ``stored`` dtype (numpy, the file's byte order; read into native order) at byte
    ``offset`` of ``path``. ``chunks``: ``"auto"`` (the largest default chunks: long runs per
    detector pixel), a dict or a tuple. ``truncated``: the tag the file ends in when it ends
    inside this image's data (no frame can be read: ``ValueError``), else None. Warns that
    reading this layout is slow and suggests converting it to zarr once."""
    if truncated is not None:
        raise ValueError(
            f"path: {path} is truncated inside {truncated} and stores the "
            "scan fastest: every frame needs bytes from the end of the "
            "file, so no frame can be read"
        )
    if shape[0] * shape[1] != positions:
        raise ValueError(
            f"scan_shape: {tuple(shape)} must hold exactly the {positions} "
            f"positions of {path} (its scan-fastest layout cannot be read "
            "in part)"
        )
    full = (*shape, *frame)
    native = stored.newbyteorder("=")
    loader = ScanFastestLoader(
        str(path.resolve()), offset, stored.str, frame, positions, shape, os.stat(path).st_mtime_ns
    )
    if chunks == "auto":  # long runs per detector pixel: the largest default chunks
        chunks = auto_chunks(full, native.itemsize, target_bytes=MAX_CHUNK_BYTES)
    warnings.warn(
        f"{path} stores the scan fastest (older GMS layout): every chunk reads "
        f"{frame[0] * frame[1]} short runs spread over the whole file. Convert "
        "it once for fast reads: stem4d_dask.to_zarr(dc, 'scan.zarr') (or "
        "`stem4d convert`) reads each byte of it once",
        stacklevel=user_stacklevel(),
    )
    return lazy_from_loader(
        loader, full, native, normalize_chunks(chunks, full, native), f"dm-{path.name}"
    )
