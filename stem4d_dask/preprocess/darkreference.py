"""Dark references from detector-edge strips, and dark subtraction (py4DSTEM's
``preprocess.darkreference`` names and parameters, plus ``seed`` and ``subtract_dark``), lazy.

A dark reference is a lazy float64 ``(Qx, Qy)`` DataArray. Frames are drawn at random with
``numpy.random.default_rng(seed)`` (same seed, same frames); only the chunks holding a drawn frame
are read. Differences from py4DSTEM 0.14.18: streak profiles are true means (py4DSTEM floors
them with ``//``), random frames come from ``seed`` instead of the global RNG, and bad
arguments raise ``ValueError`` naming them.
"""

from __future__ import annotations

import warnings

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ..backend import meta, to_host
from ..checks import checked_int, detector_array
from ..datacube import Q_DIMS, calibration_attrs
from ..graph import drawn_frames, frame_blocks, rebuild, result_float_dtype
from ..kernels.dark import strip_sums, subtract_reference

SIDES = ("start", "end")
DIRECTIONS = ("x", "y")


def get_bksbtr_DP(datacube, darkref, Rx, Ry):
    """The pattern at scan position ``(Rx, Ry)`` minus ``darkref`` ``(Qx, Qy)``: a lazy float64
    ``(Qx, Qy)`` DataArray, of the datacube's array module (a pattern of cupy chunks is cupy)."""
    datacube, data = frame_blocks(datacube)
    dark = detector_array(darkref, datacube, "darkref")
    rx, ry = data.shape[:2]
    Rx, Ry = checked_int(Rx, "Rx", 0, rx), checked_int(Ry, "Ry", 0, ry)
    frame = da.map_blocks(
        subtract_reference,
        data[Rx, Ry],
        dark,
        np.float64,
        dtype=np.float64,
        meta=meta(data._meta, 2, np.float64),
    )
    return _q_array(datacube, frame, "background_subtracted_pattern")


