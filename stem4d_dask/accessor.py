"""The ``.stem4d`` accessor on DataArrays: ``dc.stem4d.<operation>(...)`` is
``<operation>(dc, ...)``.

Its methods are made from one table (:data:`METHODS`) by wrapping the functions: each method has
its function's signature (less the datacube) and docstring, and only calls it. Adding an
operation to the accessor is one line of the table.
"""

from __future__ import annotations

import functools
import inspect

import xarray as xr

from . import datacube as _dc
from . import device as _device
from . import frame_functions as _frames
from . import io as _io
from . import peaks as _peaks
from . import virtual as _virtual
from .phase import com as _com
from .phase import dpc as _dpc
from .phase import segmented as _segmented
from .preprocess import crop as _crop
from .preprocess import darkreference as _dark
from .preprocess import electroncount as _count
from .preprocess import preprocess as _pp
from .preprocess import radialbkgrd as _radial

METHODS = {
    # calibration and description
    "with_calibration": _dc.with_calibration,
    "with_q_units": _dc.with_q_units,
    "describe": _dc.describe,
    "checked": _dc.check_datacube,
    "value_range": _dc.value_range,
    "with_value_range": _dc.with_value_range,
    # preprocess (py4DSTEM names)
    "set_scan_shape": _pp.set_scan_shape,
    "swap_RQ": _pp.swap_RQ,
    "swap_Rxy": _pp.swap_Rxy,
    "swap_Qxy": _pp.swap_Qxy,
    "bin_data_diffraction": _pp.bin_data_diffraction,
    "bin_data_mmap": _pp.bin_data_mmap,
    "bin_data_real": _pp.bin_data_real,
    "thin_data_real": _pp.thin_data_real,
    "resample_data_diffraction": _pp.resample_data_diffraction,
    "pad_data_diffraction": _pp.pad_data_diffraction,
    "datacube_diffraction_shift": _pp.datacube_diffraction_shift,
    "center_patterns": _pp.center_patterns,
    "filter_hot_pixels": _pp.filter_hot_pixels,
    "median_filter_masked_pixels": _pp.median_filter_masked_pixels,
    "crop_data_diffraction": _pp.crop_data_diffraction,
    "crop_data_real": _pp.crop_data_real,
    "crop_Q": _crop.crop_Q,
    "crop_R": _crop.crop_R,
    # dark references, radial background, electron counting
    "get_darkreference": _dark.get_darkreference,
    "get_background_streaks": _dark.get_background_streaks,
    "get_bksbtr_DP": _dark.get_bksbtr_DP,
    "subtract_dark": _dark.subtract_dark,
    "get_1D_polar_background": _radial.get_1D_polar_background,
    "subtract_polar_background": _radial.subtract_polar_background,
    "electron_count": _count.electron_count,
    # reductions, detectors, DPC
    "center_of_mass": _com.center_of_mass,
    "mean_diffraction_pattern": _virtual.mean_diffraction_pattern,
    "virtual_image": _virtual.virtual_image,
    "virtual_images": _virtual.virtual_images,
    "segmented_com": _segmented.segmented_com,
    "monolithic_com": _segmented.monolithic_com,
    "DPC": _dpc.DPC,
    # your own per-frame functions, Bragg peaks
    "map_frames": _frames.map_frames,
    "reduce_frames": _frames.reduce_frames,
    "find_peaks": _peaks.find_peaks,
    # devices: chunks to the GPU (cupy) and back (numpy)
    "to_device": _device.to_device,
    "to_host": _device.to_host,
    # output
    "to_zarr": _io.to_zarr,
    "to_h5": _io.to_h5,
}
ALIASES = {  # py4DSTEM's DataCube method names for the same operations
    "bin_Q": "bin_data_diffraction",
    "bin_R": "bin_data_real",
    "thin_R": "thin_data_real",
    "resample_Q": "resample_data_diffraction",
    "pad_Q": "pad_data_diffraction",
}


def _method(name, function):
    """``function`` as a method that passes the accessor's DataArray as its first argument,
    with its signature less that argument, and its docstring."""
    target = function.__init__ if inspect.isclass(function) else function
    parameters = list(inspect.signature(target).parameters.values())
    parameters = parameters[2:] if inspect.isclass(function) else parameters[1:]

    @functools.wraps(function)
    def method(self, *args, **kwargs):
        return function(self._obj, *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *parameters]
    )
    return method


@xr.register_dataarray_accessor("stem4d")
class Stem4dAccessor:
    """``dc.stem4d.<operation>(...)`` == ``<operation>(dc, ...)``: see :data:`METHODS`."""

    def __init__(self, obj: xr.DataArray):
        self._obj = obj


for _name, _function in METHODS.items():
    setattr(Stem4dAccessor, _name, _method(_name, _function))
for _alias, _name in ALIASES.items():
    setattr(Stem4dAccessor, _alias, getattr(Stem4dAccessor, _name))
