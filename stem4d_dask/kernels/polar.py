"""Polar-elliptical transform and radial background of one diffraction pattern (pure functions).

Geometry (py4DSTEM's): ``p_ellipse = (qx0, qy0, a, b, theta)``: the centre in pixels (array axis
0, axis 1), the semi-axes (only ``b / a`` matters) and the orientation in radians. The
elliptical radius ``r`` is in semi-major pixels; a polar cell ``(phi, r)`` samples the frame at

    qx = qx0 + r cos(phi) cos(theta) - r sin(phi) (b/a) sin(theta)
    qy = qy0 + r cos(phi) sin(theta) + r sin(phi) (b/a) cos(theta)

by bilinear interpolation, where ``0 < qx < Nx - 1`` and ``0 < qy < Ny - 1`` (strict); other
cells are masked. Polar arrays are ``(N_phi, N_r)``: axis 0 is phi, axis 1 is r.

The sampling and the median are numpy (``numpy.ma`` has no cupy twin): cupy frames are copied to
the host by the 1D functions; the 2D background (:func:`background_2d`,
:func:`background_2d_frames`) runs in the module of its input. See
``stem4d_dask.preprocess.radialbkgrd`` for the differences from py4DSTEM 0.14.18.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

from . import Array, ArrayModule, array_module

DPHI = float(np.radians(2))  # default angular bin width, radians (2 degrees)

#: An ellipse ``(qx0, qy0, a, b, theta)``: centre (pixels), semi-axes, orientation (radians).
Ellipse: TypeAlias = Sequence[float]
#: ``r_range`` of :func:`polar_bins`: None, ``r_max``, or ``(r_min, r_max)`` (pixels).
RRange: TypeAlias = float | Sequence[float] | None


def _host(x: Array) -> np.ndarray:
    """``x`` as a numpy array (cupy arrays are copied to the host)."""
    return x.get() if array_module(x) is not np else np.asarray(x)


def polar_bins(
    shape: Sequence[int],
    p_ellipse: Ellipse,
    dr: float = 1,
    dphi: float = DPHI,
    r_range: RRange = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Bin centres ``(r_bins, phi_bins)`` of the polar grid of a ``shape = (Nx, Ny)`` frame.

    r_range : None (``r`` from 0 to ``r_max = ceil`` of the largest distance, in pixels, from the
        centre to the four corners ``(0, 0), (Nx, 0), (0, Ny), (Nx, Ny)``), a number (``r_max``)
        or a pair ``(r_min, r_max)``, in semi-major pixels.
    Returns ``r_bins = arange(r_min + dr/2, r_max + dr/2, dr)`` (pixels) and ``phi_bins =
    arange(-pi + dphi/2, pi + dphi/2, dphi)`` (radians).
    """
    qx0, qy0 = p_ellipse[0], p_ellipse[1]
    nx, ny = shape
    r_min: float
    if r_range is None:
        corners = np.array([[0, 0], [nx, 0], [0, ny], [nx, ny]])
        dist = np.sqrt(
            np.sum((corners - np.broadcast_to(np.array((qx0, qy0)), corners.shape)) ** 2, axis=1)
        )
        r_min, r_max = 0, np.ceil(np.max(dist)).astype(int)
    else:
        try:
            r_min, r_max = r_range[0], r_range[1]  # type: ignore[index]  # a number: TypeError
        except TypeError:
            r_min, r_max = 0, r_range
    r_bins = np.arange(r_min + dr / 2.0, r_max + dr / 2.0, dr)
    phi_bins = np.arange(-np.pi + dphi / 2.0, np.pi + dphi / 2.0, dphi)
    return r_bins, phi_bins


@dataclass(frozen=True)
class PolarPlan:
    """Where and how the polar cells sample a frame (reused for every frame of one geometry).

    rr, pp : ``(N_phi, N_r)`` r (pixels) and phi (radians) of each cell.
    inside : ``(N_phi, N_r)`` bool, the cells whose sample point is strictly inside the frame.
    x_inds, y_inds : ``(4, M)`` int pixel indices of the bilinear neighbours of the M inside
        cells (in ``inside.ravel()`` order); weights : ``(4, M)`` float64 bilinear weights.
    shape : the frame shape ``(Nx, Ny)``.
    """

    rr: np.ndarray
    pp: np.ndarray
    inside: np.ndarray
    x_inds: np.ndarray
    y_inds: np.ndarray
    weights: np.ndarray
    shape: tuple

    def sample(self, frame: np.ndarray) -> np.ndarray:
        """Bilinear samples of a ``shape`` frame at the cells: ``(N_phi, N_r)`` float64, 0 at
        the cells outside the frame."""
        out = np.zeros(self.rr.size)
        out[self.inside.ravel()] = np.sum(frame[self.x_inds, self.y_inds] * self.weights, axis=0)
        return out.reshape(self.rr.shape)

    @property
    def n_valid_r(self) -> int:
        """Number of leading r columns kept by the 1D background: up to and including the last
        column with at least one cell inside the frame."""
        valid = np.flatnonzero(self.inside.any(axis=0))
        return int(valid[-1]) + 1 if valid.size else 0

    @property
    def r_full(self) -> float:
        """The largest r (pixels) up to which every column is entirely inside the frame (0.0
        if the first column is not)."""
        full = self.inside.all(axis=0)
        n = int(np.argmin(full)) if not full.all() else full.size
        return float(self.rr[0, n - 1]) if n else 0.0


