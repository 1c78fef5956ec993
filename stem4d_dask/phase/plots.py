"""Figures of a DPC reconstruction: CoM fields, the rotation curve, the complex CoM image and the
phase with its convergence. All are ``matplotlib.figure.Figure`` objects on the Agg canvas
(no pyplot, no global state); :func:`show` displays one inside a Jupyter kernel and does
nothing elsewhere, so scripts and tests have no display side effects.

Images follow py4DSTEM's layout: the first dim (``Rx``) runs down the rows, the second
(``Ry``) across, with extents from the calibrated coords.

The ``dpc_*`` functions build the figures of a :class:`stem4d_dask.phase.DPC` from its public
results (``com_x``, ``rotation_curve``, ``object_phase``, ``error_iterations`` ...); the class
stores them in ``dpc.figures`` and shows them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import hsv_to_rgb
from matplotlib.figure import Figure


def new_figure(figsize) -> Figure:
    """An Agg-backed Figure of ``figsize`` inches."""
    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def show(fig) -> None:
    """Display ``fig`` when running inside a Jupyter (IPython kernel) session; else nothing."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or "IPKernelApp" not in getattr(shell, "config", {}):
        return
    from IPython.display import display

    display(fig)


def _extent(da):
    """imshow extent ``(left, right, bottom, top)`` covering whole pixels, from the coords."""

    def edges(dim, n):
        c = np.asarray(da.coords[dim].values, dtype=float) if dim in da.coords else np.arange(n)
        step = c[1] - c[0] if n > 1 else 1.0
        return c[0] - step / 2, c[-1] + step / 2

    r0, r1 = edges(da.dims[0], da.shape[0])
    c0, c1 = edges(da.dims[1], da.shape[1])
    return (c0, c1, r1, r0)


def _axis_labels(ax, da):
    for setter, dim in ((ax.set_ylabel, da.dims[0]), (ax.set_xlabel, da.dims[1])):
        units = da.coords[dim].attrs.get("units") if dim in da.coords else None
        setter(f"{dim} [{units}]" if units else dim)


def _image(fig, ax, da, *, cmap, cbar=True, title=None, **kwargs):
    im = ax.imshow(
        np.asarray(da.values, dtype=float),
        extent=_extent(da),
        cmap=cmap,
        interpolation="nearest",
        **kwargs,
    )
    _axis_labels(ax, da)
    if title:
        ax.set_title(title)
    if cbar:
        fig.colorbar(im, ax=ax, shrink=0.85, label=da.attrs.get("units", ""))
    return im


