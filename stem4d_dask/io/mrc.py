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

The side files are read by :mod:`stem4d_dask.io.de_info`; a non-raster scan's chunks by
:func:`stem4d_dask.io.frames.positions_array`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ..checks import checked_scan_shape
from ..chunks import normalize_chunks
from ..datacube import user_stacklevel
from .de_info import (
    INFO_SUFFIX,
    SCAN_SUFFIX,
    info_calibration,
    info_scan,
    read_info,
    read_scan_coordinates,
    scan_visits,
    side_file,
    visit_frames,
)
from .frames import (
    FrameSegment,
    FrameStack,
    FrameStackLoader,
    frame_count_error,
    positions_array,
    scan_array,
)
from .metadata import calibrated

HEADER_BYTES = 1024
MODES = {0: "u1", 1: "i2", 2: "f4", 6: "u2", 12: "f2"}
COMPLEX_MODES = {3: "complex int16", 4: "complex float32"}


# --- header -------------------------------------------------------------------------------


def read_header(path) -> dict:
    """The MRC header fields of ``path`` as plain numbers: ``nx, ny, nz, mode, next`` and the
    rest, ``byteorder`` (``"<"`` or ``">"``), ``offset`` (first pixel byte) and ``dtype``."""
    with open(path, "rb") as f:
        raw = f.read(HEADER_BYTES)
    if len(raw) < HEADER_BYTES or raw[208:212] != b"MAP ":
        raise ValueError(
            f"path: {path} is not an MRC file (no 'MAP ' at byte 208 of a "
            f"{HEADER_BYTES}-byte header)"
        )
    order = ">" if raw[212] == 0x11 else "<"  # machine stamp: 0x44 0x44 (LE) or 0x11 0x11 (BE)
    i4 = np.frombuffer(raw, dtype=f"{order}i4", count=56)
    f4 = np.frombuffer(raw, dtype=f"{order}f4", count=56)
    h = {
        "nx": int(i4[0]),
        "ny": int(i4[1]),
        "nz": int(i4[2]),
        "mode": int(i4[3]),
        "start": [int(v) for v in i4[4:7]],
        "grid": [int(v) for v in i4[7:10]],
        "cell_A": [float(v) for v in f4[10:13]],
        "cell_angles": [float(v) for v in f4[13:16]],
        "axes": [int(v) for v in i4[16:19]],
        "amin": float(f4[19]),
        "amax": float(f4[20]),
        "amean": float(f4[21]),
        "next": int(i4[23]),
        "origin_A": [float(v) for v in f4[49:52]],
        "byteorder": order,
        "nlabels": int(i4[55]),
    }
    labels = [
        raw[224 + 80 * k : 304 + 80 * k].decode("latin-1").strip("\0 ")
        for k in range(min(max(h["nlabels"], 0), 10))
    ]
    h["labels"] = [s for s in labels if s]
    if min(h["nx"], h["ny"], h["nz"]) < 1 or h["next"] < 0:
        raise ValueError(
            f"path: {path} has an invalid MRC header (NX={h['nx']}, NY={h['ny']}, "
            f"NZ={h['nz']}, NEXT={h['next']})"
        )
    if h["mode"] in COMPLEX_MODES:
        raise TypeError(
            f"path: {path} holds {COMPLEX_MODES[h['mode']]} pixels (MRC mode "
            f"{h['mode']}); a datacube holds real numbers"
        )
    if h["mode"] not in MODES:
        raise ValueError(
            f"path: {path} has MRC mode {h['mode']}, not one of the supported "
            f"{sorted(MODES)} (uint8, int16, float32, uint16, float16)"
        )
    if h["axes"] != [1, 2, 3]:
        raise ValueError(
            f"path: {path} stores its axes in the order MAPC/MAPR/MAPS = "
            f"{h['axes']}; only (1, 2, 3) (columns X, rows Y, sections Z) is read"
        )
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


# --- the reader ---------------------------------------------------------------------------


