"""Direct Electron (DE) 4D-STEM movies: ``*_movie.mrc`` with its ``*_info.txt`` (and, for
non-raster scans, ``*_scan_coordinates.csv``), read lazily.

The MRC file is a standard 1024-byte header (``NX, NY, NZ, MODE`` at byte 0, ``NEXT`` = bytes
of extended header at byte 92, ``"MAP "`` at byte 208, byte order from the machine stamp at
212) followed at byte ``1024 + NEXT`` by ``NZ`` frames of ``NY`` rows x ``NX`` columns, C order.
A frame's rows are ``Qx``, its columns ``Qy`` (no flips). ``MODE``: 0 uint8 (DE counted
movies; MRC 2014 says int8, which DE's files are not), 1 int16, 2 float32, 6 uint16, 12
float16; complex modes are refused.

The scan comes from ``scan_shape=`` (frames in acquisition order), else from the DE info file
beside the movie: ``Scan - Size X/Y`` (or ``Scan - ROI Size X/Y`` when ``Scan - ROI Enable`` is
on), a DE ``(X, Y)`` = (fast, slow) becoming ``(Rx, Ry) = (Y, X)``; position ``(rx, ry)`` is
point ``rx * X + ry`` of the scan. ``Scan - Repeats`` scans and ``Scan - Camera Frames Per
Point`` frames per point (over ``Autosave Movie Sum Count``) are laid out one after the other;
``repeat=`` and ``point_frame=`` pick one (default the first, with a warning when there are
more). Without an info file or a scan the movie is ``NZ`` positions ``(NZ, 1)``.

Non-raster scans (``Scan - Type`` / ``Scan - ROI Type`` not ``Raster``): the coordinates CSV
gives ``x, y`` (0-based, within the scan or its ROI) for each frame in order. Each chunk of scan
positions gathers its frames from wherever they are in the file. **Positions never visited
read as zeros** (the dtype stays the detector's) and are counted by :func:`scan_visits`; a
warning says how many there are. **A position visited more than once** gives its first visit
(``repeat=0``); ``repeat=k`` reads each position's ``k + 1``-th visit (positions visited fewer
times read as zeros), as RosettaSciIO's repeat axis holds them.

Calibration from the info file: the scan step ``Specimen Pixel Size X/Y (nanometers)`` (nm, when
positive; an ROI's coords start at its offset in the full scan) and the beam energy
``Instrument Accelerating Voltage (V)``. ``Diffraction Pixel Size X/Y`` carries no units in the
file (DE's own client labels it mrad, RosettaSciIO nm^-1), so the detector stays in pixels
unless ``diffraction_units=`` (``"mrad"``, ``"1/nm"`` or ``"A^-1"``) says which it is. The whole
info file is ``attrs["metadata"]["info"]``.
"""

from __future__ import annotations

import mmap
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
from dask.base import tokenize

from ..checks import checked_scan_shape
from ..coords import regular_coord
from ..datacube import assemble, from_array, normalize_chunks, user_stacklevel
from ..lazy import lazy_from_loader
from .frames import FrameSegment, FrameStack, FrameStackLoader, frame_count_error
from .metadata import text_value

HEADER_BYTES = 1024
MODES = {0: "u1", 1: "i2", 2: "f4", 6: "u2", 12: "f2"}
COMPLEX_MODES = {3: "complex int16", 4: "complex float32"}
DIFFRACTION_UNITS = {"mrad": ("mrad", 1.0), "1/nm": ("A^-1", 0.1), "nm^-1": ("A^-1", 0.1),
                     "A^-1": ("A^-1", 1.0), "1/A": ("A^-1", 1.0)}


# --- header -------------------------------------------------------------------------------

