"""Preprocess II rows: dark subtraction and hot-pixel filtering, streamed from a .npy file.

Each output chunk is reduced to nothing as soon as it is made, so the rows measure streaming
throughput; the note gives the peak memory traced while computing (tracemalloc, numpy
buffers included), which stays bounded by chunk size x threads, not by the scan size.
"""

from __future__ import annotations

import tracemalloc

import dask.array as da
import numpy as np

import stem4d_dask as s4
from stem4d_dask import preprocess as pp

from .common import Context, Row, median_time, py4dstem_available, run_py4dstem

HOT = [(17, 23), (40, 90), (64, 64), (64, 65), (100, 12), (120, 127)]

PY4DSTEM_HOT = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np, py4DSTEM
from py4DSTEM.preprocess import filter_hot_pixels
cube = np.load(sys.argv[1]); times = []
for _ in range(int(sys.argv[2])):
    dc = py4DSTEM.DataCube(data=np.array(cube))   # it repairs in place: a fresh copy each time
    t0 = time.perf_counter(); filter_hot_pixels(dc, 200); times.append(time.perf_counter() - t0)
times.sort()
print(json.dumps({"seconds": times[len(times) // 2], "nbytes": cube.nbytes}))
"""


def _drain(out):
    """Compute every chunk of ``out`` and keep one number per chunk."""
    return da.map_blocks(
        lambda b: np.zeros((1,) * b.ndim, b.dtype), out.data, chunks=(1,) * out.ndim
    ).sum()


def _peak_mib(fn) -> float:
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def rows(ctx: Context) -> list[Row]:
    cube = ctx.cube.copy()
    for x, y in HOT:
        if x < cube.shape[2] and y < cube.shape[3]:
            cube[:, :, x, y] += 1000
    npy = ctx.workdir / "corrections.npy"
    np.save(npy, cube)
    del cube
    dc = s4.read(npy, chunks={"Rx": 8})  # 8 scan rows per chunk: 32 MiB at 128^4
    dark = pp.get_darkreference(dc, 256, width_x=8, width_y=8, seed=0).compute()
    subtract = _drain(pp.subtract_dark(dc, dark))
    hot = _drain(pp.filter_hot_pixels(dc, 200))
    chunk_mib = np.prod([c[0] for c in dc.data.chunks]) * 2 / 2**20
    out = []
    for name, graph in (
        ("subtract_dark (float32 out)", subtract),
        ("filter_hot_pixels (mean pass + repair)", hot),
    ):
        seconds = median_time(graph.compute, ctx.repeats)
        peak = _peak_mib(graph.compute)
        out.append(
            Row(
                f"{name}, from .npy",
                seconds,
                ctx.nbytes,
                f"peak {peak:.0f} MiB traced for {ctx.nbytes / 2**20:.0f} MiB "
                f"({chunk_mib:.0f} MiB chunks)",
            )
        )
    if py4dstem_available():
        ref = run_py4dstem(PY4DSTEM_HOT, npy, ctx.repeats)
        ours = out[-1].seconds
        out.append(
            Row(
                "filter_hot_pixels, py4DSTEM 0.14.18 (in memory)",
                ref["seconds"],
                ref["nbytes"],
                f"ours {ref['seconds'] / ours:.1f}x faster",
            )
        )
    return out
