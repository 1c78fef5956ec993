"""Lazy arrays whose every chunk is read by its own task.

The graph holds only small, picklable loader objects (a path, a dtype, a shape, an offset), never
an open file or a memory map of the whole file, so it ships cleanly to process-based and remote
dask workers. Each task opens the file, reads its block and closes it.
"""

from __future__ import annotations

import mmap
import operator
import os
import uuid
import weakref
from dataclasses import dataclass

import dask.array as da
import numpy as np
from dask.array.core import slices_from_chunks
from dask.base import tokenize

from . import faults

# dask array name -> the chunk reader of its blocks, while the array (and so its graph) lives
_READERS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def lazy_from_loader(loader, shape, dtype, chunks, name: str):
    """Dask array of ``shape``/``dtype``/``chunks`` whose block at ``slices`` is ``loader(slices)``.

    ``loader`` is a picklable callable taking a tuple of slices and returning a numpy array of
    that block's shape; it says what it reads with a ``source`` attribute (else ``path`` or
    ``url``) and may describe a block with ``chunk_detail(slices)``. Each block is read through a
    :class:`stem4d_dask.faults.ChunkReader`: a block the loader cannot read raises
    :class:`~stem4d_dask.faults.ChunkReadError` naming the source and the scan positions, or is
    NaN inside :func:`stem4d_dask.faults.reading` ``("mask")``. No data is read here.
    """
    token = tokenize(loader, shape, np.dtype(dtype).str, chunks, faults.current_on_error())
    reader = faults.chunk_reader(loader, shape, dtype, f"{name}-{token}")
    array = da.map_blocks(
        _load_block,
        reader=reader,
        chunks=chunks,
        dtype=dtype,
        name=reader.array,
        meta=np.empty((0,) * len(shape), dtype=dtype),
    )
    _READERS[array.name] = reader
    return array


def block_reader(loader, shape, dtype, name: str) -> faults.ChunkReader:
    """The chunk reader of one block of array ``name`` (of ``shape``, stored ``dtype``) read by
    ``loader()``, a loader made for that block alone (:func:`stem4d_dask.io.frames.block_array`):
    called with the block's slices, it names them when the loader fails."""
    return faults.chunk_reader(loader, shape, dtype, name, positional=False)


def chunk_reader_of(array: object) -> faults.ChunkReader | None:
    """The chunk reader of a dask array made by :func:`lazy_from_loader` and not changed since,
    else None: ``reader(slices)`` reads a block as the array's own tasks do (errors named, NaN
    in mask mode). An operation can then read each block inside its own task (one task per
    chunk instead of a read task and a compute task, and no block held between the two)."""
    name = getattr(array, "name", None)
    return _READERS.get(name) if isinstance(name, str) else None


def _load_block(reader, block_info=None):
    location = block_info[None]["array-location"]
    return reader(tuple(slice(start, stop) for start, stop in location))


@dataclass(frozen=True)
class RawFileLoader:
    """Read a block of a C- or Fortran-ordered binary array stored at ``offset`` in ``path``."""

    path: str
    dtype: str
    shape: tuple
    offset: int = 0
    order: str = "C"
    mtime_ns: int = 0  # part of the token: a rewritten file gives a new graph

    def chunk_detail(self, slices) -> str:
        """The bytes of the file block ``slices`` reads (their span when not contiguous)."""
        itemsize = np.dtype(self.dtype).itemsize
        bounds = [s.indices(n)[:2] for s, n in zip(slices, self.shape, strict=True)]
        if any(stop <= start for start, stop in bounds):
            return "no bytes"
        first, last = (
            int(np.ravel_multi_index(index, self.shape, order=self.order))
            for index in ([a for a, _ in bounds], [b - 1 for _, b in bounds])
        )
        return f"bytes {self.offset + first * itemsize}-{self.offset + (last + 1) * itemsize}"

    def __call__(self, slices):
        """A read-only view of the block on the mapped file: no copy, the kernel that uses it
        reads the pages straight from the OS cache (pickling, e.g. to another worker, copies).

        A block that is one contiguous byte range (whole rows of a C-ordered file: the default
        chunks) is mapped alone with ``MAP_POPULATE``, so its pages are mapped in one system
        call instead of one page fault per 4 KiB.
        """
        span = _contiguous_span(slices, self.shape) if self.order == "C" else None
        if span is not None and hasattr(mmap, "MAP_POPULATE"):
            first, count, shape = span
            itemsize = np.dtype(self.dtype).itemsize
            start = self.offset + first * itemsize
            aligned = start - start % mmap.ALLOCATIONGRANULARITY
            with open(self.path, "rb") as f:
                mapped = mmap.mmap(
                    f.fileno(),
                    start - aligned + count * itemsize,
                    flags=mmap.MAP_SHARED | mmap.MAP_POPULATE,
                    prot=mmap.PROT_READ,
                    offset=aligned,
                )
            return np.frombuffer(
                mapped, dtype=self.dtype, count=count, offset=start - aligned
            ).reshape(shape)
        mm = np.memmap(
            self.path,
            dtype=self.dtype,
            mode="r",
            offset=self.offset,
            shape=self.shape,
            order=self.order,
        )
        return np.asarray(mm[slices])


