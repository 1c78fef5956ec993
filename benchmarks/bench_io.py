"""I/O rows: zarr write, zarr read, npy -> zarr conversion, and .h5 read beside py4DSTEM."""

from __future__ import annotations

import shutil

import dask.array as da
import numpy as np

import stem4d_dask as s4

from .common import Context, Row, median_time, py4dstem_available, run_py4dstem

PY4DSTEM_READ = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import py4DSTEM
times = []
for _ in range(int(sys.argv[2])):
    t0 = time.perf_counter()
    dc = py4DSTEM.read(sys.argv[1])
    total = int(dc.data.sum(dtype="uint64"))
    times.append(time.perf_counter() - t0)
times.sort()
print(json.dumps({"seconds": times[len(times) // 2], "total": total}))
"""


def _discard(dc):
    """Read (and decompress) every chunk, keep nothing: a pure read."""
    return da.map_blocks(lambda b: np.zeros((1,) * 4, b.dtype), dc.data, chunks=(1,) * 4).sum()


def _ratio(ctx, store) -> float:
    return ctx.nbytes / sum(p.stat().st_size for p in store.rglob("*") if p.is_file())


def rows(ctx: Context) -> list[Row]:
    dc = s4.from_array(ctx.cube)
    store = ctx.workdir / "bench.zarr"
    npy = ctx.workdir / "bench.npy"
    h5 = ctx.workdir / "bench.h5"

    def clear():
        shutil.rmtree(store, ignore_errors=True)

    out = [
        Row(
            "zarr write (zstd+bitshuffle, sharded)",
            median_time(lambda: s4.to_zarr(dc, store, progress=False), ctx.repeats, clear),
            ctx.nbytes,
        )
    ]
    clear()
    s4.to_zarr(dc, store, progress=False)
    ratio = _ratio(ctx, store)
    out.append(
        Row(
            "zarr read (decompress, discard)",
            median_time(lambda: _discard(s4.read(store)).compute(), ctx.repeats),
            ctx.nbytes,
            f"compression {ratio:.1f}x",
        )
    )
    out.append(
        Row(
            "zarr read + sum",
            median_time(lambda: s4.read(store).data.sum(dtype="uint64").compute(), ctx.repeats),
            ctx.nbytes,
        )
    )
    clear()
    s4.to_zarr(dc, store, compressor="lz4", progress=False)
    ratio = _ratio(ctx, store)
    out.append(
        Row(
            "zarr read, lz4+bitshuffle (decompress, discard)",
            median_time(lambda: _discard(s4.read(store)).compute(), ctx.repeats),
            ctx.nbytes,
            f"compression {ratio:.1f}x",
        )
    )
    np.save(npy, ctx.cube)
    out.append(
        Row(
            "npy -> zarr conversion",
            median_time(
                lambda: s4.to_zarr(s4.read(npy), store, progress=False), ctx.repeats, clear
            ),
            ctx.nbytes,
        )
    )
    s4.to_h5(dc, h5, progress=False)
    ours = median_time(lambda: s4.read(h5).data.sum(dtype="uint64").compute(), ctx.repeats)
    out.append(Row("h5 (EMD) read + sum", ours, ctx.nbytes))
    if py4dstem_available():
        ref = run_py4dstem(PY4DSTEM_READ, h5, ctx.repeats)
        assert ref["total"] == int(ctx.cube.sum(dtype=np.uint64)), "py4DSTEM read other data"
        out.append(
            Row(
                "h5 (EMD) read + sum, py4DSTEM 0.14.18",
                ref["seconds"],
                ctx.nbytes,
                f"ours {ref['seconds'] / ours:.1f}x faster",
            )
        )
    return out
