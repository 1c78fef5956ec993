"""The chunking policy of datacubes: whole detector frames, the scan cut into blocks of
roughly 32-128 MiB (never kilobyte chunks: a 256^4 scan must not become 100 000 tasks), and
no larger than the workers of an active ``distributed`` client can hold.

Chunks that fit the workers: while a ``distributed`` client is the default (``Client(...)``,
``set_as_default`` as it is by default) and its workers have a memory limit, a task's working
set, ``chunk pixels x (itemsize + WORK_BYTES_PER_PIXEL)`` (the input block, float64
intermediates and the output), times the worker's threads, plus the ``WORKER_BASELINE_BYTES``
a worker holds before any task, must stay under the worker's pause threshold
(``distributed.worker.memory.pause`` of its limit, 0.8 by default), on the tightest worker.
``"auto"`` chunks are then cut smaller where needed (below 32 MiB too), and a given chunking
that cannot fit is refused with a ``ValueError`` that says what would. Without such a client
nothing changes.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

import dask
import dask.array as da
import numpy as np
import numpy.typing as npt

from .coords import DIMS

MiB = 2**20
TARGET_CHUNK_BYTES = 64 * MiB
MIN_CHUNK_BYTES = 32 * MiB
MAX_CHUNK_BYTES = 128 * MiB
#: Bytes a task holds per pixel of its chunk beyond the input block: two float64 values, room
#: for a float64 intermediate and a float64 output. Measured per task (docs/benchmarks.md,
#: "Scale"): resample_data_diffraction by 0.5 ~10, virtual images 8, subtract_dark and
#: centring 4, binning ~2, counting and centre of mass under 1.
WORK_BYTES_PER_PIXEL = 16
#: What a worker process holds before any task (Python, numpy, dask, distributed and this
#: package imported, one operation run): RSS 290-300 MiB measured.
WORKER_BASELINE_BYTES = 300 * MiB


@dataclass(frozen=True)
class Workers:
    """The memory of the tightest worker: ``limit`` bytes shared by ``threads`` tasks, of which
    ``fraction`` may be used before the worker pauses."""

    limit: int
    threads: int
    fraction: float = 0.8

    @property
    def per_task(self) -> int:
        """Bytes one task may hold: ``(limit x fraction - baseline) / threads``."""
        return int((self.limit * self.fraction - WORKER_BASELINE_BYTES) // max(self.threads, 1))


#: ``auto_chunks``' and ``normalize_chunks``' ``workers`` default: the active client's.
ACTIVE: Literal["active"] = "active"
WorkersArg: TypeAlias = Workers | None | Literal["active"]

#: One axis's chunking, as dask takes it: a size, a tuple of sizes, -1 or None (whole), "auto".
AxisChunks: TypeAlias = int | tuple[int, ...] | str | None
#: A datacube's chunking: ``"auto"``, ``{dim: axis chunks}``, or 2 (scan) or 4 axis chunks.
Chunks: TypeAlias = str | dict[str, AxisChunks] | Sequence[AxisChunks]


def auto_chunks(
    shape: Sequence[int],
    itemsize: int,
    target_bytes: int = TARGET_CHUNK_BYTES,
    multiple_of: Sequence[int] = (1, 1),
    workers: WorkersArg = ACTIVE,
) -> tuple[int, int, int, int]:
    """Default chunks for a 4D scan: whole frames, scan blocks of about ``target_bytes``, or
    less where ``workers`` (default: those of the active ``distributed`` client, if any) need
    it (:func:`fitting_bytes`).

    Whole scan rows are kept together when a row fits (each chunk is then one contiguous byte
    range of a C-ordered file); otherwise a chunk is a run of frames within one row. Scan chunk
    sizes are multiples of ``multiple_of`` = the file's own ``(Rx, Ry)`` chunk shape, so that
    no stored chunk is read by two tasks. Returns ``(cRx, cRy, Qx, Qy)`` as ints.
    """
    workers = active_workers() if workers == ACTIVE else workers
    if workers is not None:
        target_bytes = min(target_bytes, fitting_bytes(itemsize, workers))
    rx, ry, qx, qy = (int(s) for s in shape)
    hx, hy = min(int(multiple_of[0]), rx), min(int(multiple_of[1]), ry)
    frames = max(target_bytes // max(qx * qy * int(itemsize), 1), 1)
    blocks = max(frames // (hx * hy), 1)  # stored chunks per task
    per_row = -(-ry // hy)
    if blocks >= per_row:
        return (min(max(blocks // per_row, 1) * hx, rx), ry, qx, qy)
    return (hx, blocks * hy, qx, qy)


def normalize_chunks(
    chunks: Chunks, shape: Sequence[int], dtype: npt.DTypeLike, workers: WorkersArg = ACTIVE
) -> tuple[tuple[int, ...], ...]:
    """Turn ``"auto"``, a ``{dim: size}`` dict or a 2-/4-tuple into dask chunks for ``shape``.

    With ``workers`` (default: those of the active ``distributed`` client, if any), chunks
    whose tasks cannot fit (:func:`check_fits`) raise ``ValueError``."""
    itemsize = np.dtype(dtype).itemsize
    workers = active_workers() if workers == ACTIVE else workers
    if isinstance(chunks, str):
        if chunks != "auto":
            raise ValueError(f"chunks must be 'auto', a dict or a tuple, got {chunks!r}")
        chunks = auto_chunks(shape, itemsize, workers=workers)
    elif isinstance(chunks, dict):
        unknown = set(chunks) - set(DIMS)
        if unknown:
            raise ValueError(f"chunks: unknown dims {sorted(unknown)}; expected {DIMS}")
        base = auto_chunks(shape, itemsize, workers=workers)
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
    normalized: tuple[tuple[int, ...], ...] = da.core.normalize_chunks(
        chunks, shape=tuple(shape), dtype=dtype
    )
    if workers is not None:
        check_fits(normalized, shape, dtype, workers)
    return normalized


# --- chunks that fit the workers ---------------------------------------------------------------


def task_bytes(pixels: int, itemsize: int) -> int:
    """The working set of a task on a chunk of ``pixels`` pixels of ``itemsize`` bytes: the
    block plus ``WORK_BYTES_PER_PIXEL`` a pixel."""
    return int(pixels) * (int(itemsize) + WORK_BYTES_PER_PIXEL)


def fitting_bytes(itemsize: int, workers: Workers) -> int:
    """The largest chunk (bytes of data) whose task fits ``workers`` (0 when none does)."""
    return max(workers.per_task, 0) // (int(itemsize) + WORK_BYTES_PER_PIXEL) * int(itemsize)


def check_fits(
    chunks: Sequence[Sequence[int]], shape: Sequence[int], dtype: npt.DTypeLike, workers: Workers
) -> None:
    """``ValueError`` naming ``chunks`` when the largest chunk of ``chunks`` (dask style) cannot
    fit ``workers``: its working set per task, the workers' memory, and the largest scan chunk
    that fits (as :func:`auto_chunks` cuts it)."""
    dtype = np.dtype(dtype)
    largest = [max(c) if len(c) else 0 for c in chunks]
    need = task_bytes(int(np.prod(largest, dtype=np.int64)), dtype.itemsize)
    if need <= workers.per_task:
        return
    qx, qy = (int(s) for s in shape[2:])
    fit = fitting_bytes(dtype.itemsize, workers)
    if fit < qx * qy * dtype.itemsize:
        advice = "not even one frame fits: give the workers more memory or fewer threads"
    else:
        scan = auto_chunks(shape, dtype.itemsize, fit, workers=None)[:2]
        advice = f"use at most {scan} frames"
    raise ValueError(
        f"chunks: {tuple(largest[:2])} frames of {qx} x {qy} {dtype} are "
        f"{_mib(need)} per task (the block plus {WORK_BYTES_PER_PIXEL} bytes a pixel of "
        f"float64 work); workers have {_mib(workers.limit)} with {workers.threads} "
        f"thread(s), {_mib(workers.per_task)} a task (to {workers.fraction:.0%} of the limit, "
        f"after {_mib(WORKER_BASELINE_BYTES)} for the worker itself): {advice}"
    )


def _mib(nbytes: float) -> str:
    return f"{nbytes / MiB:.0f} MiB"


def active_workers() -> Workers | None:
    """The tightest worker of the client ``compute`` would run on
    (:func:`stem4d_dask.progress.active_client`: the default ``distributed`` client, unless
    dask's ``scheduler`` config names a local one), as :class:`Workers`; None without such a
    client (``distributed`` never imported included: nothing is imported here), or when no
    worker has a memory limit. The pause fraction is this process's
    ``distributed.worker.memory.pause`` (the terminate fraction if pausing is off)."""
    if "distributed" not in sys.modules:
        return None
    from .progress import active_client

    client = active_client()
    if client is None or client.status != "running":
        return None
    fraction = 1.0
    for key in ("pause", "terminate"):
        value = dask.config.get(f"distributed.worker.memory.{key}", False)
        if value:
            fraction = float(value)
            break
    limited = [
        Workers(int(w["memory_limit"]), int(w.get("nthreads") or 1), fraction)
        for w in client.scheduler_info()["workers"].values()
        if w.get("memory_limit")
    ]
    return min(limited, key=lambda w: w.per_task, default=None)
