"""EMPAD (Electron Microscope Pixel Array Detector) ``.raw`` + ``.xml`` files, read lazily.

The ``.raw`` file has no header: frame ``k`` (acquisition order) is 130 rows x 128 columns of
little-endian float32 at byte ``k * 66560``, and its last 2 rows (1024 B) are a footer, dropped
here: a datacube frame is the first 128 x 128 values (``Qx`` = stored rows, ``Qy`` = columns, no
flip). The ``.xml`` beside it names the raw file (``raw_file@filename``) and holds the scan:
``scan_parameters[@mode="acquire"]`` (or ``"search"`` when the file's size fits that one)
``scan_resolution_x`` (fast) and ``_y`` (slow) give ``(Rx, Ry) = (y, x)``; older files give
``pix_x``/``pix_y``; a ``type = series`` file has ``count`` frames, read as ``(count, 1)``.

Calibration from the XML: beam energy ``iom_measurements/high_voltage`` (V = eV); scan step
``full_scan_field_of_view/x`` (m, the field of the larger scan axis, equal to ``y``) /
``scale_factor`` / ``max(scan_resolution)``, or in older files
``optics.get_full_scan_field_of_view`` ``[x, y]`` (m) / resolution per axis (``scan_size`` is
kept in the metadata, not applied); detector ``calibrated_diffraction_angle`` (rad, as mrad)
or older ``calibrated_pixelsize`` (x 1e9 = 1/nm, as 1/A), else pixels. The other XML values
go to ``attrs["metadata"]["xml"]``. EMPAD-G2 files (packed 128 x 128 words, no footer) are refused.
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from ..checks import checked_scan_shape
from .frames import FrameSegment, FrameStack, FrameStackLoader, frame_count_error, scan_array
from .metadata import calibrated, positive_number, text_value

ROWS, COLS, DATA_ROWS = 130, 128, 128
STRIDE = ROWS * COLS * 4  # 66560 B per stored frame, footer included
FRAME_BYTES = DATA_ROWS * COLS * 4  # 65536 B of pixels
G2_FRAME_BYTES = 128 * 128 * 4  # EMPAD-G2: packed words, no footer
_XML_HEAD = 1 << 20  # sniff at most this many bytes of an XML file
_RAW_NAME = re.compile(rb"<raw_file\b[^>]*\bfilename\s*=\s*[\"']([^\"']*)[\"']")


def is_empad(path) -> bool:
    """True for an EMPAD ``.xml`` (an XML ``<root>`` naming a ``raw_file``) or a ``.raw``
    file with such an XML beside it. Reads XML headers only, never pixel data."""
    path = Path(path)
    if not path.is_file():
        return False
    suffix = path.suffix.lower()
    if suffix == ".xml":
        return _raw_name(path) is not None
    if suffix == ".raw":
        return _xml_for_raw(path) is not None
    return False


def _raw_name(xml_path: Path) -> str | None:
    """The raw file named by an EMPAD XML (from its first MiB), else None."""
    try:
        with open(xml_path, "rb") as f:
            head = f.read(_XML_HEAD)
    except OSError:
        return None
    if b"<root" not in head:
        return None
    match = _RAW_NAME.search(head)
    return match.group(1).decode("utf-8", "replace") if match else None


def _xml_for_raw(raw_path: Path) -> Path | None:
    """The EMPAD XML in the raw file's folder that names it (same stem first), else None."""
    name = raw_path.name
    same = raw_path.with_suffix(".xml")
    candidates = [same] + sorted(p for p in raw_path.parent.glob("*.xml") if p != same)
    for xml in candidates[:256]:
        if xml.is_file() and (found := _raw_name(xml)) is not None and _basename(found) == name:
            return xml
    return None


def _basename(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1]


