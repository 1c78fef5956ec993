"""Figures of a DPC reconstruction: CoM fields, the rotation curve, the complex CoM image and the
phase with its convergence.

Figures are made as py4DSTEM users expect: when pyplot is in use (imported by the user, or a
Jupyter inline backend), through ``pyplot.figure`` so that ``plt.show()`` shows them and
``plt.savefig`` saves the last one; otherwise as ``matplotlib.figure.Figure`` objects on the
Agg canvas (no global state). :func:`show` displays a non-pyplot figure inside a Jupyter kernel
and does nothing elsewhere. Figures written by ``save_figures`` never go through pyplot.

Conventions: the first dim (``Rx``) runs down the rows, the second (``Ry``) across, with
extents from the calibrated coords; units are written ``(A)``, ``(pixels)``, ``(rad)``;
positions (the measured CoM) use a sequential colour map, signed quantities (descan-corrected
CoM) a diverging one centred at 0 with symmetric limits; each colour bar is as tall as its
image; layouts leave room for every label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.colors import hsv_to_rgb
from matplotlib.figure import Figure

from ..plotting import DIVERGING, SEQUENTIAL, axis_labels, new_figure, show, units_label
from ..plotting import extent as _extent
from ..plotting import image as _image

#: the phase's colour map (sequential: the phase has an arbitrary offset)
PHASE = "magma"


def _figure(fig, figsize) -> Figure:
    """``fig`` (given a tight layout when it has no layout engine), else a new figure."""
    if fig is None:
        return new_figure(figsize)
    if fig.get_layout_engine() is None:
        fig.set_layout_engine("tight")
    return fig


def plot_com_fields(panels, *, ncols=2, cmap=None, figsize=None, fig=None, **kwargs):
    """Grid of ``(title, DataArray, signed)`` panels (CoM components; ``signed`` defaults to
    True): signed panels use a diverging map (``cmap`` or :data:`DIVERGING`) centred at 0,
    the others (positions) a sequential one (``cmap`` or :data:`SEQUENTIAL`). Returns the
    Figure."""
    nrows = -(-len(panels) // ncols)
    fig = _figure(fig, figsize or (4.6 * ncols, 3.8 * nrows))
    for k, panel in enumerate(panels):
        title, da, signed = (*panel, True)[:3]
        ax = fig.add_subplot(nrows, ncols, k + 1)
        _image(
            fig,
            ax,
            da,
            cmap=cmap or (DIVERGING if signed else SEQUENTIAL),
            signed=signed,
            title=title,
            label=units_label("shift" if signed else "position", da.attrs.get("units")),
            **kwargs,
        )
    return fig


def plot_rotation_curve(curve, *, figsize=(8, 3.2), fig=None):
    """The curl (or divergence) against the rotation angle for both transpose branches, with
    the chosen angle marked. ``curve``: the Dataset of :attr:`DPC.rotation_curve`."""
    fig = _figure(fig, figsize)
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
    ax.set_xlabel("rotation (deg)")
    ax.set_ylabel(units_label(f"mean |{curve.attrs['metric']}|", curve.attrs.get("units")))
    ax.legend(loc="best")
    return fig


def complex_to_rgb(cx, cy, vmax=None):
    """RGB image of the vector field ``cx + i cy``: hue = direction, value = magnitude
    (scaled to ``vmax``, default the 99.5th percentile of the magnitude), full saturation."""
    cx, cy = np.asarray(cx, dtype=float), np.asarray(cy, dtype=float)
    return hsv_to_rgb(_hsv(cx, cy, complex_vmax(cx, cy) if vmax is None else vmax))


def complex_vmax(cx, cy) -> float:
    """The default magnitude scale of :func:`complex_to_rgb`: the 99.5th percentile of
    ``|cx + i cy|`` (1 when it is 0 or undefined)."""
    mag = np.hypot(np.asarray(cx, dtype=float), np.asarray(cy, dtype=float))
    vmax = float(np.nanpercentile(mag, 99.5)) if np.isfinite(mag).any() else 1.0
    return vmax if vmax > 0 else 1.0


def _hsv(cx, cy, vmax):
    vmax = vmax if vmax > 0 else 1.0
    hue = (np.arctan2(cy, cx) / (2 * np.pi)) % 1.0
    mag = np.clip(np.nan_to_num(np.hypot(cx, cy)) / vmax, 0, 1)
    return np.stack([hue, np.ones_like(hue), mag], axis=-1)


def colour_wheel(ax, vmax, units=""):
    """The legend of :func:`complex_to_rgb` on ``ax``: a wheel of radius ``vmax`` (hue =
    direction, brightness = magnitude), its axes the x (down, as ``Rx``) and y (across, as
    ``Ry``) components with ticks at ``-vmax, 0, vmax`` in ``units``."""
    t = np.linspace(-1, 1, 129)
    wx, wy = np.meshgrid(t, t, indexing="ij")
    rgb = hsv_to_rgb(_hsv(wx, wy, 1.0))
    rgb[np.hypot(wx, wy) > 1] = 1.0
    ax.imshow(rgb, extent=(-vmax, vmax, vmax, -vmax), interpolation="bilinear")
    ticks = [-vmax, 0.0, vmax]
    ax.set_xticks(ticks, [f"{v:.3g}" for v in ticks], fontsize=7)
    ax.set_yticks(ticks, [f"{v:.3g}" for v in ticks], fontsize=7)
    ax.set_xlabel(units_label("CoM y", units), fontsize=8)
    ax.set_ylabel(units_label("CoM x", units), fontsize=8)
    ax.set_title(units_label(f"|CoM| \u2264 {vmax:.3g}", units), fontsize=8)


def plot_complex(
    cx, cy, *, cbar=True, vmax=None, title="Corrected CoM", figsize=(7.5, 5.5), fig=None
):
    """Complex-colour image of ``cx + i cy`` (two ``(Rx, Ry)`` DataArrays), with a colour wheel
    (radius: ``vmax``, in the CoM's units) as its legend when ``cbar``; returns the Figure."""
    fig = _figure(fig, figsize)
    vmax = complex_vmax(cx.values, cy.values) if vmax is None else float(vmax)
    if cbar:
        ax, wheel = fig.subplots(1, 2, width_ratios=[4, 1.3])
    else:
        ax = fig.add_subplot()
    ax.imshow(
        complex_to_rgb(cx.values, cy.values, vmax), extent=_extent(cx), interpolation="nearest"
    )
    axis_labels(ax, cx)
    ax.set_title(title)
    if cbar:
        colour_wheel(wheel, vmax, cx.attrs.get("units", ""))
        wheel.set_box_aspect(1)
    return fig


def phase_in_radians(object_phase: xr.DataArray) -> tuple:
    """``(phase, colour-bar label)``: ``2 pi * object_phase`` labelled ``phase (rad)`` when the
    calibrations make it quantitative (units ``rad/(2 pi)``: py4DSTEM's phase has no 2π
    factor), else ``object_phase`` itself in arbitrary units."""
    if object_phase.attrs.get("units") == "rad/(2 pi)":
        phase = object_phase * np.float32(2 * np.pi)
        phase.attrs = {**object_phase.attrs, "units": "rad"}
        return phase, "phase (rad)"
    return object_phase, "phase (arb. units: uncalibrated)"


def _convergence(ax, errors):
    ax.semilogy(np.arange(1, len(errors) + 1), errors, marker="." if len(errors) < 40 else None)
    ax.set_xlabel("update kept")
    ax.set_ylabel("NMSE")


def plot_phase(
    object_phase,
    errors=None,
    *,
    cbar=True,
    plot_convergence=True,
    cmap=PHASE,
    figsize=(5.5, 6.5),
    fig=None,
    title=None,
    **kwargs,
):
    """The reconstructed phase (``(Rx, Ry)`` DataArray, in radians when calibrated: see
    :func:`phase_in_radians`) and, below it, the error of each kept update on a log scale;
    returns the Figure."""
    fig = _figure(fig, figsize)
    show_errors = plot_convergence and errors is not None and len(errors) > 0
    gs = fig.add_gridspec(2 if show_errors else 1, 1, height_ratios=[4, 1] if show_errors else [1])
    ax = fig.add_subplot(gs[0])
    phase, label = phase_in_radians(object_phase)
    _image(fig, ax, phase, cmap=cmap, cbar=cbar, title="DPC phase", label=label, **kwargs)
    if show_errors:
        _convergence(fig.add_subplot(gs[1]), errors)
    if title:
        fig.suptitle(title)
    return fig


def plot_phase_iterations(
    iterations, errors=None, *, grid=(2, 4), cmap=PHASE, figsize=None, fig=None
):
    """Evenly spaced stored iterations (list of ``(Rx, Ry)`` DataArrays) on a ``grid``."""
    rows, cols = grid
    n = len(iterations)
    picks = np.unique(np.linspace(0, n - 1, min(rows * cols, n)).round().astype(int))
    fig = _figure(fig, figsize or (3 * cols, 3 * rows + (1.5 if errors else 0)))
    for k, i in enumerate(picks):
        ax = fig.add_subplot(rows + (1 if errors else 0), cols, k + 1)
        phase, _ = phase_in_radians(iterations[i])
        _image(fig, ax, phase, cmap=cmap, cbar=False, title=f"update {i + 1}")
    if errors:
        _convergence(fig.add_subplot(rows + 1, 1, rows + 1), errors)
    return fig


# ---- DPC figures ------------------------------------------------------------------------------

_PY4DSTEM_ONLY = ("scalebar", "pixelsize", "pixelunits")  # accepted, ignored: axes are calibrated


def _like(values, template: xr.DataArray, name: str, units="") -> xr.DataArray:
    """``values`` (an ``(Rx, Ry)`` array) on ``template``'s dims and coords, with ``units``."""
    return xr.DataArray(
        np.asarray(values),
        dims=template.dims,
        coords=template.coords,
        name=name,
        attrs={"units": units, "long_name": ""},
    )


def dpc_com_figure(dpc, all_fields: bool = False, **kwargs) -> Figure:
    """The corrected CoM ``(com_x, com_y)`` of a preprocessed DPC (signed: diverging map
    centred at 0); with ``all_fields`` the measured CoM (positions on the detector, pixels:
    sequential map) and the normalised CoM (signed) before them. ``kwargs``: ``figsize``,
    ``cmap``, ``fig`` ... of :func:`plot_com_fields`."""
    panels = [("Corrected CoM_x", dpc.com_x, True), ("Corrected CoM_y", dpc.com_y, True)]
    if all_fields:
        panels = [
            ("Measured CoM_x", dpc.com_measured_x, False),
            ("Measured CoM_y", dpc.com_measured_y, False),
            ("Normalized CoM_x (descan removed)", dpc.com_normalized_x, True),
            ("Normalized CoM_y (descan removed)", dpc.com_normalized_y, True),
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
        figs["rotation"] = plot_rotation_curve(curve, figsize=kwargs.get("figsize", (8, 3.2)))
    if plot_center_of_mass in ("default", "all", True):
        figs["center_of_mass"] = dpc_com_figure(dpc, plot_center_of_mass == "all", **kwargs)
    return figs


def dpc_complex_figure(dpc, com=None, cbar=True, vmax=None, **kwargs) -> Figure:
    """Complex-colour image of ``com_x + i com_y`` (``com``: a ``(com_x, com_y)`` pair of
    ``(Rx, Ry)`` arrays instead, in the same units); py4DSTEM's ``scalebar``, ``pixelsize``,
    ``pixelunits`` are ignored (the axes are calibrated), the rest go to :func:`plot_complex`."""
    if com is None:
        cx, cy = dpc.com_x, dpc.com_y
    else:
        template = dpc.com_x
        units = template.attrs.get("units", "")
        cx = _like(com[0], template, "com_x", units)
        cy = _like(com[1], template, "com_y", units)
    for ignored in _PY4DSTEM_ONLY:
        kwargs.pop(ignored, None)
    return plot_complex(cx, cy, cbar=cbar, vmax=vmax, **kwargs)


def _phase_title(dpc) -> str:
    kept = len(dpc.error_iterations)
    return f"NMSE {dpc.error:.3e} after {kept} update{'s' if kept != 1 else ''} kept"


def dpc_phase_figure(
    dpc, fig=None, iterations_grid=None, plot_convergence: bool = True, cbar: bool = True, **kwargs
) -> Figure:
    """``object_phase`` and the error per kept update (``fig``: draw into this Figure); with
    ``iterations_grid=(rows, cols)`` the stored iterations instead (``ValueError`` when
    ``reconstruct(store_iterations=True)`` did not store them)."""
    if iterations_grid is None:
        return plot_phase(
            dpc.object_phase,
            dpc.error_iterations,
            cbar=cbar,
            plot_convergence=plot_convergence,
            fig=fig,
            title=_phase_title(dpc),
            **kwargs,
        )
    if not hasattr(dpc, "object_phase_iterations"):
        raise ValueError(
            "iterations_grid: object iterations were not stored; run "
            "reconstruct(store_iterations=True)"
        )
    template = dpc.object_phase
    units = template.attrs["units"]
    its = [_like(a, template, "object_phase", units) for a in dpc.object_phase_iterations]
    return plot_phase_iterations(
        its, dpc.error_iterations if plot_convergence else None, grid=iterations_grid, fig=fig
    )


def dpc_figures(dpc, phase: bool) -> dict:
    """The figures ``DPC.save_figures`` writes, by file stem (Agg figures, never pyplot's):
    ``dpc_center_of_mass`` (measured, normalised and corrected CoM), ``dpc_rotation``,
    ``dpc_complex_com`` and, with ``phase`` (after ``reconstruct``), ``dpc_phase``."""
    figs = {
        "dpc_center_of_mass": dpc_com_figure(dpc, True, fig=new_figure((9.2, 11.4), False)),
        "dpc_rotation": plot_rotation_curve(dpc.rotation_curve, fig=new_figure((8, 3.2), False)),
        "dpc_complex_com": plot_complex(dpc.com_x, dpc.com_y, fig=new_figure((7.5, 5.5), False)),
    }
    if phase:
        figs["dpc_phase"] = plot_phase(
            dpc.object_phase,
            dpc.error_iterations,
            title=_phase_title(dpc),
            fig=new_figure((5.5, 6.5), False),
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


__all__ = [
    "PHASE",
    "colour_wheel",
    "complex_to_rgb",
    "complex_vmax",
    "dpc_com_figure",
    "dpc_complex_figure",
    "dpc_figures",
    "dpc_phase_figure",
    "dpc_preprocess_figures",
    "new_figure",
    "phase_in_radians",
    "plot_com_fields",
    "plot_complex",
    "plot_phase",
    "plot_phase_iterations",
    "plot_rotation_curve",
    "save_pngs",
    "show",
]
