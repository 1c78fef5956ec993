"""Chunks that cannot be read: the error that names where they are, and the ``on_error="mask"``
mode that records them and goes on (``docs/faults.md``).

Every reader's dask array reads each chunk through a :class:`ChunkReader` (made by
:mod:`stem4d_dask.lazy`): the reader's loader, plus the array's shape and name. When the loader
raises, the chunk reader

- with ``on_error="raise"`` (the default) raises :class:`ChunkReadError` from the task: the
  source (store or file), the chunk's scan positions (``Rx a:b, Ry c:d``), what the loader can
  say about it (a zarr shard key, a file's frames and bytes) and the original error, kept as
  ``__cause__`` (also across process workers);
- with ``on_error="mask"`` returns the chunk as NaN (the datacube is then float: see
  :func:`masked_dtype`), warns (:class:`BadChunkWarning`: from a ``distributed`` worker the
  warning is forwarded to the clients) and records the chunk: in the process that read it and,
  on a ``distributed`` worker, as an event of topic :data:`TOPIC` on the scheduler.
  :func:`bad_chunks` gathers the records of a datacube after a computation.

A loader says what it reads with a ``source`` attribute (else its ``path`` or ``url``) and,
optionally, ``chunk_detail(slices) -> str`` (called only for a chunk that failed).
"""

from __future__ import annotations

import contextvars
import pickle
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

ON_ERROR = ("raise", "mask")
TOPIC = "stem4d-bad-chunk"  # distributed event topic of the bad chunks read on workers


