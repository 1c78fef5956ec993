"""Test-only writers of HDF5 layouts: DECTRIS ARINA / EIGER NeXus acquisitions (master + data
files + side-car), legacy EMD 0.x / py4DSTEM <= 0.13 files, and plain datasets.

Our own code, written from the layouts described in ``stem4d_dask/io/arina.py`` and
``stem4d_dask/io/hdf5.py`` (and checked against the real files in the shared data folder).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

DETECTOR = "entry/instrument/detector"


def _frames(cube) -> np.ndarray:
    cube = np.asarray(cube)
    return cube.reshape(-1, *cube.shape[-2:])


def write_arina(
    folder,
    cube,
    *,
    prefix="scan_00",
    frames_per_file=None,
    sidecar=True,
    pixel_size_nm=0.25,
    high_tension=200e3,
    camera_length=0.1,
    x_pixel_size=75e-6,
    bit_depth=None,
    compression="bslz4",
    extra_frames=None,
    scan_xy=None,
    written=None,
) -> Path:
    """Write ``cube`` ``(Rx, Ry, Qx, Qy)`` (or frames ``(N, Qx, Qy)``) as an ARINA acquisition
    in ``folder``: ``{prefix}_master.h5`` with ExternalLinks to ``{prefix}_data_00000N.h5``
    (``frames_per_file`` frames each; default all in one), and the side-car ``{prefix}.h5``
    ("STEM Metadata": NumPixelsX = Ry, NumPixelsY = Rx, Pixel Size nm, High Tension V, Camera
    Length m) unless ``sidecar=False``. ``compression``: ``"bslz4"`` (bitshuffle + LZ4, one
    frame per chunk, as the detector writes), ``"gzip"`` or ``None``. ``extra_frames``: frames
    appended after the scan. ``scan_xy``: the side-car's (NumPixelsX, NumPixelsY) when not
    the cube's. ``written``: how many frames of the last data file are actually written
    (the others have no stored chunk, as after an aborted acquisition). Returns the master's
    path."""
    folder = Path(folder)
    cube = np.asarray(cube)
    frames = _frames(cube)
    if extra_frames is not None:
        frames = np.concatenate([frames, extra_frames])
    n, rows, cols = frames.shape
    per = frames_per_file or n
    bits = bit_depth or frames.dtype.itemsize * 8
    master = folder / f"{prefix}_master.h5"
    with h5py.File(master, "w") as f:
        f.attrs["default"] = np.bytes_(b"entry")
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = np.bytes_(b"NXentry")
        data = entry.create_group("data")
        data.attrs["NX_class"] = np.bytes_(b"NXdata")
        det = f.create_group(DETECTOR)
        det.attrs["NX_class"] = np.bytes_(b"NXdetector")
        values = {
            "bit_depth_image": np.uint32(bits),
            "bit_depth_readout": np.uint32(8),
            "saturation_value": np.uint32(min(2**bits - 1, 8352)),
            "description": np.bytes_(b"Dectris ARINA CZT"),
            "countrate_correction_applied": np.uint32(1),
            "flatfield_correction_applied": np.uint32(0),
        }
        for key, value in values.items():
            det[key] = value
        for key, value, unit in (
            ("x_pixel_size", x_pixel_size, b"m"),
            ("y_pixel_size", x_pixel_size, b"m"),
            ("frame_time", 1e-4, b"s"),
            ("count_time", 9.95e-5, b"s"),
            ("detector_distance", 0.0, b"m"),
        ):
            det[key] = np.float64(value)
            det[key].attrs["units"] = np.bytes_(unit)
        spec = det.create_group("detectorSpecific")
        for key, value in (
            ("nimages", 1),
            ("ntrigger", n),
            ("x_pixels_in_detector", cols),
            ("y_pixels_in_detector", rows),
        ):
            spec[key] = np.uint32(value)
        spec["compression"] = np.bytes_(b"bslz4")
        spec["photon_energy"] = np.float32(high_tension)
        spec["photon_energy"].attrs["units"] = np.bytes_(b"eV")
        mask = np.zeros((rows, cols), dtype=np.uint32)
        mask[1, 2] = 2  # a dead pixel at row 1, column 2
        mask[rows - 1, 0] = 8
        spec["pixel_mask"] = mask
        spec["flatfield"] = 1 + 0.01 * np.arange(rows * cols, dtype=np.float32).reshape(
            rows, cols
        ) / (rows * cols)
        spec["countrate_correction_table"] = np.zeros((40, 2), np.float32)
        for i, first in enumerate(range(0, n, per)):
            name = f"{prefix}_data_{i + 1:06d}.h5"
            last = first + per >= n
            _write_data_file(
                folder / name,
                frames[first : first + per],
                first + 1,
                compression,
                written if last else None,
            )
            data[f"data_{i + 1:06d}"] = h5py.ExternalLink(name, "/entry/data/data")
    if sidecar:
        rx, ry = cube.shape[:2] if cube.ndim == 4 else (n, 1)
        x, y = scan_xy or (ry, rx)
        with h5py.File(folder / f"{prefix}.h5", "w") as f:
            g = f.create_group("STEM Metadata")
            g.attrs["NumPixelsX"] = np.int64(x)
            g.attrs["NumPixelsY"] = np.int64(y)
            g.attrs["NumPixelsPrescan"] = np.array([0], dtype=np.uint32)
            g.attrs["Pixel Size"] = np.array([pixel_size_nm])
            g.attrs["High Tension"] = np.array([high_tension])
            g.attrs["Camera Length"] = np.array([camera_length])
            g.attrs["ScanDwellTime"] = np.array([1e-4])
            g.attrs["Rotation"] = np.array([0.0])
    return master


def _write_data_file(path, frames, first, compression, written=None):
    kwargs = {
        "bslz4": hdf5plugin.Bitshuffle(cname="lz4"),
        "gzip": {"compression": "gzip"},
        None: {},
    }[compression]
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = np.bytes_(b"NXentry")
        group = entry.create_group("data")
        group.attrs["NX_class"] = np.bytes_(b"NXdata")
        dset = group.create_dataset(
            "data", shape=frames.shape, dtype=frames.dtype, chunks=(1, *frames.shape[1:]), **kwargs
        )
        dset[: len(frames) if written is None else written] = frames[:written]
        dset.attrs["image_nr_low"] = np.uint64(first)
        dset.attrs["image_nr_high"] = np.uint64(first + len(frames) - 1)


def chunk_position(data_file, frame) -> tuple[int, int]:
    """(byte offset, size) of frame ``frame``'s chunk in an ARINA data file."""
    with h5py.File(data_file, "r") as f:
        info = f["entry/data/data"].id.get_chunk_info_by_coord((frame, 0, 0))
        return info.byte_offset, info.size


