"""Merlin ``.mib`` rows: read + sum and read + centre of mass of a 12-bit (``U16``) single-chip
file written from the scan, beside LiberTEM's ``CoMUDF`` on the same file with its own ``.mib``
reader (2 dask workers, when ``.venv-libertem`` exists) and RosettaSciIO's lazy reader + sum.

Every timed run opens the file (``stem4d_dask.read``: headers only) and reads every frame from the
page cache, warm after an untimed first run.
"""

from __future__ import annotations

import os
import sys

import numpy as np

import stem4d_dask as s4
from stem4d_dask.phase import center_of_mass

from .common import ROOT, Context, Row, libertem_available, median_time, run_libertem


def _write(ctx: Context):
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from writers_mib import write_mib
    finally:
        sys.path.remove(str(ROOT / "tests"))
    path = write_mib(ctx.workdir / "merlin.mib", ctx.cube, depth=12)
    with open(path, "rb") as f:  # written back before timing: no writeback during the runs
        os.fsync(f.fileno())
    return path


def _timed(fn, repeats):
    fn()  # warm the page cache and compile
    return median_time(fn, repeats)


def rows(ctx: Context) -> list[Row]:
    path = _write(ctx)
    note = f"{ctx.cube.shape[2]}x{ctx.cube.shape[3]} U16 frames, 384-byte headers"
    sum_s = _timed(lambda: s4.read(path).data.sum(dtype=np.uint64).compute(), ctx.repeats)
    com_s = _timed(lambda: center_of_mass(s4.read(path)).compute(), ctx.repeats)
    out = [
        Row(".mib read + sum", sum_s, ctx.nbytes, note),
        Row(".mib read + center_of_mass", com_s, ctx.nbytes),
    ]
    if libertem_available():
        ref = run_libertem("libertem_com.py", path.with_suffix(".hdr"), ctx.repeats, "mib")
        ours = center_of_mass(s4.read(path)[:1, :1]).compute()
        assert np.allclose(
            ref["com00"], [float(ours.com_x[0, 0]), float(ours.com_y[0, 0])], atol=1e-3
        ), "LiberTEM computed another centre of mass"
        out.append(
            Row(
                "LiberTEM CoMUDF, same .mib, 2 dask workers",
                ref["seconds"],
                ctx.nbytes,
                f"ours {ref['seconds'] / com_s:.2f}x faster "
                f"(vs its best run: {ref['best'] / com_s:.2f}x)",
            )
        )
    try:
        from rsciio.quantumdetector import file_reader
    except ImportError:
        return out

    def rsciio_sum():
        data = file_reader(str(path), lazy=True)[0]["data"]
        return data.sum(dtype=np.uint64).compute()

    out.append(
        Row("RosettaSciIO lazy .mib read + sum", _timed(rsciio_sum, ctx.repeats), ctx.nbytes)
    )
    return out
