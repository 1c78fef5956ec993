"""Stores of per-frame item lists in zarr v3: one CSR group per scan chunk, never a dense
array. The electron-events store (:mod:`stem4d_dask.io.events_store`) and the store of
:class:`stem4d_dask.ragged.RaggedFrames` (peaks, a user function's ragged output) share this
layout and code; each adds its own metadata.

Layout::

    store.zarr/
      zarr.json           group attrs: format, format_version, layout, scan_shape, scan_chunks,
                          the item count (total, and per scan chunk), and the owner's metadata
      blocks/
        {i}.{j}/          scan chunk (i, j)
          indptr          int64 (n1 * n2 + 1,): CSR over the chunk's positions in C order
          <field> ...     one 1D array per field, (items,)

Arrays are blosc-zstd compressed with byte shuffle and carry a crc32c. Writes go to
``store.zarr.partial``, renamed when every chunk is written
(:func:`stem4d_dask.io.storage.completed_at`). Opening reads the metadata only; each chunk is
read, and checked, by its own task.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from dask.base import tokenize

from ..coords import coord
from ..graph import delayed_chunks
from ..progress import compute
from .storage import completed_at, compressor_codecs

STORE_CHUNK = 2**22  # elements per stored chunk of a field / indptr
CODECS = compressor_codecs("zstd", 5, shuffle="shuffle")

#: ``parts(block, **spec) -> (indptr, {field: array})``: checks one block against its chunk's
#: spec and splits it into its arrays (module-level, so tasks pickle).
Parts = Callable[..., tuple[np.ndarray, dict]]
#: ``make(indptr, fields, **spec) -> block``: a checked block from the arrays read back.
Make = Callable[..., Any]


def json_ready(attrs: Mapping[str, Any], parameter: str = "attrs") -> dict:
    """``attrs`` with numpy scalars as Python numbers; ``ValueError`` naming ``parameter`` when
    a value cannot be stored as JSON."""
    out = {k: v.item() if isinstance(v, np.generic) else v for k, v in attrs.items()}
    try:
        json.dumps(out)
    except TypeError as err:
        raise ValueError(
            f"{parameter}: every value must be JSON-serialisable to be stored ({err})"
        ) from None
    return out


def stored_coords(coords: dict) -> dict:
    """``{dim: coord DataArray}`` as JSON: ``{dim: {"values", "units"}}``."""
    return {d: {"values": c.values.tolist(), "units": c.attrs["units"]} for d, c in coords.items()}


def loaded_coords(meta: dict) -> dict:
    """The coords a store's metadata holds (:func:`stored_coords`), as DataArrays."""
    return {d: coord(c["values"], d, c["units"]) for d, c in (meta.get("coords") or {}).items()}


def write_csr(
    path,
    handles: np.ndarray,
    scan_chunks: Sequence[Sequence[int]],
    *,
    parts: Parts,
    spec: Callable[[tuple[int, int]], dict],
    metadata: Mapping[str, Any],
    count_keys: tuple[str, str],
    overwrite: bool = False,
    progress: bool | None = None,
) -> Path:
    """Write the blocks ``handles`` (2D object array of ``dask.delayed`` blocks, one per scan
    chunk) to the store at ``path``, one task per scan chunk, through ``path + ".partial"``.

    parts, spec : ``parts(block, **spec((i, j)))`` checks block ``(i, j)`` and gives its arrays.
    metadata : the owner's group attrs (format, format_version, ...), JSON-ready.
    count_keys : the attrs names of the total and of the per-chunk item counts.

    Returns the final ``Path``.
    """
    with completed_at(path, overwrite=overwrite) as tmp:
        root = zarr.open_group(tmp, mode="w", zarr_format=3)
        root.create_group("blocks")
        name = "csr-to-zarr-" + tokenize(str(tmp), [h.key for h in handles.flat])
        tasks = {
            (i, j): (
                functools.partial(
                    _write_block, str(tmp / "blocks" / f"{i}.{j}"), parts=parts, **spec((i, j))
                ),
                handles[i, j].key,
            )
            for i, j in np.ndindex(handles.shape)
        }
        writes = delayed_chunks(name, tasks, handles.flat, handles.shape)
        per_block = np.array(compute(*writes.flat, progress=progress), np.int64)
        per_block = per_block.reshape(handles.shape)
        total, by_chunk = count_keys
        root.attrs.update(
            {
                **metadata,
                "scan_shape": [int(sum(c)) for c in scan_chunks],
                "scan_chunks": [list(c) for c in scan_chunks],
                total: int(per_block.sum()),
                by_chunk: per_block.tolist(),
            }
        )
    return Path(path)


