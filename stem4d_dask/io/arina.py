"""DECTRIS ARINA / EIGER NeXus files (``X_master.h5`` + ``X_data_00000N.h5``), read lazily.

Layout (DECTRIS firmware, as in the ARINA test files)::

    X_master.h5   /entry/data/data_000001 ...   ExternalLinks to X_data_00000N.h5:/entry/data/data
                  /entry/instrument/detector/   bit_depth_image, saturation_value, x_pixel_size (m),
                                                frame_time, count_time, detectorSpecific/{nimages,
                                                ntrigger, x_pixels_in_detector, pixel_mask,
                                                flatfield, photon_energy (eV), ...}
    X_data_00000N.h5  /entry/data/data          (n, rows, cols) frames, HDF5 chunks of one frame,
                                                filter 32008 (bitshuffle + LZ4); attrs
                                                image_nr_low / image_nr_high (1-based)
    X.h5          "STEM Metadata" group attrs   NumPixelsX (fast), NumPixelsY (slow), Pixel Size
                                                (nm), High Tension (V), Camera Length (m), ...

The data files are stacked in link order (``data_000001``, ``data_000002`` ...). Opening reads
metadata and the chunk index only (``chunk_iter``: where each frame's compressed bytes are);
each dask task then reads its frames with ``os.preadv`` (one call per run of consecutive
chunks) and decodes the run straight into its block with the compiled bitshuffle-LZ4 decoder
(:mod:`stem4d_dask.kernels.bslz4`), which runs without the GIL: no h5py and no HDF5 lock in the
tasks, and the decode runs in parallel in dask's threads. Other filters or layouts are read
through h5py + hdf5plugin instead.
Each task carries only the index of its own frames, so graphs stay small.

Orientation (see ``docs/formats.md``): ``Qx`` = the stored rows, ``Qy`` = columns, no flip;
scan position ``(rx, ry)`` is frame ``rx * Ry + ry``; ``(Rx, Ry) = (NumPixelsY, NumPixelsX)``.
Values keep their dtype (uint32 stays uint32; RosettaSciIO and py4DSTEM cast to uint16).
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import h5py
import numpy as np
import xarray as xr
from dask.base import tokenize

from ..checks import checked_scan_shape
from ..coords import regular_coord
from ..datacube import auto_chunks, from_array, normalize_chunks, user_stacklevel
from ..kernels.bslz4 import LITTLE, Bslz4Error, decode_run
from ..lazy import lazy_from_loader
from .frames import frame_count_error
from .h5 import hdf5_filters, is_hdf5
from .metadata import SMALL, json_value

BSHUF_FILTER = 32008
BSHUF_LZ4 = 2
DETECTOR = "entry/instrument/detector"
SPECIFIC = DETECTOR + "/detectorSpecific"
SIDECAR_GROUP = "STEM Metadata"
_DATA_NAME = re.compile(r"^(?P<stem>.*)_data_(?P<n>\d+)\.(?:h5|hdf5)$", re.IGNORECASE)
_MASTER_SUFFIX = "_master.h5"


# --- detection ------------------------------------------------------------------------------

def is_arina(path) -> bool:
    """True for a DECTRIS NeXus master file (``/entry/data`` holding ``data_00000N`` links) or
    one of its data files (``/entry/data/data`` with ``image_nr_low``). Reads HDF5 metadata
    only."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() not in (".h5", ".hdf5", ".nxs") \
            or not is_hdf5(path):
        return False
    try:
        with h5py.File(path, "r") as f:
            group = f.get("entry/data", getclass=True)
            if group is not h5py.Group:
                return False
            group = f["entry/data"]
            for key in group:
                link = group.get(key, getlink=True)
                if key.startswith("data_") and isinstance(link, h5py.ExternalLink):
                    return True
            if group.get("data", getclass=True) is h5py.Dataset:
                return "image_nr_low" in group["data"].attrs
            return any(k.startswith("data_") and group.get(k, getclass=True) is h5py.Dataset
                       for k in group)
    except (OSError, KeyError, ValueError):
        return False


# --- what opening finds ---------------------------------------------------------------------

