"""Resampling and padding of detector frames (the last two axes of a chunk)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from . import Array, array_module
from .fft import fft2, ifft2


def bilinear_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices ``(i0, i1)`` and weight ``w`` of ``i1`` for each of ``n_out`` samples.

    Output pixel ``i`` samples the input at ``(i + 0.5) * n_in / n_out - 0.5``, clamped to
    ``[0, n_in - 1]``: pixel-centre-aligned linear interpolation with edge replication, which is
    what ``scipy.ndimage.zoom(order=1, mode='nearest', grid_mode=True)`` computes.
    """
    coord = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    i0 = np.floor(coord).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, coord - i0


def bilinear_resample(
    block: Array,
    output_size: Sequence[int],
    conserve_array_sums: bool = False,
    dtype: npt.DTypeLike = np.float32,
) -> Array:
    """Resample ``(..., Nx, Ny)`` to ``(..., Sx, Sy)`` by separable linear interpolation,
    computed in float ``dtype``. ``conserve_array_sums`` divides by ``Sx*Sy / (Nx*Ny)``."""
    xp = array_module(block)
    *_, nx, ny = block.shape
    sx, sy = output_size
    out = block.astype(dtype, copy=False) if xp is np else block.astype(dtype)
    for axis, n_in, n_out in ((-2, nx, sx), (-1, ny, sy)):
        i0, i1, w = (xp.asarray(v) for v in bilinear_weights(n_in, n_out))
        shape = [1] * out.ndim
        shape[axis] = n_out
        w = w.astype(dtype).reshape(shape)
        out = xp.take(out, i0, axis=axis) * (1 - w) + xp.take(out, i1, axis=axis) * w
    if conserve_array_sums:
        out *= np.dtype(dtype).type(nx * ny / (sx * sy))
    return out


def fourier_resample(
    block: Array,
    output_size: Sequence[int],
    conserve_array_sums: bool = False,
    dtype: npt.DTypeLike = np.float32,
) -> Array:
    """Resample ``(..., Nx, Ny)`` to ``(..., Sx, Sy)`` by zero-padding or cropping the spectrum.

    Along each axis the lowest ``ceil(m / 2)`` non-negative and ``floor(m / 2)`` negative
    frequencies are kept, ``m = min(N, S)`` (py4DSTEM's corner-block copy). The inverse
    transform's real part is scaled by ``S_total / N_total`` so pixel values are kept, unless
    ``conserve_array_sums``, which keeps each frame's sum instead. Computed in the complex type
    of ``dtype``.
    """
    xp = array_module(block)
    *lead, nx, ny = block.shape
    sx, sy = output_size
    spectrum = fft2(block, dtype)
    out = xp.zeros((*lead, sx, sy), dtype=spectrum.dtype)
    rx, ry = _kept(nx, sx), _kept(ny, sy)
    for src_x, dst_x in rx:
        for src_y, dst_y in ry:
            out[..., dst_x, dst_y] = spectrum[..., src_x, src_y]
    result = ifft2(out).real.astype(dtype)
    if not conserve_array_sums:
        result *= np.dtype(dtype).type(sx * sy / (nx * ny))
    return result


def _kept(n_in: int, n_out: int) -> list[tuple[slice, slice]]:
    """(source slice, destination slice) pairs of the frequencies kept along one axis."""
    m = min(n_in, n_out)
    pos, neg = (m + 1) // 2, m // 2
    pairs = [(slice(0, pos), slice(0, pos))]
    if neg:
        pairs.append((slice(n_in - neg, n_in), slice(n_out - neg, n_out)))
    return pairs


def pad_frames(block: Array, before: Sequence[int], after: Sequence[int]) -> Array:
    """Zero-pad the last two axes: ``before``/``after`` are ``(px, py)`` pixel counts."""
    xp = array_module(block)
    widths = [(0, 0)] * (block.ndim - 2) + list(zip(before, after, strict=True))
    return xp.pad(block, widths)
