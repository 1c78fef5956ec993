"""Kernels of the sparse counted-electron format: pure numpy functions of one scan block's
:class:`~stem4d_dask.kernels.counting.EventBlock` (CSR over the block's ``(n1, n2)`` scan
positions in C order: the events of position ``k`` are ``qx[indptr[k]:indptr[k + 1]]``,
``qy[...]``); no dask, no xarray.

Positions are detector pixel coordinates, the centre of pixel ``i`` at ``i``: uint16 pixel
indices, or float32 sub-pixel coordinates. Dense outputs put a sub-pixel event in pixel
``rint(q)`` (round half to even).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from . import Array
from .com import com_from_sums
from .counting import EventBlock
from .ragged import as_block, check_parts

MAX_DETECTOR = 2**16  # uint16 pixel indices


def position_dtype(subpixel: bool) -> np.dtype:
    """dtype of event positions: float32 sub-pixel coordinates, else uint16 pixel indices."""
    return np.dtype(np.float32) if subpixel else np.dtype(np.uint16)


def empty_block(scan_shape: Sequence[int], subpixel: bool) -> EventBlock:
    """An :class:`EventBlock` of ``scan_shape`` positions with no event."""
    n = int(scan_shape[0]) * int(scan_shape[1])
    dtype = position_dtype(subpixel)
    return EventBlock(
        np.zeros(n + 1, np.int64),
        np.empty(0, dtype),
        np.empty(0, dtype),
        (int(scan_shape[0]), int(scan_shape[1])),
    )


def check_scan_chunks(scan_chunks: Iterable[Iterable[int]]) -> tuple[tuple[int, ...], ...]:
    """``scan_chunks`` (the scan positions of each block, dask style) as ``((rows, ...),
    (columns, ...))`` of ints >= 1; ``ValueError`` naming ``scan_chunks`` otherwise."""
    try:
        chunks = tuple(tuple(int(c) for c in axis) for axis in scan_chunks)
    except (TypeError, ValueError):
        raise ValueError(
            f"scan_chunks must be ((rows, ...), (columns, ...)), got {scan_chunks!r}"
        ) from None
    if len(chunks) != 2 or any(not axis or min(axis) < 1 for axis in chunks):
        raise ValueError(
            f"scan_chunks must be two non-empty tuples of positive chunk sizes, got {scan_chunks!r}"
        )
    return chunks


def check_detector_shape(
    detector_shape: Iterable[int], parameter: str = "detector_shape"
) -> tuple[int, ...]:
    """``detector_shape`` as ``(Qx, Qy)`` ints in ``1 .. MAX_DETECTOR`` (the format's uint16
    pixel indices); ``ValueError`` naming ``parameter`` otherwise."""
    try:
        shape = tuple(int(s) for s in detector_shape)
    except (TypeError, ValueError):
        raise ValueError(f"{parameter} must be (Qx, Qy), got {detector_shape!r}") from None
    if len(shape) != 2 or not all(1 <= s <= MAX_DETECTOR for s in shape):
        raise ValueError(
            f"{parameter} must be two sizes in 1 .. {MAX_DETECTOR} (uint16 "
            f"pixel indices), got {detector_shape!r}"
        )
    return shape


def check_block(
    block: object,
    scan_shape: Sequence[int],
    detector_shape: Sequence[int],
    subpixel: bool,
    where: str,
) -> EventBlock:
    """Validate one block against the format; ``ValueError`` naming ``where`` (the scan block)
    and what is wrong. Returns the block (an :class:`EventBlock`).

    Checks: the four fields; ``scan_shape`` equal to the chunk's; ``indptr`` int64 of
    ``n1 * n2 + 1`` entries, from 0, non-decreasing, ending at the number of events; ``qx``,
    ``qy`` 1D of the format's dtype; pixel indices inside the detector, sub-pixel coordinates
    finite and rounding to a detector pixel.
    """
    checked = as_block(block, EventBlock, scan_shape, where)
    shape = checked.scan_shape
    indptr, qx, qy = checked.indptr, checked.qx, checked.qy
    dtype = position_dtype(subpixel)
    kind = "sub-pixel" if subpixel else "pixel"
    check_parts(indptr, {"qx": qx, "qy": qy}, shape, {"qx": dtype, "qy": dtype}, where, kind)
    for name, q, size in (("qx", qx, detector_shape[0]), ("qy", qy, detector_shape[1])):
        if not q.size:
            continue
        if subpixel:
            if not np.isfinite(q).all():
                raise ValueError(f"{where}: {name} holds NaN or infinite positions")
            lo, hi = np.rint(q.min()), np.rint(q.max())
        else:
            lo, hi = 0, int(q.max())
        if lo < 0 or hi >= size:
            raise ValueError(
                f"{where}: {name} positions round to pixels {lo:g} .. {hi:g}, "
                f"outside the detector's 0 .. {size - 1}"
            )
    return checked


def dense_to_events(block: Array, subpixel: bool = False) -> EventBlock:
    """Counted frames ``(n1, n2, Qx, Qy)`` (bool or non-negative integers) -> EventBlock.

    Every nonzero pixel gives ``count`` events at its index (C order within each frame), so
    :func:`events_to_dense` with an integer dtype inverts it exactly. ``subpixel``: positions
    stored as float32 (the same pixel coordinates), else uint16. Negative counts raise.
    """
    if hasattr(block, "get"):  # cupy chunk: events live on the host
        block = block.get()
    block = np.asarray(block)
    n1, n2, nqx, nqy = block.shape
    frames = block.reshape(n1 * n2, nqx * nqy)
    if frames.dtype == np.bool_:
        frames = frames.view(np.uint8)
    if frames.dtype.kind == "i" and frames.size and frames.min() < 0:
        raise ValueError("counted_datacube holds negative counts")
    frame, pixel = np.nonzero(frames)
    counts = frames[frame, pixel]
    if counts.size and counts.max() > 1:
        frame = np.repeat(frame, counts)
        pixel = np.repeat(pixel, counts)
    indptr = np.zeros(n1 * n2 + 1, np.int64)
    np.cumsum(np.bincount(frame, minlength=n1 * n2), out=indptr[1:])
    dtype = position_dtype(subpixel)
    qx, qy = np.divmod(pixel, nqy)
    return EventBlock(indptr, qx.astype(dtype), qy.astype(dtype), (n1, n2))


def frame_index(block: EventBlock) -> np.ndarray:
    """int64 index (C order within the block) of the scan position of every event."""
    return np.repeat(np.arange(block.indptr.size - 1), np.diff(block.indptr))


def pixels(block: EventBlock) -> tuple[np.ndarray, np.ndarray]:
    """``(qx, qy)`` int64 detector pixels of the events (sub-pixel positions rounded)."""
    if block.qx.dtype.kind == "f":
        return np.rint(block.qx).astype(np.int64), np.rint(block.qy).astype(np.int64)
    return block.qx.astype(np.int64), block.qy.astype(np.int64)


def counts_image(block: EventBlock) -> np.ndarray:
    """int64 ``(n1, n2)`` number of events per scan position."""
    return np.diff(block.indptr).reshape(block.scan_shape)


def dense_dtype(dtype: npt.DTypeLike) -> np.dtype:
    """The dtype of :func:`events_to_dense`'s frames: None -> bool; else ``dtype`` when bool,
    integer or float (``ValueError`` naming ``dtype`` otherwise)."""
    if dtype is None:
        return np.dtype(np.bool_)
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        raise ValueError(f"dtype must be a numpy dtype, got {dtype!r}") from None
    if dtype.kind not in "biuf":
        raise ValueError(f"dtype must be bool, integer or float, got {dtype}")
    return dtype


def events_to_dense(
    block: EventBlock, detector_shape: Sequence[int], dtype: npt.DTypeLike = np.bool_
) -> np.ndarray:
    """``(n1, n2, Qx, Qy)`` frames of ``dtype``: bool marks the pixels hit at least once; other
    dtypes hold the number of events per pixel, counted exactly (``ValueError`` when a count
    does not fit ``dtype``)."""
    dtype = np.dtype(dtype)
    n1, n2 = block.scan_shape
    nqx, nqy = detector_shape
    out = np.zeros((n1 * n2, nqx * nqy), dtype=dtype)
    x, y = pixels(block)
    frame = frame_index(block)
    pixel = x * nqy + y
    if dtype == np.bool_:
        out[frame, pixel] = True
    elif frame.size:
        flat, counts = np.unique(frame * (nqx * nqy) + pixel, return_counts=True)
        top = counts.max()
        limit = np.iinfo(dtype).max if dtype.kind in "iu" else np.finfo(dtype).max
        if top > limit:
            raise ValueError(f"dtype {dtype} cannot hold {top} events on one pixel")
        out.ravel()[flat] = counts
    return out.reshape(n1, n2, nqx, nqy)


def diffraction_histogram(block: EventBlock, detector_shape: Sequence[int]) -> np.ndarray:
    """int64 ``(Qx, Qy)`` number of events on every pixel, over all positions of the block."""
    nqx, nqy = detector_shape
    x, y = pixels(block)
    return np.bincount(x * nqy + y, minlength=nqx * nqy).reshape(nqx, nqy)


def masked_sums(block: EventBlock, mask: npt.ArrayLike) -> np.ndarray:
    """float64 ``(n1, n2)``: ``sum(mask[qx, qy])`` over each position's events (rounded)."""
    x, y = pixels(block)
    n = block.indptr.size - 1
    return np.bincount(
        frame_index(block), weights=np.asarray(mask, np.float64)[x, y], minlength=n
    ).reshape(block.scan_shape)