def read_header(path) -> dict:
    """The MRC header fields of ``path`` as plain numbers: ``nx, ny, nz, mode, next`` and the
    rest, ``byteorder`` (``"<"`` or ``">"``), ``offset`` (first pixel byte) and ``dtype``."""
    with open(path, "rb") as f:
        raw = f.read(HEADER_BYTES)
    if len(raw) < HEADER_BYTES or raw[208:212] != b"MAP ":
        raise ValueError(f"path: {path} is not an MRC file (no 'MAP ' at byte 208 of a "
                         f"{HEADER_BYTES}-byte header)")
    order = ">" if raw[212] == 0x11 else "<"  # machine stamp: 0x44 0x44 (LE) or 0x11 0x11 (BE)
    i4 = np.frombuffer(raw, dtype=f"{order}i4", count=56)
    f4 = np.frombuffer(raw, dtype=f"{order}f4", count=56)
    h = {"nx": int(i4[0]), "ny": int(i4[1]), "nz": int(i4[2]), "mode": int(i4[3]),
         "start": [int(v) for v in i4[4:7]], "grid": [int(v) for v in i4[7:10]],
         "cell_A": [float(v) for v in f4[10:13]], "cell_angles": [float(v) for v in f4[13:16]],
         "axes": [int(v) for v in i4[16:19]], "amin": float(f4[19]), "amax": float(f4[20]),
         "amean": float(f4[21]), "next": int(i4[23]), "origin_A": [float(v) for v in f4[49:52]],
         "byteorder": order, "nlabels": int(i4[55])}
    labels = [raw[224 + 80 * k:304 + 80 * k].decode("latin-1").strip("\0 ")
              for k in range(min(max(h["nlabels"], 0), 10))]
    h["labels"] = [s for s in labels if s]
    if min(h["nx"], h["ny"], h["nz"]) < 1 or h["next"] < 0:
        raise ValueError(f"path: {path} has an invalid MRC header (NX={h['nx']}, NY={h['ny']}, "
                         f"NZ={h['nz']}, NEXT={h['next']})")
    if h["mode"] in COMPLEX_MODES:
        raise TypeError(f"path: {path} holds {COMPLEX_MODES[h['mode']]} pixels (MRC mode "
                        f"{h['mode']}); a datacube holds real numbers")
    if h["mode"] not in MODES:
        raise ValueError(f"path: {path} has MRC mode {h['mode']}, not one of the supported "
                         f"{sorted(MODES)} (uint8, int16, float32, uint16, float16)")
    if h["axes"] != [1, 2, 3]:
        raise ValueError(f"path: {path} stores its axes in the order MAPC/MAPR/MAPS = "
                         f"{h['axes']}; only (1, 2, 3) (columns X, rows Y, sections Z) is read")
    h["offset"] = HEADER_BYTES + h["next"]
    h["dtype"] = np.dtype(MODES[h["mode"]]).newbyteorder(order).str
    return h


def is_mrc(path) -> bool:
    """True for a ``.mrc`` file with ``'MAP '`` at byte 208."""
    path = Path(path)
    if path.suffix.lower() != ".mrc" or not path.is_file():
        return False
    with open(path, "rb") as f:
        f.seek(208)
        return f.read(4) == b"MAP "


# --- DE side files ------------------------------------------------------------------------

def read_info(path) -> dict:
    """A DE ``*_info.txt`` (``key = value`` lines) as a dict; numbers become int/float."""
    out = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            key, sep, value = line.partition("=")
            if sep:
                out[key.strip()] = text_value(value.strip())
    return out


def _prefixes(path: Path) -> list[str]:
    """Name stems the DE side files may share with movie ``path``: ``X_movie.mrc`` -> ``X``,
    and ``X`` without a trailing movie number (``20250429_06688_0_movie.mrc``)."""
    stem = re.sub(r"_movie$", "", path.stem)
    out = [stem]
    bare = re.sub(r"_\d+$", "", stem)
    if bare != stem:
        out.append(bare)
    return out


def _side_file(path: Path, given, suffix: str, parameter: str):
    if given is None:
        return None
    if given != "auto":
        given = Path(given)
        if not given.is_file():
            raise FileNotFoundError(f"{parameter}: {given} does not exist")
        return given
    for prefix in _prefixes(path):
        candidate = path.with_name(prefix + suffix)
        if candidate.is_file():
            return candidate
    return None


def _scan_type(info) -> str:
    roi = info.get("Scan - ROI Enable") == "Enable"
    kind = info.get("Scan - ROI Type") if roi else None
    return str(kind or info.get("Scan - Type", "Raster"))


@dataclass
class _Scan:
    """What the info file says about the scan."""

    shape: tuple  # (Rx, Ry)
    origin: tuple  # (Rx, Ry) pixel offset of an ROI in the full scan
    repeats: int
    per_point: int  # movie frames per scan point
    kind: str


