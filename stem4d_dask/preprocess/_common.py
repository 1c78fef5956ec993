"""Moved to :mod:`stem4d_dask.graph` (kept importable while code moves over)."""

from ..graph import (  # noqa: F401
    frame_blocks,
    only_block,
    positive_int,
    rebuild,
    result_float_dtype,
    scan_location,
    whole_frames,
)
