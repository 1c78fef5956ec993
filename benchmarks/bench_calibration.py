"""Calibration rows: operations on a datacube that went through plain xarray (a stepped
``isel``, a crop, a transpose, a concatenation) run as fast as on the same pixels built
directly, and checking a huge cube's coords costs milliseconds, not a pass over the data.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import xarray as xr

import stem4d_dask as s4
from stem4d_dask.datacube import StaleCalibrationWarning
from stem4d_dask.phase import center_of_mass
from stem4d_dask.preprocess import bin_data_diffraction

from .common import Context, Row, median_time


def rows(ctx: Context) -> list[Row]:
    warnings.simplefilter("ignore", StaleCalibrationWarning)
    dc = s4.from_array(ctx.cube, r_pixel_size=0.5, r_units="nm", q_pixel_size=0.2, q_units="mrad")
    stepped = dc.isel(Rx=slice(None, None, 2), Ry=slice(None, None, 2))
    direct = s4.from_array(
        np.ascontiguousarray(ctx.cube[::2, ::2]),
        r_pixel_size=1.0,
        r_units="nm",
        q_pixel_size=0.2,
        q_units="mrad",
    )
    nbytes = direct.nbytes
    half = dc.shape[0] // 2
    shuffled = xr.concat(
        [dc.isel(Rx=slice(0, half)), dc.isel(Rx=slice(half, None))], dim="Rx"
    ).transpose("Qy", "Qx", "Ry", "Rx")
    read = stepped.data.map_blocks(lambda b: np.zeros((1,) * 4, b.dtype), chunks=(1,) * 4)
    floor_s = median_time(lambda: read.sum().compute(), ctx.repeats)
    out = [
        Row(
            "dask read of the isel(::2, ::2) selection",
            floor_s,
            nbytes,
            "dask's getitem copies a stepped view: the floor here",
        )
    ]
    for label, cube, size in (
        ("built directly", direct, nbytes),
        ("after isel(::2, ::2)", stepped, nbytes),
        ("after concat + transpose", shuffled, ctx.nbytes),
    ):
        com = center_of_mass(cube)
        seconds = median_time(lambda c=com: c.compute(), ctx.repeats)
        note = f"{floor_s / seconds:.2f}x the stepped read" if cube is stepped else ""
        out.append(Row(f"center_of_mass, {label}", seconds, size, note))
    for label, cube in (("built directly", direct), ("after isel(::2, ::2)", stepped)):
        binned = bin_data_diffraction(cube, 2)
        seconds = median_time(lambda b=binned: b.compute(), ctx.repeats)
        out.append(Row(f"bin_data_diffraction(2), {label}", seconds, nbytes))
    huge = s4.from_array(
        np.broadcast_to(np.zeros((1, 1, 256, 256), np.uint16), (4096, 4096, 256, 256)),
        chunks=(64, 4096),
    )
    crop = huge.isel(Rx=slice(100, 3000, 3), Ry=slice(0, None, 3))
    t0 = time.perf_counter()
    crop.stem4d.checked()
    check_ms = (time.perf_counter() - t0) * 1e3
    out.append(
        Row(
            "coord check of a 4096x4096x256x256 crop",
            max(check_ms / 1e3, 1e-9),
            crop.nbytes,
            f"{check_ms:.1f} ms for {crop.nbytes / 2**40:.2f} TiB: no data read",
        )
    )
    return out
