"""The ``.stem4d`` accessor on DataArrays: every method only delegates to an operation."""

from __future__ import annotations

import xarray as xr

from . import datacube as _dc
from . import io as _io
from . import virtual as _virtual
from .preprocess import preprocess as _pp


@xr.register_dataarray_accessor("stem4d")
class Stem4dAccessor:
    """``dc.stem4d.<operation>(...)`` == ``<operation>(dc, ...)``."""

    def __init__(self, obj: xr.DataArray):
        self._obj = obj

    # calibration
    def with_calibration(self, **changes):
        return _dc.with_calibration(self._obj, **changes)

    def with_q_units(self, units):
        return _dc.with_q_units(self._obj, units)

    def describe(self):
        return _dc.describe(self._obj)

    # preprocess
    def set_scan_shape(self, R_Nx, R_Ny):
        return _pp.set_scan_shape(self._obj, R_Nx, R_Ny)

    def swap_RQ(self):
        return _pp.swap_RQ(self._obj)

    def swap_Rxy(self):
        return _pp.swap_Rxy(self._obj)

    def swap_Qxy(self):
        return _pp.swap_Qxy(self._obj)

    # reductions
    def mean_diffraction_pattern(self):
        return _virtual.mean_diffraction_pattern(self._obj)

    def virtual_image(self, mask):
        return _virtual.virtual_image(self._obj, mask)

    # output
    def to_zarr(self, path, **options):
        return _io.to_zarr(self._obj, path, **options)

    def to_h5(self, path, **options):
        return _io.to_h5(self._obj, path, **options)
