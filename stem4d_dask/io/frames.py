"""Files that are stacks of frames at a fixed stride, read lazily: the loaders behind the raw,
``.mib``, EMPAD, ``.blo``, MRC and DM4 readers, and the per-block graph of the ARINA reader.

A :class:`FrameStack` is a sequence of :class:`FrameSegment` s (one per file, in acquisition
order); frame ``k`` of a segment has its pixels at byte ``offset + k * stride`` of its file,
``rows x cols`` values of the stored dtype (any byte order), C order. Per-frame headers and
footers are simply the bytes between frames.

A :class:`FrameStackLoader` maps the scan onto the frames: scan position ``(rx, ry)`` is frame
``sync_offset + rx * Ry + ry`` of the stack (C order, ``Ry`` fastest, as the detectors write
them). Frames before the first (a negative ``sync_offset``) or, with a sync offset, after the
last are blank (zeros); anything else outside the files is refused when the loader is made.
Each call reads one block of scan positions: the frames are mapped from the page cache with one
``mmap`` per run of consecutive frames (``MAP_POPULATE``: one system call, not one page fault per
4 KiB) and returned as a view when nothing needs changing, or passed to ``decode`` (a picklable
function of the stored frames, e.g. RAW bit unpacking or chip reassembly). Loaders hold only
paths and numbers, so graphs pickle small and each task opens its own file.

A scan whose positions map to frames in any order (a random scan, a position visited several
times) is read with :func:`positions_array`: each block's :class:`PositionsLoader` holds only
its own frame numbers and gathers them from one unpopulated mapping per file.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass

import dask.array as da
import numpy as np
from dask.base import tokenize

from ..chunks import normalize_chunks
from ..faults import current_on_error
from ..lazy import block_reader, lazy_from_loader


@dataclass(frozen=True)
class FrameSegment:
    """``count`` frames of file ``path``: frame ``k`` starts at byte ``offset + k * stride``."""

    path: str
    offset: int
    stride: int
    count: int
    mtime_ns: int = 0  # part of the graph token: a rewritten file gives a new graph

    @classmethod
    def in_file(cls, path, offset: int, stride: int, count: int) -> FrameSegment:
        """``count`` frames of ``path`` (made absolute: tasks may run in another working
        directory) from byte ``offset``, with the file's modification time."""
        path = os.path.abspath(os.fspath(path))
        return cls(path, int(offset), int(stride), int(count), os.stat(path).st_mtime_ns)

    @classmethod
    def of_file(cls, path, offset: int, stride: int, frame_bytes: int) -> FrameSegment:
        """The whole frames of ``path`` (a trailing partial frame is not counted)."""
        size = os.path.getsize(path)
        count = (
            max((size - offset - frame_bytes) // stride + 1, 0)
            if size >= offset + frame_bytes
            else 0
        )
        return cls.in_file(path, offset, stride, count)


@dataclass(frozen=True)
class FrameStack:
    """Frames ``(rows, cols)`` of ``dtype`` in acquisition order across ``segments``."""

    segments: tuple
    frame_shape: tuple
    dtype: str

    @property
    def n_frames(self) -> int:
        return sum(s.count for s in self.segments)

    @property
    def frame_bytes(self) -> int:
        return int(np.prod(self.frame_shape)) * np.dtype(self.dtype).itemsize

    def locate(self, frame: int) -> tuple[str, int]:
        """``(path, frame number in that file)`` of stack frame ``frame`` (past the end: the
        last file, counting on)."""
        for seg in self.segments:
            if frame < seg.count:
                return seg.path, frame
            frame -= seg.count
        return self.segments[-1].path, frame

    @property
    def source(self) -> str:
        """The file, or the first and last files, of the stack."""
        paths = [s.path for s in self.segments]
        return paths[0] if len(paths) == 1 else f"{paths[0]} .. {os.path.basename(paths[-1])}"

    def describe(self, first: int, count: int) -> str:
        """Where frames ``first .. first + count - 1`` lie: file, frames and bytes of each
        segment they touch (frames outside the stack are blank, not read)."""
        parts, start = [], 0
        for seg in self.segments:
            lo, hi = max(first, start), min(first + count, start + seg.count)
            if lo < hi:
                a, b = lo - start, hi - start - 1
                end = seg.offset + b * seg.stride + self.frame_bytes
                parts.append(
                    f"{os.path.basename(seg.path)} frames {a}-{b}, "
                    f"bytes {seg.offset + a * seg.stride}-{end}"
                )
            start += seg.count
        return "; ".join(parts) or "no stored frames"

    def read(self, first: int, count: int) -> np.ndarray:
        """Frames ``first .. first + count - 1`` as ``(count, rows, cols)`` of the stored dtype:
        a view of the mapped file when they lie in one segment, else a copy; frames outside the
        stack are zeros."""
        rows, cols = self.frame_shape
        parts, start = [], 0
        for seg in self.segments:
            lo, hi = max(first, start), min(first + count, start + seg.count)
            if lo < hi:
                parts.append((lo - first, _map_frames(seg, lo - start, hi - lo, self)))
            start += seg.count
        if len(parts) == 1 and parts[0][1].shape[0] == count:
            return parts[0][1]
        out = np.zeros((count, rows, cols), dtype=self.dtype)
        for at, frames in parts:
            out[at : at + frames.shape[0]] = frames
        return out


def _map_frames(
    seg: FrameSegment, first: int, count: int, stack: FrameStack, populate: bool = True
) -> np.ndarray:
    """Frames ``first .. first + count - 1`` of ``seg`` as a strided view ``(count, rows,
    cols)`` of one read-only mapping: populated up front (``MAP_POPULATE``, for runs read
    whole), or not (only the pages of the frames then gathered from it are read)."""
    dtype = np.dtype(stack.dtype)
    rows, cols = stack.frame_shape
    start = seg.offset + first * seg.stride
    aligned = start - start % mmap.ALLOCATIONGRANULARITY
    length = start - aligned + (count - 1) * seg.stride + stack.frame_bytes
    flags = mmap.MAP_SHARED | (getattr(mmap, "MAP_POPULATE", 0) if populate else 0)
    with open(seg.path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), length, flags=flags, prot=mmap.PROT_READ, offset=aligned)
    return np.ndarray(
        shape=(count, rows, cols),
        dtype=dtype,
        buffer=mapped,
        offset=start - aligned,
        strides=(seg.stride, cols * dtype.itemsize, dtype.itemsize),
    )


