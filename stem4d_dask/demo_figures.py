"""The figures of ``stem4d demo`` (:mod:`stem4d_dask.demo`), drawn with
:func:`stem4d_dask.plotting.save_image_png`; DPC draws its own (``DPC.save_figures``)."""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from .plotting import save_image_png


def save_scan_figures(out, mean_raw, mask, dark, vbf, radius, bin_factor, q_pixel_size, q_units):
    """PNGs of the DPC scan into ``out``: the raw mean pattern (log scale), the hot-pixel mask,
    the dark reference (counts), and the virtual bright field of the converted store with its
    detector ``radius`` (binned detector pixels of ``q_pixel_size`` ``q_units``) in the title.

    mean_raw, mask : ``(Qx, Qy)`` DataArrays (counts; bool); dark : ``(Qx, Qy)`` numpy counts;
    vbf : ``(Rx, Ry)`` DataArray (counts). Returns the paths written.
    """
    out = Path(out)
    hot = int(mask.values.sum())
    dark = xr.DataArray(dark, dims=mean_raw.dims, coords=mean_raw.coords, attrs={"units": "counts"})
    return [
        save_image_png(
            mean_raw, out / "mean_pattern.png", title="mean pattern of demo.mib (raw)", log=True
        ),
        save_image_png(
            mask.astype(float),
            out / "hot_pixel_mask.png",
            title=f"hot-pixel mask ({hot} pixels)",
            cmap="magma",
            label="hot pixel (1 = masked)",
        ),
        save_image_png(
            dark, out / "dark_reference.png", title="dark reference (get_darkreference)"
        ),
        save_image_png(
            vbf,
            out / "virtual_bright_field.png",
            title=f"virtual bright field (detector binned {bin_factor}x)",
            radius=radius,
            q_pixel_size=q_pixel_size,
            q_units=q_units,
        ),
    ]


def save_counting_figures(out, events) -> list:
    """PNGs of the counted scan into ``out``: the counted pattern (events on every detector
    pixel, summed over the scan) and the events per scan position. ``events``:
    :class:`~stem4d_dask.events.ElectronEvents`. Returns the paths written."""
    out = Path(out)
    return [
        save_image_png(
            events.sum_diffraction().compute(),
            out / "counted_pattern.png",
            title="counted pattern (events per pixel)",
            cmap="viridis",
        ),
        save_image_png(
            events.counts().compute(),
            out / "events_per_position.png",
            title="electrons counted per scan position",
            cmap="viridis",
        ),
    ]
