"""The datacube: an ``xarray.DataArray`` over a dask array with dims ``(Rx, Ry, Qx, Qy)``.

- coords on every dim with ``attrs["units"]``, by default ``origin + arange(N) * pixel_size``;
  **the coords are the truth** (see :mod:`stem4d_dask.coords`): xarray keeps them right
  through ``isel``/``sel``/``concat``/``transpose``, and every operation reads them;
- attrs ``r_pixel_size``, ``r_units``, ``q_pixel_size``, ``q_units`` derived from the coords
  (a pixel size is absent when the coords are irregular), ``energy`` (eV, absent when unknown),
  and optionally ``value_range`` (see :func:`with_value_range`);
- chunks: whole detector frames, the scan cut into blocks of roughly 32-128 MiB.
"""

from __future__ import annotations

import os
import sys
import types
import warnings
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np
import numpy.typing as npt
import xarray as xr

from .calibration import canonical_units, convert_q_pixel_size
from .checks import check_dtype, check_energy, check_pixel_size, real_pair
from .chunks import Chunks, MiB, normalize_chunks
from .coords import (  # noqa: F401  (the datacube's dims and calibration keys, re-exported)
    CALIBRATION_KEYS,
    DERIVED_KEYS,
    DIMS,
    Q_DIMS,
    R_DIMS,
    REL_TOL,
    SPACES,
    UNITS,
    axis,
    check_coords,
    derived_attrs,
    is_checked,
    pixel_size,
    regular_coord,
    units,
)
from .lazy import from_memory, lazy_from_loader, memmap_loader
from .values import value_range, with_value_range

NAME = "datacube"


def _to_dask(data: Any, chunks: Chunks | None) -> da.Array:
    # data: what from_array takes, or any array with shape, dtype and slicing (h5py, zarr)
    if isinstance(data, xr.DataArray):
        data = data.data
    if isinstance(data, da.Array):
        if chunks is None:
            return data
        if chunks == "auto":
            if data.numblocks[2] == 1 and data.numblocks[3] == 1:
                return data
            warnings.warn(
                "data: the detector axes are split into chunks; rechunking to whole frames "
                "(pass chunks=None to keep the given chunks)",
                stacklevel=3,
            )
        return data.rechunk(normalize_chunks(chunks, data.shape, data.dtype))

    if not hasattr(data, "shape") or not hasattr(data, "dtype"):
        data = np.asarray(data)
    if data.ndim != 4:
        raise ValueError(f"data must be 4D (Rx, Ry, Qx, Qy), got shape {tuple(data.shape)}")
    norm = normalize_chunks("auto" if chunks is None else chunks, data.shape, data.dtype)
    loader = memmap_loader(data) if isinstance(data, np.memmap) else None
    if loader is not None:
        return lazy_from_loader(loader, data.shape, data.dtype, norm, "memmap")
    if isinstance(data, np.ndarray):
        return from_memory(data, norm)
    return da.from_array(data, chunks=norm, asarray=False)


def axis_coord(n: int, pixel_size: float, units: str, dim: str) -> xr.DataArray:
    """Calibrated coordinate ``arange(n) * pixel_size`` for ``dim`` with ``attrs["units"]``."""
    return regular_coord(n, pixel_size, units, dim)


class StaleCalibrationWarning(UserWarning):
    """A datacube's calibration attrs disagree with its coords; the coords are used."""