@dataclass(frozen=True)
class _DataFile:
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
class _Acquisition:
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
    match = _DATA_NAME.match(path.name)
    if match is None:
        return path
    master = path.with_name(match["stem"] + _MASTER_SUFFIX)
    return master if master.is_file() else None


def _sidecar_path(master: Path) -> Path | None:
    name = master.name
    if not name.lower().endswith(_MASTER_SUFFIX):
        return None
    return master.with_name(name[: -len(_MASTER_SUFFIX)] + ".h5")


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
        raise ValueError(f"{dset.file.filename}: unfiltered chunks of {dset.name} are not "
                         f"{frame_bytes} bytes")
    return offsets, sizes.astype(np.uint32), raw, present


def _open_h5(path) -> h5py.File:
    """``path`` opened read-only; ``ValueError`` naming it when HDF5 cannot read it."""
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"path: {path} is not a readable HDF5 file; it may be truncated or "
                         f"corrupt ({err})") from None


def _open_data_file(path: str, dataset: str, where: str) -> tuple[_DataFile, tuple, np.dtype]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"path: {where} links its frames to {path}, which does not "
                                "exist (data files must stay beside the master file)")
    with _open_h5(path) as f:
        dset = f.get(dataset)
        if not isinstance(dset, h5py.Dataset):
            raise ValueError(f"path: {path} has no dataset {dataset!r} ({where} links to it)")
        if dset.ndim != 3 or dset.dtype.kind not in "biuf":
            raise ValueError(f"path: {path}:{dataset} is {dset.shape} {dset.dtype}; expected "
                             "(frames, rows, cols) of numbers")
        count, rows, cols = dset.shape
        dtype = dset.dtype
        plist = dset.id.get_create_plist()
        filters = [plist.get_filter(i) for i in range(plist.get_nfilters())]
        bslz4 = (dset.chunks == (1, rows, cols) and len(filters) == 1
                 and filters[0][0] == BSHUF_FILTER and len(filters[0][2]) > 4
                 and filters[0][2][4] == BSHUF_LZ4 and dtype.byteorder in "=|<" and LITTLE)
        mtime = os.stat(path).st_mtime_ns
        numbers = (int(dset.attrs["image_nr_low"]), int(dset.attrs["image_nr_high"])) \
            if "image_nr_low" in dset.attrs and "image_nr_high" in dset.attrs else None
        if not bslz4:
            if filters and not hdf5_filters():
                raise ValueError(f"path: {path}:{dataset} is compressed (HDF5 filters "
                                 f"{[flt[0] for flt in filters]}); install hdf5plugin to read it")
            return _DataFile(path, dset.name, count, mtime, False, present=count,
                             image_nr=numbers), (rows, cols), dtype
        offsets, sizes, raw, present = _chunk_index(dset, count, rows * cols * dtype.itemsize)
        return _DataFile(path, dset.name, count, mtime, True, offsets, sizes, raw, present,
                         numbers), (rows, cols), dtype


def _open(path) -> _Acquisition:
    path = Path(os.path.abspath(os.fspath(path)))
    if not path.is_file():
        raise FileNotFoundError(f"path: {path} does not exist or is not a file")
    if not is_hdf5(path):
        raise ValueError(f"path: {path} is not an HDF5 file (no HDF5 signature)")
    master = _master_for(path)
    metadata, expected, links = {}, None, []
    if master is not None:
        with _open_h5(master) as f:
            if not isinstance(f.get("entry/data"), h5py.Group):
                raise ValueError(f"path: {master} has no /entry/data group; not a DECTRIS "
                                 "NeXus master file")
            links = _links(master, f)
            if DETECTOR in f:
                metadata = _group_dict(f[DETECTOR])
            specific = f.get(SPECIFIC)
            if isinstance(specific, h5py.Group) and "nimages" in specific \
                    and "ntrigger" in specific:
                expected = int(specific["nimages"][()]) * max(int(specific["ntrigger"][()]), 1)
        if not links and master.name.lower().endswith(_MASTER_SUFFIX):
            raise ValueError(f"path: {master} links no data files (/entry/data/data_* is empty)")
        where = str(master)
    if not links:  # a data file without its master (or named like none)
        warnings.warn(f"path: no master file beside {path}; reading this data file alone, "
                      "without detector metadata", stacklevel=user_stacklevel())
        master, metadata, expected = None, {}, None
        links, where = [(str(path), "entry/data/data")], str(path)
    files, frame_shape, dtype = [], None, None
    for file_path, dataset in links:
        info, shape, dt = _open_data_file(file_path, dataset, where)
        if frame_shape is not None and (shape != frame_shape or dt != dtype):
            raise ValueError(f"path: {file_path} holds {shape} {dt} frames but "
                             f"{files[0].path} holds {frame_shape} {dtype}")
        frame_shape, dtype = shape, dt
        files.append(info)
    if master is not None:
        _check_image_numbers(files)
    sidecar = _sidecar(master) if master is not None else None
    return _Acquisition(str(master) if master else None, files, frame_shape,
                        np.dtype(dtype).newbyteorder("="), metadata, sidecar, expected)


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
                f"image {first} comes next; the data files do not stack into one scan")
        first = high + 1


