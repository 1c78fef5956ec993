"""Sub-pixel shifts of every diffraction pattern: ``datacube_diffraction_shift`` (py4DSTEM name
and parameters) and ``center_patterns`` (descan correction in one call). Lazy, one task per
chunk.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ..datacube import R_DIMS
from ..graph import frame_blocks, rebuild, result_float_dtype
from ..kernels.shift import shift_frames


def datacube_diffraction_shift(datacube, xshifts, yshifts, periodic=True, bilinear=False):
    """Shift every pattern: ``out[rx, ry, qx, qy] = in[rx, ry, qx - xs, qy - ys]`` (pixels).

    xshifts, yshifts : a number (every pattern) or one shift per scan position: an ``(Rx, Ry)``
        numpy array, dask array or DataArray with dims ``(Rx, Ry)`` (dask-backed ones stay lazy
        and are consumed chunk by chunk). A NaN shift gives a NaN pattern.
    periodic : if False, the rows/columns that wrapped around are zeroed (``round(shift)`` of
        them, half to even, as py4DSTEM).
    bilinear : bilinear interpolation instead of the (default) band-limited Fourier shift.

    Returns float32 (float64 for float64 or wide-integer data); py4DSTEM writes the result back
    into the input's dtype, truncating integer data. The Fourier shift runs batched real FFTs
    over each chunk (FFTW when installed) with a separable phase ramp.
    """
    data = frame_blocks(datacube)
    scan = data.shape[:2]
    xs = _shift_field(xshifts, "xshifts", scan)
    ys = _shift_field(yshifts, "yshifts", scan)
    dtype = result_float_dtype(data.dtype)
    options = dict(periodic=bool(periodic), bilinear=bool(bilinear), out_dtype=dtype)
    meta = data._meta.astype(dtype)
    if any(isinstance(s, da.Array) for s in (xs, ys)):
        xs, ys = (_aligned(s, data.chunks[:2]) for s in (xs, ys))
        shifted = da.blockwise(
            _shift_block, "ijkl", data, "ijkl", *_blockwise_arg(xs), *_blockwise_arg(ys),
            dtype=dtype, meta=meta, token="datacube_diffraction_shift", **options)
    else:  # numbers or whole numpy arrays: each array is one graph key, sliced per task
        xs, ys = (dask.delayed(s) if isinstance(s, np.ndarray) else s for s in (xs, ys))
        shifted = data.map_blocks(_shift_block, xs, ys, dtype=dtype, meta=meta,
                                  token="datacube_diffraction_shift", **options)
    return rebuild(datacube, shifted)


def center_patterns(datacube, qx0, qy0, center=None, periodic=True, bilinear=False):
    """Shift every pattern so its origin ``(qx0, qy0)`` (pixels; numbers or ``(Rx, Ry)``
    fields such as a measured centre of mass) lands on ``center`` (default ``(Qx // 2,
    Qy // 2)``, the zero-frequency pixel of an fft-shifted frame). Descan correction in one
    call: ``datacube_diffraction_shift(datacube, cx - qx0, cy - qy0, periodic, bilinear)``."""
    qx, qy = datacube.shape[2:]
    cx, cy = (qx // 2, qy // 2) if center is None else center
    for name, value in (("center", cx), ("center", cy)):
        if not np.isscalar(value) or not np.isfinite(value):
            raise ValueError(f"{name} must be two numbers (pixels), got {center!r}")
    return datacube_diffraction_shift(datacube, cx - _field(qx0), cy - _field(qy0),
                                      periodic=periodic, bilinear=bilinear)


def _field(value):
    """Arithmetic-ready form of a shift/origin argument (lists become arrays)."""
    return value if isinstance(value, xr.DataArray | da.Array) else np.asarray(value,
                                                                             dtype=float)


def _shift_field(value, name, scan):
    """A float, an ``(Rx, Ry)`` float64 numpy array or an ``(Rx, Ry)`` dask array."""
    if isinstance(value, xr.DataArray):
        if set(value.dims) != set(R_DIMS):
            raise ValueError(f"{name}: a DataArray of shifts needs dims {R_DIMS}, "
                             f"got {value.dims}")
        value = value.transpose(*R_DIMS).data
    if not isinstance(value, da.Array):
        try:
            value = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{name} must be a number or an {scan} array, got "
                             f"{type(value).__name__}") from err
        if value.ndim == 0:
            if not np.isfinite(value):
                raise ValueError(f"{name} must be finite, got {float(value)}")
            return float(value)
    if tuple(value.shape) != tuple(scan):
        raise ValueError(f"{name} must be a number or have the scan shape {tuple(scan)}, "
                         f"got shape {tuple(value.shape)}")
    if np.dtype(value.dtype).kind not in "biuf":
        raise ValueError(f"{name} must be real numbers, got dtype {value.dtype}")
    return value


def _aligned(value, chunks):
    if isinstance(value, da.Array):
        return value.astype(np.float64).rechunk(chunks)
    if isinstance(value, np.ndarray):
        return da.from_array(value, chunks=chunks)
    return value


def _blockwise_arg(value):
    return (value, "ij") if isinstance(value, da.Array) else (value, None)


def _shift_block(block, xs, ys, *, periodic, bilinear, out_dtype, block_info=None):
    xs, ys = (_local(s, block, block_info) for s in (xs, ys))
    return shift_frames(block, xs, ys, periodic=periodic, bilinear=bilinear, dtype=out_dtype)


def _local(shifts, block, block_info):
    """The part of a whole-scan shift array that belongs to ``block``."""
    if np.ndim(shifts) == 2 and shifts.shape != block.shape[:2]:
        (r0, r1), (c0, c1) = block_info[0]["array-location"][:2]
        return shifts[r0:r1, c0:c1]
    return shifts
