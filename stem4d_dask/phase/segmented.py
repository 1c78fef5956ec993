"""Segmented-detector DPC: the DPC tutorial's segmented and "monolithic" centre of mass.

Both read the data once: every output is a linear function of the pattern, so its weights are
folded into extra detector masks and the whole set goes through one
:func:`~stem4d_dask.virtual.virtual_images` pass (one task per chunk).

Orientation
-----------
With segments built by :func:`stem4d_dask.detectors.segmented_masks` (or the tutorial's
``annular_segmented_detectors``), segment ``s`` of ``n`` is centred at the detector angle
``phi_s = 2 pi (s + 1/2) / n - rotation_offset``, counted from +Qx towards +Qy. A disk shifted
by ``d`` moves intensity into the segments facing ``d``, so

- :func:`segmented_com` gives a vector in the frame of the segments: its x axis points along
  ``phi_0`` (segment 0) and its y axis 90 degrees further towards +Qy (segment ``n/4``). It is
  the detector frame rotated by ``phi_0``. With ``rotation_offset_deg = 180 / n``
  (``phi_0 = 0``; for 4 segments: 0, 1, 2, 3 face +Qx, +Qy, -Qx, -Qy) it points like the
  pixelated centre of mass ``(com_x, com_y)`` of :func:`stem4d_dask.phase.com.center_of_mass`.
  The tutorial's ``rotation_offset = deg2rad(45 + 15)`` gives ``phi_0 = -15`` degrees, which for
  its scan rotation of 15 degrees (:mod:`stem4d_dask.synthetic`'s convention: the scan's x axis
  lies at ``-rotation`` on the detector) makes the segmented CoM point along the scan axes.
- :func:`monolithic_com` uses each segment's measured centroid, so it is always in the detector
  frame ``(Qx, Qy)``, whatever the segments' orientation.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..checks import mask_stack
from ..datacube import R_DIMS, calibration_attrs, check_datacube
from ..detectors import parse_center
from ..graph import map_frames
from ..kernels.virtual import masked_sums_stack

__all__ = ["segmented_com", "monolithic_com"]


def segmented_com(datacube, masks) -> xr.Dataset:
    """The tutorial's segmented-detector CoM: differences of opposite segments' intensities.

    Parameters
    ----------
    datacube : datacube ``(Rx, Ry, Qx, Qy)``.
    masks : ``(n, Qx, Qy)`` segments (``n >= 2``) ordered by increasing angle, as made by
        :func:`~stem4d_dask.detectors.segmented_masks`.

    Returns
    -------
    Lazy ``xr.Dataset`` over ``(Rx, Ry)`` (float64, counts):

    - ``com_x = sum_s I_s cos(2 pi s / n)``, ``com_y = sum_s I_s sin(2 pi s / n)``, with
      ``I_s`` the intensity in segment ``s``. For 4 segments this is exactly the tutorial's
      ``com_x = I_0 - I_2``, ``com_y = I_1 - I_3``; for ``n = 2`` ``com_y`` is 0. The vector is
      in the segments' frame (x along segment 0, y 90 degrees towards +Qy; module docstring). It
      is a difference of counts, not a position: it scales with the dose and the disk edge.
    - ``segment_intensity`` ``(Rx, Ry, detector)``: the ``I_s``.
    """
    datacube = check_datacube(datacube)
    weights = mask_stack(masks, datacube)
    n = weights.shape[-1]
    if n < 2:
        raise ValueError(f"masks: a segmented CoM needs at least 2 segments, got {n}")
    angles = 2 * np.pi * np.arange(n) / n
    wx, wy = _exact(np.cos(angles)), _exact(np.sin(angles))
    return _dataset(
        datacube,
        weights,
        wx,
        wy,
        "counts",
        "sum_s I_s cos(2 pi s / n), sum_s I_s sin(2 pi s / n) (n = 4: I0 - I2, "
        "I1 - I3), segments' frame",
    )


def monolithic_com(datacube, masks, center=None) -> xr.Dataset:
    """The tutorial's "monolithic" CoM: each segment's intensity times its centroid's offset.

    Parameters
    ----------
    datacube : datacube ``(Rx, Ry, Qx, Qy)``.
    masks : ``(n, Qx, Qy)`` segments (``n >= 1``), any weights; none may be empty.
    center : ``(cx, cy)`` in pixels; default ``(Qx // 2, Qy // 2)`` as in the tutorial (the
        zero-angle pixel of its fftshifted detector). Masks built around another centre (e.g.
        :func:`~stem4d_dask.detectors.segmented_masks`' default ``((Qx-1)/2, (Qy-1)/2)``) should
        pass that centre, or the result gains ``-(offset) * intensity``.

    Returns
    -------
    Lazy ``xr.Dataset`` over ``(Rx, Ry)`` (float64):

    - ``com_x = sum_s I_s (kx_s - cx)``, ``com_y = sum_s I_s (ky_s - cy)``, units counts x
      pixels, in the detector frame. ``I_s = sum mask_s * I`` and ``(kx_s, ky_s)`` is the
      mask-weighted centroid of segment ``s`` in pixels; for 0/1 masks these are the tutorial's
      ``data[:, :, kxa, kya].sum(-1)`` and ``kxa.mean()``, ``kya.mean()``.
    - ``intensity = sum_s I_s``: ``com_x / intensity`` estimates the CoM in pixels from ``center``.
    - ``segment_intensity`` ``(Rx, Ry, detector)``: the ``I_s``.
    """
    datacube = check_datacube(datacube)
    weights = mask_stack(masks, datacube)
    qx, qy = datacube.shape[2:]
    cx, cy = parse_center(center, (qx // 2, qy // 2))
    totals = weights.sum(axis=(0, 1))
    empty = np.flatnonzero(totals == 0)
    if empty.size:
        raise ValueError(
            f"masks: segment(s) {empty.tolist()} have zero total weight; a "
            "monolithic CoM needs each segment's centroid"
        )
    kx = np.einsum("klm,k->m", weights, np.arange(qx, dtype=np.float64)) / totals
    ky = np.einsum("klm,l->m", weights, np.arange(qy, dtype=np.float64)) / totals
    ds = _dataset(
        datacube,
        weights,
        kx - cx,
        ky - cy,
        "counts x pixels",
        "sum_s I_s (centroid_s - center), detector frame",
        total=True,
    )
    ds.attrs["center"] = (cx, cy)
    return ds


def _exact(w, tol=1e-12):
    """Cos/sin weights with rounding residue removed (cos(pi/2) -> 0 exactly)."""
    w = np.where(np.abs(w) < tol, 0.0, w)
    return np.where(np.abs(np.abs(w) - 1) < tol, np.sign(w), w)


def _dataset(datacube, weights, wx, wy, units, definition, total=False) -> xr.Dataset:
    """One pass: the segments plus the combined masks ``sum_s w_s mask_s`` for x, y (and the
    total), then a Dataset of their images."""
    extra = [weights @ wx, weights @ wy] + ([weights.sum(axis=-1)] if total else [])
    masks = np.concatenate([weights, np.stack(extra, axis=-1)], axis=-1)
    stack = map_frames(
        masked_sums_stack,
        datacube,
        masks,
        out_dims=("mask",),
        out_sizes=(masks.shape[-1],),
        name="virtual_images",
    ).data
    n = weights.shape[-1]
    coords = {d: datacube.coords[d] for d in R_DIMS}
    variables = {
        "com_x": xr.DataArray(
            stack[..., n], dims=R_DIMS, attrs={"units": units, "definition": definition}
        ),
        "com_y": xr.DataArray(
            stack[..., n + 1], dims=R_DIMS, attrs={"units": units, "definition": definition}
        ),
    }
    if total:
        variables["intensity"] = xr.DataArray(
            stack[..., n + 2], dims=R_DIMS, attrs={"units": "counts"}
        )
    variables["segment_intensity"] = xr.DataArray(
        stack[..., :n],
        dims=(*R_DIMS, "detector"),
        coords={"detector": np.arange(n)},
        attrs={"units": "counts"},
    )
    return xr.Dataset(variables, coords=coords, attrs=calibration_attrs(datacube.attrs))
