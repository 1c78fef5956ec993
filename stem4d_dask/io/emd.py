"""py4DSTEM (0.14+) / EMD 1.0 HDF5 files: lazy reader and streaming writer.

Layout that py4DSTEM 0.14.18 (through emdfile) writes for a DataCube called ``datacube``, and
that :func:`to_h5` writes too::

    /                                 attrs emd_group_type='file', version_major=1,
                                      version_minor=0, UUID, authoring_program, authoring_user
    /datacube_root                    group: emd_group_type='root', python_class='Root'
      datacube/                       group: emd_group_type='array', python_class='DataCube'
        data                          (Rx, Ry, Qx, Qy) dataset, attrs units='pixel intensity'
        dim0 .. dim3                  float64 [start, step], attrs name='Rx'.., units
      metadatabundle/                 group: emd_group_type='metadatabundle'
        calibration/                  group: emd_group_type='metadata', python_class='Calibration'
          R_pixel_size, Q_pixel_size  float64 scalars, attrs type=b'number'
          R_pixel_units, Q_pixel_units  variable-length *bytes* scalars, attrs type=b'string'
          QR_flip                     bool scalar (HDF5 enum), attrs type=b'bool'
          _root_treepath              b'', type=b'string'
          _target_paths/              group, attrs type=b'list_of_strings', length=1
            0                         b'/datacube'

Group attrs are variable-length UTF-8 strings; the ``type`` attrs of calibration items are
variable-length ASCII (emdfile writes them as bytes). py4DSTEM takes the DataCube's pixel sizes
and units from the calibration, not from the dim vectors. It has no beam-energy field; we store
``energy`` (eV) as an extra calibration number, which py4DSTEM reads as ``calibration['energy']``.
"""

from __future__ import annotations

import os
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import h5py
import numpy as np

from .. import coords as cal
from ..calibration import Q_UNITS, R_UNITS, canonical_units
from ..checks import check_pixel_size
from ..chunks import auto_chunks, normalize_chunks
from ..datacube import DIMS, check_datacube, from_array
from ..device import to_host
from ..lazy import lazy_from_loader
from ..progress import active_client, compute
from .h5 import H5BlockLoader, h5_text, is_hdf5
from .hdf5 import is_legacy_emd, read_legacy_emd
from .storage import completed_at

DATA_UNITS = "pixel intensity"


@dataclass(frozen=True)
class H5DatasetWriter:
    """``writer[region] = block`` writes into dataset ``dataset_path`` of ``path`` (opened per
    call), so :func:`dask.array.store` can target it from any worker sharing the filesystem."""

    path: str
    dataset_path: str

    def __setitem__(self, region, block):
        with h5py.File(self.path, "r+") as f:
            f[self.dataset_path][region] = block


def is_emd(path) -> bool:
    """True when ``path`` is an EMD 1.0 HDF5 file (root attr ``emd_group_type='file'``)
    holding a py4DSTEM DataCube (a group with ``python_class='DataCube'``). Older py4DSTEM
    (<= 0.13) and EMD 0.x files are :func:`stem4d_dask.io.hdf5.is_legacy_emd`'s. Reads
    attributes only."""
    if not (Path(path).is_file() and is_hdf5(path)):
        return False
    try:
        with h5py.File(path, "r") as f:
            if h5_text(f.attrs.get("emd_group_type")) != "file":
                return False
            return (
                f.visititems(
                    lambda _, obj: (
                        True
                        if isinstance(obj, h5py.Group)
                        and h5_text(obj.attrs.get("python_class")) == "DataCube"
                        else None
                    )
                )
                is True
            )
    except OSError:
        return False


def _datacube_groups(f) -> list[str]:
    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and h5_text(obj.attrs.get("python_class")) == "DataCube":
            found.append("/" + name)

    f.visititems(visit)
    return found


