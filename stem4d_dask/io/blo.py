"""NanoMegas ``.blo`` block files (ASTAR precession scans), read lazily.

Layout (little-endian): a 240-byte header (``IMGBLO``, magic 0x0102 = v1.2 or 0x0103 = v1.3,
``Data_offset_1`` = the virtual bright-field image, ``Data_offset_2`` = the patterns,
``DP_SZ`` = square frame size, ``NX``/``NY`` = scan size (fast, slow), ``SX``/``SY`` = scan
steps in nm, ``Beam_energy`` in V, ``SDP``, ``Camera_length``, ``Acquisition_time`` as a serial
date, centering and distortion coefficients), a text note from byte 240 up to
``Data_offset_1``, the virtual bright field (NY x NX uint8), then one record per scan position:
``AA 55`` + the u4 frame index (0-based) + DP_SZ x DP_SZ pixels, uint8, or uint16 when the
note says ``Blo Bit Depth: 16 bits``.

Mapping: ``(Rx, Ry) = (NY, NX)``; frames as stored (``Qx`` = rows, no flip); scan step SY
(``Rx``) and SX (``Ry``) converted to Angstrom; energy in eV. The detector stays in pixels:
``SDP`` is a screen scale (RosettaSciIO: ``100 / SDP`` cm per pixel), whose conversion to an
angle needs ``Camera_length`` in units no source documents; both are kept in
``attrs["metadata"]`` (pass ``q_pixel_size=``/``q_units=`` to :func:`stem4d_dask.read`).
"""

from __future__ import annotations

import datetime
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from ..checks import checked_scan_shape
from ..coords import regular_coord
from ..datacube import DIMS
from .frames import FrameSegment, FrameStack, FrameStackLoader, frame_count_error, scan_array
from .metadata import calibrated

MAGICS = {0x0102: "1.2", 0x0103: "1.3"}
HEADER = np.dtype(
    [
        ("ID", "S6"),
        ("MAGIC", "<u2"),
        ("Data_offset_1", "<u4"),
        ("Data_offset_2", "<u4"),
        ("UNKNOWN1", "<u4"),
        ("DP_SZ", "<u2"),
        ("DP_rotation", "<u2"),
        ("NX", "<u2"),
        ("NY", "<u2"),
        ("Scan_rotation", "<u2"),
        ("SX", "<f8"),
        ("SY", "<f8"),
        ("Beam_energy", "<u4"),
        ("SDP", "<u2"),
        ("Camera_length", "<u4"),
        ("Acquisition_time", "<f8"),
    ]
    + [(f"Centering_N{i}", "<f8") for i in range(8)]
    + [(f"Distortion_N{i:02d}", "<f8") for i in range(14)]
)  # 240 bytes, packed
FRAME_HEADER = 6  # AA 55 + u4 frame index
SYNC = (0xAA, 0x55)
_BIT_DEPTH = re.compile(r"blo\s+bit\s+depth\s*:\s*(\d+)\s*bits?", re.IGNORECASE)


def is_blo(path) -> bool:
    """True for a file that starts with ``IMGBLO``."""
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(6) == b"IMGBLO"


@dataclass(frozen=True)
class BloFrameLoader(FrameStackLoader):
    """A :class:`FrameStackLoader` over whole ``.blo`` records (6-byte header + pixels, as
    ``(1, stride)`` bytes): checks each record's ``AA 55`` + frame index and returns the pixels
    as a view ``(n, dp, dp)`` of ``out_dtype``."""

    def _frames(self, first, count):
        records = self.stack.read(first, count)[:, 0, :]
        head = records[:, :FRAME_HEADER]
        index = head[:, 2:].copy().view("<u4")[:, 0]
        bad = (
            (head[:, 0] != SYNC[0])
            | (head[:, 1] != SYNC[1])
            | (index != np.arange(first, first + count, dtype=np.int64))
        )
        if bad.any():
            j = int(np.argmax(bad))
            k = first - self.sync_offset + j
            rx, ry = divmod(k, self.scan_shape[1])
            path, frame = self.stack.locate(first + j)
            raise ValueError(
                f"{path}: the record of scan position ({rx}, {ry}) (frame {frame}) "
                f"starts with {bytes(head[j, :2]).hex(' ')} and frame index {int(index[j])}, "
                f"expected aa 55 and {first + j}: the file is corrupt"
            )
        dp = self.out_shape
        return records[:, FRAME_HEADER:].view(self.out_dtype).reshape(count, *dp)