def read_empad(path, *, scan_shape=None, chunks="auto"):
    """Lazy datacube ``(Rx, Ry, 128, 128)`` float32 from an EMPAD acquisition.

    ``path``: the ``.xml`` file or the ``.raw`` file (its XML is found beside it, as the XML
    that names it). ``scan_shape``: ``(Rx, Ry)`` = (slow, fast), overriding the XML; required
    when there is no XML; the file must then hold at least ``Rx * Ry`` frames. Without it the
    shape comes from the XML and the file must hold exactly that many frames (else
    ``ValueError`` naming both). ``chunks``: as :func:`stem4d_dask.from_array` (default whole
    frames, 32-128 MiB scan blocks). Calibration: see the module docstring.
    """
    path = Path(path)
    if path.suffix.lower() == ".xml":
        xml = path
        name = _raw_name(xml)
        if name is None:
            raise ValueError(f"path: {xml} is not an EMPAD XML file (no <raw_file filename=...>)")
        raw = xml.parent / _basename(name)
        if not raw.is_file():
            raise FileNotFoundError(
                f"path: {xml} names the raw file {name!r}, but {raw} does not exist; if it was "
                "renamed, open the .raw itself with scan_shape=(Rx, Ry)"
            )
    else:
        raw, xml = path, _xml_for_raw(path)
    size = os.path.getsize(raw)
    if size % G2_FRAME_BYTES == 0 and size % STRIDE != 0:
        raise ValueError(
            f"path: {raw} ({size} bytes) looks like an EMPAD-G2 file (128 x 128 packed words, "
            f"no footer: {size // G2_FRAME_BYTES} frames of {G2_FRAME_BYTES} B), which "
            f"stem4d_dask does not decode; EMPAD (G1) frames are {STRIDE} B (if this is an EMPAD "
            "file cut short, read its whole frames with scan_shape=)"
        )
    info = _parse_xml(xml) if xml is not None else {}
    segment = FrameSegment.of_file(raw, 0, STRIDE, FRAME_BYTES)  # frames with all 128 rows
    if scan_shape is not None:
        shape = checked_scan_shape(scan_shape)
    elif xml is None:
        raise ValueError(
            f"scan_shape: no EMPAD .xml beside {raw} names it, so the scan shape is unknown; "
            f"pass scan_shape=(Rx, Ry) (the file holds {segment.count} whole frames)"
        )
    else:
        shape = _shape_from_xml(info, raw, xml, size, segment.count)
    needed = shape[0] * shape[1]
    if segment.count < needed:
        raise ValueError(frame_count_error(raw, segment.count, needed, shape))
    stack = FrameStack((segment,), (DATA_ROWS, COLS), "<f4")
    loader = FrameStackLoader(stack, shape, (DATA_ROWS, COLS), "<f4")
    data = scan_array(loader, chunks, f"empad-{raw.name}")
    cal = _calibration(info, info.get("matched"))
    metadata = {
        "raw_file": raw.name,
        "xml_file": xml.name if xml else None,
        "scan_source": "scan_shape=" if scan_shape is not None else info["matched"][0],
        "frame_bytes": STRIDE,
        "footer_bytes": STRIDE - FRAME_BYTES,
        "calibration": cal["notes"],
        "xml": info.get("tree"),
    }
    return calibrated(
        data,
        r_steps=cal["r_step"],
        r_units=cal["r_units"],
        q_steps=(cal["q_step"],) * 2,
        q_units=cal["q_units"],
        energy=cal["energy"],
        attrs={"format": "empad", "metadata": metadata},
    )


# --- the XML --------------------------------------------------------------------------------


def _parse_xml(xml: Path) -> dict:
    """Scan shapes, calibration values and the whole tree (JSON-able) of an EMPAD XML."""
    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as err:
        raise ValueError(f"path: {xml} is not readable XML: {err}") from None
    info = {"tree": _to_json(root), "shapes": []}
    kind = (root.findtext("type") or "scan").strip()
    if kind == "series":
        count = _int(root.findtext("count")) or _int(root.findtext("scan_parameters/series_count"))
        if count:
            info["shapes"].append(("type=series count", (count, 1)))
    for mode in ("acquire", "search"):
        for sp in root.findall("scan_parameters"):
            x = _int(sp.findtext("scan_resolution_x"))
            y = _int(sp.findtext("scan_resolution_y"))
            if sp.get("mode") == mode and x and y:
                info["shapes"].append((f'scan_parameters mode="{mode}"', (y, x)))
                info.setdefault("resolution", {})[mode] = (y, x)
                break
    px, py = _int(root.findtext("pix_x")), _int(root.findtext("pix_y"))
    if px and py:
        info["shapes"].append(("pix_x/pix_y", (py, px)))
    name = _basename(_raw_name(xml) or "")
    if (m := re.fullmatch(r"scan_x(\d+)_y(\d+)\.raw", name)) and not info["shapes"]:
        info["shapes"].append(("the raw file name", (int(m.group(2)), int(m.group(1)))))
    iom = root.find("iom_measurements")
    if iom is not None:
        info["high_voltage"] = _float(iom.findtext("high_voltage"))
        fov = iom.find("full_scan_field_of_view")
        if fov is not None:
            info["fov"] = tuple(_float(fov.findtext(k)) for k in ("x", "y", "scale_factor"))
        legacy = iom.findtext("optics.get_full_scan_field_of_view")
        if legacy:
            info["fov_xy"] = _floats(legacy)
        info["diffraction_angle"] = _float(iom.findtext("calibrated_diffraction_angle"))
        info["calibrated_pixelsize"] = _float(iom.findtext("calibrated_pixelsize"))
    return info


