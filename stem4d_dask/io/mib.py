"""Quantum Detectors Merlin ``.mib`` files (+ the ``.hdr`` acquisition header), read lazily.

A ``.mib`` file is a sequence of frames, each an ASCII header (comma-separated fields,
NUL-padded to the size in field 2) followed by the pixels: ``rows x cols`` = fields 5 x 4,
row-major, of the type in field 6: ``U08``/``U16``/``U32`` (processed frames, big-endian) or
``R64`` (RAW: the pixels of each row packed in 64-bit words written byte-reversed; 1 bit, 6 bits
in a byte or 12 bits in two bytes per pixel; 24 bits as two 12-bit frames, high bits first). A
2x2 quad's RAW frame is 256 rows of ``[chip 4 | chip 3 | chip 2 | chip 1]``; it is assembled as
the detector's processed frames show it: chips 1 and 2 on top, chips 3 and 4 below, turned by
180 degrees. The counter depth (1, 6, 12 or 24 bits) is the header's last field. Headers:
:mod:`stem4d_dask.io.mib_header`; RAW decoding: :mod:`stem4d_dask.io.mib_raw`.

Orientation (``docs/formats.md``): ``Qx`` = the frame's rows as stored, ``Qy`` = its columns (no
flip; RosettaSciIO flips frames up-down), so Merlin's ``hot_pixel_52x_39y`` is at ``Qx=39,
Qy=52``. Scan position ``(rx, ry)`` is frame ``sync_offset + rx * Ry + ry``.

Processed 12- and 24-bit pixels keep the file's big-endian dtype (``>u2``, ``>u4``): each chunk is
a view of the page cache (headers between frames), never copied by the reader; operations read
either byte order (:func:`stem4d_dask.kernels.native` gives a native copy where one is needed).
RAW frames are decoded into native ``uint8``/``uint16``/``uint32``, the dtypes of the processed
frames of the same depth.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checks import checked_scan_shape
from ..datacube import from_array, user_stacklevel
from .frames import FrameSegment, FrameStack, FrameStackLoader, frame_count_error, scan_array
from .metadata import depth_range
from .mib_header import MAGIC, MibHeader, check_header, line_from_timestamps, read_hdr, read_header
from .mib_raw import decode_raw


def is_mib(path) -> bool:
    """True for a ``.mib`` file starting with a Merlin frame header, or a ``.hdr`` file
    (``HDR,``) with its ``.mib`` file(s) beside it. Reads a few bytes."""
    path = Path(path)
    if not path.is_file():
        return False
    suffix = path.suffix.lower()
    if suffix not in (".mib", ".hdr"):
        return False
    with open(path, "rb") as f:
        start = f.read(4)
    if suffix == ".mib":
        return start == MAGIC
    return start == b"HDR," and bool(_set_of_hdr(path))


def _set_of_hdr(hdr: Path) -> list:
    """The ``.mib`` files of the acquisition whose header is ``hdr``: ``<stem>.mib`` or, for
    a multi-file acquisition, ``<stem><digits>.mib`` (``_`` or ``-`` allowed before them)."""
    pattern = re.compile(re.escape(hdr.stem) + r"[_-]?\d*\.mib", re.IGNORECASE)
    return sorted(p for p in hdr.parent.iterdir() if pattern.fullmatch(p.name) and p.is_file())


@dataclass(frozen=True)
class MibLoader(FrameStackLoader):
    """A :class:`~.frames.FrameStackLoader` over the frame records of ``.mib`` files.

    ``stack`` holds whole records (header + pixels) as ``(1, stride)`` bytes; scan position
    ``(rx, ry)`` is record ``sync_offset + rx * Ry + ry`` (outside the files: a blank frame).
    Every record read must start with ``MQ1,`` (else ``ValueError`` naming the file and the
    scan position). Processed pixels come back as views ``(n, rows, cols)`` of the mapped file
    in its byte order; RAW pixels are decoded (:func:`~.mib_raw.decode_raw`).
    """

    header: MibHeader | None = None

    def _frames(self, first, count):
        h = self.header
        records = self.stack.read(first, count)[:, 0]
        inside = slice(max(-first, 0), max(min(self.stack.n_frames - first, count), 0))
        bad = np.flatnonzero((records[inside, :4] != np.frombuffer(MAGIC, np.uint8)).any(1))
        if bad.size:
            j = inside.start + int(bad[0])  # the first bad record of the run
            path, index = self.stack.locate(first + j)
            position = divmod(first - self.sync_offset + j, self.scan_shape[1])
            raise ValueError(
                f"{path}: frame {index} (scan position {position}) has a corrupt header: it "
                f"starts with {bytes(records[j, :8])!r}, not 'MQ1,' ({bad.size} bad "
                "header(s) in this chunk); the file is damaged or its frames are not all the "
                "same size"
            )
        pixels = records[:, h.header_size :]
        if h.raw:
            return decode_raw(pixels, h)
        return pixels.view(h.stored_dtype).reshape(count, h.rows, h.cols)


def _files(path) -> tuple[list, Path | None]:
    """(``.mib`` paths in acquisition order is decided later, ``.hdr`` path or None)."""
    if isinstance(path, list | tuple):
        paths = [Path(p) for p in path]
        if not paths:
            raise ValueError("path: an empty list of .mib files")
        hdr = paths[0].with_suffix(".hdr")
        return paths, hdr if hdr.is_file() else None
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"path: {path} does not exist")
    if path.suffix.lower() == ".hdr":
        paths = _set_of_hdr(path)
        if not paths:
            raise ValueError(
                f"path: no .mib file of {path} ({path.stem}.mib or "
                f"{path.stem}<number>.mib) beside it"
            )
        return paths, path
    hdr = path.with_suffix(".hdr")
    return [path], hdr if hdr.is_file() else None


def _segments(paths) -> tuple[MibHeader, tuple]:
    """First header and the files as :class:`FrameSegment` s of whole records, in the order of
    their first frame's sequence number; files must hold frames of the same kind."""
    headers = [read_header(p) for p in paths]
    headers.sort(key=lambda h: h.sequence)
    first = headers[0]
    segments = []
    for h in headers:
        if (h.header_size, h.rows, h.cols, h.pixel, h.chips, h.depth) != (
            first.header_size,
            first.rows,
            first.cols,
            first.pixel,
            first.chips,
            first.depth,
        ):
            raise ValueError(
                f"path: {h.path} holds other frames ({h.rows} x {h.cols} "
                f"{h.pixel}, {h.depth} bits, {h.header_size}-byte headers) than "
                f"{first.path} ({first.rows} x {first.cols} {first.pixel}, "
                f"{first.depth} bits, {first.header_size}-byte headers)"
            )
        seg = FrameSegment.of_file(h.path, 0, first.stride, first.stride)
        if seg.count == 0:
            raise ValueError(
                f"{h.path}: holds no whole frame ({os.path.getsize(h.path)} bytes, "
                f"a frame takes {first.stride})"
            )
        segments.append(seg)
    for (h, seg), nxt in zip(zip(headers, segments, strict=True), headers[1:], strict=False):
        if nxt.sequence != h.sequence + seg.count:
            raise ValueError(
                f"path: the files do not follow each other: {h.path} holds frames "
                f"{h.sequence}..{h.sequence + seg.count - 1} (sequence numbers) "
                f"but the next one, {nxt.path}, starts at frame {nxt.sequence}: a "
                "file is missing or they are not one acquisition (read one .mib "
                "file by its own path)"
            )
    return first, tuple(segments)


