"""Binning and thinning of datacubes: ``bin_data_diffraction``, ``bin_data_mmap``,
``bin_data_real``, ``thin_data_real`` (py4DSTEM names and parameters), all lazy.

Output dtypes (py4DSTEM 0.14.18 wraps integer sums silently; we never do):

- ``dtype=None``: integers are summed into the smallest integer type that holds the worst case
  (uint16 binned by 2 -> uint32, uint8 by 2 -> uint16, bool -> uint8 ...); floats keep their type.
  The worst case comes from the values the datacube can really hold when it records them
  (:func:`stem4d_dask.datacube.value_range`: a detector's bit depth, an earlier binning), so
  uint16 binned by 2 twice is uint32, not uint64. A result narrower than the dtype's worst case
  is checked when computed (``OverflowError`` naming the scan block if a wrong record let a value
  through).
- binned coords are the mean coordinate of each bin's pixels (``origin + step (b - 1) / 2``,
  step ``b`` times larger); thinned coords are every ``t``-th coordinate.
- an explicit integer ``dtype`` narrower than that is honoured only if every binned value fits;
  otherwise computing raises ``OverflowError`` naming the scan block.
- an explicit float ``dtype`` accumulates in that float type (as py4DSTEM's ``bin2D``).

Trailing rows/columns that do not fill a whole bin are cropped, as in py4DSTEM.
"""

from __future__ import annotations

import numpy as np

from .. import coords as cal
from ..checks import positive_int
from ..datacube import Q_DIMS, R_DIMS
from ..graph import frame_blocks, rebuild, scan_location
from ..kernels.binning import accumulator_dtype, bin_frames, bin_scan
from ..values import value_range


def _factor(value, name, shape, space) -> int:
    """``value`` as an int in ``[1, min(shape)]``; ``ValueError`` naming ``name`` otherwise."""
    factor = positive_int(value, name)
    if factor > min(shape):
        raise ValueError(f"{name} {factor} is larger than the {space} {shape[0]} x {shape[1]}")
    return factor


def _binned(datacube, factor: int, dtype):
    """``(kernel dtype or None, output dtype, output value range)`` of a ``factor x factor``
    sum: ``dtype=None`` picks the smallest integer type that holds the recorded value range
    (the kernel then narrows to it, checked), else the requested dtype."""
    n = factor * factor
    known = value_range(datacube)
    if dtype is None:
        out = accumulator_dtype(datacube.dtype, n, known)
        worst = accumulator_dtype(datacube.dtype, n)
        kernel = None if out == worst else out
    else:
        try:
            out = kernel = np.dtype(dtype)
        except TypeError as err:
            raise ValueError(f"dtype: not a numpy dtype: {dtype!r}") from err
    if known is None or out.kind not in "ui":
        return kernel, out, None
    info = np.iinfo(out)
    return kernel, out, (max(known[0] * n, int(info.min)), min(known[1] * n, int(info.max)))


def bin_data_diffraction(datacube, bin_factor, dtype=None):
    """Sum ``bin_factor x bin_factor`` detector pixels: ``(Rx, Ry, Qx, Qy)`` ->
    ``(Rx, Ry, Qx // b, Qy // b)``; the Qx, Qy coords are the bins' mean coordinates
    (``q_pixel_size`` x ``b``).

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
    datacube, data = frame_blocks(datacube)
    b = _factor(bin_factor, "bin_factor", data.shape[2:], "detector")
    kernel_dtype, out_dtype, out_range = _binned(datacube, b, dtype)
    qx, qy = data.shape[2:]
    if b == 1 and dtype is None:
        return datacube
    binned = data.map_blocks(
        _bin_block,
        bin_frames,
        b,
        kernel_dtype,
        chunks=data.chunks[:2] + ((qx // b,), (qy // b,)),
        dtype=out_dtype,
        meta=data._meta.astype(out_dtype),
        token="bin_data_diffraction",
    )
    coords = {d: cal.binned(datacube.coords[d], b) for d in Q_DIMS}
    return rebuild(datacube, binned, coords, out_range, scale={"q": b})


def _bin_block(block, kernel, factor, dtype, block_info=None):
    """``kernel(block, factor, dtype)``; an overflow names the scan block it happened in."""
    try:
        return kernel(block, factor, dtype)
    except OverflowError as err:
        raise OverflowError(f"{err} (at {scan_location(block_info)})") from None


def bin_data_real(datacube, bin_factor):
    """Sum ``bin_factor x bin_factor`` scan positions: ``(Rx, Ry, ...)`` ->
    ``(Rx // b, Ry // b, ...)``; the Rx, Ry coords are the bins' mean coordinates
    (``r_pixel_size`` x ``b``).

    Integers accumulate into the smallest safe integer type (py4DSTEM promotes to (u)int64).
    Scan chunks whose edges are not multiples of ``b`` are realigned in the graph (a rechunk of
    the scan axes only, to the nearest multiples of ``b``); aligned chunks cost nothing extra.
    """
    datacube, data = frame_blocks(datacube)
    b = _factor(bin_factor, "bin_factor", data.shape[:2], "scan")
    if b == 1:
        return datacube
    rx, ry = data.shape[:2]
    data = data[: rx // b * b, : ry // b * b]
    aligned = tuple(_aligned_chunks(c, b) for c in data.chunks[:2])
    if aligned != data.chunks[:2]:
        data = data.rechunk(aligned + data.chunks[2:])
    kernel_dtype, out_dtype, out_range = _binned(datacube, b, None)
    binned = data.map_blocks(
        _bin_block,
        bin_scan,
        b,
        kernel_dtype,
        chunks=tuple(tuple(c // b for c in cs) for cs in aligned) + data.chunks[2:],
        dtype=out_dtype,
        meta=data._meta.astype(out_dtype),
        token="bin_data_real",
    )
    coords = {d: cal.binned(datacube.coords[d], b) for d in R_DIMS}
    return rebuild(datacube, binned, coords, out_range, scale={"r": b})


def _aligned_chunks(chunks, b):
    """Chunk sizes whose boundaries are the old ones rounded to multiples of ``b``."""
    edges = np.cumsum(chunks)
    rounded = np.unique(np.maximum(np.rint(edges / b).astype(int), 1) * b)
    return tuple(int(c) for c in np.diff(np.concatenate([[0], rounded])))


def thin_data_real(datacube, thinning_factor):
    """Keep every ``t``-th scan position along both scan axes, starting at 0:
    ``out[i, j] = datacube[i * t, j * t]`` for ``i < Rx // t``, ``j < Ry // t``.
    The coords are the kept positions' (``r_pixel_size`` x ``t``); the dtype is kept. One
    slicing task per chunk. Complex datacubes are thinned too."""
    datacube, data = frame_blocks(datacube, complex_ok=True)
    t = _factor(thinning_factor, "thinning_factor", data.shape[:2], "scan")
    if t == 1:
        return datacube
    rx, ry = data.shape[:2]
    thinned = data[: rx // t * t : t, : ry // t * t : t]
    coords = {d: cal.thinned(datacube.coords[d], t) for d in R_DIMS}
    return rebuild(datacube, thinned, coords, value_range(datacube), scale={"r": t})
