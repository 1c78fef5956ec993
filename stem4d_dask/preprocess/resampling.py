"""Resampling and zero-padding of the detector axes: ``resample_data_diffraction`` and
``pad_data_diffraction`` (py4DSTEM names and parameters), lazy, one task per input chunk.

The calibration follows the output size actually produced: the Qx, Qy coords are those of the
points sampled, so ``q_pixel_size`` is multiplied by ``Qx_in / Qx_out`` (py4DSTEM's Fourier path
divides by the nominal factor instead). Bilinear output pixel ``j`` sits at input pixel
``(j + 0.5) s - 0.5`` (``s = Q_in / Q_out``), a Fourier one at ``j s``; padding puts the
first input pixel at output pixel ``(S - Q) // 2``. Both need regular detector coords (each
axis keeps its own step); an irregular axis raises ``ValueError``.
"""

from __future__ import annotations

import numpy as np

from .. import coords as cal
from ..graph import frame_blocks, rebuild, result_float_dtype
from ..kernels.resample import bilinear_resample, fourier_resample, pad_frames
from ..values import value_range

METHODS = ("bilinear", "fourier")


def resample_data_diffraction(
    datacube, resampling_factor=None, output_size=None, method="bilinear", conserve_array_sums=False
):
    """Resample every diffraction pattern to a new size.

    resampling_factor : a number or ``(fx, fy)`` > 0; the output size is ``round(f * Q)``
        (half to even, as py4DSTEM's bilinear path; its Fourier path floors).
    output_size : ``(Sx, Sy)`` pixels (or one int for both). Give exactly one of the two.
    method : ``'bilinear'`` (pixel-centre-aligned linear interpolation with edge replication,
        = ``scipy.ndimage.zoom(order=1, grid_mode=True, mode='nearest')``) or ``'fourier'``
        (zero-pad or crop the spectrum; band-limited).
    conserve_array_sums : if True each pattern's sum is kept (values are divided by
        ``Sx*Sy / (Qx*Qy)``); else pixel values are kept.

    Returns float32 (float64 for float64 or wide-integer data). Both factors of a pair are used
    (py4DSTEM's Fourier path uses only the first).
    """
    datacube, data = frame_blocks(datacube)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    qx, qy = data.shape[2:]
    size = _output_size(
        resampling_factor,
        output_size,
        (qx, qy),
        minimum=1,
        names=("resampling_factor", "output_size"),
    )
    dtype = result_float_dtype(data.dtype)
    kernel = bilinear_resample if method == "bilinear" else fourier_resample
    resampled = data.map_blocks(
        kernel,
        size,
        bool(conserve_array_sums),
        dtype,
        dtype=dtype,
        chunks=data.chunks[:2] + ((size[0],), (size[1],)),
        meta=data._meta.astype(dtype),
        token=f"resample_data_diffraction_{method}",
    )
    coords = {}
    for d, n_in, n_out in zip(("Qx", "Qy"), (qx, qy), size, strict=True):
        scale = n_in / n_out
        first = (0.5 * scale - 0.5) if method == "bilinear" else 0.0
        coords[d] = cal.resampled(datacube, d, n_out, first, scale, "resample_data_diffraction")
    return rebuild(datacube, resampled, coords, scale={"q": qx / size[0]})


def pad_data_diffraction(datacube, pad_factor=None, output_size=None):
    """Zero-pad every diffraction pattern; the dtype and ``q_pixel_size`` are kept.

    pad_factor : a number or ``(fx, fy)`` >= 1; the output size is ``round(f * Q)``.
    output_size : ``(Sx, Sy)`` >= ``(Qx, Qy)`` (or one int for both). Give exactly one.

    The ``S - Q`` added pixels go ``(S - Q) // 2`` before and the rest after, along each axis
    (py4DSTEM splits ``pad_factor`` padding as ``round(Q (f - 1) / 2)`` on both sides, so
    ``pad_factor=2`` on 5 pixels gives 9, not 10).
    """
    datacube, data = frame_blocks(datacube)
    qx, qy = data.shape[2:]
    size = _output_size(
        pad_factor, output_size, (qx, qy), minimum=(qx, qy), names=("pad_factor", "output_size")
    )
    before = tuple((s - q) // 2 for s, q in zip(size, (qx, qy), strict=True))
    after = tuple(s - q - b for s, q, b in zip(size, (qx, qy), before, strict=True))
    padded = data.map_blocks(
        pad_frames,
        before,
        after,
        dtype=data.dtype,
        chunks=data.chunks[:2] + ((size[0],), (size[1],)),
        meta=data._meta,
        token="pad_data_diffraction",
    )
    coords = {
        d: cal.resampled(datacube, d, n, -b, 1.0, "pad_data_diffraction")
        for d, n, b in zip(("Qx", "Qy"), size, before, strict=True)
    }
    lo, hi = value_range(datacube) or (None, None)
    return rebuild(datacube, padded, coords, None if lo is None else (min(lo, 0), hi))


def _output_size(factor, output_size, shape, *, minimum, names):
    """The ``(Sx, Sy)`` asked for by exactly one of ``factor`` and ``output_size``."""
    fname, sname = names
    if (factor is None) == (output_size is None):
        raise ValueError(
            f"give exactly one of {fname} and {sname}, got {fname}={factor!r}, "
            f"{sname}={output_size!r}"
        )
    lows = minimum if isinstance(minimum, tuple) else (minimum, minimum)
    if factor is not None:
        pair = _pair(factor, fname)
        padding = fname == "pad_factor"
        if not all(np.isfinite(f) and (f >= 1 if padding else f > 0) for f in pair):
            raise ValueError(f"{fname} must be {'>= 1' if padding else '> 0'}, got {factor!r}")
        size = tuple(int(np.round(f * q)) for f, q in zip(pair, shape, strict=True))
        if min(size) < 1:
            raise ValueError(f"{fname} {factor!r} leaves no pixels of a {shape} detector")
        return size
    pair = _pair(output_size, sname)
    if not all(isinstance(s, int | np.integer) and not isinstance(s, bool) for s in pair):
        raise ValueError(f"{sname} must be integers, got {output_size!r}")
    if any(int(s) < lo for s, lo in zip(pair, lows, strict=True)):
        raise ValueError(f"{sname} must be >= {lows}, got {output_size!r}")
    return tuple(int(s) for s in pair)


def _pair(value, name):
    values = tuple(np.ravel(value)) if np.ndim(value) else (value, value)
    if len(values) != 2:
        raise ValueError(f"{name} must be one value or a pair (x, y), got {value!r}")
    try:
        return tuple(v if isinstance(v, int | np.integer) else float(v) for v in values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numbers, got {value!r}") from err