def _info_scan(info) -> _Scan | None:
    if info.get("Scan - Enable") != "Enable":
        return None
    roi = info.get("Scan - ROI Enable") == "Enable"
    key = "Scan - ROI Size" if roi else "Scan - Size"
    try:
        x, y = int(info[f"{key} X"]), int(info[f"{key} Y"])
    except (KeyError, ValueError, TypeError):
        return None
    if x < 1 or y < 1:
        return None
    origin = (int(info.get("Scan - ROI Offset Y", 0)), int(info.get("Scan - ROI Offset X", 0))) \
        if roi else (0, 0)
    per_point = max(int(info.get("Scan - Camera Frames Per Point", 1) or 1), 1)
    summed = max(int(info.get("Autosave Movie Sum Count", 1) or 1), 1)
    if per_point % summed == 0:  # the movie sums `summed` camera frames into one
        per_point //= summed
    return _Scan((y, x), origin, max(int(info.get("Scan - Repeats", 1) or 1), 1), per_point,
                 _scan_type(info))


def read_scan_coordinates(path, scan_shape) -> np.ndarray:
    """The ``x, y`` rows of a DE scan-coordinates CSV as flat positions ``y * X + x`` (one per
    frame, in acquisition order); ``ValueError`` for a position outside ``scan_shape``."""
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            parts = line.replace(";", ",").split(",")
            try:
                rows.append((int(parts[0]), int(parts[1])))
            except (ValueError, IndexError):
                if line.strip() and rows:
                    raise ValueError(f"scan_file: {path} line {number} is not 'x, y': "
                                     f"{line.strip()!r}") from None
    xy = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
    ny, nx = scan_shape
    bad = np.flatnonzero((xy[:, 0] < 0) | (xy[:, 0] >= nx) | (xy[:, 1] < 0) | (xy[:, 1] >= ny))
    if bad.size:
        x, y = xy[bad[0]]
        raise ValueError(f"scan_file: {path} frame {bad[0]} is at x={x}, y={y}, outside the "
                         f"{nx} x {ny} (X x Y) scan of the info file")
    return xy[:, 1] * nx + xy[:, 0]


def visit_frames(positions: np.ndarray, n_positions: int, repeat: int) -> np.ndarray:
    """Frame index of each scan position's ``repeat``-th visit (0-based), -1 where none."""
    order = np.argsort(positions, kind="stable")
    ranked = positions[order]
    first = np.searchsorted(ranked, ranked, side="left")
    visit = np.arange(ranked.size) - first
    out = np.full(n_positions, -1, dtype=np.int64)
    pick = visit == repeat
    out[ranked[pick]] = order[pick]
    return out


# --- loaders ------------------------------------------------------------------------------

@dataclass(frozen=True)
class PositionsLoader:
    """One chunk of a scan whose positions map to arbitrary frames: ``frames`` (int64 bytes,
    one per position of the chunk in C order, -1 = never visited) of ``stack``.

    The frames of a chunk are scattered over the file, so instead of one populated mapping
    per frame (:meth:`FrameStack.read`, fine for runs), each segment's span of wanted frames
    is mapped once, lazily, and the frames are gathered from it in file order."""

    stack: FrameStack
    frames: bytes
    shape: tuple  # (nrx, nry, Qx, Qy)
    dtype: str
    decode: object = None

    def __call__(self):
        frames = np.frombuffer(self.frames, dtype=np.int64)
        out = np.zeros((frames.size, *self.shape[2:]), dtype=self.dtype)
        start = 0
        for seg in self.stack.segments:
            where = np.flatnonzero((frames >= start) & (frames < start + seg.count))
            if where.size:
                where = where[np.argsort(frames[where])]
                local = frames[where] - start
                first = int(local[0])
                view = _span(seg, first, int(local[-1]) - first + 1, self.stack)
                got = view[local - first]
                out[where] = got if self.decode is None else self.decode(got)
                del view
            start += seg.count
        return out.reshape(self.shape)


def _span(seg: FrameSegment, first: int, count: int, stack: FrameStack) -> np.ndarray:
    """Frames ``first .. first + count - 1`` of ``seg`` as a strided view of one mapping that
    is not populated up front (only the gathered frames' pages are read)."""
    dtype = np.dtype(stack.dtype)
    rows, cols = stack.frame_shape
    begin = seg.offset + first * seg.stride
    aligned = begin - begin % mmap.ALLOCATIONGRANULARITY
    length = begin - aligned + (count - 1) * seg.stride + stack.frame_bytes
    with open(seg.path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), length, prot=mmap.PROT_READ, offset=aligned)
    return np.ndarray((count, rows, cols), dtype=dtype, buffer=mapped, offset=begin - aligned,
                      strides=(seg.stride, cols * dtype.itemsize, dtype.itemsize))


