"""Any HDF5 dataset by path (:func:`read_hdf5`), and legacy EMD 0.x / py4DSTEM <= 0.13 files
(:func:`read_legacy_emd`), read lazily.

Each dask chunk is read by its own task. A contiguous, uncompressed dataset is mapped straight
from the file (its byte offset is read once at open): no h5py and no HDF5 lock in the tasks.
Chunked or compressed datasets are read through h5py (with hdf5plugin's filters when installed),
and the dask chunks are made of whole HDF5 chunks so that no stored chunk is decoded twice.

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

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..calibration import Q_UNITS, R_UNITS
from ..checks import checked_scan_shape
from ..datacube import auto_chunks, from_array, normalize_chunks, user_stacklevel
from ..lazy import RawFileLoader, lazy_from_loader
from .frames import frame_count_error
from .h5 import h5_text, hdf5_filters, is_hdf5
from .metadata import json_value

_LIST = 20  # datasets listed in an error message


# --- any dataset ----------------------------------------------------------------------------

@dataclass(frozen=True)
class H5BlockLoader:
    """Read block ``slices`` ``(Rx, Ry, Qx, Qy)`` of dataset ``dataset`` of ``path`` (opened in
    the call). ``stored``: the dataset's shape; a 3D ``(N, Qx, Qy)`` dataset is read as scan
    ``scan_shape``; a 5D one has its length-1 axis ``drop`` indexed away."""

    path: str
    dataset: str
    dtype: str
    stored: tuple
    scan_shape: tuple
    drop: int = -1
    mtime_ns: int = 0  # part of the token: a rewritten file gives a new graph

    def __call__(self, slices):
        hdf5_filters()
        try:
            with h5py.File(self.path, "r") as f:
                return self._read(f[self.dataset].astype(self.dtype), slices)
        except OSError as err:
            bounds = [(s.start, s.stop - 1) for s in slices[:2]]
            raise ValueError(f"{self.path}:{self.dataset}: the block of scan positions "
                             f"Rx {bounds[0]}, Ry {bounds[1]} could not be read ({err})") from None

    def _read(self, dset, slices):
        if len(self.stored) == 4:
            return dset[slices]
        if len(self.stored) == 5:
            index = list(slices)
            index.insert(self.drop, 0)
            return dset[tuple(index)]
        (r0, r1, _), (c0, c1, _) = (s.indices(n) for s, n in zip(slices[:2], self.scan_shape,
                                                                 strict=True))
        ry, q = self.scan_shape[1], slices[2:]
        if c0 == 0 and c1 == ry:
            block = dset[(slice(r0 * ry, r1 * ry), *q)]
            return block.reshape(r1 - r0, ry, *block.shape[1:])
        return np.stack([dset[(slice(r * ry + c0, r * ry + c1), *q)] for r in range(r0, r1)])


@dataclass
class _Layout:
    """How a stored dataset becomes a ``(Rx, Ry, Qx, Qy)`` datacube."""

    path: str
    dataset: str
    stored: tuple
    shape: tuple  # the datacube's
    dtype: np.dtype  # stored
    drop: int
    multiple_of: tuple  # (Rx, Ry) chunk sizes made of whole stored chunks
    offset: int | None  # byte offset of a contiguous, unfiltered dataset


def _datasets(f) -> list[str]:
    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            found.append(f"/{name} {tuple(obj.shape)} {obj.dtype}")

    f.visititems(visit)
    more = f" ... ({len(found) - _LIST} more)" if len(found) > _LIST else ""
    return found[:_LIST] + ([more] if more else [])


def _drop_axis(shape) -> int:
    """The length-1 axis of a 5D shape to drop: the last, else the first, else the only one."""
    ones = [i for i, n in enumerate(shape) if n == 1]
    if shape[-1] == 1:
        return len(shape) - 1
    if shape[0] == 1:
        return 0
    return ones[0] if len(ones) == 1 else -1


def _layout(path: str, f, dataset: str, scan_shape) -> _Layout:
    dset = f.get(dataset)
    if not isinstance(dset, h5py.Dataset):
        kind = "a group" if isinstance(dset, h5py.Group) else "missing"
        raise ValueError(f"dataset: {dataset!r} is {kind} in {path}; its datasets are: "
                         + "; ".join(_datasets(f)))
    stored, dtype = tuple(int(n) for n in dset.shape), dset.dtype
    if dtype.kind not in "biuf":
        raise TypeError(f"dataset: {dset.name} in {path} holds {dtype}; a datacube holds real "
                        "numbers or booleans")
    chunks = dset.chunks or (1,) * len(stored)
    drop = -1
    if len(stored) == 5:
        drop = _drop_axis(stored)
        if drop < 0:
            raise ValueError(f"dataset: {dset.name} in {path} is 5D {stored} with no single "
                             "length-1 axis to drop")
        stored4 = stored[:drop] + stored[drop + 1:]
        chunks = chunks[:drop] + chunks[drop + 1:]
    elif len(stored) in (3, 4):
        stored4 = stored
    else:
        raise ValueError(f"dataset: {dset.name} in {path} is {len(stored)}D {stored}; expected 3D "
                         "(N, Qx, Qy) with scan_shape, 4D (Rx, Ry, Qx, Qy), or 5D with a length-1 "
                         "axis. Its datasets are: " + "; ".join(_datasets(f)))
    if len(stored4) == 3:
        if scan_shape is None:
            raise ValueError(f"scan_shape: {dset.name} in {path} is a 3D stack of "
                             f"{stored4[0]} frames {stored4[1:]}; pass scan_shape=(Rx, Ry)")
        rx, ry = checked_scan_shape(scan_shape)
        if rx * ry > stored4[0]:
            raise ValueError("scan_shape: " + frame_count_error(
                f"{path}:{dset.name}", stored4[0], rx * ry, (rx, ry)))
        if rx * ry != stored4[0]:
            raise ValueError(f"scan_shape: {(rx, ry)} takes {rx * ry} of the {stored4[0]} frames "
                             f"of {dset.name} in {path}; give a shape that holds them all")
        shape = (rx, ry, *stored4[1:])
        k = chunks[0]
        multiple = (1, k) if ry % k == 0 else (k // ry, ry) if k % ry == 0 else (1, 1)
    else:
        shape = stored4
        if scan_shape is not None and checked_scan_shape(scan_shape) != shape[:2]:
            raise ValueError(f"scan_shape: {tuple(scan_shape)} differs from the scan {shape[:2]} "
                             f"of {dset.name} {stored} in {path}; pass scan_shape=None")
        multiple = chunks[:2]
    plist = dset.id.get_create_plist()
    offset = None
    if plist.get_layout() == h5py.h5d.CONTIGUOUS and plist.get_nfilters() == 0 \
            and plist.get_external_count() == 0 and dtype.isnative:
        offset = dset.id.get_offset()  # None when no storage is allocated (never written)
    elif plist.get_nfilters() and not hdf5_filters():
        warnings.warn(f"dataset: {dset.name} in {path} is compressed; install hdf5plugin if "
                      "reading it fails", stacklevel=user_stacklevel())
    return _Layout(path, dset.name, stored, shape, dtype, drop, tuple(multiple), offset)




def _lazy(layout: _Layout, chunks, name: str):
    shape, dtype = layout.shape, layout.dtype.newbyteorder("=")
    if isinstance(chunks, str) and chunks == "auto":
        chunks = auto_chunks(shape, dtype.itemsize, multiple_of=layout.multiple_of)
    norm = normalize_chunks(chunks, shape, dtype)
    mtime = os.stat(layout.path).st_mtime_ns
    if layout.offset is not None:  # the dataset is one C-ordered run of bytes in the file
        loader = RawFileLoader(layout.path, layout.dtype.str, shape, int(layout.offset), "C",
                               mtime)
    else:
        loader = H5BlockLoader(layout.path, layout.dataset, dtype.str, layout.stored,
                               shape[:2], layout.drop, mtime)
    return lazy_from_loader(loader, shape, dtype, norm, name)


def _open(path) -> tuple[str, h5py.File]:
    """(absolute path, the file open for reading), or an error naming the file."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: {path} does not exist or is not a file")
    if not is_hdf5(path):
        raise ValueError(f"path: {path} is not an HDF5 file (no HDF5 signature)")
    try:
        return path, h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"path: {path} is not a readable HDF5 file; it may be truncated or "
                         f"corrupt ({err})") from None


