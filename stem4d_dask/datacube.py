"""The datacube: an ``xarray.DataArray`` over a dask array with dims ``(Rx, Ry, Qx, Qy)``.

- coords on every dim, ``coord = arange(N) * pixel_size`` with ``attrs["units"]``;
- attrs ``r_pixel_size``, ``r_units``, ``q_pixel_size``, ``q_units`` and ``energy`` (eV, absent
  when unknown);
- chunks: whole detector frames, the scan cut into blocks of roughly 32-128 MiB.
"""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import xarray as xr

from .calibration import KNOWN_UNITS, canonical_units, check_energy, check_pixel_size

DIMS = ("Rx", "Ry", "Qx", "Qy")
R_DIMS = DIMS[:2]
Q_DIMS = DIMS[2:]
NAME = "datacube"

CALIBRATION_KEYS = ("r_pixel_size", "r_units", "q_pixel_size", "q_units", "energy")

MiB = 2**20
TARGET_CHUNK_BYTES = 64 * MiB
MIN_CHUNK_BYTES = 32 * MiB
MAX_CHUNK_BYTES = 128 * MiB


def auto_chunks(shape, itemsize: int, target_bytes: int = TARGET_CHUNK_BYTES,
                multiple_of=(1, 1)) -> tuple:
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


def normalize_chunks(chunks, shape, dtype):
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


def _to_dask(data, chunks):
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
    from .io.blocks import from_memory, lazy_from_loader, memmap_loader  # io imports us

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
    return xr.DataArray(np.arange(n) * pixel_size, dims=(dim,), attrs={"units": units})


def from_array(
    data,
    *,
    r_pixel_size=1,
    r_units="pixels",
    q_pixel_size=1,
    q_units="pixels",
    energy=None,
    chunks="auto",
    attrs=None,
) -> xr.DataArray:
    """Wrap a 4D array ``(Rx, Ry, Qx, Qy)`` as a lazy, calibrated datacube.

    Parameters
    ----------
    data : numpy array, ``np.memmap``, dask array or DataArray, shape ``(Rx, Ry, Qx, Qy)``.
        Never copied: numpy arrays are wrapped, memory maps become per-chunk file reads (so the
        graph pickles to remote workers), dask arrays keep their graph.
    r_pixel_size, r_units : scan step and its units (``"pixels"``, ``"A"``, ``"nm"``).
    q_pixel_size, q_units : detector pixel size and units (``"pixels"``, ``"A^-1"``, ``"mrad"``).
    energy : beam energy in eV, or None when unknown.
    chunks : ``"auto"`` (whole frames, 32-128 MiB scan blocks), ``{dim: size}``, a 2-tuple of
        scan chunk sizes, a 4-tuple, or None to keep a dask array's own chunks.
    attrs : extra attributes to carry (origin, calibration notes ...).
    """
    arr = _to_dask(data, chunks)
    if arr.ndim != 4:
        raise ValueError(f"data must be 4D (Rx, Ry, Qx, Qy), got shape {tuple(arr.shape)}")
    if 0 in arr.shape:
        raise ValueError(f"data must not have an empty axis, got shape {tuple(arr.shape)}")
    out_attrs = dict(attrs or {})
    out_attrs.update(
        r_pixel_size=check_pixel_size(r_pixel_size, parameter="r_pixel_size"),
        r_units=canonical_units(r_units, parameter="r_units"),
        q_pixel_size=check_pixel_size(q_pixel_size, parameter="q_pixel_size"),
        q_units=canonical_units(q_units, parameter="q_units"),
    )
    e = check_energy(energy)
    out_attrs.pop("energy", None)
    if e is not None:
        out_attrs["energy"] = e
    return _assemble(arr, out_attrs)


def _assemble(arr, attrs) -> xr.DataArray:
    rp, ru = attrs["r_pixel_size"], attrs["r_units"]
    qp, qu = attrs["q_pixel_size"], attrs["q_units"]
    coords = {
        d: axis_coord(n, p, u, d)
        for d, n, p, u in zip(DIMS, arr.shape, (rp, rp, qp, qp), (ru, ru, qu, qu), strict=True)
    }
    return xr.DataArray(arr, dims=DIMS, coords=coords, attrs=attrs, name=NAME)


def calibration_attrs(attrs, spaces=("r", "q")) -> dict:
    """The calibration entries of ``attrs`` (a datacube's, or any mapping) for ``spaces``
    (``"r"``: scan, ``"q"``: detector), plus ``energy`` when known."""
    keys = [f"{s}_{k}" for s in spaces for k in ("pixel_size", "units")] + ["energy"]
    return {k: attrs[k] for k in keys if k in attrs}


