"""Argument checks, made once.

Every public function checks its arguments with these, so the same input gets the same answer
and the same message everywhere: a ``ValueError`` naming the parameter, what was expected and
what was given. Numbers are Python or numpy scalars (never strings or bools); arrays keep their
laziness (numpy checked now, dask when computed); DataArrays are aligned to the datacube by
dimension name and coordinates (:func:`stem4d_dask.coords.align`).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
import numpy.typing as npt
import xarray as xr

from .backend import Array
from .calibration import canonical_units
from .coords import Q_DIMS, R_DIMS, align

# --- numbers ---------------------------------------------------------------------------------


def checked_int(value: object, name: str, minimum: int = 1, below: int | None = None) -> int:
    """``value`` as an int in ``[minimum, below)`` (Python or numpy integer, not bool); else
    ``ValueError`` naming ``name``."""
    if (
        isinstance(value, bool | np.bool_)
        or not isinstance(value, numbers.Integral)
        or int(value) < minimum
        or (below is not None and int(value) >= below)
    ):
        span = f">= {minimum}" if below is None else f"in [{minimum}, {below})"
        raise ValueError(f"{name} must be an integer {span}, got {value!r}")
    return int(value)


def positive_int(value: object, name: str) -> int:
    """``value`` as an int >= 1; else ``ValueError`` naming it."""
    return checked_int(value, name)


def real(
    value: object,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    strict: bool = False,
    finite: bool = True,
) -> float:
    """``value`` (a Python or numpy real number, or a 0-d array of one; not a bool or a string)
    as a float, finite unless ``finite=False`` (NaN is always refused), within ``[low, high]``
    (``strict``: ``low`` excluded). ``ValueError`` naming ``name`` otherwise."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    number = float(value)
    if np.isnan(number) or (finite and not np.isfinite(number)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if low is not None and (number <= low if strict else number < low):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low}, got {value!r}")
    if high is not None and number > high:
        raise ValueError(f"{name} must be <= {high}, got {value!r}")
    return number


def positive(value: object, name: str) -> float:
    """``value`` as a positive finite float; else ``ValueError`` naming it."""
    return real(value, name, low=0, strict=True)


def optional_positive(value: object, name: str) -> float | None:
    """None, or ``value`` as a positive finite float."""
    return None if value is None else positive(value, name)


def check_pixel_size(value: object, *, parameter: str) -> float:
    """A pixel size (or any calibration scale) as a positive finite float."""
    return positive(value, parameter)


def check_energy(energy: object) -> float | None:
    """Beam energy in eV as a positive float, or None when unknown."""
    return optional_positive(energy, "energy")


def real_pair(value: npt.ArrayLike, name: str) -> tuple[float, float]:
    """One finite real number (for both) or a pair ``(x, y)`` of them, as two floats."""
    values = tuple(np.ravel(value)) if np.ndim(value) else (value, value)
    if len(values) != 2:
        raise ValueError(f"{name} must be one number or a pair (x, y), got {value!r}")
    return (real(values[0], name), real(values[1], name))


def check_dtype(dtype: npt.DTypeLike, parameter: str, complex_ok: bool = False) -> np.dtype:
    """``dtype`` if it holds real numbers or booleans (or complex ones, with ``complex_ok``);
    else ``TypeError`` naming it."""
    dtype = np.dtype(dtype)
    if dtype.kind == "c" and not complex_ok:
        raise TypeError(
            f"{parameter}: dtype {dtype} is not supported here: this operation means nothing "
            "for complex numbers and needs real numbers or booleans (take .real, .imag or "
            "abs() first)"
        )
    if dtype.kind not in "biufc":
        raise TypeError(
            f"{parameter}: dtype {dtype} is not supported; a datacube holds real numbers, "
            "booleans or (for the operations that mean something for them) complex numbers"
        )
    return dtype


