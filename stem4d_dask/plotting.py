"""Figures of 2D results with calibrated axes, and the helpers every figure of the package
shares (:mod:`stem4d_dask.phase.plots` draws the DPC figures with them).

Conventions: the first dim (``Rx`` / ``Qx``, as in py4DSTEM) runs down the rows, the second
across; axes and colour bars say their units as ``(A)``, ``(mrad)``, ``(pixels)``, ``(rad)``;
each colour bar is as tall as its image (``make_axes_locatable``); layouts are tight, so
that labels do not collide. Positions and intensities use a sequential colour
map, signed quantities a diverging one centred at 0 (symmetric limits).

Figures are made through pyplot only when pyplot is in use (imported by the user or a Jupyter
backend), so that ``plt.show()`` / ``plt.savefig`` see them, and otherwise on the Agg canvas
(no global state).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

#: colour maps: positions / intensities (sequential), signed fields (diverging, centred at 0)
SEQUENTIAL, DIVERGING = "viridis", "RdBu_r"


def pyplot_in_use() -> bool:
    """Whether ``matplotlib.pyplot`` has been imported (by the user, or a Jupyter backend)."""
    return "matplotlib.pyplot" in sys.modules


def new_figure(figsize, pyplot=None, dpi=100) -> Figure:
    """A Figure of ``figsize`` inches with a tight layout (room for every label): made by
    ``pyplot.figure`` when ``pyplot`` (default: :func:`pyplot_in_use`), else an Agg-backed
    Figure."""
    if pyplot is None:
        pyplot = pyplot_in_use()
    if pyplot:
        import matplotlib.pyplot as plt

        return plt.figure(figsize=figsize, dpi=dpi, layout="tight")
    fig = Figure(figsize=figsize, dpi=dpi, layout="tight")
    FigureCanvasAgg(fig)
    return fig


def show(fig) -> None:
    """Display ``fig`` inside a Jupyter (IPython kernel) session unless pyplot manages it (its
    backend shows it then); elsewhere nothing."""
    if getattr(fig.canvas, "manager", None) is not None:
        return
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or "IPKernelApp" not in getattr(shell, "config", {}):
        return
    from IPython.display import display

    display(fig)


def units_label(name: str, units) -> str:
    """``"name (units)"`` (``"(units)"`` without a name), or ``name`` without units."""
    if not units:
        return name
    return f"{name} ({units})" if name else f"({units})"


def extent(da):
    """imshow extent ``(left, right, bottom, top)`` covering whole pixels, from the coords."""

    def edges(dim, n):
        c = np.asarray(da.coords[dim].values, dtype=float) if dim in da.coords else np.arange(n)
        step = c[1] - c[0] if n > 1 else 1.0
        return c[0] - step / 2, c[-1] + step / 2

    r0, r1 = edges(da.dims[0], da.shape[0])
    c0, c1 = edges(da.dims[1], da.shape[1])
    return (c0, c1, r1, r0)


def axis_labels(ax, da):
    """Label ``ax`` with ``da``'s dims and their coords' units: ``Rx (A)``."""
    for setter, dim in ((ax.set_ylabel, da.dims[0]), (ax.set_xlabel, da.dims[1])):
        units = da.coords[dim].attrs.get("units") if dim in da.coords else None
        setter(units_label(dim, units))


def symmetric_limits(values) -> tuple:
    """``(-m, m)`` with ``m`` the largest finite ``|value|`` (1 when there is none or it is 0)."""
    values = np.asarray(values, dtype=float)
    finite = np.abs(values[np.isfinite(values)])
    m = float(finite.max()) if finite.size else 0.0
    m = m if m > 0 else 1.0
    return -m, m


def colorbar(fig, ax, mappable, label=""):
    """A colour bar right of ``ax``, exactly as tall as its (aspect-adjusted) image: an axes
    appended by :func:`mpl_toolkits.axes_grid1.make_axes_locatable`, which the tight layout
    of :func:`new_figure` keeps clear of the neighbouring panels."""
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    cax = make_axes_locatable(ax).append_axes("right", size="5%", pad=0.08)
    return fig.colorbar(mappable, cax=cax, label=label)


def image(fig, ax, da, *, cmap, signed=False, cbar=True, title=None, label=None, **kwargs):
    """Draw the 2D DataArray ``da`` on ``ax`` with calibrated axes; ``signed``: symmetric
    limits around 0 (unless ``vmin``/``vmax``/``norm`` are given); ``label``: the colour
    bar's (default: ``(units)`` of ``da``). Returns the AxesImage."""
    values = np.asarray(da.values, dtype=float)
    if signed and not {"vmin", "vmax", "norm"} & kwargs.keys():
        kwargs["vmin"], kwargs["vmax"] = symmetric_limits(values)
    im = ax.imshow(values, extent=extent(da), cmap=cmap, interpolation="nearest", **kwargs)
    axis_labels(ax, da)
    if title:
        ax.set_title(title)
    if cbar:
        colorbar(fig, ax, im, units_label("", da.attrs.get("units")) if label is None else label)
    return im


def radius_text(radius, pixel_size=None, units=None) -> str:
    """``"r = 8 px (2.0 mrad)"``: a detector radius in pixels and, with ``pixel_size`` and
    ``units`` (not pixels), in calibrated units."""
    text = f"r = {radius:g} px"
    if pixel_size is not None and units and units != "pixels":
        value = np.format_float_positional(
            radius * pixel_size, precision=3, unique=True, fractional=False, trim="0"
        )
        text += f" ({value} {units})"
    return text


def save_image_png(
    image_da,
    path,
    *,
    title=None,
    cmap="gray",
    log=False,
    radius=None,
    q_pixel_size=None,
    q_units=None,
    label=None,
):
    """Draw a 2D DataArray (computed or lazy) as a PNG at ``path`` and return the path.

    The first dim runs down the rows (Rx / Qx, as in py4DSTEM), the second across; both axes
    are labelled with their coords' units; ``log=True`` uses a logarithmic colour scale.
    ``radius`` (detector pixels) of the virtual detector that made the image, with the
    detector's ``q_pixel_size`` and ``q_units``, is appended to the title:
    ``"virtual bright field, r = 8 px (2.0 mrad)"``. ``label``: the colour bar's (default:
    ``long_name (units)`` from the image's attrs, ``intensity (counts)`` without them).
    """
    if image_da.ndim != 2:
        raise ValueError(f"image must be 2D, got dims {image_da.dims}")
    values = np.asarray(image_da.values, dtype=np.float64)
    fig = new_figure((5.4, 4.4), pyplot=False, dpi=110)
    ax = fig.add_subplot()
    kwargs = {}
    if log:
        positive = values[values > 0]
        low = positive.min() if positive.size else 1e-3
        kwargs["norm"] = LogNorm(vmin=low, vmax=max(values.max(), low * 10))
        image_da = image_da.copy(data=np.where(values > 0, values, low))
    if radius is not None:
        title = ", ".join(t for t in (title, radius_text(radius, q_pixel_size, q_units)) if t)
    name = image_da.attrs.get("long_name") or "intensity"
    label = label or units_label(name, image_da.attrs.get("units", "counts"))
    image(fig, ax, image_da, cmap=cmap, title=title, label=label, **kwargs)
    path = Path(path)
    fig.savefig(path)
    return path