def _pick_datacube(f, name, path):
    groups = _datacube_groups(f)
    if not groups:
        raise ValueError(
            f"path: {path} holds no py4DSTEM DataCube (a group with python_class='DataCube'); "
            f"top-level entries: {list(f.keys())}"
        )
    if name is not None:
        hits = [g for g in groups if g.rsplit("/", 1)[-1] == name or g == "/" + name.strip("/")]
        if len(hits) != 1:
            raise ValueError(
                f"name: {name!r} matches {len(hits)} DataCube groups; the file {path} has {groups}"
            )
        return f[hits[0]]
    if len(groups) > 1:
        raise ValueError(
            f"name: {path} holds several DataCubes {groups}; pass name= (a group name or path)"
        )
    return f[groups[0]]


def _find_calibration(group):
    """The ``metadatabundle/calibration`` group of ``group`` or its nearest ancestor."""
    while True:
        if "metadatabundle/calibration" in group:
            return group["metadatabundle/calibration"]
        if group.name == "/":
            return None
        group = group.parent


def _checked(size, units, allowed, space, where):
    """(size, units) canonicalised, or (1.0, 'pixels') with a warning when unusable."""
    try:
        return (
            check_pixel_size(size, parameter=f"{space}_pixel_size"),
            canonical_units(units, parameter=f"{space}_units", allowed=allowed),
        )
    except (TypeError, ValueError) as err:
        warnings.warn(
            f"{where}: unusable {space.upper()} calibration ({err}); using pixels", stacklevel=4
        )
        return 1.0, "pixels"


def _read_calibration(group) -> dict:
    """``from_array`` keywords: R/Q pixel sizes and units from the calibration metadata, else
    from the dim vectors' spacing and units, else pixels; origins from the dim vectors' first
    values (when in the same units); energy when recorded."""
    cal = _find_calibration(group)
    out = {}
    spaces = (("r", R_UNITS, ("dim0", "dim1")), ("q", Q_UNITS, ("dim2", "dim3")))
    for space, allowed, dims in spaces:
        key = space.upper()
        if cal is not None and f"{key}_pixel_size" in cal:
            size = h5_text(cal[f"{key}_pixel_size"])
            units = h5_text(cal[f"{key}_pixel_units"]) if f"{key}_pixel_units" in cal else "pixels"
            where = cal.name
        elif dims[0] in group:
            vec = group[dims[0]][()]
            size = float(vec[1] - vec[0]) if vec.size > 1 else 1.0
            units = h5_text(group[dims[0]].attrs.get("units", "pixels"))
            where = group[dims[0]].name
        else:
            size, units, where = 1.0, "pixels", group.name
        size, units = _checked(size, units, allowed, space, where)
        out[f"{space}_pixel_size"], out[f"{space}_units"] = size, units
        out[f"{space}_origin"] = tuple(_origin(group, d, units) for d in dims)
    energy = h5_text(cal["energy"]) if cal is not None and "energy" in cal else None
    if isinstance(energy, int | float) and energy > 0:
        out["energy"] = float(energy)
    elif energy not in (None, "_None"):  # emdfile stores None as b"_None"
        warnings.warn(
            f"{cal.name}/energy: not a positive number of eV ({energy!r}); ignored", stacklevel=3
        )
    return out


def _origin(group, dim, units) -> float:
    """First value of dim vector ``dim`` when it is in ``units`` (0 otherwise)."""
    if dim not in group:
        return 0.0
    vec = np.asarray(group[dim][()], dtype=np.float64).ravel()
    same = h5_text(group[dim].attrs.get("units", units)) == units
    return float(vec[0]) if same and vec.size and np.isfinite(vec[0]) else 0.0