def positions_array(stack, frame_map: np.ndarray, chunks, dtype, decode, name: str):
    """Dask array ``frame_map.shape + frame shape`` whose every chunk gathers its own frames
    (each task holds only its chunk's frame indices)."""
    token = tokenize(stack, frame_map.tobytes(), chunks, decode)
    out = f"{name}-{token}"
    graph = {}
    frame = tuple(stack.frame_shape)
    whole = (*chunks[:2], (frame[0],), (frame[1],))
    bounds = [np.cumsum((0, *c)) for c in chunks[:2]]
    for i in range(len(chunks[0])):
        for j in range(len(chunks[1])):
            (r0, r1), (c0, c1) = bounds[0][i:i + 2], bounds[1][j:j + 2]
            part = np.ascontiguousarray(frame_map[r0:r1, c0:c1], dtype=np.int64)
            graph[(out, i, j, 0, 0)] = (PositionsLoader(
                stack, part.tobytes(), (int(r1 - r0), int(c1 - c0), *frame),
                np.dtype(dtype).str, decode),)
    arr = da.Array(graph, out, whole, dtype=dtype, meta=np.empty((0,) * 4, dtype=dtype))
    return arr if tuple(chunks) == whole else arr.rechunk(chunks)


# --- calibration --------------------------------------------------------------------------

def calibrated(data, *, r_steps=(1.0, 1.0), r_units="pixels", r_origin=(0.0, 0.0),
               q_steps=(1.0, 1.0), q_units="pixels", q_origin=(0.0, 0.0), energy=None,
               attrs=None):
    """:func:`stem4d_dask.from_array` with a step per axis (``(x, y)`` pairs over ``Rx, Ry``
    and ``Qx, Qy``): a non-square grid gets its own coords on each axis."""
    dc = from_array(data, chunks=None, r_pixel_size=r_steps[0], r_units=r_units,
                    q_pixel_size=q_steps[0], q_units=q_units, r_origin=r_origin,
                    q_origin=q_origin, energy=energy, attrs=attrs)
    if r_steps[0] == r_steps[1] and q_steps[0] == q_steps[1]:
        return dc
    coords = {d: dc.coords[d] for d in dc.dims}
    for dim, step, origin in (("Ry", r_steps[1], r_origin[1]), ("Qy", q_steps[1], q_origin[1])):
        coords[dim] = regular_coord(dc.sizes[dim], float(step), dc.coords[dim].attrs["units"],
                                    dim, float(origin))
    return assemble(dc.data, coords, dc.attrs)


def _positive(info, key):
    try:
        value = float(info.get(key, -1))
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


# --- the reader ---------------------------------------------------------------------------

