"""Test-only writers for frame-stack detector formats: EMPAD ``.raw`` + ``.xml`` (newer and
older XML styles, "acquire"/"search" scan parameters, series) and NanoMegas ``.blo`` (v1.2
8-bit, v1.3 16-bit), with truncated and corrupt variants. Written from the format descriptions
in the project's reference notes, not from any reader's code.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

EMPAD_ROWS, EMPAD_COLS = 130, 128
BLO_HEADER = (
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
)


def empad_cube(scan=(16, 16), seed=0) -> np.ndarray:
    """A float32 (Rx, Ry, 128, 128) scan whose frames differ (rows, columns and position)."""
    rng = np.random.default_rng(seed)
    cube = rng.normal(10.0, 3.0, size=(*scan, 128, 128)).astype(np.float32)
    cube[..., 5, 7] = np.arange(scan[0] * scan[1], dtype=np.float32).reshape(scan)  # a label
    return cube


def _empad_footer(k: int) -> np.ndarray:
    """Two footer rows: large values that must never show up in a frame."""
    footer = np.full((2, EMPAD_COLS), -1e30, dtype="<f4")
    footer[0, :4] = (k, k, 0, 1)
    return footer


def write_empad_raw(path, cube, drop_bytes: int = 0, extra_bytes: int = 0) -> Path:
    """The ``.raw`` file of ``cube`` ((Rx, Ry, 128, 128) or (N, 128, 128)): 130 x 128 <f4
    frames, the last two rows a footer; ``drop_bytes`` cut from the end, ``extra_bytes``
    zeros added."""
    path = Path(path)
    frames = np.asarray(cube, dtype="<f4").reshape(-1, 128, EMPAD_COLS)
    with open(path, "wb") as f:
        for k in range(frames.shape[0]):
            f.write(frames[k].tobytes())
            f.write(_empad_footer(k).tobytes())
        f.write(b"\0" * extra_bytes)
    if drop_bytes:
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size - drop_bytes)
    return path


def write_empad(
    folder,
    cube,
    *,
    style="new",
    mode="acquire",
    other=None,
    name="acq",
    raw_name=None,
    series=False,
    fov=1.2e-7,
    scale_factor=0.72,
    high_voltage=300000.0,
    calibrated_pixelsize=1.826537e-10,
    scan_parameters=True,
    drop_bytes=0,
    extra_bytes=0,
):
    """Write ``cube`` (Rx, Ry, 128, 128) as an EMPAD acquisition in ``folder``; returns
    ``(xml_path, raw_path)``.

    ``style="new"`` (EMPAD 1.2): ``scan_parameters`` modes "search" and "acquire" (``mode``
    is the one the raw file matches, the other gets ``other`` = (Rx, Ry), default twice the
    scan), ``full_scan_field_of_view`` x = y = ``fov`` (m) with ``scale_factor``,
    ``high_voltage``. ``style="old"``: ``pix_x``/``pix_y``,
    ``optics.get_full_scan_field_of_view`` "[x, y]" (m, ``fov`` per axis: (fov_x, fov_y)
    or one number) and ``calibrated_pixelsize``; with ``scan_parameters`` also an "acquire"
    entry. ``series``: ``type = series`` with ``count`` = Rx * Ry. The raw file is named
    ``scan_x{Ry}_y{Rx}.raw`` unless ``raw_name`` is given.
    """
    folder = Path(folder)
    rx, ry = cube.shape[:2]
    raw_name = raw_name or f"scan_x{ry}_y{rx}.raw"
    raw = write_empad_raw(folder / raw_name, cube, drop_bytes, extra_bytes)
    other = other or (2 * rx, 2 * ry)
    parts = [
        f'<root name="{name}">',
        '<timestamp timestamp="1700000000.5" isoformat="2023-11-14T22:13:20.500000"/>',
        "<software_version>1.2.2  (2021-08-20)</software_version>",
        f"<raw_file filename={quoteattr(raw_name)}/>",
        "<exposure_time>1</exposure_time>",
    ]
    if series:
        parts += ["<type>series</type>", f"<count>{rx * ry}</count>"]
    if scan_parameters and not series:
        shapes = (
            {"acquire": (rx, ry), "search": other}
            if mode == "acquire"
            else {"acquire": other, "search": (rx, ry)}
        )
        for m in ("search", "acquire") if style == "new" else ("acquire",):
            sy, sx = shapes[m]
            parts.append(
                f'<scan_parameters mode="{m}"><scan_size>0.6</scan_size>'
                f"<scan_center_x>0.5</scan_center_x>"
                f"<scan_resolution_y>{sy}</scan_resolution_y>"
                f"<scan_resolution_x>{sx}</scan_resolution_x>"
                f"<scan_center_y>0.5</scan_center_y></scan_parameters>"
            )
    if style == "new":
        parts.append(
            "<iom_measurements><scan_rotation>0.0</scan_rotation>"
            "<full_scan_field_of_view>"
            f"<scale_factor>{scale_factor}</scale_factor><x>{fov!r}</x><y>{fov!r}</y>"
            "</full_scan_field_of_view>"
            "<nominal_camera_length>0.369</nominal_camera_length>"
            f"<high_voltage>{high_voltage!r}</high_voltage></iom_measurements>"
        )
    elif style == "old":
        fx, fy = (fov, fov) if np.ndim(fov) == 0 else fov
        parts.append(
            f"<pix_x>{ry}</pix_x><pix_y>{rx}</pix_y>"
            f"<iom_measurements><optics.get_full_scan_field_of_view>[{fx!r}, {fy!r}]"
            "</optics.get_full_scan_field_of_view>"
            f"<calibrated_pixelsize>{calibrated_pixelsize!r}</calibrated_pixelsize>"
            f"<high_voltage>{high_voltage!r}</high_voltage></iom_measurements>"
        )
    else:
        raise ValueError(f"style must be 'new' or 'old', got {style!r}")
    parts.append("</root>")
    xml = folder / f"{name}.xml"
    xml.write_text("".join(parts))
    return xml, raw


def write_empad_g2(path, n_frames=8) -> Path:
    """An EMPAD-G2-like file: 128 x 128 packed uint32 words per frame, no footer."""
    path = Path(path)
    words = np.arange(n_frames * 128 * 128, dtype="<u4")
    path.write_bytes(words.tobytes())
    return path


def blo_cube(scan=(16, 16), dp=64, dtype=np.uint8, seed=0) -> np.ndarray:
    """A (Rx, Ry, dp, dp) scan of ``dtype`` values over its whole range, frames labelled."""
    rng = np.random.default_rng(seed)
    cube = rng.integers(0, np.iinfo(dtype).max, size=(*scan, dp, dp), dtype=dtype, endpoint=True)
    cube[..., 0, 1] = (np.arange(scan[0] * scan[1]) % (np.iinfo(dtype).max + 1)).reshape(scan)
    return cube


def write_blo(
    path,
    cube,
    *,
    sx=12.8,
    sy=None,
    beam_energy=200000,
    sdp=6226,
    camera_length=2000,
    vbf=None,
    note=None,
    magic=None,
    bit_depth_note=True,
    bad_index_at=None,
    bad_sync_at=None,
    drop_frames=0,
    drop_bytes=0,
):
    """Write ``cube`` ((Rx, Ry, DP, DP) uint8 or uint16) as a NanoMegas ``.blo``; returns path.

    uint8 -> v1.2 (magic 0x0102); uint16 -> v1.3 (0x0103) with "Blo Bit Depth: 16 bits" in
    the text note from byte 240 (unless ``bit_depth_note`` is False). Header: NX = Ry (fast),
    NY = Rx, SX/SY scan steps (nm), ``beam_energy`` (V), ``sdp``, ``camera_length``. The
    virtual bright field ``vbf`` ((Rx, Ry) uint8, default the frame means) is stored at
    Data_offset_1 = 4096 as NY x NX bytes; frames at Data_offset_2 (4096 + NX*NY rounded up to
    16), each ``AA 55`` + u4 frame index + DP*DP pixels. Corrupt variants: ``bad_index_at`` /
    ``bad_sync_at`` (frame k gets a wrong index / wrong sync bytes), ``drop_frames`` (the last
    frames are not written), ``drop_bytes`` (cut from the end).
    """
    path = Path(path)
    cube = np.asarray(cube)
    if cube.dtype not in (np.uint8, np.uint16) or cube.shape[2] != cube.shape[3]:
        raise ValueError("cube must be uint8 or uint16 with square frames")
    rx, ry, dp, _ = cube.shape
    sixteen = cube.dtype == np.uint16
    header = np.zeros((), dtype=BLO_HEADER)
    off1 = 4096
    off2 = off1 + rx * ry
    off2 += -off2 % 16
    values = {
        "ID": b"IMGBLO",
        "MAGIC": magic or (0x0103 if sixteen else 0x0102),
        "Data_offset_1": off1,
        "Data_offset_2": off2,
        "UNKNOWN1": 131141,
        "DP_SZ": dp,
        "NX": ry,
        "NY": rx,
        "Scan_rotation": 2500,
        "SX": sx,
        "SY": sx if sy is None else sy,
        "Beam_energy": beam_energy,
        "SDP": sdp,
        "Camera_length": camera_length,
        "Acquisition_time": 42339.653470046294,
        "Distortion_N01": 0.98,
        "Distortion_N09": 0.945,
    }
    for key, value in values.items():
        header[key] = value
    if note is None:
        note = "Precession angle : 0.5\r\nPrecession Frequency : 100\r\nCamera gamma : on"
        if sixteen and bit_depth_note:
            note += "\r\nBlo Bit Depth: 16 bits"
    if vbf is None:
        vbf = (
            cube.mean(axis=(2, 3)).astype(np.uint8)
            if not sixteen
            else (cube.mean(axis=(2, 3)) / 257).astype(np.uint8)
        )
    pixels = cube.astype("<u2" if sixteen else "u1").reshape(rx * ry, dp * dp)
    record = np.dtype([("sync", "u1", 2), ("index", "<u4"), ("pixels", pixels.dtype, dp * dp)])
    n = rx * ry - drop_frames
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(note.encode("latin1"))
        f.write(b"\0" * (off1 - f.tell()))
        f.write(np.asarray(vbf, dtype="u1").reshape(rx, ry).tobytes())
        f.write(b"\0" * (off2 - f.tell()))
        for start in range(0, n, 1024):
            stop = min(start + 1024, n)
            recs = np.zeros(stop - start, dtype=record)
            recs["sync"] = (0xAA, 0x55)
            recs["index"] = np.arange(start, stop)
            recs["pixels"] = pixels[start:stop]
            if bad_index_at is not None and start <= bad_index_at < stop:
                recs["index"][bad_index_at - start] += 7
            if bad_sync_at is not None and start <= bad_sync_at < stop:
                recs["sync"][bad_sync_at - start] = (0, 0)
            f.write(recs.tobytes())
    if drop_bytes:
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size - drop_bytes)
    return path
