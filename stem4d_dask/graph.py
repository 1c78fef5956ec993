"""Graph plumbing shared by the operations: whole-frame blocks of a checked datacube, mapping a
kernel over frames (:func:`map_frames`), unwrapping dask's nested blocks, shared graph keys,
drawing frames, rebuilding datacubes from results, and one layer of tasks per chunk over values
that are not dask arrays (:func:`chunk_tasks`: the events' blocks). Argument checks live in
:mod:`stem4d_dask.checks`, the array backend in :mod:`stem4d_dask.backend`."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
import numpy.typing as npt
import xarray as xr
from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from .backend import Array, meta
from .checks import positive_int
from .chunks import normalize_chunks
from .datacube import DIMS, R_DIMS, assemble, calibration_attrs, check_datacube
from .lazy import chunk_reader_of
from .values import VALUE_RANGE_OF, with_value_range


def rebuild(
    dc: xr.DataArray,
    data: da.Array,
    coords: Mapping[str, xr.DataArray] | None = None,
    value_range: Sequence[int] | None = None,
    scale: Mapping[str, float] | None = None,
) -> xr.DataArray:
    """A datacube over ``data`` (an operation's result on checked datacube ``dc``): ``dc``'s
    coords, with those in ``coords`` (``{dim: coord}``) replaced, and ``dc``'s attrs with the
    calibration derived from the coords. ``value_range``: the ``(min, max)`` the result can hold
    when known (e.g. after binning); ``dc``'s own record never carries over. ``scale``:
    ``{space: factor}`` the operation multiplied that space's pixel size by, for a result whose
    axes in that space have one pixel each (no coordinate can then say it)."""
    coords = {d: (coords or {}).get(d, dc.coords[d]) for d in DIMS}
    for d, n in zip(DIMS, data.shape, strict=True):
        if coords[d].size != n:
            raise AssertionError(f"rebuild: {d} coordinate of {coords[d].size} for {n} pixels")
    attrs = {k: v for k, v in dc.attrs.items() if k not in ("value_range", VALUE_RANGE_OF)}
    for space, factor in (scale or {}).items():
        if f"{space}_pixel_size" in attrs:
            attrs[f"{space}_pixel_size"] = attrs[f"{space}_pixel_size"] * factor
    out = assemble(data, coords, attrs)
    return out if value_range is None else with_value_range(out, value_range)


def whole_frames(data: da.Array) -> da.Array:
    """Rechunk to the default policy (whole frames, 32-128 MiB scan blocks)."""
    return data.rechunk(normalize_chunks("auto", data.shape, data.dtype))


def frame_blocks(
    datacube: object, parameter: str = "datacube", complex_ok: bool = False
) -> tuple[xr.DataArray, da.Array]:
    """``(checked datacube, dask array)``: the datacube as :func:`check_datacube` returns it
    (dims in order, calibration from the coords), and its data with each chunk holding whole
    frames. An operation uses both, never its raw argument. ``complex_ok``: accept complex data
    (operations that mean something for it: user functions, crops); others refuse it.

    A datacube whose detector axes are split (only possible when built by hand) is rechunked
    along Qx, Qy with a warning; the scan chunks are kept.
    """
    datacube = check_datacube(datacube, parameter=parameter, complex_ok=complex_ok)
    data = datacube.data
    if not isinstance(data, da.Array):
        data = da.from_array(
            np.asarray(data), chunks=normalize_chunks("auto", data.shape, data.dtype)
        )
    if data.numblocks[2] > 1 or data.numblocks[3] > 1:
        warnings.warn(
            f"{parameter}: the detector axes are split into chunks; rechunking to "
            "whole frames for a per-frame operation",
            stacklevel=3,
        )
        data = data.rechunk({2: -1, 3: -1})
    return datacube, data


_LETTERS = "abcdefgh"  # index letters of a kernel's extra output / argument axes


def map_frames(
    kernel: Callable[..., Array],
    datacube: xr.DataArray,
    *detector_args: npt.ArrayLike | da.Array,
    out_dims: Sequence[str] = (),
    out_sizes: Sequence[int] = (),
    dtype: npt.DTypeLike = np.float64,
    name: str,
    coords: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> xr.DataArray:
    """Map ``kernel`` over the frames of ``datacube``, one task per chunk, lazily.

    ``kernel(block, *args, **kwargs)`` gets a chunk ``(n1, n2, Qx, Qy)`` (whole frames, numpy or
    cupy, the view dask holds: no concatenation copy) and each of ``detector_args`` whole (dask
    or numpy arrays ``(Qx, Qy, ...)``: masks, dark references, weights; each one graph key
    shared by every task), and returns ``(n1, n2, *out_sizes)`` of ``dtype``, of the chunk's
    array module. Returns a DataArray ``(Rx, Ry, *out_dims)`` with the datacube's scan coords
    (plus ``coords``), named ``name``, with ``attrs`` (default: the calibration attrs).
    """
    datacube, data = frame_blocks(datacube)
    out_letters = _LETTERS[: len(out_dims)]
    detector = [
        (a if isinstance(a, da.Array) else da.from_array(np.asarray(a), chunks=-1)).rechunk(-1)
        for a in detector_args
    ]
    result = _mapped_where_read(data, detector, kernel, kwargs, out_sizes, dtype, name)
    if result is None:
        args: list = [data, "ijkl"]
        extra = iter("mnopqrst")
        for arg in detector:
            args += [arg, "kl" + "".join(next(extra) for _ in range(arg.ndim - 2))]
        result = da.blockwise(
            _frames_task,
            "ij" + out_letters,
            *args,
            kernel=kernel,
            kwargs=kwargs,
            new_axes=dict(zip(out_letters, out_sizes, strict=True)),
            concatenate=False,
            dtype=dtype,
            meta=meta(data._meta, 2 + len(out_dims), dtype),
            token=name,
        )
    coords = {**{d: datacube.coords[d] for d in R_DIMS}, **(coords or {})}
    return xr.DataArray(
        result,
        dims=(*R_DIMS, *out_dims),
        coords=coords,
        name=name,
        attrs=calibration_attrs(datacube.attrs) if attrs is None else attrs,
    )


def _mapped_where_read(
    data: da.Array,
    detector: list[da.Array],
    kernel: Callable[..., Array],
    kwargs: dict[str, Any],
    out_sizes: Sequence[int],
    dtype: npt.DTypeLike,
    name: str,
) -> da.Array | None:
    """``kernel`` mapped over ``data`` with each chunk read inside the task that maps it (one
    task per chunk, no block held between a read and its use: :func:`chunk_layer`), when
    ``data`` comes straight from a reader (:func:`stem4d_dask.lazy.chunk_reader_of`: the
    array's own chunk reader, so a chunk that cannot be read is named, or NaN in mask mode,
    as when the array is computed); else None. ``detector``: whole arrays (one block each),
    handed to every task."""
    if chunk_reader_of(data) is None:
        return None
    token = tokenize(name, data.name, [a.name for a in detector], kernel, kwargs, out_sizes, dtype)
    out = f"{name}-{token}"
    task = functools.partial(_apply_kernel, kernel=kernel, kwargs=kwargs)
    shared = [single_key(a) for a in detector]
    graph = chunk_layer(out, data, task, shared=shared, tail=len(out_sizes))
    chunks = (*data.chunks[:2], *((n,) for n in out_sizes))
    return da.Array(graph, out, chunks, meta=meta(data._meta, 2 + len(out_sizes), dtype))


def _apply_kernel(
    block: Array, *args: Array, kernel: Callable, kwargs: dict[str, Any], origin: tuple
) -> Array:
    return kernel(block, *args, **kwargs)


def chunk_layer(
    name: str,
    data: da.Array,
    task: Callable[..., Any],
    per_position: Sequence[da.Array] = (),
    shared: Sequence[Any] = (),
    tail: int = 0,
) -> HighLevelGraph:
    """One graph layer ``name`` with one task per scan chunk of ``data`` (whole frames): key
    ``(name, i, j, *(0,) * tail)`` (``tail``: the result's own axes, when it is the block of a
    dask array) runs ``task(block, *position_blocks, *shared_values, origin=(r0, c0))``.

    ``block`` is the chunk, read inside the task when ``data`` comes straight from a reader
    (:func:`stem4d_dask.lazy.chunk_reader_of`), else dask's block of ``data``;
    ``per_position``: dask arrays ``(Rx, Ry, ...)`` chunked like ``data``'s scan, whole along
    their other axes (each task gets its block); ``shared``: ``Delayed`` values every task gets
    whole (one graph key each); ``origin``: the chunk's first scan position."""
    loader = chunk_reader_of(data)
    starts = [np.cumsum((0, *c)) for c in data.chunks[:2]]
    layer: dict[Any, Any] = {}
    for i, j in np.ndindex(data.numblocks[:2]):
        rows = slice(starts[0][i], starts[0][i + 1]), slice(starts[1][j], starts[1][j + 1])
        source = (*rows, slice(None), slice(None)) if loader else (data.name, i, j, 0, 0)
        call = functools.partial(
            _chunk_call, task, loader, origin=(int(starts[0][i]), int(starts[1][j]))
        )
        layer[(name, i, j, *(0,) * tail)] = (
            call,
            source,
            *[(p.name, i, j, *(0,) * (p.ndim - 2)) for p in per_position],
            *[s.key for s in shared],
        )
    dependencies = [*([] if loader else [data]), *per_position, *shared]
    return HighLevelGraph.from_collections(name, layer, dependencies=dependencies)


def _chunk_call(
    task: Callable[..., Any],
    loader: Callable[[tuple], Array] | None,
    source: Any,
    *args: Any,
    origin: tuple[int, int],
) -> Any:
    return task(loader(source) if loader else source, *args, origin=origin)


def _frames_task(
    block: Array | list, *args: Array | list, kernel: Callable[..., Array], kwargs: dict[str, Any]
) -> Array:
    # concatenate=False: the contracted Qx, Qy axes hold one block each, handed over in nested
    # lists; concatenating them would copy every chunk
    return kernel(only_block(block), *(only_block(a) for a in args), **kwargs)


def single_key(array: da.Array) -> Delayed:
    """A one-chunk dask array as one ``Delayed``: an argument every task receives whole."""
    return array.rechunk(-1).to_delayed().ravel()[0]


def only_block(nested: Array | list) -> Array:
    """The single array inside dask's nested lists of blocks along contracted axes.

    ``blockwise(..., concatenate=False)`` hands each task the blocks of the axes it contracts
    (whole Qx, Qy: one block each) in nested lists; ``concatenate=True`` would copy every chunk
    (``concatenate3``), which costs more than most kernels.
    """
    while isinstance(nested, list):
        (nested,) = nested
    return nested


def drawn_frames(
    data: da.Array, n_frames: int, rng: np.random.Generator, parameter: str = "N_frames"
) -> tuple[np.ndarray, list[tuple[Delayed, np.ndarray]]]:
    """Draw ``n_frames`` distinct scan positions with ``rng`` and return ``(selected, parts)``:
    the bool ``(Rx, Ry)`` selection and, for every chunk holding a drawn frame, a
    ``(delayed block, local selection)`` pair. Chunks without a drawn frame are never read."""
    rx, ry = data.shape[:2]
    n = positive_int(n_frames, parameter)
    if n > rx * ry:
        raise ValueError(
            f"{parameter} {n} is larger than the scan ({rx} x {ry} = {rx * ry} frames)"
        )
    selected = np.zeros(rx * ry, dtype=bool)
    selected[rng.permutation(rx * ry)[:n]] = True
    selected = selected.reshape(rx, ry)
    blocks = data.to_delayed()
    bounds = [np.cumsum((0,) + c) for c in data.chunks[:2]]
    parts = []
    for i in range(data.numblocks[0]):
        for j in range(data.numblocks[1]):
            local = selected[bounds[0][i] : bounds[0][i + 1], bounds[1][j] : bounds[1][j + 1]]
            if local.any():
                parts.append((blocks[i, j, 0, 0], local))
    return selected, parts


def scan_location(block_info: Mapping[Hashable, Mapping[str, Any]] | None) -> str:
    """'scan rows a:b, columns c:d' of the block a map_blocks task is working on."""
    if not block_info or 0 not in block_info:
        return "an unknown scan block"
    (r0, r1), (c0, c1) = block_info[0]["array-location"][:2]
    return f"scan rows {r0}:{r1}, columns {c0}:{c1}"


def result_float_dtype(dtype: npt.DTypeLike) -> np.dtype:
    """The float dtype of an interpolated result: float32 for (u)int8/16 and float16/32 data,
    float64 for wider integers and float64 (``numpy.result_type(dtype, float32)``)."""
    out = np.result_type(np.dtype(dtype), np.float32)
    if out.kind != "f":
        raise ValueError(f"datacube: expected real data, got dtype {np.dtype(dtype)}")
    return out


def chunk_location(chunks: Sequence[Sequence[int]], index: tuple[int, int]) -> str:
    """``'scan chunk (i, j) (rows a:b, columns c:d)'``: where chunk ``index`` ``(i, j)`` of the
    dask-style scan ``chunks`` ``((rows, ...), (columns, ...))`` lies, for error messages."""
    i, j = index
    r0, c0 = sum(chunks[0][:i]), sum(chunks[1][:j])
    return (
        f"scan chunk ({i}, {j}) (rows {r0}:{r0 + chunks[0][i]}, columns {c0}:{c0 + chunks[1][j]})"
    )


def chunk_tasks(
    name: str, tasks: Mapping[tuple[int, ...], tuple], dependencies: Iterable[Any]
) -> HighLevelGraph:
    """One graph layer ``name`` with one task per chunk: ``{index: task}`` (``index`` a tuple of
    ints, ``task`` a dask task tuple ``(callable, *args)`` whose args may be keys of
    ``dependencies``, the collections it reads) becomes key ``(name, *index)``.

    The one idiom for a per-chunk graph over values that are not chunks of a dask array (the
    events' CSR blocks: ``Delayed`` values): a single layer, however many chunks, where
    ``da.from_delayed`` + ``da.block`` would add a layer and a concatenation per chunk. Views
    of it: :func:`delayed_chunks` and :func:`map_chunk_values`."""
    layer: dict[Any, Any] = {(name, *index): task for index, task in tasks.items()}
    return HighLevelGraph.from_collections(name, layer, dependencies=list(dependencies))


def delayed_chunks(
    name: str,
    tasks: Mapping[tuple[int, ...], tuple],
    dependencies: Iterable[Any],
    shape: tuple[int, ...],
) -> np.ndarray:
    """The :func:`chunk_tasks` layer as an object array of ``shape``: a ``Delayed`` per task at
    its index, ``None`` where there is no task."""
    graph = chunk_tasks(name, tasks, dependencies)
    out = np.empty(shape, dtype=object)
    for index in tasks:
        out[index] = Delayed((name, *index), graph, layer=name)
    return out


def object_grid(values: Iterable[Any], shape: tuple[int, ...]) -> np.ndarray:
    """``values`` (one per chunk, in C order: e.g. what ``dask.compute`` returns for the
    ``.flat`` of a :func:`delayed_chunks` grid) as an object array of ``shape``."""
    out = np.empty(shape, dtype=object)
    for index, value in zip(np.ndindex(*shape), values, strict=True):
        out[index] = value
    return out


def map_chunk_values(
    func: Callable[..., Any],
    values: np.ndarray,
    *shared: object,
    chunks: tuple[tuple[int, ...], ...],
    dtype: npt.DTypeLike,
    name: str,
    keywords: Callable[[tuple[int, ...]], dict[str, Any]] | None = None,
) -> da.Array:
    """A numpy-backed dask array with one task per chunk over ``values``, an object array of
    ``Delayed`` (one per chunk, e.g. from :func:`delayed_chunks`): the block at index ``(*ix,
    0, ...)`` is ``func(values[ix], *shared, **keywords(ix))``.

    ``shared``: arguments every task receives whole (masks), one graph key each. ``chunks``:
    the result's chunks (dask style), one block per value along the first ``values.ndim``
    axes, whole along the rest. ``keywords``: ``index -> dict`` of per-chunk keywords (where
    the chunk lies, its shape), part of the token. One :func:`chunk_tasks` layer."""
    keys = [dask.delayed(a, traverse=False, pure=True) for a in shared]
    handles: dict[tuple, Any] = {ix: values[ix] for ix in np.ndindex(*values.shape)}
    per_chunk = {ix: (keywords(ix) if keywords else {}) for ix in handles}
    out = f"{name}-" + tokenize(
        func,
        [h.key for h in handles.values()],
        [k.key for k in keys],
        list(per_chunk.values()),
        chunks,
        np.dtype(dtype).str,
    )
    zeros = (0,) * (len(chunks) - values.ndim)
    tasks = {
        (*ix, *zeros): (functools.partial(func, **per_chunk[ix]), h.key, *(k.key for k in keys))
        for ix, h in handles.items()
    }
    graph = chunk_tasks(out, tasks, [*values.flat, *keys])
    return da.Array(graph, out, chunks, meta=np.empty((0,) * len(chunks), dtype))