def open_csr(path, store_format: str, version: int, what: str) -> dict:
    """The group attrs of the store at ``path``, checked to be ``store_format`` at ``version``
    (``what``: the kind of store, for messages). Reads the metadata only."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise FileNotFoundError(f"path: no zarr v3 group at {path}")
    meta = dict(zarr.open_group(path, mode="r").attrs)
    if meta.get("format") != store_format:
        raise ValueError(
            f"path: {path} is not {what} (attrs['format'] is {meta.get('format')!r}, "
            f"expected {store_format!r})"
        )
    if meta.get("format_version") != version:
        raise ValueError(
            f"path: {path} has format_version {meta.get('format_version')!r};"
            f" this version of stem4d_dask reads {version}"
        )
    return meta


def read_csr(
    path,
    meta: Mapping[str, Any],
    fields: Sequence[str],
    *,
    make: Make,
    spec: Callable[[tuple[int, int]], dict],
    count_key: str,
) -> np.ndarray:
    """2D object array of ``dask.delayed`` blocks of the store at ``path`` (opened by
    :func:`open_csr`): each task reads the chunk's ``indptr`` and ``fields``, checks the item
    count against ``meta[count_key]`` and returns ``make(indptr, fields, **spec((i, j)))``."""
    path = Path(path)
    chunks = [list(c) for c in meta["scan_chunks"]]
    counts = meta[count_key]
    stamp = os.stat(path / "zarr.json").st_mtime_ns
    name = "csr-from-zarr-" + tokenize(str(path.resolve()), stamp)
    shape = (len(chunks[0]), len(chunks[1]))
    tasks = {
        (i, j): (
            functools.partial(
                _read_block,
                str(path / "blocks" / f"{i}.{j}"),
                tuple(fields),
                make=make,
                n_items=int(counts[i][j]),
                **spec((i, j)),
            ),
        )
        for i, j in np.ndindex(shape)
    }
    return delayed_chunks(name, tasks, [], shape)


def _write_block(group_path, block, *, parts: Parts, **spec) -> int:
    indptr, fields = parts(block, **spec)
    group = zarr.open_group(group_path, mode="w", zarr_format=3)
    for field, values in {"indptr": indptr, **fields}.items():
        array = group.create_array(
            field,
            shape=values.shape,
            dtype=values.dtype,
            chunks=(max(1, min(values.size, STORE_CHUNK)),),
            compressors=CODECS,
        )
        if values.size:
            array[...] = values
    return int(indptr[-1])


def _read_block(group_path, fields, *, make: Make, n_items: int, **spec):
    where = spec["where"]
    try:
        group = zarr.open_group(group_path, mode="r")
        indptr = group["indptr"][...]
        values = {f: group[f][...] for f in fields}
    except (FileNotFoundError, KeyError) as err:
        raise ValueError(f"{where}: cannot read the items at {group_path}: {err!r}") from None
    if int(indptr[-1]) != n_items:
        raise ValueError(
            f"{where}: {group_path} holds {int(indptr[-1])} items, the store's metadata says "
            f"{n_items}"
        )
    return make(indptr, values, **spec)


__all__ = [
    "CODECS",
    "json_ready",
    "loaded_coords",
    "open_csr",
    "read_csr",
    "stored_coords",
    "write_csr",
]
