"""What opening a DECTRIS ARINA / EIGER acquisition finds (see :mod:`stem4d_dask.io.arina` for
the layout): the master's links to its data files and its detector metadata, each data file's
frames and chunk index (where each frame's compressed bytes lie, from ``chunk_iter``), and the
``X.h5`` side-car's "STEM Metadata". Reads HDF5 metadata only, never pixel data.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..datacube import user_stacklevel
from ..kernels.bslz4 import LITTLE
from .h5 import hdf5_filters, is_hdf5
from .hdf5 import hdf5_path, open_hdf5
from .metadata import SMALL, json_value

BSHUF_FILTER = 32008
BSHUF_LZ4 = 2
DETECTOR = "entry/instrument/detector"
SPECIFIC = DETECTOR + "/detectorSpecific"
SIDECAR_GROUP = "STEM Metadata"
DATA_NAME = re.compile(r"^(?P<stem>.*)_data_(?P<n>\d+)\.(?:h5|hdf5)$", re.IGNORECASE)
MASTER_SUFFIX = "_master.h5"


@dataclass(frozen=True)
class DataFile:
    """One stack of frames: dataset ``dataset`` of ``path``. ``sizes``/``offsets``: the byte
    size and position of each frame's chunk (``bslz4``), ``raw``: chunks stored unfiltered."""

    path: str
    dataset: str
    count: int
    mtime_ns: int
    bslz4: bool
    offsets: np.ndarray | None = None
    sizes: np.ndarray | None = None
    raw: np.ndarray | None = None
    present: int = 0  # leading frames whose chunks exist
    image_nr: tuple | None = None  # (image_nr_low, image_nr_high) when recorded


@dataclass
class Acquisition:
    """The data files in link order, their frames ``(rows, cols)`` of ``dtype`` (native byte
    order), the master's detector metadata (JSON-able), the side-car's attributes (or None)
    and the frame count the master expects (``nimages * ntrigger``, or None)."""

    master: str | None
    files: list
    frame_shape: tuple
    dtype: np.dtype
    metadata: dict
    sidecar: dict | None
    expected: int | None  # nimages * ntrigger from the master

    @property
    def offsets(self):
        """Byte offset of each frame's chunk in its file, -1 for frames read with h5py."""
        return _joined(self.files, "offsets", np.int64, -1)

    @property
    def sizes(self):
        """Byte size of each frame's chunk, 0 for frames read with h5py."""
        return _joined(self.files, "sizes", np.uint32, 0)

    @property
    def n_frames(self) -> int:
        return sum(f.count for f in self.files)

    @property
    def n_present(self) -> int:
        """Frames readable from the start (up to the first missing chunk)."""
        n = 0
        for f in self.files:
            n += f.present
            if f.present < f.count:
                break
        return n


def _joined(files, field, dtype, fill):
    parts = [getattr(f, field) if f.bslz4 else np.full(f.count, fill, dtype) for f in files]
    return np.concatenate(parts).astype(dtype, copy=False)


def _master_for(path: Path) -> Path | None:
    """The master of a path naming a master or a data file (None: a data file without one)."""
    match = DATA_NAME.match(path.name)
    if match is None:
        return path
    master = path.with_name(match["stem"] + MASTER_SUFFIX)
    return master if master.is_file() else None


def _sidecar_path(master: Path) -> Path | None:
    name = master.name
    if not name.lower().endswith(MASTER_SUFFIX):
        return None
    return master.with_name(name[: -len(MASTER_SUFFIX)] + ".h5")


def _group_dict(group) -> dict:
    """Scalars and small arrays of ``group`` (recursively) and their units, JSON-able."""
    out = {}
    for key, item in group.items():
        if isinstance(item, h5py.Group):
            sub = _group_dict(item)
            if sub:
                out[key] = sub
        elif isinstance(item, h5py.Dataset):
            if item.size > SMALL:
                out[key] = f"<{item.dtype} array {tuple(item.shape)}>"
                continue
            value = json_value(item[()])
            units = item.attrs.get("units")
            out[key] = value if units is None else {"value": value, "units": json_value(units)}
    return out


def _sidecar(master: Path) -> dict | None:
    path = _sidecar_path(master)
    if path is None or not path.is_file() or not is_hdf5(path):
        return None
    with h5py.File(path, "r") as f:
        group = f.get(SIDECAR_GROUP)
        if not isinstance(group, h5py.Group):
            return None
        return {"file": path.name, **{k: json_value(v) for k, v in group.attrs.items()}}


