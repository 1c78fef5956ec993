"""Gatan Digital Micrograph ``.dm4`` / ``.dm3`` 4D-STEM files, read lazily.

File layout: a header (version i32 = 4 or 3, root size u64 (DM4) or u32 (DM3), data byte order
i32: 1 = little-endian), then a tree of tag groups and data tags, always big-endian in its
structure (DM4 sizes and counts are u64, DM3 u32); the values themselves are in the data byte
order. Opening walks the tree, skipping array payloads, and records where
``ImageList.<i>.ImageData.Data`` starts; thumbnails (``Thumbnails.<k>.ImageIndex``) are skipped.
``ImageData.Dimensions`` lists the axes X-fastest, so the stored array is C-ordered with the
dimensions reversed; ``DataType`` gives the pixel type (1 int16, 2 float32, 6 uint8, 7 int32,
9 int8, 10 uint16, 11 uint32, 12 float64, 14 bool; complex and RGB types are refused).

Two 4D layouts exist:

- **frames** (``ImageTags.Meta Data.Data Order Swapped = 1``, recent GMS): Dimensions
  ``(kx, ky, scan x, scan y)``, every frame contiguous. Read like any frame stack.
- **scan-fastest** (older GMS / STEMx, the "F/C hybrid" or ``(flat_sig, flat_nav)`` layout):
  Dimensions ``(scan x, scan y, kx, ky)``: for each detector pixel, the whole scan. A chunk of
  scan positions reads, for each detector pixel, its run of positions (``Qx * Qy`` runs spread
  over the whole file): slower than the frames layout, so opening such a file warns and
  suggests converting it once to zarr (``stem4d_dask.to_zarr`` with the default whole-row
  chunks reads every byte of the file exactly once).

Which one a file uses: ``layout=`` when given; else the ``Data Order Swapped`` tag; else the
calibration units (the pair of axes in reciprocal or angle units is the detector); else
scan-fastest (as LiberTEM assumes for untagged 4D files), with a warning.

Our orientation: ``(Rx, Ry, Qx, Qy) = (scan y, scan x, ky, kx)``: ``Qx`` is the stored frame's
rows (DM's y), ``Ry`` the fast scan axis (DM's x). Calibrations (``ImageData.Calibrations
.Dimension``: a coordinate is ``(index - Origin) * Scale``) become coords: scan ``nm``, ``µm``
(to nm), ``Å``/``pm`` (to Å); detector ``1/nm`` (to Å^-1: /10), ``1/Å``, ``mrad``, ``rad`` (to
mrad); anything else leaves that space in pixels. ``Microscope Info.Voltage`` (V) is the beam
energy. ``attrs["metadata"]`` holds the image's ``name``, ``image_tags`` and
``calibrations``, the list of ``images`` in the file and the file's other ``tags`` (arrays
longer than 256 values are described, not copied). A 3D image stack ``(kx, ky, n)`` reads
with ``scan_shape=``.
"""

from __future__ import annotations

import math
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checks import checked_scan_shape
from ..datacube import MAX_CHUNK_BYTES, auto_chunks, normalize_chunks, user_stacklevel
from ..lazy import lazy_from_loader
from .frames import FrameSegment, FrameStack, FrameStackLoader, frame_count_error
from .mrc import calibrated

DATA_TYPES = {1: "i2", 2: "f4", 6: "u1", 7: "i4", 9: "i1", 10: "u2", 11: "u4", 12: "f8",
              14: "b1"}
UNSUPPORTED_TYPES = {3: "complex64", 4: "packed complex", 5: "packed complex",
                     8: "RGB", 13: "complex128", 23: "RGBA", 27: "packed complex64",
                     28: "packed complex128"}
# tag value types: struct format and size
TAG_TYPES = {2: "h", 3: "i", 4: "H", 5: "I", 6: "f", 7: "d", 8: "?", 9: "b", 10: "B", 11: "q",
             12: "Q"}
STRUCT, STRING, ARRAY = 15, 18, 20
KEEP_VALUES = 256  # arrays up to this length are copied into the metadata
LAYOUTS = ("frames", "scan-fastest")
R_UNITS = {"nm": ("nm", 1.0), "µm": ("nm", 1e3), "um": ("nm", 1e3), "μm": ("nm", 1e3),
           "Å": ("A", 1.0), "A": ("A", 1.0), "pm": ("A", 0.01)}
