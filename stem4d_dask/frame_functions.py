"""Your own per-frame analysis, lazily: :func:`map_frames` (a function of one frame applied to
every frame: fixed-shape outputs, several outputs at once, or ragged ones) and
:func:`reduce_frames` (a reduction over the scan: one task per chunk, then a tree of combines).

Arguments to a user's function are passed per position or whole:

- a DataArray with the dims ``Rx`` and ``Ry`` (and any of its own, e.g. ``(Rx, Ry, k)``) is
  **per position**: aligned with the datacube's scan by dim name and coords (mismatched coords
  are refused), each frame gets its value at that position (a scalar, or the ``(k,)`` row);
- anything else is passed **whole** to every call (numbers, strings, numpy arrays such as a
  ``(Qx, Qy)`` mask; a dask array or DataArray without the scan dims is computed once by the
  task that needs it, one graph key shared by every task). A plain array is never split by
  position, even when its shape matches the scan: wrap it in a DataArray to say it is
  per-position.

Nothing is read while the graph is built: the outputs' shapes and dtypes come from
``template`` (an example of what the function returns for one frame) or, without one, from a
call on a blank frame (zeros of the datacube's dtype; per-position arguments zeros of theirs).
A function that fails on a blank frame needs a ``template``.

Every error raised by the function is re-raised as :class:`FrameFunctionError` naming the scan
position (``Rx=.., Ry=..``, or the chunk's scan rows and columns with ``vectorized=True``) and
the original error.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize
from dask.delayed import Delayed

from .backend import meta
from .coords import align
from .datacube import R_DIMS, calibration_attrs
from .frame_tasks import FrameFunctionError, combine_all, map_chunk, reduce_chunk
from .graph import chunk_layer, chunk_tasks, frame_blocks
from .kernels import ragged as kr
from .ragged import RaggedFrames

__all__ = ["FrameFunctionError", "map_frames", "reduce_frames"]


def map_frames(
    datacube,
    func: Callable[..., Any],
    *args,
    template=None,
    dims=None,
    coords: Mapping[str, Any] | None = None,
    ragged: bool = False,
    units: Mapping[str, str] | None = None,
    vectorized: bool = False,
    name: str | None = None,
    **kwargs,
):
    """Apply ``func(frame, *args, **kwargs)`` to every frame of ``datacube``, lazily, one task per
    scan chunk (the chunk read inside it when the datacube comes straight from a reader).

    func : a function of one frame ``(Qx, Qy)`` (numpy, or cupy for GPU chunks), or with
        ``vectorized=True`` of a chunk ``(n1, n2, Qx, Qy)`` returning ``(n1, n2, ...)`` outputs
        (per-position arguments then arrive as ``(n1, n2, ...)`` blocks).
    args, kwargs : passed to ``func``, per position or whole (module docstring).
    template : what ``func`` returns for one frame (shape and dtype are used, not the values);
        None: learnt from a call on a blank frame.
    dims : the names of the output's own axes (a tuple; for several outputs a ``{name:
        tuple}``); default ``<name>_0, <name>_1, ...``.
    coords : coords of those axes (``{dim: values}``).
    ragged : ``func`` returns a varying number of items per frame: a ``{field: 1D array}`` dict
        (or a numpy structured array; vectorized: ``(indptr, {field: array})`` CSR over the
        chunk's positions in C order).
    units : ``{field: units}`` of a ragged output's fields.
    name : the output's name (default ``func.__name__``).

    Returns, over ``(Rx, Ry, *dims)`` with the datacube's scan coords:

    - a lazy ``xr.DataArray`` when ``func`` returns an array or a number;
    - a lazy ``xr.Dataset`` (one variable per key) when it returns a dict of them;
    - a :class:`~stem4d_dask.ragged.RaggedFrames` with ``ragged=True`` (``out[rx, ry]`` gives a
      frame's items).
    """
    datacube, data = frame_blocks(datacube, complex_ok=True)
    name = _name(func, name)
    plan = _Arguments(datacube, data, args, kwargs)
    spec = _output_spec(func, plan, data, template, ragged, vectorized)
    kind, detail = spec
    token = tokenize(func, name, data.name, plan.token, spec, vectorized)
    layer = f"{name}-{token}"
    task = functools.partial(
        map_chunk, func=func, plan=plan.slots, spec=spec, vectorized=vectorized, fname=name
    )
    tail = len(detail[0]) if kind == "single" else 0
    graph = chunk_layer(layer, data, task, plan.per_position, plan.shared, tail=tail)
    scan = {d: datacube.coords[d] for d in R_DIMS}
    attrs = calibration_attrs(datacube.attrs, ("r",))
    if kind == "ragged":
        blocks = np.empty(data.numblocks[:2], dtype=object)
        for i, j in np.ndindex(blocks.shape):
            blocks[i, j] = Delayed((layer, i, j), graph, layer=layer)
        return RaggedFrames(blocks, data.chunks[:2], detail, attrs, coords=scan, units=units)
    if kind == "single":
        shape, dtype = detail
        chunks = (*data.chunks[:2], *((n,) for n in shape))
        array = da.Array(graph, layer, chunks, meta=meta(data._meta, 2 + len(shape), dtype))
        own = _dims(dims, name, len(shape))
        return xr.DataArray(
            array,
            dims=(*R_DIMS, *own),
            coords={**scan, **_own(coords, own)},
            name=name,
            attrs=attrs,
        )
    producer = Delayed((layer, 0, 0), graph, layer=layer)
    variables = {}
    for key, (shape, dtype) in detail.items():
        array = _picked_output(producer, layer, data, key, shape, dtype)
        own = _dims(dims.get(key) if isinstance(dims, Mapping) else None, key, len(shape))
        variables[key] = xr.DataArray(
            array, dims=(*R_DIMS, *own), coords=_own(coords, own), attrs=attrs
        )
    return xr.Dataset(variables, coords=scan, attrs=attrs)


def reduce_frames(
    datacube,
    func: Callable[..., Any],
    combine: Callable[[Any, Any], Any],
    *args,
    finalize: Callable[[Any], Any] | None = None,
    vectorized: bool = False,
    split_every: int = 8,
    name: str | None = None,
    **kwargs,
) -> Delayed:
    """A reduction over the scan that the built-ins do not cover (a maximum pattern, a
    histogram of values, ...), lazily: ``func(frame, *args, **kwargs)`` per frame (or
    ``func(chunk, ...)`` per chunk with ``vectorized=True``), folded within each chunk by
    ``combine(a, b)`` (one task per chunk), then combined across chunks by a tree of tasks
    (``split_every`` partials per task), then ``finalize(total)`` when given.

    ``combine`` must be associative (the order of the tree is not the scan's). Arguments: per
    position or whole, as for :func:`map_frames`. Returns a ``dask.delayed`` value
    (``.compute()`` gives the result).
    """
    datacube, data = frame_blocks(datacube, complex_ok=True)
    name = _name(func, name)
    if not callable(combine) or (finalize is not None and not callable(finalize)):
        raise TypeError("combine and finalize must be callables")
    if isinstance(split_every, bool) or not isinstance(split_every, int) or split_every < 2:
        raise ValueError(f"split_every must be an int >= 2, got {split_every!r}")
    plan = _Arguments(datacube, data, args, kwargs)
    token = tokenize(func, combine, finalize, name, data.name, plan.token, vectorized)
    layer = f"{name}-chunks-{token}"
    task = functools.partial(
        reduce_chunk, func=func, combine=combine, plan=plan.slots, vectorized=vectorized, fname=name
    )
    graph = chunk_layer(layer, data, task, plan.per_position, plan.shared)
    keys = [(layer, i, j) for i, j in np.ndindex(data.numblocks[:2])]
    parts = [Delayed(k, graph, layer=layer) for k in keys]
    level = 0
    while len(parts) > 1 or level == 0:
        groups = [parts[k : k + split_every] for k in range(0, len(parts), split_every)]
        last = len(groups) == 1
        step = f"{name}-combine{level}-{token}"
        tasks = {
            (g,): (
                functools.partial(combine_all, combine, finalize if last else None),
                *[p.key for p in group],
            )
            for g, group in enumerate(groups)
        }
        combined = chunk_tasks(step, tasks, parts)
        parts = [Delayed((step, g), combined, layer=step) for g in range(len(groups))]
        level += 1
    return parts[0]


# --- arguments ------------------------------------------------------------------------------


class _Arguments:
    """How ``args``/``kwargs`` reach the function: ``slots`` (``("pos", k)``: the k-th
    per-position block; ``("shared", k)``: the k-th shared value; ``("value", v)``) for the
    positional arguments and the keywords; ``per_position``: dask arrays ``(Rx, Ry, ...)``
    chunked like the scan; ``shared``: ``Delayed`` values of dask arguments; ``blank``: the
    arguments of the blank-frame call."""

    def __init__(self, datacube, data, args, kwargs):
        self.per_position: list[da.Array] = []
        self.shared: list[Delayed] = []
        positional = [self._slot(datacube, data, a, f"args[{k}]") for k, a in enumerate(args)]
        keywords = {k: self._slot(datacube, data, v, k) for k, v in kwargs.items()}
        self.slots = (tuple(positional), keywords)
        self.token = tokenize(
            [p.name for p in self.per_position], [s.key for s in self.shared], self.slots
        )

    def _slot(self, datacube, data, value, parameter):
        if isinstance(value, xr.DataArray) and set(R_DIMS) <= set(value.dims):
            own = value.ndim - 2
            aligned = align(value, datacube, R_DIMS, parameter, extra=own)
            array = aligned if isinstance(aligned, da.Array) else da.from_array(np.asarray(aligned))
            array = da.moveaxis(array, (own, own + 1), (0, 1)) if own else array
            array = array.rechunk((*data.chunks[:2], *(-1,) * own))
            self.per_position.append(array)
            return ("pos", len(self.per_position) - 1, array.dtype, array.shape[2:])
        if isinstance(value, xr.DataArray):
            if set(R_DIMS) & set(value.dims):
                raise ValueError(
                    f"{parameter}: a DataArray with one scan dim {value.dims} is ambiguous; give "
                    "both Rx and Ry to pass it per position, or pass its .data to pass it whole"
                )
            value = value.data
        if dask.is_dask_collection(value):
            handle = value.rechunk(-1) if isinstance(value, da.Array) else value
            self.shared.append(dask.delayed(handle) if isinstance(handle, da.Array) else handle)
            return (
                "shared",
                len(self.shared) - 1,
                getattr(value, "dtype", None),
                getattr(value, "shape", None),
            )
        return ("value", value)

    def blank(self, vectorized):
        """Arguments for a call on a blank frame (or a ``(1, 1, ...)`` chunk)."""
        lead = (1, 1) if vectorized else ()

        def fill(slot):
            if slot[0] == "value":
                return slot[1]
            return np.zeros((*lead, *slot[3]) if slot[0] == "pos" else slot[3], slot[2])

        positional, keywords = self.slots
        return [fill(s) for s in positional], {k: fill(s) for k, s in keywords.items()}


# --- output spec ----------------------------------------------------------------------------


def _output_spec(func, plan, data, template, ragged, vectorized):
    """The output spec (:mod:`stem4d_dask.frame_tasks`): ``("ragged", {field: dtype})``,
    ``("single", (shape, dtype))`` or ``("several", {name: (shape, dtype)})``, from
    ``template`` or a call on a blank frame."""
    if template is None:
        lead = (1, 1) if vectorized else ()
        frame = np.zeros((*lead, *data.shape[2:]), dtype=data.dtype)
        args, kwargs = plan.blank(vectorized)
        try:
            with np.errstate(all="ignore"):
                template = func(frame, *args, **kwargs)
        except Exception as err:
            raise ValueError(
                f"func: calling it on a blank frame to learn its output failed "
                f"({type(err).__name__}: {err}); give template= (what it returns for one frame)"
            ) from err
        if vectorized and ragged:
            template = template[1]
    if ragged:
        if isinstance(template, np.ndarray) and template.dtype.names:
            fields = {n: template.dtype[n] for n in template.dtype.names}
            return "ragged", kr.check_field_spec(fields, "template")
        if isinstance(template, Mapping):
            fields = {k: np.asarray(v).dtype for k, v in template.items()}
            return "ragged", kr.check_field_spec(fields, "template")
        raise ValueError(
            "template: a ragged output is a {field: 1D array} dict or a structured array, got "
            f"{type(template).__name__}"
        )
    cut = 2 if vectorized else 0
    if isinstance(template, Mapping):
        if not template:
            raise ValueError("func returns an empty dict: no output")
        return "several", {
            str(k): _array_spec(v, cut, f"output {k!r}") for k, v in template.items()
        }
    if isinstance(template, tuple | list):
        raise ValueError("func returns a tuple: return a dict {name: array} for several outputs")
    return "single", _array_spec(template, cut, "output")


def _array_spec(value, cut, what):
    arr = value if hasattr(value, "dtype") and hasattr(value, "shape") else np.asarray(value)
    if arr.dtype.kind not in "biufc":
        raise ValueError(f"{what}: dtype {arr.dtype} is not numeric")
    return tuple(int(n) for n in arr.shape[cut:]), np.dtype(arr.dtype)


def _name(func, name):
    if not callable(func):
        raise TypeError(f"func must be callable, got {type(func).__name__}")
    name = name if name is not None else getattr(func, "__name__", "func")
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty str, got {name!r}")
    return name.replace("<lambda>", "lambda")


def _dims(dims, name, n):
    if dims is None:
        return tuple(f"{name}_{k}" for k in range(n))
    dims = (dims,) if isinstance(dims, str) else tuple(dims)
    if len(dims) != n or not all(isinstance(d, str) for d in dims):
        raise ValueError(f"dims: {name} has {n} own axes, got dims {dims!r}")
    if set(dims) & set(R_DIMS):
        raise ValueError(f"dims: {dims!r} may not reuse the scan dims {R_DIMS}")
    return dims


def _own(coords, dims):
    return {d: v for d, v in (coords or {}).items() if d in dims}


def _picked_output(producer, layer, data, key, shape, dtype) -> da.Array:
    """Output ``key`` of the dicts the chunk tasks of ``layer`` return, as a dask array."""
    out = f"{layer}-{key}"
    tail = (0,) * len(shape)
    tasks = {
        (i, j, *tail): (operator.getitem, (layer, i, j), key)
        for i, j in np.ndindex(data.numblocks[:2])
    }
    chunks = (*data.chunks[:2], *((n,) for n in shape))
    return da.Array(
        chunk_tasks(out, tasks, [producer]),
        out,
        chunks,
        meta=meta(data._meta, 2 + len(shape), dtype),
    )