def polar_plan(
    shape: Sequence[int],
    p_ellipse: Ellipse,
    dr: float = 1,
    dphi: float = DPHI,
    r_range: RRange = None,
) -> PolarPlan:
    """The :class:`PolarPlan` of a ``shape`` frame for the geometry ``p_ellipse`` and the bins
    of :func:`polar_bins`."""
    qx0, qy0, a, b, theta = p_ellipse
    nx, ny = (int(n) for n in shape)
    r_bins, phi_bins = polar_bins((nx, ny), p_ellipse, dr, dphi, r_range)
    rr, pp = np.meshgrid(r_bins, phi_bins)
    xr = rr * np.cos(pp)
    yr = rr * np.sin(pp)
    qx = qx0 + xr * np.cos(theta) - yr * (b / a) * np.sin(theta)
    qy = qy0 + xr * np.sin(theta) + yr * (b / a) * np.cos(theta)
    inside = (qx > 0) & (qy > 0) & (qx < nx - 1) & (qy < ny - 1)
    x_floor = np.floor(qx[inside])
    y_floor = np.floor(qy[inside])
    dx = qx[inside] - x_floor
    dy = qy[inside] - y_floor
    x_inds = np.vstack((x_floor, x_floor + 1, x_floor, x_floor + 1)).astype(int)
    y_inds = np.vstack((y_floor, y_floor, y_floor + 1, y_floor + 1)).astype(int)
    weights = np.vstack(((1 - dx) * (1 - dy), dx * (1 - dy), (1 - dx) * dy, dx * dy))
    return PolarPlan(rr, pp, inside, x_inds, y_inds, weights, (nx, ny))


def cartesian_to_polarelliptical_transform(
    data: Array,
    p_ellipse: Ellipse,
    dr: float = 1,
    dphi: float = DPHI,
    r_range: RRange = None,
    mask: Array | None = None,
    maskThresh: float = 0.99,
) -> tuple[np.ma.MaskedArray, np.ndarray, np.ndarray]:
    """Resample a 2D frame onto the polar-elliptical grid (py4DSTEM's function of that name).

    data : ``(Nx, Ny)`` real array. p_ellipse : ``(qx0, qy0, a, b, theta)`` (pixels, radians).
    dr : r bin width (semi-major pixels); dphi : phi bin width (radians); r_range : see
        :func:`polar_bins`.
    mask : ``(Nx, Ny)``, True/1 where the data are good (default: all good). It is resampled
        like the data (0 at the cells whose sample point is not strictly inside the frame) and
        a cell is masked where the resampled mask is ``< maskThresh`` (at the default 0.99: any
        bad neighbour, or outside the frame).
    Returns ``(polar, rr, pp)``: ``polar`` a ``numpy.ma.MaskedArray`` ``(N_phi, N_r)`` float64
    (0 under the cells outside the frame), ``rr`` / ``pp`` the ``(N_phi, N_r)`` r (pixels) and
    phi (radians) of the cells.
    """
    data = _host(data)
    if data.ndim != 2:
        raise ValueError(f"data must be a 2D frame, got shape {data.shape}")
    plan = polar_plan(data.shape, p_ellipse, dr, dphi, r_range)
    values = plan.sample(data)
    if mask is None:
        mask = np.ones(data.shape)
    mask = _host(mask)
    if mask.shape != data.shape:
        raise ValueError(f"mask must have the shape of data {data.shape}, got {mask.shape}")
    polar_mask = plan.sample(mask) < maskThresh
    return np.ma.array(data=values, mask=polar_mask), plan.rr, plan.pp


