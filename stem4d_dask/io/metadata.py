"""What readers make of vendor metadata: ``key = value`` side files and JSON-able values (what
they put in ``attrs["metadata"]``), numbers and units they can calibrate with, the value range a
counter depth gives, and the calibrated datacube (:func:`calibrated`, a step per axis)."""

from __future__ import annotations

import math

import numpy as np

from ..coords import regular_coord
from ..datacube import assemble, from_array


def text_value(text: str):
    """A header or side-file value given as text, as the JSON value it stands for:
    ``"True"``/``"False"`` -> bool, an integer -> int, a finite number -> float, else the
    stripped text (``"nan"`` and ``"inf"`` stay text)."""
    text = text.strip()
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            value = kind(text)
        except ValueError:
            continue
        return value if math.isfinite(value) else text
    return text


def key_values(path, sep: str, encoding: str = "utf-8"):
    """``(key, value)`` of each line of text file ``path`` that holds ``sep``, split at its
    first (neither stripped; undecodable bytes replaced): side files of ``key = value`` or
    ``key:<tab>value`` lines."""
    with open(path, encoding=encoding, errors="replace") as f:
        for line in f:
            key, found, value = line.partition(sep)
            if found:
                yield key, value


SMALL = 16  # arrays up to this many values are kept as lists; larger ones are described


def json_value(value):
    """A header value (HDF5 attribute or dataset value, numpy scalar or array, bytes) as
    JSON-able Python: bytes decoded, small arrays as lists, larger ones as a short description
    (``"<uint32 array (192, 192)>"``), non-finite floats as text."""
    if isinstance(value, bytes | np.bytes_):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        if value.size == 1:
            return json_value(value.ravel()[0])
        if value.size > SMALL:
            return f"<{value.dtype} array {value.shape}>"
        return [json_value(v) for v in value.ravel().tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def positive_number(value) -> float | None:
    """``value`` as a float when it is a finite number above 0 (a bool or text is not a
    number), else None: how a reader takes a pixel size, a step or an energy it may use."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def depth_range(bits, dtype) -> tuple[int, int] | None:
    """``(0, 2**bits - 1)``: the values a ``bits``-bit counter stored in unsigned ``dtype``
    can hold, when narrower than the dtype's (the datacube's ``value_range``); else None."""
    dtype = np.dtype(dtype)
    if (
        isinstance(bits, int)
        and not isinstance(bits, bool)
        and 0 < bits < 8 * dtype.itemsize
        and dtype.kind == "u"
    ):
        return (0, 2**bits - 1)
    return None


# units as vendors spell them -> (canonical units, factor to multiply values by)
UNITS = {
    "pix": ("pixels", 1.0),
    "pixel": ("pixels", 1.0),
    "pixels": ("pixels", 1.0),
    "px": ("pixels", 1.0),
    "": ("pixels", 1.0),
    "nm": ("nm", 1.0),
    "µm": ("nm", 1e3),
    "μm": ("nm", 1e3),
    "um": ("nm", 1e3),
    "A": ("A", 1.0),
    "Å": ("A", 1.0),
    "angstrom": ("A", 1.0),
    "pm": ("A", 0.01),
    "A^-1": ("A^-1", 1.0),
    "Å^-1": ("A^-1", 1.0),
    "1/A": ("A^-1", 1.0),
    "1/Å": ("A^-1", 1.0),
    "nm^-1": ("A^-1", 0.1),
    "1/nm": ("A^-1", 0.1),
    "mrad": ("mrad", 1.0),
    "rad": ("mrad", 1e3),
    "µrad": ("mrad", 1e-3),
}
R_VENDOR_UNITS = {k: v for k, v in UNITS.items() if v[0] in ("nm", "A")}
Q_VENDOR_UNITS = {k: v for k, v in UNITS.items() if v[0] in ("A^-1", "mrad")}


def calibrated(
    data,
    *,
    r_steps=(1.0, 1.0),
    r_units="pixels",
    r_origin=(0.0, 0.0),
    q_steps=(1.0, 1.0),
    q_units="pixels",
    q_origin=(0.0, 0.0),
    energy=None,
    attrs=None,
):
    """:func:`stem4d_dask.from_array` with a step per axis (``(x, y)`` pairs over ``Rx, Ry``
    and ``Qx, Qy``, in ``r_units`` / ``q_units``; origins in the same units; ``energy`` in
    eV): a non-square grid gets its own coords on each axis (its ``*_pixel_size`` attr is then
    left out, as the coords hold two steps)."""
    dc = from_array(
        data,
        chunks=None,
        r_pixel_size=r_steps[0],
        r_units=r_units,
        q_pixel_size=q_steps[0],
        q_units=q_units,
        r_origin=r_origin,
        q_origin=q_origin,
        energy=energy,
        attrs=attrs,
    )
    if r_steps[0] == r_steps[1] and q_steps[0] == q_steps[1]:
        return dc
    coords = {d: dc.coords[d] for d in dc.dims}
    for dim, step, origin in (("Ry", r_steps[1], r_origin[1]), ("Qy", q_steps[1], q_origin[1])):
        coords[dim] = regular_coord(
            dc.sizes[dim], float(step), dc.coords[dim].attrs["units"], dim, float(origin)
        )
    return assemble(dc.data, coords, dc.attrs)
