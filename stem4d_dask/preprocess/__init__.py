"""py4DSTEM-named preprocessing functions (``py4DSTEM.preprocess``) on lazy datacubes."""

from .darkreference import (
    get_background_streaks,
    get_background_streaks_x,
    get_background_streaks_y,
    get_bksbtr_DP,
    get_darkreference,
    subtract_dark,
)
from .preprocess import (
    bin_data_diffraction,
    bin_data_mmap,
    bin_data_real,
    center_patterns,
    datacube_diffraction_shift,
    filter_hot_pixels,
    median_filter_masked_pixels,
    pad_data_diffraction,
    resample_data_diffraction,
    set_scan_shape,
    swap_Qxy,
    swap_RQ,
    swap_Rxy,
    thin_data_real,
)
from .radialbkgrd import (
    get_1D_polar_background,
    get_2D_polar_background,
    subtract_polar_background,
)
from .utils import (
    bin2D,
    filter_2D_maxima,
    get_maxima_2D,
    get_shifted_ar,
    linear_interpolation_2D,
    make_Fourier_coords2D,
)

__all__ = [
    "set_scan_shape", "swap_RQ", "swap_Rxy", "swap_Qxy",
    "bin_data_diffraction", "bin_data_mmap", "bin_data_real", "thin_data_real",
    "resample_data_diffraction", "pad_data_diffraction",
    "datacube_diffraction_shift", "center_patterns",
    "filter_hot_pixels", "median_filter_masked_pixels",
    "get_bksbtr_DP", "get_darkreference", "get_background_streaks", "get_background_streaks_x",
    "get_background_streaks_y", "subtract_dark",
    "bin2D", "make_Fourier_coords2D", "get_shifted_ar", "linear_interpolation_2D",
    "get_maxima_2D", "filter_2D_maxima",
    "get_1D_polar_background", "get_2D_polar_background", "subtract_polar_background",
]