def plot_com_fields(panels, *, ncols=2, cmap="RdBu_r", figsize=None, fig=None, **kwargs):
    """Grid of ``(title, DataArray)`` panels (CoM components); returns the Figure."""
    nrows = -(-len(panels) // ncols)
    fig = fig or new_figure(figsize or (4.2 * ncols, 3.6 * nrows))
    for k, (title, da) in enumerate(panels):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        _image(fig, ax, da, cmap=cmap, title=title, **kwargs)
    fig.tight_layout()
    return fig


def plot_rotation_curve(curve, *, figsize=(8, 3), fig=None):
    """The curl (or divergence) against the rotation angle for both transpose branches, with
    the chosen angle marked. ``curve``: the Dataset of :attr:`DPC.rotation_curve`."""
    fig = fig or new_figure(figsize)
    ax = fig.add_subplot()
    angles = curve["angle"].values
    marker = "o" if angles.size == 1 else None
    for name, label in (("untransposed", "CoM"), ("transposed", "CoM after transpose")):
        values = curve[name].values
        if np.isfinite(values).any():
            ax.plot(angles, values, marker=marker, label=label)
    ax.axvline(
        curve.attrs["rotation_deg"],
        color="k",
        lw=1,
        label=f"best: {curve.attrs['rotation_deg']:g} deg"
        + (", transposed" if curve.attrs["transpose"] else ""),
    )
    ax.set_xlabel("Rotation [degrees]")
    ax.set_ylabel(f"Mean absolute {curve.attrs['metric']}")
    ax.legend(loc="best")
    fig.tight_layout()
    return fig


def complex_to_rgb(cx, cy, vmax=None):
    """RGB image of the vector field ``cx + i cy``: hue = direction, value = magnitude
    (scaled to ``vmax``, default the 99.5th percentile of the magnitude), full saturation."""
    cx, cy = np.asarray(cx, dtype=float), np.asarray(cy, dtype=float)
    mag = np.hypot(cx, cy)
    if vmax is None:
        vmax = np.nanpercentile(mag, 99.5) if np.isfinite(mag).any() else 1.0
    vmax = vmax if vmax > 0 else 1.0
    hue = (np.arctan2(cy, cx) / (2 * np.pi)) % 1.0
    hsv = np.stack([hue, np.ones_like(hue), np.clip(np.nan_to_num(mag) / vmax, 0, 1)], axis=-1)
    return hsv_to_rgb(hsv)


def plot_complex(cx, cy, *, cbar=True, vmax=None, title="Corrected CoM", figsize=(6, 6), fig=None):
    """Complex-colour image of ``cx + i cy`` (two ``(Rx, Ry)`` DataArrays), with a colour wheel
    as its legend when ``cbar``; returns the Figure."""
    fig = fig or new_figure(figsize)
    ax = fig.add_subplot()
    ax.imshow(
        complex_to_rgb(cx.values, cy.values, vmax), extent=_extent(cx), interpolation="nearest"
    )
    _axis_labels(ax, cx)
    ax.set_title(title)
    if cbar:
        wheel = ax.inset_axes([1.02, 0.0, 0.22, 0.22])
        t = np.linspace(-1, 1, 101)
        wx, wy = np.meshgrid(t, t, indexing="ij")
        rgb = complex_to_rgb(wx, wy, 1.0)
        rgb[np.hypot(wx, wy) > 1] = 1.0
        wheel.imshow(rgb, extent=(-1, 1, 1, -1))
        wheel.set_xlabel("y", fontsize=8)
        wheel.set_ylabel("x", fontsize=8)
        wheel.set_xticks([])
        wheel.set_yticks([])
    fig.tight_layout()
    return fig


def plot_phase(
    object_phase,
    errors=None,
    *,
    cbar=True,
    plot_convergence=True,
    cmap="magma",
    figsize=(5, 6),
    fig=None,
    title=None,
    **kwargs,
):
    """The reconstructed phase (``(Rx, Ry)`` DataArray) and, below it, the error per
    iteration on a log scale; returns the Figure."""
    fig = fig or new_figure(figsize)
    show_errors = plot_convergence and errors is not None and len(errors) > 0
    gs = fig.add_gridspec(2 if show_errors else 1, 1, height_ratios=[4, 1] if show_errors else [1])
    ax = fig.add_subplot(gs[0])
    _image(
        fig, ax, object_phase, cmap=cmap, cbar=cbar, title="Reconstructed object phase", **kwargs
    )
    if show_errors:
        ax2 = fig.add_subplot(gs[1])
        ax2.semilogy(np.arange(len(errors)), errors)
        ax2.set_xlabel("Iteration number")
        ax2.set_ylabel("NMSE")
        ax2.yaxis.tick_right()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_phase_iterations(
    iterations, errors=None, *, grid=(2, 4), cmap="magma", figsize=None, fig=None
):
    """Evenly spaced stored iterations (list of ``(Rx, Ry)`` DataArrays) on a ``grid``."""
    rows, cols = grid
    n = len(iterations)
    picks = np.unique(np.linspace(0, n - 1, min(rows * cols, n)).round().astype(int))
    fig = fig or new_figure(figsize or (3 * cols, 3 * rows + (1 if errors else 0)))
    for k, i in enumerate(picks):
        ax = fig.add_subplot(rows + (1 if errors else 0), cols, k + 1)
        _image(fig, ax, iterations[i], cmap=cmap, cbar=False, title=f"Iter: {i}")
    if errors:
        ax = fig.add_subplot(rows + 1, 1, rows + 1)
        ax.semilogy(np.arange(len(errors)), errors)
        ax.set_xlabel("Iteration number")
        ax.set_ylabel("NMSE")
    fig.tight_layout()
    return fig


# ---- DPC figures ------------------------------------------------------------------------------

_PY4DSTEM_ONLY = ("scalebar", "pixelsize", "pixelunits")  # accepted, ignored: axes are calibrated


def _like(values, template: xr.DataArray, name: str) -> xr.DataArray:
    """``values`` (an ``(Rx, Ry)`` array) on ``template``'s dims and coords, without units."""
    return xr.DataArray(
        np.asarray(values),
        dims=template.dims,
        coords=template.coords,
        name=name,
        attrs={"units": "", "long_name": ""},
    )


def dpc_com_figure(dpc, all_fields: bool = False, **kwargs) -> Figure:
    """The corrected CoM ``(com_x, com_y)`` of a preprocessed DPC; with ``all_fields`` the
    measured (detector pixels) and normalised CoM before them. ``kwargs``: ``figsize``, ``cmap``
    ... of :func:`plot_com_fields`."""
    panels = [("Corrected CoM_x", dpc.com_x), ("Corrected CoM_y", dpc.com_y)]
    if all_fields:
        panels = [
            ("CoM_x", dpc.com_measured_x),
            ("CoM_y", dpc.com_measured_y),
            ("Normalized CoM_x", dpc.com_normalized_x),
            ("Normalized CoM_y", dpc.com_normalized_y),
        ] + panels
    return plot_com_fields(panels, **kwargs)


def dpc_preprocess_figures(dpc, plot_center_of_mass, plot_rotation, kwargs) -> dict:
    """``{"rotation": Figure, "center_of_mass": Figure}`` as ``DPC.preprocess`` draws them:
    the rotation curve when ``plot_rotation`` and there is a curve (more than one angle, or a
    finite value), the CoM when ``plot_center_of_mass`` is ``'default'``/True (corrected) or
    ``'all'``. ``kwargs``: ``figsize`` (both) and ``cmap`` (CoM)."""
    figs = {}
    curve = dpc.rotation_curve if plot_rotation else None
    if curve is not None and (
        curve.sizes["angle"] > 1 or np.isfinite(curve["untransposed"].values).any()
    ):
        figs["rotation"] = plot_rotation_curve(curve, figsize=kwargs.get("figsize", (8, 3)))
    if plot_center_of_mass in ("default", "all", True):
        figs["center_of_mass"] = dpc_com_figure(dpc, plot_center_of_mass == "all", **kwargs)
    return figs


def dpc_complex_figure(dpc, com=None, cbar=True, vmax=None, **kwargs) -> Figure:
    """Complex-colour image of ``com_x + i com_y`` (``com``: a ``(com_x, com_y)`` pair of
    ``(Rx, Ry)`` arrays instead); py4DSTEM's ``scalebar``, ``pixelsize``, ``pixelunits`` are
    ignored (the axes are calibrated), the rest go to :func:`plot_complex`."""
    if com is None:
        cx, cy = dpc.com_x, dpc.com_y
    else:
        template = dpc.com_x
        cx, cy = _like(com[0], template, "com_x"), _like(com[1], template, "com_y")
    for ignored in _PY4DSTEM_ONLY:
        kwargs.pop(ignored, None)
    return plot_complex(cx, cy, cbar=cbar, vmax=vmax, **kwargs)


def dpc_phase_figure(
    dpc, fig=None, iterations_grid=None, plot_convergence: bool = True, cbar: bool = True, **kwargs
) -> Figure:
    """``object_phase`` and the error per iteration (``fig``: draw into this Figure); with
    ``iterations_grid=(rows, cols)`` the stored iterations instead (``ValueError`` when
    ``reconstruct(store_iterations=True)`` did not store them)."""
    if iterations_grid is None:
        return plot_phase(
            dpc.object_phase,
            dpc.error_iterations,
            cbar=cbar,
            plot_convergence=plot_convergence,
            fig=fig,
            title=f"Normalized mean squared error: {dpc.error:.3e}",
            **kwargs,
        )
    if not hasattr(dpc, "object_phase_iterations"):
        raise ValueError(
            "iterations_grid: object iterations were not stored; run "
            "reconstruct(store_iterations=True)"
        )
    template = dpc.com_x  # any (Rx, Ry) result: the scan coords
    its = [_like(a, template, "object_phase") for a in dpc.object_phase_iterations]
    return plot_phase_iterations(
        its, dpc.error_iterations if plot_convergence else None, grid=iterations_grid, fig=fig
    )


def dpc_figures(dpc, phase: bool) -> dict:
    """The figures ``DPC.save_figures`` writes, by file stem: ``dpc_center_of_mass`` (measured,
    normalised and corrected CoM), ``dpc_rotation``, ``dpc_complex_com`` and, with ``phase``
    (after ``reconstruct``), ``dpc_phase``."""
    figs = {
        "dpc_center_of_mass": dpc_com_figure(dpc, True),
        "dpc_rotation": plot_rotation_curve(dpc.rotation_curve),
        "dpc_complex_com": plot_complex(dpc.com_x, dpc.com_y),
    }
    if phase:
        figs["dpc_phase"] = plot_phase(
            dpc.object_phase,
            dpc.error_iterations,
            title=f"Normalized mean squared error: {dpc.error:.3e}",
        )
    return figs


def save_pngs(figs: dict, out_dir) -> list:
    """Write ``{stem: Figure}`` as ``out_dir/stem.png`` (the folder created if needed); returns
    the paths written, in order."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in figs.items():
        path = out / f"{name}.png"
        fig.savefig(path)
        paths.append(path)
    return paths