def read_mrc(path, *, scan_shape=None, chunks="auto", repeat=None, point_frame=None,
             info_file="auto", scan_file="auto", diffraction_units=None):
    """Open a Direct Electron 4D-STEM MRC movie lazily as a datacube ``(Rx, Ry, Qx, Qy)``.

    Parameters
    ----------
    path : the ``.mrc`` movie.
    scan_shape : ``(Rx, Ry)``: read the frames in acquisition order as this scan (the info
        file then gives calibration and metadata only). Default: the info file's scan.
    chunks : ``"auto"`` (whole frames, 32-128 MiB of scan positions), a dict or tuple.
    repeat : which repeat of a ``Scan - Repeats`` scan, or which visit of a position a
        non-raster scan visits several times (0-based; default 0, with a warning when there
        are more).
    point_frame : which of several movie frames per scan point (0-based; default 0, warned).
    info_file : ``"auto"`` (``<name>_info.txt`` beside the movie, also without a trailing
        ``_<n>`` movie number), a path, or None to ignore it.
    scan_file : ``"auto"`` (``<name>_scan_coordinates.csv``), a path or None.
    diffraction_units : the units of the info file's ``Diffraction Pixel Size``: ``"mrad"``,
        ``"1/nm"`` or ``"A^-1"``; None (default) leaves the detector in pixels.

    Reads headers, the info file and the coordinates CSV only; ``ValueError`` when the file
    holds fewer frames than the scan needs (with the ``scan_shape`` that reads them).
    """
    path = Path(path)
    h = read_header(path)
    frame_bytes = h["nx"] * h["ny"] * np.dtype(h["dtype"]).itemsize
    size = os.path.getsize(path)
    n_frames = min(h["nz"], max(size - h["offset"], 0) // frame_bytes)
    info_path = _side_file(path, info_file, "_info.txt", "info_file")
    info = read_info(info_path) if info_path is not None else {}
    scan = _info_scan(info) if scan_shape is None else None
    meta = {"header": {k: v for k, v in h.items() if k not in ("offset", "dtype")}}
    if info_path is not None:
        meta["info_file"] = info_path.name
        meta["info"] = info
    # the file's byte order is kept (frames are read in place; every operation takes it)
    out_dtype, decode = np.dtype(h["dtype"]), None
    frame_shape = (h["ny"], h["nx"])

    if scan is not None and scan.kind.lower() != "raster":
        if point_frame not in (None, 0):
            raise ValueError(f"point_frame: {path} is a {scan.kind!r} scan, whose coordinates "
                             "file maps every frame; pick a position's visit with repeat=")
        data, scan_meta = _arbitrary(path, h, n_frames, frame_bytes, scan, info, scan_file,
                                     repeat, chunks, out_dtype, decode)
        meta["scan_coordinates"] = scan_meta
    else:
        shape, repeats, per_point = _raster_shape(scan, scan_shape, n_frames)
        repeat = _pick(repeat, repeats, "repeat", "repeats of the scan", path)
        point_frame = _pick(point_frame, per_point, "point_frame", "movie frames per scan "
                            "point", path)
        points = shape[0] * shape[1]
        first = (repeat * points * per_point) + point_frame
        count = max((n_frames - first + per_point - 1) // per_point, 0)
        if count < points:
            hint = "" if repeats == 1 and per_point == 1 else (
                f" (this is repeat {repeat} of {repeats}, frame {point_frame} of {per_point} "
                "per point)")
            raise ValueError(frame_count_error(path, count, points, shape, hint=hint))
        if scan_shape is None and scan is None and n_frames < h["nz"]:
            warnings.warn(f"{path}: holds {n_frames} whole frames but its header says NZ="
                          f"{h['nz']}; the file is truncated, reading the {n_frames} it has",
                          stacklevel=user_stacklevel())
        seg = FrameSegment(str(path.resolve()), h["offset"] + first * frame_bytes,
                           per_point * frame_bytes, points, os.stat(path).st_mtime_ns)
        stack = FrameStack((seg,), frame_shape, h["dtype"])
        full = (*shape, *frame_shape)
        norm = normalize_chunks(chunks, full, out_dtype)
        loader = FrameStackLoader(stack, scan_shape=shape, out_shape=frame_shape,
                                  out_dtype=out_dtype.str, decode=decode)
        data = lazy_from_loader(loader, full, out_dtype, norm, f"mrc-{path.name}")
        if scan is not None:
            meta["scan"] = {"repeat": repeat, "repeats": repeats, "point_frame": point_frame,
                            "frames_per_point": per_point}
            unused = n_frames - repeats * points * per_point
            if unused > 0:
                warnings.warn(f"{path}: holds {n_frames} frames, {unused} more than the "
                              f"{repeats} x {points} x {per_point} (repeats x points x frames "
                              "per point) of its info file; they are not read",
                              stacklevel=user_stacklevel())
    return _calibrate(data, info, scan if scan_shape is None else None, diffraction_units,
                      meta)


def _pick(value, available: int, parameter: str, what: str, path) -> int:
    if value is None:
        if available > 1:
            warnings.warn(f"{path}: holds {available} {what}; reading the first (pass "
                          f"{parameter}=k for another)", stacklevel=user_stacklevel())
        return 0
    if not isinstance(value, int | np.integer) or not 0 <= value < available:
        raise ValueError(f"{parameter} must be an integer in [0, {available}) for {path} "
                         f"({available} {what}), got {value!r}")
    return int(value)


def _raster_shape(scan, scan_shape, n_frames):
    if scan_shape is not None:
        return checked_scan_shape(scan_shape), 1, 1
    if scan is None:
        return (n_frames, 1), 1, 1
    return scan.shape, scan.repeats, scan.per_point


def _arbitrary(path, h, n_frames, frame_bytes, scan, info, scan_file, repeat, chunks,
               out_dtype, decode):
    csv = _side_file(path, scan_file, "_scan_coordinates.csv", "scan_file")
    if csv is None:
        raise ValueError(f"{path}: a {scan.kind!r} scan needs its scan coordinates file "
                         f"(<name>_scan_coordinates.csv, not found beside it; pass "
                         "scan_file=...), or pass scan_shape=(Rx, Ry) to read the frames in "
                         "acquisition order")
    positions = read_scan_coordinates(csv, scan.shape)
    if n_frames < positions.size:
        raise ValueError(f"{path}: holds {n_frames} whole frames but {csv.name} lists "
                         f"{positions.size}; the file is truncated. Read the frames it has in "
                         f"acquisition order with scan_shape=({n_frames}, 1)")
    if n_frames > positions.size:
        warnings.warn(f"{path}: holds {n_frames} frames but {csv.name} lists "
                      f"{positions.size}; the last {n_frames - positions.size} are not read",
                      stacklevel=user_stacklevel())
    points = scan.shape[0] * scan.shape[1]
    visits = np.bincount(positions, minlength=points)
    most = int(visits.max(initial=0))
    repeat = _pick(repeat, most, "repeat", "visits of some scan positions", path)
    frame_map = visit_frames(positions, points, repeat).reshape(scan.shape)
    missing = int((frame_map < 0).sum())
    if missing:
        warnings.warn(f"{path}: {missing} of the {points} scan positions have no frame "
                      f"(visit {repeat}); they read as zeros. "
                      "stem4d_dask.io.mrc.scan_visits(path) counts the visits per position",
                      stacklevel=user_stacklevel())
    seg = FrameSegment(str(path.resolve()), h["offset"], frame_bytes, n_frames,
                       os.stat(path).st_mtime_ns)
    stack = FrameStack((seg,), (h["ny"], h["nx"]), h["dtype"])
    full = (*scan.shape, h["ny"], h["nx"])
    norm = normalize_chunks(chunks, full, out_dtype)
    data = positions_array(stack, frame_map, norm, out_dtype, decode, f"mrc-{path.name}")
    meta = {"file": csv.name, "type": scan.kind, "frames": int(positions.size),
            "positions": points, "visited": int((visits > 0).sum()), "most_visits": most,
            "repeat": repeat, "unvisited_read_as": 0}
    return data, meta


def _calibrate(data, info, scan, diffraction_units, meta):
    r_steps, r_units, r_origin = (1.0, 1.0), "pixels", (0.0, 0.0)
    q_steps, q_units = (1.0, 1.0), "pixels"
    if scan is not None:
        sx = _positive(info, "Specimen Pixel Size X (nanometers)")
        sy = _positive(info, "Specimen Pixel Size Y (nanometers)")
        if sx is not None and sy is not None:
            r_steps, r_units = (sy, sx), "nm"
        r_origin = (scan.origin[0] * r_steps[0], scan.origin[1] * r_steps[1])
    if diffraction_units is not None:
        if diffraction_units not in DIFFRACTION_UNITS:
            raise ValueError(f"diffraction_units must be one of {sorted(DIFFRACTION_UNITS)}, "
                             f"got {diffraction_units!r}")
        qx = _positive(info, "Diffraction Pixel Size X")
        qy = _positive(info, "Diffraction Pixel Size Y")
        if qx is None or qy is None:
            raise ValueError("diffraction_units: the info file has no positive Diffraction "
                             f"Pixel Size X/Y (got {info.get('Diffraction Pixel Size X')!r}, "
                             f"{info.get('Diffraction Pixel Size Y')!r})")
        q_units, factor = DIFFRACTION_UNITS[diffraction_units]
        q_steps = (qy * factor, qx * factor)
    energy = _positive(info, "Instrument Accelerating Voltage (V)")
    return calibrated(data, r_steps=r_steps, r_units=r_units, r_origin=r_origin,
                      q_steps=q_steps, q_units=q_units, energy=energy,
                      attrs={"format": "mrc", "metadata": meta})


def scan_visits(path, *, info_file="auto", scan_file="auto"):
    """How many frames a DE movie holds for each scan position, as an ``(Rx, Ry)`` int
    DataArray (0 = never visited: the datacube reads zeros there). A raster scan gives its
    repeats everywhere."""
    import xarray as xr

    path = Path(path)
    info_path = _side_file(path, info_file, "_info.txt", "info_file")
    scan = _info_scan(read_info(info_path)) if info_path is not None else None
    if scan is None:
        raise ValueError(f"path: {path} has no DE info file describing a scan")
    if scan.kind.lower() == "raster":
        counts = np.full(scan.shape, scan.repeats, dtype=np.int64)
    else:
        csv = _side_file(path, scan_file, "_scan_coordinates.csv", "scan_file")
        if csv is None:
            raise ValueError(f"{path}: no scan coordinates file for its {scan.kind!r} scan")
        positions = read_scan_coordinates(csv, scan.shape)
        counts = np.bincount(positions, minlength=scan.shape[0] * scan.shape[1])
        counts = counts.reshape(scan.shape)
    return xr.DataArray(counts, dims=("Rx", "Ry"), name="visits")
