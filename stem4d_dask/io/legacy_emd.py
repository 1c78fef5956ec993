"""What a legacy EMD 0.x / py4DSTEM <= 0.13 ``.h5`` file says: whether it is one, which group
holds its datacube, its layout and version, and its calibration. Reads attributes and small
datasets only; :func:`stem4d_dask.io.hdf5.read_legacy_emd` reads the datacube.

Legacy layouts (learnt from py4DSTEM 0.14.18's legacy readers and the EMD 0.1 spec)::

    py4DSTEM 0.13    /<root>  attrs emd_group_type='root', version_major/minor/release ('0',
                              '13', ...)
                       <name>/  emd_group_type=1, py4dstem_class='DataCube': data (Rx, Ry, Qx,
                                Qy), dim0..dim3 = [0, step] (attrs name, units), and a
                                'calibration' group (py4dstem_class='Calibration'): datasets
                                R_pixel_size, R_pixel_units, Q_pixel_size, Q_pixel_units
    py4DSTEM <= 0.12 /<top>   attrs emd_group_type=2, version_major/minor
                       data/datacubes/<name>/  emd_group_type=1: data ('datacube' before 0.6),
                                dim1..dim4 (pixel aranges, units '[pix]')
                       metadata/calibration/   (R_pixel_size, ... when recorded)
    EMD 0.x          /        attrs version_major=0, version_minor
                       .../<group>/  emd_group_type=1: data, dim1..dimN (attrs name, units such
                                as '[n_m]', '[n_m^-1]', '[pix]')

The datacube axes are the stored axes (no transposes); calibration comes from the Calibration
group (0.13), the metadata/calibration group (<= 0.12) or the dim vectors, else pixels.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np

from ..calibration import Q_UNITS, R_UNITS
from ..datacube import user_stacklevel
from .h5 import h5_text, is_hdf5
from .metadata import UNITS, json_value, positive_number


def _attr(obj, key):
    return h5_text(obj.attrs[key]) if key in obj.attrs else None


def is_emd1(f) -> bool:
    """True for an open EMD 1.0 file (root ``emd_group_type = 'file'``)."""
    return _attr(f, "emd_group_type") == "file"


def is_legacy_emd(path) -> bool:
    """True for an HDF5 file in a pre-EMD-1.0 layout: a py4DSTEM <= 0.13 file (a top-level
    group with an ``emd_group_type`` attribute) or an EMD 0.x file (root ``version_major`` 0
    and an EMD data group, ``emd_group_type`` 1). EMD 1.0 files are :func:`~.emd.is_emd`'s.
    Reads attributes only."""
    path = Path(path)
    if not path.is_file() or not is_hdf5(path):
        return False
    try:
        with h5py.File(path, "r") as f:
            if is_emd1(f):
                return False
            if any("emd_group_type" in g.attrs for g in f.values() if isinstance(g, h5py.Group)):
                return True
            if _attr(f, "version_major") not in (0, "0"):
                return False
            return (
                f.visititems(
                    lambda _, obj: (
                        True
                        if isinstance(obj, h5py.Group) and _attr(obj, "emd_group_type") in (1, "1")
                        else None
                    )
                )
                is True
            )
    except OSError:
        return False


def cube_groups(f) -> list[tuple[str, str]]:
    """EMD data groups (``emd_group_type`` 1) holding a 4D numeric ``data`` (or, py4DSTEM
    <= 0.5, ``datacube``) dataset: ``[(group path, dataset name)]``."""
    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and _attr(obj, "emd_group_type") in (1, "1"):
            for key in ("data", "datacube"):
                dset = obj.get(key)
                if isinstance(dset, h5py.Dataset) and dset.ndim == 4 and dset.dtype.kind in "biuf":
                    found.append(("/" + name, key))
                    break

    f.visititems(visit)
    return found


def layout_name(f) -> tuple[str, str]:
    """(layout, version) of a legacy file."""
    for key, group in f.items():
        if not isinstance(group, h5py.Group) or "emd_group_type" not in group.attrs:
            continue
        version = ".".join(
            str(_attr(group, k))
            for k in ("version_major", "version_minor", "version_release")
            if k in group.attrs
        )
        kind = _attr(group, "emd_group_type")
        if kind == "root":
            return f"py4DSTEM {version or '0.13'} (root group {key!r})", version
        if kind in (2, "2"):
            return f"py4DSTEM {version or '<= 0.12'} (top group {key!r})", version
    version = ".".join(str(_attr(f, k)) for k in ("version_major", "version_minor") if k in f.attrs)
    return f"EMD {version or '0.x'}", version


def pick_datacube(f, groups, name, path) -> tuple[str, str]:
    """The ``(group path, dataset name)`` of :func:`cube_groups` (not empty) to read: the one
    ``name`` (a group name or path) names, else the only one, else the only py4DSTEM DataCube
    (or member of a ``datacubes`` group); ``ValueError`` when that leaves several or none."""
    if name is not None:
        hits = [
            g
            for g in groups
            if g[0].rsplit("/", 1)[-1] == name or g[0] == "/" + str(name).strip("/")
        ]
        if len(hits) != 1:
            raise ValueError(
                f"name: {name!r} matches {len(hits)} datacube groups; the file "
                f"{path} has {[g[0] for g in groups]}"
            )
        return hits[0]
    if len(groups) > 1:
        cubes = [
            g
            for g in groups
            if _attr(f[g[0]], "py4dstem_class") == "DataCube"
            or g[0].split("/")[-2:-1] == ["datacubes"]
        ]
        if len(cubes) == 1:
            return cubes[0]
        raise ValueError(
            f"name: {path} holds several datacubes {[g[0] for g in groups]}; "
            "pass name= (a group name or path)"
        )
    return groups[0]


def _units(units) -> tuple[str, float] | None:
    """Canonical units and scale factor of a legacy units string (``'[n_m]'`` -> nm)."""
    if not isinstance(units, str):
        return None
    text = units.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return UNITS.get(text.replace("_", "").strip())


def _number(value):
    """A pixel size as stored (a scalar, or an array of one repeated value) when positive."""
    value = h5_text(value)
    if isinstance(value, np.ndarray) and value.size >= 1 and value.dtype.kind in "iuf":
        values = np.unique(value.astype(float))
        value = values[0] if values.size == 1 else None
    return positive_number(value)


def _calibration_items(f, group) -> tuple[dict, str | None]:
    """The calibration metadata beside a datacube: a py4DSTEM 0.13 Calibration group in the
    datacube group or an ancestor, else a <= 0.12 ``metadata/calibration`` group."""
    node = group
    while True:
        for child in node.values():
            if isinstance(child, h5py.Group) and _attr(child, "py4dstem_class") == "Calibration":
                return {
                    k: child[k][()] for k in child if isinstance(child[k], h5py.Dataset)
                }, child.name
        if node.name == "/":
            break
        node = node.parent
    for top in f.values():
        cal = top.get("metadata/calibration") if isinstance(top, h5py.Group) else None
        if isinstance(cal, h5py.Group):
            items = {k: cal[k][()] for k in cal if isinstance(cal[k], h5py.Dataset)}
            items.update({k: v for k, v in cal.attrs.items()})
            return items, cal.name
    return {}, None


def legacy_calibration(f, group, dset) -> tuple[dict, dict]:
    """``from_array`` keywords and notes for datacube group ``group``: per space, the
    calibration items (a pixel size with its units), else the dim vectors of both axes (same
    step and units), else pixels, with a warning when what the file says cannot be used."""
    items, where = _calibration_items(f, group)
    first = 0 if "dim0" in group else 1
    out, notes = {}, {}
    for space, allowed, axes in (("r", R_UNITS, (0, 1)), ("q", Q_UNITS, (2, 3))):
        key = space.upper()
        dims = [group.get(f"dim{a + first}") for a in axes]
        given = items.get(f"{key}_pixel_size")
        size, units = _number(given), _units(h5_text(items.get(f"{key}_pixel_units")))
        source, problem = f"{where}/{key}_pixel_size", None
        if given is not None and size is None:
            problem = f"{source} = {json_value(h5_text(given))!r}"
        elif size is None or units is None:
            steps = [_dim_step(d, dset.shape[a]) for d, a in zip(dims, axes, strict=True)]
            (size, units, source), other = steps
            if size is not None and units is None:
                problem = f"{source} has unknown units"
            elif (
                size is not None
                and other[0] is not None
                and (other[1] != units or not np.isclose(other[0], size, rtol=1e-6))
            ):
                problem = f"{source} and {other[2]} differ"
        if problem is None and units is not None and units[0] not in allowed:
            problem = f"units {units[0]!r}"
        if problem is not None or size is None or units is None:
            if problem is not None:
                warnings.warn(
                    f"{group.name}: unusable {key} calibration ({problem}); using pixels",
                    stacklevel=user_stacklevel(),
                )
            size, units, source = 1.0, ("pixels", 1.0), "none"
        out[f"{space}_pixel_size"] = size * units[1]
        out[f"{space}_units"] = units[0]
        out[f"{space}_origin"] = tuple(_dim_origin(d, units) for d in dims)
        notes[space] = source
    return out, {k: json_value(h5_text(v)) for k, v in items.items()} | {"sources": notes}


def _dim_step(vec, n):
    """(step, (units, factor), source) of a dim vector ([start, step] pairs or full aranges);
    Nones when it gives none."""
    if (
        not isinstance(vec, h5py.Dataset)
        or vec.ndim != 1
        or vec.dtype.kind not in "iuf"
        or vec.size < 2
    ):
        return None, None, None
    values = vec[()].astype(float)
    units = _units(h5_text(vec.attrs.get("units", "pixels")))
    steps = np.diff(values)
    if values.size == n and not np.allclose(steps, steps[0], rtol=1e-6, atol=0):
        warnings.warn(
            f"{vec.name}: irregular coordinates; using pixels", stacklevel=user_stacklevel()
        )
        return None, None, None
    step = float(steps[0])
    return (step if np.isfinite(step) and step > 0 else None), units, vec.name


def _dim_origin(vec, units) -> float:
    if (
        not isinstance(vec, h5py.Dataset)
        or vec.ndim != 1
        or vec.size == 0
        or vec.dtype.kind not in "iuf"
    ):
        return 0.0
    own = _units(h5_text(vec.attrs.get("units", "pixels")))
    start = float(vec[0])
    return start * own[1] if own is not None and own[0] == units[0] and np.isfinite(start) else 0.0