def get_background_streaks(datacube, N_frames, width, side="end", direction="x", seed=None):
    """Streak background from a ``width``-pixel strip at the ``side`` of the detector:
    ``direction='x'`` -> :func:`get_background_streaks_x`, ``'y'`` -> ``_y``."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if direction == "x":
        return get_background_streaks_x(datacube, width, N_frames, side, seed)
    return get_background_streaks_y(datacube, N_frames, width, side, seed)


def get_background_streaks_x(datacube, width, N_frames, side="start", seed=None):
    """Per-column offsets (streaks running along Qx): the mean over ``N_frames`` random frames
    and over the first (``side='start'``) or last ``width`` detector rows, repeated on every row.
    Lazy float64 ``(Qx, Qy)``."""
    datacube, data = frame_blocks(datacube)
    profile = _streak_profile(
        data, width, N_frames, side, "x", np.random.default_rng(seed), "width"
    )
    return _q_array(datacube, da.broadcast_to(profile[None, :], data.shape[2:]), "darkreference")


def get_background_streaks_y(datacube, N_frames, width, side="start", seed=None):
    """Per-row offsets (streaks running along Qy) from the first/last ``width`` detector
    columns, repeated on every column. Lazy float64 ``(Qx, Qy)``."""
    datacube, data = frame_blocks(datacube)
    profile = _streak_profile(
        data, width, N_frames, side, "y", np.random.default_rng(seed), "width"
    )
    return _q_array(datacube, da.broadcast_to(profile[:, None], data.shape[2:]), "darkreference")


def get_darkreference(
    datacube, N_frames, width_x=0, width_y=0, side_x="end", side_y="end", seed=None
):
    """Dark reference from streaks along x (``width_x`` > 0), y (``width_y`` > 0) or both.

    With both, ``X + Y - (mean(X) width_x + mean(Y) width_y) / (width_x + width_y)`` so the
    global level is not counted twice; the x frames are drawn first, then the y frames, from one
    generator. With neither, a warning and zeros. Lazy float64 ``(Qx, Qy)``.
    """
    datacube, data = frame_blocks(datacube)
    wx = _width(width_x, "width_x", data.shape[2], allow_zero=True)
    wy = _width(width_y, "width_y", data.shape[3], allow_zero=True)
    rng = np.random.default_rng(seed)
    if wx == 0 and wy == 0:
        warnings.warn(
            "get_darkreference: width_x and width_y are both 0; returning zeros", stacklevel=2
        )
        return _q_array(datacube, da.zeros(data.shape[2:], dtype=np.float64), "darkreference")
    shape = data.shape[2:]
    x = y = None
    if wx:
        px = _streak_profile(data, wx, N_frames, side_x, "x", rng, "width_x", "side_x")
        x = da.broadcast_to(px[None, :], shape)
    if wy:
        py = _streak_profile(data, wy, N_frames, side_y, "y", rng, "width_y", "side_y")
        y = da.broadcast_to(py[:, None], shape)
    if x is None or y is None:
        return _q_array(datacube, x if y is None else y, "darkreference")
    level = (x.mean() * wx + y.mean() * wy) / (wx + wy)
    return _q_array(datacube, x + y - level, "darkreference")


def subtract_dark(datacube, darkref):
    """``datacube - darkref`` for every pattern, lazily: float32 (float64 for float64 or
    wide-integer data). ``darkref``: ``(Qx, Qy)`` numpy array (positional) or DataArray
    (aligned by dim name and coords: a dark of the full detector serves a cropped datacube; lazy
    ones stay lazy and are computed once, as one graph key). NaN or inf in ``darkref`` raise
    ``ValueError``."""
    datacube, data = frame_blocks(datacube)
    dark = detector_array(darkref, datacube, "darkref")
    dtype = result_float_dtype(data.dtype)
    out = da.blockwise(
        _subtract_block,
        "ijkl",
        data,
        "ijkl",
        dark,
        "kl",
        dtype=dtype,
        meta=data._meta.astype(dtype),
        token="subtract_dark",
        out_dtype=dtype,
    )
    return rebuild(datacube, out)


def _subtract_block(block, reference, *, out_dtype):
    return subtract_reference(block, reference, out_dtype)


def _width(value, name, limit, allow_zero=False) -> int:
    width = checked_int(value, name, 0 if allow_zero else 1)
    if width == 0:
        return 0
    if width > limit:
        raise ValueError(f"{name} {width} is wider than the detector ({limit} pixels)")
    return width


def _streak_profile(
    data, width, n_frames, side, direction, rng, width_name, side_name="side"
) -> da.Array:
    """Lazy float64 mean strip profile over ``n_frames`` frames drawn by ``rng``."""
    width = _width(width, width_name, data.shape[2 if direction == "x" else 3])
    if side not in SIDES:
        raise ValueError(f"{side_name} must be one of {SIDES}, got {side!r}")
    _, parts = drawn_frames(data, n_frames, rng)
    partials = [
        dask.delayed(_host_strip_sums)(block, local, width, side, direction)
        for block, local in parts
    ]
    n = int(n_frames)
    length = data.shape[3 if direction == "x" else 2]
    total = da.from_delayed(
        dask.delayed(sum)(partials), (length,), dtype=np.float64, meta=np.empty(0, np.float64)
    )
    return total / (width * n)


def _host_strip_sums(block, selected, width, side, direction):
    """:func:`strip_sums` of one chunk as a numpy array (a cupy chunk's small profile is
    copied to the host in its task): dark references are numpy whatever the chunks."""
    return to_host(strip_sums(block, selected, width, side, direction))


def _q_array(datacube, data, name) -> xr.DataArray:
    coords = {d: datacube.coords[d] for d in Q_DIMS}
    attrs = calibration_attrs(datacube.attrs, ("q",))
    return xr.DataArray(data, dims=Q_DIMS, coords=coords, name=name, attrs=attrs)
