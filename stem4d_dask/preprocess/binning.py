"""Binning and thinning of datacubes: ``bin_data_diffraction``, ``bin_data_mmap``,
``bin_data_real``, ``thin_data_real`` (py4DSTEM names and parameters), all lazy.

Output dtypes (py4DSTEM 0.14.18 wraps integer sums silently; we never do):

- ``dtype=None``: integers are summed into the smallest integer type that holds the worst case
  (uint16 binned by 2 -> uint32, uint8 by 2 -> uint16, bool -> uint8 ...); floats keep their type.
- an explicit integer ``dtype`` narrower than that is honoured only if every binned value fits;
  otherwise computing raises ``OverflowError`` naming the scan block.
- an explicit float ``dtype`` accumulates in that float type (as py4DSTEM's ``bin2D``).

Trailing rows/columns that do not fill a whole bin are cropped, as in py4DSTEM.
"""

from __future__ import annotations

import numpy as np

from ..graph import frame_blocks, positive_int, rebuild, scan_location
from ..kernels.binning import accumulator_dtype, bin_frames, bin_scan


def _factor(value, name, shape, space) -> int:
    """``value`` as an int in ``[1, min(shape)]``; ``ValueError`` naming ``name`` otherwise."""
    factor = positive_int(value, name)
    if factor > min(shape):
        raise ValueError(f"{name} {factor} is larger than the {space} {shape[0]} x {shape[1]}")
    return factor


def _binned_dtype(dtype_in, factor: int, dtype):
    if dtype is None:
        return accumulator_dtype(dtype_in, factor * factor)
    try:
        return np.dtype(dtype)
    except TypeError as err:
        raise ValueError(f"dtype: not a numpy dtype: {dtype!r}") from err


def bin_data_diffraction(datacube, bin_factor, dtype=None):
    """Sum ``bin_factor x bin_factor`` detector pixels: ``(Rx, Ry, Qx, Qy)`` ->
    ``(Rx, Ry, Qx // b, Qy // b)``; ``q_pixel_size`` is multiplied by ``b``.

    One task per input chunk, a compiled loop per frame (numba; cupy chunks use a reshape-sum).
    ``bin_factor=1`` returns the datacube unchanged, or converted to ``dtype`` if one is given
    (py4DSTEM ignores ``dtype`` then).
    """
    return _bin_q(datacube, bin_factor, dtype)


def bin_data_mmap(datacube, bin_factor, dtype=np.float32):
    """``bin_data_diffraction`` accumulating in ``dtype`` (default float32), as py4DSTEM's
    memory-map variant. Streaming is what every lazy operation does here, so this is the same
    operation with another default dtype; unlike py4DSTEM 0.14.18 it works for non-square scans.
    """
    return _bin_q(datacube, bin_factor, dtype)


def _bin_q(datacube, bin_factor, dtype):
    data = frame_blocks(datacube)
    b = _factor(bin_factor, "bin_factor", data.shape[2:], "detector")
    out_dtype = _binned_dtype(data.dtype, b, dtype)
    qx, qy = data.shape[2:]
    if b == 1 and dtype is None:
        return datacube
    binned = data.map_blocks(
        _bin_q_block, b, None if dtype is None else out_dtype,
        chunks=data.chunks[:2] + ((qx // b,), (qy // b,)), dtype=out_dtype,
        meta=data._meta.astype(out_dtype), token="bin_data_diffraction")
    return rebuild(datacube, binned, q_pixel_size=datacube.attrs["q_pixel_size"] * b)


def _bin_q_block(block, factor, dtype, block_info=None):
    try:
        return bin_frames(block, factor, dtype)
    except OverflowError as err:
        raise OverflowError(f"{err} (at {scan_location(block_info)})") from None


def bin_data_real(datacube, bin_factor):
    """Sum ``bin_factor x bin_factor`` scan positions: ``(Rx, Ry, ...)`` ->
    ``(Rx // b, Ry // b, ...)``; ``r_pixel_size`` is multiplied by ``b``.

    Integers accumulate into the smallest safe integer type (py4DSTEM promotes to (u)int64).
    Scan chunks whose edges are not multiples of ``b`` are realigned in the graph (a rechunk of
    the scan axes only, to the nearest multiples of ``b``); aligned chunks cost nothing extra.
    """
    data = frame_blocks(datacube)
    b = _factor(bin_factor, "bin_factor", data.shape[:2], "scan")
    if b == 1:
        return datacube
    rx, ry = data.shape[:2]
    data = data[: rx // b * b, : ry // b * b]
    aligned = tuple(_aligned_chunks(c, b) for c in data.chunks[:2])
    if aligned != data.chunks[:2]:
        data = data.rechunk(aligned + data.chunks[2:])
    out_dtype = accumulator_dtype(data.dtype, b * b)
    binned = data.map_blocks(
        bin_scan, b, chunks=tuple(tuple(c // b for c in cs) for cs in aligned) + data.chunks[2:],
        dtype=out_dtype, meta=data._meta.astype(out_dtype), token="bin_data_real")
    return rebuild(datacube, binned, r_pixel_size=datacube.attrs["r_pixel_size"] * b)


def _aligned_chunks(chunks, b):
    """Chunk sizes whose boundaries are the old ones rounded to multiples of ``b``."""
    edges = np.cumsum(chunks)
    rounded = np.unique(np.maximum(np.rint(edges / b).astype(int), 1) * b)
    return tuple(int(c) for c in np.diff(np.concatenate([[0], rounded])))


def thin_data_real(datacube, thinning_factor):
    """Keep every ``t``-th scan position along both scan axes, starting at 0:
    ``out[i, j] = datacube[i * t, j * t]`` for ``i < Rx // t``, ``j < Ry // t``.
    ``r_pixel_size`` is multiplied by ``t``; the dtype is kept. One slicing task per chunk."""
    data = frame_blocks(datacube)
    t = _factor(thinning_factor, "thinning_factor", data.shape[:2], "scan")
    if t == 1:
        return datacube
    rx, ry = data.shape[:2]
    thinned = data[: rx // t * t : t, : ry // t * t : t]
    return rebuild(datacube, thinned, r_pixel_size=datacube.attrs["r_pixel_size"] * t)
