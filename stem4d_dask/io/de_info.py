"""What Direct Electron's side files beside a movie say: the ``*_info.txt`` (``key = value``
lines: the scan, its repeats and frames per point, the calibration) and, for non-raster scans,
the ``*_scan_coordinates.csv`` (``x, y`` per frame: where each frame was taken).

The info file's scan: ``Scan - Size X/Y`` (or ``Scan - ROI Size X/Y`` when ``Scan - ROI
Enable`` is on), a DE ``(X, Y)`` = (fast, slow) becoming ``(Rx, Ry) = (Y, X)``; ``Scan -
Repeats``; ``Scan - Camera Frames Per Point`` over ``Autosave Movie Sum Count`` movie frames per
point; ``Scan - Type`` / ``Scan - ROI Type`` (``Raster`` or not). Calibration: ``Specimen Pixel
Size X/Y (nanometers)``, ``Instrument Accelerating Voltage (V)`` and ``Diffraction Pixel Size
X/Y`` (no units in the file: the reader's ``diffraction_units=`` says which).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from .metadata import UNITS, key_values, positive_number, text_value

# what read_mrc(diffraction_units=) accepts -> (canonical units, factor)
DIFFRACTION_UNITS = {k: UNITS[k] for k in ("mrad", "1/nm", "nm^-1", "A^-1", "1/A")}
INFO_SUFFIX = "_info.txt"
SCAN_SUFFIX = "_scan_coordinates.csv"


def read_info(path) -> dict:
    """A DE ``*_info.txt`` (``key = value`` lines) as a dict; numbers become int/float."""
    return {key.strip(): text_value(value) for key, value in key_values(path, "=")}


def _prefixes(path: Path) -> list[str]:
    """Name stems the DE side files may share with movie ``path``: ``X_movie.mrc`` -> ``X``,
    and ``X`` without a trailing movie number (``20250429_06688_0_movie.mrc``)."""
    stem = re.sub(r"_movie$", "", path.stem)
    out = [stem]
    bare = re.sub(r"_\d+$", "", stem)
    if bare != stem:
        out.append(bare)
    return out


def side_file(path: Path, given, suffix: str, parameter: str) -> Path | None:
    """The side file of movie ``path``: ``given`` (a path, which must exist), None (none), or
    ``"auto"``: ``<stem><suffix>`` beside the movie (see :func:`_prefixes`), when it exists."""
    if given is None:
        return None
    if given != "auto":
        given = Path(given)
        if not given.is_file():
            raise FileNotFoundError(f"{parameter}: {given} does not exist")
        return given
    for prefix in _prefixes(path):
        candidate = path.with_name(prefix + suffix)
        if candidate.is_file():
            return candidate
    return None


@dataclass
class DeScan:
    """What the info file says about the scan."""

    shape: tuple  # (Rx, Ry)
    origin: tuple  # (Rx, Ry) pixel offset of an ROI in the full scan
    repeats: int
    per_point: int  # movie frames per scan point
    kind: str  # "Raster", "Random", ...

    @property
    def raster(self) -> bool:
        return self.kind.lower() == "raster"


def info_scan(info) -> DeScan | None:
    """The scan an info file describes, or None (scanning off, or no size)."""
    if info.get("Scan - Enable") != "Enable":
        return None
    roi = info.get("Scan - ROI Enable") == "Enable"
    key = "Scan - ROI Size" if roi else "Scan - Size"
    try:
        x, y = int(info[f"{key} X"]), int(info[f"{key} Y"])
    except (KeyError, ValueError, TypeError):
        return None
    if x < 1 or y < 1:
        return None
    origin = (
        (int(info.get("Scan - ROI Offset Y", 0)), int(info.get("Scan - ROI Offset X", 0)))
        if roi
        else (0, 0)
    )
    per_point = max(int(info.get("Scan - Camera Frames Per Point", 1) or 1), 1)
    summed = max(int(info.get("Autosave Movie Sum Count", 1) or 1), 1)
    if per_point % summed == 0:  # the movie sums `summed` camera frames into one
        per_point //= summed
    kind = info.get("Scan - ROI Type") if roi else None
    return DeScan(
        (y, x),
        origin,
        max(int(info.get("Scan - Repeats", 1) or 1), 1),
        per_point,
        str(kind or info.get("Scan - Type", "Raster")),
    )


def read_scan_coordinates(path, scan_shape) -> np.ndarray:
    """The ``x, y`` rows of a DE scan-coordinates CSV as flat positions ``y * X + x`` (one per
    frame, in acquisition order); ``ValueError`` for a position outside ``scan_shape``."""
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            parts = line.replace(";", ",").split(",")
            try:
                rows.append((int(parts[0]), int(parts[1])))
            except (ValueError, IndexError):
                if line.strip() and rows:
                    raise ValueError(
                        f"scan_file: {path} line {number} is not 'x, y': {line.strip()!r}"
                    ) from None
    xy = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
    ny, nx = scan_shape
    bad = np.flatnonzero((xy[:, 0] < 0) | (xy[:, 0] >= nx) | (xy[:, 1] < 0) | (xy[:, 1] >= ny))
    if bad.size:
        x, y = xy[bad[0]]
        raise ValueError(
            f"scan_file: {path} frame {bad[0]} is at x={x}, y={y}, outside the "
            f"{nx} x {ny} (X x Y) scan of the info file"
        )
    return xy[:, 1] * nx + xy[:, 0]


def visit_frames(positions: np.ndarray, n_positions: int, repeat: int) -> np.ndarray:
    """Frame index of each scan position's ``repeat``-th visit (0-based), -1 where none."""
    order = np.argsort(positions, kind="stable")
    ranked = positions[order]
    first = np.searchsorted(ranked, ranked, side="left")
    visit = np.arange(ranked.size) - first
    out = np.full(n_positions, -1, dtype=np.int64)
    pick = visit == repeat
    out[ranked[pick]] = order[pick]
    return out