def read_emd(path, *, name=None, chunks="auto"):
    """Open the py4DSTEM DataCube in an EMD 1.0 ``.h5`` file lazily as a datacube.

    Parameters
    ----------
    path : an HDF5 file written by py4DSTEM >= 0.14 (emdfile) or by :func:`to_h5`.
    name : which DataCube (group name or HDF5 path) when the file holds several.
    chunks : ``"auto"``: whole frames and scan blocks of about 64 MiB, made of whole HDF5
        chunks when the dataset is chunked; or ``{dim: size}`` / a 2- or 4-tuple as in
        :func:`stem4d_dask.from_array`.

    Returns a ``(Rx, Ry, Qx, Qy)`` DataArray calibrated from the file's ``Calibration``
    (``R_pixel_size``/``R_pixel_units``: 'A', 'nm' or 'pixels'; ``Q_pixel_size``/
    ``Q_pixel_units``: 'A^-1', 'mrad' or 'pixels'), falling back on the dim vectors, then on
    pixels. Only metadata are read here; each dask task opens the file and reads its block.
    """
    path = os.path.abspath(os.fspath(path))  # tasks may run in another working directory
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: {path} does not exist or is not a file")
    if not is_hdf5(path):
        raise ValueError(f"path: {path} is not an HDF5 file (no HDF5 signature)")
    if is_legacy_emd(path):  # py4DSTEM <= 0.13 or EMD 0.x: read, not refused
        return read_legacy_emd(path, name=name, chunks=chunks)
    with h5py.File(path, "r") as f:
        group = _pick_datacube(f, name, path)
        if "data" not in group or not isinstance(group["data"], h5py.Dataset):
            raise ValueError(f"path: DataCube group {group.name} in {path} has no 'data' dataset")
        dset = group["data"]
        shape, dtype, store_chunks = tuple(dset.shape), dset.dtype, dset.chunks
        if len(shape) != 4 or dtype.kind not in "biufc":
            raise ValueError(
                f"path: {dset.name} in {path} is {shape} {dtype}; expected a 4D "
                "numeric (Rx, Ry, Qx, Qy) array"
            )
        calibration = _read_calibration(group)
        dataset_path = dset.name
    dtype = dtype.newbyteorder("=")
    if isinstance(chunks, str) and chunks == "auto":
        chunks = auto_chunks(shape, dtype.itemsize, multiple_of=store_chunks or (1, 1))
    norm = normalize_chunks(chunks, shape, dtype)
    loader = H5BlockLoader(
        path, dataset_path, dtype.str, shape, shape[:2], mtime_ns=os.stat(path).st_mtime_ns
    )
    data = lazy_from_loader(loader, shape, dtype, norm, f"emd-{Path(path).name}")
    return from_array(data, chunks=None, **calibration)


def _write_metadata_item(group, key, value):
    """One calibration item, typed exactly as emdfile's ``Metadata._save_item`` does."""
    if isinstance(value, str):
        ds, kind = group.create_dataset(key, data=value.encode("utf-8")), "string"
    elif isinstance(value, bool):
        ds, kind = group.create_dataset(key, data=value, dtype=bool), "bool"
    else:
        ds, kind = group.create_dataset(key, data=float(value), dtype=np.float64), "number"
    ds.attrs["type"] = kind.encode("utf-8")


def _write_layout(f, name, shape, dtype, attrs, chunks=None, origins=None):
    """Write the EMD 1.0 / py4DSTEM tree for a DataCube ``name`` into the open file ``f``,
    with an empty ``data`` dataset of ``shape``/``dtype`` (HDF5 ``chunks``: None = contiguous,
    as py4DSTEM writes). ``attrs``: the datacube calibration attrs; ``origins``: ``{dim: first
    coordinate}`` (default 0), written as each dim vector's start. Returns the data dataset."""
    origins = {d: 0.0 for d in DIMS} | dict(origins or {})
    header = dict(
        emd_group_type="file",
        version_major=1,
        version_minor=0,
        UUID=str(uuid.uuid4()),
        authoring_program="stem4d_dask",
        authoring_user="",
    )
    for key, value in header.items():
        f.attrs.create(key, value)
    root = f.create_group(f"{name}_root")
    root.attrs.create("emd_group_type", "root")
    root.attrs.create("python_class", "Root")
    node = root.create_group(name)
    node.attrs.create("emd_group_type", "array")
    node.attrs.create("python_class", "DataCube")
    data = node.create_dataset("data", shape=shape, dtype=dtype, chunks=chunks)
    data.attrs.create("units", DATA_UNITS)
    for i, dim in enumerate(DIMS):
        space = "r" if i < 2 else "q"
        start = origins[dim]
        dset = node.create_dataset(
            f"dim{i}", data=np.array([start, start + attrs[f"{space}_pixel_size"]])
        )
        dset.attrs.create("name", dim)
        dset.attrs.create("units", attrs[f"{space}_units"])
    bundle = root.create_group("metadatabundle")
    bundle.attrs.create("emd_group_type", "metadatabundle")
    cal = bundle.create_group("calibration")
    cal.attrs.create("emd_group_type", "metadata")
    cal.attrs.create("python_class", "Calibration")
    items = {
        "Q_pixel_size": attrs["q_pixel_size"],
        "R_pixel_size": attrs["r_pixel_size"],
        "Q_pixel_units": attrs["q_units"],
        "R_pixel_units": attrs["r_units"],
        "QR_flip": False,
        "_root_treepath": "",
    }
    if attrs.get("energy") is not None:
        items["energy"] = attrs["energy"]
    for key, value in items.items():
        _write_metadata_item(cal, key, value)
    targets = cal.create_group("_target_paths")
    targets.attrs["type"] = b"list_of_strings"
    targets.attrs["length"] = 1
    targets.create_dataset("0", data=f"/{name}".encode())
    return data


