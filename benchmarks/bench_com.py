"""Centre-of-mass rows: from memory beside a dask sum under the same scheduler, from zarr beside
a plain read of the same store, and beside LiberTEM's ``CoMUDF`` (2 dask workers, same .npy
file) when ``.venv-libertem`` exists.
"""

from __future__ import annotations

import shutil

import dask.array as da
import numpy as np

import stem4d_dask as s4
from stem4d_dask.phase import center_of_mass

from .common import Context, Row, libertem_available, median_time, run_libertem


def _discard(dc):
    return da.map_blocks(lambda b: np.zeros((1,) * 4, b.dtype), dc.data, chunks=(1,) * 4).sum()


def rows(ctx: Context) -> list[Row]:
    dc = s4.from_array(ctx.cube)
    floor_s = median_time(lambda: dc.data.sum(dtype=np.uint64).compute(), ctx.repeats)
    com = center_of_mass(dc)
    com_s = median_time(lambda: com.compute(), ctx.repeats)
    out = [
        Row("dask sum, threads (same-scheduler floor)", floor_s, ctx.nbytes),
        Row(
            "center_of_mass, from memory", com_s, ctx.nbytes, f"{floor_s / com_s:.2f}x the dask sum"
        ),
    ]
    store = ctx.workdir / "com.zarr"
    shutil.rmtree(store, ignore_errors=True)
    s4.to_zarr(dc, store, progress=False)
    read_s = median_time(lambda: _discard(s4.read(store)).compute(), ctx.repeats)
    zarr_s = median_time(lambda: center_of_mass(s4.read(store)).compute(), ctx.repeats)
    out.append(Row("zarr read (decompress, discard)", read_s, ctx.nbytes))
    out.append(
        Row(
            "center_of_mass, from zarr",
            zarr_s,
            ctx.nbytes,
            f"{read_s / zarr_s:.2f}x the plain read",
        )
    )
    if libertem_available():
        npy = ctx.workdir / "com.npy"
        np.save(npy, ctx.cube)
        npy_s = median_time(lambda: center_of_mass(s4.read(npy)).compute(), ctx.repeats)
        out.append(Row("center_of_mass, from .npy", npy_s, ctx.nbytes))
        ref = run_libertem("libertem_com.py", npy, ctx.repeats)
        ours = center_of_mass(s4.from_array(ctx.cube[:1, :1])).compute()
        assert np.allclose(
            ref["com00"], [float(ours.com_x[0, 0]), float(ours.com_y[0, 0])], atol=1e-3
        ), "LiberTEM computed another centre of mass"
        out.append(
            Row(
                "LiberTEM CoMUDF, same .npy, 2 dask workers",
                ref["seconds"],
                ctx.nbytes,
                f"ours {ref['seconds'] / npy_s:.1f}x faster "
                f"(vs its best run: {ref['best'] / npy_s:.1f}x)",
            )
        )
    return out
