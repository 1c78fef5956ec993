"""DECTRIS ARINA rows: the benchmark scan written as an ARINA acquisition by the test writer
(tests/writers_hdf5.py: master + data files of 10000 bitshuffle-LZ4 frames + side-car), read
back lazily (read + sum) in GB/s of the raw (uncompressed) bytes, beside plain h5py +
hdf5plugin reading the same files, and the generic HDF5 dataset reader on the same data
(compressed: h5py per chunk; contiguous: mapped). Warm page cache: the files were just written.
"""

from __future__ import annotations

import time

import dask
import h5py
import numpy as np

import stem4d_dask as s4
from stem4d_dask.io.arina import read_arina

from .common import Context, Row, format_writers, median_time


def _check(total, ctx, label):
    assert int(total) == int(ctx.cube.sum(dtype=np.uint64)), f"{label} read other data"


def rows(ctx: Context) -> list[Row]:
    import hdf5plugin  # noqa: F401  (h5py's filters for the reference rows)

    w = format_writers("writers_hdf5")
    cube = ctx.cube
    n = cube.shape[0] * cube.shape[1]
    folder = ctx.workdir / "arina"
    folder.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    master = w.write_arina(folder, cube, frames_per_file=10000)
    written = time.perf_counter() - t0
    stored = sum(p.stat().st_size for p in folder.glob("scan_00_data_*.h5"))
    ratio = f"bslz4 {ctx.nbytes / stored:.1f}x, {-(-n // 10000)} data files"
    mem = s4.from_array(cube)
    out = [
        Row(
            "dask sum in memory, threads (scheduler floor)",
            median_time(lambda: mem.data.sum(dtype=np.uint64).compute(), ctx.repeats),
            ctx.nbytes,
        )
    ]
    out.append(Row("ARINA write (test writer, h5py + hdf5plugin)", written, ctx.nbytes, ratio))

    def ours():
        return read_arina(master).data.sum(dtype=np.uint64).compute()

    _check(ours(), ctx, "ARINA")
    dc = read_arina(master)
    seconds = median_time(ours, ctx.repeats)
    out.append(
        Row(
            "ARINA read + sum (preadv + numba bslz4, threads)",
            seconds,
            ctx.nbytes,
            f"{dc.data.npartitions} chunks of {dc.data.chunksize[:2]}; "
            f"{n / seconds / 1e3:.0f}k frames/s",
        )
    )
    with dask.config.set(scheduler="sync"):
        seconds = median_time(ours, ctx.repeats)
    out.append(
        Row(
            "ARINA read + sum (preadv + numba bslz4, sync)",
            seconds,
            ctx.nbytes,
            f"one thread; {n / seconds / 1e3:.0f}k frames/s",
        )
    )

    def open_only():
        return read_arina(master)

    out.append(
        Row(
            "ARINA open (metadata + chunk index)",
            median_time(open_only, ctx.repeats),
            ctx.nbytes,
            "GB/s of the scan it indexes",
        )
    )

    data_files = sorted(folder.glob("scan_00_data_*.h5"))

    def h5py_whole():
        total = 0
        for path in data_files:
            with h5py.File(path, "r") as f:
                total += int(f["entry/data/data"][:].sum(dtype=np.uint64))
        return total

    _check(h5py_whole(), ctx, "h5py")
    seconds = median_time(h5py_whole, ctx.repeats)
    out.append(
        Row(
            "h5py + hdf5plugin d[:] + numpy sum (1 thread)",
            seconds,
            ctx.nbytes,
            f"{n / seconds / 1e3:.0f}k frames/s",
        )
    )

    def generic():
        total = 0
        for path in data_files:
            with h5py.File(path, "r") as f:
                count = f["entry/data/data"].shape[0]
            dc = s4.read(path, dataset="entry/data/data", scan_shape=(count, 1))
            total += int(dc.data.sum(dtype=np.uint64).compute())
        return total

    _check(generic(), ctx, "read_hdf5")
    out.append(
        Row(
            "HDF5 dataset read + sum (h5py per chunk, threads)",
            median_time(generic, ctx.repeats),
            ctx.nbytes,
            "same bslz4 data files",
        )
    )

    plain = folder / "plain.h5"
    w.write_dataset(plain, "frames", cube.reshape(n, *cube.shape[2:]), mode="w")

    def contiguous():
        return (
            s4.read(plain, dataset="frames", scan_shape=cube.shape[:2])
            .data.sum(dtype=np.uint64)
            .compute()
        )

    _check(contiguous(), ctx, "contiguous")
    out.append(
        Row(
            "HDF5 dataset read + sum (contiguous, mapped)",
            median_time(contiguous, ctx.repeats),
            ctx.nbytes,
            "uncompressed",
        )
    )
    return out
