"""Virtual detector masks: circle, annulus, angular segments, and the DPC tutorial's detector.

Every builder returns a plain numpy array over the detector ``(Qx, Qy)``; images are made from
them by :func:`stem4d_dask.virtual.virtual_images` (a stack of masks, one pass over the data).

Geometry
--------
- Pixel ``(i, j)`` sits at detector position ``(i, j)`` in pixels ("x" is array axis 0, as in
  py4DSTEM); a pixel belongs to a region when its centre does.
- ``center`` is always given in pixels; the default is the geometric centre of the detector,
  ``((Qx - 1) / 2, (Qy - 1) / 2)``, which is where a centred bright-field disk lies.
- Radii are in ``units``: ``"pixels"`` (the default), or a calibrated unit (``"mrad"`` or
  ``"A^-1"``) when the first argument carries a calibration: a datacube, or any DataArray with
  ``Qx``, ``Qy`` coords in those units (and, to convert between mrad and 1/Å, ``attrs['energy']``
  in eV), such as :func:`~stem4d_dask.virtual.mean_diffraction_pattern`'s result. Radii are
  turned into pixels with the detector pixel size read from the coords (a stepped selection of
  the detector has larger pixels); mrad <-> 1/Å uses the small-angle relation
  ``k = theta / lambda`` at the beam energy.
- Angles: ``theta = atan2(qy - cy, qx - cx)``, counted from the +Qx axis towards +Qy, exactly as
  the tutorial's ``annular_segmented_detectors`` does. Segment ``s`` (of ``n``) holds the pixels
  with ``floor(n * ((theta + rotation_offset) mod 2 pi) / (2 pi)) == s``, i.e. the angles
  ``[2 pi s / n - offset, 2 pi (s + 1) / n - offset)``, whose middle is
  ``phi_s = 2 pi (s + 1/2) / n - offset``. With ``rotation_offset_deg = 180 / n`` segment 0 is
  centred on +Qx; for 4 segments then 0, 1, 2, 3 face +Qx, +Qy, -Qx, -Qy.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .calibration import Q_UNITS, canonical_units, electron_wavelength_angstrom
from .checks import check_energy, check_pixel_size, checked_int, positive, real
from .coords import q_pixels
from .datacube import Q_DIMS, check_datacube

__all__ = ["circle_mask", "annulus_mask", "segmented_masks", "annular_segmented_detectors"]


def circle_mask(datacube_or_shape, radius, center=None, *, units="pixels") -> np.ndarray:
    """Boolean ``(Qx, Qy)`` mask of the pixels whose centres lie within ``radius`` of ``center``
    (``distance <= radius``).

    Parameters
    ----------
    datacube_or_shape : a datacube (or a ``(Qx, Qy)`` DataArray with calibrated coords), or the
        detector shape ``(Qx, Qy)``.
    radius : positive, in ``units``.
    center : ``(cx, cy)`` in pixels; default ``((Qx - 1) / 2, (Qy - 1) / 2)``.
    units : ``"pixels"`` (default), ``"mrad"`` or ``"A^-1"`` (needs a calibrated datacube).
    """
    shape, frame = _detector(datacube_or_shape)
    units = canonical_units(units, parameter="units", allowed=Q_UNITS)
    radius = _radius_pixels(positive(radius, "radius"), "radius", units, frame)
    return _distance2(shape, center) <= radius**2


def annulus_mask(datacube_or_shape, inner, outer, center=None, *, units="pixels") -> np.ndarray:
    """Boolean ``(Qx, Qy)`` mask of the pixels with ``inner <= distance < outer`` from
    ``center`` (the tutorial's convention; ``inner = 0`` gives a disk, ``outer = inf`` everything
    beyond ``inner``).

    ``inner >= 0`` and ``outer > inner`` are in ``units``; the other parameters are those of
    :func:`circle_mask`.
    """
    shape, frame = _detector(datacube_or_shape)
    units = canonical_units(units, parameter="units", allowed=Q_UNITS)
    inner, outer = _radii_pixels(inner, outer, units, frame)
    return _ring(_distance2(shape, center), inner, outer)


def segmented_masks(
    datacube_or_shape,
    n_segments,
    inner,
    outer,
    rotation_offset_deg=0.0,
    center=None,
    *,
    units="pixels",
) -> np.ndarray:
    """Boolean ``(n_segments, Qx, Qy)`` stack: an annulus ``inner <= distance < outer`` cut into
    ``n_segments`` equal angular segments.

    Segment ``s`` covers the angles ``[360 s / n - offset, 360 (s + 1) / n - offset)`` degrees,
    counted from +Qx towards +Qy around ``center`` (module docstring), so its middle is at
    ``360 (s + 1/2) / n - rotation_offset_deg``. This is the tutorial's
    ``annular_segmented_detectors`` with ``rotation_offset = deg2rad(rotation_offset_deg)``, on
    a detector centred at ``center`` and with radii in ``units`` instead of mrad.

    ``rotation_offset_deg = 180 / n`` puts segment 0 on +Qx; for ``n = 4`` the segments then face
    +Qx, +Qy, -Qx, -Qy and :func:`stem4d_dask.phase.segmented.segmented_com` points along the
    detector axes, like the pixelated centre of mass. Pixels exactly on a boundary go to the
    segment at the larger angle (as in the tutorial): with 4 segments, offset 45 degrees and the
    centre on a pixel diagonal (the default centre of a square detector), the diagonal pixels do,
    which turns each segment's centroid by about 2 degrees for a 5-13 px annulus;
    :func:`~stem4d_dask.phase.segmented.monolithic_com` is free of that tilt.
    """
    shape, frame = _detector(datacube_or_shape)
    units = canonical_units(units, parameter="units", allowed=Q_UNITS)
    n = _n_segments(n_segments)
    inner, outer = _radii_pixels(inner, outer, units, frame)
    offset = np.deg2rad(real(rotation_offset_deg, "rotation_offset_deg"))
    dx, dy = _offsets(shape, center)
    theta = (np.arctan2(dy, dx) + offset) % (2 * np.pi)
    index = np.floor(n * (theta / (2 * np.pi))).astype(np.int64)
    # theta just below 2 pi can round to bin n (the tutorial would drop that pixel): keep it
    index[index == n] = n - 1
    index[~_ring(dx**2 + dy**2, inner, outer)] = -1
    return index[None] == np.arange(n)[:, None, None]


def annular_segmented_detectors(
    energy, gpts, sampling, n_angular_bins, rotation_offset=0, inner_radius=0, outer_radius=np.inf
) -> list:
    """The DPC tutorial's annular segmented detector, reproduced exactly.

    Parameters
    ----------
    energy : beam energy, eV.
    gpts : ``(nx, ny)`` detector shape, pixels.
    sampling : ``(sx, sy)`` real-space sampling, Å, whose reciprocal is the detector extent:
        one detector pixel is ``wavelength / (n * s)`` rad.
    n_angular_bins : number of segments (>= 1).
    rotation_offset : radians added to every pixel's angle before binning.
    inner_radius, outer_radius : mrad; a pixel is kept when ``inner <= alpha < outer``.

    Returns
    -------
    A list of ``n_angular_bins`` int (0/1) arrays of shape ``(nx, ny)``, fftshifted: the zero
    scattering angle is at pixel ``(nx // 2, ny // 2)``. Segment ``i`` holds the angles
    ``[2 pi i / n - rotation_offset, 2 pi (i + 1) / n - rotation_offset)`` from +x towards +y.
    """
    energy = check_energy(energy)
    if energy is None:
        raise ValueError("energy must be the beam energy in eV, got None")
    if len(gpts) != 2 or any(int(g) != g or g < 1 for g in gpts):
        raise ValueError(f"gpts must be two positive ints, got {gpts!r}")
    if len(sampling) != 2:
        raise ValueError(f"sampling must be (sx, sy) in Å, got {sampling!r}")
    sx, sy = (check_pixel_size(s, parameter="sampling") for s in sampling)
    n_angular_bins = _n_segments(n_angular_bins, "n_angular_bins")
    inner_radius, outer_radius = _check_radii(
        inner_radius, outer_radius, ("inner_radius", "outer_radius")
    )
    rotation_offset = real(rotation_offset, "rotation_offset")

    nx, ny = (int(g) for g in gpts)
    wavelength = electron_wavelength_angstrom(energy)

    alpha_x = np.fft.fftfreq(nx, sx) * wavelength
    alpha_y = np.fft.fftfreq(ny, sy) * wavelength

    alpha = np.sqrt(alpha_x[:, None] ** 2 + alpha_y[None, :] ** 2)
    radial_mask = (inner_radius * 1e-3 <= alpha) & (alpha < outer_radius * 1e-3)

    theta = (np.arctan2(alpha_y[None, :], alpha_x[:, None]) + rotation_offset) % (2 * np.pi)
    angular_bins = np.floor(n_angular_bins * (theta / (2 * np.pi))) + 1
    angular_bins *= radial_mask.astype("int")

    return [
        np.fft.fftshift((angular_bins == i).astype("int")) for i in range(1, n_angular_bins + 1)
    ]


# --- helpers -----------------------------------------------------------------------------------


def _detector(obj):
    """``((Qx, Qy), frame)`` from a datacube / ``(Qx, Qy)`` DataArray or a shape; ``frame`` is
    the DataArray whose Qx, Qy coords (and ``attrs['energy']``) calibrate radii, or None."""
    if isinstance(obj, xr.DataArray) and obj.ndim == 4:
        obj = check_datacube(obj, parameter="datacube_or_shape")
    if isinstance(obj, xr.DataArray) and set(Q_DIMS) <= set(obj.dims):
        frame = obj.transpose(..., *Q_DIMS)
        shape = tuple(int(s) for s in frame.shape[-2:])
        if not all(d in frame.coords for d in Q_DIMS):
            frame = None
    elif hasattr(obj, "shape"):
        shape, frame = tuple(int(s) for s in obj.shape[-2:]), None
    else:
        try:
            shape = tuple(int(s) for s in obj)
        except (TypeError, ValueError):
            raise ValueError(
                f"datacube_or_shape: expected a datacube or (Qx, Qy), got {obj!r}"
            ) from None
        frame = None
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"datacube_or_shape: expected a datacube or (Qx, Qy), got {shape}")
    return shape, frame


def _n_segments(n, name="n_segments") -> int:
    return checked_int(n, name)


def _check_radii(inner, outer, names=("inner", "outer")):
    """``(inner, outer)`` as floats with ``0 <= inner < outer`` (``outer`` may be inf)."""
    try:
        inner, outer = float(inner), float(outer)
    except (TypeError, ValueError):
        raise ValueError(
            f"{names[0]}, {names[1]} must be numbers, got {inner!r}, {outer!r}"
        ) from None
    if not np.isfinite(inner) or inner < 0:
        raise ValueError(f"{names[0]} must be a finite radius >= 0, got {inner!r}")
    if np.isnan(outer) or outer <= inner:
        raise ValueError(f"{names[1]} must be greater than {names[0]} = {inner!r}, got {outer!r}")
    return inner, outer


def _radii_pixels(inner, outer, units, frame):
    inner, outer = _check_radii(inner, outer)
    return (
        _radius_pixels(inner, "inner", units, frame),
        _radius_pixels(outer, "outer", units, frame),
    )


def _ring(distance2, inner, outer):
    """``inner <= distance < outer`` from squared distances (radii in pixels)."""
    return (inner**2 <= distance2) & (distance2 < outer**2)


def _radius_pixels(value, name, units, frame) -> float:
    """``value`` in ``units`` -> detector pixels, through the Qx, Qy coords of ``frame``."""
    if units == "pixels" or value == 0 or np.isinf(value):
        return value
    if frame is None:
        raise ValueError(
            f"units: {name} in {units!r} needs a calibrated detector (a datacube "
            f"with q_units 'mrad' or 'A^-1'); got an uncalibrated one or a shape"
        )
    return float(q_pixels(frame, value, units, name))


def parse_center(center, default):
    """``center`` as two finite floats ``(cx, cy)``, or ``default`` when it is None."""
    if center is None:
        return default
    try:
        cx, cy = (float(c) for c in center)
    except (TypeError, ValueError):
        raise ValueError(f"center must be two numbers (cx, cy), got {center!r}") from None
    if not (np.isfinite(cx) and np.isfinite(cy)):
        raise ValueError(f"center must be finite, got {center!r}")
    return cx, cy


def _offsets(shape, center):
    """Pixel offsets ``(qx - cx, qy - cy)`` as broadcastable ``(Qx, 1)``, ``(1, Qy)`` arrays."""
    cx, cy = parse_center(center, ((shape[0] - 1) / 2, (shape[1] - 1) / 2))
    qx, qy = np.ogrid[: shape[0], : shape[1]]
    return qx - cx, qy - cy


def _distance2(shape, center):
    """Squared distance of every pixel centre from ``center``, pixels^2, ``(Qx, Qy)``."""
    dx, dy = _offsets(shape, center)
    return dx**2 + dy**2