def read_hdf5(path, *, dataset, scan_shape=None, chunks="auto"):
    """Open any HDF5 dataset lazily as a datacube (``read(path, dataset=...)`` calls this).

    Parameters
    ----------
    dataset : the dataset's path in the file, e.g. ``"entry/data/data"``. It may be 4D
        ``(Rx, Ry, Qx, Qy)``; 3D ``(N, Qx, Qy)`` frames in scan order with ``scan_shape``
        (``Rx * Ry == N``); or 5D with a length-1 axis (a colour channel, a singleton time
        axis: the last axis if it has length 1, else the first), which is dropped.
    scan_shape : ``(Rx, Ry)`` for a 3D dataset; for 4D/5D it must equal the stored scan.
    chunks : ``"auto"`` (whole frames, 32-128 MiB scan blocks made of whole HDF5 chunks),
        ``{dim: size}`` or a tuple as in :func:`stem4d_dask.from_array`.

    The axes are taken as stored (``Qx`` = the frame's rows). Compressed datasets need the
    filter's plugin (``pip install hdf5plugin``). No calibration is read (pass
    ``r_pixel_size=`` etc. to :func:`stem4d_dask.read`); ``attrs["metadata"]`` holds the
    dataset's path, stored shape and attributes. Errors name the dataset and list the file's
    datasets when it is missing or has the wrong rank.
    """
    path, f = _open(path)
    with f:
        layout = _layout(path, f, dataset, scan_shape)
        attrs = {k: json_value(h5_text(v)) for k, v in f[layout.dataset].attrs.items()}
    data = _lazy(layout, chunks, f"hdf5-{Path(path).name}")
    metadata = {"dataset": layout.dataset, "stored_shape": list(layout.stored),
                "dtype": layout.dtype.str, "attrs": attrs}
    return from_array(data, chunks=None, attrs={"format": "hdf5", "metadata": metadata})


