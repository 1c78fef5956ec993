"""Kernels of per-frame lists of items (peaks, events, anything a frame gives a varying number
of): CSR over one scan block's positions, pure numpy, no dask, no xarray.

A block of ``(n1, n2)`` scan positions (C order) holds ``indptr`` (int64, ``n1 * n2 + 1``,
from 0, non-decreasing) and named 1D field arrays of one common length (the items): the items
of position ``k`` are ``field[indptr[k]:indptr[k + 1]]``. A :class:`RaggedBlock` carries them
as a dict; :class:`~stem4d_dask.kernels.counting.EventBlock` (the electron events) is the same
layout with the fixed fields ``qx``, ``qy``. These functions work on ``(indptr, fields)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from ..backend import to_host

B = TypeVar("B")  # a NamedTuple block type


class RaggedBlock(NamedTuple):
    """Items of a block of scan positions, CSR over the positions (C order)."""

    indptr: np.ndarray  # int64 (n1 * n2 + 1,)
    fields: dict  # {name: 1D array (n_items,)}
    scan_shape: tuple  # (n1, n2)


def check_field_spec(fields: object, parameter: str = "fields") -> dict[str, np.dtype]:
    """``fields`` as ``{name: dtype}`` (names: non-empty str, not ``indptr``; dtypes: bool,
    integer, float or complex numpy dtypes); ``ValueError`` naming ``parameter``."""
    if not isinstance(fields, Mapping) or not fields:
        raise ValueError(f"{parameter} must be a non-empty {{name: dtype}} mapping, got {fields!r}")
    out = {}
    for name, dtype in fields.items():
        if not isinstance(name, str) or not name or name == "indptr" or "/" in name:
            raise ValueError(
                f"{parameter}: field names must be non-empty strings without '/' "
                f"and other than 'indptr', got {name!r}"
            )
        try:
            dt = np.dtype(dtype)
        except TypeError:
            raise ValueError(
                f"{parameter}[{name!r}] must be a numpy dtype, got {dtype!r}"
            ) from None
        if dt.kind not in "biufc" or dt.shape:
            raise ValueError(f"{parameter}[{name!r}] must be a bool or numeric dtype, got {dt}")
        out[name] = dt
    return out


def as_block(block: object, kind: type[B], scan_shape: Sequence[int], where: str) -> B:
    """``block`` as a ``kind`` (a NamedTuple block type with a ``scan_shape`` field: a plain
    tuple of its length is converted) over ``scan_shape`` positions; ``ValueError`` naming
    ``where`` (the scan block) otherwise."""
    if not isinstance(block, kind):
        fields = getattr(kind, "_fields", ())
        if not (isinstance(block, tuple) and len(block) == len(fields)):
            raise ValueError(
                f"{where}: expected a {kind.__name__} ({', '.join(fields)}), "
                f"got {type(block).__name__}"
            )
        block = kind(*block)
    shape = tuple(int(s) for s in getattr(block, "scan_shape", ()))
    if shape != tuple(scan_shape):
        raise ValueError(
            f"{where}: the block's scan_shape is {shape}, expected {tuple(scan_shape)} "
            "(the scan chunk)"
        )
    return block


def check_parts(
    indptr: object,
    fields: Mapping[str, Any],
    scan_shape: Sequence[int],
    spec: Mapping[str, np.dtype],
    where: str,
    items: str = "",
) -> None:
    """Validate ``(indptr, fields)`` of a block of ``scan_shape`` positions against ``spec``
    (``{name: dtype}``); ``ValueError`` naming ``where`` (the scan block) and what is wrong
    (``items``: what the field values are, for the message, e.g. ``"pixel"`` positions)."""
    n = int(scan_shape[0]) * int(scan_shape[1])
    if not isinstance(indptr, np.ndarray) or indptr.dtype != np.int64 or indptr.shape != (n + 1,):
        raise ValueError(
            f"{where}: indptr must be int64 of shape ({n + 1},), got "
            f"{getattr(indptr, 'dtype', type(indptr).__name__)} {getattr(indptr, 'shape', '')}"
        )
    if set(fields) != set(spec):
        raise ValueError(f"{where}: fields {sorted(fields)}, expected {sorted(spec)}")
    sizes = set()
    what = f" ({items} positions)" if items else ""
    for name, dtype in spec.items():
        values = fields[name]
        if not isinstance(values, np.ndarray) or values.dtype != dtype or values.ndim != 1:
            raise ValueError(
                f"{where}: {name} must be a 1D {dtype} array{what}, got "
                f"{getattr(values, 'dtype', type(values).__name__)} {getattr(values, 'shape', '')}"
            )
        sizes.add(values.size)
    if len(sizes) > 1:
        raise ValueError(f"{where}: the fields differ in length ({sorted(sizes)})")
    size = sizes.pop() if sizes else 0
    if indptr[0] != 0 or indptr[-1] != size or (n and np.any(np.diff(indptr) < 0)):
        raise ValueError(
            f"{where}: indptr must rise from 0 to the number of items {size}, "
            f"got {indptr[0]} .. {indptr[-1]}"
        )


def counts(indptr: np.ndarray, scan_shape: Sequence[int]) -> np.ndarray:
    """int64 ``(n1, n2)`` number of items per scan position."""
    return np.diff(indptr).reshape(tuple(scan_shape))


def take_positions(
    indptr: np.ndarray,
    fields: Mapping[str, np.ndarray],
    scan_shape: Sequence[int],
    rows: npt.ArrayLike,
    cols: npt.ArrayLike,
) -> tuple[np.ndarray, dict]:
    """``(indptr, fields)`` of the positions ``rows x cols`` (local indices into the block's
    ``scan_shape``, C order of the new ``(len(rows), len(cols))`` grid)."""
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    flat = (rows[:, None] * int(scan_shape[1]) + cols[None, :]).ravel()
    starts, stops = indptr[flat], indptr[flat + 1]
    lengths = stops - starts
    out = np.zeros(flat.size + 1, np.int64)
    np.cumsum(lengths, out=out[1:])
    # the item indices: each kept position's run starts..stops, concatenated
    offsets = np.repeat(starts - out[:-1], lengths)
    items = np.arange(out[-1], dtype=np.int64) + offsets
    return out, {k: v[items] for k, v in fields.items()}


def position_items(
    indptr: np.ndarray, fields: Mapping[str, np.ndarray], k: int, spec: Mapping[str, np.dtype]
) -> np.ndarray:
    """The items of position ``k`` (C order in the block) as a structured array with the
    fields of ``spec``, in its order."""
    a, b = int(indptr[k]), int(indptr[k + 1])
    out = np.empty(b - a, dtype=[(name, dt) for name, dt in spec.items()])
    for name in spec:
        out[name] = fields[name][a:b]
    return out


def frame_items(value: object, spec: Mapping[str, np.dtype], where: str) -> dict[str, np.ndarray]:
    """One frame's items as ``{name: 1D array}`` of ``spec``'s dtypes, from what a user's function
    returned: a ``{name: 1D array}`` mapping or a structured array with (at least) ``spec``'s
    fields. Values are cast when numpy's ``same_kind`` rule allows it; ``ValueError`` naming
    ``where`` (the scan position) otherwise."""
    if isinstance(value, np.ndarray) and value.dtype.names:
        source: Mapping[str, Any] = {n: value[n] for n in value.dtype.names}
    elif isinstance(value, Mapping):
        source = value
    else:
        raise ValueError(
            f"{where}: a ragged output must be a {{name: 1D array}} dict or a structured "
            f"array, got {type(value).__name__}"
        )
    missing = [n for n in spec if n not in source]
    if missing:
        raise ValueError(f"{where}: the output lacks the field(s) {missing}")
    out, sizes = {}, set()
    for name, dtype in spec.items():
        values = to_host(source[name])
        if values.ndim != 1:
            values = values.reshape(-1) if values.ndim == 0 else values
        if values.ndim != 1:
            raise ValueError(f"{where}: field {name!r} must be 1D, got shape {values.shape}")
        if not np.can_cast(values.dtype, dtype, casting="same_kind"):
            raise ValueError(
                f"{where}: field {name!r} holds {values.dtype}, which does not cast "
                f"to the field's {dtype}"
            )
        out[name] = values.astype(dtype, copy=False)
        sizes.add(values.size)
    if len(sizes) > 1:
        raise ValueError(f"{where}: the fields differ in length ({sorted(sizes)})")
    return out


def stack_frames(
    per_frame: Sequence[Mapping[str, np.ndarray]], spec: Mapping[str, np.dtype]
) -> tuple[np.ndarray, dict]:
    """``(indptr, fields)`` of the frames' items (``per_frame``: one ``{name: 1D array}`` per
    position, C order)."""
    indptr = np.zeros(len(per_frame) + 1, np.int64)
    np.cumsum([len(next(iter(f.values()))) if f else 0 for f in per_frame], out=indptr[1:])
    fields = {
        name: (
            np.concatenate([f[name] for f in per_frame]) if per_frame else np.empty(0, dt)
        ).astype(dt, copy=False)
        for name, dt in spec.items()
    }
    return indptr, fields


def histogram_2d(
    x: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None,
    shape: Sequence[int],
    sampling: float = 1.0,
    linear: bool = True,
) -> np.ndarray:
    """float64 ``shape`` histogram of points ``(x, y)`` (pixel coordinates of a detector of
    ``shape / sampling`` pixels, the centre of pixel ``i`` at ``i``) on a grid ``sampling``
    times finer: ``linear`` spreads each point's weight bilinearly over its four nearest grid
    points, else adds it to the nearest one. Points off the grid, or with a non-finite
    coordinate or weight, are left out."""
    gx, gy = np.asarray(x, np.float64) * sampling, np.asarray(y, np.float64) * sampling
    w = np.ones(gx.size) if weights is None else np.asarray(weights, np.float64)
    keep = np.isfinite(gx) & np.isfinite(gy) & np.isfinite(w)
    gx, gy, w = gx[keep], gy[keep], w[keep]
    nx, ny = int(shape[0]), int(shape[1])
    out = np.zeros(nx * ny)
    if linear:
        fx, fy = np.floor(gx), np.floor(gy)
        dx, dy = gx - fx, gy - fy
        corners: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [
            (fx, fy, (1 - dx) * (1 - dy)),
            (fx + 1, fy, dx * (1 - dy)),
            (fx, fy + 1, (1 - dx) * dy),
            (fx + 1, fy + 1, dx * dy),
        ]
    else:
        corners = [(np.rint(gx), np.rint(gy), np.ones_like(gx))]
    for cx, cy, share in corners:
        inside = (cx >= 0) & (cx < nx) & (cy >= 0) & (cy < ny)
        index = cx[inside].astype(np.int64) * ny + cy[inside].astype(np.int64)
        out += np.bincount(index, weights=(w * share)[inside], minlength=nx * ny)
    return out.reshape(nx, ny)
