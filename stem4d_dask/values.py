"""The value range a datacube's values can take, where it is known more narrowly than its dtype
(a detector's bit depth, an earlier binning): recorded in ``attrs["value_range"]``, tied to the
very dask array it describes so that no xarray operation can leave a stale record behind."""

from __future__ import annotations

from collections.abc import Sequence

import dask.array as da
import numpy as np
import numpy.typing as npt
import xarray as xr

VALUE_RANGE_OF = "value_range_of"  # the dask array a recorded value_range belongs to


def value_range(dc: xr.DataArray) -> tuple[int, int] | None:
    """``(min, max)`` the datacube's values can take: the range recorded for this very array
    (a detector's bit depth, a previous binning), else its dtype's; None for floats."""
    recorded = dc.attrs.get("value_range")
    if recorded is not None and dc.attrs.get(VALUE_RANGE_OF) == _data_key(dc):
        return tuple(recorded)
    dtype = np.dtype(dc.dtype)
    if dtype == np.bool_:
        return (0, 1)
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return (int(info.min), int(info.max))
    return None


def with_value_range(dc: xr.DataArray, value_range: Sequence[int]) -> xr.DataArray:
    """``dc`` recording that its values lie in ``value_range`` = ``(min, max)`` (integers).

    The record is tied to this array's dask graph: any xarray operation that makes new data
    (arithmetic, ``astype``, ``isel`` ...) leaves a record that no longer matches, and the
    dtype's range is used again, so a stale record can never narrow a result wrongly.
    """
    try:
        lo, hi = (int(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"value_range must be two integers (min, max), got {value_range!r}"
        ) from None
    dtype = np.dtype(dc.dtype)
    if dtype.kind not in "uib" or lo > hi:
        raise ValueError(
            f"value_range: {value_range!r} must be (min <= max) for integer data, got dtype {dtype}"
        )
    full = value_range_of_dtype(dtype)
    if lo < full[0] or hi > full[1]:
        raise ValueError(f"value_range {value_range!r} is outside the {dtype} range {full}")
    out = dc.copy()
    if (lo, hi) == full:  # nothing narrower than the dtype to record
        out.attrs.pop("value_range", None)
        out.attrs.pop(VALUE_RANGE_OF, None)
        return out
    out.attrs["value_range"] = [lo, hi]
    out.attrs[VALUE_RANGE_OF] = _data_key(out)
    return out


def value_range_of_dtype(dtype: npt.DTypeLike) -> tuple[int, int]:
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return (0, 1)
    info = np.iinfo(dtype)
    return (int(info.min), int(info.max))


def _data_key(dc: xr.DataArray) -> str:
    data = dc.data
    return data.name if isinstance(data, da.Array) else f"numpy-{id(data)}"
