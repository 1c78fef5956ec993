"""Direct Electron MRC and Gatan DM4 rows: files written from the benchmark scan by the test
writers (tests/writers_mrc_dm.py) and read back lazily (read + sum), in GB/s of the pixel bytes,
beside the dask sum of the same scan in memory. Warm page cache: the files were just written.

- DE movie (+ ``_info.txt``), raster: frames are views of the page cache;
- DE movie, random scan (every position visited once, in a random order, + coordinates CSV):
  each chunk gathers its frames from all over the file (one mapping per frame);
- DM4 with contiguous frames (``Data Order Swapped = 1``): views of the page cache;
- DM4 in the older scan-fastest layout: each chunk reads ``Qx * Qy`` runs of positions and
  transposes them; then its one-time conversion to zarr, and a read + sum of that store.
"""

from __future__ import annotations

import shutil
import warnings

import numpy as np

import stem4d_dask as s4

from .common import Context, Row, format_writers, median_time


def _read_sum(label, path, ctx, note=""):
    def run():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return s4.read(path).data.sum(dtype=np.uint64).compute()

    total = run()
    assert total == int(ctx.cube.sum(dtype=np.uint64)), f"{label} read other data"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dc = s4.read(path)
    chunks = f"{dc.data.npartitions} chunks of {dc.data.chunksize[:2]}"
    return Row(f"{label} read + sum", median_time(run, ctx.repeats), ctx.nbytes, f"{chunks}{note}")


def rows(ctx: Context) -> list[Row]:
    w = format_writers("writers_mrc_dm")
    cube = ctx.cube
    rx, ry, qx, qy = cube.shape
    mem = s4.from_array(cube)
    out = [
        Row(
            "dask sum, threads (same-scheduler floor)",
            median_time(lambda: mem.data.sum(dtype=np.uint64).compute(), ctx.repeats),
            ctx.nbytes,
        )
    ]
    folder = ctx.workdir / "de"
    folder.mkdir(exist_ok=True)

    movie = w.write_de_scan(folder, "20250101_00001", cube)
    out.append(_read_sum("DE MRC movie, raster", movie, ctx))
    movie.unlink()

    rng = np.random.default_rng(0)
    order = rng.permutation(rx * ry)  # frame k is position order[k]
    ys, xs = np.divmod(order, ry)
    movie = w.write_de_movie(
        folder,
        "20250101_00002",
        cube.reshape(rx * ry, qx, qy)[order],
        w.de_info(scan=(ry, rx), frame=(qx, qy), kind="Random"),
        positions=np.stack([xs, ys], axis=1),
    )
    out.append(_read_sum("DE MRC movie, random scan", movie, ctx))
    movie.unlink()

    dm4 = w.write_dm(ctx.workdir / "frames.dm4", cube)
    out.append(_read_sum("DM4, contiguous frames", dm4, ctx))
    dm4.unlink()

    dm4 = w.write_dm(ctx.workdir / "hybrid.dm4", cube, layout="scan-fastest")
    out.append(_read_sum("DM4, scan-fastest (older GMS)", dm4, ctx))
    store = ctx.workdir / "hybrid.zarr"

    def convert():
        shutil.rmtree(store, ignore_errors=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s4.to_zarr(s4.read(dm4), store, progress=False)

    out.append(
        Row(
            "DM4 scan-fastest -> zarr (once)",
            median_time(convert, ctx.repeats),
            ctx.nbytes,
            "zstd + bitshuffle",
        )
    )
    out.append(_read_sum("  then the zarr store", store, ctx))
    dm4.unlink()
    shutil.rmtree(store, ignore_errors=True)
    return out
