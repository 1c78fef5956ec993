"""A datacube's calibration, read from its coordinates.

The coordinates are the truth. xarray keeps them right through ``isel``/``sel`` (steps and
crops), ``reindex``, ``concat`` and ``transpose``, and leaves the attrs alone; so an operation
that needs a pixel size, an origin or units reads them here, from the coords, and an operation
that makes a new grid (binning, thinning, resampling, padding) makes its coords here too. The
``r_pixel_size`` / ``q_pixel_size`` attrs are derived from the coords (:func:`derived_attrs`).

An axis is *regular* when its coordinate steps agree to ``REL_TOL`` (relative); its
``origin`` is the coordinate of its first pixel. A *pixel size* exists for a space (``"r"``:
scan, ``"q"``: detector) when both of its axes are regular, increasing and have the same step;
:func:`pixel_size` raises a ``ValueError`` saying which of these fails otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from .calibration import Q_UNITS, R_UNITS, canonical_units, convert_q_pixel_size

REL_TOL = 1e-6
DIMS = ("Rx", "Ry", "Qx", "Qy")  # scan first, detector last; "x" is array axis 0 in both
R_DIMS, Q_DIMS = DIMS[:2], DIMS[2:]
SPACES = {"r": R_DIMS, "q": Q_DIMS}
# the calibration attrs: the first four are derived from the coords, never trusted from attrs
CALIBRATION_KEYS = ("r_pixel_size", "r_units", "q_pixel_size", "q_units", "energy")
DERIVED_KEYS = CALIBRATION_KEYS[:4]
UNITS = {"r": R_UNITS, "q": Q_UNITS}


@dataclass(frozen=True)
class Axis:
    """One dimension's calibration, as its coordinate says it.

    ``origin``: coordinate of pixel 0; ``step``: spacing of a regular coordinate (negative when
    it decreases), None when irregular or of one pixel; ``problem``: why there is no step.
    """

    dim: str
    size: int
    origin: float
    step: float | None
    units: str
    problem: str | None = None


def space_of(dim: str) -> str:
    return "r" if dim in SPACES["r"] else "q"


def coord_values(values, dim: str, parameter: str = "datacube") -> np.ndarray:
    """A coordinate as a finite float64 vector; ``ValueError`` naming the dim otherwise."""
    values = np.asarray(values)
    if values.ndim != 1 or values.dtype.kind not in "biuf":
        raise ValueError(
            f"{parameter}: the {dim} coordinate must be a 1D vector of numbers, "
            f"got dtype {values.dtype} and shape {values.shape}"
        )
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{parameter}: the {dim} coordinate holds NaN or inf values")
    return values


def make_axis(values, dim: str, units: str) -> Axis:
    """:class:`Axis` of coordinate ``values`` (float64 vector) in ``units``."""
    n = int(values.size)
    if n < 2:
        return Axis(
            dim,
            n,
            float(values[0]),
            None,
            units,
            f"the {dim} axis has a single pixel, so its coordinate has no spacing",
        )
    steps = np.diff(values)
    step = (values[-1] - values[0]) / (n - 1)
    if step == 0 or np.abs(steps - step).max() > REL_TOL * abs(step):
        return Axis(
            dim,
            n,
            float(values[0]),
            None,
            units,
            f"the {dim} coordinate is not evenly spaced (steps from {steps.min():g} to "
            f"{steps.max():g} {units}), e.g. after concatenating scans or selecting "
            f"a list of positions",
        )
    return Axis(dim, n, float(values[0]), float(step), units)


def axis(dc: xr.DataArray, dim: str) -> Axis:
    """:class:`Axis` of ``dim`` of a checked datacube (or any DataArray with a ``dim`` coord
    carrying ``attrs['units']``)."""
    coord = dc.coords[dim]
    return make_axis(coord_values(coord.values, dim), dim, coord.attrs.get("units", "pixels"))


def pixel_size(dc: xr.DataArray, space: str, needed_by: str) -> float:
    """The pixel size of ``space`` (``"r"`` or ``"q"``) in its units, from the coords.

    Raises ``ValueError`` naming ``needed_by`` when an axis is irregular or decreasing, or the
    two axes' steps differ. An axis of one pixel takes the other's step; when both have one
    pixel the ``{space}_pixel_size`` attr (else 1) is all there is.
    """
    axes = [axis(dc, d) for d in SPACES[space]]
    for a in axes:
        if a.step is None and a.size > 1:
            raise ValueError(f"{needed_by} needs a {_name(space)} pixel size, but {a.problem}")
        if a.step is not None and a.step < 0:
            raise ValueError(
                f"{needed_by} needs a {_name(space)} pixel size, but the {a.dim} "
                f"coordinate decreases (step {a.step:g} {a.units}); reverse it "
                f"with .isel({a.dim}=slice(None, None, -1))"
            )
    steps = [a.step for a in axes if a.step is not None]
    if not steps:
        return float(dc.attrs.get(f"{space}_pixel_size", 1.0))
    if len(steps) == 2 and abs(steps[0] - steps[1]) > REL_TOL * max(steps):
        x, y = axes
        raise ValueError(
            f"{needed_by} needs square {_name(space)} pixels, but the {x.dim} "
            f"step is {x.step:g} and the {y.dim} step {y.step:g} {x.units} "
            f"(non-square pixels, as a file may record or a selection that steps "
            f"one axis only makes)"
        )
    return float(np.mean(steps))


def units(dc: xr.DataArray, space: str) -> str:
    """The units of ``space`` (the coords', checked equal by :func:`check_coords`)."""
    return dc.coords[SPACES[space][0]].attrs.get("units", "pixels")


def _name(space):
    return "scan" if space == "r" else "detector"


def derived_attrs(dc: xr.DataArray) -> dict:
    """``r_pixel_size``, ``r_units``, ``q_pixel_size``, ``q_units`` from the coords; a pixel
    size is left out when the coords do not define one (irregular or non-square), and is
    ``dc.attrs``' own when every axis of its space has one pixel."""
    out = {}
    for space in SPACES:
        try:
            out[f"{space}_pixel_size"] = pixel_size(dc, space, "")
        except ValueError:
            pass
        out[f"{space}_units"] = units(dc, space)
    return out


def coord(values, dim: str, units_: str) -> xr.DataArray:
    """A coordinate DataArray for ``dim`` with ``attrs['units']``."""
    return xr.DataArray(np.asarray(values, dtype=np.float64), dims=(dim,), attrs={"units": units_})


def regular_coord(n: int, step: float, units_: str, dim: str, origin: float = 0.0):
    """``origin + arange(n) * step`` as a coordinate of ``dim``."""
    return coord(origin + np.arange(n) * step, dim, units_)


def check_coords(dc: xr.DataArray, attrs: dict, parameter: str) -> dict:
    """The four coords of ``dc`` checked (numbers, finite, units allowed and equal on both axes
    of a space). A missing coord is made (origin 0) with the step of the other axis of its space
    when that one is regular, else ``attrs['{space}_pixel_size']``, else 1; its units are the
    other axis's, else ``attrs['{space}_units']``, else pixels. Returns ``{dim: coord}``."""
    out = {}
    for space, dims in SPACES.items():
        present = [dc.coords[d].attrs.get("units") for d in dims if d in dc.coords]
        named = {u for u in present if u is not None}
        if len(named) > 1:
            raise ValueError(
                f"{parameter}: the {dims[0]} and {dims[1]} coordinates have "
                f"different units {sorted(named)}"
            )
        raw = named.pop() if named else attrs.get(f"{space}_units", "pixels")
        unit = canonical_units(
            raw, parameter=f"{parameter}: {_name(space)} units", allowed=UNITS[space]
        )
        for d in dims:
            if d in dc.coords:
                out[d] = coord(coord_values(dc.coords[d].values, d, parameter), d, unit)
        step = float(attrs.get(f"{space}_pixel_size", 1.0))
        for d in dims:
            if d not in out:
                other = [
                    make_axis(c.values, c.dims[0], unit) for c in out.values() if c.dims[0] in dims
                ]
                known = [a.step for a in other if a.step is not None]
                out[d] = regular_coord(dc.sizes[d], known[0] if known else step, unit, d)
    return out


def is_checked(dc: xr.DataArray) -> bool:
    """True when ``dc`` already is what :func:`check_coords` and the derived attrs make of it
    (float64 coords with canonical units on every dim, calibration attrs equal to the derived
    ones), so a check can return it unchanged."""
    for space, dims in SPACES.items():
        for d in dims:
            c = dc.coords.get(d)
            if (
                c is None
                or c.dtype != np.float64
                or c.attrs.get("units") not in UNITS[space]
                or not np.isfinite(c.values).all()
            ):
                return False
        if len({dc.coords[d].attrs["units"] for d in dims}) != 1:
            return False
    derived = derived_attrs(dc)
    keys = DERIVED_KEYS
    return all(dc.attrs.get(k) == derived.get(k) for k in keys)


# --- new grids made by operations ----------------------------------------------------------


def binned(coordinate: xr.DataArray, factor: int) -> xr.DataArray:
    """The coordinate of ``factor``-pixel bins: the mean coordinate of the pixels each bin
    sums (trailing pixels that fill no bin are dropped). Regular axes stay regular with
    ``step * factor``, starting at ``origin + step * (factor - 1) / 2``."""
    values = coordinate.values.astype(np.float64)
    n = values.size // factor
    means = values[: n * factor].reshape(n, factor).mean(axis=1)
    return coord(means, coordinate.dims[0], coordinate.attrs.get("units", "pixels"))


def thinned(coordinate: xr.DataArray, factor: int) -> xr.DataArray:
    """The coordinate of every ``factor``-th pixel from the first (``n // factor`` of them)."""
    n = coordinate.size // factor
    return coordinate.isel({coordinate.dims[0]: slice(0, n * factor, factor)})


def resampled(
    dc: xr.DataArray, dim: str, n_out: int, first: float, scale: float, needed_by: str
) -> xr.DataArray:
    """Coordinate of ``n_out`` samples taken at input pixel positions ``first + j * scale``
    along the regular axis ``dim`` (an irregular one raises, naming ``needed_by``)."""
    a = axis(dc, dim)
    step = a.step if a.step is not None else _single_pixel_step(dc, a, needed_by)
    return coord(a.origin + (first + np.arange(n_out) * scale) * step, dim, a.units)


def _single_pixel_step(dc, a: Axis, needed_by: str) -> float:
    if a.size > 1:
        raise ValueError(f"{needed_by} needs a regular {a.dim} axis, but {a.problem}")
    return pixel_size(dc, space_of(a.dim), needed_by)


# --- quantities given in calibrated units ---------------------------------------------------


def q_pixels(dc: xr.DataArray, value, units_: str, parameter: str, *, dim: str | None = None):
    """``value`` given in ``units_`` expressed in detector pixels.

    Without ``dim`` it is a length (a shift, a radius): ``value / q_pixel_size``. With ``dim``
    it is a position along that axis, returned as the fractional pixel index from the first
    pixel: ``(value - origin) / step``, in the coordinate frame of ``dc`` (a cropped detector
    keeps the frame of the full one). ``"pixels"`` returns ``value`` unchanged (array indices,
    py4DSTEM's convention). mrad <-> 1/Å uses ``attrs['energy']``. ``value`` may be a number or
    an array of any kind (numpy, dask, DataArray).
    """
    units_ = canonical_units(units_, parameter="units", allowed=Q_UNITS)
    if units_ == "pixels":
        return value
    own = units(dc, "q")
    if own == "pixels":
        raise ValueError(
            f"units: {parameter} in {units_!r} needs a calibrated detector (Qx, Qy "
            f"in 'mrad' or 'A^-1'); this datacube's detector is in pixels"
        )
    size = pixel_size(dc, "q", f"{parameter} in {units_!r}")
    factor = 1.0
    if units_ != own:
        energy = dc.attrs.get("energy")
        if energy is None:
            raise ValueError(
                f"energy: converting {parameter} from {units_!r} to the detector's "
                f"{own!r} needs the datacube's beam energy (eV) in attrs['energy']"
            )
        factor = convert_q_pixel_size(1.0, units_, own, energy)
    if dim is None:
        return value * (factor / size)
    return (value * factor - axis(dc, dim).origin) / size


# --- arguments that are DataArrays ----------------------------------------------------------


def align(value, dc: xr.DataArray | xr.Dataset, dims: tuple, parameter: str, extra: int = 0):
    """A detector- or scan-sized argument in the datacube's frame, by dimension name.

    A DataArray must have ``dims`` (and ``extra`` leading dims of its own, e.g. a stack of
    masks); it is transposed to ``(*its own, *dims)``. Where it has a coordinate on one of
    ``dims`` in the datacube's units, the coordinates must match: equal, or a superset from
    which the datacube's are selected (a dark reference of the full detector for a cropped
    datacube); otherwise ``ValueError``. Returns its data (numpy or dask). Anything else is
    returned as it is (plain arrays are positional).
    """
    if not isinstance(value, xr.DataArray):
        return value
    own = [d for d in value.dims if d not in dims]
    if not set(dims) <= set(value.dims) or len(own) != extra:
        want = f"{extra} dim(s) of its own and " if extra else ""
        raise ValueError(
            f"{parameter}: a DataArray argument needs {want}the dims {dims}, got {value.dims}"
        )
    value = value.transpose(*own, *dims)
    for d in dims:
        if d not in value.coords or value.sizes[d] == 0:
            continue
        given_units = value.coords[d].attrs.get("units")
        if given_units is not None and given_units != dc.coords[d].attrs.get("units"):
            continue  # different units: not comparable, positional
        index = _matching(
            coord_values(value.coords[d].values, d, parameter),
            dc.coords[d].values.astype(np.float64),
        )
        if index is None:
            v, w = value.coords[d].values, dc.coords[d].values
            raise ValueError(
                f"{parameter}: its {d} coordinate ({v[0]:g} .. {v[-1]:g}, {v.size} values) does "
                f"not match the datacube's ({w[0]:g} .. {w[-1]:g}, {w.size} values); select the "
                f"matching part, e.g. {parameter}.sel({d}=datacube.{d})"
            )
        if not (index.size == value.sizes[d] and (index == np.arange(index.size)).all()):
            value = value.isel({d: index})
    return value.data


def _matching(given: np.ndarray, wanted: np.ndarray):
    """Indices into ``given`` of every value of ``wanted`` (equal to ``REL_TOL`` of a step), or
    None when one is missing or matches twice."""
    steps = np.abs(np.diff(wanted))
    scale = (
        float(np.median(steps))
        if steps.size and np.median(steps) > 0
        else max(1.0, float(np.abs(wanted).max(initial=0)))
    )
    tol = REL_TOL * scale
    if given.size == wanted.size and np.allclose(given, wanted, rtol=0, atol=tol):
        return np.arange(given.size)
    order = np.argsort(given, kind="stable")
    ordered = given[order]
    pos = np.clip(np.searchsorted(ordered, wanted), 1, max(ordered.size - 1, 1))
    left = np.clip(pos - 1, 0, ordered.size - 1)
    right = np.clip(pos, 0, ordered.size - 1)
    pick = np.where(np.abs(ordered[left] - wanted) <= np.abs(ordered[right] - wanted), left, right)
    if np.abs(ordered[pick] - wanted).max(initial=0) > tol:
        return None
    twin = np.zeros(ordered.size, dtype=bool)
    near = np.diff(ordered) <= tol
    twin[:-1] |= near
    twin[1:] |= near
    if twin[pick].any():
        return None  # a wanted value matches two given ones: ambiguous
    return order[pick]
