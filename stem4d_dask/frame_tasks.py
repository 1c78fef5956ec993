"""The per-chunk tasks of :mod:`stem4d_dask.frame_functions`: a user's function called on every
frame (or once on the chunk, vectorized) of one scan chunk, its results checked against the
output spec and stacked, every error re-raised as :class:`FrameFunctionError` naming the scan
position. No dask, no xarray: these run inside the tasks.

An output spec is a tagged tuple: ``("single", (shape, dtype))`` (one array output per frame),
``("several", {name: (shape, dtype)})`` (a dict of them) or ``("ragged", {field: dtype})``
(items per frame, :class:`~stem4d_dask.kernels.ragged.RaggedBlock` per chunk). An argument plan
is ``(positional slots, {keyword: slot})`` with slots ``("pos", k, ...)`` (the k-th
per-position block), ``("shared", k, ...)`` (the k-th shared value) or ``("value", v)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .backend import array_module, to_host
from .kernels import ragged as kr
from .kernels.ragged import RaggedBlock


class FrameFunctionError(RuntimeError):
    """A user's function failed on a frame; the message names the scan position (``position``:
    ``(rx, ry)``, or None for a whole chunk) and the original error."""

    def __init__(self, message: str, position: tuple[int, int] | None = None):
        super().__init__(message, position)
        self.message, self.position = message, position

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):  # pickles across process workers with its position
        return type(self), (self.message, self.position)


def call_args(plan, position_blocks, shared, index) -> tuple[list, dict]:
    """The positional and keyword arguments of one call: per-position blocks at ``index`` (a
    ``(r, c)`` position in the chunk, or None for the whole block)."""

    def value(slot):
        if slot[0] == "pos":
            block = position_blocks[slot[1]]
            return block if index is None else block[index]
        if slot[0] == "shared":
            return shared[slot[1]]
        return slot[1]

    positional, keywords = plan
    return [value(s) for s in positional], {k: value(s) for k, s in keywords.items()}


def n_per_position(plan) -> int:
    positional, keywords = plan
    return sum(1 for s in (*positional, *keywords.values()) if s[0] == "pos")


class _Site:
    """Where a call happens, for error messages: the function's name, the chunk's first scan
    position and shape."""

    def __init__(self, fname: str, origin: tuple[int, int], shape: tuple[int, int]):
        self.fname, self.origin, self.shape = fname, origin, shape

    def at(self, index) -> tuple[str, tuple[int, int] | None]:
        r0, c0 = self.origin
        if index is None:
            n1, n2 = self.shape
            return f"{self.fname} at scan rows {r0}:{r0 + n1}, columns {c0}:{c0 + n2}", None
        rx, ry = r0 + int(index[0]), c0 + int(index[1])
        return f"{self.fname} at scan position Rx={rx}, Ry={ry}", (rx, ry)

    def flat(self, k: int):
        return self.at(divmod(k, self.shape[1]))

    def call(self, index, call: Callable[[], Any]):
        try:
            return call()
        except FrameFunctionError:
            raise
        except Exception as err:
            self.reraise(index, err)

    def reraise(self, index, err: Exception):
        """``err``, raised by the user's function at ``index``, as a FrameFunctionError."""
        where, position = self.at(index)
        raise FrameFunctionError(f"{where}: {type(err).__name__}: {err}", position) from err

    def fail(self, index, what: str):
        where, position = self.at(index)
        raise FrameFunctionError(f"{where}: {what}", position)


def map_chunk(block, *rest, func, plan, spec, vectorized, fname, origin):
    """``func`` over one chunk ``(n1, n2, Qx, Qy)``: the output block(s) of ``spec``."""
    site, out = _calls(block, rest, func, plan, vectorized, fname, origin)
    if vectorized:
        return _checked_chunk(out, spec, site)
    return _stacked(out, spec, site, array_module(block))


def _calls(block, rest, func, plan, vectorized, fname, origin):
    """``(site, output)``: ``func`` called on the whole chunk (``vectorized``), or a generator
    of its results on every frame. ``rest``: the per-position blocks, then the shared values."""
    n = n_per_position(plan)
    positions, shared = rest[:n], rest[n:]
    site = _Site(fname, origin, tuple(block.shape[:2]))
    if vectorized:
        args, kwargs = call_args(plan, positions, shared, None)
        return site, site.call(None, lambda: func(block, *args, **kwargs))
    return site, _per_frame(func, block, plan, positions, shared, site)


