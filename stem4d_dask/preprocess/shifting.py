"""Sub-pixel shifts of every diffraction pattern: ``datacube_diffraction_shift`` (py4DSTEM name
and parameters) and ``center_patterns`` (descan correction in one call). Lazy, one task per
chunk.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import xarray as xr

from .. import coords as cal
from ..checks import scan_array
from ..datacube import check_datacube
from ..detectors import parse_center
from ..graph import frame_blocks, rebuild, result_float_dtype
from ..kernels.shift import shift_frames


def datacube_diffraction_shift(
    datacube, xshifts, yshifts, periodic=True, bilinear=False, *, units="pixels"
):
    """Shift every pattern: ``out[rx, ry, qx, qy] = in[rx, ry, qx - xs, qy - ys]`` (pixels).

    xshifts, yshifts : a number (every pattern) or one shift per scan position: an ``(Rx, Ry)``
        numpy array, dask array or DataArray (aligned to the scan by dim name and coords;
        dask-backed ones stay lazy and are consumed chunk by chunk). A NaN shift gives a NaN
        pattern.
    units : units of the shifts: ``"pixels"`` (default) or ``"mrad"`` / ``"A^-1"``, divided by
        the detector pixel size read from the coords (mrad <-> 1/Å at ``attrs['energy']``).
    periodic : if False, the rows/columns that wrapped around are zeroed (``round(shift)`` of
        them, half to even, as py4DSTEM).
    bilinear : bilinear interpolation instead of the (default) band-limited Fourier shift.

    Returns float32 (float64 for float64 or wide-integer data); py4DSTEM writes the result back
    into the input's dtype, truncating integer data. The Fourier shift runs batched real FFTs
    over each chunk (FFTW when installed) with a separable phase ramp.
    """
    datacube, data = frame_blocks(datacube)
    xs = cal.q_pixels(datacube, _shift_field(xshifts, "xshifts", datacube), units, "xshifts")
    ys = cal.q_pixels(datacube, _shift_field(yshifts, "yshifts", datacube), units, "yshifts")
    dtype = result_float_dtype(data.dtype)
    options = dict(periodic=bool(periodic), bilinear=bool(bilinear), out_dtype=dtype)
    meta = data._meta.astype(dtype)
    if any(isinstance(s, da.Array) for s in (xs, ys)):
        xs, ys = (_aligned(s, data.chunks[:2]) for s in (xs, ys))
        shifted = da.blockwise(
            _shift_block,
            "ijkl",
            data,
            "ijkl",
            *_blockwise_arg(xs),
            *_blockwise_arg(ys),
            dtype=dtype,
            meta=meta,
            token="datacube_diffraction_shift",
            **options,
        )
    else:  # numbers or whole numpy arrays: each array is one graph key, sliced per task
        xs, ys = (dask.delayed(s) if isinstance(s, np.ndarray) else s for s in (xs, ys))
        shifted = data.map_blocks(
            _shift_block,
            xs,
            ys,
            dtype=dtype,
            meta=meta,
            token="datacube_diffraction_shift",
            **options,
        )
    return rebuild(datacube, shifted)


def center_patterns(
    datacube, qx0, qy0, center=None, periodic=True, bilinear=False, *, units="pixels"
):
    """Shift every pattern so its origin ``(qx0, qy0)`` (numbers or ``(Rx, Ry)`` fields such as
    a measured centre of mass) lands on ``center`` (default ``(Qx // 2, Qy // 2)`` pixels, the
    zero-frequency pixel of an fft-shifted frame). Descan correction in one call:
    ``datacube_diffraction_shift(datacube, cx - qx0, cy - qy0, periodic, bilinear)``.

    units : of ``qx0``, ``qy0`` and ``center``: ``"pixels"`` (array indices from the corner
        pixel, py4DSTEM's convention) or ``"mrad"`` / ``"A^-1"``: positions in the coordinate
        frame of the datacube's Qx, Qy coords (e.g. ``center_of_mass(dc)["com_qx"]``), which a
        crop keeps.
    """
    datacube = check_datacube(datacube)
    qx, qy = datacube.shape[2:]
    if center is None:
        cx, cy = qx // 2, qy // 2
    else:
        cx, cy = (
            cal.q_pixels(datacube, c, units, "center", dim=d)
            for c, d in zip(parse_center(center, None), ("Qx", "Qy"), strict=True)
        )
    x0, y0 = (
        cal.q_pixels(datacube, _shift_field(v, n, datacube), units, n, dim=d)
        for v, n, d in ((qx0, "qx0", "Qx"), (qy0, "qy0", "Qy"))
    )
    return datacube_diffraction_shift(
        datacube, cx - x0, cy - y0, periodic=periodic, bilinear=bilinear
    )


def _shift_field(value, name, datacube):
    """A float, an ``(Rx, Ry)`` float64 numpy array or an ``(Rx, Ry)`` dask array (DataArrays
    aligned to the datacube's scan by dim name and coords)."""
    if not isinstance(value, xr.DataArray | da.Array):
        try:
            value = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"{name} must be a number or an {datacube.shape[:2]} array, got "
                f"{type(value).__name__}"
            ) from err
        if value.ndim == 0:
            if not np.isfinite(value):
                raise ValueError(f"{name} must be finite, got {float(value)}")
            return float(value)
    value = scan_array(value, datacube, name, finite=False)
    return value.astype(np.float64) if value.dtype != np.float64 else value


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