def _shape_from_xml(info, raw, xml, size, n_frames) -> tuple:
    """The first of the XML's scan shapes that the raw file holds exactly (``n_frames``
    frames of 128 rows, and nothing past the last frame's footer)."""
    shapes = info["shapes"]
    if not shapes:
        raise ValueError(
            f"scan_shape: {xml} gives no scan shape (no scan_parameters, pix_x/"
            "pix_y or series count); pass scan_shape=(Rx, Ry)"
        )
    for label, shape in shapes:
        if n_frames == shape[0] * shape[1] and size <= n_frames * STRIDE:
            info["matched"] = (label, shape)
            return shape
    label, shape = shapes[0]
    needed = shape[0] * shape[1]
    said = "; ".join(f"{lbl} {shp} = {shp[0] * shp[1]} frames" for lbl, shp in shapes)
    if n_frames < needed:
        raise ValueError(
            frame_count_error(raw, n_frames, needed, shape) + f" (the XML {xml.name} says {said})"
        )
    raise ValueError(
        f"{raw}: holds {n_frames} frames of {STRIDE} B ({size} bytes), but {xml.name} says "
        f"{said}; none fits the file. Pass scan_shape=(Rx, Ry) to read the first Rx * Ry "
        "frames"
    )


def _calibration(info, matched) -> dict:
    """``from_array`` calibration from the parsed XML, and notes on where each came from."""
    notes = {}
    out = {
        "energy": None,
        "r_step": (1.0, 1.0),
        "r_units": "pixels",
        "q_step": 1.0,
        "q_units": "pixels",
        "notes": notes,
    }
    hv = info.get("high_voltage")
    if _positive(hv):
        out["energy"] = hv
        notes["energy"] = "iom_measurements/high_voltage (V)"
    shape = matched[1] if matched else (info["shapes"][0][1] if info.get("shapes") else None)
    fov = info.get("fov")
    if (
        shape is not None
        and fov
        and all(_positive(v) for v in fov)
        and math.isclose(fov[0], fov[1], rel_tol=1e-9)
    ):
        step = fov[0] / fov[2] / max(shape) * 1e10
        out.update(r_step=(step, step), r_units="A")
        notes["scan_step"] = (
            "full_scan_field_of_view/x / scale_factor / max(scan resolution) "
            "(m -> A); scan_size not applied"
        )
    elif (
        shape is not None
        and info.get("fov_xy")
        and len(info["fov_xy"]) == 2
        and all(_positive(v) for v in info["fov_xy"])
    ):
        fx, fy = info["fov_xy"]
        out.update(r_step=(fy / shape[0] * 1e10, fx / shape[1] * 1e10), r_units="A")
        notes["scan_step"] = "optics.get_full_scan_field_of_view [x, y] / resolution (m -> A)"
    if _positive(info.get("diffraction_angle")):
        out.update(q_step=info["diffraction_angle"] * 1e3, q_units="mrad")
        notes["q_pixel_size"] = "calibrated_diffraction_angle (rad -> mrad)"
    elif _positive(info.get("calibrated_pixelsize")):
        out.update(q_step=info["calibrated_pixelsize"] * 1e8, q_units="A^-1")
        notes["q_pixel_size"] = "calibrated_pixelsize x 1e9 = 1/nm (as RosettaSciIO) -> 1/A"
    return out


def _positive(value) -> bool:
    return positive_number(value) is not None


def _int(text):
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None


def _float(text):
    try:
        return float(str(text).strip())
    except (TypeError, ValueError):
        return None


def _floats(text):
    values = [_float(v) for v in re.split(r"[\s,;()\[\]]+", text) if v]
    return None if any(v is None for v in values) else values


def _to_json(elem):
    """An element as JSON-able values: attributes and children by tag (a repeated tag as a
    list), text as a number/bool/str; a leaf with neither attributes nor children is its
    text."""
    children = list(elem)
    text = (elem.text or "").strip()
    if not children and not elem.attrib:
        return text_value(text) if text else None
    out = {k: text_value(v) for k, v in elem.attrib.items()}
    tags = [child.tag for child in children]
    for child in children:
        key = child.tag if child.tag not in elem.attrib else f"{child.tag}_element"
        if tags.count(child.tag) > 1:
            out.setdefault(key, []).append(_to_json(child))
        else:
            out[key] = _to_json(child)
    if text:
        out["text"] = text_value(text)
    return out