def flag(value: object, name: str) -> bool:
    """``value`` as a bool (Python or numpy bool only: 0 and "yes" are refused)."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def checked_scan_shape(value: Sequence[int], name: str = "scan_shape") -> tuple[int, int]:
    """``value`` as ``(Rx, Ry)``, two integers >= 1; ``ValueError`` naming ``name``."""
    try:
        rx, ry = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be two positive integers (Rx, Ry), got {value!r}") from None
    return (checked_int(rx, f"{name}[0]"), checked_int(ry, f"{name}[1]"))


# --- arrays ----------------------------------------------------------------------------------


def checked_array(
    value: npt.ArrayLike | da.Array,
    shape: Sequence[int],
    parameter: str,
    kinds: str = "biuf",
    finite: bool = True,
    what: str = "",
) -> np.ndarray | da.Array:
    """``value`` (numpy or dask; anything else becomes numpy) of ``shape`` and a dtype kind in
    ``kinds``, else ``ValueError`` naming ``parameter``. With ``finite``, NaN/inf values raise
    too: now for numpy, when computed for dask."""
    if not isinstance(value, da.Array):
        value = np.asarray(value)
    if np.dtype(value.dtype).kind not in kinds:
        raise ValueError(
            f"{parameter} must hold {'booleans' if kinds == 'biu' else 'real numbers'}"
            f", got dtype {value.dtype}"
        )
    if tuple(value.shape) != tuple(shape):
        raise ValueError(
            f"{parameter} must have the {what}shape {tuple(shape)}, got {tuple(value.shape)}"
        )
    if not finite or value.dtype.kind != "f":
        return value
    if isinstance(value, da.Array):
        return da.map_blocks(
            finite_or_raise, value, parameter, dtype=value.dtype, token=f"check-{parameter}"
        )
    return finite_or_raise(value, parameter)


def finite_or_raise(array: Array, parameter: str) -> Array:
    """``array`` unchanged; ``ValueError`` naming ``parameter`` when it holds NaN or inf."""
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{parameter} holds {int(bad.sum())} NaN or infinite value(s), the "
                f"first at {where}; replace them (e.g. with a median) first"
            )
    return array


def detector_array(
    value: npt.ArrayLike | da.Array | xr.DataArray,
    datacube: xr.DataArray,
    parameter: str,
    kinds: str = "biuf",
) -> da.Array:
    """A ``(Qx, Qy)`` detector-sized argument (numpy, dask or DataArray: a mask, a dark
    reference, weights) as a one-chunk dask array (one graph key, shared by every task; lazy
    inputs stay lazy). DataArrays are aligned to the checked ``datacube`` by dimension name and
    coordinates; plain arrays are positional. ``ValueError`` naming ``parameter`` for the wrong
    shape, a dtype kind outside ``kinds``, or NaN/inf values."""
    value = checked_array(
        align(value, datacube, Q_DIMS, parameter),
        datacube.shape[2:],
        parameter,
        kinds,
        what="detector ",
    )
    return value.rechunk(-1) if isinstance(value, da.Array) else da.from_array(value, chunks=-1)


def detector_weights(
    value: npt.ArrayLike | da.Array | xr.DataArray,
    frame: xr.DataArray | xr.Dataset,
    parameter: str,
    shape: Sequence[int] | None = None,
) -> np.ndarray:
    """A ``(Qx, Qy)`` mask or weights (bool or real, finite) as a numpy array, for operations
    that need it now (a mask matrix, a mask of events). ``frame``: the datacube (or anything
    with its Qx, Qy coords); ``shape``: the detector shape (default ``frame``'s last two).
    DataArrays are aligned as in :func:`detector_array`; a lazy one is computed (it is
    detector-sized)."""
    shape = tuple(frame.shape[-2:]) if shape is None else tuple(shape)
    # coords.align reads only frame.coords (a Dataset's too), though it is annotated DataArray
    aligned = align(value, frame, Q_DIMS, parameter)
    value = checked_array(aligned, shape, parameter, what="detector ")
    return np.asarray(value.compute() if isinstance(value, da.Array) else value)


def mask_stack(
    masks: npt.ArrayLike | da.Array | xr.DataArray | Sequence[npt.ArrayLike],
    datacube: xr.DataArray,
    parameter: str = "masks",
) -> np.ndarray:
    """Masks ``(n, Qx, Qy)`` (a list of ``(Qx, Qy)`` arrays, one ``(Qx, Qy)`` mask, or a
    DataArray with the detector dims and at most one of its own) as float64 ``(Qx, Qy, n)``,
    C-contiguous: bool or real, finite weights."""
    shape = tuple(datacube.shape[-2:])
    if isinstance(masks, xr.DataArray):
        extra = 0 if set(masks.dims) == set(Q_DIMS) else 1
        masks = align(masks, datacube, Q_DIMS, parameter, extra=extra)
        masks = masks.compute() if isinstance(masks, da.Array) else masks
    if isinstance(masks, list | tuple):
        if not masks:
            raise ValueError(f"{parameter} must hold at least one mask, got an empty list")
        shapes = {np.shape(m) for m in masks}
        if len(shapes) != 1:
            raise ValueError(f"{parameter}: masks of different shapes {sorted(shapes)}")
    masks = np.asarray(masks)
    if masks.shape == shape:
        masks = masks[None]
    if masks.ndim != 3 or masks.shape[1:] != shape or masks.shape[0] < 1:
        raise ValueError(
            f"{parameter} must be (n, Qx, Qy) = (n, {shape[0]}, {shape[1]}) or "
            f"one (Qx, Qy) mask, got shape {masks.shape}"
        )
    if masks.dtype.kind not in "biuf":
        raise ValueError(f"{parameter} must be boolean or real weights, got dtype {masks.dtype}")
    weights = np.ascontiguousarray(np.moveaxis(masks, 0, -1), dtype=np.float64)
    if not np.isfinite(weights).all():
        raise ValueError(f"{parameter} must be finite, got NaN or inf weights")
    return weights


def scan_array(
    value: npt.ArrayLike | da.Array | xr.DataArray,
    datacube: xr.DataArray,
    parameter: str,
    kinds: str = "biuf",
    finite: bool = True,
) -> np.ndarray | da.Array:
    """An ``(Rx, Ry)`` scan-sized argument aligned like :func:`detector_array`: numpy or
    dask (lazy stays lazy), checked as :func:`checked_array` does."""
    return checked_array(
        align(value, datacube, R_DIMS, parameter),
        datacube.shape[:2],
        parameter,
        kinds,
        finite,
        what="scan ",
    )


def scan_field_pair(
    pair: Sequence[npt.ArrayLike],
    name: str,
    shape: tuple[int, ...] | None = None,
    scalars: bool = False,
) -> list[np.ndarray]:
    """A pair ``(x, y)`` of ``(Rx, Ry)`` real arrays (numpy-convertible; with ``scalars``, numbers
    are allowed too) as two float64 numpy arrays. ``shape``: the scan shape they must have
    (None: any 2D shape). ``ValueError`` naming ``name`` for anything but a pair, a non-real
    dtype or the wrong shape."""
    if isinstance(pair, str | bytes) or not hasattr(pair, "__len__") or len(pair) != 2:
        raise ValueError(f"{name} must be a pair (x, y) of (Rx, Ry) arrays, got {type(pair)}")
    out = []
    for a in pair:
        arr = np.asarray(a)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
        want = shape if shape is not None else arr.shape
        ok = arr.ndim == 2 and arr.shape == want or (scalars and arr.ndim == 0)
        if not ok:
            raise ValueError(
                f"{name} must be a pair of arrays of the scan shape "
                f"{want if shape is not None else '(Rx, Ry)'}"
                f"{' or scalars' if scalars else ''}, got shape {arr.shape}"
            )
        out.append(arr.astype(np.float64))
    return out


# --- calibration attrs -----------------------------------------------------------------------


def checked_calibration_attrs(
    attrs: dict[str, Any] | None, parameter: str = "attrs"
) -> dict[str, Any]:
    """A copy of the calibration mapping ``attrs`` (None: ``{}``) with ``r_pixel_size``,
    ``q_pixel_size`` (> 0, finite), ``r_units``, ``q_units`` (canonical spellings: ``"A"``,
    ``"A^-1"`` ...) and ``energy`` (eV, > 0; dropped when None) checked where present; other
    keys pass through. ``ValueError`` naming ``parameter[key]`` for a bad value, or
    ``parameter`` when ``attrs`` is not a dict."""
    if attrs is None:
        return {}
    if not isinstance(attrs, dict):
        raise ValueError(
            f"{parameter} must be a dict of calibration values, got {type(attrs).__name__}"
        )
    out = dict(attrs)
    for key, check in (("pixel_size", check_pixel_size), ("units", canonical_units)):
        for name in (f"r_{key}", f"q_{key}"):
            if name in out:
                out[name] = check(out[name], parameter=f"{parameter}[{name!r}]")
    energy = check_energy(out.pop("energy", None))
    if energy is not None:
        out["energy"] = energy
    return out