def from_array(
    data: npt.ArrayLike | da.Array | xr.DataArray,
    *,
    r_pixel_size: float = 1,
    r_units: str = "pixels",
    q_pixel_size: float = 1,
    q_units: str = "pixels",
    energy: float | None = None,
    r_origin: float | Sequence[float] = 0,
    q_origin: float | Sequence[float] = 0,
    value_range: Sequence[int] | None = None,
    chunks: Chunks | None = "auto",
    attrs: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """Wrap a 4D array ``(Rx, Ry, Qx, Qy)`` as a lazy, calibrated datacube.

    Parameters
    ----------
    data : numpy array, ``np.memmap``, dask array or DataArray, shape ``(Rx, Ry, Qx, Qy)``,
        of real numbers or booleans. Never copied: numpy arrays are wrapped, memory maps become
        per-chunk file reads (so the graph pickles to remote workers), dask arrays keep their
        graph.
    r_pixel_size, r_units : scan step and its units (``"pixels"``, ``"A"``, ``"nm"``).
    q_pixel_size, q_units : detector pixel size and units (``"pixels"``, ``"A^-1"``, ``"mrad"``).
    energy : beam energy in eV, or None when unknown.
    r_origin, q_origin : coordinate of the first pixel, one number or ``(x, y)``, in the
        space's units (default 0): the coords are ``origin + arange(n) * pixel_size``.
    value_range : ``(min, max)`` the data can hold when narrower than its dtype's (e.g.
        ``(0, 4095)`` for a 12-bit counter in uint16): binning then picks a smaller dtype.
    chunks : ``"auto"`` (whole frames, 32-128 MiB scan blocks), ``{dim: size}``, a 2-tuple of
        scan chunk sizes, a 4-tuple, or None to keep a dask array's own chunks.
    attrs : extra attributes to carry (origin, calibration notes ...).
    """
    arr = _to_dask(data, chunks)
    if arr.ndim != 4:
        raise ValueError(f"data must be 4D (Rx, Ry, Qx, Qy), got shape {tuple(arr.shape)}")
    if 0 in arr.shape:
        raise ValueError(f"data must not have an empty axis, got shape {tuple(arr.shape)}")
    check_dtype(arr.dtype, "data", complex_ok=True)
    out_attrs = {k: v for k, v in dict(attrs or {}).items() if k not in DERIVED_KEYS}
    coords = {}
    for space, size, unit, origin in (
        ("r", r_pixel_size, r_units, r_origin),
        ("q", q_pixel_size, q_units, q_origin),
    ):
        size = check_pixel_size(size, parameter=f"{space}_pixel_size")
        unit = canonical_units(unit, parameter=f"{space}_units", allowed=UNITS[space])
        for d, o in zip(SPACES[space], real_pair(origin, f"{space}_origin"), strict=True):
            coords[d] = regular_coord(arr.shape[DIMS.index(d)], size, unit, d, o)
        out_attrs[f"{space}_pixel_size"] = size  # kept only where the coords cannot say
    e = check_energy(energy)
    out_attrs.pop("energy", None)
    if e is not None:
        out_attrs["energy"] = e
    dc = assemble(arr, coords, out_attrs)
    return dc if value_range is None else with_value_range(dc, value_range)


def assemble(
    arr: da.Array | np.ndarray, coords: Mapping[str, xr.DataArray], attrs: Mapping[str, Any]
) -> xr.DataArray:
    """The datacube over dask array ``arr`` with ``coords`` (``{dim: coord}``, all four) and
    ``attrs``: the calibration entries are derived from the coords (a ``*_pixel_size`` in
    ``attrs`` survives only for a space whose axes have one pixel each, which no coordinate
    can give a spacing); the rest are kept."""
    dc = xr.DataArray(arr, dims=DIMS, coords=coords, name=NAME, attrs=dict(attrs))
    return _with_derived(dc, attrs)


def _with_derived(dc: xr.DataArray, attrs: Mapping[str, Any]) -> xr.DataArray:
    dc.attrs = {**{k: v for k, v in attrs.items() if k not in DERIVED_KEYS}, **derived_attrs(dc)}
    return _order_attrs(dc)


def _order_attrs(dc: xr.DataArray) -> xr.DataArray:
    keys = [k for k in CALIBRATION_KEYS if k in dc.attrs]
    dc.attrs = {
        **{k: dc.attrs[k] for k in keys},
        **{k: v for k, v in dc.attrs.items() if k not in keys},
    }
    return dc


def calibration_attrs(
    attrs: Mapping[str, Any], spaces: Iterable[str] = ("r", "q")
) -> dict[str, Any]:
    """The calibration entries of ``attrs`` (a datacube's, or any mapping) for ``spaces``
    (``"r"``: scan, ``"q"``: detector), plus ``energy`` when known."""
    keys = [f"{s}_{k}" for s in spaces for k in ("pixel_size", "units")] + ["energy"]
    return {k: attrs[k] for k in keys if k in attrs}


def with_calibration(dc: xr.DataArray, **changes: Any) -> xr.DataArray:
    """A new datacube with some of ``r_pixel_size``, ``r_units``, ``q_pixel_size``,
    ``q_units``, ``energy`` changed. Pixel data are untouched (same graph).

    A space whose pixel size or units change gets regular coords ``(i0 + arange(n)) *
    pixel_size``, where ``i0`` is the pixel index of its first coordinate in the old grid
    (``origin / old step``): a crop keeps its place in the scan or on the detector. That space
    must have regular coords (else ``ValueError``; give new coords with ``assign_coords``).
    """
    allowed = set(CALIBRATION_KEYS)
    unknown = set(changes) - allowed
    if unknown:
        raise TypeError(f"with_calibration: unknown parameters {sorted(unknown)}")
    dc = check_datacube(dc, complex_ok=True)
    coords = {d: dc.coords[d] for d in DIMS}
    for space, dims in SPACES.items():
        new = {k: changes[k] for k in (f"{space}_pixel_size", f"{space}_units") if k in changes}
        if not new:
            continue
        size = new.get(f"{space}_pixel_size")
        size = (
            check_pixel_size(size, parameter=f"{space}_pixel_size")
            if size is not None
            else pixel_size(dc, space, f"with_calibration({space}_units=...)")
        )
        unit = canonical_units(
            new.get(f"{space}_units", units(dc, space)),
            parameter=f"{space}_units",
            allowed=UNITS[space],
        )
        old = pixel_size(dc, space, f"with_calibration({', '.join(new)})")
        for d in dims:
            start = axis(dc, d).origin / old
            coords[d] = regular_coord(dc.sizes[d], size, unit, d, start * size)
    attrs = dict(dc.attrs)
    if "energy" in changes:
        attrs.pop("energy", None)
        energy = check_energy(changes["energy"])
        if energy is not None:
            attrs["energy"] = energy
    return assemble(dc.data, coords, attrs)


def check_datacube(
    dc: object, *, parameter: str = "datacube", complex_ok: bool = False
) -> xr.DataArray:
    """Check a datacube and return it ready for an operation; ``TypeError``/``ValueError``
    naming ``parameter`` when it is not one.

    Accepts any DataArray with the four dims ``(Rx, Ry, Qx, Qy)`` in any order and real or
    boolean data (complex too with ``complex_ok``: for the operations that mean something for
    complex numbers, such as user functions and crops). Returns a new DataArray (the input is
    untouched) with the dims in that order,
    the four coords checked (numbers, finite, units allowed in their space and equal on both
    axes; missing coords are made from the attrs, or in pixels) and the calibration attrs
    derived from the coords. Attrs that disagree with the coords (after ``isel``/``sel``, which
    update the coords only, or a hand edit) are replaced, with a
    :class:`StaleCalibrationWarning` saying so: the coords are the truth.
    """
    if not isinstance(dc, xr.DataArray):
        raise TypeError(
            f"{parameter} must be an xarray.DataArray datacube (see stem4d_dask.from_array), "
            f"got {type(dc).__name__}"
        )
    if set(dc.dims) != set(DIMS) or dc.ndim != 4:
        raise ValueError(f"{parameter} must have dims {DIMS} (in any order), got {dc.dims}")
    check_dtype(dc.dtype, parameter, complex_ok=complex_ok)
    if dc.dims != DIMS:
        dc = dc.transpose(*DIMS)
    elif is_checked(dc) and _energy_ok(dc.attrs):
        return dc
    coords = check_coords(dc, dc.attrs, parameter)
    out = _with_derived(
        xr.DataArray(dc.variable, coords=coords, name=dc.name or NAME, attrs=dict(dc.attrs)),
        dc.attrs,
    )
    _warn_stale(dc.attrs, out.attrs, parameter)
    energy = check_energy(out.attrs.pop("energy", None))
    if energy is not None:
        out.attrs["energy"] = energy
    return out


def _energy_ok(attrs: Mapping[str, Any]) -> bool:
    e = attrs.get("energy")
    return e is None and "energy" not in attrs or isinstance(e, float) and np.isfinite(e) and e > 0


def _warn_stale(given: Mapping[str, Any], derived: Mapping[str, Any], parameter: str) -> None:
    stale = []
    for key in DERIVED_KEYS[::2]:  # the pixel sizes
        if (
            key in given
            and key in derived
            and not np.isclose(float(given[key]), derived[key], rtol=REL_TOL, atol=0)
        ):
            stale.append(f"{key} {given[key]!r} (coords: {derived[key]:g})")
    for key in ("r_units", "q_units"):
        if key in given and given[key] != derived[key]:
            try:
                same = canonical_units(given[key]) == derived[key]
            except (TypeError, ValueError):
                same = False
            if not same:
                stale.append(f"{key} {given[key]!r} (coords: {derived[key]!r})")
    if stale:
        warnings.warn(
            f"{parameter}: the calibration attrs disagree with the coordinates: "
            f"{'; '.join(stale)}. The coordinates are used (xarray's isel/sel/concat update "
            "them, not the attrs); to recalibrate use .stem4d.with_calibration(...)",
            StaleCalibrationWarning,
            stacklevel=user_stacklevel(),
        )


def user_stacklevel() -> int:
    """The ``stacklevel`` of the first caller outside this package, so a warning points at the
    user's line, however deep in the package it is raised."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame: types.FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def as_datacube(obj: xr.DataArray | xr.Dataset, *, name: Hashable | None = None) -> xr.DataArray:
    """Adopt an xarray DataArray (or the datacube variable of a Dataset, e.g. from
    ``xr.open_zarr``) with dims ``(Rx, Ry, Qx, Qy)`` in any order.

    The calibration comes from the coords (values, origin and ``units`` attrs), which are kept
    as they are; dims without coords get them from the ``*_pixel_size``/``*_units`` attrs,
    else pixels (see :func:`check_datacube`). numpy-backed data are wrapped in a dask array
    with the default chunks (not copied).
    """
    if isinstance(obj, xr.Dataset):
        obj = pick_variable(obj, name)
    if not isinstance(obj, xr.DataArray) or set(obj.dims) != set(DIMS):
        raise ValueError(f"expected a DataArray with dims {DIMS}, got {getattr(obj, 'dims', obj)}")
    dc = check_datacube(obj, parameter="obj", complex_ok=True)
    if not isinstance(dc.data, da.Array):
        dc = dc.copy(data=_to_dask(dc.data, "auto"))
    return dc


def pick_variable(ds: xr.Dataset, name: Hashable | None) -> xr.DataArray:
    if name is not None:
        if name not in ds.data_vars:
            raise ValueError(f"name: no variable {name!r}; the store has {list(ds.data_vars)}")
        return ds[name]
    candidates = [v for v in ds.data_vars if set(ds[v].dims) == set(DIMS)]
    if NAME in candidates:
        return ds[NAME]
    if len(candidates) == 1:
        return ds[candidates[0]]
    if not candidates:
        raise ValueError(
            f"the store has no variable with dims {DIMS}; variables: "
            f"{ {v: ds[v].dims for v in ds.data_vars} }"
        )
    raise ValueError(f"name: the store has several datacubes {candidates}; pass name=")


def with_q_units(dc: xr.DataArray, units: str) -> xr.DataArray:
    """Re-express the detector coords in ``units`` (``"mrad"`` <-> ``"A^-1"``, a linear map at
    ``attrs["energy"]``, eV): every Qx, Qy coordinate is scaled, the origin included. Pixel
    data are untouched."""
    dc = check_datacube(dc, complex_ok=True)
    own = dc.coords["Qx"].attrs["units"]
    target = canonical_units(units, parameter="units", allowed=UNITS["q"])
    factor = convert_q_pixel_size(1.0, own, target, dc.attrs.get("energy"))
    coords = {d: dc.coords[d] for d in DIMS}
    for d in SPACES["q"]:
        coords[d] = xr.DataArray(dc.coords[d].values * factor, dims=(d,), attrs={"units": target})
    return assemble(dc.data, coords, dc.attrs)


def describe(dc: xr.DataArray) -> dict[str, Any]:
    """Shape, dtype, chunking and calibration of a datacube as a plain dict (no data read).

    ``r_pixel_size``/``q_pixel_size`` are None when the coords define none (irregular or
    non-square: ``r_grid``/``q_grid`` say why); ``r_origin``/``q_origin`` are the coordinates
    of the first pixel."""
    dc = check_datacube(dc, parameter="dc", complex_ok=True)
    data = dc.data if isinstance(dc.data, da.Array) else da.from_array(dc.data)
    chunk = tuple(c[0] for c in data.chunks)
    out = {
        "shape": tuple(dc.shape),
        "dtype": str(dc.dtype),
        "chunks": chunk,
        "n_chunks": int(np.prod(data.numblocks)),
        "chunk_MiB": round(float(np.prod(chunk)) * dc.dtype.itemsize / MiB, 2),
        "nbytes": int(dc.nbytes),
    }
    for space, dims in SPACES.items():
        try:
            size, grid = pixel_size(dc, space, "a pixel size"), "regular"
        except ValueError as err:
            size, grid = None, str(err).split(", but ", 1)[-1]
        out[f"{space}_pixel_size"] = size
        out[f"{space}_units"] = units(dc, space)
        out[f"{space}_origin"] = tuple(axis(dc, d).origin for d in dims)
        out[f"{space}_grid"] = grid
    out["energy"] = dc.attrs.get("energy")
    out["value_range"] = value_range(dc)
    return out
