"""Preprocess I rows: binning Q by 2 and a per-position Fourier shift, beside py4DSTEM.

Results are materialised into a preallocated numpy array (``da.store``), as py4DSTEM keeps its
result in memory; py4DSTEM runs in its own venv on the same data (the shift on a subset of scan
rows, as it manages ~1,400 patterns/s) and its GB/s are of the raw bytes it processed.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

import stem4d_dask as s4
from stem4d_dask import preprocess as pp
from stem4d_dask.kernels import fft

from .common import Context, Row, median_time, py4dstem_available, run_py4dstem

PY4DSTEM_OPS = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np, py4DSTEM
from py4DSTEM.preprocess import bin_data_diffraction, datacube_diffraction_shift
cube = np.load(sys.argv[1]); op = sys.argv[2]; repeats = int(sys.argv[3]); rows = int(sys.argv[4])
rng = np.random.default_rng(0)
times = []
for _ in range(repeats):
    if op == "bin":
        dc = py4DSTEM.DataCube(data=cube)
        t0 = time.perf_counter(); bin_data_diffraction(dc, 2)
    else:
        part = np.array(cube[:rows])
        xs = rng.uniform(-3, 3, part.shape[:2]); ys = rng.uniform(-3, 3, part.shape[:2])
        dc = py4DSTEM.DataCube(data=part)
        t0 = time.perf_counter(); datacube_diffraction_shift(dc, xs, ys)
    times.append(time.perf_counter() - t0)
times.sort()
nbytes = cube.nbytes if op == "bin" else cube[:rows].nbytes
print(json.dumps({"seconds": times[len(times) // 2], "nbytes": nbytes}))
"""


def _materialise(out) -> float:
    target = np.empty(out.shape, out.dtype)
    return lambda: da.store(out.data, target, lock=False)


def rows(ctx: Context) -> list[Row]:
    dc = s4.from_array(ctx.cube)
    rng = np.random.default_rng(0)
    xs, ys = rng.uniform(-3, 3, ctx.cube.shape[:2]), rng.uniform(-3, 3, ctx.cube.shape[:2])
    binned = pp.bin_data_diffraction(dc, 2)
    shifted = pp.datacube_diffraction_shift(dc, xs, ys)
    bin_s = median_time(_materialise(binned), ctx.repeats)
    shift_s = median_time(_materialise(shifted), ctx.repeats)
    out = [Row("bin_data_diffraction(2) -> uint32", bin_s, ctx.nbytes)]
    fft.use_fftw(False)
    try:
        scipy_s = median_time(_materialise(shifted), ctx.repeats)
    finally:
        fft.use_fftw(True)
    n = ctx.cube.shape[0] * ctx.cube.shape[1]
    out.append(
        Row(
            "datacube_diffraction_shift per position",
            shift_s,
            ctx.nbytes,
            f"{n / shift_s:,.0f} patterns/s; FFTW {'on' if fft.pyfftw else 'absent'}",
        )
    )
    out.append(
        Row(
            "datacube_diffraction_shift, scipy.fft",
            scipy_s,
            ctx.nbytes,
            f"{n / scipy_s:,.0f} patterns/s",
        )
    )
    if py4dstem_available():
        npy = ctx.workdir / "preprocess.npy"
        np.save(npy, ctx.cube)
        ref = run_py4dstem(PY4DSTEM_OPS, npy, "bin", ctx.repeats, 0)
        ref_gbps = ref["nbytes"] / ref["seconds"] / 1e9
        out.append(
            Row(
                "bin_data_diffraction(2), py4DSTEM 0.14.18",
                ref["seconds"],
                ref["nbytes"],
                f"ours {ctx.nbytes / bin_s / 1e9 / ref_gbps:.1f}x faster",
            )
        )
        rows_subset = max(1, min(ctx.cube.shape[0], 2048 // ctx.cube.shape[1]))
        ref = run_py4dstem(PY4DSTEM_OPS, npy, "shift", ctx.repeats, rows_subset)
        ref_gbps = ref["nbytes"] / ref["seconds"] / 1e9
        patterns = ref["nbytes"] / (ctx.nbytes / n)
        out.append(
            Row(
                "datacube_diffraction_shift, py4DSTEM 0.14.18",
                ref["seconds"],
                ref["nbytes"],
                f"{patterns / ref['seconds']:,.0f} patterns/s; ours "
                f"{ctx.nbytes / shift_s / 1e9 / ref_gbps:.1f}x faster",
            )
        )
    return out
