"""The dask graph of an ARINA scan: one :class:`ArinaBlockLoader` per block, holding only its
own frames' index (file, byte position, size: 4 B per frame), so graphs pickle small.

Each task reads its frames with ``os.preadv`` (one call per run of consecutive chunks lying back
to back in one file) and decodes the run straight into its block with the compiled
bitshuffle-LZ4 decoder (:mod:`stem4d_dask.kernels.bslz4`), which runs without the GIL: no h5py
and no HDF5 lock in the tasks. Frames of other filters or layouts are read through h5py (+
hdf5plugin) instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import dask.array as da
import h5py
import numpy as np
from dask.base import tokenize

from ..chunks import auto_chunks, normalize_chunks
from ..kernels.bslz4 import Bslz4Error, decode_run
from .arina_index import Acquisition
from .frames import block_array
from .h5 import hdf5_filters


@dataclass(frozen=True)
class _Run:
    """``count`` frames of one file going to block positions ``at .. at + count - 1``.

    ``bslz4``: the chunks lie back to back from byte ``start``, of ``sizes`` bytes (``raw``:
    stored unfiltered); else ``first`` is the first frame in ``dataset`` (read with h5py).
    """

    path: str
    at: int
    count: int
    first: int
    bslz4: bool
    dataset: str = ""
    start: int = 0
    sizes: bytes = b""  # uint32 per frame
    raw: bytes = b""  # bool per frame, empty when none is raw


@dataclass(frozen=True)
class ArinaBlockLoader:
    """Decode one dask block ``(nrx, nry, rows, cols)`` of an ARINA scan: the block at scan rows
    ``r0 ..``, columns ``c0 ..`` of a scan with ``ry`` columns. Holds only its own frames'
    index (file, byte position, size), so it pickles small; opens the files itself."""

    runs: tuple
    shape: tuple
    dtype: str
    r0: int
    c0: int
    ry: int

    def __call__(self):
        nrx, nry, rows, cols = self.shape
        out = np.empty((nrx * nry, rows, cols), dtype=self.dtype)
        for run in self.runs:
            if run.bslz4:
                self._decode_run(run, out)
            else:
                self._h5_run(run, out)
        return out.reshape(self.shape)

    @property
    def source(self) -> str:
        """The data file(s) of this block."""
        paths = list(dict.fromkeys(run.path for run in self.runs))
        return paths[0] if len(paths) == 1 else f"{paths[0]} .. {os.path.basename(paths[-1])}"

    def chunk_detail(self, slices=None) -> str:
        """The files, frames and (bitshuffle-LZ4 chunks) bytes this block reads."""
        parts = []
        for run in self.runs:
            where = f"{os.path.basename(run.path)} frames {run.first}-{run.first + run.count - 1}"
            if run.bslz4:
                size = int(np.frombuffer(run.sizes, dtype=np.uint32).sum(dtype=np.int64))
                where += f", bytes {run.start}-{run.start + size}"
            parts.append(where)
        return "; ".join(parts)

    def _position(self, at: int) -> tuple:
        nry = self.shape[1]
        return (self.r0 + at // nry, self.c0 + at % nry)

    def _decode_run(self, run: _Run, out):
        sizes = np.frombuffer(run.sizes, dtype=np.uint32)
        raw = np.frombuffer(run.raw, dtype=bool) if run.raw else None
        buf = np.empty(int(sizes.sum(dtype=np.int64)), dtype=np.uint8)
        got = _pread_into(run.path, buf, run.start)
        if got < buf.size:
            k = int(np.searchsorted(np.cumsum(sizes, dtype=np.int64), got, side="right"))
            raise ValueError(
                f"{run.path}: frame {run.first + k} (scan position "
                f"{self._position(run.at + k)}) lies beyond the end of the file; "
                "the file is truncated"
            )
        try:
            decode_run(buf, sizes, out[run.at : run.at + run.count], raw)
        except Bslz4Error as err:
            i = err.index
            raise ValueError(
                f"{run.path}: frame {run.first + i} (scan position "
                f"{self._position(run.at + i)}) is corrupt: its bitshuffle-LZ4 chunk does "
                f"not decode ({err})"
            ) from None

    def _h5_run(self, run: _Run, out):
        hdf5_filters()
        try:
            with h5py.File(run.path, "r") as f:
                f[run.dataset].read_direct(
                    out,
                    np.s_[run.first : run.first + run.count],
                    np.s_[run.at : run.at + run.count],
                )
        except OSError as err:
            raise ValueError(
                f"{run.path}: frames {run.first}..{run.first + run.count - 1} "
                f"(scan positions {self._position(run.at)}.."
                f"{self._position(run.at + run.count - 1)}) could not be read "
                f"({err})"
            ) from None


def _pread_into(path, buf, offset) -> int:
    """Fill ``buf`` (uint8) with the bytes of ``path`` from ``offset`` on; the bytes read
    (fewer at the end of the file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        got = 0
        view = memoryview(buf)
        while got < buf.size:
            if hasattr(os, "preadv"):
                k = os.preadv(fd, [view[got:]], offset + got)
            else:  # pragma: no cover - a platform without preadv
                data = os.pread(fd, buf.size - got, offset + got)
                k = len(data)
                buf[got : got + k] = np.frombuffer(data, dtype=np.uint8)
            if k == 0:
                break
            got += k
        return got
    finally:
        os.close(fd)


def _block_runs(acq: Acquisition, index, frames: np.ndarray) -> tuple:
    """The runs of ``frames`` (stack frame numbers in block order): consecutive frames of one
    file whose chunks lie back to back become one run (one ``pread``)."""
    starts, all_offsets, all_sizes = index
    which = np.searchsorted(starts, frames, side="right") - 1
    offsets, sizes = all_offsets[frames], all_sizes[frames].astype(np.int64)
    cut = np.ones(frames.size, dtype=bool)
    cut[1:] = (
        (which[1:] != which[:-1])
        | (frames[1:] != frames[:-1] + 1)
        | (offsets[1:] != offsets[:-1] + sizes[:-1])
    )
    edges = np.append(np.flatnonzero(cut), frames.size)
    runs = []
    for i, j in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        info = acq.files[int(which[i])]
        local = int(frames[i] - starts[which[i]])
        if info.bslz4:
            raw = info.raw[local : local + j - i]
            runs.append(
                _Run(
                    info.path,
                    i,
                    j - i,
                    local,
                    True,
                    start=int(info.offsets[local]),
                    sizes=info.sizes[local : local + j - i].tobytes(),
                    raw=raw.tobytes() if raw.any() else b"",
                )
            )
        else:
            runs.append(_Run(info.path, i, j - i, local, False, dataset=info.dataset))
    return tuple(runs)


def lazy_scan(acq: Acquisition, scan_shape, chunks, name: str) -> da.Array:
    """The dask array ``(Rx, Ry, rows, cols)`` of ``acq``'s first ``Rx * Ry`` frames (scan
    position ``(rx, ry)`` is frame ``rx * Ry + ry``); ``chunks`` as in
    :func:`stem4d_dask.from_array`, detector axes whole. Reads nothing."""
    rows, cols = acq.frame_shape
    dtype = acq.dtype
    full = (*scan_shape, rows, cols)
    if isinstance(chunks, str) and chunks == "auto":
        chunks = auto_chunks(full, dtype.itemsize)
    norm = normalize_chunks(chunks, full, dtype)
    if len(norm[2]) != 1 or len(norm[3]) != 1:
        raise ValueError(
            f"chunks: ARINA frames are read whole; got detector chunks {norm[2]}, {norm[3]}"
        )
    index = (np.cumsum([0] + [f.count for f in acq.files]), acq.offsets, acq.sizes)
    ry = int(scan_shape[1])

    def block(r0, r1, c0, c1):
        frames = (np.arange(r0, r1)[:, None] * ry + np.arange(c0, c1)[None, :]).ravel()
        return ArinaBlockLoader(
            _block_runs(acq, index, frames), (r1 - r0, c1 - c0, rows, cols), dtype.str, r0, c0, ry
        )

    token = tokenize([(f.path, f.mtime_ns, f.count) for f in acq.files], full, dtype.str, norm)
    return block_array(block, norm, dtype, name, token)
