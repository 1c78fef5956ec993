"""The ``.stem4d`` accessor on DataArrays: every method only delegates to an operation."""

from __future__ import annotations

import numpy as np
import xarray as xr

from . import datacube as _dc
from . import io as _io
from . import virtual as _virtual
from .phase import com as _com
from .phase import dpc as _dpc
from .phase import segmented as _segmented
from .preprocess import darkreference as _dark
from .preprocess import electroncount as _count
from .preprocess import preprocess as _pp
from .preprocess import radialbkgrd as _radial


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

    def checked(self):
        return _dc.check_datacube(self._obj)

    def value_range(self):
        return _dc.value_range(self._obj)

    def with_value_range(self, value_range):
        return _dc.with_value_range(self._obj, value_range)

    # preprocess
    def set_scan_shape(self, R_Nx, R_Ny):
        return _pp.set_scan_shape(self._obj, R_Nx, R_Ny)

    def swap_RQ(self):
        return _pp.swap_RQ(self._obj)

    def swap_Rxy(self):
        return _pp.swap_Rxy(self._obj)

    def swap_Qxy(self):
        return _pp.swap_Qxy(self._obj)

    def bin_data_diffraction(self, bin_factor, dtype=None):
        return _pp.bin_data_diffraction(self._obj, bin_factor, dtype)

    def bin_data_mmap(self, bin_factor, dtype=np.float32):
        return _pp.bin_data_mmap(self._obj, bin_factor, dtype)

    def bin_data_real(self, bin_factor):
        return _pp.bin_data_real(self._obj, bin_factor)

    def thin_data_real(self, thinning_factor):
        return _pp.thin_data_real(self._obj, thinning_factor)

    def resample_data_diffraction(self, resampling_factor=None, output_size=None,
                                  method="bilinear", conserve_array_sums=False):
        return _pp.resample_data_diffraction(self._obj, resampling_factor, output_size, method,
                                             conserve_array_sums)

    def pad_data_diffraction(self, pad_factor=None, output_size=None):
        return _pp.pad_data_diffraction(self._obj, pad_factor, output_size)

    def datacube_diffraction_shift(self, xshifts, yshifts, periodic=True, bilinear=False, *,
                                   units="pixels"):
        return _pp.datacube_diffraction_shift(self._obj, xshifts, yshifts, periodic, bilinear,
                                              units=units)

    def center_patterns(self, qx0, qy0, center=None, periodic=True, bilinear=False, *,
                        units="pixels"):
        return _pp.center_patterns(self._obj, qx0, qy0, center, periodic, bilinear, units=units)

    def filter_hot_pixels(self, thresh, ind_compare=1, return_mask=False):
        return _pp.filter_hot_pixels(self._obj, thresh, ind_compare, return_mask)

    def median_filter_masked_pixels(self, mask, kernel_width=3):
        return _pp.median_filter_masked_pixels(self._obj, mask, kernel_width)

    # dark references
    def get_darkreference(self, N_frames, width_x=0, width_y=0, side_x="end", side_y="end",
                          seed=None):
        return _dark.get_darkreference(self._obj, N_frames, width_x, width_y, side_x, side_y,
                                       seed)

    def get_background_streaks(self, N_frames, width, side="end", direction="x", seed=None):
        return _dark.get_background_streaks(self._obj, N_frames, width, side, direction, seed)

    def get_bksbtr_DP(self, darkref, Rx, Ry):
        return _dark.get_bksbtr_DP(self._obj, darkref, Rx, Ry)

    def subtract_dark(self, darkref):
        return _dark.subtract_dark(self._obj, darkref)

    # radial background
    def get_1D_polar_background(self, p_ellipse, center=None, **options):
        return _radial.get_1D_polar_background(self._obj, p_ellipse, center, **options)

    def subtract_polar_background(self, p_ellipse, per_pattern=True, **options):
        return _radial.subtract_polar_background(self._obj, p_ellipse, per_pattern, **options)

    # electron counting
    def electron_count(self, darkreference, **options):
        return _count.electron_count(self._obj, darkreference, **options)

    # py4DSTEM's DataCube method names for the same operations
    bin_Q = bin_data_diffraction
    bin_R = bin_data_real
    thin_R = thin_data_real
    resample_Q = resample_data_diffraction
    pad_Q = pad_data_diffraction

    # reductions
    def center_of_mass(self, mask=None):
        return _com.center_of_mass(self._obj, mask)

    def mean_diffraction_pattern(self):
        return _virtual.mean_diffraction_pattern(self._obj)

    def virtual_image(self, mask):
        return _virtual.virtual_image(self._obj, mask)

    def virtual_images(self, masks):
        return _virtual.virtual_images(self._obj, masks)

    def DPC(self, energy=None, verbose=True, device="cpu"):
        return _dpc.DPC(self._obj, energy=energy, verbose=verbose, device=device)

    def segmented_com(self, masks):
        return _segmented.segmented_com(self._obj, masks)

    def monolithic_com(self, masks, center=None):
        return _segmented.monolithic_com(self._obj, masks, center)

    # output
    def to_zarr(self, path, **options):
        return _io.to_zarr(self._obj, path, **options)

    def to_h5(self, path, **options):
        return _io.to_h5(self._obj, path, **options)
