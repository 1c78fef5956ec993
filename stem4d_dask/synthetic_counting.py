"""Synthetic electron-counting scans with known strikes, generated lazily chunk by chunk.

Each frame is a sparse set of electron strikes and X-ray hits on a dark offset with streaks and
Gaussian read noise, all in detector counts (ADU). The model of one frame at scan position
``(rx, ry)`` (positions in detector pixels, the centre of pixel ``i`` at ``i``):

1. ``n ~ Poisson(electrons_per_pixel * Qx * Qy)`` electrons, uniform over the interior
   ``[2, Q - 3]`` (at least 2 px from every edge, so edge strips used for dark references hold
   no electron signal).
2. Each electron deposits ``electron_signal * L`` counts with ``L`` lognormal, mean 1,
   log-sigma ``signal_sigma`` (a mild stand-in for the Landau spread of deposited energy).
3. A fraction ``spread_fraction`` of electrons ("spread" strikes) has a continuous position
   and spreads its signal over the pixels as a pixel-integrated 2D Gaussian of sigma
   ``footprint_sigma`` (px), truncated to the 5x5 pixels around the nearest pixel and
   renormalised (the frame gets exactly the electron's signal). The other electrons land in one
   pixel and their true position is that pixel's centre (integers).
4. A fraction ``pair_fraction`` of electrons is placed next to an earlier electron of the frame
   (its "partner", which gets no other partner): a one-pixel partner of a one-pixel electron
   sits in one of the 8 adjacent pixels (distance 1 or sqrt(2) px); a spread partner of a spread
   electron sits at a distance uniform in [1, 1.5] px in a uniform direction (the partner takes
   the kind of the electron it joins). Components that would leave the interior are mirrored.
5. ``m ~ Poisson(xrays_per_frame)`` X-rays, each ``xray_signal`` counts in one pixel anywhere
   on the detector.
6. ``frame = rint(deposits + dark + N(0, read_noise))``, clipped to the range of an integer
   ``dtype``, with ``dark = dark_level + row_streak[qx] + column_streak[qy]``: per-column
   offsets constant along Qx (what ``get_background_streaks_x`` estimates) and per-row offsets
   constant along Qy (``get_background_streaks_y``), each ``N(0, streak_amplitude)`` per line.

Randomness: the strikes of a frame come from ``default_rng([seed, rx, ry, 0])``, its read noise
from ``default_rng([seed, rx, ry, 1])`` and the streaks from ``default_rng([seed, 0xDA4C])``, so
the data are the same whatever the chunking, and the ground truth is recomputed from the model
without generating or reading any frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import xarray as xr
from scipy.special import ndtr

from .checks import checked_int, real
from .chunks import normalize_chunks
from .datacube import from_array
from .lazy import lazy_from_loader

EDGE = 2  # strikes keep at least this many pixels from every detector edge
_HALF = 2  # spread footprints cover the (2 * _HALF + 1)^2 pixels around the nearest pixel
_NEIGHBOURS = np.array(
    [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)], dtype=np.float64
)
_DARK_KEY = 0xDA4C


class Strikes(NamedTuple):
    """True electron strikes (one row per electron).

    ``rx``, ``ry``: scan position (int64); ``position``: ``(n, 2)`` float64 detector position
    ``(qx, qy)`` in pixels (the centre of pixel ``i`` at ``i``; integers for one-pixel strikes);
    ``signal``: deposited counts (float64); ``spread``: bool, spread over neighbouring pixels
    (sub-pixel position); ``partner``: int64 row of the electron it was placed next to (and
    vice versa), -1 for none. Rows of one frame are contiguous; ``partner`` indexes this table.
    """

    rx: np.ndarray
    ry: np.ndarray
    position: np.ndarray
    signal: np.ndarray
    spread: np.ndarray
    partner: np.ndarray


@dataclass(frozen=True)
class _CountingModel:
    """Everything needed to draw any frame; small (two streak profiles), so every task
    carries it. Units: counts (ADU) and detector pixels."""

    scan_shape: tuple
    detector_shape: tuple
    electrons_per_pixel: float
    read_noise: float
    dark_level: float
    row_streaks: tuple  # (Qx,) offset of each detector row, counts
    column_streaks: tuple  # (Qy,) offset of each detector column, counts
    electron_signal: float
    signal_sigma: float
    spread_fraction: float
    footprint_sigma: float
    pair_fraction: float
    xrays_per_frame: float
    xray_signal: float
    seed: int
    dtype: str

    def dark(self) -> np.ndarray:
        """The true dark offset ``(Qx, Qy)``, float64 counts."""
        return (
            self.dark_level
            + np.asarray(self.row_streaks)[:, None]
            + np.asarray(self.column_streaks)[None, :]
        )

    def strikes(self, rx: int, ry: int) -> Strikes:
        """The electrons of frame ``(rx, ry)`` (``partner`` indexes within the frame)."""
        return self._draw(rx, ry)[0]

    def xrays(self, rx: int, ry: int) -> np.ndarray:
        """``(m, 2)`` int64 pixels hit by X-rays in frame ``(rx, ry)``."""
        return self._draw(rx, ry)[1]

    def _draw(self, rx, ry):
        """Strikes and X-rays of one frame, from the frame's own strike stream."""
        rng = np.random.default_rng([self.seed, int(rx), int(ry), 0])
        qx, qy = self.detector_shape
        hi = np.array([qx - 1 - EDGE, qy - 1 - EDGE], dtype=np.float64)
        n = int(rng.poisson(self.electrons_per_pixel * qx * qy))
        # a fixed set of draws per electron, whatever is used, keeps the stream simple
        spread = rng.random(n) < self.spread_fraction
        wants_partner = rng.random(n) < self.pair_fraction
        s = self.signal_sigma
        signal = self.electron_signal * rng.lognormal(-0.5 * s * s, s, n)
        pixel = rng.integers(EDGE, hi.astype(np.int64) + 1, size=(n, 2)).astype(np.float64)
        continuous = rng.uniform(EDGE, hi, size=(n, 2))
        radius = rng.uniform(1.0, 1.5, n)
        angle = rng.uniform(0.0, 2 * np.pi, n)
        direction = rng.integers(0, 8, n)
        choice = rng.random(n)
        position = np.where(spread[:, None], continuous, pixel)
        partner = np.full(n, -1, dtype=np.int64)
        for k in np.flatnonzero(wants_partner):
            free = np.flatnonzero(partner[:k] < 0)
            free = free[~wants_partner[free]]  # anchors are electrons placed on their own
            if free.size == 0:
                continue
            j = int(free[int(choice[k] * free.size)])
            partner[k], partner[j] = j, k
            spread[k] = spread[j]
            if spread[j]:
                offset = radius[k] * np.array([np.cos(angle[k]), np.sin(angle[k])])
            else:
                offset = _NEIGHBOURS[direction[k]]
            p = position[j] + offset
            out = (p < EDGE) | (p > hi)
            p[out] = position[j][out] - offset[out]
            position[k] = p
        m = int(rng.poisson(self.xrays_per_frame))
        xrays = np.stack([rng.integers(0, qx, m), rng.integers(0, qy, m)], axis=1)
        strikes = Strikes(
            np.full(n, int(rx), dtype=np.int64),
            np.full(n, int(ry), np.int64),
            position,
            signal,
            spread,
            partner,
        )
        return strikes, xrays.astype(np.int64)

    def deposits(self, rx: int, ry: int) -> np.ndarray:
        """Noiseless signal of frame ``(rx, ry)`` above the dark, ``(Qx, Qy)`` float64 counts."""
        strikes, xrays = self._draw(rx, ry)
        image = np.zeros(self.detector_shape, dtype=np.float64)
        one = ~strikes.spread
        pixels = np.rint(strikes.position[one]).astype(np.int64)
        np.add.at(image, (pixels[:, 0], pixels[:, 1]), strikes.signal[one])
        pos = strikes.position[strikes.spread]
        if len(pos):
            centre = np.rint(pos).astype(np.int64)
            steps = np.arange(-_HALF, _HALF + 1)
            idx = centre[:, :, None] + steps  # (k, 2, 5) pixel indices along qx and qy
            edges = (idx - pos[:, :, None]) / self.footprint_sigma
            half = 0.5 / self.footprint_sigma
            frac = ndtr(edges + half) - ndtr(edges - half)  # pixel-integrated 1D Gaussian
            weight = frac[:, 0, :, None] * frac[:, 1, None, :]
            weight /= weight.sum(axis=(1, 2), keepdims=True)
            np.add.at(
                image,
                (idx[:, 0, :, None], idx[:, 1, None, :]),
                strikes.signal[strikes.spread][:, None, None] * weight,
            )
        np.add.at(image, (xrays[:, 0], xrays[:, 1]), self.xray_signal)
        return image

    def frame(self, rx: int, ry: int, dark=None) -> np.ndarray:
        """The recorded frame ``(Qx, Qy)`` in ``dtype``."""
        dark = self.dark() if dark is None else dark
        noise = np.random.default_rng([self.seed, int(rx), int(ry), 1]).normal(
            0.0, self.read_noise, self.detector_shape
        )
        values = self.deposits(rx, ry) + dark + noise
        dtype = np.dtype(self.dtype)
        if dtype.kind in "ui":
            info = np.iinfo(dtype)
            values = np.clip(np.rint(values), info.min, info.max)
        return values.astype(dtype)

    def __call__(self, slices):
        """Frames of the scan block ``slices`` (4 slices): ``(nx, ny, Qx, Qy)``."""
        xs = range(slices[0].start, slices[0].stop)
        ys = range(slices[1].start, slices[1].stop)
        dark = self.dark()
        out = np.empty((len(xs), len(ys)) + self.detector_shape, dtype=self.dtype)
        for i, rx in enumerate(xs):
            for j, ry in enumerate(ys):
                out[i, j] = self.frame(rx, ry, dark)
        return out[..., slices[2], slices[3]]


