"""The chunking policy of datacubes: whole detector frames, the scan cut into blocks of
roughly 32-128 MiB (never kilobyte chunks: a 256^4 scan must not become 100 000 tasks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import dask.array as da
import numpy as np
import numpy.typing as npt

from .coords import DIMS

MiB = 2**20
TARGET_CHUNK_BYTES = 64 * MiB
MIN_CHUNK_BYTES = 32 * MiB
MAX_CHUNK_BYTES = 128 * MiB

#: One axis's chunking, as dask takes it: a size, a tuple of sizes, -1 or None (whole), "auto".
AxisChunks: TypeAlias = int | tuple[int, ...] | str | None
#: A datacube's chunking: ``"auto"``, ``{dim: axis chunks}``, or 2 (scan) or 4 axis chunks.
Chunks: TypeAlias = str | dict[str, AxisChunks] | Sequence[AxisChunks]


def auto_chunks(
    shape: Sequence[int],
    itemsize: int,
    target_bytes: int = TARGET_CHUNK_BYTES,
    multiple_of: Sequence[int] = (1, 1),
) -> tuple[int, int, int, int]:
    """Default chunks for a 4D scan: whole frames, scan blocks of about ``target_bytes``.

    Whole scan rows are kept together when a row fits (each chunk is then one contiguous byte
    range of a C-ordered file); otherwise a chunk is a run of frames within one row. Scan chunk
    sizes are multiples of ``multiple_of`` = the file's own ``(Rx, Ry)`` chunk shape, so that
    no stored chunk is read by two tasks. Returns ``(cRx, cRy, Qx, Qy)`` as ints.
    """
    rx, ry, qx, qy = (int(s) for s in shape)
    hx, hy = min(int(multiple_of[0]), rx), min(int(multiple_of[1]), ry)
    frames = max(target_bytes // max(qx * qy * int(itemsize), 1), 1)
    blocks = max(frames // (hx * hy), 1)  # stored chunks per task
    per_row = -(-ry // hy)
    if blocks >= per_row:
        return (min(max(blocks // per_row, 1) * hx, rx), ry, qx, qy)
    return (hx, blocks * hy, qx, qy)


def normalize_chunks(
    chunks: Chunks, shape: Sequence[int], dtype: npt.DTypeLike
) -> tuple[tuple[int, ...], ...]:
    """Turn ``"auto"``, a ``{dim: size}`` dict or a 2-/4-tuple into dask chunks for ``shape``."""
    itemsize = np.dtype(dtype).itemsize
    if isinstance(chunks, str):
        if chunks != "auto":
            raise ValueError(f"chunks must be 'auto', a dict or a tuple, got {chunks!r}")
        chunks = auto_chunks(shape, itemsize)
    elif isinstance(chunks, dict):
        unknown = set(chunks) - set(DIMS)
        if unknown:
            raise ValueError(f"chunks: unknown dims {sorted(unknown)}; expected {DIMS}")
        base = auto_chunks(shape, itemsize)
        chunks = tuple(chunks.get(d, base[i]) for i, d in enumerate(DIMS))
    else:
        chunks = tuple(chunks)
        if len(chunks) == 2:
            chunks = chunks + tuple(shape[2:])
        if len(chunks) != 4:
            raise ValueError(f"chunks must have 2 (scan) or 4 entries, got {chunks!r}")
    for c, d in zip(chunks, DIMS, strict=True):
        if isinstance(c, int | np.integer) and c != -1 and c < 1:
            raise ValueError(f"chunks: {d} chunk must be >= 1, got {c!r}")
    return da.core.normalize_chunks(chunks, shape=tuple(shape), dtype=dtype)
