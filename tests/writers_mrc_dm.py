"""Small writers of Direct Electron 4D MRC movies (+ ``_info.txt``, + scan-coordinates CSV)
and Gatan DM4/DM3 4D-STEM files, for tests and benchmarks only.

MRC: the standard 1024-byte header (NX = columns, NY = rows, NZ = frames, MODE, NEXT, "MAP ",
machine stamp), ``NEXT`` bytes of extended header, then the frames in C order. The DE info file
is ``key = value`` lines as DE-Server writes them; a scan's ``(X, Y)`` = (fast, slow) is our
``(Ry, Rx)``.

DM: the header (version, root size, byte order), then the tag tree (big-endian structure, values
in the data byte order; DM4 u64 sizes and a byte size after each tag name, DM3 u32 and none), a
thumbnail image first in ``ImageList`` as GMS writes it, and the 4D image stored either with
contiguous frames (Dimensions ``(kx, ky, scan x, scan y)``, ``Data Order Swapped = 1``) or scan
fastest (Dimensions ``(scan x, scan y, kx, ky)``, the older layout).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MRC_MODES = {"u1": 0, "i2": 1, "f4": 2, "u2": 6, "f2": 12}


# --- MRC -----------------------------------------------------------------------------------


def mrc_header(nx, ny, nz, mode, *, next_bytes=0, big_endian=False) -> bytes:
    order = ">" if big_endian else "<"
    i4 = np.zeros(256, dtype=f"{order}i4")
    f4 = i4.view(f"{order}f4")
    i4[0:4] = nx, ny, nz, mode
    i4[7:10] = nx, ny, nz
    f4[10:13] = -10.0 * nx, -10.0 * ny, 0.0
    f4[13:16] = 90.0
    i4[16:19] = 1, 2, 3
    f4[19:22] = 2.0, 1.0, 0.0
    i4[23] = next_bytes
    raw = bytearray(i4.tobytes())
    raw[208:212] = b"MAP "
    raw[212:214] = b"\x11\x11" if big_endian else b"DD"
    return bytes(raw)


def write_mrc(path, frames, *, big_endian=False, next_bytes=0, nz=None, truncate=0) -> Path:
    """Write ``frames`` (``(N, rows, cols)``, or a 4D cube written scan position after scan
    position) as an MRC stack. ``nz`` overrides the header's frame count; ``truncate`` cuts
    that many bytes off the end."""
    frames = np.asarray(frames)
    rows, cols = frames.shape[-2:]
    n = int(np.prod(frames.shape[:-2]))
    mode = MRC_MODES[frames.dtype.str[1:]]
    order = ">" if big_endian else "<"
    path = Path(path)
    with open(path, "wb") as f:
        f.write(
            mrc_header(
                cols,
                rows,
                n if nz is None else nz,
                mode,
                next_bytes=next_bytes,
                big_endian=big_endian,
            )
        )
        f.write(b"\xab" * next_bytes)
        flat = frames.reshape(n, rows, cols)
        step = max(1, (64 << 20) // max(flat[0].nbytes, 1))
        for k in range(0, n, step):
            f.write(
                np.ascontiguousarray(
                    flat[k : k + step], dtype=flat.dtype.newbyteorder(order)
                ).tobytes()
            )
        if truncate:
            f.truncate(f.tell() - truncate)
    return path


def info_text(entries: dict) -> str:
    return "".join(f"{k:<64s}= {v}\n" for k, v in entries.items())


def de_info(
    *,
    scan=(8, 4),
    frame=(4, 8),
    roi=None,
    kind="Raster",
    repeats=1,
    per_point=1,
    sum_count=1,
    scan_step=(0.1, 0.2),
    q_step=(0.5, 0.5),
    voltage=300000,
    enable=True,
) -> dict:
    """An info dict: ``scan`` = DE ``(X, Y)``, ``frame`` = ``(rows, cols)``, ``roi`` =
    ``(offset x, offset y, size x, size y)``, ``scan_step`` = ``(X, Y)`` nm (-1: unknown)."""
    info = {
        "Server Software Version": "2.7.4.10190",
        "Camera Model": "DE-Test",
        "Autosave Movie Sum Count": sum_count,
        "Diffraction Pixel Size X": q_step[0],
        "Diffraction Pixel Size Y": q_step[1],
        "Image Size X (pixels)": frame[1],
        "Image Size Y (pixels)": frame[0],
        "Instrument Accelerating Voltage (V)": voltage,
        "Scan - Camera Frames Per Point": per_point,
        "Scan - Enable": "Enable" if enable else "Disable",
        "Scan - Repeats": repeats,
        "Scan - ROI Enable": "Enable" if roi else "Disable",
        "Scan - ROI Offset X": roi[0] if roi else 0,
        "Scan - ROI Offset Y": roi[1] if roi else 0,
        "Scan - ROI Size X": roi[2] if roi else scan[0],
        "Scan - ROI Size Y": roi[3] if roi else scan[1],
        "Scan - ROI Type": kind,
        "Scan - Size X": scan[0],
        "Scan - Size Y": scan[1],
        "Scan - Type": kind,
        "Specimen Pixel Size X (nanometers)": scan_step[0],
        "Specimen Pixel Size Y (nanometers)": scan_step[1],
    }
    return info


def write_de_movie(
    folder, name, frames, info: dict | None = None, *, positions=None, **mrc_options
) -> Path:
    """``<name>_movie.mrc`` (+ ``<name>_info.txt`` when ``info``, + ``<name>_scan_coordinates
    .csv`` with one ``x,y`` line per frame when ``positions`` = ``(N, 2)`` x, y)."""
    folder = Path(folder)
    movie = write_mrc(folder / f"{name}_movie.mrc", frames, **mrc_options)
    if info is not None:
        (folder / f"{name}_info.txt").write_text(info_text(info))
    if positions is not None:
        (folder / f"{name}_scan_coordinates.csv").write_text(
            "".join(f"{x},{y}\n" for x, y in np.asarray(positions))
        )
    return movie


def write_de_scan(folder, name, cube, **info_options) -> Path:
    """A raster DE movie of ``cube`` (``(Rx, Ry, Qx, Qy)``) with its info file."""
    rx, ry, qx, qy = cube.shape
    return write_de_movie(
        folder, name, cube, de_info(scan=(ry, rx), frame=(qx, qy), **info_options)
    )


# --- DM ------------------------------------------------------------------------------------

DM_TYPES = {
    "i2": (1, 2),
    "f4": (2, 6),
    "u1": (6, 10),
    "i4": (7, 3),
    "i1": (9, 9),
    "u2": (10, 4),
    "u4": (11, 5),
    "f8": (12, 7),
    "b1": (14, 8),
}  # DataType, tag type
TAG_FORMATS = {
    2: "h",
    3: "i",
    4: "H",
    5: "I",
    6: "f",
    7: "d",
    8: "?",
    9: "b",
    10: "B",
    11: "q",
    12: "Q",
}


@dataclass
class Typed:
    """A value stored as tag type ``kind`` (e.g. 6 = float32, 5 = uint32)."""

    value: object
    kind: int


@dataclass
class Struct:
    values: tuple
    kinds: tuple


@dataclass
class Array:
    """``values`` as an array of tag type ``kind`` (structs: ``kinds`` per field)."""

    values: list
    kind: int
    kinds: tuple = ()


@dataclass
class Payload:
    """The image data: ``nbytes`` bytes written by ``write(file)``, as ``count`` values of tag
    type ``kind``."""

    write: object
    count: int
    kind: int
    itemsize: int


class _DM:
    def __init__(self, version: int, endian: str):
        self.v, self.e = version, endian

    def u(self, n: int) -> bytes:
        return struct.pack(">Q" if self.v == 4 else ">I", n)

    def group(self, value) -> list:
        items = list(value.items()) if isinstance(value, dict) else [("", v) for v in value]
        parts = [b"\x00\x00", self.u(len(items))]
        for name, v in items:
            parts += self.tag(name, v)
        return parts

    def tag(self, name: str, value) -> list:
        is_group = isinstance(value, dict | list)
        body = self.group(value) if is_group else self.data(value)
        head = (
            bytes([20 if is_group else 21]) + struct.pack(">H", len(name)) + name.encode("latin-1")
        )
        if self.v == 4:
            head += struct.pack(">Q", length(body))
        return [head, *body]

    def data(self, value) -> list:
        e = self.e
        if isinstance(value, Payload):
            return [
                b"%%%%" + self.u(3) + self.u(20) + self.u(value.kind) + self.u(value.count),
                value,
            ]
        if isinstance(value, str):
            value = Array(np.frombuffer(value.encode("utf-16-le"), "<u2").tolist(), 4)
        if isinstance(value, bool):
            value = Typed(value, 8)
        elif isinstance(value, int):
            value = Typed(value, 3)
        elif isinstance(value, float):
            value = Typed(value, 7)
        if isinstance(value, Typed):
            return [
                b"%%%%" + self.u(1) + self.u(value.kind),
                struct.pack(e + TAG_FORMATS[value.kind], value.value),
            ]
        if isinstance(value, Struct):
            info = [15, 0, len(value.kinds)] + [x for k in value.kinds for x in (0, k)]
            return [
                b"%%%%" + self.u(len(info)) + b"".join(map(self.u, info)),
                struct.pack(e + "".join(TAG_FORMATS[k] for k in value.kinds), *value.values),
            ]
        if isinstance(value, Array):
            if value.kind == 15:
                info = (
                    [20, 15, 0, len(value.kinds)]
                    + [x for k in value.kinds for x in (0, k)]
                    + [len(value.values)]
                )
                fmt = e + "".join(TAG_FORMATS[k] for k in value.kinds) * len(value.values)
                flat = [x for row in value.values for x in row]
            else:
                info = [20, value.kind, len(value.values)]
                fmt = e + TAG_FORMATS[value.kind] * len(value.values)
                flat = list(value.values)
            return [
                b"%%%%" + self.u(len(info)) + b"".join(map(self.u, info)),
                struct.pack(fmt, *flat),
            ]
        raise TypeError(f"cannot store {value!r} in a DM tag")


def length(parts) -> int:
    return sum(p.count * p.itemsize if isinstance(p, Payload) else len(p) for p in parts)


def _calibration(scale, units, origin) -> dict:
    return {"Origin": Typed(float(origin), 6), "Scale": Typed(float(scale), 6), "Units": units}


def dm_tags(
    dims, data_type, payload, *, calibrations, layout_tag, voltage, data_last, thumbnail=True
) -> dict:
    """The tag tree of a GMS-like file holding one image of ``dims`` (X first)."""
    image_data = {
        "Calibrations": {
            "Brightness": _calibration(1.0, "Counts", 0.0),
            "Dimension": [_calibration(*c) for c in calibrations],
            "DisplayCalibratedUnits": True,
        }
    }
    tail = {
        "DataType": data_type,
        "Dimensions": [Typed(int(d), 5) for d in dims],
        "PixelDepth": Typed(int(payload.itemsize), 5),
    }
    image_data.update({**tail, "Data": payload} if data_last else {"Data": payload, **tail})
    meta = {"Acquisition Mode": "Parallel imaging", "Format": "Diffraction image"}
    if layout_tag is not None:
        meta["Data Order Swapped"] = bool(layout_tag)
    tags = {"Meta Data": meta, "Acquisition": {"Parameters": {"Detector": {"exposure (s)": 0.001}}}}
    if voltage is not None:
        tags["Microscope Info"] = {
            "Voltage": float(voltage),
            "Indicated Magnification": Typed(1.0e6, 6),
            "Operator": "test µ",
        }
    main = {
        "ImageData": image_data,
        "ImageTags": tags,
        "Name": "4D-STEM",
        "UniqueID": {"0": Typed(1, 5), "1": Typed(2, 5)},
    }
    if data_last:
        main = {**{k: v for k, v in main.items() if k != "ImageData"}, "ImageData": image_data}
    images = []
    if thumbnail:
        thumb = Payload(lambda f: f.write(b"\x7f" * 4 * 16 * 8), 16 * 8, 5, 4)
        images.append(
            {
                "ImageData": {
                    "Calibrations": {
                        "Dimension": [_calibration(1.0, "", 0.0), _calibration(1.0, "", 0.0)]
                    },
                    "Data": thumb,
                    "DataType": 23,
                    "Dimensions": [Typed(16, 5), Typed(8, 5)],
                    "PixelDepth": Typed(4, 5),
                },
                "ImageTags": {},
                "Name": "thumbnail",
            }
        )
    images.append(main)
    root = {
        "ApplicationBounds": Array([0, 0, 1000, 1200], 11),
        "DocumentObjectList": [
            {"AnnotationType": 20, "Rectangle": Struct((0.0, 0.0, 64.0, 64.0), (6, 6, 6, 6))}
        ],
        "Image Behavior": {"ViewDisplayID": 8, "Zoom": 1.5},
        "Page Behavior": {"Points": Array([(1, 2.5), (3, 4.5)], 15, (3, 7))},
    }
    thumbs = (
        {"Thumbnails": [{"ImageIndex": Typed(0, 5), "SourceSize_Pixels": Array([64, 64], 3)}]}
        if thumbnail
        else {}
    )
    if data_last:  # the image data end the file
        return {**root, **thumbs, "ImageList": images}
    return {
        **root,
        "ImageList": images,
        "ImageSourceList": [{"ClassName": "ImageSource:Simple", "ImageRef": Typed(1, 5)}],
        **thumbs,
    }


def write_dm(
    path,
    cube,
    *,
    version=4,
    layout="frames",
    layout_tag="auto",
    big_endian=False,
    r_cal=((0.5, "nm", 0.0), (0.25, "nm", 0.0)),
    q_cal=((0.02, "1/nm", 4.0), (0.02, "1/nm", 3.0)),
    voltage=200e3,
    data_last=False,
    truncate=0,
    thumbnail=True,
    data_type=None,
) -> Path:
    """Write ``cube`` (``(Rx, Ry, Qx, Qy)``, or a 3D ``(N, Qx, Qy)`` stack) as a DM file.

    ``layout``: ``"frames"`` (contiguous frames) or ``"scan-fastest"`` (older GMS);
    ``layout_tag``: the ``Data Order Swapped`` value to write (``"auto"``: 1 for frames, 0 for
    scan-fastest; None: no tag). ``r_cal``/``q_cal``: ``(scale, units, origin)`` for DM's
    ``(x, y)`` = our ``(Ry, Rx)`` / ``(Qy, Qx)``. ``data_last`` puts the image data at the end
    of the file; ``truncate`` cuts that many bytes off the end; ``data_type`` overrides the
    DataType tag.
    """
    cube = np.asarray(cube)
    code, kind = DM_TYPES[cube.dtype.str[1:]]
    data_type = code if data_type is None else data_type
    order = ">" if big_endian else "<"
    stored = cube.dtype.newbyteorder(order)
    if cube.ndim == 3:
        n, qx, qy = cube.shape
        dims, cals = (qy, qx, n), [*q_cal, (1.0, "", 0.0)]
        blocks = _slabs(cube.reshape(n, qx * qy), stored)
        layout_tag = None if layout_tag == "auto" else layout_tag
    else:
        rx, ry, qx, qy = cube.shape
        if layout == "frames":
            dims, cals = (qy, qx, ry, rx), [*q_cal, *r_cal]
            blocks = _slabs(cube.reshape(rx * ry, qx * qy), stored)
        else:
            dims, cals = (ry, rx, qy, qx), [*r_cal, *q_cal]
            blocks = _scan_fastest(cube, stored)
        if layout_tag == "auto":
            layout_tag = 1 if layout == "frames" else 0

    def write_data(f):
        for block in blocks:
            f.write(block)

    payload = Payload(write_data, int(cube.size), kind, cube.dtype.itemsize)
    tree = dm_tags(
        dims,
        data_type,
        payload,
        calibrations=cals,
        layout_tag=layout_tag,
        voltage=voltage,
        data_last=data_last,
        thumbnail=thumbnail,
    )
    dm = _DM(version, order)
    body = dm.group(tree)
    path = Path(path)
    with open(path, "wb") as f:
        f.write(
            struct.pack(">i", version)
            + dm.u(length(body))
            + struct.pack(">i", 0 if big_endian else 1)
        )
        for part in body:
            if isinstance(part, Payload):
                part.write(f)
            else:
                f.write(part)
        f.write(b"\0" * (8 if version == 4 else 4))
        if truncate:
            f.truncate(f.tell() - truncate)
    return path


def _slabs(flat, stored, nbytes=64 << 20):
    step = max(1, nbytes // max(flat[0].nbytes, 1))
    for k in range(0, flat.shape[0], step):
        yield np.ascontiguousarray(flat[k : k + step], dtype=stored).tobytes()


def _scan_fastest(cube, stored):
    """The bytes of ``cube`` as ``(Qx, Qy, Rx, Ry)`` in C order, one detector row at a time."""
    for q in range(cube.shape[2]):
        yield np.ascontiguousarray(cube[:, :, q, :].transpose(2, 0, 1), dtype=stored).tobytes()
