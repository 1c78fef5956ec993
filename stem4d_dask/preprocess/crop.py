"""Crops of a datacube: ``crop_data_diffraction`` (detector) and ``crop_data_real`` (scan),
py4DSTEM names and parameters, lazy: a slice of the dask array (nothing read, nothing
scan-sized allocated), the input untouched. Complex datacubes are cropped too.

Differences from py4DSTEM 0.14.18:

- the crop keeps its place: the coords are those of the kept pixels (as ``dc.isel``), so the
  pixel size is kept and the origin moves to the first kept pixel; py4DSTEM resets the cropped
  axes to start at 0 (same pixel size) and crops the datacube it is given in place;
- the bounds are pixel indices checked before anything is built: integers (Python or numpy, not
  bools or floats) with ``0 <= min < max <= N``; anything else raises ``ValueError`` naming the
  parameter and its value (py4DSTEM slices with whatever it gets: negative bounds count from
  the end, bounds past the edge are clipped, ``min >= max`` gives an empty axis).
"""

from __future__ import annotations

import numbers

import numpy as np

from ..graph import frame_blocks, rebuild
from ..values import value_range

__all__ = ["crop_data_diffraction", "crop_data_real", "crop_Q", "crop_R"]


def crop_data_diffraction(datacube, crop_Qx_min, crop_Qx_max, crop_Qy_min, crop_Qy_max):
    """The detector pixels ``[crop_Qx_min, crop_Qx_max) x [crop_Qy_min, crop_Qy_max)`` of every
    pattern: ``(Rx, Ry, Qx, Qy)`` -> ``(Rx, Ry, Qx_max - Qx_min, Qy_max - Qy_min)``.

    Bounds are pixel indices (integers, ``0 <= min < max <= N`` for a detector axis of ``N``
    pixels; ``ValueError`` naming the parameter otherwise). The Qx, Qy coords are the kept
    pixels' (pixel size and units kept, origin at the first kept pixel); the dtype, the scan
    and its chunks are kept. Lazy: one slice of each chunk, nothing read now.
    """
    datacube, data = frame_blocks(datacube, complex_ok=True)
    qx, qy = data.shape[2:]
    x = _bounds(crop_Qx_min, crop_Qx_max, qx, "crop_Qx")
    y = _bounds(crop_Qy_min, crop_Qy_max, qy, "crop_Qy")
    return _cropped(datacube, data[:, :, x, y], {"Qx": x, "Qy": y})


def crop_data_real(datacube, crop_Rx_min, crop_Rx_max, crop_Ry_min, crop_Ry_max):
    """The scan positions ``[crop_Rx_min, crop_Rx_max) x [crop_Ry_min, crop_Ry_max)``:
    ``(Rx, Ry, Qx, Qy)`` -> ``(Rx_max - Rx_min, Ry_max - Ry_min, Qx, Qy)``.

    Bounds are scan indices (integers, ``0 <= min < max <= N`` for a scan axis of ``N``
    positions; ``ValueError`` naming the parameter otherwise). The Rx, Ry coords are the kept
    positions' (step and units kept, origin at the first kept position); the dtype and the
    detector are kept. Lazy: the scan chunks are sliced as they are (those cut by the crop
    become smaller, none is merged or read).
    """
    datacube, data = frame_blocks(datacube, complex_ok=True)
    rx, ry = data.shape[:2]
    x = _bounds(crop_Rx_min, crop_Rx_max, rx, "crop_Rx")
    y = _bounds(crop_Ry_min, crop_Ry_max, ry, "crop_Ry")
    return _cropped(datacube, data[x, y], {"Rx": x, "Ry": y})


def crop_Q(datacube, ROI):
    """py4DSTEM's ``DataCube.crop_Q``: :func:`crop_data_diffraction` with the bounds as one
    ``ROI = (Qx_min, Qx_max, Qy_min, Qy_max)`` (detector pixel indices)."""
    return crop_data_diffraction(datacube, *_roi(ROI))


def crop_R(datacube, ROI):
    """py4DSTEM's ``DataCube.crop_R``: :func:`crop_data_real` with the bounds as one
    ``ROI = (Rx_min, Rx_max, Ry_min, Ry_max)`` (scan indices)."""
    return crop_data_real(datacube, *_roi(ROI))


def _roi(value) -> tuple:
    """``value`` as a 4-tuple; ``ValueError`` naming ``ROI`` otherwise (py4DSTEM asserts)."""
    if isinstance(value, str | bytes) or not hasattr(value, "__len__") or len(value) != 4:
        raise ValueError(f"ROI must be 4 pixel indices (x_min, x_max, y_min, y_max), got {value!r}")
    return tuple(value)


def _bounds(low, high, n: int, name: str) -> slice:
    """``slice(low, high)`` for an axis of ``n`` pixels, checked: integers (not bools) with
    ``0 <= low < high <= n``; ``ValueError`` naming ``{name}_min`` / ``{name}_max`` otherwise."""
    for value, which, first, last in ((low, "min", 0, n - 1), (high, "max", 1, n)):
        if (
            isinstance(value, bool | np.bool_)
            or not isinstance(value, numbers.Integral)
            or not first <= int(value) <= last
        ):
            raise ValueError(
                f"{name}_{which} must be an integer pixel index in [{first}, {last}] (the axis "
                f"has {n} pixels), got {value!r}"
            )
    if int(high) <= int(low):
        raise ValueError(
            f"{name}_max must be larger than {name}_min ({int(low)}) for a non-empty crop, "
            f"got {high!r}"
        )
    return slice(int(low), int(high))


def _cropped(datacube, data, slices):
    """The datacube over the cropped ``data``, with the coords of the kept pixels of each
    cropped dim in ``slices`` (``{dim: slice}``) and the value range record kept (a crop
    holds a subset of the values)."""
    coords = {d: datacube.coords[d].isel({d: s}) for d, s in slices.items()}
    return rebuild(datacube, data, coords, value_range(datacube))