# --- legacy EMD / py4DSTEM ------------------------------------------------------------------

def _attr(obj, key):
    return h5_text(obj.attrs[key]) if key in obj.attrs else None


def _is_emd1(f) -> bool:
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
            if _is_emd1(f):
                return False
            if any("emd_group_type" in g.attrs for g in f.values()
                   if isinstance(g, h5py.Group)):
                return True
            if _attr(f, "version_major") not in (0, "0"):
                return False
            return f.visititems(lambda _, obj: True if isinstance(obj, h5py.Group)
                                and _attr(obj, "emd_group_type") in (1, "1") else None) is True
    except OSError:
        return False


def _cube_groups(f) -> list:
    """EMD data groups (``emd_group_type`` 1) holding a 4D numeric ``data`` (or, py4DSTEM
    <= 0.5, ``datacube``) dataset: ``[(group path, dataset name)]``."""
    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and _attr(obj, "emd_group_type") in (1, "1"):
            for key in ("data", "datacube"):
                dset = obj.get(key)
                if isinstance(dset, h5py.Dataset) and dset.ndim == 4 \
                        and dset.dtype.kind in "biuf":
                    found.append(("/" + name, key))
                    break

    f.visititems(visit)
    return found


def _layout_name(f) -> tuple[str, str]:
    """(layout, version) of a legacy file."""
    for key, group in f.items():
        if not isinstance(group, h5py.Group) or "emd_group_type" not in group.attrs:
            continue
        version = ".".join(str(_attr(group, k)) for k in
                           ("version_major", "version_minor", "version_release")
                           if k in group.attrs)
        kind = _attr(group, "emd_group_type")
        if kind == "root":
            return f"py4DSTEM {version or '0.13'} (root group {key!r})", version
        if kind in (2, "2"):
            return f"py4DSTEM {version or '<= 0.12'} (top group {key!r})", version
    version = ".".join(str(_attr(f, k)) for k in ("version_major", "version_minor")
                       if k in f.attrs)
    return f"EMD {version or '0.x'}", version


