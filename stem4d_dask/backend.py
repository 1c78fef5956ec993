"""The array backend, decided once: which array module a chunk uses (numpy or cupy), what a
GPU path needs, moving arrays to the device and back, the native byte order, and the empty
``meta`` array that tells dask what a kernel returns. numpy only at import: cupy is imported
when a GPU path asks for it."""

from __future__ import annotations

from types import ModuleType
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

#: A numpy or a cupy array (``numpy.ndarray`` or ``cupy.ndarray``): what a chunk is, and what a
#: kernel takes and returns (arrays of its input's module). cupy is optional and untyped, so
#: for a type checker this is ``Any``; functions that take numpy arrays only say
#: ``numpy.ndarray``.
Array: TypeAlias = Any

#: An array module: ``numpy`` or ``cupy`` (:func:`array_module`).
ArrayModule: TypeAlias = ModuleType


def array_module(x: object) -> ArrayModule:
    """``cupy`` when ``x`` is a cupy array, else ``numpy``."""
    if type(x).__module__.split(".")[0] == "cupy":
        import cupy

        return cupy
    return np


def require_cupy(what: str) -> ArrayModule:
    """The cupy module, with a CUDA device; else ``ImportError`` saying that ``what`` needs it
    and how to install it."""
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # ImportError, or a CUDA runtime error without a device
        raise ImportError(
            f"{what} needs cupy and a CUDA GPU (pip install 'stem4d_dask[gpu]'): {err}"
        ) from None
    return cupy


def device_module(device: str, what: str) -> ArrayModule:
    """numpy for ``device='cpu'``, cupy for ``'gpu'`` (:func:`require_cupy`); ``ValueError``
    for anything else."""
    if device == "cpu":
        return np
    if device == "gpu":
        return require_cupy(what)
    raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")


def to_host(a: Array) -> np.ndarray:
    """A numpy array of a numpy or cupy array (a view for numpy)."""
    return a.get() if array_module(a) is not np else np.asarray(a)


def to_gpu(a: Array) -> Array:
    """A cupy array of a numpy or cupy array, in the machine's byte order (cupy holds native
    arrays only): ``a`` itself when it is already a native cupy array, else one host-to-device
    copy (of a native copy for a big-endian chunk). ``ImportError`` without cupy and a GPU."""
    if array_module(a) is not np:
        return native(a)
    return require_cupy("moving a chunk to the GPU").asarray(native(np.asarray(a)))


def native_dtype(dtype: npt.DTypeLike) -> np.dtype:
    """``dtype`` in the machine's byte order (``>u2`` -> ``uint16`` on x86 and ARM)."""
    return np.dtype(dtype).newbyteorder("=")


def native(x: Array) -> Array:
    """``x`` itself when its dtype is in the machine's byte order, else a copy that is, with the
    same values: for code that cannot read other byte orders (numba, cupy, zarr codecs).

    Big-endian datacubes are legitimate: the Merlin reader keeps the file's ``>u2`` pixels
    (its chunks are views of the page cache) and kernels that can, read them in place."""
    dtype = getattr(x, "dtype", None)
    if dtype is None or dtype.isnative:
        return x
    return x.astype(native_dtype(dtype))


def meta(like: Array, ndim: int, dtype: npt.DTypeLike) -> Array:
    """An empty ``ndim``-dimensional array of ``dtype`` of ``like``'s array module: the ``meta``
    of a dask array whose kernel returns arrays of the module its input chunks have."""
    return array_module(like).empty((0,) * ndim, dtype=dtype)
