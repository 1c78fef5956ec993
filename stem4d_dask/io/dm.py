"""Gatan Digital Micrograph ``.dm4`` / ``.dm3`` 4D-STEM files, read lazily.

File layout: a header (version i32 = 4 or 3, root size u64 (DM4) or u32 (DM3), data byte order
i32: 1 = little-endian), then a tree of tag groups and data tags, always big-endian in its
structure (DM4 sizes and counts are u64, DM3 u32); the values themselves are in the data byte
order. Opening walks the tree, skipping array payloads, and records where
``ImageList.<i>.ImageData.Data`` starts; thumbnails (``Thumbnails.<k>.ImageIndex``) are skipped.
``ImageData.Dimensions`` lists the axes X-fastest, so the stored array is C-ordered with the
dimensions reversed; ``DataType`` gives the pixel type (1 int16, 2 float32, 6 uint8, 7 int32,
9 int8, 10 uint16, 11 uint32, 12 float64, 14 bool; complex and RGB types are refused).

Two 4D layouts exist (told apart and read by :mod:`stem4d_dask.io.dm_layout`):

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
from pathlib import Path

import numpy as np

from ..checks import checked_scan_shape
from .dm_layout import ScanFastestLoader, choose_layout, layout_axes, scan_fastest_array
from .dm_tags import ArrayRef, read_tags, tags_metadata
from .frames import FrameSegment, FrameStack, FrameStackLoader, frame_count_error, scan_array
from .metadata import Q_VENDOR_UNITS, R_VENDOR_UNITS, calibrated, positive_number

DATA_TYPES = {1: "i2", 2: "f4", 6: "u1", 7: "i4", 9: "i1", 10: "u2", 11: "u4", 12: "f8", 14: "b1"}
UNSUPPORTED_TYPES = {
    3: "complex64",
    4: "packed complex",
    5: "packed complex",
    8: "RGB",
    13: "complex128",
    23: "RGBA",
    27: "packed complex64",
    28: "packed complex128",
}


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


# --- choosing the image, its calibrations and metadata -------------------------------------


def _listed(group) -> list:
    """A tag group's values in order: a group of unnamed tags already is a list."""
    return group if isinstance(group, list) else list(group.values())


def _images(tree) -> list[tuple[int, dict]]:
    """``(index in ImageList, image)`` of the images that are not thumbnails."""
    thumbs = _listed(tree.get("Thumbnails", []))
    skip = {t.get("ImageIndex") for t in thumbs if isinstance(t, dict)}
    return [
        (k, im)
        for k, im in enumerate(_listed(tree.get("ImageList", [])))
        if k not in skip and isinstance(im, dict)
    ]


def _dims(image) -> list[int]:
    """``ImageData.Dimensions``: the axes' lengths, X (fastest) first."""
    return [int(d) for d in _listed(image.get("ImageData", {}).get("Dimensions", []))]


def _calibrations(image, n: int) -> list[dict]:
    """``n`` axis calibrations (``Scale``, ``Origin``, ``Units``), X first; {} where none."""
    cal = _listed(image.get("ImageData", {}).get("Calibrations", {}).get("Dimension", []))
    return [c if isinstance(c, dict) else {} for c in cal] + [{}] * (n - len(cal))


def _space(cals, table):
    """``(steps, units, origins)`` for two calibrations ``(x, y)`` over our axes, or None.
    ``table``: the units the space may have (:data:`~.metadata.R_VENDOR_UNITS` or
    :data:`~.metadata.Q_VENDOR_UNITS`)."""
    out = []
    for c in cals:
        units = str(c.get("Units", "")).strip()
        scale = positive_number(c.get("Scale", 1.0))
        if units not in table or scale is None:
            return None
        unit, factor = table[units]
        origin = c.get("Origin", 0.0)
        origin = float(origin) if isinstance(origin, int | float) and math.isfinite(origin) else 0.0
        out.append((unit, scale * factor, -origin * scale * factor))
    if out[0][0] != out[1][0]:
        return None
    return tuple(o[1] for o in out), out[0][0], tuple(o[2] for o in out)