def info_calibration(info, scan: DeScan | None, diffraction_units) -> dict:
    """:func:`~.metadata.calibrated` keywords from the info file: scan steps (nm, when both
    are positive) and the ROI's origin (only with the info file's ``scan``), detector steps
    in ``diffraction_units`` (None: pixels), beam energy (eV)."""
    r_steps, r_units, r_origin = (1.0, 1.0), "pixels", (0.0, 0.0)
    q_steps, q_units = (1.0, 1.0), "pixels"
    if scan is not None:
        sx = positive_number(info.get("Specimen Pixel Size X (nanometers)"))
        sy = positive_number(info.get("Specimen Pixel Size Y (nanometers)"))
        if sx is not None and sy is not None:
            r_steps, r_units = (sy, sx), "nm"
        r_origin = (scan.origin[0] * r_steps[0], scan.origin[1] * r_steps[1])
    if diffraction_units is not None:
        if diffraction_units not in DIFFRACTION_UNITS:
            raise ValueError(
                f"diffraction_units must be one of {sorted(DIFFRACTION_UNITS)}, "
                f"got {diffraction_units!r}"
            )
        qx = positive_number(info.get("Diffraction Pixel Size X"))
        qy = positive_number(info.get("Diffraction Pixel Size Y"))
        if qx is None or qy is None:
            raise ValueError(
                "diffraction_units: the info file has no positive Diffraction "
                f"Pixel Size X/Y (got {info.get('Diffraction Pixel Size X')!r}, "
                f"{info.get('Diffraction Pixel Size Y')!r})"
            )
        q_units, factor = DIFFRACTION_UNITS[diffraction_units]
        q_steps = (qy * factor, qx * factor)
    energy = positive_number(info.get("Instrument Accelerating Voltage (V)"))
    return {
        "r_steps": r_steps,
        "r_units": r_units,
        "r_origin": r_origin,
        "q_steps": q_steps,
        "q_units": q_units,
        "energy": energy,
    }


def scan_visits(path, *, info_file="auto", scan_file="auto") -> xr.DataArray:
    """How many frames a DE movie holds for each scan position, as an ``(Rx, Ry)`` int
    DataArray (0 = never visited: the datacube reads zeros there). A raster scan gives its
    repeats everywhere."""
    path = Path(path)
    info_path = side_file(path, info_file, INFO_SUFFIX, "info_file")
    scan = info_scan(read_info(info_path)) if info_path is not None else None
    if scan is None:
        raise ValueError(f"path: {path} has no DE info file describing a scan")
    if scan.raster:
        counts = np.full(scan.shape, scan.repeats, dtype=np.int64)
    else:
        csv = side_file(path, scan_file, SCAN_SUFFIX, "scan_file")
        if csv is None:
            raise ValueError(f"{path}: no scan coordinates file for its {scan.kind!r} scan")
        positions = read_scan_coordinates(csv, scan.shape)
        counts = np.bincount(positions, minlength=scan.shape[0] * scan.shape[1])
        counts = counts.reshape(scan.shape)
    return xr.DataArray(counts, dims=("Rx", "Ry"), name="visits")