def masked_median(values: npt.ArrayLike, mask: np.ndarray) -> np.ndarray:
    """Median over axis 0 (phi) of the cells of ``values`` where ``mask`` is False, like
    ``numpy.ma.median(numpy.ma.array(values, mask=mask), axis=0)``: the mean of the two middle
    values for an even count, NaN for a fully masked column or an unmasked NaN in it.
    Returns ``(N_r,)`` float64."""
    values = np.asarray(values, dtype=np.float64)
    s = np.sort(np.where(mask, np.inf, values), axis=0)
    n = np.sum(~mask, axis=0)
    lo = np.maximum((n - 1) // 2, 0)
    hi = np.maximum(n // 2, 0)
    low = np.take_along_axis(s, lo[None, :], axis=0)[0]
    high = np.take_along_axis(s, hi[None, :], axis=0)[0]
    out = (low + high) / 2.0
    out[n == 0] = np.nan
    out[np.any(np.isnan(values) & ~mask, axis=0)] = np.nan
    return out


def iterated_median(
    values: np.ndarray,
    geometric_mask: np.ndarray,
    mask_update_iter: int = 3,
    min_relative_threshold: float = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """Median over phi with the bright cells (Bragg peaks) masked iteratively.

    ``mask_update_iter + 1`` medians are taken; before each one but the first the mask is
    rebuilt as ``geometric_mask | (values / median > min_relative_threshold)`` with the
    previous median, and a column that this would mask entirely keeps its previous mask.
    values, geometric_mask : ``(N_phi, N_r)``. Returns ``(median (N_r,) float64, mask used for
    it (N_phi, N_r) bool)``.
    """
    mask = np.array(geometric_mask, dtype=bool, copy=True)
    median = masked_median(values, mask)
    for _ in range(int(mask_update_iter)):
        with np.errstate(divide="ignore", invalid="ignore"):
            bright = values / median > min_relative_threshold
        update = geometric_mask | bright
        full = update.all(axis=0)
        update[:, full] = mask[:, full]
        if np.array_equal(update, mask):
            break  # converged: further medians would be identical
        mask = update
        median = masked_median(values, mask)
    return median, mask


def finish_background(
    background: npt.ArrayLike,
    min_background_value: float = 1e-3,
    smoothing: bool = False,
    window: int = 3,
    polyorder: int = 2,
    smoothing_log: bool = True,
) -> np.ndarray:
    """Clamp a 1D background to ``>= min_background_value`` and optionally smooth it with a
    Savitzky-Golay filter (``window`` odd, ``polyorder < window``; in log space when
    ``smoothing_log``). Returns a new float64 array."""
    out = np.maximum(np.asarray(background, dtype=np.float64), min_background_value)
    if smoothing:
        from scipy.signal import savgol_filter

        if smoothing_log:
            out = np.log(out)
        out = savgol_filter(out, window, polyorder)
        if smoothing_log:
            out = np.exp(out)
    return out


def background_1d(
    frame: Array,
    plan: PolarPlan,
    *,
    mask_update_iter: int = 3,
    min_relative_threshold: float = 4,
    min_background_value: float = 1e-3,
    smoothing: bool = False,
    window: int = 3,
    polyorder: int = 2,
    smoothing_log: bool = True,
    return_polar: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ma.MaskedArray]:
    """Radial background of one frame on the first ``plan.n_valid_r`` r bins.

    Returns the ``(n_valid_r,)`` float64 background (NaN in a bin with no sample inside the
    frame), plus, when ``return_polar``, the polar ``numpy.ma`` array ``(N_phi, n_valid_r)``
    masked as it was for the final median.
    """
    n = plan.n_valid_r
    values = plan.sample(_host(frame))[:, :n]
    median, mask = iterated_median(
        values, ~plan.inside[:, :n], mask_update_iter, min_relative_threshold
    )
    background = finish_background(
        median, min_background_value, smoothing, window, polyorder, smoothing_log
    )
    if return_polar:
        return background, np.ma.array(data=values, mask=mask)
    return background


def elliptical_radius(shape: Sequence[int], p_ellipse: Ellipse, xp: ArrayModule = np) -> Array:
    """``(Nx, Ny)`` elliptical radius (semi-major pixels) of every pixel of a ``shape`` frame,
    the inverse of the polar sampling: ``sqrt((xc cos t + yc sin t)^2 + (xc sin t - yc cos
    t)^2 / (b/a)^2)`` with ``xc = i - qx0``, ``yc = j - qy0``."""
    qx0, qy0, a, b, theta = p_ellipse
    yc, xc = xp.meshgrid(xp.arange(0, shape[1]) - qy0, xp.arange(0, shape[0]) - qx0)
    return xp.sqrt(
        ((xc * np.cos(theta) + yc * np.sin(theta)) ** 2)
        + (((xc * np.sin(theta) - yc * np.cos(theta)) ** 2) / ((b / a) ** 2))
    )


class RadialInterpolator:
    """Linear interpolation in r, with linear extrapolation beyond ``r_bins[0]`` and
    ``r_bins[-1]`` (``scipy.interpolate.interp1d(..., fill_value="extrapolate")``, same
    arithmetic), precomputed for the elliptical radius of every pixel of a ``shape`` frame."""

    def __init__(
        self, shape: Sequence[int], r_bins: Array, p_ellipse: Ellipse, xp: ArrayModule = np
    ) -> None:
        r = elliptical_radius(shape, p_ellipse, xp)
        x = xp.asarray(r_bins, dtype=xp.float64)
        hi = xp.clip(xp.searchsorted(x, r), 1, x.shape[0] - 1)
        self.lo, self.hi = hi - 1, hi
        self.offset = r - x[self.lo]
        self.step = x[self.hi] - x[self.lo]

    def __call__(self, background1d: Array) -> Array:
        """The ``shape`` float64 frame of ``background1d`` (``(N_r,)``) at every pixel."""
        y_lo, y_hi = background1d[self.lo], background1d[self.hi]
        return (y_hi - y_lo) / self.step * self.offset + y_lo


def background_2d(
    shape: Sequence[int], background1d: Array, r_bins: Array, p_ellipse: Ellipse
) -> Array:
    """2D background of a ``shape`` frame: ``background1d`` (``(N_r,)``, at the elliptical
    radii ``r_bins``, pixels, increasing) interpolated linearly at the elliptical radius of
    every pixel, extrapolated linearly outside ``[r_bins[0], r_bins[-1]]``. Returns ``shape``
    float64 (cupy when ``background1d`` is cupy)."""
    xp = array_module(background1d)
    bg = xp.asarray(background1d, dtype=xp.float64)
    return RadialInterpolator(shape, r_bins, p_ellipse, xp)(bg)


# ---- chunk kernels (a block of whole frames, shape (cRx, cRy, Qx, Qy)) ----------------------


def _frames(block: Array) -> Iterator[tuple[int, int]]:
    return ((i, j) for i in range(block.shape[0]) for j in range(block.shape[1]))


def background_1d_frames(block: Array, p_ellipse: Ellipse, options: Mapping[str, Any]) -> Array:
    """``(cRx, cRy, n_valid_r)`` float64: :func:`background_1d` of every frame of ``block``
    (``options`` are its keyword arguments), in the array module of ``block``."""
    xp = array_module(block)
    host = _host(block)
    plan = polar_plan(host.shape[2:], p_ellipse)
    out = np.empty(host.shape[:2] + (plan.n_valid_r,))
    for i, j in _frames(host):
        out[i, j] = background_1d(host[i, j], plan, **options)
    return out if xp is np else xp.asarray(out)


def background_2d_frames(
    backgrounds: Array,
    r_bins: Array,
    shape: Sequence[int],
    p_ellipse: Ellipse,
    dtype: npt.DTypeLike = np.float64,
) -> Array:
    """``(cRx, cRy, Nx, Ny)`` ``dtype``: the 2D background of every 1D background in
    ``backgrounds`` (``(cRx, cRy, N_r)``) for frames of ``shape``."""
    xp = array_module(backgrounds)
    interp = RadialInterpolator(shape, r_bins, p_ellipse, xp)
    bgs = xp.asarray(backgrounds, dtype=xp.float64)
    out = xp.empty(bgs.shape[:2] + tuple(shape), dtype=dtype)
    for i, j in _frames(out):
        out[i, j] = interp(bgs[i, j])
    return out


def subtract_background_frames(
    block: Array, p_ellipse: Ellipse, options: Mapping[str, Any], out_dtype: npt.DTypeLike
) -> Array:
    """Every frame of ``block`` minus its own 2D radial background (1D background of the
    frame with ``options``, then :func:`background_2d`), as ``out_dtype``."""
    xp = array_module(block)
    host = _host(block)
    plan = polar_plan(host.shape[2:], p_ellipse)
    interp = RadialInterpolator(host.shape[2:], plan.rr[0, : plan.n_valid_r], p_ellipse)
    out = np.empty(host.shape, dtype=out_dtype)
    for i, j in _frames(host):
        bg = background_1d(host[i, j], plan, **options)
        out[i, j] = host[i, j] - interp(bg)
    return out if xp is np else xp.asarray(out)


def subtract_fixed_background(block: Array, background2d: Array, out_dtype: npt.DTypeLike) -> Array:
    """``block - background2d`` (one ``(Nx, Ny)`` background for every frame) as
    ``out_dtype``."""
    xp = array_module(block)
    bg = xp.asarray(background2d, dtype=xp.float64)
    out = xp.empty(block.shape, dtype=out_dtype)
    for i, j in _frames(block):
        out[i, j] = block[i, j] - bg
    return out