def _per_frame(func, block, plan, positions, shared, site: _Site):
    """Yield ``func(frame, *args)`` for every frame of ``block`` in C order; the arguments are
    made once when none is per position (a call per frame costs little more than the call)."""
    fixed = not positions
    args, kwargs = call_args(plan, positions, shared, None)
    index = (0, 0)
    try:
        for index in np.ndindex(*site.shape):
            if not fixed:
                args, kwargs = call_args(plan, positions, shared, index)
            yield func(block[index], *args, **kwargs)
    except FrameFunctionError:
        raise
    except Exception as err:
        site.reraise(index, err)


def reduce_chunk(block, *rest, func, combine, plan, vectorized, fname, origin):
    """``func`` over one chunk, folded by ``combine``: the chunk's partial result."""
    site, out = _calls(block, rest, func, plan, vectorized, fname, origin)
    if vectorized:
        return out
    total = None
    for k, value in enumerate(out):
        if total is None:
            total = value
        else:
            total = site.call(divmod(k, site.shape[1]), lambda t=total, v=value: combine(t, v))
    return total


def combine_all(combine, finalize, *parts):
    """``parts`` folded by ``combine``; ``finalize`` applied when given (the tree's root)."""
    total = functools.reduce(combine, parts)
    return finalize(total) if finalize is not None else total


# --- checking and stacking ------------------------------------------------------------------


def _stacked(results, spec, site: _Site, xp):
    kind, detail = spec
    results = list(results)
    if kind == "ragged":
        frames = []
        for k, v in enumerate(results):
            try:
                frames.append(kr.frame_items(v, detail, ""))
            except ValueError as err:
                where, position = site.flat(k)
                raise FrameFunctionError(f"{where}{err}", position) from None
        indptr, fields = kr.stack_frames(frames, detail)
        return RaggedBlock(indptr, fields, site.shape)
    if kind == "several":
        return {
            key: _stack_one(
                [_output(v, key, site, divmod(k, site.shape[1])) for k, v in enumerate(results)],
                s,
                site,
                xp,
            )
            for key, s in detail.items()
        }
    return _stack_one(results, detail, site, xp)


def _output(value, key, site: _Site, index):
    if not isinstance(value, Mapping) or key not in value:
        site.fail(index, f"returned no output {key!r}")
    return value[key]


def _stack_one(values: list, spec, site: _Site, xp):
    want, dtype = spec
    try:  # all at once when every value fits (the usual case); else value by value, to name it
        stacked = xp.asarray(values)
    except (ValueError, TypeError):
        stacked = None
    n = site.shape[0] * site.shape[1]
    if (
        stacked is not None
        and tuple(stacked.shape) == (n, *want)
        and np.can_cast(stacked.dtype, dtype, casting="same_kind")
    ):
        return stacked.astype(dtype, copy=False).reshape(*site.shape, *want)
    out = xp.empty((*site.shape, *want), dtype=dtype)
    flat = out.reshape(-1, *want)
    for k, v in enumerate(values):
        v = xp.asarray(v)
        index = divmod(k, site.shape[1])
        if tuple(v.shape) != want:
            site.fail(index, f"returned shape {tuple(v.shape)}, expected {want} (the template's)")
        if not np.can_cast(v.dtype, dtype, casting="same_kind"):
            site.fail(index, f"returned {v.dtype}, which does not cast to {dtype}")
        flat[k] = v
    return out


def _checked_chunk(out, spec, site: _Site):
    kind, detail = spec
    if kind == "ragged":
        if not isinstance(out, tuple) or len(out) != 2 or not isinstance(out[1], Mapping):
            site.fail(None, "a vectorized ragged function returns (indptr, {field: array})")
        indptr, fields = out
        values = {k: to_host(fields[k]).astype(dt, copy=False) for k, dt in detail.items()}
        indptr = to_host(indptr).astype(np.int64, copy=False)
        kr.check_parts(indptr, values, site.shape, detail, site.at(None)[0])
        return RaggedBlock(indptr, values, site.shape)
    if kind == "single":
        return _checked_array(out, detail, site, "output")
    if not isinstance(out, Mapping):
        site.fail(None, f"returned {type(out).__name__}, expected a dict of outputs")
    return {
        key: _checked_array(_output(out, key, site, None), s, site, repr(key))
        for key, s in detail.items()
    }


def _checked_array(value, spec, site: _Site, what: str):
    want, dtype = spec
    shape = (*site.shape, *want)
    if tuple(getattr(value, "shape", ())) != shape:
        site.fail(
            None, f"returned shape {getattr(value, 'shape', None)} for {what}, expected {shape}"
        )
    if not np.can_cast(value.dtype, dtype, casting="same_kind"):
        site.fail(None, f"returned {value.dtype} for {what}, which does not cast to {dtype}")
    return value.astype(dtype, copy=False)