def corrupt_chunk(data_file, frame, how="sizes"):
    """Damage frame ``frame``'s stored chunk in place: ``"sizes"`` overwrites its first block's
    size field (framing no longer adds up), ``"lz4"`` zeroes its first LZ4 block (the decoder
    fails), ``"header"`` changes the uncompressed size in its header."""
    offset, size = chunk_position(data_file, frame)
    with open(data_file, "r+b") as f:
        if how == "sizes":
            f.seek(offset + 12)
            f.write((2**31).to_bytes(4, "big"))
        elif how == "lz4":
            f.seek(offset + 12)
            block = int.from_bytes(f.read(4), "big")
            f.write(b"\0" * block)
        elif how == "header":
            f.seek(offset)
            f.write((12345).to_bytes(8, "big"))
        else:
            raise ValueError(how)


def truncate(path, keep_bytes):
    os.truncate(path, keep_bytes)


def store_unfiltered(data_file, frame):
    """Rewrite frame ``frame``'s chunk as its plain bytes with the filter skipped
    (``filter_mask=1``), as HDF5 does when a filter declines a chunk."""
    with h5py.File(data_file, "r+") as f:
        dset = f["entry/data/data"]
        values = dset[frame]
        dset.id.write_direct_chunk((frame, 0, 0), values.tobytes(), filter_mask=1)


# --- legacy EMD / py4DSTEM ------------------------------------------------------------------


def _metadata_item(group, key, value):
    """One py4DSTEM 0.13 Metadata item: a dataset with a ``type`` attr (bytes)."""
    if isinstance(value, str):
        dset, kind = group.create_dataset(key, data=np.bytes_(value)), "string"
    elif isinstance(value, bool):
        dset, kind = group.create_dataset(key, data=value, dtype=bool), "bool"
    elif isinstance(value, list | tuple):
        dset, kind = group.create_dataset(key, data=np.asarray(value)), "list"
    else:
        dset, kind = group.create_dataset(key, data=value), "number"
    dset.attrs["type"] = np.bytes_(kind)


def write_py4dstem_v13(
    path,
    data,
    *,
    root="4DSTEM",
    name="datacube",
    r_pixel_size=1.0,
    r_units="pixels",
    q_pixel_size=1.0,
    q_units="pixels",
    version=("0", "13", "17"),
    extra=None,
    chunks=None,
):
    """A py4DSTEM 0.13 file: top group ``root`` (emd_group_type 'root', version strings) holding
    a DataCube group ``name`` (emd_group_type 1, py4dstem_class 'DataCube'): ``data``,
    ``dim0``..``dim3`` ([0, step] with name/units) and a ``calibration`` Metadata group
    (R/Q_pixel_size, R/Q_pixel_units). ``extra``: {name: array} more Array groups beside it."""
    data = np.asarray(data)
    with h5py.File(path, "w") as f:
        top = f.create_group(root)
        top.attrs.create("emd_group_type", "root")
        for key, value in zip(
            ("version_major", "version_minor", "version_release"), version, strict=True
        ):
            top.attrs.create(key, value)
        _v13_array(
            top,
            name,
            data,
            "DataCube",
            chunks,
            [
                (r_pixel_size, r_units, "Rx"),
                (r_pixel_size, r_units, "Ry"),
                (q_pixel_size, q_units, "Qx"),
                (q_pixel_size, q_units, "Qy"),
            ],
        )
        cal = top[name].create_group("calibration")
        cal.attrs.create("emd_group_type", 0)
        cal.attrs.create("py4dstem_class", "Calibration")
        for key, value in (
            ("Q_pixel_size", q_pixel_size),
            ("R_pixel_size", r_pixel_size),
            ("Q_pixel_units", q_units),
            ("R_pixel_units", r_units),
        ):
            _metadata_item(cal, key, value)
        for key, array in (extra or {}).items():
            array = np.asarray(array)
            _v13_array(
                top[name],
                key,
                array,
                "Array",
                None,
                [(1, "pixels", f"dim{i}") for i in range(array.ndim)],
            )