def read_mrc(
    path,
    *,
    scan_shape=None,
    chunks="auto",
    repeat=None,
    point_frame=None,
    info_file="auto",
    scan_file="auto",
    diffraction_units=None,
):
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
    info_path = side_file(path, info_file, INFO_SUFFIX, "info_file")
    info = read_info(info_path) if info_path is not None else {}
    scan = info_scan(info) if scan_shape is None else None
    meta = {"header": {k: v for k, v in h.items() if k not in ("offset", "dtype")}}
    if info_path is not None:
        meta["info_file"] = info_path.name
        meta["info"] = info
    # the file's byte order is kept (frames are read in place; every operation takes it)
    out_dtype = np.dtype(h["dtype"])
    frame_shape = (h["ny"], h["nx"])

    if scan is not None and not scan.raster:
        if point_frame not in (None, 0):
            raise ValueError(
                f"point_frame: {path} is a {scan.kind!r} scan, whose coordinates "
                "file maps every frame; pick a position's visit with repeat="
            )
        data, scan_meta = _arbitrary(
            path, h, n_frames, frame_bytes, scan, scan_file, repeat, chunks, out_dtype
        )
        meta["scan_coordinates"] = scan_meta
    else:
        shape, repeats, per_point = _raster_shape(scan, scan_shape, n_frames)
        repeat = _pick(repeat, repeats, "repeat", "repeats of the scan", path)
        point_frame = _pick(
            point_frame, per_point, "point_frame", "movie frames per scan point", path
        )
        points = shape[0] * shape[1]
        first = (repeat * points * per_point) + point_frame
        count = max((n_frames - first + per_point - 1) // per_point, 0)
        if count < points:
            hint = (
                ""
                if repeats == 1 and per_point == 1
                else (
                    f" (this is repeat {repeat} of {repeats}, frame {point_frame} of {per_point} "
                    "per point)"
                )
            )
            raise ValueError(frame_count_error(path, count, points, shape, hint=hint))
        if scan_shape is None and scan is None and n_frames < h["nz"]:
            warnings.warn(
                f"{path}: holds {n_frames} whole frames but its header says NZ="
                f"{h['nz']}; the file is truncated, reading the {n_frames} it has",
                stacklevel=user_stacklevel(),
            )
        seg = FrameSegment.in_file(
            path, h["offset"] + first * frame_bytes, per_point * frame_bytes, points
        )
        stack = FrameStack((seg,), frame_shape, h["dtype"])
        loader = FrameStackLoader(
            stack, scan_shape=shape, out_shape=frame_shape, out_dtype=out_dtype.str
        )
        data = scan_array(loader, chunks, f"mrc-{path.name}")
        if scan is not None:
            meta["scan"] = {
                "repeat": repeat,
                "repeats": repeats,
                "point_frame": point_frame,
                "frames_per_point": per_point,
            }
            unused = n_frames - repeats * points * per_point
            if unused > 0:
                warnings.warn(
                    f"{path}: holds {n_frames} frames, {unused} more than the "
                    f"{repeats} x {points} x {per_point} (repeats x points x frames "
                    "per point) of its info file; they are not read",
                    stacklevel=user_stacklevel(),
                )
    cal = info_calibration(info, scan if scan_shape is None else None, diffraction_units)
    return calibrated(data, **cal, attrs={"format": "mrc", "metadata": meta})


def _pick(value, available: int, parameter: str, what: str, path) -> int:
    """Which of ``available`` (repeats, frames per point, visits) ``parameter`` reads:
    ``value`` checked, or 0 (with a warning when there are more)."""
    if value is None:
        if available > 1:
            warnings.warn(
                f"{path}: holds {available} {what}; reading the first (pass "
                f"{parameter}=k for another)",
                stacklevel=user_stacklevel(),
            )
        return 0
    if not isinstance(value, int | np.integer) or not 0 <= value < available:
        raise ValueError(
            f"{parameter} must be an integer in [0, {available}) for {path} "
            f"({available} {what}), got {value!r}"
        )
    return int(value)


def _raster_shape(scan, scan_shape, n_frames):
    """``(scan shape, repeats, frames per point)``: ``scan_shape=``, else the info file's, else
    the movie's frames as ``(frames, 1)``."""
    if scan_shape is not None:
        return checked_scan_shape(scan_shape), 1, 1
    if scan is None:
        return (n_frames, 1), 1, 1
    return scan.shape, scan.repeats, scan.per_point


def _arbitrary(path, h, n_frames, frame_bytes, scan, scan_file, repeat, chunks, out_dtype):
    """``(data, metadata)`` of a non-raster scan: each position reads its ``repeat``-th
    visit's frame, as the coordinates file lists them (zeros where there is none)."""
    csv = side_file(path, scan_file, SCAN_SUFFIX, "scan_file")
    if csv is None:
        raise ValueError(
            f"{path}: a {scan.kind!r} scan needs its scan coordinates file "
            f"(<name>_scan_coordinates.csv, not found beside it; pass "
            "scan_file=...), or pass scan_shape=(Rx, Ry) to read the frames in "
            "acquisition order"
        )
    positions = read_scan_coordinates(csv, scan.shape)
    if n_frames < positions.size:
        raise ValueError(
            f"{path}: holds {n_frames} whole frames but {csv.name} lists "
            f"{positions.size}; the file is truncated. Read the frames it has in "
            f"acquisition order with scan_shape=({n_frames}, 1)"
        )
    if n_frames > positions.size:
        warnings.warn(
            f"{path}: holds {n_frames} frames but {csv.name} lists "
            f"{positions.size}; the last {n_frames - positions.size} are not read",
            stacklevel=user_stacklevel(),
        )
    points = scan.shape[0] * scan.shape[1]
    visits = np.bincount(positions, minlength=points)
    most = int(visits.max(initial=0))
    repeat = _pick(repeat, most, "repeat", "visits of some scan positions", path)
    frame_map = visit_frames(positions, points, repeat).reshape(scan.shape)
    missing = int((frame_map < 0).sum())
    if missing:
        warnings.warn(
            f"{path}: {missing} of the {points} scan positions have no frame "
            f"(visit {repeat}); they read as zeros. "
            "stem4d_dask.io.mrc.scan_visits(path) counts the visits per position",
            stacklevel=user_stacklevel(),
        )
    seg = FrameSegment.in_file(path, h["offset"], frame_bytes, n_frames)
    stack = FrameStack((seg,), (h["ny"], h["nx"]), h["dtype"])
    full = (*scan.shape, h["ny"], h["nx"])
    norm = normalize_chunks(chunks, full, out_dtype)
    data = positions_array(stack, frame_map, norm, out_dtype, f"mrc-{path.name}")
    meta = {
        "file": csv.name,
        "type": scan.kind,
        "frames": int(positions.size),
        "positions": points,
        "visited": int((visits > 0).sum()),
        "most_visits": most,
        "repeat": repeat,
        "unvisited_read_as": 0,
    }
    return data, meta


__all__ = ["is_mrc", "read_mrc", "read_header", "read_info", "scan_visits"]
