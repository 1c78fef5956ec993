"""Electron-counting rows: events from a sparse uint16 scan (dark offset + read noise + ~0.01
electrons per pixel), in GB/s of raw uint16, in memory and from a .npy file."""

from __future__ import annotations

import numpy as np

import stem4d_dask as s4
from stem4d_dask.preprocess.electroncount import electron_count

from .common import Context, Row, median_time


def sparse_scan(shape, seed=0):
    """uint16 frames: dark 100 + N(0, 3) read noise + ~0.01 e-/pixel of ~60 counts each."""
    rng = np.random.default_rng(seed)
    rx, ry, qx, qy = shape
    frame_noise = rng.normal(100, 3, (ry, qx, qy)).astype(np.float32)
    cube = np.empty(shape, np.uint16)
    for i in range(rx):
        frames = np.roll(frame_noise, i, axis=1).copy()
        n = int(0.01 * qx * qy)
        for j in range(ry):
            x, y = rng.integers(1, qx - 1, n), rng.integers(1, qy - 1, n)
            frames[j, x, y] += rng.normal(60, 9, n)
        cube[i] = np.clip(np.rint(frames), 0, 65535)
    return cube, np.full((qx, qy), 100.0, np.float32)


def rows(ctx: Context) -> list[Row]:
    cube, dark = sparse_scan(ctx.cube.shape)
    dc = s4.from_array(cube)
    out = []
    for sub_pixel in (False, True):
        events = electron_count(dc, dark, sub_pixel=sub_pixel, seed=0)
        seconds = median_time(events.compute, ctx.repeats)
        n = events.compute().n_events
        out.append(
            Row(
                f"electron_count, in memory, sub_pixel={sub_pixel}",
                seconds,
                cube.nbytes,
                f"{n / (cube.shape[0] * cube.shape[1]):.0f} events/frame",
            )
        )
    npy = ctx.workdir / "counting.npy"
    np.save(npy, cube)
    events = electron_count(s4.read(npy), dark, seed=0)
    out.append(
        Row(
            "electron_count, from .npy, sub_pixel=True",
            median_time(events.compute, ctx.repeats),
            cube.nbytes,
        )
    )
    return out
