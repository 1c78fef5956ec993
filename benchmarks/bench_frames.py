"""Users' own functions: ``map_frames`` (a Python function called on every frame, the same
function vectorized over a chunk, a ragged output) and ``reduce_frames`` (maximum pattern),
from the same ``.npy`` file, beside a plain numpy loop over the frames and, when
``.venv-libertem`` exists, beside LiberTEM UDFs doing the same (2 dask workers).
"""

from __future__ import annotations

import numpy as np

import stem4d_dask as s4

from .common import Context, Row, libertem_available, median_time, run_libertem


def disk(shape):
    """The bright-field disk of ``benchmarks.common.make_cube``'s frames."""
    qx, qy = shape
    yy, xx = np.mgrid[:qx, :qy]
    return (yy - qx / 2) ** 2 + (xx - qy / 2) ** 2 < (min(qx, qy) / 6) ** 2


def disk_sum(frame, mask):
    return frame[mask].sum(dtype=np.float64)


def disk_sums(block, mask):
    return block[:, :, mask].sum(axis=-1, dtype=np.float64)


def bright(frame):
    xs, ys = np.nonzero(frame > 60)
    return {"qx": xs.astype(np.uint16), "qy": ys.astype(np.uint16)}


def rows(ctx: Context) -> list[Row]:
    npy = ctx.workdir / "frames.npy"
    np.save(npy, ctx.cube)
    dc = s4.read(npy)
    mask = disk(ctx.cube.shape[2:])
    n_frames = ctx.cube.shape[0] * ctx.cube.shape[1]

    def loop():
        return [disk_sum(f, mask) for f in ctx.cube.reshape(-1, *ctx.cube.shape[2:])]

    loop_s = median_time(loop, ctx.repeats)
    mem = s4.from_array(ctx.cube)
    memory_s = median_time(lambda: mem.stem4d.map_frames(disk_sum, mask).compute(), ctx.repeats)
    vector_s = median_time(
        lambda: mem.stem4d.map_frames(disk_sums, mask, vectorized=True).compute(), ctx.repeats
    )
    per_frame_s = median_time(lambda: dc.stem4d.map_frames(disk_sum, mask).compute(), ctx.repeats)
    ragged_s = median_time(lambda: dc.stem4d.map_frames(bright, ragged=True).compute(), ctx.repeats)
    max_s = median_time(
        lambda: dc.stem4d.reduce_frames(
            lambda b: b.max(axis=(0, 1)), np.maximum, vectorized=True
        ).compute(),
        ctx.repeats,
    )

    def rate(seconds):
        return f"{n_frames / seconds:,.0f} frames/s"

    out = [
        Row("numpy loop of the per-frame function (1 thread)", loop_s, ctx.nbytes, rate(loop_s)),
        Row(
            "map_frames, per-frame function, from memory",
            memory_s,
            ctx.nbytes,
            f"{rate(memory_s)}; {loop_s / memory_s:.2f}x the loop",
        ),
        Row(
            "map_frames, vectorized, from memory",
            vector_s,
            ctx.nbytes,
            f"{rate(vector_s)}; {loop_s / vector_s:.2f}x the loop",
        ),
        Row(
            "map_frames, per-frame function, from .npy", per_frame_s, ctx.nbytes, rate(per_frame_s)
        ),
        Row("map_frames, ragged (bright pixels), .npy", ragged_s, ctx.nbytes, rate(ragged_s)),
        Row("reduce_frames, maximum pattern, .npy", max_s, ctx.nbytes, rate(max_s)),
    ]
    if libertem_available():
        ref = run_libertem("libertem_frames.py", npy, ctx.repeats)
        assert np.isclose(ref["total00"], disk_sum(ctx.cube[0, 0], mask)), "LiberTEM differs"
        assert np.isclose(ref["max_sum"], ctx.cube.max(axis=(0, 1)).sum()), "LiberTEM differs"
        out.append(
            Row(
                "LiberTEM UDF, per-frame (process_frame), 2 workers",
                ref["per_frame"],
                ctx.nbytes,
                f"map_frames (same .npy) {ref['per_frame'] / per_frame_s:.2f}x faster",
            )
        )
        out.append(
            Row(
                "LiberTEM UDF, maximum pattern (merge), 2 workers",
                ref["reduction"],
                ctx.nbytes,
                f"reduce_frames {ref['reduction'] / max_s:.2f}x faster",
            )
        )
    return out