def _contiguous_span(slices, shape):
    """``(first flat index, element count, block shape)`` when the block ``slices`` of a
    C-ordered array of ``shape`` is one contiguous run of elements, else None: some axis ``k``
    has every axis before it of length 1 in the block and every axis after it whole."""
    bounds = [s.indices(n) for s, n in zip(slices, shape, strict=True)]
    if any(step != 1 or stop <= start for start, stop, step in bounds):
        return None
    block = tuple(stop - start for start, stop, _ in bounds)
    for k in range(len(shape)):
        if all(b == 1 for b in block[:k]) and block[k + 1 :] == tuple(shape[k + 1 :]):
            first = int(np.ravel_multi_index([start for start, _, _ in bounds], shape))
            return first, int(np.prod(block, dtype=np.int64)), block
    return None


def raw_file_loader(path, dtype, shape, offset=0, order="C", exact=False) -> RawFileLoader:
    """Check that ``path`` holds ``shape``×``dtype`` bytes after ``offset`` (with ``exact``:
    and nothing more, so a wrong shape or dtype cannot pass unnoticed); return its loader."""
    path = os.fspath(path)
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in shape)
    if int(offset) < 0:
        raise ValueError(f"offset must be >= 0 bytes, got {offset!r}")
    needed = int(offset) + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = os.path.getsize(path)
    if size < needed or (exact and size != needed):
        raise ValueError(
            f"shape: {path} holds {size} bytes but shape={shape}, dtype={dtype}, "
            f"offset={offset} needs {needed} ({_difference(size - needed)}); check shape, "
            "dtype and offset"
        )
    return RawFileLoader(path, dtype.str, shape, int(offset), order, os.stat(path).st_mtime_ns)


def _difference(nbytes: int) -> str:
    return f"{nbytes} bytes left over" if nbytes > 0 else f"{-nbytes} bytes missing"


def memmap_loader(arr: np.memmap) -> RawFileLoader | None:
    """Loader for a contiguous ``np.memmap`` (or a contiguous view of one), else ``None``.

    The byte offset of ``arr`` in its file is recovered from the address of its first element
    relative to the start of the mapped region, so views such as ``mm[2:]`` work too.
    """
    mapped = getattr(arr, "_mmap", None)
    filename = getattr(arr, "filename", None)
    if mapped is None or filename is None or arr.size == 0:
        return None
    if arr.flags.c_contiguous:
        order = "C"
    elif arr.flags.f_contiguous:
        order = "F"
    else:
        return None
    region_start = arr.offset - arr.offset % mmap.ALLOCATIONGRANULARITY
    base_address = np.frombuffer(mapped, dtype=np.uint8).ctypes.data
    offset = region_start + (arr.ctypes.data - base_address)
    return raw_file_loader(filename, arr.dtype, arr.shape, offset, order)


def from_memory(array, chunks, name: str = "array"):
    """Dask array over an in-memory ``array`` whose blocks are views of it (no copy).

    The array is one key of the graph, shared by every block task, so it is shipped to a
    worker once rather than once per task. Tokenised by identity (hashing the content would
    read all of it).
    """
    base = f"{name}-source-{uuid.uuid4().hex}"
    out = f"{name}-{uuid.uuid4().hex}"
    graph = {base: array}
    for index, slices in zip(
        np.ndindex(*(len(c) for c in chunks)), slices_from_chunks(chunks), strict=True
    ):
        graph[(out, *index)] = (operator.getitem, base, slices)
    return da.Array(
        graph, out, chunks, dtype=array.dtype, meta=np.empty((0,) * array.ndim, dtype=array.dtype)
    )
