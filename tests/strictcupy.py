"""A strict numpy stand-in for the ``cupy`` module, so that whole dask pipelines run with "GPU"
chunks on the CPU and fail where real cupy chunks would.

:func:`installed` puts a module named ``cupy`` in ``sys.modules``: its ``ndarray`` wraps a numpy
array and behaves as cupy's does where it matters to us: its type's module is ``cupy`` (so
:func:`stem4d_dask.backend.array_module` and dask's cupy dispatch take it for one), ``numpy``
functions and ufuncs on it dispatch to the stand-in and return stand-in arrays, and it refuses
what cupy refuses: implicit conversion to numpy (``np.asarray(chunk)``) and numpy arrays mixed
into its arithmetic or functions. ``.get()`` and ``cupy.asnumpy`` copy to the host, as cupy's do.
It has no ``__cuda_array_interface__``: numba.cuda kernels cannot take it.
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import sys
import types

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

TRANSFERS = {"asarray", "array", "asanyarray", "ascontiguousarray"}  # host arrays allowed in


def _refuse_host(values):
    for v in values:
        if isinstance(v, np.ndarray) and v.ndim:
            raise TypeError(f"Unsupported type {type(v)} (a numpy array where cupy needs cupy)")
        if isinstance(v, list | tuple):
            _refuse_host(v)


def _unwrap(v):
    if isinstance(v, ndarray):
        return v._a
    if isinstance(v, list | tuple):
        return type(v)(_unwrap(x) for x in v)
    if isinstance(v, dict):
        return {k: _unwrap(x) for k, x in v.items()}
    return v


def _wrap(v):
    if isinstance(v, np.ndarray):
        return ndarray(v)
    if isinstance(v, np.generic) and not isinstance(v, np.dtype):
        return ndarray(np.asarray(v))  # cupy reductions give 0-d arrays, not numpy scalars
    if isinstance(v, tuple):
        return tuple(_wrap(x) for x in v)
    if isinstance(v, list):
        return [_wrap(x) for x in v]
    return v


def _device_call(func, args, kwargs, host_ok=False):
    if not host_ok:
        _refuse_host(list(args) + list(kwargs.values()))
    return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))


class ndarray(NDArrayOperatorsMixin):  # noqa: N801 - cupy's name
    """A device array stand-in holding a numpy array."""

    def __init__(self, a):
        self._a = a

    def __array__(self, *args, **kwargs):
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to "
            "construct a NumPy array explicitly."
        )

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _device_call(getattr(ufunc, method), inputs, kwargs)

    def __array_function__(self, func, types_, args, kwargs):
        return _device_call(func, args, kwargs)

    def get(self):
        return np.array(self._a)

    def __getitem__(self, key):
        return _wrap(self._a[_unwrap(key)])

    def __setitem__(self, key, value):
        self._a[_unwrap(key)] = _unwrap(value)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(x) for x in self._a)

    def __bool__(self):
        return bool(self._a)

    def __int__(self):
        return int(self._a)

    def __float__(self):
        return float(self._a)

    def __index__(self):
        return self._a.__index__()

    def __repr__(self):
        return f"stand-in cupy {self._a!r}"

    def __getattr__(self, name):
        if name.startswith("__"):  # no __array_interface__, __array_struct__: no host view
            raise AttributeError(name)
        value = getattr(self._a, name)
        if not callable(value):
            return _wrap(value) if name not in ("shape", "dtype", "strides") else value
        return lambda *args, **kwargs: _device_call(value, args, kwargs)

    @property
    def T(self):  # noqa: N802 - numpy's name
        return ndarray(self._a.T)


ndarray.__module__ = "cupy"


def _module() -> types.ModuleType:
    cupy = types.ModuleType("cupy")
    cupy.__spec__ = importlib.machinery.ModuleSpec("cupy", None)

    def module_getattr(name):
        value = getattr(np, name)
        if isinstance(value, types.ModuleType):  # cupy.fft, cupy.linalg
            sub = types.ModuleType(f"cupy.{name}")
            sub.__getattr__ = lambda n: _function(getattr(value, n), n)
            return sub
        return _function(value, name) if callable(value) and not isinstance(value, type) else value

    def _function(value, name):
        if not callable(value) or isinstance(value, type):
            return value
        return lambda *a, **k: _device_call(value, a, k, host_ok=name in TRANSFERS)

    cupy.__getattr__ = module_getattr
    cupy.ndarray = ndarray
    cupy.asnumpy = lambda a, **kwargs: a.get() if isinstance(a, ndarray) else np.asarray(a)
    cupy.get_array_module = lambda *arrays: cupy
    runtime = types.SimpleNamespace(getDeviceCount=lambda: 1)
    cupy.cuda = types.SimpleNamespace(runtime=runtime)
    return cupy


@contextlib.contextmanager
def installed():
    """The stand-in as ``sys.modules['cupy']`` while the block runs (any real cupy is put back
    afterwards)."""
    from dask.array.backends import register_cupy

    before = sys.modules.get("cupy")
    sys.modules["cupy"] = _module()
    register_cupy()  # dask's cupy dispatch (concatenate, tensordot ...) for the stand-in type
    try:
        yield sys.modules["cupy"]
    finally:
        if before is None:
            sys.modules.pop("cupy", None)
        else:
            sys.modules["cupy"] = before