def _store_lock():
    """A lock that serialises block writes: a ``distributed.Lock`` under a client (workers
    may be separate processes), else dask's picklable thread lock (``lock=True``)."""
    if active_client() is not None:
        from distributed import Lock

        return Lock(f"stem4d-h5-{uuid.uuid4().hex}")
    return True


def to_h5(dc, path, *, name="datacube", overwrite=False, progress=None):
    """Write datacube ``dc`` ``(Rx, Ry, Qx, Qy)`` to ``path`` in py4DSTEM's EMD 1.0 layout.

    ``py4DSTEM.read(path)`` (0.14.18) returns a DataCube with the same data and calibration
    (``R_pixel_size``/``R_pixel_units``, ``Q_pixel_size``/``Q_pixel_units``) and the coords'
    origins as the dim vectors' first values; ``energy`` (eV),
    when set, is stored as an extra calibration number. The data are streamed block by block
    (memory bounded by the chunk size x workers) into ``path + ".partial"``, which is renamed
    to ``path`` only when complete (and removed on failure). Under a ``distributed`` client the
    workers write the file themselves, so they must share its filesystem. cupy chunks are
    copied to the host, each by its block's task.

    Parameters
    ----------
    name : DataCube group name (the root group is ``name + "_root"``).
    overwrite : replace an existing ``path``; otherwise ``FileExistsError``.
    progress : show a progress bar (None: as :func:`stem4d_dask.progress.showing` says; off
        unless asked).

    Returns the final ``Path``.
    """
    dc = to_host(check_datacube(dc, parameter="dc"))
    for space in ("r", "q"):  # py4DSTEM records one pixel size per space
        cal.pixel_size(dc, space, "to_h5 (py4DSTEM's EMD layout; write zarr to keep any coords)")
    origins = {d: cal.axis(dc, d).origin for d in DIMS}
    if not isinstance(name, str) or not name or "/" in name or name == ".":
        raise ValueError(f"name must be a non-empty HDF5 group name without '/', got {name!r}")
    path = Path(path)
    with completed_at(path, overwrite=overwrite) as tmp:
        if path.is_dir():
            raise IsADirectoryError(f"path: {path} is a directory, not an .h5 file")
        if not path.parent.is_dir():
            raise FileNotFoundError(f"path: the folder {path.parent} does not exist")
        with h5py.File(tmp, "w") as f:
            dataset_path = _write_layout(
                f, name, dc.shape, dc.dtype, dc.attrs, origins=origins
            ).name
        data = dc.data if isinstance(dc.data, da.Array) else da.from_array(dc.data)
        writer = H5DatasetWriter(str(tmp.absolute()), dataset_path)
        stored = da.store(data, writer, lock=_store_lock(), compute=False)
        compute(stored, progress=progress)
    return path


__all__ = ["is_emd", "read_emd", "to_h5", "H5DatasetWriter"]
