"""The headers of Quantum Detectors Merlin ``.mib`` files: each frame's ASCII header
(comma-separated fields, NUL-padded to the size in field 2: ``MQ1``, sequence number, header
bytes, chips, columns, rows, pixel type, sensor layout, chip select, time stamp, shutter time,
counter, colour mode, gain mode, thresholds ... and, after ``MQ1A``, the extended time stamp,
the exposure and the counter depth), the acquisition's ``.hdr`` file (``key:\tvalue`` lines
between ``HDR,`` and ``End``), and the scan line length that the frames' time stamps show.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from .frames import FrameSegment
from .metadata import key_values, text_value

MAGIC = b"MQ1,"
TIMESTAMP_FRAMES = 4096  # frame headers read, at most, to find the scan's line length
RAW_DTYPES = {1: "u1", 6: "u1", 12: "u2", 24: "u4"}
FIELD_NAMES = (
    "id",
    "sequence_number",
    "header_bytes",
    "chips",
    "columns",
    "rows",
    "pixel_type",
    "sensor_layout",
    "chip_select",
    "timestamp",
    "shutter_time_s",
    "counter",
    "colour_mode",
    "gain_mode",
)
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
        out = {
            name: value.strip() if name in TEXT_FIELDS else text_value(value)
            for name, value in zip(FIELD_NAMES, f, strict=False)
        }
        out["thresholds_keV"] = [text_value(v) for v in f[14:22]]
        if "MQ1A" in f:
            tail = f[f.index("MQ1A") + 1 :]
            out["extended_timestamp"] = tail[0] if tail else None
            if len(tail) > 1:
                out["exposure_ns"] = text_value(tail[1].removesuffix("ns"))
        out["counter_depth"] = self.depth
        return out


def header_fields(raw: bytes) -> list:
    """The comma-separated fields of one frame header (up to its NUL padding)."""
    return raw.split(b"\0", 1)[0].decode("ascii", "replace").rstrip(", ").split(",")


def read_header(path) -> MibHeader:
    """Parse the first frame header of ``path``; ``ValueError`` naming the file when it is not
    a Merlin frame header or describes frames this reader cannot read."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        start = f.read(64)
        if not start.startswith(MAGIC):
            raise ValueError(
                f"{path}: not a Merlin .mib file (starts with {start[:8]!r}, not 'MQ1,')"
            )
        try:
            header_size = int(start.split(b",")[2])
        except (IndexError, ValueError):
            raise ValueError(
                f"{path}: corrupt first frame header (field 2, the header size, "
                f"reads {start[:24]!r})"
            ) from None
        if not 32 <= header_size <= 1 << 20:
            raise ValueError(f"{path}: implausible header size {header_size} bytes (field 2)")
        f.seek(0)
        fields = header_fields(f.read(header_size))
    try:
        sequence, chips, cols, rows = (int(fields[i]) for i in (1, 3, 4, 5))
        pixel, layout = fields[6].strip(), fields[7].strip().removesuffix("G")
    except (IndexError, ValueError):
        raise ValueError(f"{path}: corrupt first frame header: {fields[:9]}") from None
    depth = None
    if "MQ1A" in fields and re.fullmatch(r"\d+", fields[-1]):
        depth = int(fields[-1])
    header = MibHeader(
        path, header_size, sequence, chips, cols, rows, pixel, layout, depth, tuple(fields)
    )
    check_header(header)
    return header


def check_header(h: MibHeader):
    """``ValueError`` naming the file when ``h`` describes frames this reader cannot read."""
    if h.rows < 1 or h.cols < 1:
        raise ValueError(f"{h.path}: frame size {h.rows} x {h.cols} in the header")
    if not h.raw:
        if h.pixel not in ("U08", "U16", "U32", "U64"):
            raise ValueError(
                f"{h.path}: unknown pixel type {h.pixel!r} (field 6); expected U08, U16, U32 or R64"
            )
        return
    if h.depth not in RAW_DTYPES:
        raise ValueError(
            f"{h.path}: RAW (R64) frames with counter depth {h.depth}; the header "
            "must end with the depth 1, 6, 12 or 24"
        )
    if h.chips == 1:
        bad = h.cols % (128 if h.depth == 24 else 64)
    elif h.quad:
        bad = h.depth == 24 or h.cols % 256
    else:
        bad = True
    if bad:
        raise ValueError(
            f"{h.path}: RAW frames of {h.chips} chips in layout {h.layout!r}, "
            f"{h.rows} x {h.cols} at {h.depth} bits are not supported (single chip "
            "at 1-24 bits and 2x2 quads at 1-12 bits are); save processed frames"
        )


def read_hdr(path) -> dict:
    """The ``key: value`` pairs of a ``.hdr`` file (between ``HDR,`` and ``End``)."""
    return {
        key.rstrip().rstrip(":"): value.strip().replace("\x00", "")
        for key, value in key_values(path, "\t", "ascii")
        if not key.startswith(("HDR", "End"))
    }


def line_from_timestamps(segment: FrameSegment, header: MibHeader) -> int | None:
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
            at = segment.offset + k * segment.stride
            fields = header_fields(os.pread(fd, header.header_size, at))
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