def scan_runs(slices, scan_shape) -> tuple[int, int, list[tuple[int, int]]]:
    """``(nrx, nry, runs)`` of the block ``slices`` (``Rx``, ``Ry`` first) of a scan of
    ``scan_shape``: ``runs`` are ``(first position, count)`` of consecutive scan positions (C
    order, ``Ry`` fastest) in block order: one run when the block spans whole scan rows, else
    one per row."""
    (r0, r1, _), (c0, c1, _) = (s.indices(n) for s, n in zip(slices[:2], scan_shape, strict=True))
    ry = scan_shape[1]
    nrx, nry = r1 - r0, c1 - c0
    if c0 == 0 and c1 == ry:  # whole scan rows: one run of positions
        return nrx, nry, [(r0 * ry, nrx * nry)]
    return nrx, nry, [(r * ry + c0, nry) for r in range(r0, r1)]


@dataclass(frozen=True)
class FrameStackLoader:
    """Blocks ``(nrx, nry, Qx, Qy)`` of a scan laid over a :class:`FrameStack`.

    ``decode``: None (the stored frames are the pixels, returned as views when they can be) or
    a picklable function ``decode(frames) -> (n, Qx, Qy)`` array of ``out_dtype``, applied to
    the stored frames of each run. ``out_shape``: ``(Qx, Qy)`` after decoding. A subclass
    reading records (headers checked, pixels cut out) overrides :meth:`_frames`.
    """

    stack: FrameStack
    scan_shape: tuple
    out_shape: tuple
    out_dtype: str
    sync_offset: int = 0
    decode: object = None

    def __call__(self, slices):
        nrx, nry, runs = scan_runs(slices, self.scan_shape)
        frames = [self._frames(self.sync_offset + first, count) for first, count in runs]
        block = frames[0] if len(frames) == 1 else np.concatenate(frames)
        return block.reshape(nrx, nry, *block.shape[1:])

    @property
    def source(self) -> str:
        return self.stack.source

    def chunk_detail(self, slices) -> str:
        """The files, frames and bytes block ``slices`` reads."""
        _, _, runs = scan_runs(slices, self.scan_shape)
        first = self.sync_offset + runs[0][0]
        return self.stack.describe(first, self.sync_offset + sum(runs[-1]) - first)

    def _frames(self, first, count):
        """Frames ``first .. first + count - 1`` of the stack as ``(count, Qx, Qy)``."""
        frames = self.stack.read(first, count)
        if self.decode is None:
            return frames
        return self.decode(frames)


def scan_array(loader: FrameStackLoader, chunks, name: str) -> da.Array:
    """The lazy ``(Rx, Ry, Qx, Qy)`` array of ``loader``'s scan, of its ``out_dtype``:
    ``chunks`` as :func:`stem4d_dask.datacube.normalize_chunks` takes them (``"auto"``: whole
    frames, 32-128 MiB of scan positions); one task per chunk. Reads nothing."""
    full = (*loader.scan_shape, *loader.out_shape)
    dtype = np.dtype(loader.out_dtype)
    return lazy_from_loader(loader, full, dtype, normalize_chunks(chunks, full, dtype), name)


