"""Launching our numba.cuda kernels (``kernels/cuda_*.py``) on cupy chunks, and on numpy arrays
under numba's CUDA simulator.

The kernels in ``cuda_com``, ``cuda_binning`` and ``cuda_counting`` replace the numba CPU loops
of centre of mass, binning and electron counting for cupy chunks. Each is called through a thin
launcher that takes arrays of one module and allocates its outputs with that module: cupy arrays
on a GPU (numba reads them through ``__cuda_array_interface__``, without copies), numpy arrays
under the simulator (``NUMBA_ENABLE_CUDASIM=1``, set before numba.cuda is first imported), where
kernels run as Python threads on the CPU: that is how CI tests them without a GPU.

:func:`enabled` is the one switch between the two paths of a cupy chunk; numba.cuda is imported
only when it is first asked (a cupy chunk), never by the CPU paths.
"""

from __future__ import annotations

import functools
import math
import os
import warnings

import numba
import numpy as np

from . import Array

#: environment variable: ``0`` keeps cupy chunks on cupy's array operations even where the
#: numba.cuda kernels could run (to compare the two, or to work around a broken CUDA toolkit)
ENV = "STEM4D_CUDA_KERNELS"
MAX_BLOCKS = 65535  # kernels loop over their items with a grid stride past this many blocks


def simulated() -> bool:
    """Whether numba.cuda is its CPU simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    variable = os.environ.get("NUMBA_ENABLE_CUDASIM", "0").strip() not in ("", "0")
    return variable or bool(getattr(numba.config, "ENABLE_CUDASIM", 0))


#: threads per block (a power of two: the block reductions halve it); 16 under the simulator,
#: where every thread is a Python thread
THREADS = 16 if simulated() else 128


@functools.cache
def enabled() -> bool:
    """Whether cupy chunks in this process go through the numba.cuda kernels:
    ``STEM4D_CUDA_KERNELS`` is not ``0`` and a one-line kernel compiles and runs (a device and
    the CUDA compiler libraries that ``pip install 'stem4d_dask[gpu]'`` brings, or the
    simulator). Otherwise the kernels' cupy array operations serve cupy chunks, with one warning
    saying why. Decided once per process: each dask worker decides for itself."""
    if os.environ.get(ENV, "1").strip() == "0":
        return False
    try:
        probe()
    except Exception as err:  # no device, no NVVM/libdevice, a driver older than the toolkit
        warnings.warn(
            f"numba.cuda kernels unavailable ({type(err).__name__}: {err}); cupy chunks use "
            "cupy array operations instead (slower for centre of mass, binning and counting)",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    return True


def probe() -> None:
    """Compile and run a one-line kernel; raises what numba raises when it cannot (no device,
    no CUDA compiler libraries), ``RuntimeError`` when the result is wrong."""
    from numba import cuda

    from .cuda_probe import add_one

    if not cuda.is_available():
        raise RuntimeError("numba.cuda finds no CUDA device")
    values = cuda.to_device(np.arange(4, dtype=np.int64))
    with warnings.catch_warnings():  # one block: numba warns of low occupancy
        warnings.simplefilter("ignore")
        add_one[1, 32](values)
    if not np.array_equal(values.copy_to_host(), np.arange(1, 5)):
        raise RuntimeError("a test kernel gave a wrong result")


def blocks(items: int, threads: int = THREADS) -> int:
    """Blocks of ``threads`` for ``items`` work items (at most :data:`MAX_BLOCKS`: the kernels
    stride over the rest)."""
    return max(1, min(math.ceil(items / threads), MAX_BLOCKS))


def device_arrays(*arrays: Array) -> tuple[Array, ...]:
    """The arrays to hand a kernel: device arrays (``__cuda_array_interface__``: cupy, any
    strides) as they are; under the simulator, numpy arrays, C-contiguous (its fake transfers
    take nothing else; a copy only for a strided input, never for our outputs). ``TypeError``
    for anything else: a numpy array handed to a real GPU kernel would be copied to the device
    and back behind the caller's back."""
    if simulated():
        for a in arrays:
            if not isinstance(a, np.ndarray):
                raise TypeError(f"the CUDA simulator's kernels take numpy arrays, got {type(a)}")
        return tuple(np.ascontiguousarray(a) for a in arrays)
    for a in arrays:
        if not hasattr(a, "__cuda_array_interface__"):
            raise TypeError(f"CUDA kernels take device (cupy) arrays, got {type(a).__name__}")
    return arrays
