"""Processing steps named by the package's own functions, applied lazily one after the other,
and recorded as JSON (a conversion's provenance; docs/convert.md lists every step).

A step is ``(function, parameters)``, e.g. ``("bin_data_diffraction", {"bin_factor": 2})``, or
its record ``{"function": ..., "parameters": {...}}`` (:meth:`Step.record`; a store's
provenance holds these, so its list re-applies to another scan as it is). :data:`PARAMETERS`
gives every function's parameters and defaults; ``center_patterns`` centres on the descan
fitted (``fit_function``, :func:`stem4d_dask.phase.fit.fit_descan`) to the centre of mass, and
``electron_count`` (last only) gives :class:`~stem4d_dask.events.ElectronEvents`.

Hot pixels (the mean pattern) and the fitted origin (the centre of mass) are measured over the
scan before the chunks are processed, on a *sample*: ``sample`` bands of scan chunks (rows of
the chunk grid, spread from the first to the last), so a conversion reads the data once in
full, in the pass that writes, plus those bands. ``sample=None`` measures every position: the
result is then exactly the function's own, but the scan is read twice. What was measured is
recorded with the step (``"measured"``) and measured again when the step is re-applied.

Arrays are recorded by content: ``{"path", "sha256", "shape", "dtype"}`` for a ``.npy`` file
(re-applying loads it and refuses a changed file), without ``"path"`` for one given in memory
(re-applying then needs the array again).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr

from . import preprocess as pp
from .checks import checked_int, flag, positive_int, real
from .graph import frame_blocks
from .phase.com import center_of_mass
from .phase.fit import FIT_FUNCTIONS, fit_descan
from .preprocess.electroncount import electron_count

PROVENANCE_FORMAT, PROVENANCE_VERSION = "stem4d_dask.provenance", 1
REQUIRED = "<required>"
SAMPLE = 3  # bands of scan chunks measured for hot pixels and the fitted origin
MAX_LISTED_PIXELS = 256  # hot pixels listed in a step's "measured" record
FIT_ROWS = {"constant": 1, "plane": 2, "parabola": 3, "bezier_two": 3}
PARAMETERS: dict[str, dict[str, Any]] = {
    "subtract_dark": {"darkref": REQUIRED},
    "filter_hot_pixels": {"thresh": REQUIRED, "ind_compare": 1, "sample": SAMPLE},
    "thin_data_real": {"thinning_factor": REQUIRED},
    "bin_data_real": {"bin_factor": REQUIRED},
    "bin_data_diffraction": {"bin_factor": REQUIRED, "dtype": None},
    "center_patterns": {
        "fit_function": "plane",
        "center": None,
        "periodic": True,
        "bilinear": False,
        "sample": SAMPLE,
    },
    "electron_count": {
        "darkreference": REQUIRED,
        "Nsamples": None,
        "thresh_bkgrnd_Nsigma": 4,
        "thresh_xray_Nsigma": 10,
        "binfactor": 1,
        "sub_pixel": True,
        "seed": 0,
    },
}
ARRAYS = ("darkref", "darkreference")  # parameters holding (Qx, Qy) arrays
FUNCTIONS = tuple(PARAMETERS)


@dataclass(frozen=True)
class Step:
    """One checked step: ``parameters`` JSON-able (arrays as their records), ``arrays`` the
    arrays themselves by parameter name."""

    function: str
    parameters: dict
    arrays: dict = field(default_factory=dict)

    def record(self) -> dict:
        """``{"function", "parameters"}``: the JSON form, re-applicable by :func:`apply_steps`."""
        return {"function": self.function, "parameters": dict(self.parameters)}


def parse_steps(steps) -> list[Step]:
    """Check ``steps`` (see the module docstring) without reading any scan data: known function
    names, known parameters, required ones given, values of the right kind, ``electron_count``
    last. ``ValueError`` naming ``steps[i]`` and the parameter otherwise. Arrays named by path
    are loaded (small ``(Qx, Qy)`` files)."""
    if steps is None:
        return []
    if isinstance(steps, dict) and "steps" in steps:  # a whole provenance record
        steps = steps["steps"]
    if isinstance(steps, str | dict):
        steps = [steps]
    parsed = [_parse_one(item, f"steps[{i}]") for i, item in enumerate(steps)]
    for i, step in enumerate(parsed[:-1]):
        if step.function == "electron_count":
            raise ValueError(
                f"steps[{i}]: electron_count gives events, not a datacube; it must be the last "
                f"step (found {len(parsed) - i - 1} after it)"
            )
    return parsed


def _parse_one(item, where: str) -> Step:
    if isinstance(item, Step):
        return item
    if isinstance(item, str):
        name, given = item, {}
    elif isinstance(item, dict):
        name, given = item.get("function"), item.get("parameters", {})
    elif isinstance(item, tuple | list) and len(item) == 2:
        name, given = item
    else:
        raise ValueError(
            f"{where}: expected (function, {{parameter: value}}) or {{'function': ..., "
            f"'parameters': ...}}, got {item!r}"
        )
    if name not in PARAMETERS:
        raise ValueError(f"{where}: unknown function {name!r}; expected one of {list(FUNCTIONS)}")
    where = f"{where} {name}"
    if not isinstance(given, dict):
        raise ValueError(f"{where}: parameters must be a dict, got {type(given).__name__}")
    known = PARAMETERS[name]
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown parameter(s) {unknown}; expected {list(known)}")
    values = {**known, **given}
    missing = [k for k, v in values.items() if isinstance(v, str) and v == REQUIRED]
    if missing:
        raise ValueError(f"{where}: {missing[0]} is required")
    arrays = {}
    for key in ARRAYS:
        if key in values:
            arrays[key], values[key] = array_parameter(values[key], f"{where}: {key}")
    return Step(name, _checked(name, values, where), arrays)


def _checked(name: str, p: dict, where: str) -> dict:
    """The scalar parameters of step ``name`` checked and made plain JSON values."""
    out = dict(p)

    def named(key):
        return f"{where}: {key}"

    for key in ("thinning_factor", "bin_factor", "binfactor"):
        if key in p:
            out[key] = positive_int(p[key], named(key))
    for key in ("sample", "Nsamples"):
        if key in p and p[key] is not None:
            out[key] = positive_int(p[key], named(key))
    for key in ("periodic", "bilinear", "sub_pixel"):
        if key in p:
            out[key] = flag(p[key], named(key))
    for key in ("thresh_bkgrnd_Nsigma", "thresh_xray_Nsigma"):
        if key in p:
            out[key] = real(p[key], named(key), low=0, strict=True)
    for key in ("ind_compare", "seed"):  # a recorded step draws the same frames: no seed=None
        if key in p:
            out[key] = checked_int(p[key], named(key), 0)
    if name == "filter_hot_pixels":
        out["thresh"] = real(p["thresh"], named("thresh"), low=0)
    if name == "bin_data_diffraction" and p["dtype"] is not None:
        try:
            out["dtype"] = np.dtype(p["dtype"]).str
        except TypeError:
            raise ValueError(f"{named('dtype')}: not a numpy dtype: {p['dtype']!r}") from None
    if name == "center_patterns":
        if p["fit_function"] not in FIT_FUNCTIONS:
            raise ValueError(
                f"{named('fit_function')} must be one of {list(FIT_FUNCTIONS)}, got "
                f"{p['fit_function']!r}"
            )
        if p["center"] is not None:
            center = np.asarray(p["center"], dtype=object).ravel()
            if center.size != 2:
                raise ValueError(f"{named('center')} must be two numbers (cx, cy) in pixels")
            out["center"] = [real(c, named("center")) for c in center]
    return out


def array_parameter(value, name: str) -> tuple[Any, dict]:
    """``(array, record)`` for a ``(Qx, Qy)`` array parameter given as a ``.npy`` path, a numpy
    array, a DataArray, or a record (a dict with ``path`` and ``sha256``, from a provenance).
    ``ValueError`` naming ``name`` for a missing or changed file, or a record of an in-memory
    array (which has no path to load it from)."""
    if isinstance(value, dict):
        if value.get("path") is None:
            raise ValueError(
                f"{name}: the record is of an array given in memory (sha256 "
                f"{str(value.get('sha256'))[:12]}..., shape {value.get('shape')}); pass the "
                "array itself or a .npy path"
            )
        array, record = array_parameter(value["path"], name)
        if value.get("sha256") not in (None, record["sha256"]):
            raise ValueError(
                f"{name}: {record['path']} has changed since it was recorded (sha256 "
                f"{record['sha256'][:12]}..., recorded {value['sha256'][:12]}...)"
            )
        return array, record
    if isinstance(value, str | os.PathLike):
        path = Path(value).resolve()
        if path.suffix.lower() != ".npy" or not path.is_file():
            raise ValueError(f"{name}: expected a (Qx, Qy) .npy file, got {value}")
        array = np.load(path, allow_pickle=False)
        return array, {"path": str(path), **_digest(array)}
    values = value.values if isinstance(value, xr.DataArray) else np.asarray(value)
    if values.ndim != 2 or values.dtype.kind not in "biuf":
        raise ValueError(
            f"{name}: expected a real (Qx, Qy) array, got {values.dtype} of shape {values.shape}"
        )
    return value, _digest(values)


def _digest(array: np.ndarray) -> dict:
    data = np.ascontiguousarray(array)
    return {
        "sha256": hashlib.sha256(data.tobytes()).hexdigest(),
        "shape": list(data.shape),
        "dtype": data.dtype.str,
    }


def run_steps(datacube, steps) -> tuple[Any, list[dict]]:
    """Apply ``steps`` to ``datacube`` in order: ``(result, records)``, the result lazy (a
    datacube, or :class:`~stem4d_dask.events.ElectronEvents` after ``electron_count``) and one
    record per step (:meth:`Step.record`, plus ``"measured"`` for the steps that measure a
    sample, which is computed now)."""
    result, records = datacube, []
    for step in parse_steps(steps):
        result, measured = APPLY[step.function](result, step.parameters, step.arrays)
        records.append({**step.record(), **({"measured": measured} if measured else {})})
    return result, records


def apply_steps(datacube, steps):
    """``steps`` (a list, or a provenance record from :func:`stem4d_dask.read_provenance`)
    applied to ``datacube``: a lazy datacube (its ``attrs["provenance"]`` lists the steps, with
    the datacube's own provenance, if any, as their source), or ``ElectronEvents`` after
    ``electron_count``. The samples of ``filter_hot_pixels`` and ``center_patterns`` are
    measured now (module docstring)."""
    result, records = run_steps(datacube, steps)
    if isinstance(result, xr.DataArray):
        source = datacube.attrs.get("provenance") if isinstance(datacube, xr.DataArray) else None
        result = result.copy()
        prior = {"provenance": source} if source is not None else None
        result.attrs["provenance"] = provenance_record(records, source=prior)
    return result


def provenance_record(steps: list, source: dict | None = None) -> dict:
    """The provenance of a result, as stored in ``attrs["provenance"]``: ``format``,
    ``version``, ``package`` (name and version), ``source`` (what the steps were applied to:
    :func:`stem4d_dask.convert.source_info` for a file, or the source's own provenance) and
    ``steps`` (the records of :func:`run_steps`). Plain JSON values, and no clock time, so the
    same conversion records the same bytes."""
    from . import __version__

    record: dict = {
        "format": PROVENANCE_FORMAT,
        "version": PROVENANCE_VERSION,
        "package": {"name": "stem4d_dask", "version": __version__},
    }
    if source is not None:
        record["source"] = source
    record["steps"] = [dict(s) for s in steps]
    return record


def provenance_lines(record, indent: str = "") -> list[str]:
    """A provenance record as the indented lines ``stem4d info`` shows: package, source, each
    step with its parameters and what it measured, then the source's own provenance."""
    from .convert import human_bytes

    if not isinstance(record, dict):
        return []
    package = record.get("package", {})
    lines = [f"{indent}provenance   {package.get('name')} {package.get('version')}"]
    source = record.get("source") or {}
    if "path" in source:
        size = f", {human_bytes(source['size'])}" if "size" in source else ""
        when = f", modified {source['mtime']}" if "mtime" in source else ""
        lines.append(f"{indent}  source     {source['path']} ({source.get('format')}{size}{when})")
    for i, step in enumerate(record.get("steps", []), 1):
        params = ", ".join(f"{k}={_short(v)}" for k, v in step.get("parameters", {}).items())
        lines.append(f"{indent}  {i}. {step.get('function')}({params})")
        if step.get("measured"):
            measured = ", ".join(f"{k}={_short(v)}" for k, v in step["measured"].items())
            lines.append(f"{indent}       measured: {measured}")
    if isinstance(source.get("provenance"), dict):
        lines.append(f"{indent}  the source was made by:")
        lines += provenance_lines(source["provenance"], indent + "    ")
    return lines


def _short(value) -> str:
    if isinstance(value, dict) and "sha256" in value:
        return f"{value.get('path', 'array')} (sha256 {value['sha256'][:12]})"
    if isinstance(value, list) and value and all(isinstance(v, float) for v in value):
        return "[" + ", ".join(f"{v:.4g}" for v in value) + "]"
    text = f"{value:.4g}" if isinstance(value, float) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- the steps ---------------------------------------------------------------------------------


def sampled_rows(datacube, sample, parameter: str = "sample") -> np.ndarray | None:
    """Scan rows (``Rx`` indices) of ``sample`` bands of scan chunks, evenly spread from the
    first band to the last; None (every row) when ``sample`` is None or covers every band."""
    _, data = frame_blocks(datacube)
    bands = data.chunks[0]
    if sample is None or positive_int(sample, parameter) >= len(bands):
        return None
    edges = np.cumsum((0, *bands))
    picked = np.unique(np.rint(np.linspace(0, len(bands) - 1, sample)).astype(int))
    return np.concatenate([np.arange(edges[i], edges[i + 1]) for i in picked])


def _sample(datacube, rows):
    return datacube if rows is None else datacube.isel(Rx=rows)


def _hot_pixels(dc, p, arrays):
    rows = sampled_rows(dc, p["sample"])
    sample = _sample(dc, rows)
    _, mask = pp.filter_hot_pixels(sample, p["thresh"], p["ind_compare"], return_mask=True)
    mask = np.asarray(mask.values, dtype=bool)
    hot = np.argwhere(mask)
    measured = {"positions": int(np.prod(sample.shape[:2])), "n_hot_pixels": len(hot)}
    if len(hot) <= MAX_LISTED_PIXELS:
        measured["hot_pixels"] = hot.tolist()
    return pp.median_filter_masked_pixels(dc, mask, kernel_width=3), measured


def _center(dc, p, arrays):
    rows = sampled_rows(dc, p["sample"])
    n_rows = dc.shape[0] if rows is None else len(rows)
    if n_rows < min(FIT_ROWS[p["fit_function"]], dc.shape[0]):
        raise ValueError(
            f"sample: {p['sample']} band(s) of scan chunks hold {n_rows} scan row(s); the "
            f"{p['fit_function']!r} descan needs {FIT_ROWS[p['fit_function']]}: sample more"
        )
    com = center_of_mass(_sample(dc, rows))
    com_x, com_y = dask.compute(com.com_x.data, com.com_y.data)
    if rows is not None:  # unmeasured positions are NaN: the fit skips them
        full = np.full((2, *dc.shape[:2]), np.nan)
        full[0, rows], full[1, rows] = com_x, com_y
        com_x, com_y = full
    qx0, qy0 = fit_descan(com_x, com_y, p["fit_function"])
    measured = {
        "positions": int(n_rows * dc.shape[1]),
        "qx0": [float(qx0.min()), float(qx0.max())],
        "qy0": [float(qy0.min()), float(qy0.max())],
    }
    centred = pp.center_patterns(
        dc, qx0, qy0, center=p["center"], periodic=p["periodic"], bilinear=p["bilinear"]
    )
    return centred, measured


def _count(dc, p, arrays):
    n_frames = dc.shape[0] * dc.shape[1]
    n_samples = min(40, n_frames) if p["Nsamples"] is None else p["Nsamples"]
    given = {k: v for k, v in p.items() if k not in ("darkreference", "Nsamples")}
    events = electron_count(dc, arrays["darkreference"], n_samples, output="pointlist", **given)
    return events, ({"Nsamples": n_samples} if p["Nsamples"] is None else None)


APPLY = {
    "subtract_dark": lambda dc, p, a: (pp.subtract_dark(dc, a["darkref"]), None),
    "filter_hot_pixels": _hot_pixels,
    "thin_data_real": lambda dc, p, a: (pp.thin_data_real(dc, p["thinning_factor"]), None),
    "bin_data_real": lambda dc, p, a: (pp.bin_data_real(dc, p["bin_factor"]), None),
    "bin_data_diffraction": lambda dc, p, a: (
        pp.bin_data_diffraction(dc, p["bin_factor"], dtype=p["dtype"]),
        None,
    ),
    "center_patterns": _center,
    "electron_count": _count,
}

__all__ = [
    "FUNCTIONS",
    "Step",
    "apply_steps",
    "array_parameter",
    "parse_steps",
    "provenance_lines",
    "provenance_record",
    "run_steps",
]