def _scan_shape(scan_shape, hdr: dict, first: MibHeader, segments, n_positions):
    """``(scan shape, where it came from)``."""
    if scan_shape is not None:
        return checked_scan_shape(scan_shape), "scan_shape"
    try:
        if "ScanX" in hdr and "ScanY" in hdr and int(hdr["ScanX"]) > 0 and int(hdr["ScanY"]) > 0:
            return (int(hdr["ScanY"]), int(hdr["ScanX"])), ".hdr ScanY x ScanX"
        total = int(hdr.get("Frames in Acquisition (Number)", 0))
        line = int(hdr.get("Frames per Trigger (Number)", 0))
    except ValueError:
        total = line = 0
    if total == 1 and line == 1:
        return (1, 1), ".hdr Frames in Acquisition (1)"
    if line > 1 and total >= line and total % line == 0:
        return (total // line, line), ".hdr Frames in Acquisition / Frames per Trigger"
    line = line_from_timestamps(segments[0], first)
    if line is not None:
        return (-(-n_positions // line), line), "frame time stamps (a pause ends each line)"
    return None, None


def read_mib(path, *, scan_shape=None, sync_offset=0, chunks="auto"):
    """Lazy datacube from a Quantum Detectors Merlin ``.mib`` file (see the module docstring).

    Parameters
    ----------
    path : a ``.mib`` file; a ``.hdr`` file (its ``<stem>.mib``, or every ``<stem><n>.mib`` of a
        multi-file acquisition, ordered by the frames' sequence numbers); or a list of
        ``.mib`` files of one acquisition.
    scan_shape : ``(Rx, Ry)`` (slow, fast). Default: the ``.hdr``'s ``(ScanY, ScanX)``, else
        ``(Frames in Acquisition / Frames per Trigger, Frames per Trigger)``, else the line
        length shown by the frames' time stamps (the pause at each line's end), else a 1D stack
        ``(N, 1)`` with a warning.
    sync_offset : frames to skip at the start (> 0), or blank frames to put before the first
        one (< 0), for a scan whose trigger was off. With a positive offset the last
        ``sync_offset`` positions may lie past the end of the file: they are blank.
    chunks : ``"auto"`` (whole frames, 32-128 MiB of scan rows), ``{dim: size}`` or a tuple.

    Returns a datacube of the frames' dtype (``uint8`` for 1- and 6-bit, ``>u2`` for 12-bit
    and ``>u4`` for 24-bit processed frames, native for RAW ones) with the counter depth as its
    value range, calibrated in pixels (``.mib`` files carry no calibration), ``attrs["format"]
    = "merlin"`` and the vendor metadata in ``attrs["metadata"]``. Opening reads headers only;
    each chunk is read by its own task, which checks every frame header it reads.
    """
    if isinstance(sync_offset, bool) or not isinstance(sync_offset, int | np.integer):
        raise ValueError(f"sync_offset must be an int (frames), got {sync_offset!r}")
    sync_offset = int(sync_offset)
    paths, hdr_path = _files(path)
    first, segments = _segments(paths)
    hdr = read_hdr(hdr_path) if hdr_path is not None else {}
    if first.depth is None and hdr.get("Counter Depth (number)", "").isdigit():
        first = dataclasses.replace(first, depth=int(hdr["Counter Depth (number)"]))
        check_header(first)
    stack = FrameStack(segments, (1, first.stride), "u1")
    n_frames = stack.n_frames
    name = Path(segments[0].path).name
    if sync_offset >= n_frames:
        raise ValueError(f"sync_offset {sync_offset} skips all {n_frames} frames of {name}")
    shape, source = _scan_shape(scan_shape, hdr, first, segments, n_frames - sync_offset)
    if shape is None:
        shape, source = (n_frames - sync_offset, 1), "none (a 1D stack of frames)"
        warnings.warn(
            f"{name}: the scan shape is unknown (no ScanX/ScanY or Frames per Trigger "
            "in a .hdr file, no line pauses in the time stamps); reading a 1D stack "
            f"of {shape[0]} frames as scan {shape}: pass scan_shape=(Rx, Ry)",
            stacklevel=user_stacklevel(),
        )
    positions = shape[0] * shape[1]
    missing = sync_offset + positions - n_frames
    if missing > max(sync_offset, 0):
        hint = f" (after skipping sync_offset={sync_offset})" if sync_offset > 0 else ""
        raise ValueError(
            frame_count_error(
                segments[0].path
                if len(segments) == 1
                else f"{name} (+ {len(segments) - 1} more files)",
                n_frames - max(sync_offset, 0),
                positions + min(sync_offset, 0),
                shape,
                hint + f"; the scan shape is from {source}",
            )
        )
    if missing < 0 and source != "scan_shape":
        warnings.warn(
            f"{name}: holds {n_frames} frames, the scan {shape} (from {source}) "
            f"uses {positions} from frame {sync_offset}: the last {-missing} are not "
            "read (pass sync_offset=... if the scan started later, or scan_shape=...)",
            stacklevel=user_stacklevel(),
        )
    loader = MibLoader(
        stack,
        shape,
        first.frame_shape,
        first.dtype.str,
        sync_offset,
        header=dataclasses.replace(first, fields=()),
    )
    data = scan_array(loader, chunks, f"mib-{name}")
    value_range = depth_range(first.depth, first.dtype)
    metadata = {
        "header": first.metadata(),
        "hdr": hdr,
        "files": [Path(s.path).name for s in segments],
        "frames_in_files": n_frames,
        "scan_shape_from": source,
        "sync_offset": sync_offset,
        "raw": first.raw,
        "quad": first.quad,
    }
    return from_array(
        data, chunks=None, value_range=value_range, attrs={"format": "merlin", "metadata": metadata}
    )


__all__ = ["is_mib", "read_mib", "read_header", "read_hdr", "decode_raw", "MibLoader"]