def _v13_array(parent, name, data, cls, chunks, dims):
    group = parent.create_group(name)
    group.attrs.create("emd_group_type", 1)
    group.attrs.create("py4dstem_class", cls)
    dset = group.create_dataset("data", data=data, chunks=chunks)
    dset.attrs.create("units", "pixel intensity")
    for i, (step, units, dim_name) in enumerate(dims):
        vec = group.create_dataset(f"dim{i}", data=np.array([0.0, step]))
        vec.attrs.create("name", dim_name)
        vec.attrs.create("units", units)


def write_py4dstem_v12(
    path,
    data,
    *,
    topgroup="4DSTEM_experiment",
    name="datacube_0",
    version=(0, 12, 3),
    dataset="data",
    calibration=None,
    chunks=None,
    compression=None,
):
    """A py4DSTEM 0.5-0.12 file: ``topgroup`` (emd_group_type 2, version ints) / data /
    datacubes / ``name`` (emd_group_type 1) holding ``dataset`` ('datacube' before 0.6) and
    ``dim1``..``dim4`` (aranges, units '[pix]'); the other data groups empty; ``calibration``
    ({key: value}) written as datasets of metadata/calibration."""
    data = np.asarray(data)
    with h5py.File(path, "w") as f:
        top = f.create_group(topgroup)
        top.attrs.create("emd_group_type", 2)
        for key, value in zip(
            ("version_major", "version_minor", "version_release"), version, strict=True
        ):
            top.attrs.create(key, value)
        groups = top.create_group("data")
        for kind in (
            "datacubes",
            "counted_datacubes",
            "diffractionslices",
            "realslices",
            "pointlists",
            "pointlistarrays",
            "coordinates",
        ):
            groups.create_group(kind)
        cube = groups["datacubes"].create_group(name)
        cube.attrs.create("emd_group_type", 1)
        cube.create_dataset(dataset, data=data, chunks=chunks, compression=compression)
        for i, dim_name in enumerate(("R_x", "R_y", "Q_x", "Q_y")):
            vec = cube.create_dataset(f"dim{i + 1}", data=np.arange(data.shape[i], dtype="f8"))
            vec.attrs.create("name", np.bytes_(dim_name))
            vec.attrs.create("units", np.bytes_("[pix]"))
        meta = top.create_group("metadata")
        for kind in ("microscope", "sample", "user", "calibration", "comments"):
            meta.create_group(kind)
        for key, value in (calibration or {}).items():
            meta["calibration"][key] = np.bytes_(value) if isinstance(value, str) else value


def write_emd_v02(path, data, *, group="data/scan", dims=None, version=(0, 2)):
    """A Berkeley EMD 0.x file: root attrs version_major/minor, an EMD data group ``group``
    (emd_group_type 1) holding ``data`` and ``dim1``..``dimN``. ``dims``: per axis
    ``(vector, name, units)`` (default pixel aranges, units '[pix]')."""
    data = np.asarray(data)
    dims = dims or [
        (np.arange(n, dtype="f8"), f"axis{i}", "[pix]") for i, n in enumerate(data.shape)
    ]
    with h5py.File(path, "w") as f:
        f.attrs.create("version_major", version[0])
        f.attrs.create("version_minor", version[1])
        g = f.create_group(group)
        g.attrs.create("emd_group_type", 1)
        g.create_dataset("data", data=data)
        for i, (vec, dim_name, units) in enumerate(dims):
            d = g.create_dataset(f"dim{i + 1}", data=np.asarray(vec, dtype="f8"))
            d.attrs.create("name", np.bytes_(dim_name))
            d.attrs.create("units", np.bytes_(units))
        for extra in ("microscope", "sample", "user", "comments"):
            f.create_group(extra)


# --- plain datasets -------------------------------------------------------------------------


def write_dataset(path, name, data, *, chunks=None, compression=None, mode="a", **filters):
    """``data`` as dataset ``name`` of ``path`` (appended to an existing file by default).
    ``compression``: None, 'gzip', 'lzf', 'bslz4' (bitshuffle+LZ4), 'zstd' (hdf5plugin)."""
    kwargs = {"bslz4": hdf5plugin.Bitshuffle(cname="lz4"), "zstd": hdf5plugin.Zstd(), None: {}}.get(
        compression, {"compression": compression}
    )
    with h5py.File(path, mode) as f:
        f.create_dataset(name, data=np.asarray(data), chunks=chunks, **kwargs, **filters)
    return Path(path)