Q_UNITS = {"1/nm": ("A^-1", 0.1), "nm^-1": ("A^-1", 0.1), "1/Å": ("A^-1", 1.0),
           "1/A": ("A^-1", 1.0), "Å^-1": ("A^-1", 1.0), "A^-1": ("A^-1", 1.0),
           "mrad": ("mrad", 1.0), "rad": ("mrad", 1e3), "µrad": ("mrad", 1e-3)}


# --- the tag tree --------------------------------------------------------------------------

@dataclass(frozen=True)
class ArrayRef:
    """An array payload left in the file: ``count`` values of tag type ``kind`` (or
    ``itemsize``-byte elements) at byte ``offset``."""

    offset: int
    count: int
    itemsize: int
    kind: int

    def describe(self) -> str:
        name = TAG_TYPES.get(self.kind, f"type {self.kind}")
        return f"<{self.count} values ({name}, {self.itemsize} B) at byte {self.offset}>"


class _Truncated(ValueError):
    pass


class _Stop(Exception):  # noqa: N818 - not an error: the walk ends early
    def __init__(self, value):
        super().__init__()
        self.value = value


def _add(named: dict, items: list, name: str, value):
    if value is None:
        return
    if name:
        named[name] = value
    else:
        items.append(value)


def _finish(named: dict, items: list):
    if named and items:
        named.update({str(k): v for k, v in enumerate(items)})
    return named if named or not items else items


