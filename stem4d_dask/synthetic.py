"""Synthetic DPC scans with known answers, generated lazily chunk by chunk.

The object is a smooth potential ``phi(rx, ry)``: a sum of Gaussian blobs (scan pixels).
At each scan position a bright-field disk is displaced by the potential's gradient, expressed in
detector coordinates through a scan rotation (and optionally a transpose), plus a linear descan;
the pattern is drawn with Poisson noise.

Convention (the one py4DSTEM's ``DPC.preprocess`` solves for): with ``theta = rotation_deg``
and the true scan-space deflection ``g = (gx, gy) = s * grad(phi)``, the disk moves on the
detector by ``d = R(-theta) g``, i.e.

    dx =  cos(theta) gx + sin(theta) gy
    dy = -sin(theta) gx + cos(theta) gy

and with ``transpose`` the two detector components are exchanged, ``(dx, dy) -> (dy, dx)``.
py4DSTEM maps a measured CoM ``(nx, ny)`` to scan space as ``R(theta) (nx, ny)`` (after
swapping ``nx, ny`` when transposed), which gives back ``g``: its ``_rotation_best_rad`` is
``deg2rad(rotation_deg)`` and ``_rotation_best_transpose`` is ``transpose``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from .checks import positive
from .chunks import normalize_chunks
from .datacube import from_array
from .lazy import lazy_from_loader


@dataclass(frozen=True)
class Blobs:
    """``phi(x, y) = sum_k a_k exp(-((x - x_k)^2 + (y - y_k)^2) / (2 s_k^2))`` (scan pixels)."""

    x: tuple
    y: tuple
    sigma: tuple
    amplitude: tuple

    def potential(self, rx, ry):
        """phi at scan positions ``rx``, ``ry`` (arrays of the same shape)."""
        phi = np.zeros(np.broadcast(rx, ry).shape)
        for x, y, s, a in zip(self.x, self.y, self.sigma, self.amplitude, strict=True):
            phi += a * np.exp(-((rx - x) ** 2 + (ry - y) ** 2) / (2 * s * s))
        return phi

    def gradient(self, rx, ry):
        """``(d phi / d rx, d phi / d ry)`` at the given positions (analytic)."""
        gx = np.zeros(np.broadcast(rx, ry).shape)
        gy = np.zeros_like(gx)
        for x, y, s, a in zip(self.x, self.y, self.sigma, self.amplitude, strict=True):
            e = a * np.exp(-((rx - x) ** 2 + (ry - y) ** 2) / (2 * s * s)) / (s * s)
            gx -= e * (rx - x)
            gy -= e * (ry - y)
        return gx, gy


@dataclass(frozen=True)
class _Model:
    """Everything needed to draw any pattern; small, so every task carries it."""

    blobs: Blobs
    scan_shape: tuple
    detector_shape: tuple
    disk_radius: float
    electrons: float
    gradient_scale: float  # detector px of deflection per unit of grad(phi)
    rotation_rad: float
    transpose: bool
    descan: tuple
    absorption: float
    seed: int
    dtype: str

    def shifts(self, rx, ry):
        """Disk displacement ``(dx, dy)`` in detector pixels at scan indices ``rx``, ``ry``."""
        gx, gy = self.blobs.gradient(rx, ry)
        gx, gy = gx * self.gradient_scale, gy * self.gradient_scale
        c, s = np.cos(self.rotation_rad), np.sin(self.rotation_rad)
        dx, dy = c * gx + s * gy, -s * gx + c * gy
        if self.transpose:
            dx, dy = dy, dx
        cx, cy = (self.scan_shape[0] - 1) / 2, (self.scan_shape[1] - 1) / 2
        return dx + self.descan[0] * (rx - cx), dy + self.descan[1] * (ry - cy)

    def __call__(self, slices):
        """Patterns for the scan block ``slices`` (a tuple of 4 slices): ``(nx, ny, Qx, Qy)``."""
        rx, ry = np.meshgrid(
            np.arange(slices[0].start, slices[0].stop),
            np.arange(slices[1].start, slices[1].stop),
            indexing="ij",
        )
        dx, dy = self.shifts(rx, ry)
        phi = self.blobs.potential(rx, ry)
        peak = max(np.abs(self.blobs.amplitude)) or 1.0
        total = self.electrons * (1 - self.absorption * phi / peak)
        qx, qy = self.detector_shape
        gx, gy = np.ogrid[:qx, :qy]
        out = np.empty(rx.shape + (qx, qy), dtype=self.dtype)
        for i, j in np.ndindex(rx.shape):
            dist = np.hypot(gx - (qx - 1) / 2 - dx[i, j], gy - (qy - 1) / 2 - dy[i, j])
            disk = np.clip(self.disk_radius + 0.5 - dist, 0.0, 1.0)  # anti-aliased edge
            rng = np.random.default_rng([self.seed, int(rx[i, j]), int(ry[i, j])])
            out[i, j] = rng.poisson(disk * (total[i, j] / disk.sum()))
        return out[..., slices[2], slices[3]]


@dataclass(frozen=True)
class DPCScan:
    """A synthetic scan and its ground truth."""

    datacube: xr.DataArray
    rotation_deg: float
    transpose: bool
    seed: int
    model: _Model = field(repr=False)

    def _field(self, values, name, units=""):
        dc = self.datacube
        return xr.DataArray(
            values,
            dims=("Rx", "Ry"),
            name=name,
            attrs={"units": units},
            coords={"Rx": dc.coords["Rx"], "Ry": dc.coords["Ry"]},
        )

    def _grid(self):
        rx, ry = self.model.scan_shape
        return np.meshgrid(np.arange(rx), np.arange(ry), indexing="ij")

    @property
    def potential(self) -> xr.DataArray:
        """The true potential ``phi`` (arbitrary units) on the scan grid ``(Rx, Ry)``."""
        return self._field(self.model.blobs.potential(*self._grid()), "potential")

    @property
    def shift_x(self) -> xr.DataArray:
        """True disk displacement along Qx (detector pixels), descan included."""
        return self._field(self.model.shifts(*self._grid())[0], "shift_x", "pixels")

    @property
    def shift_y(self) -> xr.DataArray:
        """True disk displacement along Qy (detector pixels), descan included."""
        return self._field(self.model.shifts(*self._grid())[1], "shift_y", "pixels")


def _blobs(scan_shape, rng) -> Blobs:
    rx, ry = scan_shape
    n = int(np.clip(rx * ry // 400, 4, 48))
    size = min(rx, ry)
    return Blobs(
        x=tuple(rng.uniform(0, rx - 1, n)),
        y=tuple(rng.uniform(0, ry - 1, n)),
        sigma=tuple(rng.uniform(max(0.05 * size, 1.5), max(0.12 * size, 2.0), n)),
        amplitude=tuple(rng.choice([-1.0, 1.0], n) * rng.uniform(0.5, 1.0, n)),
    )


def dpc_scan(
    scan_shape=(64, 64),
    detector_shape=(64, 64),
    *,
    disk_radius=8.0,
    electrons_per_pattern=2000.0,
    max_shift=2.0,
    rotation_deg=15.0,
    transpose=False,
    descan=(0.0, 0.0),
    absorption=0.05,
    seed=0,
    chunks="auto",
    dtype="uint16",
    r_pixel_size=1.0,
    r_units="A",
    q_pixel_size=1.0,
    q_units="pixels",
    energy=None,
) -> DPCScan:
    """A lazy synthetic DPC scan with known potential, scan rotation and transpose.

    Parameters
    ----------
    scan_shape, detector_shape : ``(Rx, Ry)`` and ``(Qx, Qy)``.
    disk_radius : bright-field disk radius, detector pixels.
    electrons_per_pattern : mean total counts of a pattern (Poisson noise).
    max_shift : the largest deflection a single blob causes, detector pixels (overlapping
        blobs can add up to somewhat more).
    rotation_deg, transpose : scan rotation in py4DSTEM DPC's convention (module docstring);
        ``|rotation_deg| < 90`` since the sign of a deflection is ambiguous to CoM methods.
    descan : linear descan, detector pixels per scan step along ``(Rx, Ry)``, zero at the scan
        centre: ``dx += descan[0] * (rx - centre_x)``, ``dy += descan[1] * (ry - centre_y)``.
    absorption : fractional dose loss at the strongest blob (gives the bright field contrast).
    seed : int; the same seed gives the same data whatever the chunking (each pattern has its
        own random stream, keyed by ``(seed, rx, ry)``).

    Nothing is generated until computed: each chunk is drawn by its own task.
    """
    scan_shape, detector_shape = tuple(map(int, scan_shape)), tuple(map(int, detector_shape))
    if len(scan_shape) != 2 or min(scan_shape) < 1:
        raise ValueError(f"scan_shape must be two positive ints, got {scan_shape!r}")
    if len(detector_shape) != 2 or min(detector_shape) < 3:
        raise ValueError(f"detector_shape must be two ints >= 3, got {detector_shape!r}")
    for name, value in (
        ("disk_radius", disk_radius),
        ("max_shift", max_shift),
        ("electrons_per_pattern", electrons_per_pattern),
    ):
        positive(value, name)
    if disk_radius + max_shift >= min(detector_shape) / 2:
        raise ValueError(
            f"disk_radius: a disk of {disk_radius} px shifted by {max_shift} px "
            f"does not fit the detector {detector_shape}"
        )
    if not -90 < rotation_deg < 90:
        raise ValueError(f"rotation_deg must be in (-90, 90), got {rotation_deg!r}")
    if not 0 <= absorption < 1:
        raise ValueError(f"absorption must be in [0, 1), got {absorption!r}")
    if len(descan) != 2:
        raise ValueError(f"descan must be (per Rx step, per Ry step), got {descan!r}")
    dtype = np.dtype(dtype)
    peak = electrons_per_pattern / (np.pi * disk_radius**2)  # mean counts of a disk pixel
    if dtype.kind in "ui" and peak + 10 * np.sqrt(peak) > np.iinfo(dtype).max:
        raise ValueError(
            f"electrons_per_pattern: {electrons_per_pattern:g} e- in a disk of "
            f"radius {disk_radius} px overflows {dtype} pixels"
        )
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    blobs = _blobs(scan_shape, np.random.default_rng(int(seed)))
    steepest = max(abs(a) / s for a, s in zip(blobs.amplitude, blobs.sigma, strict=True))
    model = _Model(
        blobs,
        scan_shape,
        detector_shape,
        float(disk_radius),
        float(electrons_per_pattern),
        float(max_shift) / (steepest * np.exp(-0.5)),
        float(np.deg2rad(rotation_deg)),
        bool(transpose),
        (float(descan[0]), float(descan[1])),
        float(absorption),
        int(seed),
        dtype.str,
    )
    shape = scan_shape + detector_shape
    norm = normalize_chunks(chunks, shape, dtype)
    data = lazy_from_loader(model, shape, dtype, norm, "synthetic-dpc")
    dc = from_array(
        data,
        chunks=None,
        r_pixel_size=r_pixel_size,
        r_units=r_units,
        q_pixel_size=q_pixel_size,
        q_units=q_units,
        energy=energy,
    )
    return DPCScan(dc, float(rotation_deg), bool(transpose), int(seed), model)
