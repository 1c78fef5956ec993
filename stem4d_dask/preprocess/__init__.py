"""py4DSTEM-named preprocessing functions (``py4DSTEM.preprocess``) on lazy datacubes."""

from .preprocess import set_scan_shape, swap_Qxy, swap_RQ, swap_Rxy

__all__ = ["set_scan_shape", "swap_RQ", "swap_Rxy", "swap_Qxy"]
