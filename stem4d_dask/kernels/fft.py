"""Batched 2D FFTs over the last two axes, through the fastest backend at hand.

- cupy arrays: ``cupy.fft``;
- numpy arrays: planned FFTW transforms (``pyfftw``) when installed, else ``scipy.fft``.

FFTW plans are made once per thread and batch shape (``FFTW_ESTIMATE``: no measuring delay) and
reused for every later chunk; frames go through in batches of ``BATCH`` so the working set stays
in cache. Every dask worker thread thus runs its own single-threaded transforms.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import scipy.fft

from . import Array, array_module

try:  # optional: 2-3x faster than scipy's pocketfft on small frames
    import pyfftw
except ImportError:  # pragma: no cover - depends on the platform
    pyfftw = None

BATCH = 16  # frames per transform
_plans = threading.local()
_planner_lock = threading.Lock()  # the FFTW planner is not thread-safe


def use_fftw(enabled: bool) -> None:
    """Switch the FFTW path on or off for this process (for tests and comparisons)."""
    global _fftw_enabled
    _fftw_enabled = bool(enabled) and pyfftw is not None


_fftw_enabled = pyfftw is not None


def rfft_filter(
    frames: Array, multiply: Callable[[Array, int, int], object], out_dtype: npt.DTypeLike
) -> Array:
    """``irfft2(multiply(rfft2(frames), start, stop))`` over the last two axes of ``frames``.

    frames: ``(n, Nx, Ny)`` real; ``multiply(spectrum, start, stop)`` changes the half spectrum
    ``(stop - start, Nx, Ny // 2 + 1)`` of frames ``start:stop`` in place. Returns a new real
    ``(n, Nx, Ny)`` array of ``out_dtype`` (float32 or float64; the transforms run in it).
    """
    xp = array_module(frames)
    out_dtype = np.dtype(out_dtype)
    n, nx, ny = frames.shape
    out = xp.empty((n, nx, ny), dtype=out_dtype)
    if xp is not np:
        spectrum = xp.fft.rfft2(frames.astype(out_dtype, copy=False))
        multiply(spectrum, 0, n)
        out[...] = xp.fft.irfft2(spectrum, s=(nx, ny))
        return out
    for start in range(0, n, BATCH):
        stop = min(start + BATCH, n)
        if _fftw_enabled:
            real, spectrum, forward, backward = _fftw_plan(stop - start, nx, ny, out_dtype)
            real[...] = frames[start:stop]
            forward()
            multiply(spectrum, start, stop)
            backward()
            out[start:stop] = real
        else:
            spectrum = scipy.fft.rfft2(frames[start:stop].astype(out_dtype, copy=False))
            multiply(spectrum, start, stop)
            out[start:stop] = scipy.fft.irfft2(spectrum, s=(nx, ny), overwrite_x=True)
    return out


def _fftw_plan(
    n: int, nx: int, ny: int, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray, Callable[[], np.ndarray], Callable[[], np.ndarray]]:
    """This thread's (real buffer, spectrum buffer, forward, backward) for ``(n, nx, ny)``."""
    cache = getattr(_plans, "cache", None)
    if cache is None:
        cache = _plans.cache = {}
    key = (n, nx, ny, dtype.str)
    if key not in cache:
        complex_dtype = np.result_type(dtype, np.complex64)
        with _planner_lock:
            real = pyfftw.empty_aligned((n, nx, ny), dtype=dtype)
            spectrum = pyfftw.empty_aligned((n, nx, ny // 2 + 1), dtype=complex_dtype)
            flags = ("FFTW_ESTIMATE", "FFTW_DESTROY_INPUT")
            forward = pyfftw.FFTW(real, spectrum, axes=(-2, -1), flags=flags, threads=1)
            backward = pyfftw.FFTW(
                spectrum, real, axes=(-2, -1), direction="FFTW_BACKWARD", flags=flags, threads=1
            )
        cache[key] = (real, spectrum, forward, backward)
    return cache[key]


def fft2(frames: Array, dtype: npt.DTypeLike) -> Array:
    """Complex 2D FFT of the last two axes, computed in the complex type of ``dtype``."""
    xp = array_module(frames)
    cdtype = np.result_type(dtype, np.complex64)
    if xp is not np:
        return xp.fft.fft2(frames.astype(cdtype))
    return scipy.fft.fft2(frames.astype(cdtype, copy=False), axes=(-2, -1))


def ifft2(spectrum: Array) -> Array:
    """Inverse of ``fft2`` (normalised by the number of pixels)."""
    xp = array_module(spectrum)
    if xp is not np:
        return xp.fft.ifft2(spectrum)
    return scipy.fft.ifft2(spectrum, axes=(-2, -1), overwrite_x=True)