def _pick(f, name, path):
    groups = _cube_groups(f)
    if not groups:
        raise ValueError(f"path: {path} ({_layout_name(f)[0]}) holds no 4D datacube (an EMD data "
                         "group with a 4D 'data' dataset); its datasets are: "
                         + "; ".join(_datasets(f)) + ". Read one with read(path, dataset=..., "
                         "scan_shape=...)")
    if name is not None:
        hits = [g for g in groups if g[0].rsplit("/", 1)[-1] == name
                or g[0] == "/" + str(name).strip("/")]
        if len(hits) != 1:
            raise ValueError(f"name: {name!r} matches {len(hits)} datacube groups; the file "
                             f"{path} has {[g[0] for g in groups]}")
        return hits[0]
    if len(groups) > 1:
        cubes = [g for g in groups if _attr(f[g[0]], "py4dstem_class") == "DataCube"
                 or g[0].split("/")[-2:-1] == ["datacubes"]]
        if len(cubes) == 1:
            return cubes[0]
        raise ValueError(f"name: {path} holds several datacubes {[g[0] for g in groups]}; "
                         "pass name= (a group name or path)")
    return groups[0]


# units as legacy files spell them -> (canonical units, factor to multiply values by)
_UNITS = {"pix": ("pixels", 1.0), "pixel": ("pixels", 1.0), "pixels": ("pixels", 1.0),
          "px": ("pixels", 1.0), "": ("pixels", 1.0), "nm": ("nm", 1.0), "A": ("A", 1.0),
          "Å": ("A", 1.0), "angstrom": ("A", 1.0), "pm": ("A", 0.01), "um": ("nm", 1e3),
          "A^-1": ("A^-1", 1.0), "Å^-1": ("A^-1", 1.0), "1/A": ("A^-1", 1.0),
          "1/Å": ("A^-1", 1.0), "nm^-1": ("A^-1", 0.1), "1/nm": ("A^-1", 0.1),
          "mrad": ("mrad", 1.0), "rad": ("mrad", 1e3)}


def _units(units) -> tuple[str, float] | None:
    """Canonical units and scale factor of a legacy units string (``'[n_m]'`` -> nm)."""
    if not isinstance(units, str):
        return None
    text = units.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return _UNITS.get(text.replace("_", "").strip())


def _number(value):
    value = h5_text(value)
    if isinstance(value, np.ndarray) and value.size >= 1 and value.dtype.kind in "iuf":
        values = np.unique(value.astype(float))
        value = values[0] if values.size == 1 else None
    if isinstance(value, int | float | np.number) and not isinstance(value, bool) \
            and np.isfinite(value) and value > 0:
        return float(value)
    return None


def _calibration_items(f, group) -> tuple[dict, str | None]:
    """The calibration metadata beside a datacube: a py4DSTEM 0.13 Calibration group in the
    datacube group or an ancestor, else a <= 0.12 ``metadata/calibration`` group."""
    node = group
    while True:
        for child in node.values():
            if isinstance(child, h5py.Group) and _attr(child, "py4dstem_class") == "Calibration":
                return {k: child[k][()] for k in child if isinstance(child[k], h5py.Dataset)}, \
                    child.name
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