@dataclass(frozen=True)
class CountingScan:
    """A synthetic counting scan and its ground truth (counts: ADU; positions: detector px).

    ``datacube``: the lazy datacube; ``dark``: the true dark offset ``(Qx, Qy)`` float64
    (``dark_level`` + row and column streaks). The accessors recompute the truth from the seeded
    model without reading the datacube.
    """

    datacube: xr.DataArray
    dark: np.ndarray = field(repr=False)
    seed: int
    model: _CountingModel = field(repr=False)

    def strikes(self, rx: int, ry: int) -> np.ndarray:
        """``(n, 2)`` float64 true positions ``(qx, qy)`` of the electrons of frame ``(rx, ry)``
        in pixels (the centre of pixel ``i`` at ``i``)."""
        return self.model.strikes(*self._position(rx, ry)).position

    def electrons(self, rx: int, ry: int) -> Strikes:
        """Full truth of the electrons of frame ``(rx, ry)``: position, signal (counts), spread
        or one-pixel, partner (row within the frame, -1 for none)."""
        return self.model.strikes(*self._position(rx, ry))

    def xrays(self, rx: int, ry: int) -> np.ndarray:
        """``(m, 2)`` int64 pixels ``(qx, qy)`` hit by an X-ray in frame ``(rx, ry)``."""
        return self.model.xrays(*self._position(rx, ry))

    def deposits(self, rx: int, ry: int) -> np.ndarray:
        """Noiseless signal above the dark of frame ``(rx, ry)``: ``(Qx, Qy)`` float64 counts
        (so a frame is ``rint(deposits + dark + read noise)``, clipped)."""
        return self.model.deposits(*self._position(rx, ry))

    def all_strikes(self) -> Strikes:
        """The electrons of the whole scan, frames in C order of ``(rx, ry)``; ``partner``
        indexes the whole table."""
        parts = [self.model.strikes(rx, ry) for rx, ry in np.ndindex(self.model.scan_shape)]
        start = np.cumsum([0] + [len(p.signal) for p in parts[:-1]])
        partner = [
            np.where(p.partner >= 0, p.partner + s, -1) for p, s in zip(parts, start, strict=True)
        ]
        return Strikes(
            np.concatenate([p.rx for p in parts]),
            np.concatenate([p.ry for p in parts]),
            np.concatenate([p.position for p in parts]).reshape(-1, 2),
            np.concatenate([p.signal for p in parts]),
            np.concatenate([p.spread for p in parts]).astype(bool),
            np.concatenate(partner).astype(np.int64),
        )

    def all_xrays(self) -> np.ndarray:
        """``(m, 4)`` int64 rows ``(rx, ry, qx, qy)`` of every X-ray hit of the scan."""
        rows = [
            np.column_stack([np.full((len(x), 2), (rx, ry)), x])
            for rx, ry in np.ndindex(self.model.scan_shape)
            if len(x := self.model.xrays(rx, ry))
        ]
        return np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 4), np.int64)

    def _position(self, rx, ry):
        nx, ny = self.model.scan_shape
        return checked_int(rx, "rx", 0, nx), checked_int(ry, "ry", 0, ny)


