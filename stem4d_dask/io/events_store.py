"""The electron-events store: counted electrons (:class:`stem4d_dask.events.ElectronEvents`)
in zarr v3, one CSR block per scan chunk, never a dense cube.

Layout::

    events.zarr/
      zarr.json           group attrs: format "stem4d_dask.electron_events", format_version 1,
                          layout, scan_shape, scan_chunks, detector_shape, subpixel,
                          position_dtype, n_events, block_events (events per scan chunk),
                          attrs (calibration), coords (the coords given to the events:
                          {dim: {"values", "units"}})
      blocks/
        {i}.{j}/          scan chunk (i, j): one group with the chunk's EventBlock
          indptr          int64 (n1 * n2 + 1,): CSR over the chunk's positions in C order
          qx, qy          uint16 pixel indices or float32 sub-pixel coordinates (events,)

The CSR layout, its compression (a counted scan at 0.01 electrons per pixel stores ~100x
smaller than its uint16 frames), the ``.partial`` write and the per-chunk reads are
:mod:`stem4d_dask.io.ragged_store`'s, shared with every per-frame item list.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..graph import chunk_location
from ..kernels import events as kev
from ..kernels.counting import EventBlock
from .ragged_store import json_ready, loaded_coords, open_csr, read_csr, stored_coords, write_csr

FORMAT = "stem4d_dask.electron_events"
FORMAT_VERSION = 1
FIELDS = ("qx", "qy")
COUNT_KEYS = ("n_events", "block_events")


def block_spec(scan_chunks, detector_shape, subpixel: bool, index) -> dict:
    """What the block of scan chunk ``index`` ``(i, j)`` must be: the keywords of
    :func:`stem4d_dask.kernels.events.check_block` (its scan shape, the detector shape in
    pixels, the position kind, and where it lies for error messages)."""
    i, j = index
    return dict(
        scan_shape=(scan_chunks[0][i], scan_chunks[1][j]),
        detector_shape=tuple(detector_shape),
        subpixel=bool(subpixel),
        where=chunk_location(scan_chunks, index),
    )


def write_events(
    path,
    handles: np.ndarray,
    scan_chunks,
    detector_shape,
    subpixel: bool,
    attrs: dict,
    coords: dict,
    *,
    overwrite: bool = False,
    progress: bool | None = None,
) -> Path:
    """Write events to the store at ``path`` (layout in the module docstring), one task per
    scan chunk, through ``path + ".partial"`` renamed at the end (removed on failure).

    handles : 2D object array of ``dask.delayed`` EventBlocks, one per scan chunk; each is
        checked against :func:`block_spec` before it is written.
    scan_chunks, detector_shape, subpixel : the events' layout (dask-style chunks, ``(Qx, Qy)``
        pixels, float32 positions or not).
    attrs : calibration (``r_pixel_size``, ``r_units``, ``q_pixel_size``, ``q_units``, ``energy``
        in eV); JSON-serialisable values.
    coords : ``{dim: coord DataArray}`` stored as given (values and ``attrs['units']``).

    Returns the final ``Path``.
    """
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "layout": "blocks/{i}.{j}/{indptr,qx,qy}: CSR of scan chunk (i, j)",
        "detector_shape": list(detector_shape),
        "subpixel": bool(subpixel),
        "position_dtype": kev.position_dtype(subpixel).name,
        "attrs": json_ready(attrs),
        "coords": stored_coords(coords),
    }
    return write_csr(
        path,
        handles,
        scan_chunks,
        parts=_event_parts,
        spec=lambda ij: block_spec(scan_chunks, detector_shape, subpixel, ij),
        metadata=metadata,
        count_keys=COUNT_KEYS,
        overwrite=overwrite,
        progress=progress,
    )


def read_events(path) -> dict:
    """Open the store at ``path``: the keyword arguments of ``ElectronEvents`` (``blocks``: a
    2D object array of ``dask.delayed`` EventBlocks, each read and checked by its own task;
    ``scan_chunks``, ``detector_shape``, ``subpixel``, ``attrs``, ``coords``; ``_n_events``
    from the metadata). Reads the group metadata only."""
    meta = open_csr(path, FORMAT, FORMAT_VERSION, "an electron-events store")
    chunks = tuple(tuple(int(c) for c in axis) for axis in meta["scan_chunks"])
    detector = tuple(int(s) for s in meta["detector_shape"])
    subpixel = bool(meta["subpixel"])
    blocks = read_csr(
        path,
        meta,
        FIELDS,
        make=_event_block,
        spec=lambda ij: block_spec(chunks, detector, subpixel, ij),
        count_key=COUNT_KEYS[1],
    )
    return dict(
        blocks=blocks,
        scan_chunks=chunks,
        detector_shape=detector,
        subpixel=subpixel,
        attrs=meta.get("attrs") or {},
        coords=loaded_coords(meta),
        _n_events=int(meta[COUNT_KEYS[0]]),
    )


def _event_parts(block, **spec) -> tuple[np.ndarray, dict]:
    block = kev.check_block(block, **spec)
    return block.indptr, {"qx": block.qx, "qy": block.qy}


def _event_block(indptr, fields, *, scan_shape, **spec) -> EventBlock:
    block = EventBlock(indptr, fields["qx"], fields["qy"], tuple(scan_shape))
    return kev.check_block(block, scan_shape=scan_shape, **spec)


__all__ = ["FORMAT", "FORMAT_VERSION", "block_spec", "read_events", "write_events"]
