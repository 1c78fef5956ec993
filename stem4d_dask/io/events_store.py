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

Arrays are blosc-zstd compressed with byte shuffle (a counted scan at 0.01 electrons per pixel
stores ~100x smaller than its uint16 frames). Writes go to ``events.zarr.partial``, renamed when
every chunk is written (:func:`stem4d_dask.io.storage.completed_at`). Reading opens the
metadata only; each chunk is read, and checked, by its own task.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
import zarr
from dask.base import tokenize

from ..coords import coord
from ..graph import chunk_location, delayed_chunks
from ..kernels import events as kev
from ..kernels.counting import EventBlock
from ..progress import compute
from .storage import completed_at, compressor_codecs

FORMAT = "stem4d_dask.electron_events"
FORMAT_VERSION = 1
STORE_CHUNK = 2**22  # elements per stored chunk of qx / qy / indptr
CODECS = compressor_codecs("zstd", 5, shuffle="shuffle")
FIELDS = ("indptr", "qx", "qy")


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
    attrs = {k: v.item() if isinstance(v, np.generic) else v for k, v in attrs.items()}
    stored = {
        d: {"values": c.values.tolist(), "units": c.attrs["units"]} for d, c in coords.items()
    }
    with completed_at(path, overwrite=overwrite) as tmp:
        try:
            json.dumps(attrs)
        except TypeError as err:
            raise ValueError(
                f"attrs: every value must be JSON-serialisable to be stored ({err})"
            ) from None
        root = zarr.open_group(tmp, mode="w", zarr_format=3)
        root.create_group("blocks")
        name = "events-to-zarr-" + tokenize(str(tmp), [h.key for h in handles.flat])
        tasks = {
            (i, j): (
                functools.partial(
                    _write_block,
                    str(tmp / "blocks" / f"{i}.{j}"),
                    **block_spec(scan_chunks, detector_shape, subpixel, (i, j)),
                ),
                handles[i, j].key,
            )
            for i, j in np.ndindex(handles.shape)
        }
        writes = delayed_chunks(name, tasks, handles.flat, handles.shape)
        written = compute(*writes.flat, progress=progress)
        per_block = np.array(written, dtype=np.int64).reshape(handles.shape)
        root.attrs.update(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "layout": "blocks/{i}.{j}/{indptr,qx,qy}: CSR of scan chunk (i, j)",
                "scan_shape": [int(sum(c)) for c in scan_chunks],
                "scan_chunks": [list(c) for c in scan_chunks],
                "detector_shape": list(detector_shape),
                "subpixel": bool(subpixel),
                "position_dtype": kev.position_dtype(subpixel).name,
                "n_events": int(per_block.sum()),
                "block_events": per_block.tolist(),
                "attrs": attrs,
                "coords": stored,
            }
        )
    return Path(path)


def read_events(path) -> dict:
    """Open the store at ``path``: the keyword arguments of ``ElectronEvents`` (``blocks``: a
    2D object array of ``dask.delayed`` EventBlocks, each read and checked by its own task;
    ``scan_chunks``, ``detector_shape``, ``subpixel``, ``attrs``, ``coords``; ``_n_events``
    from the metadata). Reads the group metadata only."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise FileNotFoundError(f"path: no zarr v3 group at {path}")
    meta = dict(zarr.open_group(path, mode="r").attrs)
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"path: {path} is not an electron-events store (attrs['format'] "
            f"is {meta.get('format')!r}, expected {FORMAT!r})"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"path: {path} has format_version {meta.get('format_version')!r};"
            f" this version of stem4d_dask reads {FORMAT_VERSION}"
        )
    chunks = tuple(tuple(int(c) for c in axis) for axis in meta["scan_chunks"])
    detector = tuple(int(s) for s in meta["detector_shape"])
    subpixel = bool(meta["subpixel"])
    counts = meta["block_events"]
    stamp = os.stat(path / "zarr.json").st_mtime_ns
    name = "events-from-zarr-" + tokenize(str(path.resolve()), stamp)
    shape = (len(chunks[0]), len(chunks[1]))
    tasks = {
        (i, j): (
            functools.partial(
                _read_block,
                str(path / "blocks" / f"{i}.{j}"),
                n_events=int(counts[i][j]),
                **block_spec(chunks, detector, subpixel, (i, j)),
            ),
        )
        for i, j in np.ndindex(shape)
    }
    stored = meta.get("coords") or {}
    return dict(
        blocks=delayed_chunks(name, tasks, [], shape),
        scan_chunks=chunks,
        detector_shape=detector,
        subpixel=subpixel,
        attrs=meta.get("attrs") or {},
        coords={d: coord(c["values"], d, c["units"]) for d, c in stored.items()},
        _n_events=int(meta["n_events"]),
    )


def _write_block(group_path, block, *, scan_shape, detector_shape, subpixel, where) -> int:
    block = kev.check_block(block, scan_shape, detector_shape, subpixel, where)
    group = zarr.open_group(group_path, mode="w", zarr_format=3)
    for field in FIELDS:
        values = getattr(block, field)
        array = group.create_array(
            field,
            shape=values.shape,
            dtype=values.dtype,
            chunks=(max(1, min(values.size, STORE_CHUNK)),),
            compressors=CODECS,
        )
        if values.size:
            array[...] = values
    return int(block.indptr[-1])


def _read_block(group_path, *, scan_shape, detector_shape, subpixel, n_events, where):
    try:
        group = zarr.open_group(group_path, mode="r")
        fields = [group[f][...] for f in FIELDS]
    except (FileNotFoundError, KeyError) as err:
        raise ValueError(f"{where}: cannot read the events at {group_path}: {err!r}") from None
    block = kev.check_block(
        EventBlock(*fields, tuple(scan_shape)), scan_shape, detector_shape, subpixel, where
    )
    if block.qx.size != n_events:
        raise ValueError(
            f"{where}: {group_path} holds {block.qx.size} events, the store's "
            f"metadata says {n_events}"
        )
    return block


__all__ = ["FORMAT", "FORMAT_VERSION", "block_spec", "read_events", "write_events"]