def with_calibration(dc: xr.DataArray, **changes) -> xr.DataArray:
    """A new datacube with some of ``r_pixel_size``, ``r_units``, ``q_pixel_size``,
    ``q_units``, ``energy`` changed and coords rebuilt. Pixel data are untouched (same graph)."""
    allowed = {"r_pixel_size", "r_units", "q_pixel_size", "q_units", "energy"}
    unknown = set(changes) - allowed
    if unknown:
        raise TypeError(f"with_calibration: unknown parameters {sorted(unknown)}")
    check_datacube(dc)
    kw = {k: dc.attrs[k] for k in allowed - {"energy"}}
    kw["energy"] = dc.attrs.get("energy")
    kw.update(changes)
    extra = {k: v for k, v in dc.attrs.items() if k not in allowed}
    return from_array(dc.data, chunks=None, attrs=extra, **kw)


def check_datacube(dc, *, parameter: str = "datacube") -> xr.DataArray:
    """Validate that ``dc`` is a datacube DataArray; raise a ``TypeError``/``ValueError`` naming
    ``parameter`` otherwise. Returns ``dc`` unchanged."""
    if not isinstance(dc, xr.DataArray):
        raise TypeError(
            f"{parameter} must be an xarray.DataArray datacube (see stem4d_dask.from_array), "
            f"got {type(dc).__name__}"
        )
    if dc.dims != DIMS:
        raise ValueError(f"{parameter} must have dims {DIMS}, got {dc.dims}")
    for key in ("r_pixel_size", "q_pixel_size"):
        if key not in dc.attrs:
            raise ValueError(f"{parameter} lacks attrs[{key!r}]; build it with from_array")
        check_pixel_size(dc.attrs[key], parameter=f"{parameter}.attrs[{key!r}]")
    for key in ("r_units", "q_units"):
        canonical_units(dc.attrs.get(key), parameter=f"{parameter}.attrs[{key!r}]",
                        allowed=KNOWN_UNITS)
    return dc


def as_datacube(obj, *, name=None) -> xr.DataArray:
    """Adopt an xarray DataArray with dims ``(Rx, Ry, Qx, Qy)`` (e.g. from ``xr.open_zarr``).

    Calibration comes from the attrs when present, else from the coord spacing and the coords'
    ``units`` attrs, else pixels. The result is rebuilt by :func:`from_array` (same dask graph).
    """
    if isinstance(obj, xr.Dataset):
        obj = pick_variable(obj, name)
    if not isinstance(obj, xr.DataArray) or set(obj.dims) != set(DIMS):
        raise ValueError(f"expected a DataArray with dims {DIMS}, got {getattr(obj, 'dims', obj)}")
    obj = obj.transpose(*DIMS)
    attrs = dict(obj.attrs)
    for space, (d, _) in (("r", R_DIMS), ("q", Q_DIMS)):
        if f"{space}_pixel_size" not in attrs:
            attrs[f"{space}_pixel_size"] = _spacing(obj, d)
        if f"{space}_units" not in attrs:
            coord = obj.coords.get(d)
            attrs[f"{space}_units"] = (coord.attrs.get("units") if coord is not None else None) \
                or "pixels"
    kw = {k: attrs.pop(k) for k in ("r_pixel_size", "r_units", "q_pixel_size", "q_units")}
    energy = attrs.pop("energy", None)
    data = obj.data if isinstance(obj.data, da.Array) else da.from_array(obj.data)
    return from_array(data, chunks=None, energy=energy, attrs=attrs, **kw)


def _spacing(obj, dim) -> float:
    coord = obj.coords.get(dim)
    if coord is None or coord.size < 2:
        return 1.0
    step = float(coord.values[1] - coord.values[0])
    return step if step > 0 else 1.0


def pick_variable(ds: xr.Dataset, name):
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
        raise ValueError(f"the store has no variable with dims {DIMS}; variables: "
                         f"{ {v: ds[v].dims for v in ds.data_vars} }")
    raise ValueError(f"name: the store has several datacubes {candidates}; pass name=")


def with_q_units(dc: xr.DataArray, units: str) -> xr.DataArray:
    """Re-express the detector calibration in ``units`` (``"mrad"`` <-> ``"A^-1"``), using
    ``attrs["energy"]`` (eV). Coords are rebuilt; pixel data are untouched."""
    from .calibration import convert_q_pixel_size

    check_datacube(dc)
    size = convert_q_pixel_size(dc.attrs["q_pixel_size"], dc.attrs["q_units"], units,
                                dc.attrs.get("energy"))
    return with_calibration(dc, q_pixel_size=size, q_units=units)


def describe(dc: xr.DataArray) -> dict:
    """Shape, dtype, chunking and calibration of a datacube as a plain dict (no data read)."""
    check_datacube(dc)
    chunk = tuple(c[0] for c in dc.data.chunks)
    return {
        "shape": tuple(dc.shape),
        "dtype": str(dc.dtype),
        "chunks": chunk,
        "n_chunks": int(np.prod(dc.data.numblocks)),
        "chunk_MiB": round(float(np.prod(chunk)) * dc.dtype.itemsize / MiB, 2),
        "nbytes": int(dc.nbytes),
        "r_pixel_size": dc.attrs["r_pixel_size"],
        "r_units": dc.attrs["r_units"],
        "q_pixel_size": dc.attrs["q_pixel_size"],
        "q_units": dc.attrs["q_units"],
        "energy": dc.attrs.get("energy"),
    }