# --- scan shape and calibration -------------------------------------------------------------

def _scan_shape(acq: _Acquisition, scan_shape) -> tuple[tuple, str]:
    n = acq.n_frames
    if scan_shape is not None:
        return checked_scan_shape(scan_shape), "scan_shape="
    side = acq.sidecar
    if side is not None and "NumPixelsX" in side and "NumPixelsY" in side:
        shape = (int(side["NumPixelsY"]), int(side["NumPixelsX"]))
        if shape[0] * shape[1] < n:
            raise ValueError(
                f"scan_shape: {side['file']} gives a {side['NumPixelsX']} x "
                f"{side['NumPixelsY']} (X x Y) scan, {shape[0] * shape[1]} frames, but the "
                f"data files hold {n}; pass scan_shape=(Rx, Ry)")
        return shape, f"{side['file']} NumPixelsY x NumPixelsX"
    root = math.isqrt(n)
    if root * root == n:
        shape, how = (root, root), "square"
    else:
        shape, how = (n, 1), "(frames, 1)"
    hint = f" ({acq.expected} frames in the master)" if acq.expected not in (None, n) else ""
    warnings.warn(
        f"scan_shape: no scan shape in {acq.master or acq.files[0].path} (no side-car "
        f"'{SIDECAR_GROUP}' file); reading the {n} frames{hint} as a {how} scan {shape}; pass "
        "scan_shape=(Rx, Ry) to say what it is", stacklevel=user_stacklevel())
    return shape, f"guess: {how}"


def _number(value):
    value = value.get("value") if isinstance(value, dict) else value
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value) and value > 0 else None


def _calibration(acq: _Acquisition) -> dict:
    """``from_array`` keywords from the side-car and the master (see :func:`read_arina`)."""
    side, det = acq.sidecar or {}, acq.metadata
    out, notes = {}, {}
    step = _number(side.get("Pixel Size"))
    if step is not None:
        out.update(r_pixel_size=step, r_units="nm")
        notes["r"] = "side-car 'Pixel Size' (nm)"
    energy = _number(side.get("High Tension"))
    source = "side-car 'High Tension' (V)"
    if energy is None:
        energy = _number(det.get("detectorSpecific", {}).get("photon_energy"))
        source = "master photon_energy (eV)"
    if energy is not None:
        out["energy"] = energy
        notes["energy"] = source
    length = _number(side.get("Camera Length"))
    px, py = _number(det.get("x_pixel_size")), _number(det.get("y_pixel_size"))
    if length is not None and px is not None and px == py:
        out.update(q_pixel_size=px / length * 1e3, q_units="mrad")
        notes["q"] = "x_pixel_size (m) / side-car 'Camera Length' (m): nominal"
    return {"kwargs": out, "notes": notes}


def _value_range(acq: _Acquisition, dtype):
    bits = acq.metadata.get("bit_depth_image")
    if isinstance(bits, int) and 0 < bits < dtype.itemsize * 8 and dtype.kind == "u":
        return (0, 2**bits - 1)
    return None