def _check(name, value, low=0.0, high=None, strict=False):
    """A model parameter as a float in ``[low, high]`` (``strict``: ``low`` excluded)."""
    return real(value, name, low=None if np.isinf(low) else low, high=high, strict=strict)


def counting_scan(
    scan_shape=(16, 16),
    detector_shape=(64, 64),
    *,
    electrons_per_pixel=0.01,
    read_noise=3.0,
    dark_level=100.0,
    streak_amplitude=5.0,
    electron_signal=60.0,
    spread_fraction=0.3,
    pair_fraction=0.05,
    xrays_per_frame=0.2,
    xray_signal=1500.0,
    seed=0,
    chunks="auto",
    dtype="uint16",
    signal_sigma=0.15,
    footprint_sigma=0.5,
    r_pixel_size=1.0,
    r_units="pixels",
    q_pixel_size=1.0,
    q_units="pixels",
    energy=None,
) -> CountingScan:
    """A lazy synthetic electron-counting scan with known strikes (model: module docstring).

    Parameters
    ----------
    scan_shape, detector_shape : ``(Rx, Ry)`` and ``(Qx, Qy)``; the detector at least 8 px.
    electrons_per_pixel : mean electrons per detector pixel per frame (sparse: << 1).
    read_noise : Gaussian read noise, counts (standard deviation).
    dark_level : mean dark offset, counts.
    streak_amplitude : standard deviation of the per-row and per-column dark offsets, counts.
    electron_signal : mean counts deposited by one electron.
    spread_fraction : fraction of electrons spread over neighbouring pixels (sub-pixel).
    pair_fraction : fraction of electrons placed next to another one (1-1.5 px away).
    xrays_per_frame : mean number of X-ray hits per frame.
    xray_signal : counts of one X-ray hit (one pixel).
    seed : non-negative int; the same seed gives the same data whatever the chunking.
    chunks : as for :func:`stem4d_dask.from_array` (``"auto"``, a dict or a tuple).
    dtype : the recorded dtype (integer dtypes are rounded and clipped to their range).
    signal_sigma : log-sigma of the lognormal spread of each electron's signal (mean 1).
    footprint_sigma : Gaussian sigma of a spread strike's footprint, px.
    r_pixel_size, r_units, q_pixel_size, q_units, energy : calibration of the datacube.

    Nothing is generated until computed: each chunk is drawn by its own task.
    """
    scan_shape, detector_shape = tuple(map(int, scan_shape)), tuple(map(int, detector_shape))
    if len(scan_shape) != 2 or min(scan_shape) < 1:
        raise ValueError(f"scan_shape must be two positive ints, got {scan_shape!r}")
    if len(detector_shape) != 2 or min(detector_shape) < 4 * EDGE:
        raise ValueError(f"detector_shape must be two ints >= {4 * EDGE}, got {detector_shape!r}")
    params = {
        "electrons_per_pixel": _check("electrons_per_pixel", electrons_per_pixel, high=1.0),
        "read_noise": _check("read_noise", read_noise),
        "dark_level": _check("dark_level", dark_level, low=-np.inf),
        "electron_signal": _check("electron_signal", electron_signal, strict=True),
        "signal_sigma": _check("signal_sigma", signal_sigma),
        "spread_fraction": _check("spread_fraction", spread_fraction, high=1.0),
        "footprint_sigma": _check("footprint_sigma", footprint_sigma, strict=True),
        "pair_fraction": _check("pair_fraction", pair_fraction, high=1.0),
        "xrays_per_frame": _check("xrays_per_frame", xrays_per_frame),
        "xray_signal": _check("xray_signal", xray_signal, strict=True),
    }
    streak_amplitude = _check("streak_amplitude", streak_amplitude)
    dtype = np.dtype(dtype)
    if dtype.kind not in "uif":
        raise ValueError(f"dtype must be an integer or float dtype, got {dtype}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    rng = np.random.default_rng([int(seed), _DARK_KEY])
    rows = tuple(float(v) for v in rng.normal(0.0, streak_amplitude, detector_shape[0]))
    columns = tuple(float(v) for v in rng.normal(0.0, streak_amplitude, detector_shape[1]))
    model = _CountingModel(
        scan_shape=scan_shape,
        detector_shape=detector_shape,
        row_streaks=rows,
        column_streaks=columns,
        seed=int(seed),
        dtype=dtype.str,
        **params,
    )
    shape = scan_shape + detector_shape
    norm = normalize_chunks(chunks, shape, dtype)
    data = lazy_from_loader(model, shape, dtype, norm, "synthetic-counting")
    dc = from_array(
        data,
        chunks=None,
        r_pixel_size=r_pixel_size,
        r_units=r_units,
        q_pixel_size=q_pixel_size,
        q_units=q_units,
        energy=energy,
    )
    return CountingScan(dc, model.dark(), int(seed), model)