def read_header(path) -> dict:
    """The header fields of a ``.blo`` file (JSON-able), its text ``Note`` and ``Note``
    lines parsed as ``key: value``, the bit depth and the acquisition time (ISO, UTC)."""
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read(HEADER.itemsize)
        if len(raw) < HEADER.itemsize or raw[:6] != b"IMGBLO":
            raise ValueError(f"path: {path} is not a NanoMegas .blo file (no IMGBLO header)")
        h = np.frombuffer(raw, dtype=HEADER)[0]
        header = {k: (h[k].decode("latin1") if k == "ID" else h[k].item()) for k in HEADER.names}
        off1 = header["Data_offset_1"]
        note = f.read(max(off1 - HEADER.itemsize, 0)) if off1 > HEADER.itemsize else b""
    if header["MAGIC"] not in MAGICS:
        raise ValueError(
            f"path: {path} has block-file magic {header['MAGIC']:#06x}; known "
            f"versions are {', '.join(f'{m:#06x}' for m in MAGICS)}"
        )
    text = note.decode("latin1").replace("\x00", "").strip()
    header["Note"] = text
    header["note_items"] = {
        k.strip(): v.strip()
        for k, _, v in (line.partition(":") for line in text.splitlines())
        if k.strip()
    }
    match = _BIT_DEPTH.search(text)
    header["bit_depth"] = int(match.group(1)) if match else 8
    if header["bit_depth"] not in (8, 16):
        raise ValueError(
            f"path: {path} says 'Blo Bit Depth: {header['bit_depth']} bits'; "
            "only 8 and 16 bits are known"
        )
    header["version"] = MAGICS[header["MAGIC"]]
    header["scan_rotation_deg"] = header["Scan_rotation"] / 100
    if header["SDP"]:
        header["screen_pixel_size_cm"] = 100 / header["SDP"]  # as RosettaSciIO reads SDP
    t = header["Acquisition_time"]
    if math.isfinite(t) and 0 < t < 2_958_466:  # serial days since 1899-12-30
        when = datetime.datetime(1899, 12, 30) + datetime.timedelta(days=t)
        header["acquisition_time_iso"] = when.isoformat(timespec="milliseconds")
    return header


def read_blo(path, *, scan_shape=None, chunks="auto"):
    """Lazy datacube ``(NY, NX, DP_SZ, DP_SZ)`` (uint8, or uint16 for 16-bit v1.3 files) from
    a NanoMegas ``.blo`` file.

    ``scan_shape``: ``(Rx, Ry)`` overriding the header's ``(NY, NX)`` (e.g. to read the whole
    rows of a truncated file). The file must hold ``Rx * Ry`` whole records, else
    ``ValueError`` with the count it holds. Each chunk checks its records' ``AA 55`` + frame
    index when read, and raises ``ValueError`` naming the file and scan position of a bad one.
    ``chunks``: as :func:`stem4d_dask.from_array`. The virtual bright field:
    :func:`read_blo_vbf`.
    """
    path = Path(path)
    header = read_header(path)
    dp = header["DP_SZ"]
    dtype = np.dtype("<u2" if header["bit_depth"] == 16 else "u1")
    stride = FRAME_HEADER + dp * dp * dtype.itemsize
    shape = (header["NY"], header["NX"]) if scan_shape is None else checked_scan_shape(scan_shape)
    if dp < 1 or min(shape) < 1:
        raise ValueError(
            f"path: {path} has an empty scan or frame: NY, NX = "
            f"{header['NY']}, {header['NX']}, DP_SZ = {dp}"
        )
    off2 = header["Data_offset_2"]
    segment = FrameSegment.of_file(path, off2, stride, stride)
    needed = shape[0] * shape[1]
    if segment.count < needed:
        hint = f" ({os.path.getsize(path)} bytes; records of {stride} B from byte {off2})"
        raise ValueError(frame_count_error(path, segment.count, needed, shape, hint))
    stack = FrameStack((segment,), (1, stride), "u1")
    loader = BloFrameLoader(stack, shape, (dp, dp), dtype.str)
    data = scan_array(loader, chunks, f"blo-{path.name}")
    cal = _calibration(header)
    return calibrated(
        data,
        r_steps=cal["step"],
        r_units=cal["units"],
        energy=cal["energy"],
        attrs={"format": "blo", "metadata": header},
    )


def read_blo_vbf(path) -> xr.DataArray:
    """The virtual bright-field image the file stores (at ``Data_offset_1``): an ``(Rx, Ry)``
    = ``(NY, NX)`` uint8 DataArray with the scan coords of :func:`read_blo` (read now: it is
    NY * NX bytes)."""
    path = Path(path)
    header = read_header(path)
    ny, nx = header["NY"], header["NX"]
    with open(path, "rb") as f:
        f.seek(header["Data_offset_1"])
        raw = f.read(ny * nx)
    if len(raw) < ny * nx:
        raise ValueError(f"path: {path} ends inside its virtual bright-field image")
    cal = _calibration(header)
    coords = {
        "Rx": regular_coord(ny, cal["step"][0], cal["units"], "Rx"),
        "Ry": regular_coord(nx, cal["step"][1], cal["units"], "Ry"),
    }
    return xr.DataArray(
        np.frombuffer(raw, dtype=np.uint8).reshape(ny, nx),
        dims=DIMS[:2],
        coords=coords,
        name="virtual_bright_field",
        attrs={"format": "blo", "units": "counts"},
    )


def _calibration(header) -> dict:
    """Scan steps ``(Rx, Ry)`` = (SY, SX) nm -> Angstrom (pixels when not positive), energy
    in eV (``Beam_energy`` is in V; a value below 1000 is taken as kV)."""
    sx, sy = header["SX"], header["SY"]
    good = all(math.isfinite(v) and v > 0 for v in (sx, sy))
    energy = header["Beam_energy"]
    if 0 < energy < 1000:
        energy = energy * 1000.0
    return {
        "step": (sy * 10.0, sx * 10.0) if good else (1.0, 1.0),
        "units": "A" if good else "pixels",
        "energy": float(energy) if energy > 0 else None,
    }
