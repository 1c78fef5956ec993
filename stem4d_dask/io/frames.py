"""Files that are stacks of frames at a fixed stride, read lazily: the one loader behind the
raw, ``.mib``, EMPAD, ``.blo``, MRC and DM4 readers.

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
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FrameSegment:
    """``count`` frames of file ``path``: frame ``k`` starts at byte ``offset + k * stride``."""

    path: str
    offset: int
    stride: int
    count: int
    mtime_ns: int = 0  # part of the graph token: a rewritten file gives a new graph

    @classmethod
    def of_file(cls, path, offset: int, stride: int, frame_bytes: int) -> FrameSegment:
        """The whole frames of ``path`` (a trailing partial frame is not counted)."""
        path = os.path.abspath(os.fspath(path))
        size = os.path.getsize(path)
        count = max((size - offset - frame_bytes) // stride + 1, 0) if size >= offset + \
            frame_bytes else 0
        return cls(path, int(offset), int(stride), int(count), os.stat(path).st_mtime_ns)


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

    def read(self, first: int, count: int) -> np.ndarray:
        """Frames ``first .. first + count - 1`` as ``(count, rows, cols)`` of the stored dtype:
        a view of the mapped file when they lie in one segment, else a copy; frames outside the
        stack are zeros."""
        rows, cols = self.frame_shape
        dtype = np.dtype(self.dtype)
        parts, start = [], 0
        for seg in self.segments:
            lo, hi = max(first, start), min(first + count, start + seg.count)
            if lo < hi:
                parts.append((lo - first, _map_frames(seg, lo - start, hi - lo, self.frame_bytes,
                                                      dtype, (rows, cols))))
            start += seg.count
        if len(parts) == 1 and parts[0][1].shape[0] == count:
            return parts[0][1]
        out = np.zeros((count, rows, cols), dtype=dtype)
        for at, frames in parts:
            out[at:at + frames.shape[0]] = frames
        return out


def _map_frames(seg: FrameSegment, first: int, count: int, frame_bytes: int, dtype, shape):
    """``count`` frames of ``seg`` from its frame ``first``, as a strided view of one mapping."""
    start = seg.offset + first * seg.stride
    length = (count - 1) * seg.stride + frame_bytes
    aligned = start - start % mmap.ALLOCATIONGRANULARITY
    flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
    with open(seg.path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), start - aligned + length, flags=flags,
                           prot=mmap.PROT_READ, offset=aligned)
    return np.ndarray(shape=(count, *shape), dtype=dtype, buffer=mapped, offset=start - aligned,
                      strides=(seg.stride, shape[1] * dtype.itemsize, dtype.itemsize))


@dataclass(frozen=True)
class FrameStackLoader:
    """Blocks ``(nrx, nry, Qx, Qy)`` of a scan laid over a :class:`FrameStack`.

    ``decode``: None (the stored frames are the pixels, returned as views when they can be) or
    a picklable function ``decode(frames) -> (n, Qx, Qy)`` array of ``out_dtype``, applied to
    the stored frames of each run. ``out_shape``: ``(Qx, Qy)`` after decoding.
    """

    stack: FrameStack
    scan_shape: tuple
    out_shape: tuple
    out_dtype: str
    sync_offset: int = 0
    decode: object = None

    def __call__(self, slices):
        (r0, r1, _), (c0, c1, _) = (s.indices(n) for s, n in zip(slices[:2], self.scan_shape,
                                                                 strict=True))
        ry = self.scan_shape[1]
        nrx, nry = r1 - r0, c1 - c0
        if c0 == 0 and c1 == ry:  # whole scan rows: one run of frames
            runs = [(self.sync_offset + r0 * ry, nrx * nry)]
        else:
            runs = [(self.sync_offset + r * ry + c0, nry) for r in range(r0, r1)]
        frames = [self._frames(first, count) for first, count in runs]
        block = frames[0] if len(frames) == 1 else np.concatenate(frames)
        return block.reshape(nrx, nry, *block.shape[1:])

    def _frames(self, first, count):
        frames = self.stack.read(first, count)
        if self.decode is None:
            return frames
        return self.decode(frames)


def frame_count_error(path, n_frames: int, needed: int, scan_shape, hint: str = "") -> str:
    """The message for a file that holds fewer whole frames than the scan needs."""
    return (f"{path}: holds {n_frames} whole frames but the scan {tuple(scan_shape)} needs "
            f"{needed}; the file is truncated or the scan shape is wrong. Read the frames it "
            f"has with scan_shape=(rows, {scan_shape[1]}) for {n_frames // scan_shape[1]} whole "
            f"rows, or scan_shape=({n_frames}, 1){hint}")