@dataclass(frozen=True)
class PositionsLoader:
    """One chunk of a scan whose positions map to arbitrary frames: ``frames`` (int64 bytes,
    one per position of the chunk in C order, -1 = never visited: zeros) of ``stack``.

    The frames of a chunk are scattered over the file, so instead of one populated mapping
    per frame (:meth:`FrameStack.read`, fine for runs), each segment's span of wanted frames
    is mapped once, lazily, and the frames are gathered from it in file order."""

    stack: FrameStack
    frames: bytes
    shape: tuple  # (nrx, nry, Qx, Qy)
    dtype: str
    decode: object = None

    @property
    def source(self) -> str:
        return self.stack.source

    def chunk_detail(self, slices=None) -> str:
        """The files, frames and bytes between the first and last frame this block reads."""
        frames = np.frombuffer(self.frames, dtype=np.int64)
        frames = frames[frames >= 0]
        if not frames.size:
            return "no stored frames"
        return self.stack.describe(int(frames.min()), int(frames.max() - frames.min()) + 1)

    def __call__(self):
        frames = np.frombuffer(self.frames, dtype=np.int64)
        out = np.zeros((frames.size, *self.shape[2:]), dtype=self.dtype)
        start = 0
        for seg in self.stack.segments:
            where = np.flatnonzero((frames >= start) & (frames < start + seg.count))
            if where.size:
                where = where[np.argsort(frames[where])]
                local = frames[where] - start
                first = int(local[0])
                view = _map_frames(
                    seg, first, int(local[-1]) - first + 1, self.stack, populate=False
                )
                got = view[local - first]
                out[where] = got if self.decode is None else self.decode(got)
                del view
            start += seg.count
        return out.reshape(self.shape)


def block_array(block_loader, chunks, dtype, name: str, token: str) -> da.Array:
    """Dask array of ``chunks`` (whole frames: ``(Rx chunks, Ry chunks, (Qx,), (Qy,))``) whose
    block ``(i, j)`` is ``block_loader(r0, r1, c0, c1)()``: a picklable callable of no argument
    made for scan rows ``r0:r1``, columns ``c0:c1``, holding only what that block reads (its own
    part of an index). ``token`` names the whole read (files, shapes, chunks). No data is read
    here. Each block is read through a chunk reader (:func:`stem4d_dask.lazy.block_reader`):
    a block that cannot be read is named by its scan positions, or NaN in mask mode."""
    out = f"{name}-{token}" + ("-masked" if current_on_error() == "mask" else "")
    rows, cols = (np.cumsum((0, *c)).tolist() for c in chunks[:2])
    shape = tuple(sum(c) for c in chunks)
    graph = {
        (out, i, j, 0, 0): (
            block_reader(
                block_loader(rows[i], rows[i + 1], cols[j], cols[j + 1]), shape, dtype, out
            ),
            (slice(rows[i], rows[i + 1]), slice(cols[j], cols[j + 1]), slice(None), slice(None)),
        )
        for i in range(len(chunks[0]))
        for j in range(len(chunks[1]))
    }
    return da.Array(graph, out, chunks, dtype=dtype, meta=np.empty((0,) * 4, dtype=dtype))


def positions_array(
    stack: FrameStack, frame_map: np.ndarray, chunks, dtype, name: str, decode=None
) -> da.Array:
    """Dask array ``frame_map.shape + frame shape`` of ``dtype`` whose every chunk gathers its
    own frames (``frame_map``: ``(Rx, Ry)`` frame numbers of ``stack``, -1 = zeros); ``chunks``
    as :func:`stem4d_dask.datacube.normalize_chunks` gives them (split detector axes are
    rechunked after the read)."""
    frame = tuple(stack.frame_shape)
    whole = (*chunks[:2], (frame[0],), (frame[1],))

    def block(r0, r1, c0, c1):
        part = np.ascontiguousarray(frame_map[r0:r1, c0:c1], dtype=np.int64)
        return PositionsLoader(
            stack, part.tobytes(), (r1 - r0, c1 - c0, *frame), np.dtype(dtype).str, decode
        )

    token = tokenize(stack, frame_map.tobytes(), chunks, decode)
    arr = block_array(block, whole, dtype, name, token)
    return arr if tuple(chunks) == whole else arr.rechunk(chunks)


def frame_count_error(path, n_frames: int, needed: int, scan_shape, hint: str = "") -> str:
    """The message for a file that holds fewer whole frames than the scan needs."""
    return (
        f"{path}: holds {n_frames} whole frames but the scan {tuple(scan_shape)} needs "
        f"{needed}; the file is truncated or the scan shape is wrong. Read the frames it "
        f"has with scan_shape=(rows, {scan_shape[1]}) for {n_frames // scan_shape[1]} whole "
        f"rows, or scan_shape=({n_frames}, 1){hint}"
    )
