"""Moving a datacube's chunks to the GPU and back, lazily: :func:`to_device` and :func:`to_host`
(the accessor's ``dc.stem4d.to_device("gpu")`` and ``.stem4d.to_host()``).

Each is one ``map_blocks`` over the chunks: a task moves one chunk (host -> device with
:func:`stem4d_dask.backend.to_gpu`, device -> host with :func:`stem4d_dask.backend.to_host`),
and the dask ``meta`` says which array type the chunks are (``cupy.ndarray`` or
``numpy.ndarray``), so every operation downstream builds its graph for the right module. Nothing
is moved while the graph is built. An operation on a moved datacube takes each chunk straight
from its transfer task; dask fuses the read, the transfer and the operation into one task per
chunk, so a worker thread holds one chunk on the device at a time and only the operation's
result (a few numbers per frame for a reduction) stays there (``docs/gpu.md``).
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from .backend import array_module, device_module, native_dtype, to_gpu
from .backend import to_host as _array_to_host
from .graph import frame_blocks, rebuild
from .values import value_range, with_value_range

DEVICES = ("gpu", "cpu")


def on_gpu(obj: xr.DataArray | xr.Dataset) -> bool:
    """Whether any variable of ``obj`` holds cupy data (dask chunks whose ``meta`` is cupy, or
    a computed cupy array)."""
    variables = obj.data_vars.values() if isinstance(obj, xr.Dataset) else [obj]
    return any(array_module(_meta(v.data)) is not np for v in variables)


def to_device(datacube: xr.DataArray, device: str = "gpu") -> xr.DataArray:
    """The datacube with every chunk on ``device``, lazily: ``'gpu'`` -> cupy chunks (in the
    machine's byte order: cupy holds no other), ``'cpu'`` -> numpy chunks (:func:`to_host`).

    Coords and attrs are kept (a recorded ``value_range`` too); chunks are whole frames as for
    any operation. One transfer task per chunk, each feeding the operation that uses the chunk
    (so never every chunk on the device at once). A datacube already on ``device`` is returned
    as it is. ``ImportError`` when ``'gpu'`` is asked without cupy and a CUDA device (``pip
    install 'stem4d_dask[gpu]'``); ``ValueError`` for another ``device``.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cpu":
        return to_host(datacube)
    xp = device_module(device, "to_device('gpu')")
    datacube, data = frame_blocks(datacube)
    if array_module(data._meta) is not np and data.dtype.isnative:
        return datacube
    dtype = native_dtype(data.dtype)
    moved = data.map_blocks(
        to_gpu,
        dtype=dtype,
        meta=xp.empty((0,) * data.ndim, dtype=dtype),
        name=f"to_device-{tokenize(data.name, 'gpu')}",
    )
    return rebuild(datacube, moved, value_range=_recorded_range(datacube))


def to_host(obj: xr.DataArray | xr.Dataset) -> xr.DataArray | xr.Dataset:
    """``obj`` (any DataArray or Dataset: a datacube, an operation's result) with its data as
    numpy: lazy cupy chunks get one device -> host task each (numpy ``meta``), computed cupy
    arrays are copied now. Coords and attrs are kept. Data already on the host is returned as
    it is (the same object when nothing moves)."""
    if not isinstance(obj, xr.DataArray | xr.Dataset):
        raise TypeError(f"obj must be an xarray DataArray or Dataset, got {type(obj).__name__}")
    if not on_gpu(obj):
        return obj
    if isinstance(obj, xr.Dataset):
        return obj.copy(data={k: _host_data(v.data) for k, v in obj.data_vars.items()})
    out = obj.copy(data=_host_data(obj.data))
    recorded = _recorded_range(obj)
    return out if recorded is None else with_value_range(out, recorded)


def _host_data(data: object) -> object:
    if isinstance(data, da.Array):
        if array_module(data._meta) is np:
            return data
        return data.map_blocks(
            _array_to_host,
            dtype=data.dtype,
            meta=np.empty((0,) * data.ndim, dtype=data.dtype),
            name=f"to_host-{tokenize(data.name, 'cpu')}",
        )
    return _array_to_host(data)


def _meta(data: object) -> object:
    return data._meta if isinstance(data, da.Array) else data


def _recorded_range(dc: xr.DataArray) -> tuple[int, int] | None:
    """The value range recorded for ``dc``'s very data, when narrower than its dtype's."""
    if np.dtype(dc.dtype).kind not in "uib":
        return None
    return value_range(dc) if "value_range" in dc.attrs else None