def _legacy_calibration(f, group, dset) -> tuple[dict, dict]:
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
            elif size is not None and other[0] is not None and (
                    other[1] != units or not np.isclose(other[0], size, rtol=1e-6)):
                problem = f"{source} and {other[2]} differ"
        if problem is None and units is not None and units[0] not in allowed:
            problem = f"units {units[0]!r}"
        if problem is not None or size is None or units is None:
            if problem is not None:
                warnings.warn(f"{group.name}: unusable {key} calibration ({problem}); using "
                              "pixels", stacklevel=user_stacklevel())
            size, units, source = 1.0, ("pixels", 1.0), "none"
        out[f"{space}_pixel_size"] = size * units[1]
        out[f"{space}_units"] = units[0]
        out[f"{space}_origin"] = tuple(_dim_origin(d, units) for d in dims)
        notes[space] = source
    return out, {k: json_value(h5_text(v)) for k, v in items.items()} | {"sources": notes}


def _dim_step(vec, n):
    """(step, (units, factor), source) of a dim vector ([start, step] pairs or full aranges);
    Nones when it gives none."""
    if not isinstance(vec, h5py.Dataset) or vec.ndim != 1 or vec.dtype.kind not in "iuf" \
            or vec.size < 2:
        return None, None, None
    values = vec[()].astype(float)
    units = _units(h5_text(vec.attrs.get("units", "pixels")))
    steps = np.diff(values)
    if values.size == n and not np.allclose(steps, steps[0], rtol=1e-6, atol=0):
        warnings.warn(f"{vec.name}: irregular coordinates; using pixels",
                      stacklevel=user_stacklevel())
        return None, None, None
    step = float(steps[0])
    return (step if np.isfinite(step) and step > 0 else None), units, vec.name


def _dim_origin(vec, units) -> float:
    if not isinstance(vec, h5py.Dataset) or vec.ndim != 1 or vec.size == 0 \
            or vec.dtype.kind not in "iuf":
        return 0.0
    own = _units(h5_text(vec.attrs.get("units", "pixels")))
    start = float(vec[0])
    return start * own[1] if own is not None and own[0] == units[0] and np.isfinite(start) \
        else 0.0


def read_legacy_emd(path, *, name=None, chunks="auto"):
    """Open the 4D datacube of a py4DSTEM <= 0.13 or EMD 0.x ``.h5``/``.emd`` file lazily.

    Parameters
    ----------
    name : which datacube (its group name or HDF5 path) when the file holds several.
    chunks : ``"auto"`` (whole frames, 32-128 MiB scan blocks made of whole HDF5 chunks),
        ``{dim: size}`` or a tuple as in :func:`stem4d_dask.from_array`.

    The stored axes are ``(Rx, Ry, Qx, Qy)`` as py4DSTEM wrote them. Calibration: py4DSTEM
    0.13's Calibration group (``R_pixel_size``/``R_pixel_units``, ``Q_...``), else a
    ``metadata/calibration`` group, else the dim vectors (units such as ``'[n_m]'`` become
    nm, ``'[n_m^-1]'`` 0.1 A^-1), else pixels; origins from the dim vectors. ``attrs[
    "metadata"]``: the layout and version, the group read and the calibration items.
    """
    path, f = _open(path)
    with f:
        if _is_emd1(f):
            raise ValueError(f"path: {path} is an EMD 1.0 file; read it with read_emd")
        group_path, key = _pick(f, name, path)
        group = f[group_path]
        layout = _layout(path, f, f"{group_path}/{key}", None)
        calibration, items = _legacy_calibration(f, group, group[key])
        kind, version = _layout_name(f)
    data = _lazy(layout, chunks, f"emd-legacy-{Path(path).name}")
    metadata = {"layout": kind, "version": version, "group": group_path,
                "dataset": layout.dataset, "calibration": items}
    return from_array(data, chunks=None, attrs={"format": "emd-legacy", "metadata": metadata},
                      **calibration)


__all__ = ["read_hdf5", "is_legacy_emd", "read_legacy_emd", "H5BlockLoader"]
