"""Kernels: pure functions of one chunk (numpy or cupy); no dask, no xarray.

Each kernel takes its array module from its input, so one kernel serves CPU and GPU chunks.
"""

from __future__ import annotations

import numpy as np


def array_module(x):
    """``cupy`` when ``x`` is a cupy array, else ``numpy``."""
    if type(x).__module__.split(".")[0] == "cupy":
        import cupy
        return cupy
    return np
