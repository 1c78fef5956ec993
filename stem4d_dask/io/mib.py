"""Quantum Detectors Merlin ``.mib`` files (+ the ``.hdr`` acquisition header), read lazily.

A ``.mib`` file is a sequence of frames, each an ASCII header (comma-separated fields,
NUL-padded to the size in field 2) followed by the pixels: ``rows x cols`` = fields 5 x 4,
row-major, of the type in field 6: ``U08``/``U16``/``U32`` (processed frames, big-endian) or
``R64`` (RAW: the pixels of each row packed in 64-bit words written byte-reversed; 1 bit, 6 bits
in a byte or 12 bits in two bytes per pixel; 24 bits as two 12-bit frames, high bits first). A
2x2 quad's RAW frame is 256 rows of ``[chip 4 | chip 3 | chip 2 | chip 1]``; it is assembled as
the detector's processed frames show it: chips 1 and 2 on top, chips 3 and 4 below, turned by
180 degrees. The counter depth (1, 6, 12 or 24 bits) is the header's last field.

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
from ..datacube import from_array, normalize_chunks, user_stacklevel
from ..lazy import lazy_from_loader
from .frames import FrameSegment, FrameStack, frame_count_error
from .metadata import text_value

MAGIC = b"MQ1,"
TIMESTAMP_FRAMES = 4096  # frame headers read, at most, to find the scan's line length
RAW_DTYPES = {1: "u1", 6: "u1", 12: "u2", 24: "u4"}
FIELD_NAMES = ("id", "sequence_number", "header_bytes", "chips", "columns", "rows", "pixel_type",
               "sensor_layout", "chip_select", "timestamp", "shutter_time_s", "counter",
               "colour_mode", "gain_mode")
TEXT_FIELDS = ("id", "pixel_type", "sensor_layout", "chip_select", "timestamp")


@dataclass(frozen=True)
class MibHeader:
    """The first frame header of a ``.mib`` file: what is needed to read its frames."""

    path: str
    header_size: int  # bytes, field 2
    sequence: int  # field 1, 1-based over the acquisition
    chips: int
    cols: int  # field 4 (X)
    rows: int  # field 5 (Y)
    pixel: str  # field 6: U08, U16, U32 or R64
    layout: str  # field 7, e.g. "1x1", "2x2" ("G" suffix dropped)
    depth: int | None  # counter depth (last field after MQ1A), None when absent
    fields: tuple

    @property
    def raw(self) -> bool:
        return self.pixel == "R64"

    @property
    def payload_bytes(self) -> int:
        if self.raw:
            return self.rows * self.cols * {1: 1, 6: 8, 12: 16, 24: 16}[self.depth] // 8
        return self.rows * self.cols * int(self.pixel[1:]) // 8

    @property
    def stride(self) -> int:
        return self.header_size + self.payload_bytes

    @property
    def quad(self) -> bool:
        return self.chips == 4 and self.layout == "2x2"

    @property
    def stored_dtype(self) -> np.dtype:
        """The pixels' dtype in the file (processed frames; RAW: bytes)."""
        return np.dtype("u1") if self.raw else np.dtype(f">u{int(self.pixel[1:]) // 8}")

    @property
    def dtype(self) -> np.dtype:
        """The datacube's dtype: the stored one for processed frames, native for RAW."""
        return np.dtype(RAW_DTYPES[self.depth]) if self.raw else self.stored_dtype

    @property
    def frame_shape(self) -> tuple:
        """``(Qx, Qy)`` of the frames as read (RAW quad frames assembled)."""
        if not self.raw:
            return self.rows, self.cols
        cols = self.cols // 2 if self.depth == 24 else self.cols
        return (2 * self.rows, cols // 2) if self.quad else (self.rows, cols)

    def metadata(self) -> dict:
        f = self.fields
        out = {name: value.strip() if name in TEXT_FIELDS else text_value(value)
               for name, value in zip(FIELD_NAMES, f, strict=False)}
        out["thresholds_keV"] = [text_value(v) for v in f[14:22]]
        if "MQ1A" in f:
            tail = f[f.index("MQ1A") + 1:]
            out["extended_timestamp"] = tail[0] if tail else None
            if len(tail) > 1:
                out["exposure_ns"] = text_value(tail[1].removesuffix("ns"))
        out["counter_depth"] = self.depth
        return out


def _fields(raw: bytes) -> list:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace").rstrip(", ").split(",")


def read_header(path) -> MibHeader:
    """Parse the first frame header of ``path``; ``ValueError`` naming the file when it is not
    a Merlin frame header or describes frames this reader cannot read."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        start = f.read(64)
        if not start.startswith(MAGIC):
            raise ValueError(f"{path}: not a Merlin .mib file (starts with {start[:8]!r}, not "
                             "'MQ1,')")
        try:
            header_size = int(start.split(b",")[2])
        except (IndexError, ValueError):
            raise ValueError(f"{path}: corrupt first frame header (field 2, the header size, "
                             f"reads {start[:24]!r})") from None
        if not 32 <= header_size <= 1 << 20:
            raise ValueError(f"{path}: implausible header size {header_size} bytes (field 2)")
        f.seek(0)
        fields = _fields(f.read(header_size))
    try:
        sequence, chips, cols, rows = (int(fields[i]) for i in (1, 3, 4, 5))
        pixel, layout = fields[6].strip(), fields[7].strip().removesuffix("G")
    except (IndexError, ValueError):
        raise ValueError(f"{path}: corrupt first frame header: {fields[:9]}") from None
    depth = None
    if "MQ1A" in fields and re.fullmatch(r"\d+", fields[-1]):
        depth = int(fields[-1])
    header = MibHeader(path, header_size, sequence, chips, cols, rows, pixel, layout, depth,
                       tuple(fields))
    _check_header(header)
    return header


def _check_header(h: MibHeader):
    if h.rows < 1 or h.cols < 1:
        raise ValueError(f"{h.path}: frame size {h.rows} x {h.cols} in the header")
    if not h.raw:
        if h.pixel not in ("U08", "U16", "U32", "U64"):
            raise ValueError(f"{h.path}: unknown pixel type {h.pixel!r} (field 6); expected "
                             "U08, U16, U32 or R64")
        return
    if h.depth not in RAW_DTYPES:
        raise ValueError(f"{h.path}: RAW (R64) frames with counter depth {h.depth}; the header "
                         "must end with the depth 1, 6, 12 or 24")
    if h.chips == 1:
        bad = h.cols % (128 if h.depth == 24 else 64)
    elif h.quad:
        bad = h.depth == 24 or h.cols % 256
    else:
        bad = True
    if bad:
        raise ValueError(f"{h.path}: RAW frames of {h.chips} chips in layout {h.layout!r}, "
                         f"{h.rows} x {h.cols} at {h.depth} bits are not supported (single chip "
                         "at 1-24 bits and 2x2 quads at 1-12 bits are); save processed frames")


def read_hdr(path) -> dict:
    """The ``key: value`` pairs of a ``.hdr`` file (between ``HDR,`` and ``End``)."""
    out = {}
    with open(path, encoding="ascii", errors="replace") as f:
        for line in f:
            if line.startswith("HDR") or line.startswith("End"):
                continue
            key, sep, value = line.partition("\t")
            if sep:
                out[key.rstrip().rstrip(":")] = value.strip().replace("\x00", "")
    return out


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
class MibLoader:
    """Blocks ``(nrx, nry, Qx, Qy)`` of a scan over the frame records of ``.mib`` files.

    ``stack`` holds whole records (header + pixels) as ``(1, stride)`` bytes; scan position
    ``(rx, ry)`` is record ``sync_offset + rx * Ry + ry`` (outside the files: a blank frame).
    Every record read must start with ``MQ1,`` (else ``ValueError`` naming the file and the
    scan position). Processed pixels come back as views of the mapped file in its byte order;
    RAW pixels are decoded.
    """

    stack: FrameStack
    scan_shape: tuple
    header: MibHeader
    sync_offset: int = 0

    def __call__(self, slices):
        (r0, r1, _), (c0, c1, _) = (s.indices(n) for s, n in zip(slices[:2], self.scan_shape,
                                                                 strict=True))
        ry = self.scan_shape[1]
        if c0 == 0 and c1 == ry:  # whole scan rows: one run of frames
            runs = [(r0 * ry, (r1 - r0) * ry)]
        else:
            runs = [(r * ry + c0, c1 - c0) for r in range(r0, r1)]
        frames = [self._frames(position, count) for position, count in runs]
        block = frames[0] if len(frames) == 1 else np.concatenate(frames)
        return block.reshape(r1 - r0, c1 - c0, *block.shape[1:])

    def _frames(self, position, count):
        h = self.header
        first = self.sync_offset + position
        records = self.stack.read(first, count)[:, 0]
        inside = slice(max(-first, 0), max(min(self.stack.n_frames - first, count), 0))
        bad = np.flatnonzero((records[inside, :4] != np.frombuffer(MAGIC, np.uint8)).any(1))
        if bad.size:
            k = position + inside.start + int(bad[0])
            path, index = self._where(first + inside.start + int(bad[0]))
            raise ValueError(
                f"{path}: frame {index} (scan position {divmod(k, self.scan_shape[1])}) has a "
                f"corrupt header: it starts with {bytes(records[k - position, :8])!r}, not "
                f"'MQ1,' ({bad.size} bad header(s) in this chunk); the file is damaged or its "
                "frames are not all the same size")
        pixels = records[:, h.header_size:]
        if h.raw:
            return decode_raw(pixels, h)
        return pixels.view(h.stored_dtype).reshape(count, h.rows, h.cols)

    def _where(self, frame):
        for seg in self.stack.segments:
            if frame < seg.count:
                return seg.path, frame
            frame -= seg.count
        return self.stack.segments[-1].path, frame


def decode_raw(payload, h: MibHeader) -> np.ndarray:
    """``(n, payload bytes)`` RAW (``R64``) records -> ``(n, Qx, Qy)`` native pixels."""
    n = payload.shape[0]
    if h.depth == 24:  # two 12-bit frames, the high 12 bits first
        half = payload.shape[1] // 2
        twelve = dataclasses.replace(h, cols=h.cols // 2, depth=12)
        high = decode_raw(payload[:, :half], twelve).astype(np.uint32)
        return (high << 12) | decode_raw(payload[:, half:], twelve)
    words = payload.reshape(n, h.rows, -1, 8)[..., ::-1].reshape(n, h.rows, -1)
    if h.depth == 1:
        raw = np.unpackbits(words, axis=-1, bitorder="little")
    elif h.depth == 6:
        raw = words
    else:
        raw = words.view("<u2").astype(np.uint16)
    if not h.quad:
        return raw
    rows, width = h.rows, h.cols // 4  # RAW quad rows: [chip 4 | chip 3 | chip 2 | chip 1]
    out = np.empty((n, 2 * rows, 2 * width), raw.dtype)
    out[:, :rows, :width] = raw[..., 3 * width:]
    out[:, :rows, width:] = raw[..., 2 * width:3 * width]
    out[:, rows:, :width] = raw[:, ::-1, width:2 * width][..., ::-1]  # turned by 180 degrees
    out[:, rows:, width:] = raw[:, ::-1, :width][..., ::-1]
    return out


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
            raise ValueError(f"path: no .mib file of {path} ({path.stem}.mib or "
                             f"{path.stem}<number>.mib) beside it")
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
                first.header_size, first.rows, first.cols, first.pixel, first.chips, first.depth):
            raise ValueError(f"path: {h.path} holds other frames ({h.rows} x {h.cols} "
                             f"{h.pixel}, {h.depth} bits, {h.header_size}-byte headers) than "
                             f"{first.path} ({first.rows} x {first.cols} {first.pixel}, "
                             f"{first.depth} bits, {first.header_size}-byte headers)")
        seg = FrameSegment.of_file(h.path, 0, first.stride, first.stride)
        if seg.count == 0:
            raise ValueError(f"{h.path}: holds no whole frame ({os.path.getsize(h.path)} bytes, "
                             f"a frame takes {first.stride})")
        segments.append(seg)
    for (h, seg), nxt in zip(zip(headers, segments, strict=True), headers[1:], strict=False):
        if nxt.sequence != h.sequence + seg.count:
            raise ValueError(f"path: the files do not follow each other: {h.path} holds frames "
                             f"{h.sequence}..{h.sequence + seg.count - 1} (sequence numbers) "
                             f"but the next one, {nxt.path}, starts at frame {nxt.sequence}: a "
                             "file is missing or they are not one acquisition (read one .mib "
                             "file by its own path)")
    return first, tuple(segments)


def _line_from_timestamps(segment: FrameSegment, header: MibHeader):
    """The scan's line length from the frames' time stamps (a pause ends every line: a step
    longer than the median one by a tenth or more, well above the jitter, at every multiple of
    the line length and nowhere else),
    from the first :data:`TIMESTAMP_FRAMES` headers; None when they show no such pattern."""
    count = min(segment.count, TIMESTAMP_FRAMES)
    if count < 3:
        return None
    stamps = np.empty(count, np.int64)
    with open(segment.path, "rb") as f:
        fd = f.fileno()
        for k in range(count):
            fields = _fields(os.pread(fd, header.header_size, segment.offset + k * segment.stride))
            text = fields[-3].rstrip("Z") if "MQ1A" in fields else fields[9]
            try:
                stamps[k] = np.datetime64(text, "ns").astype(np.int64)
            except ValueError:
                return None
    steps = np.diff(stamps)
    period = np.median(steps)
    if period <= 0:
        return None
    jitter = np.median(np.abs(steps - period))
    pauses = np.flatnonzero(steps > period + max(0.1 * period, 10 * jitter))
    if pauses.size == 0 or pauses[0] == 0:
        return None
    line = int(pauses[0]) + 1
    if not np.array_equal(pauses, np.arange(line - 1, steps.size, line)):
        return None
    return line


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
    line = _line_from_timestamps(segments[0], first)
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
        _check_header(first)
    stack = FrameStack(segments, (1, first.stride), "u1")
    n_frames = stack.n_frames
    name = Path(segments[0].path).name
    if sync_offset >= n_frames:
        raise ValueError(f"sync_offset {sync_offset} skips all {n_frames} frames of {name}")
    shape, source = _scan_shape(scan_shape, hdr, first, segments, n_frames - sync_offset)
    if shape is None:
        shape, source = (n_frames - sync_offset, 1), "none (a 1D stack of frames)"
        warnings.warn(f"{name}: the scan shape is unknown (no ScanX/ScanY or Frames per Trigger "
                      "in a .hdr file, no line pauses in the time stamps); reading a 1D stack "
                      f"of {shape[0]} frames as scan {shape}: pass scan_shape=(Rx, Ry)",
                      stacklevel=user_stacklevel())
    positions = shape[0] * shape[1]
    missing = sync_offset + positions - n_frames
    if missing > max(sync_offset, 0):
        hint = f" (after skipping sync_offset={sync_offset})" if sync_offset > 0 else ""
        raise ValueError(frame_count_error(segments[0].path if len(segments) == 1 else
                                           f"{name} (+ {len(segments) - 1} more files)",
                                           n_frames - max(sync_offset, 0),
                                           positions + min(sync_offset, 0), shape,
                                           hint + f"; the scan shape is from {source}"))
    if missing < 0 and source != "scan_shape":
        warnings.warn(f"{name}: holds {n_frames} frames, the scan {shape} (from {source}) "
                      f"uses {positions} from frame {sync_offset}: the last {-missing} are not "
                      "read (pass sync_offset=... if the scan started later, or scan_shape=...)",
                      stacklevel=user_stacklevel())
    out_shape = (*shape, *first.frame_shape)
    loader = MibLoader(stack, shape, dataclasses.replace(first, fields=()), sync_offset)
    norm = normalize_chunks(chunks, out_shape, first.dtype)
    data = lazy_from_loader(loader, out_shape, first.dtype, norm, f"mib-{name}")
    depth = first.depth
    value_range = None
    if depth is not None and first.dtype.kind == "u" and depth < 8 * first.dtype.itemsize:
        value_range = (0, 2**depth - 1)
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
    return from_array(data, chunks=None, value_range=value_range,
                      attrs={"format": "merlin", "metadata": metadata})