# --- reading --------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Run:
    """``count`` frames of one file going to block positions ``at .. at + count - 1``.

    ``bslz4``: the chunks lie back to back from byte ``start``, of ``sizes`` bytes (``raw``:
    stored unfiltered); else ``first`` is the first frame in ``dataset`` (read with h5py).
    """

    path: str
    at: int
    count: int
    first: int
    bslz4: bool
    dataset: str = ""
    start: int = 0
    sizes: bytes = b""  # uint32 per frame
    raw: bytes = b""  # bool per frame, empty when none is raw


@dataclass(frozen=True)
class ArinaBlockLoader:
    """Decode one dask block ``(nrx, nry, rows, cols)`` of an ARINA scan: the block at scan rows
    ``r0 ..``, columns ``c0 ..`` of a scan with ``ry`` columns. Holds only its own frames'
    index (file, byte position, size), so it pickles small; opens the files itself."""

    runs: tuple
    shape: tuple
    dtype: str
    r0: int
    c0: int
    ry: int

    def __call__(self):
        nrx, nry, rows, cols = self.shape
        out = np.empty((nrx * nry, rows, cols), dtype=self.dtype)
        for run in self.runs:
            if run.bslz4:
                self._decode_run(run, out)
            else:
                self._h5_run(run, out)
        return out.reshape(self.shape)

    def _position(self, at: int) -> tuple:
        nry = self.shape[1]
        return (self.r0 + at // nry, self.c0 + at % nry)

    def _decode_run(self, run: _Run, out):
        sizes = np.frombuffer(run.sizes, dtype=np.uint32)
        raw = np.frombuffer(run.raw, dtype=bool) if run.raw else None
        buf = np.empty(int(sizes.sum(dtype=np.int64)), dtype=np.uint8)
        got = _pread_into(run.path, buf, run.start)
        if got < buf.size:
            k = int(np.searchsorted(np.cumsum(sizes, dtype=np.int64), got, side="right"))
            raise ValueError(f"{run.path}: frame {run.first + k} (scan position "
                             f"{self._position(run.at + k)}) lies beyond the end of the file; "
                             "the file is truncated")
        try:
            decode_run(buf, sizes, out[run.at: run.at + run.count], raw)
        except Bslz4Error as err:
            i = err.index
            raise ValueError(
                f"{run.path}: frame {run.first + i} (scan position "
                f"{self._position(run.at + i)}) is corrupt: its bitshuffle-LZ4 chunk does "
                f"not decode ({err})") from None

    def _h5_run(self, run: _Run, out):
        hdf5_filters()
        try:
            with h5py.File(run.path, "r") as f:
                f[run.dataset].read_direct(out, np.s_[run.first: run.first + run.count],
                                           np.s_[run.at: run.at + run.count])
        except OSError as err:
            raise ValueError(f"{run.path}: frames {run.first}..{run.first + run.count - 1} "
                             f"(scan positions {self._position(run.at)}.."
                             f"{self._position(run.at + run.count - 1)}) could not be read "
                             f"({err})") from None


def _pread_into(path, buf, offset) -> int:
    """Fill ``buf`` (uint8) with the bytes of ``path`` from ``offset`` on; the bytes read
    (fewer at the end of the file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        got = 0
        view = memoryview(buf)
        while got < buf.size:
            if hasattr(os, "preadv"):
                k = os.preadv(fd, [view[got:]], offset + got)
            else:  # pragma: no cover - a platform without preadv
                data = os.pread(fd, buf.size - got, offset + got)
                k = len(data)
                buf[got: got + k] = np.frombuffer(data, dtype=np.uint8)
            if k == 0:
                break
            got += k
        return got
    finally:
        os.close(fd)


def _block_runs(acq: _Acquisition, index, frames: np.ndarray) -> tuple:
    """The runs of ``frames`` (stack frame numbers in block order): consecutive frames of one
    file whose chunks lie back to back become one run (one ``pread``)."""
    starts, all_offsets, all_sizes = index
    which = np.searchsorted(starts, frames, side="right") - 1
    offsets, sizes = all_offsets[frames], all_sizes[frames].astype(np.int64)
    cut = np.ones(frames.size, dtype=bool)
    cut[1:] = (which[1:] != which[:-1]) | (frames[1:] != frames[:-1] + 1) \
        | (offsets[1:] != offsets[:-1] + sizes[:-1])
    edges = np.append(np.flatnonzero(cut), frames.size)
    runs = []
    for i, j in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        info = acq.files[int(which[i])]
        local = int(frames[i] - starts[which[i]])
        if info.bslz4:
            raw = info.raw[local: local + j - i]
            runs.append(_Run(info.path, i, j - i, local, True, start=int(info.offsets[local]),
                             sizes=info.sizes[local: local + j - i].tobytes(),
                             raw=raw.tobytes() if raw.any() else b""))
        else:
            runs.append(_Run(info.path, i, j - i, local, False, dataset=info.dataset))
    return tuple(runs)


def _lazy(acq: _Acquisition, scan_shape, chunks, name: str) -> da.Array:
    rows, cols = acq.frame_shape
    dtype = acq.dtype
    full = (*scan_shape, rows, cols)
    if isinstance(chunks, str) and chunks == "auto":
        chunks = auto_chunks(full, dtype.itemsize)
    norm = normalize_chunks(chunks, full, dtype)
    if len(norm[2]) != 1 or len(norm[3]) != 1:
        raise ValueError(f"chunks: ARINA frames are read whole; got detector chunks "
                         f"{norm[2]}, {norm[3]}")
    index = (np.cumsum([0] + [f.count for f in acq.files]), acq.offsets, acq.sizes)
    token = tokenize([(f.path, f.mtime_ns, f.count) for f in acq.files], full, dtype.str, norm)
    out = f"{name}-{token}"
    graph = {}
    ry = scan_shape[1]
    r_edges = np.cumsum((0,) + norm[0])
    c_edges = np.cumsum((0,) + norm[1])
    for i in range(len(norm[0])):
        for j in range(len(norm[1])):
            r0, r1, c0, c1 = r_edges[i], r_edges[i + 1], c_edges[j], c_edges[j + 1]
            frames = (np.arange(r0, r1)[:, None] * ry + np.arange(c0, c1)[None, :]).ravel()
            loader = ArinaBlockLoader(_block_runs(acq, index, frames),
                                      (int(r1 - r0), int(c1 - c0), rows, cols), dtype.str,
                                      int(r0), int(c0), int(ry))
            graph[(out, i, j, 0, 0)] = (loader,)
    return da.Array(graph, out, norm, dtype=dtype, meta=np.empty((0,) * 4, dtype=dtype))


def read_arina(path, *, scan_shape=None, chunks="auto"):
    """Open a DECTRIS ARINA / EIGER acquisition lazily as a datacube ``(Rx, Ry, Qx, Qy)``.

    Parameters
    ----------
    path : the ``X_master.h5`` file, or one of its ``X_data_00000N.h5`` files (the master
        beside it is then used, so all data files are read; without a master, that data file
        alone is read, with a warning).
    scan_shape : ``(Rx, Ry)`` = (slow, fast). Default: the side-car ``X.h5`` ("STEM Metadata"
        ``NumPixelsY``, ``NumPixelsX``); without one, a square scan when the frame count is a
        perfect square, else ``(frames, 1)``, with a warning either way. The files must hold
        at least ``Rx * Ry`` frames (else ``ValueError`` saying how many they hold).
    chunks : ``"auto"`` (whole frames, 32-128 MiB scan blocks), ``{dim: size}`` or a tuple as
        in :func:`stem4d_dask.from_array`; detector axes are never split.

    Values keep the stored dtype (an ARINA's uint32 stays uint32). Calibration, where the files
    carry it: scan step from the side-car's ``Pixel Size`` (nm); energy (eV) from its
    ``High Tension``, else the master's ``photon_energy``; detector pixels in mrad as
    ``x_pixel_size / Camera Length`` (nominal camera length: override with ``q_pixel_size=``
    in :func:`stem4d_dask.read` when calibrated). A bit depth below the dtype's is recorded as
    the value range. ``attrs["metadata"]``: the master's detector metadata (``bit_depth_image``,
    ``saturation_value``, ``frame_time``, ``count_time``, ``detectorSpecific/...``) and the
    side-car's attributes. The pixel mask and flat field: :func:`read_arina_masks`.

    Corrupt chunks raise ``ValueError`` naming the file, frame and scan position when read.
    """
    acq = _open(path)
    shape, source = _scan_shape(acq, scan_shape)
    needed = shape[0] * shape[1]
    if needed > acq.n_present:
        where = acq.master or acq.files[0].path
        hint = "" if acq.n_present == acq.n_frames else \
            f" (frames from {acq.n_present} on have no stored chunk)"
        raise ValueError(frame_count_error(where, acq.n_present, needed, shape, hint))
    data = _lazy(acq, shape, chunks, f"arina-{Path(acq.files[0].path).name}")
    cal = _calibration(acq)
    metadata = {
        "master": Path(acq.master).name if acq.master else None,
        "data_files": [Path(f.path).name for f in acq.files],
        "frames": acq.n_frames, "frames_expected": acq.expected,
        "frame_shape": list(acq.frame_shape), "dtype": acq.dtype.str,
        "decoder": "bslz4 (stem4d_dask.kernels.bslz4)" if all(f.bslz4 for f in acq.files)
        else "h5py",
        "scan_shape_source": source, "calibration": cal["notes"],
        "detector": acq.metadata, "stem_metadata": acq.sidecar,
    }
    return from_array(data, chunks=None, value_range=_value_range(acq, acq.dtype),
                      attrs={"format": "arina", "metadata": metadata}, **cal["kwargs"])


@dataclass(frozen=True)
class _MaskLoader:
    path: str
    dataset: str
    dtype: str

    def __call__(self, slices):
        hdf5_filters()
        with h5py.File(self.path, "r") as f:
            return np.asarray(f[self.dataset][slices], dtype=self.dtype)


def read_arina_masks(path) -> xr.Dataset:
    """The detector's ``pixel_mask`` and ``flatfield`` from the master file, lazily, as
    ``(Qx, Qy)`` variables of an ``xarray.Dataset`` with the same ``Qx``/``Qy`` coords as
    :func:`read_arina`'s datacube (variables absent from the file are left out).

    ``pixel_mask`` (uint32): 0 for a good pixel, else DECTRIS flag bits (1 gap, 2 dead,
    4 under-responding, 8 noisy, ...); ``flatfield`` (float32): the flat-field factors, not
    applied to the data by the detector when ``flatfield_correction_applied`` is 0 (see
    ``attrs["metadata"]["detector"]``). E.g. ``bad = read_arina_masks(p).pixel_mask != 0``.
    """

    acq = _open(path)
    if acq.master is None:
        raise ValueError(f"path: no master file for {path}; the masks are stored there")
    rows, cols = acq.frame_shape
    q = _calibration(acq)["kwargs"]
    size, units = q.get("q_pixel_size", 1.0), q.get("q_units", "pixels")
    coords = {"Qx": regular_coord(rows, size, units, "Qx"),
              "Qy": regular_coord(cols, size, units, "Qy")}
    out = {}
    with h5py.File(acq.master, "r") as f:
        for name in ("pixel_mask", "flatfield"):
            dset = f.get(f"{SPECIFIC}/{name}")
            if not isinstance(dset, h5py.Dataset):
                continue
            if dset.shape != (rows, cols):
                raise ValueError(f"path: {acq.master}: {dset.name} is {dset.shape}, frames are "
                                 f"{(rows, cols)}")
            dtype = dset.dtype.newbyteorder("=")
            loader = _MaskLoader(acq.master, dset.name, dtype.str)
            data = lazy_from_loader(loader, (rows, cols), dtype, ((rows,), (cols,)),
                                    f"arina-{name}")
            out[name] = xr.DataArray(data, dims=("Qx", "Qy"), coords=coords)
    return xr.Dataset(out, attrs={"format": "arina", "master": Path(acq.master).name})


__all__ = ["is_arina", "read_arina", "read_arina_masks", "ArinaBlockLoader"]
