"""PNG figures of 2D results, with calibrated axes (matplotlib's Agg backend, no pyplot)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure


def _label(da, dim):
    coord = da.coords.get(dim)
    units = coord.attrs.get("units") if coord is not None else None
    return f"{dim} ({units})" if units else dim


def _extent(da):
    """imshow extent (left, right, bottom, top) from the coords: rows = first dim."""
    rows, cols = da.dims

    def edges(dim, n):
        c = da.coords[dim].values if dim in da.coords else np.arange(n)
        step = c[1] - c[0] if n > 1 else 1.0
        return c[0] - step / 2, c[-1] + step / 2

    r0, r1 = edges(rows, da.shape[0])
    c0, c1 = edges(cols, da.shape[1])
    return (c0, c1, r1, r0)


def save_image_png(image, path, *, title=None, cmap="gray", log=False):
    """Draw a 2D DataArray (computed or lazy) as a PNG at ``path`` and return the path.

    The first dim runs down the rows (Rx / Qx, as in py4DSTEM), the second across; both axes
    are labelled with their coords' units; ``log=True`` uses a logarithmic colour scale.
    """
    if image.ndim != 2:
        raise ValueError(f"image must be 2D, got dims {image.dims}")
    values = np.asarray(image.values, dtype=np.float64)
    fig = Figure(figsize=(5.2, 4.4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    norm = None
    if log:
        positive = values[values > 0]
        low = positive.min() if positive.size else 1e-3
        norm = LogNorm(vmin=low, vmax=max(values.max(), low * 10))
        values = np.where(values > 0, values, low)
    im = ax.imshow(
        values, cmap=cmap, norm=norm, extent=_extent(image), origin="upper", interpolation="nearest"
    )
    ax.set_ylabel(_label(image, image.dims[0]))
    ax.set_xlabel(_label(image, image.dims[1]))
    if title:
        ax.set_title(title)
    fig.colorbar(im, ax=ax, label=image.attrs.get("units", "counts"))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path
