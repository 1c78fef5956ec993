"""Write Quantum Detectors Merlin ``.mib`` (+ ``.hdr``) files, as the Merlin software writes
them: the demo's detector file, and the files the tests and benchmarks read back.

Frames are written as the Merlin software writes them: an ASCII header of ``header_size`` bytes
(comma-separated fields, NUL-padded; the counter depth last) before each frame's pixels.
Processed frames (``U08``/``U16``/``U32``) are big-endian, row-major, rows x cols = header
fields 5 x 4. RAW frames (``R64``) hold the pixels of each row packed (1 bit, 6 bits in a byte,
12 bits in two bytes) in 64-bit words written byte-reversed; a quad's RAW frame is 256 rows of
``[chip 4 | chip 3 | chip 2 | chip 1]`` with chips 3 and 4 (the bottom half of the assembled
frame) turned by 180 degrees; a 24-bit RAW frame is two 12-bit RAW frames, the high 12 bits
first, with the header's column count doubled. The reader is :mod:`stem4d_dask.io.mib`.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

PROCESSED = {1: "U08", 6: "U08", 12: "U16", 24: "U32"}
T0 = datetime.datetime(2024, 7, 2, 11, 46, 44, 35393)
DACS = (
    "023,511,000,000,000,000,000,000,100,255,100,125,100,100,080,100,090,030,128,004,255,"
    "126,128,174,172,511,511"
)


def _stamp(ns: int) -> tuple[str, str]:
    """Field 9 (microseconds, local) and the MQ1A field (nanoseconds, UTC) of a frame."""
    t = T0 + datetime.timedelta(microseconds=ns // 1000)
    return (
        t.strftime("%Y-%m-%d %H:%M:%S.%f"),
        t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{(t.microsecond * 1000 + ns % 1000):09d}Z",
    )


def mib_header(
    sequence: int,
    *,
    rows: int,
    cols: int,
    pixel: str,
    depth: int,
    quad: bool,
    header_size: int,
    time_ns: int = 0,
    exposure_ns: int = 1_000_000,
) -> bytes:
    """One frame header: ``cols`` = field 4 (X), ``rows`` = field 5 (Y), ``pixel`` = field 6."""
    chips = 4 if quad else 1
    stamp, iso = _stamp(time_ns)
    fields = [
        "MQ1",
        f"{sequence:06d}",
        f"{header_size:05d}",
        f"{chips:02d}",
        f"{cols:04d}",
        f"{rows:04d}",
        pixel,
        "   2x2" if quad else "   1x1",
        "0F" if quad else "01",
        stamp,
        f"{exposure_ns / 1e9:.6f}",
        "0",
        "0",
        "0",
        "1.200000E+1",
        "5.110000E+2",
        *["0.000000E+0"] * 6,
    ]
    fields += ["3RX", DACS] * chips
    fields += ["MQ1A", iso, f"{exposure_ns}ns", str(depth)]
    text = (",".join(fields) + ",").encode("ascii")
    if len(text) > header_size:
        raise ValueError(f"header_size {header_size} < the {len(text)} header bytes")
    return text.ljust(header_size, b"\0")


def _words(row_bytes: np.ndarray) -> np.ndarray:
    """Reverse the bytes of every 64-bit word along the last axis."""
    shape = row_bytes.shape
    return row_bytes.reshape(*shape[:-1], shape[-1] // 8, 8)[..., ::-1].reshape(shape)


def encode_raw(frames: np.ndarray, depth: int, quad: bool) -> np.ndarray:
    """``(n, rows, cols)`` pixels -> ``(n, payload bytes)`` R64 payloads."""
    frames = np.asarray(frames)
    n, rows, cols = frames.shape
    if quad:  # assembled (2h, 2w) -> RAW rows [chip4 | chip3 | chip2 | chip1], h rows
        h, w = rows // 2, cols // 2
        top, bottom = frames[:, :h], frames[:, h:, ::-1][:, ::-1]
        frames = np.concatenate(
            [bottom[..., :w], bottom[..., w:], top[..., w:], top[..., :w]], axis=-1
        )
        n, rows, cols = frames.shape
    if depth == 24:
        high = encode_raw(frames >> 12, 12, False)
        low = encode_raw(frames & 0xFFF, 12, False)
        return np.concatenate([high, low], axis=1)
    if depth == 1:
        packed = np.packbits(frames.astype(np.uint8) & 1, axis=-1, bitorder="little")
    elif depth == 6:
        packed = frames.astype(np.uint8)
    elif depth == 12:
        packed = frames.astype("<u2").view(np.uint8)
    else:
        raise ValueError(f"RAW counter depth must be 1, 6, 12 or 24, got {depth}")
    return _words(packed.reshape(n, rows, -1)).reshape(n, -1)


def write_hdr(
    path,
    *,
    depth: int,
    quad: bool,
    frames_in_acquisition: int,
    frames_per_trigger: int,
    scan_xy=None,
    extra: dict | None = None,
) -> Path:
    """The ``.hdr`` text file (``key:\\tvalue`` lines between ``HDR,`` and ``End``)."""
    items = {
        "Time and Date Stamp (day, mnth, yr, hr, min, s)": T0.strftime("%d/%m/%Y %H:%M:%S"),
        "Chip ID": "W559_G11, - , - , - ",
        "Assembly Size (NX1, 2X2)": "   2x2" if quad else "   1x1",
        "Chip Mode  (SPM, CSM, CM, CSCM)": "SPM",
        "Counter Depth (number)": str(depth),
        "Gap Fill Mode": "None",
        "Frames in Acquisition (Number)": str(frames_in_acquisition),
        "Frames per Trigger (Number)": str(frames_per_trigger),
        "Software Version": "1.5.0.197" if scan_xy else "0.77",
    }
    if scan_xy is not None:
        items["ScanX"], items["ScanY"] = str(scan_xy[0]), str(scan_xy[1])
    items.update(extra or {})
    text = "HDR,\t\n" + "".join(f"{k}:\t{v}\n" for k, v in items.items()) + "End\t"
    path = Path(path)
    path.write_bytes(text.encode("ascii").ljust(2048, b" "))
    return path


def write_mib(
    path,
    data,
    *,
    depth: int = 12,
    raw: bool = False,
    quad: bool = False,
    header_size: int | None = None,
    hdr: bool = True,
    scan_xy="auto",
    frames_per_trigger: int | None = None,
    frames_in_acquisition: int | None = None,
    first_sequence: int = 1,
    frame_ns: int = 1_000_000,
    line_pause_ns: int = 0,
    batch: int = 512,
) -> Path:
    """Write ``data`` as ``path`` (+ ``path.with_suffix('.hdr')`` when ``hdr``).

    ``data``: ``(Rx, Ry, rows, cols)`` or ``(N, rows, cols)`` counts, frames in C order of the
    scan; numpy, dask or a datacube, read ``batch`` frames at a time.

    ``depth``: counter depth 1, 6, 12 or 24 (processed pixels ``U08``/``U16``/``U32``, or
    ``R64`` with ``raw``). ``quad``: 4 chips (768-byte headers by default; RAW frames as the
    quad writes them). ``scan_xy``: the ``.hdr`` ``ScanX``/``ScanY`` (``"auto"``: ``(Ry, Rx)``
    of 4D data, none for 3D). ``frames_per_trigger`` / ``frames_in_acquisition``: the ``.hdr``
    fields (default: ``Ry`` and ``N`` of 4D data, 1 and ``N`` of 3D). Frame ``k`` is stamped
    ``k * frame_ns`` after the first, plus ``line_pause_ns`` after every line of
    ``frames_per_trigger`` frames (the fly-back a pixel-triggered scan shows).
    """
    data = getattr(data, "data", data) if hasattr(data, "dims") else data  # a DataArray
    data = np.asarray(data) if not hasattr(data, "shape") else data
    lines = data.shape[1] if data.ndim == 4 else None
    frames = data.reshape(-1, *data.shape[-2:])
    n, rows, cols = frames.shape
    header_size = header_size or (768 if quad else 384)
    if raw:
        pixel, dtype = "R64", np.dtype(np.uint8)
        hx, hy = (cols * 2, rows // 2) if quad else (cols, rows)
        if depth == 24:
            hx *= 2
    else:
        pixel = PROCESSED[depth]
        dtype, (hx, hy) = np.dtype(f">u{int(pixel[1:]) // 8}"), (cols, rows)
    fpt = frames_per_trigger or (lines or 1)
    path = Path(path)
    with open(path, "wb") as f:
        for start in range(0, n, batch):
            block = np.asarray(frames[start : start + batch])
            payload = (
                encode_raw(block, depth, quad)
                if raw
                else block.astype(dtype).reshape(len(block), -1).view(np.uint8)
            )
            records = np.empty((len(block), header_size + payload.shape[1]), np.uint8)
            records[:, header_size:] = payload
            for i in range(len(block)):
                k = start + i
                t = k * frame_ns + (k // fpt) * line_pause_ns
                records[i, :header_size] = np.frombuffer(
                    mib_header(
                        first_sequence + k,
                        rows=hy,
                        cols=hx,
                        pixel=pixel,
                        depth=depth,
                        quad=quad,
                        header_size=header_size,
                        time_ns=t,
                    ),
                    np.uint8,
                )
            f.write(records.tobytes())
    if hdr:
        if isinstance(scan_xy, str):
            scan_xy = (data.shape[1], data.shape[0]) if data.ndim == 4 else None
        write_hdr(
            path.with_suffix(".hdr"),
            depth=depth,
            quad=quad,
            frames_in_acquisition=n if frames_in_acquisition is None else frames_in_acquisition,
            frames_per_trigger=fpt,
            scan_xy=scan_xy,
        )
    return path


def stride(path) -> int:
    """Bytes per frame record (header + pixels) of a written file."""
    with open(path, "rb") as f:
        head = f.read(64).split(b",")
    rows, cols, pixel = int(head[5]), int(head[4]), head[6].decode()
    if pixel == "R64":
        raise ValueError("stride() is for processed files")
    return int(head[2]) + rows * cols * int(pixel[1:]) // 8


__all__ = ["encode_raw", "mib_header", "stride", "write_hdr", "write_mib"]