class ChunkReadError(OSError, ValueError):
    """A chunk of a datacube could not be read: the message names the source, the scan
    positions, what the loader knows of the chunk and the original error (``__cause__``).

    An ``OSError`` (the data on disk could not be read) and a ``ValueError`` (the readers'
    checks of what they read raise it), like :class:`io.UnsupportedOperation`. Pickles with its
    fields and, when it pickles, its cause."""

    def __init__(
        self,
        message: str = "",
        *,
        source: str = "",
        rx: tuple[int, int] | None = None,
        ry: tuple[int, int] | None = None,
        detail: str = "",
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.source, self.rx, self.ry = source, rx, ry
        self.detail, self.reason = detail, reason

    def __reduce__(self) -> tuple:
        state = dict(self.__dict__)
        cause = self.__cause__
        if cause is not None:
            try:
                pickle.dumps(cause)
            except Exception:  # an unpicklable cause stays behind; its text is in the message
                cause = None
        if cause is not None:
            state["__cause__"] = cause
        return (type(self), (self.args[0] if self.args else "",), state)


# raised as they are, never masked: a bug, the environment or memory is at fault, not the
# chunk's data (or the chunk is already named)
PASSED_THROUGH = (
    AssertionError,
    AttributeError,
    NameError,
    ImportError,
    MemoryError,
    ChunkReadError,
)


class BadChunkWarning(UserWarning):
    """A chunk could not be read and is NaN (``on_error="mask"``)."""


class BadChunk(NamedTuple):
    """A chunk read as NaN: ``source``, its scan rows ``rx`` and columns ``ry`` as ``(start,
    stop)``, the error (``reason``) and what the loader knows of it (``detail``)."""

    source: str
    rx: tuple[int, int]
    ry: tuple[int, int]
    reason: str
    detail: str = ""


def check_on_error(value: object) -> str:
    """``value`` when it is one of :data:`ON_ERROR`, else ``ValueError`` naming it."""
    if not isinstance(value, str) or value not in ON_ERROR:
        raise ValueError(f"on_error must be one of {list(ON_ERROR)}, got {value!r}")
    return value


def masked_dtype(dtype: npt.DTypeLike) -> np.dtype:
    """The dtype of a datacube read with ``on_error="mask"`` (NaN needs a float): float32 for
    bool, (u)int8/16, float16/32 data, float64 for wider integers (exact for any count a 32-bit
    counter holds) and float64 (``numpy.result_type(dtype, float32)``), native byte order."""
    return np.result_type(np.dtype(dtype), np.float32).newbyteorder("=")


# --- the reading mode: set by io.read while a reader builds its arrays ------------------------


@dataclass
class Reading:
    """What :func:`reading` hands the reader's arrays: the mode, and the names of the arrays
    built in mask mode (their blocks are floats whatever dtype they declare)."""

    on_error: str
    masked: set[str] = field(default_factory=set)


_READING: contextvars.ContextVar[Reading | None] = contextvars.ContextVar(
    "stem4d_dask_reading", default=None
)


@contextmanager
def reading(on_error: str) -> Iterator[Reading]:
    """While a reader builds its datacube: every chunk reader made meanwhile
    (:func:`chunk_reader`) follows ``on_error``. Readers keep declaring their stored dtype (their
    value ranges and checks stay as they are); :func:`promoted` declares the float one after."""
    state = Reading(check_on_error(on_error))
    token = _READING.set(state)
    try:
        yield state
    finally:
        _READING.reset(token)


def current_on_error() -> str:
    """The mode of the enclosing :func:`reading`, else ``"raise"``."""
    state = _READING.get()
    return "raise" if state is None else state.on_error


def chunk_reader(
    loader: Callable, shape: tuple, dtype: npt.DTypeLike, name: str, positional: bool = True
) -> ChunkReader:
    """The :class:`ChunkReader` of array ``name`` (``shape``, stored ``dtype``) over ``loader``,
    in the mode of the enclosing :func:`reading` (else ``"raise"``)."""
    state = _READING.get()
    if state is None or state.on_error == "raise":
        return ChunkReader(loader, tuple(shape), name, positional=positional)
    state.masked.add(name)
    return ChunkReader(
        loader, tuple(shape), name, "mask", masked_dtype(dtype).str, positional=positional
    )


def promoted(dc: Any, state: Reading) -> Any:
    """Datacube ``dc`` built under ``reading("mask")`` declared as what its blocks are: float
    (:func:`masked_dtype`), with no value range (it described the integers). Refused when a
    chunk of it is not read through a mask-mode chunk reader (a store xarray decodes itself)."""
    import dask.array as da

    from .values import VALUE_RANGE_OF

    data = dc.data
    graph = data.__dask_graph__() if isinstance(data, da.Array) else None
    roots = {n for n, deps in graph.dependencies.items() if not deps} if graph else {None}
    if not roots or not roots <= state.masked:
        raise ValueError(
            "on_error: 'mask' needs every chunk read by stem4d_dask's own chunk readers; this "
            "datacube is read another way (e.g. a CF-encoded zarr store that xarray decodes); "
            "use on_error='raise'"
        )
    dtype = masked_dtype(data.dtype)
    meta = np.empty((0,) * data.ndim, dtype)
    out = dc.copy(data=da.Array(graph, data.name, data.chunks, meta=meta))
    for key in ("value_range", VALUE_RANGE_OF):
        out.attrs.pop(key, None)
    return out


# --- reading a chunk ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkReader:
    """Block ``slices`` of array ``array`` (of ``shape``) read by ``loader(slices)`` (or
    ``loader()`` when not ``positional``: a loader made for this one block), with a failure
    raised as :class:`ChunkReadError` or, with ``on_error="mask"``, returned as NaN of
    ``dtype`` (every block is then returned as ``dtype``)."""

    loader: Callable
    shape: tuple
    array: str
    on_error: str = "raise"
    dtype: str | None = None
    positional: bool = True

    def __call__(self, slices: tuple) -> np.ndarray:
        try:
            block = self.loader(slices) if self.positional else self.loader()
        except PASSED_THROUGH:
            raise
        except Exception as err:
            fault = chunk_error(self.loader, slices, self.shape, err)
            if self.on_error == "raise":
                raise fault from err
            _record(fault, self.array)
            sizes = [len(range(*s.indices(n))) for s, n in zip(slices, self.shape, strict=True)]
            return np.full(sizes, np.nan, dtype=self.dtype)
        return block if self.dtype is None else np.asarray(block, dtype=self.dtype)


def source_of(loader: object) -> str:
    """What ``loader`` reads: its ``source``, else its ``path`` or ``url``, else its type."""
    for attribute in ("source", "path", "url"):
        value = getattr(loader, attribute, None)
        if value:
            return str(value)
    return type(loader).__name__


def chunk_error(loader: object, slices: tuple, shape: tuple, err: BaseException) -> ChunkReadError:
    """The :class:`ChunkReadError` for block ``slices`` (of an array of ``shape``) that
    ``loader`` failed to read with ``err``."""
    bounds = [s.indices(n)[:2] for s, n in zip(slices, shape, strict=True)]
    rx, ry = bounds[0], bounds[1] if len(bounds) > 1 else (0, 1)
    where = (
        f"Rx {rx[0]}:{rx[1]}, Ry {ry[0]}:{ry[1]}"
        if len(shape) == 4
        else "[" + ", ".join(f"{a}:{b}" for a, b in bounds) + "]"
    )
    detail = ""
    describe = getattr(loader, "chunk_detail", None)
    if describe is not None:
        try:
            detail = str(describe(slices))
        except Exception:  # the detail is a courtesy: never hide the real error behind it
            detail = ""
    reason = str(err) or type(err).__name__
    source = source_of(loader)
    message = f"{source}: the chunk at {where} cannot be read" + (f" ({detail})" if detail else "")
    return ChunkReadError(
        f"{message}: {reason}", source=source, rx=rx, ry=ry, detail=detail, reason=reason
    )


# --- records of the chunks read as NaN --------------------------------------------------------

_LOCK = threading.Lock()
_RECORDS: list[dict] = []  # bad chunks read in this process (threads, in-process workers)


def _record(fault: ChunkReadError, array: str) -> None:
    """Keep ``fault`` (a chunk of ``array`` read as NaN): here, and as a scheduler event when on
    a ``distributed`` worker; warn (forwarded to the clients from a worker)."""
    rx, ry = fault.rx or (0, 0), fault.ry or (0, 0)
    entry = {
        "array": array,
        "source": fault.source,
        "rx": [int(rx[0]), int(rx[1])],
        "ry": [int(ry[0]), int(ry[1])],
        "reason": fault.reason,
        "detail": fault.detail,
    }
    with _LOCK:
        _RECORDS.append(entry)
    message = f"{fault} (on_error='mask': the chunk is NaN)"
    worker = _worker()
    if worker is None:
        warnings.warn(message, BadChunkWarning, stacklevel=3)
        return
    from distributed import warn

    worker.log_event(TOPIC, entry)
    warn(message, BadChunkWarning)


def _worker() -> Any:
    try:
        from distributed import get_worker
    except ImportError:
        return None
    try:
        return get_worker()
    except ValueError:
        return None


def bad_chunks(datacube: Any, client: Any = None) -> list[BadChunk]:
    """The chunks of ``datacube`` (read with ``on_error="mask"``, or anything computed from it
    whose graph still holds its read) read as NaN so far, sorted, each once.

    Gathered from this process (the threaded scheduler) and from the scheduler of ``client``
    (else the default ``distributed`` client, when there is one): workers record there what
    they read. Records of the chunks of dask's ``processes`` scheduler stay in its children:
    use threads or ``distributed``."""
    names = _layer_names(datacube)
    with _LOCK:
        entries = list(_RECORDS)
    client = client if client is not None else _default_client()
    if client is not None:
        entries += [msg for _, msg in client.get_events(TOPIC)]
    found = {
        BadChunk(e["source"], tuple(e["rx"]), tuple(e["ry"]), e["reason"], e["detail"])
        for e in entries
        if e["array"] in names
    }
    return sorted(found)


def bad_positions(datacube: Any, client: Any = None) -> np.ndarray:
    """Bool ``(Rx, Ry)``: the scan positions of ``datacube`` in its :func:`bad_chunks`."""
    rx, ry = datacube.sizes["Rx"], datacube.sizes["Ry"]
    out = np.zeros((rx, ry), dtype=bool)
    for chunk in bad_chunks(datacube, client):
        out[slice(*chunk.rx), slice(*chunk.ry)] = True
    return out


def _layer_names(datacube: Any) -> set[str]:
    data = getattr(datacube, "data", datacube)
    graph = getattr(data, "__dask_graph__", None)
    hlg = graph() if graph is not None else None
    if hlg is None:
        raise TypeError(
            f"datacube: expected a lazy datacube or dask array, got {type(datacube).__name__}"
        )
    return {str(name) for name in getattr(hlg, "layers", {})}


def _default_client() -> Any:
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return None


__all__ = [
    "ON_ERROR",
    "TOPIC",
    "BadChunk",
    "BadChunkWarning",
    "ChunkReadError",
    "ChunkReader",
    "bad_chunks",
    "bad_positions",
    "chunk_error",
    "check_on_error",
    "masked_dtype",
    "reading",
]