def _links(master: Path, f) -> list[tuple[str, str]]:
    """``(file, dataset path)`` of each ``/entry/data/data_*`` member, in name order."""
    group = f["entry/data"]
    out = []
    for key in sorted(k for k in group if k.startswith("data_")):
        link = group.get(key, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            target = Path(link.filename)
            target = target if target.is_absolute() else master.parent / target
            out.append((str(target), link.path))
        else:
            out.append((str(master), f"entry/data/{key}"))
    return out


def _chunk_index(dset, count, frame_bytes):
    """Byte offsets, sizes and filter masks of a ``(1, rows, cols)``-chunked dataset's chunks
    (one per frame), and how many leading frames have one."""
    offsets = np.full(count, -1, dtype=np.int64)
    sizes = np.zeros(count, dtype=np.int64)
    masks = np.zeros(count, dtype=np.uint32)

    def visit(info):
        k = info.chunk_offset[0]
        if k < count:
            offsets[k], sizes[k], masks[k] = info.byte_offset, info.size, info.filter_mask

    if hasattr(dset.id, "chunk_iter"):
        dset.id.chunk_iter(visit)
    else:  # pragma: no cover - HDF5 < 1.12.3
        for i in range(dset.id.get_num_chunks()):
            visit(dset.id.get_chunk_info(i))
    missing = np.flatnonzero(offsets < 0)
    present = int(missing[0]) if missing.size else count
    raw = masks != 0  # the filter was skipped: the chunk holds the frame's bytes as they are
    if np.any(raw & (sizes != frame_bytes) & (offsets >= 0)):
        raise ValueError(
            f"{dset.file.filename}: unfiltered chunks of {dset.name} are not {frame_bytes} bytes"
        )
    return offsets, sizes.astype(np.uint32), raw, present


def _open_data_file(path: str, dataset: str, where: str) -> tuple[DataFile, tuple, np.dtype]:
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"path: {where} links its frames to {path}, which does not "
            "exist (data files must stay beside the master file)"
        )
    with open_hdf5(path) as f:
        dset = f.get(dataset)
        if not isinstance(dset, h5py.Dataset):
            raise ValueError(f"path: {path} has no dataset {dataset!r} ({where} links to it)")
        if dset.ndim != 3 or dset.dtype.kind not in "biuf":
            raise ValueError(
                f"path: {path}:{dataset} is {dset.shape} {dset.dtype}; expected "
                "(frames, rows, cols) of numbers"
            )
        count, rows, cols = dset.shape
        dtype = dset.dtype
        plist = dset.id.get_create_plist()
        filters = [plist.get_filter(i) for i in range(plist.get_nfilters())]
        bslz4 = (
            dset.chunks == (1, rows, cols)
            and len(filters) == 1
            and filters[0][0] == BSHUF_FILTER
            and len(filters[0][2]) > 4
            and filters[0][2][4] == BSHUF_LZ4
            and dtype.byteorder in "=|<"
            and LITTLE
        )
        mtime = os.stat(path).st_mtime_ns
        numbers = (
            (int(dset.attrs["image_nr_low"]), int(dset.attrs["image_nr_high"]))
            if "image_nr_low" in dset.attrs and "image_nr_high" in dset.attrs
            else None
        )
        if not bslz4:
            if filters and not hdf5_filters():
                raise ValueError(
                    f"path: {path}:{dataset} is compressed (HDF5 filters "
                    f"{[flt[0] for flt in filters]}); install hdf5plugin to read it"
                )
            return (
                DataFile(path, dset.name, count, mtime, False, present=count, image_nr=numbers),
                (rows, cols),
                dtype,
            )
        offsets, sizes, raw, present = _chunk_index(dset, count, rows * cols * dtype.itemsize)
        return (
            DataFile(path, dset.name, count, mtime, True, offsets, sizes, raw, present, numbers),
            (rows, cols),
            dtype,
        )


def open_acquisition(path) -> Acquisition:
    """The acquisition of ``path`` (a master, or a data file: its master when it has one, else
    that file alone, with a warning). ``FileNotFoundError`` / ``ValueError`` naming the file
    for a missing, non-HDF5, unreadable or inconsistent one."""
    path = Path(hdf5_path(path))
    master = _master_for(path)
    metadata, expected, links = {}, None, []
    if master is not None:
        with open_hdf5(master) as f:
            if not isinstance(f.get("entry/data"), h5py.Group):
                raise ValueError(
                    f"path: {master} has no /entry/data group; not a DECTRIS NeXus master file"
                )
            links = _links(master, f)
            if DETECTOR in f:
                metadata = _group_dict(f[DETECTOR])
            specific = f.get(SPECIFIC)
            if (
                isinstance(specific, h5py.Group)
                and "nimages" in specific
                and "ntrigger" in specific
            ):
                expected = int(specific["nimages"][()]) * max(int(specific["ntrigger"][()]), 1)
        if not links and master.name.lower().endswith(MASTER_SUFFIX):
            raise ValueError(f"path: {master} links no data files (/entry/data/data_* is empty)")
        where = str(master)
    if not links:  # a data file without its master (or named like none)
        warnings.warn(
            f"path: no master file beside {path}; reading this data file alone, "
            "without detector metadata",
            stacklevel=user_stacklevel(),
        )
        master, metadata, expected = None, {}, None
        links, where = [(str(path), "entry/data/data")], str(path)
    files, frame_shape, dtype = [], None, None
    for file_path, dataset in links:
        info, shape, dt = _open_data_file(file_path, dataset, where)
        if frame_shape is not None and (shape != frame_shape or dt != dtype):
            raise ValueError(
                f"path: {file_path} holds {shape} {dt} frames but "
                f"{files[0].path} holds {frame_shape} {dtype}"
            )
        frame_shape, dtype = shape, dt
        files.append(info)
    if master is not None:
        _check_image_numbers(files)
    sidecar = _sidecar(master) if master is not None else None
    return Acquisition(
        str(master) if master else None,
        files,
        frame_shape,
        np.dtype(dtype).newbyteorder("="),
        metadata,
        sidecar,
        expected,
    )


def _check_image_numbers(files):
    """Refuse data files whose ``image_nr_low``/``high`` leave gaps or overlap: stacking them
    in link order would put frames at the wrong scan positions."""
    first = 1
    for info in files:
        if info.image_nr is None:
            return
        low, high = info.image_nr
        if low != first or high - low + 1 != info.count:
            raise ValueError(
                f"path: {info.path} holds images {low}..{high} ({info.count} frames) but "
                f"image {first} comes next; the data files do not stack into one scan"
            )
        first = high + 1
