"""Sub-pixel shifts of detector frames: Fourier (band-limited) or bilinear, periodic or not.

Convention (py4DSTEM's): ``out[x, y] = frame[x - xshift, y - yshift]``, so positive shifts move
content toward higher indices. Shifts are in detector pixels, one per frame.
"""

from __future__ import annotations

import numba
import numpy as np
import numpy.typing as npt

from . import Array, ArrayModule, array_module
from .fft import rfft_filter


def shift_frames(
    frames: Array,
    xshifts: Array | float,
    yshifts: Array | float,
    *,
    periodic: bool = True,
    bilinear: bool = False,
    dtype: npt.DTypeLike = np.float32,
) -> Array:
    """Shift every frame of ``frames`` by its own ``(xshift, yshift)``.

    frames: ``(..., Nx, Ny)`` real; xshifts, yshifts: scalars or arrays of shape
    ``frames.shape[:-2]`` (pixels). Returns float ``dtype`` of the same shape as ``frames``.
    ``periodic=False`` zeroes the ``round(shift)`` rows/columns that wrapped around (rounding
    half to even, as py4DSTEM). A NaN shift gives a NaN frame.
    """
    xp = array_module(frames)
    *lead, nx, ny = frames.shape
    flat = frames.reshape(-1, nx, ny)
    xs = xp.broadcast_to(xp.asarray(xshifts, dtype=xp.float64), tuple(lead)).ravel()
    ys = xp.broadcast_to(xp.asarray(yshifts, dtype=xp.float64), tuple(lead)).ravel()
    if bilinear:
        out = bilinear_shift(flat, xs, ys, dtype)
    else:
        out = fourier_shift(flat, xs, ys, dtype)
    if not periodic:
        blank_wrapped(out, xs, ys)
    return out.reshape(frames.shape)


def fourier_shift(frames: Array, xs: Array, ys: Array, dtype: npt.DTypeLike = np.float32) -> Array:
    """Band-limited shift of ``(n, Nx, Ny)`` frames by ``xs``, ``ys`` ``(n,)``.

    Equals py4DSTEM's ``real(ifft2(fft2(frame) * exp(-2 pi i (qx xs + qy ys))))`` but uses real
    transforms and a separable ramp (two 1D exponentials per frame). At an even size's Nyquist
    frequency the ramp is replaced by its real part (and at the Nyquist corner of an even x even
    frame by ``cos(pi (xs + ys))``), which is exactly what taking the real part of the complex
    result does.
    """
    xp = array_module(frames)
    n, nx, ny = frames.shape
    kx = xp.asarray(np.fft.fftfreq(nx))
    ky = xp.asarray(np.fft.rfftfreq(ny))

    if xp is np:

        def multiply(spectrum: Array, start: int, stop: int) -> None:
            _apply_ramp(spectrum, xs[start:stop], ys[start:stop], kx, ky)
    else:

        def multiply(spectrum: Array, start: int, stop: int) -> None:
            corner = spectrum[:, nx // 2, -1].copy()
            spectrum *= _ramp(xp, xs[start:stop], kx, spectrum.dtype)[:, :, None]
            spectrum *= _ramp(xp, ys[start:stop], ky, spectrum.dtype)[:, None, :]
            if nx % 2 == 0 and ny % 2 == 0:
                spectrum[:, nx // 2, -1] = corner * xp.cos(np.pi * (xs + ys)[start:stop])

    return rfft_filter(frames, multiply, dtype)


def _ramp(xp: ArrayModule, shifts: Array, freqs: Array, dtype: npt.DTypeLike) -> Array:
    """``exp(-2 pi i shift k)`` ``(n, len(freqs))``, real at the Nyquist frequency -0.5/0.5."""
    phase = (-2 * np.pi) * shifts[:, None] * freqs[None, :]
    ramp = xp.exp(1j * phase)
    nyquist = xp.abs(freqs) == 0.5
    ramp[:, nyquist] = xp.cos(phase[:, nyquist])
    return ramp.astype(dtype)


@numba.njit(nogil=True, cache=True)
def _apply_ramp(spectrum, xs, ys, kx, ky):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    n, nx, nyh = spectrum.shape
    ex = np.empty(nx, dtype=spectrum.dtype)
    ey = np.empty(nyh, dtype=spectrum.dtype)
    for i in range(n):
        for u in range(nx):
            p = -2.0 * np.pi * xs[i] * kx[u]
            ex[u] = np.cos(p) + 1j * (0.0 if abs(kx[u]) == 0.5 else np.sin(p))
        for v in range(nyh):
            p = -2.0 * np.pi * ys[i] * ky[v]
            ey[v] = np.cos(p) + 1j * (0.0 if ky[v] == 0.5 else np.sin(p))
        corner = spectrum[i, nx // 2, nyh - 1]
        for u in range(nx):
            e = ex[u]
            for v in range(nyh):
                spectrum[i, u, v] *= e * ey[v]
        if abs(kx[nx // 2]) == 0.5 and ky[nyh - 1] == 0.5:  # both sizes even
            spectrum[i, nx // 2, nyh - 1] = corner * np.cos(np.pi * (xs[i] + ys[i]))


def bilinear_shift(frames: Array, xs: Array, ys: Array, dtype: npt.DTypeLike = np.float32) -> Array:
    """Periodic bilinear shift of ``(n, Nx, Ny)`` frames (py4DSTEM's four weighted rolls)."""
    xp = array_module(frames)
    n, nx, ny = frames.shape
    finite = xp.isfinite(xs) & xp.isfinite(ys)
    xs0 = xp.where(finite, xs, 0.0)
    ys0 = xp.where(finite, ys, 0.0)
    xf, yf = xp.floor(xs0), xp.floor(ys0)
    wx = (xs0 - xf).astype(dtype)[:, None, None]
    wy = (ys0 - yf).astype(dtype)[:, None, None]
    rows = (xp.arange(nx)[None, :] - xf.astype(xp.int64)[:, None]) % nx  # source of row x
    cols = (xp.arange(ny)[None, :] - yf.astype(xp.int64)[:, None]) % ny
    src = frames.astype(dtype, copy=False)
    r0 = xp.take_along_axis(src, rows[:, :, None], axis=1)
    r1 = xp.take_along_axis(src, ((rows - 1) % nx)[:, :, None], axis=1)
    rows_mixed = (1 - wx) * r0 + wx * r1
    c0 = xp.take_along_axis(rows_mixed, cols[:, None, :], axis=2)
    c1 = xp.take_along_axis(rows_mixed, ((cols - 1) % ny)[:, None, :], axis=2)
    out = (1 - wy) * c0 + wy * c1
    out[~finite] = np.nan
    return out


def blank_wrapped(out: Array, xs: Array, ys: Array) -> Array:
    """Zero, in place, the rows/columns of ``out`` ``(n, Nx, Ny)`` that wrapped around: the
    first ``round(xs)`` rows if positive, the last ``-round(xs)`` if negative; same for y."""
    xp = array_module(out)
    n, nx, ny = out.shape
    xr = xp.rint(xp.where(xp.isfinite(xs), xs, 0.0))[:, None]
    yr = xp.rint(xp.where(xp.isfinite(ys), ys, 0.0))[:, None]
    i, j = xp.arange(nx)[None, :], xp.arange(ny)[None, :]
    keep_x = ~((i < xr) | (i >= nx + xr))  # (n, Nx)
    keep_y = ~((j < yr) | (j >= ny + yr))
    out *= keep_x[:, :, None]
    out *= keep_y[:, None, :]
    return out