class TagReader:
    """Walks a DM tag tree from an open file; groups become dicts, or lists when their tags
    are unnamed; ``ImageData.Data`` and long arrays become :class:`ArrayRef`."""

    def __init__(self, f, path, size: int):
        self.f, self.path, self.size = f, path, size
        self.version = struct.unpack(">i", self._read(4))[0]
        if self.version not in (3, 4):
            raise ValueError(f"path: {path} is DM version {self.version}; only 3 and 4 are read")
        self.wide = self.version == 4
        self._u()  # root size
        self.endian = "<" if struct.unpack(">i", self._read(4))[0] == 1 else ">"

    def _read(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise _Truncated(f"the file ends at byte {self.size} inside the tag tree")
        return data

    def _u(self) -> int:
        return struct.unpack(">Q", self._read(8))[0] if self.wide else \
            struct.unpack(">I", self._read(4))[0]

    def root(self) -> dict:
        """The tag tree; when the image data run past the end of the file, the tree read so
        far, with :attr:`truncated` = the tag's path."""
        self.truncated = None
        self._read(2)  # sorted, open
        try:
            return self._group(self._u(), "")
        except _Stop as stop:
            return stop.value

    def _group(self, ntags: int, where: str):
        named, items, name, value = {}, [], "", None
        try:
            for k in range(ntags):
                value = None
                kind = self._read(1)[0]
                name = self._read(struct.unpack(">H", self._read(2))[0]).decode("latin-1")
                here = f"{where}.{name or k}".lstrip(".")
                if self.wide:
                    self._read(8)  # the tag's byte size
                if kind == 20:
                    self._read(2)  # sorted, open
                    value = self._group(self._u(), here)
                elif kind == 21:
                    value = self._data(here, data=name == "Data" and where.endswith("ImageData"))
                else:
                    raise ValueError(f"path: {self.path} is corrupt: tag {here!r} at byte "
                                     f"{self.f.tell()} has kind {kind} (expected 20 or 21)")
                _add(named, items, name, value)
        except _Stop as stop:  # the image data run past the end: keep what was read
            _add(named, items, name, stop.value)
            raise _Stop(_finish(named, items)) from None
        return _finish(named, items)

    def _data(self, where: str, data: bool):
        if self._read(4) != b"%%%%":
            raise ValueError(f"path: {self.path} is corrupt: tag {where!r} lacks its '%%%%' "
                             f"delimiter (byte {self.f.tell() - 4})")
        info = [self._u() for _ in range(self._u())]
        if not info:
            raise ValueError(f"path: {self.path} is corrupt: tag {where!r} has no type")
        kind = info[0]
        if kind in TAG_TYPES and len(info) == 1:
            fmt = self.endian + TAG_TYPES[kind]
            return struct.unpack(fmt, self._read(struct.calcsize(fmt)))[0]
        if kind == STRING:
            return self._read(info[1]).decode("latin-1")
        if kind == STRUCT:
            fields = [info[4 + 2 * k] for k in range(info[2])]
            fmt = self.endian + "".join(TAG_TYPES[t] for t in fields)
            return list(struct.unpack(fmt, self._read(struct.calcsize(fmt))))
        if kind != ARRAY:
            raise ValueError(f"path: {self.path} is corrupt: tag {where!r} has type {kind}")
        itemsize, _ = _element_size(info, 1)
        count = info[-1]
        offset = self.f.tell()
        if data or info[1] not in TAG_TYPES or count > KEEP_VALUES and info[1] != 4 or \
                count > 65536:
            end = offset + count * itemsize
            if end > self.size:
                if not data:
                    raise _Truncated(f"the file ends at byte {self.size}, inside {where} "
                                     f"({count} values of {itemsize} B from byte {offset})")
                self.truncated = where
                raise _Stop(ArrayRef(offset, count, itemsize, info[1]))
            self.f.seek(end)
            return ArrayRef(offset, count, itemsize, info[1])
        values = np.frombuffer(self._read(count * itemsize),
                               dtype=self.endian + TAG_TYPES[info[1]])
        if info[1] == 4:  # UTF-16 text
            return values.astype("<u2").tobytes().decode("utf-16-le", errors="replace")
        return values.tolist()


def _element_size(info, i: int) -> tuple[int, int]:
    """Byte size of the element type defined at ``info[i]`` and the index after it."""
    kind = info[i]
    if kind in TAG_TYPES:
        return struct.calcsize(TAG_TYPES[kind]), i + 1
    if kind == STRING:
        return info[i + 1], i + 2
    if kind == STRUCT:
        n = info[i + 2]
        return sum(struct.calcsize(TAG_TYPES[info[i + 4 + 2 * k]]) for k in range(n)), \
            i + 3 + 2 * n
    if kind == ARRAY:
        size, j = _element_size(info, i + 1)
        return size * info[j], j + 1
    raise ValueError(f"unknown DM tag type {kind}")


def read_tags(path) -> tuple[dict, int, str, str | None]:
    """``(tag tree, DM version, data byte order, truncated)`` of ``path``: ``truncated`` is the
    path of the image data tag the file ends in (the tree then stops there), else None.
    ``ValueError`` for a corrupt tree or one truncated elsewhere."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        reader = TagReader(f, path, size)
        try:
            tree = reader.root()
        except _Truncated as err:
            raise ValueError(f"path: {path} is truncated: {err.args[0]}; the tags after that "
                             "point (image dimensions, type) cannot be read") from None
        except (struct.error, KeyError, IndexError, UnicodeDecodeError) as err:
            raise ValueError(f"path: {path} is corrupt: its tag tree cannot be parsed at byte "
                             f"{f.tell()} ({type(err).__name__}: {err})") from None
    return tree, reader.version, reader.endian, reader.truncated


def is_dm(path) -> bool:
    """True for a ``.dm3``/``.dm4`` file whose header says version 3/4 and a byte order."""
    path = Path(path)
    if path.suffix.lower() not in (".dm3", ".dm4") or not path.is_file():
        return False
    with open(path, "rb") as f:
        head = f.read(16)
    if len(head) < 12:
        return False
    version = struct.unpack(">i", head[:4])[0]
    flag = head[8:12] if version == 3 else head[12:16]
    return version in (3, 4) and len(flag) == 4 and struct.unpack(">i", flag)[0] in (0, 1)


# --- the scan-fastest layout ---------------------------------------------------------------

@dataclass(frozen=True)
class ScanFastestLoader:
    """Blocks ``(nrx, nry, Qx, Qy)`` of a file storing, for each detector pixel in C order,
    the whole scan (``n_positions`` values, C order): ``(Qx, Qy, positions)`` at ``offset``."""

    path: str
    offset: int
    dtype: str  # stored
    frame_shape: tuple
    n_positions: int
    scan_shape: tuple
    mtime_ns: int = 0
    tile: int = 8  # detector pixels copied per step of the transpose

    def __call__(self, slices):
        (r0, r1, _), (c0, c1, _) = (s.indices(n) for s, n in
                                    zip(slices[:2], self.scan_shape, strict=True))
        ry = self.scan_shape[1]
        stored = np.dtype(self.dtype)
        pixels = int(np.prod(self.frame_shape))
        mm = np.memmap(self.path, dtype=stored, mode="r", offset=self.offset,
                       shape=(pixels, self.n_positions))
        if c0 == 0 and c1 == ry:
            runs = [(r0 * ry, r1 * ry)]
        else:
            runs = [(r * ry + c0, r * ry + c1) for r in range(r0, r1)]
        n = sum(b - a for a, b in runs)
        out = np.empty((n, pixels), dtype=stored.newbyteorder("="))
        tmp = np.empty((min(self.tile, pixels), n), dtype=stored)
        for p0 in range(0, pixels, self.tile):
            p1 = min(p0 + self.tile, pixels)
            at = 0
            for a, b in runs:  # one run of positions per detector pixel
                tmp[:p1 - p0, at:at + b - a] = mm[p0:p1, a:b]
                at += b - a
            out[:, p0:p1] = tmp[:p1 - p0].T
        del mm
        return out.reshape(r1 - r0, c1 - c0, *self.frame_shape)


# --- choosing the image and its layout -----------------------------------------------------

def _images(tree) -> list[tuple[int, dict]]:
    images = tree.get("ImageList", [])
    images = images if isinstance(images, list) else list(images.values())
    thumbs = tree.get("Thumbnails", [])
    thumbs = thumbs if isinstance(thumbs, list) else list(thumbs.values())
    skip = {t.get("ImageIndex") for t in thumbs if isinstance(t, dict)}
    return [(k, im) for k, im in enumerate(images) if k not in skip and isinstance(im, dict)]


def _dims(image) -> list[int]:
    dims = image.get("ImageData", {}).get("Dimensions", [])
    return [int(d) for d in (dims if isinstance(dims, list) else dims.values())]


def _calibrations(image, n: int) -> list[dict]:
    cal = image.get("ImageData", {}).get("Calibrations", {}).get("Dimension", [])
    cal = cal if isinstance(cal, list) else list(cal.values())
    return [c if isinstance(c, dict) else {} for c in cal] + [{}] * (n - len(cal))


def _space(cals, table):
    """``(steps, units, origins)`` for two calibrations ``(x, y)`` over our axes, or None."""
    out = []
    for c in cals:
        units = str(c.get("Units", "")).strip()
        scale = c.get("Scale", 1.0)
        if units not in table or not isinstance(scale, int | float) or not \
                math.isfinite(scale) or scale <= 0:
            return None
        unit, factor = table[units]
        origin = c.get("Origin", 0.0)
        origin = float(origin) if isinstance(origin, int | float) and math.isfinite(origin) \
            else 0.0
        out.append((unit, scale * factor, -origin * scale * factor))
    if out[0][0] != out[1][0]:
        return None
    return tuple(o[1] for o in out), out[0][0], tuple(o[2] for o in out)


def _is_q(c) -> bool:
    return str(c.get("Units", "")).strip() in Q_UNITS


def _is_r(c) -> bool:
    return str(c.get("Units", "")).strip() in R_UNITS


def _layout(image, cals, layout, path) -> tuple[str, str]:
    """The 4D layout and how it was decided."""
    if layout is not None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS} or None, got {layout!r}")
        return layout, "layout="
    meta = image.get("ImageTags", {}).get("Meta Data", {})
    if isinstance(meta, dict) and "Data Order Swapped" in meta:
        try:
            swapped = bool(int(meta["Data Order Swapped"]))
        except (TypeError, ValueError):
            swapped = str(meta["Data Order Swapped"]).strip().lower() in ("true", "yes")
        return ("frames" if swapped else "scan-fastest"), "Data Order Swapped tag"
    first, last = cals[:2], cals[2:4]
    if all(map(_is_q, first)) and not any(map(_is_q, last)) and all(map(_is_r, last)):
        return "frames", "calibration units"
    if all(map(_is_q, last)) and not any(map(_is_q, first)) and all(map(_is_r, first)):
        return "scan-fastest", "calibration units"
    warnings.warn(f"{path}: neither a 'Data Order Swapped' tag nor the calibration units say "
                  "how the 4D data are ordered; assuming the older scan-fastest layout (pass "
                  "layout='frames' if the frames are contiguous)", stacklevel=user_stacklevel())
    return "scan-fastest", "assumed"


def _image_metadata(tree, im) -> dict:
    """The read image's name, tags and calibrations, a list of every image in the file, and
    the file's other tags."""
    images = tree.get("ImageList", [])
    images = images if isinstance(images, list) else list(images.values())
    listing = [{"index": k, "name": other.get("Name"), "dimensions": _dims(other),
                "data_type": other.get("ImageData", {}).get("DataType")}
               for k, other in enumerate(images) if isinstance(other, dict)]
    return _metadata({"name": im.get("Name"), "image_tags": im.get("ImageTags", {}),
                      "calibrations": im.get("ImageData", {}).get("Calibrations", {}),
                      "images": listing,
                      "tags": {k: v for k, v in tree.items() if k != "ImageList"}})


def _metadata(value):
    if isinstance(value, dict):
        return {k: _metadata(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_metadata(v) for v in value]
    if isinstance(value, ArrayRef):
        return value.describe()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


# --- the reader ----------------------------------------------------------------------------

def read_dm(path, *, scan_shape=None, chunks="auto", layout=None, image=None):
    """Open a Gatan ``.dm4``/``.dm3`` 4D-STEM dataset lazily as a datacube.

    Parameters
    ----------
    path : the ``.dm4`` or ``.dm3`` file.
    scan_shape : ``(Rx, Ry)`` to read the positions as another scan of the same number of
        positions (fewer, for a truncated frames-layout file); required for a 3D stack.
    chunks : ``"auto"`` (whole frames; 32-128 MiB of scan positions, whole scan rows), a dict
        or a tuple.
    layout : ``"frames"`` or ``"scan-fastest"`` to override the detection (see the module doc).
    image : index in ``ImageList`` of the image to read (default: the first 4D one, or the
        first 3D one with ``scan_shape``).

    Reads the tag tree only. ``ValueError`` for a corrupt or truncated file (naming it, with the
    ``scan_shape`` that reads the frames a truncated frames-layout file holds).
    """
    path = Path(path)
    tree, version, endian, truncated = read_tags(path)
    index, im = _choose(tree, path, image, scan_shape, truncated)
    dims = _dims(im)
    dtype_code = im["ImageData"].get("DataType")
    if dtype_code in UNSUPPORTED_TYPES:
        raise TypeError(f"path: {path} image {index} holds {UNSUPPORTED_TYPES[dtype_code]} "
                        f"pixels (DataType {dtype_code}); a datacube holds real numbers")
    if dtype_code not in DATA_TYPES:
        raise ValueError(f"path: {path} image {index} has an unknown DataType {dtype_code!r}")
    stored = np.dtype(DATA_TYPES[dtype_code]).newbyteorder(endian)
    native = stored.newbyteorder("=")
    ref = im["ImageData"].get("Data")
    if not isinstance(ref, ArrayRef):
        raise ValueError(f"path: {path} image {index} has no ImageData.Data array")
    declared = int(np.prod(dims))
    if ref.count * ref.itemsize != declared * stored.itemsize:
        raise ValueError(f"path: {path} is corrupt: image {index}'s data holds "
                         f"{ref.count * ref.itemsize} bytes but its Dimensions {dims} of "
                         f"{stored} need {declared * stored.itemsize}")
    cals = _calibrations(im, len(dims))
    meta = {"dm_version": version, "image": index, "dimensions": dims,
            "data_type": dtype_code, "byte_order": "little" if endian == "<" else "big"}
    if len(dims) == 3:
        kind, frame, positions, native_scan = "frames", (dims[1], dims[0]), dims[2], None
        q_cals, r_cals = cals[:2], None
        meta["layout"] = "frames (3D stack)"
    else:
        kind, how = _layout(im, cals, layout, path)
        meta["layout"], meta["layout_from"] = kind, how
        if kind == "frames":
            frame, positions, native_scan = (dims[1], dims[0]), dims[2] * dims[3], \
                (dims[3], dims[2])
            q_cals, r_cals = cals[:2], cals[2:4]
        else:
            frame, positions, native_scan = (dims[3], dims[2]), dims[0] * dims[1], \
                (dims[1], dims[0])
            q_cals, r_cals = cals[2:4], cals[:2]
    shape = _scan(scan_shape, native_scan, positions, path)
    full = (*shape, *frame)
    frame_bytes = frame[0] * frame[1] * stored.itemsize
    cut = truncated == f"ImageList.{index}.ImageData.Data"  # the file ends in our data
    if truncated is not None:
        meta["truncated"] = truncated
    if kind == "frames":
        held = (os.path.getsize(path) - ref.offset) // frame_bytes if cut else positions
        if shape[0] * shape[1] > held:
            raise ValueError(frame_count_error(path, held, shape[0] * shape[1], shape))
        seg = FrameSegment(str(path.resolve()), ref.offset, frame_bytes, held,
                           os.stat(path).st_mtime_ns)
        stack = FrameStack((seg,), frame, stored.str)
        # the file's byte order is kept: frames are read in place, every operation takes it
        loader = FrameStackLoader(stack, scan_shape=shape, out_shape=frame,
                                  out_dtype=stored.str)
        native = stored
        norm = normalize_chunks(chunks, full, native)
    else:
        if cut:
            raise ValueError(f"path: {path} is truncated inside {truncated} and stores the "
                             "scan fastest: every frame needs bytes from the end of the "
                             "file, so no frame can be read")
        if shape[0] * shape[1] != positions:
            raise ValueError(f"scan_shape: {tuple(shape)} must hold exactly the {positions} "
                             f"positions of {path} (its scan-fastest layout cannot be read "
                             "in part)")
        loader = ScanFastestLoader(str(path.resolve()), ref.offset, stored.str, frame,
                                   positions, shape, os.stat(path).st_mtime_ns)
        if chunks == "auto":  # long runs per detector pixel: the largest default chunks
            chunks = auto_chunks(full, native.itemsize, target_bytes=MAX_CHUNK_BYTES)
        norm = normalize_chunks(chunks, full, native)
        warnings.warn(f"{path} stores the scan fastest (older GMS layout): every chunk reads "
                      f"{frame[0] * frame[1]} short runs spread over the whole file. Convert "
                      "it once for fast reads: stem4d_dask.to_zarr(dc, 'scan.zarr') (or "
                      "`stem4d convert`) reads each byte of it once",
                      stacklevel=user_stacklevel())
    data = lazy_from_loader(loader, full, native, norm, f"dm-{path.name}")
    r = _space(r_cals, R_UNITS) if r_cals is not None and tuple(shape) == native_scan else None
    q = _space(q_cals, Q_UNITS)
    voltage = im.get("ImageTags", {}).get("Microscope Info", {}).get("Voltage")
    energy = float(voltage) if isinstance(voltage, int | float) and math.isfinite(voltage) \
        and voltage > 0 else None
    meta.update(_image_metadata(tree, im))
    kwargs = {}
    if r is not None:  # DM (x, y) -> ours (y, x)
        kwargs.update(r_steps=r[0][::-1], r_units=r[1], r_origin=r[2][::-1])
    if q is not None:
        kwargs.update(q_steps=q[0][::-1], q_units=q[1], q_origin=q[2][::-1])
    return calibrated(data, energy=energy, attrs={"format": "dm", "metadata": meta}, **kwargs)


def _choose(tree, path, image, scan_shape, truncated):
    images = _images(tree)
    if truncated is not None:
        for _, im in images:
            data = im.get("ImageData", {})
            if isinstance(data.get("Data"), ArrayRef) and not (
                    "Dimensions" in data and "DataType" in data):
                ref = data["Data"]
                raise ValueError(
                    f"path: {path} is truncated: it ends at byte {os.path.getsize(path)}, "
                    f"inside {truncated} ({ref.count} values of {ref.itemsize} B from byte "
                    f"{ref.offset}), before the image's Dimensions and DataType tags; if you "
                    f"know them, read the frames it holds as raw data: stem4d_dask.read(path, "
                    f"shape=..., dtype=..., offset={ref.offset})")
    if image is not None:
        found = [im for im in images if im[0] == image]
        if not found:
            raise ValueError(f"image: {path} has no image {image!r} (images: "
                             f"{[k for k, _ in images]}, thumbnails excluded)")
        index, im = found[0]
        if len(_dims(im)) not in (3, 4):
            raise ValueError(f"image: image {index} of {path} has dimensions {_dims(im)}; "
                             "expected 4D, or 3D with scan_shape")
        return index, im
    for want in (4, 3) if scan_shape is not None else (4,):
        for index, im in images:
            if len(_dims(im)) == want:
                return index, im
    shapes = {k: _dims(im) for k, im in images}
    hint = "" if scan_shape is not None else "; a 3D stack reads with scan_shape=(Rx, Ry)"
    raise ValueError(f"path: {path} holds no 4D image (image dimensions, X first: {shapes})"
                     f"{hint}")


def _scan(scan_shape, native, positions, path):
    if scan_shape is None:
        if native is None:
            raise ValueError(f"scan_shape: {path} holds a 3D stack of {positions} frames; "
                             "pass scan_shape=(Rx, Ry)")
        return tuple(native)
    return checked_scan_shape(scan_shape)