def center_of_mass(block: EventBlock, mask: npt.ArrayLike | None = None) -> np.ndarray:
    """float64 ``(n1, n2, 3)``: intensity, com_x, com_y (detector pixels from the corner pixel)
    of every position's events; NaN positions where the (masked) intensity is 0.

    Each event weighs 1 (or ``mask[rint(qx), rint(qy)]``) at its position: the pixel index, or
    the sub-pixel coordinate. Sums are float64, exact for integer positions and weights (below
    2**53), so pixel events give the dense integer centre of mass bit for bit.
    """
    n = block.indptr.size - 1
    frame = frame_index(block)
    qx, qy = block.qx.astype(np.float64), block.qy.astype(np.float64)
    if mask is None:
        total: np.ndarray = np.bincount(frame, minlength=n).astype(np.float64)
        sum_x = np.bincount(frame, weights=qx, minlength=n)
        sum_y = np.bincount(frame, weights=qy, minlength=n)
    else:
        x, y = pixels(block)
        w = np.asarray(mask, np.float64)[x, y]
        total = np.bincount(frame, weights=w, minlength=n)
        sum_x = np.bincount(frame, weights=w * qx, minlength=n)
        sum_y = np.bincount(frame, weights=w * qy, minlength=n)
    out = com_from_sums(np.stack([total, sum_x, sum_y], axis=-1))
    return out.reshape(*block.scan_shape, 3)