def _image_metadata(tree, im) -> dict:
    """The read image's name, tags and calibrations, a list of every image in the file, and
    the file's other tags."""
    listing = [
        {
            "index": k,
            "name": other.get("Name"),
            "dimensions": _dims(other),
            "data_type": other.get("ImageData", {}).get("DataType"),
        }
        for k, other in enumerate(_listed(tree.get("ImageList", [])))
        if isinstance(other, dict)
    ]
    return tags_metadata(
        {
            "name": im.get("Name"),
            "image_tags": im.get("ImageTags", {}),
            "calibrations": im.get("ImageData", {}).get("Calibrations", {}),
            "images": listing,
            "tags": {k: v for k, v in tree.items() if k != "ImageList"},
        }
    )


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
        raise TypeError(
            f"path: {path} image {index} holds {UNSUPPORTED_TYPES[dtype_code]} "
            f"pixels (DataType {dtype_code}); a datacube holds real numbers"
        )
    if dtype_code not in DATA_TYPES:
        raise ValueError(f"path: {path} image {index} has an unknown DataType {dtype_code!r}")
    stored = np.dtype(DATA_TYPES[dtype_code]).newbyteorder(endian)
    ref = im["ImageData"].get("Data")
    if not isinstance(ref, ArrayRef):
        raise ValueError(f"path: {path} image {index} has no ImageData.Data array")
    declared = int(np.prod(dims))
    if ref.count * ref.itemsize != declared * stored.itemsize:
        raise ValueError(
            f"path: {path} is corrupt: image {index}'s data holds "
            f"{ref.count * ref.itemsize} bytes but its Dimensions {dims} of "
            f"{stored} need {declared * stored.itemsize}"
        )
    cals = _calibrations(im, len(dims))
    meta = {
        "dm_version": version,
        "image": index,
        "dimensions": dims,
        "data_type": dtype_code,
        "byte_order": "little" if endian == "<" else "big",
    }
    if len(dims) == 3:
        kind, frame, positions, native_scan = "frames", (dims[1], dims[0]), dims[2], None
        q_cals, r_cals = cals[:2], None
        meta["layout"] = "frames (3D stack)"
    else:
        kind, how = choose_layout(im, cals, layout, path)
        meta["layout"], meta["layout_from"] = kind, how
        frame, positions, native_scan, q_cals, r_cals = layout_axes(dims, cals, kind)
    shape = _scan(scan_shape, native_scan, positions, path)
    frame_bytes = frame[0] * frame[1] * stored.itemsize
    cut = truncated == f"ImageList.{index}.ImageData.Data"  # the file ends in our data
    if truncated is not None:
        meta["truncated"] = truncated
    if kind == "frames":
        held = (os.path.getsize(path) - ref.offset) // frame_bytes if cut else positions
        if shape[0] * shape[1] > held:
            raise ValueError(frame_count_error(path, held, shape[0] * shape[1], shape))
        seg = FrameSegment.in_file(path, ref.offset, frame_bytes, held)
        stack = FrameStack((seg,), frame, stored.str)
        # the file's byte order is kept: frames are read in place, every operation takes it
        loader = FrameStackLoader(stack, scan_shape=shape, out_shape=frame, out_dtype=stored.str)
        data = scan_array(loader, chunks, f"dm-{path.name}")
    else:
        data = scan_fastest_array(
            path, ref.offset, stored, frame, positions, shape, chunks, truncated if cut else None
        )
    r = (
        _space(r_cals, R_VENDOR_UNITS)
        if r_cals is not None and tuple(shape) == native_scan
        else None
    )
    q = _space(q_cals, Q_VENDOR_UNITS)
    energy = positive_number(im.get("ImageTags", {}).get("Microscope Info", {}).get("Voltage"))
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
                "Dimensions" in data and "DataType" in data
            ):
                ref = data["Data"]
                raise ValueError(
                    f"path: {path} is truncated: it ends at byte {os.path.getsize(path)}, "
                    f"inside {truncated} ({ref.count} values of {ref.itemsize} B from byte "
                    f"{ref.offset}), before the image's Dimensions and DataType tags; if you "
                    f"know them, read the frames it holds as raw data: stem4d_dask.read(path, "
                    f"shape=..., dtype=..., offset={ref.offset})"
                )
    if image is not None:
        found = [im for im in images if im[0] == image]
        if not found:
            raise ValueError(
                f"image: {path} has no image {image!r} (images: "
                f"{[k for k, _ in images]}, thumbnails excluded)"
            )
        index, im = found[0]
        if len(_dims(im)) not in (3, 4):
            raise ValueError(
                f"image: image {index} of {path} has dimensions {_dims(im)}; "
                "expected 4D, or 3D with scan_shape"
            )
        return index, im
    for want in (4, 3) if scan_shape is not None else (4,):
        for index, im in images:
            if len(_dims(im)) == want:
                return index, im
    shapes = {k: _dims(im) for k, im in images}
    hint = "" if scan_shape is not None else "; a 3D stack reads with scan_shape=(Rx, Ry)"
    raise ValueError(f"path: {path} holds no 4D image (image dimensions, X first: {shapes}){hint}")


def _scan(scan_shape, native, positions, path):
    if scan_shape is None:
        if native is None:
            raise ValueError(
                f"scan_shape: {path} holds a 3D stack of {positions} frames; "
                "pass scan_shape=(Rx, Ry)"
            )
        return tuple(native)
    return checked_scan_shape(scan_shape)


__all__ = ["is_dm", "read_dm", "read_tags", "ScanFastestLoader"]
