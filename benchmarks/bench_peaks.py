"""Bragg peak rows: ``find_peaks`` (py4DSTEM's ``get_maxima_2D`` on every frame, lazily, one
task per scan chunk, each a call of the chunk kernel ``get_maxima_2D_chunk``) beside a plain
Python loop of py4DSTEM 0.14.18's ``get_maxima_2D`` (in its own venv), a plain loop of our
per-frame kernel and a plain loop of our chunk kernel over the same chunks (no dask), on the
same frames.

The frames are our own: ``ctx.cube``'s one central disk has one peak per frame, which says
nothing about a peak search. Each is a crystal's diffraction pattern at ``ctx.cube``'s
detector size: a lattice of Bragg disks (radius 3 px, soft edges) whose intensity falls off
with scattering angle, a central beam ~40x the brightest Bragg disk, the lattice shifted and
strained a little from frame to frame, Poisson counts (central beam ~400 e-/px, background
~0.2 e-/px), as float32. The search smooths by ``sigma=2``, keeps peaks above 0.5% of the
brightest (``minRelativeIntensity``, py4DSTEM's ``find_Bragg_disks`` default), at least 6 px
apart and 4 px from the edges, at most 70 per frame (~31 found at 128 x 128), refined by
``'poly'`` on 1,024 frames and by ``'multicorr'`` on 256.

GB/s are of the float32 frames searched; the notes give frames per second and the ratios of the
same run. ``find_peaks`` runs on a datacube of 8 scan-row chunks (so both cores get tasks) and
materialises every chunk's peaks (``.compute()``); for 'poly' also on a local cluster of 2
single-thread process workers reading the frames from a ``.npy`` file. The chunk kernel's
compiled loops (Gaussian smoothing, pixel maxima, minSpacing suppression) release the GIL, so
dask's threads overlap them; the rest of a chunk (sorting, filters and refinement, vectorised
over the chunk's candidates) is numpy. The 'multicorr' DFT upsampling multiplies small complex
matrices through BLAS, per peak, whose own threads compete with dask's: a second row runs it
with BLAS limited to one thread (threadpoolctl, when installed).
"""

from __future__ import annotations

import json
import time

import numpy as np

import stem4d_dask as s4
from stem4d_dask.kernels.maxima import get_maxima_2D
from stem4d_dask.kernels.maxima_chunk import get_maxima_2D_chunk
from stem4d_dask.peaks import find_peaks

from .common import Context, Row, median_time, py4dstem_available, run_py4dstem

PARAMS = dict(
    subpixel="poly",
    sigma=2,
    minRelativeIntensity=0.005,
    minSpacing=6,
    edgeBoundary=4,
    maxNumPeaks=70,
)
SCAN = (32, 32)  # 1,024 frames (64 MiB of float32 at 128 x 128)
MULTICORR_ROWS = 8  # 'multicorr' on the first 8 scan rows (256 frames), 1 row a chunk

PY4DSTEM_LOOP = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np
from py4DSTEM.preprocess import get_maxima_2D
frames = np.load(sys.argv[1]); repeats = int(sys.argv[2]); params = json.loads(sys.argv[3])
times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    found = [get_maxima_2D(f, **params) for f in frames]
    times.append(time.perf_counter() - t0)
times.sort()
print(json.dumps({"seconds": times[len(times) // 2], "frames": len(frames),
                  "peaks": int(sum(len(p) for p in found)), "nbytes": frames.nbytes}))
"""


def bragg_frames(scan, q, seed=0) -> np.ndarray:
    """float32 ``(*scan, q, q)`` Poisson counts of Bragg-disk patterns (module docstring)."""
    rng = np.random.default_rng(seed)
    xx, yy = np.mgrid[:q, :q].astype(np.float32)
    centre = (q - 1) / 2
    i, j = (v.ravel() for v in np.mgrid[-12:13, -12:13])
    base = np.array([[q / 9.0, 0.0], [q / 27.0, q / 10.0]])  # lattice vectors, pixels
    n_means = 16  # distinct lattices; frames are Poisson draws around them
    means = np.empty((n_means, q, q), np.float32)
    for k in range(n_means):
        strain = np.eye(2) + rng.normal(0, 0.01, (2, 2))
        g = np.column_stack([i, j]) @ (base @ strain)
        g += rng.uniform(-1.0, 1.0, 2)  # descan / tilt: the pattern wanders a little
        r = np.hypot(*g.T)
        keep = (np.abs(g) < centre + 4).all(axis=1)
        strength = 10.0 * np.exp(-((r / (q / 4)) ** 2)) * rng.uniform(0.5, 1.5, r.size)
        strength[(i == 0) & (j == 0)] = 400.0  # the central beam
        mean = np.full((q, q), 0.2, np.float32)
        for (gx, gy), s in zip(g[keep], strength[keep], strict=True):
            d = np.hypot(xx - centre - gx, yy - centre - gy)
            mean += s / (1 + np.exp((d - 3.0) / 0.5))  # a disk of radius 3 px, soft edge
        means[k] = mean
    frames = np.empty((*scan, q, q), np.float32)
    for rx in range(scan[0]):
        picks = rng.integers(0, n_means, scan[1])
        frames[rx] = rng.poisson(means[picks]).astype(np.float32)
    return frames


def _plain_loop(frames, params):
    return lambda: [get_maxima_2D(f, **params) for f in frames]


def _chunk_loop(frames, params):
    """The chunk kernel on ``frames`` ``(rows, cols, q, q)``, 8 chunks of rows, in a loop."""
    step = frames.shape[0] // 8
    return lambda: [
        get_maxima_2D_chunk(frames[r : r + step], **params) for r in range(0, frames.shape[0], step)
    ]


def _one_blas_thread(fn):
    """``fn`` run with BLAS limited to one thread (threadpoolctl), or None without it."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None

    def run():
        with threadpool_limits(limits=1, user_api="blas"):
            fn()

    return run


def _on_process_workers(npy, params, repeats) -> float:
    """Median seconds of ``find_peaks(...).compute()`` of the scan in ``npy`` (read by the
    workers, 8 chunks) on a local cluster of 2 single-thread process workers (started, and
    warmed by one untimed run, outside the timing). Each run starts once the scheduler has
    forgotten the last one's tasks (else it may hand back the results it still holds)."""
    import distributed

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
        client.as_current(),
    ):
        cube = s4.read(npy)
        cube = s4.read(npy, chunks=(cube.shape[0] // 8, cube.shape[1]))
        found = find_peaks(cube, **params)

        def forgotten():  # the last run's results released: nothing reused
            for _ in range(500):
                if not client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)):
                    return
                time.sleep(0.01)
            raise RuntimeError("the scheduler still holds the last run's tasks")

        found.compute()  # warm: imports and first calls on the workers
        return median_time(found.compute, repeats, setup=forgotten)


def rows(ctx: Context) -> list[Row]:
    q = ctx.cube.shape[2]
    frames = bragg_frames(SCAN, q)
    out = []
    for label, params, rows_used in (
        ("poly", PARAMS, SCAN[0]),
        ("multicorr", {**PARAMS, "subpixel": "multicorr"}, MULTICORR_ROWS),
    ):
        sub = frames[:rows_used]
        flat = sub.reshape(-1, q, q)
        n, nbytes = flat.shape[0], flat.nbytes
        cube = s4.from_array(sub, chunks=(rows_used // 8, SCAN[1], q, q))  # 8 chunks
        found = find_peaks(cube, **params)
        ours_s = median_time(found.compute, ctx.repeats)
        n_peaks = int(found.compute().n_items)
        loop_s = median_time(_plain_loop(flat, params), ctx.repeats)
        chunk_s = median_time(_chunk_loop(sub, params), ctx.repeats)
        ref = None
        if py4dstem_available():
            npy = ctx.workdir / "peaks_frames.npy"
            np.save(npy, flat)
            ref = run_py4dstem(PY4DSTEM_LOOP, npy, ctx.repeats, json.dumps(params))
        same = "" if ref is None else "" if ref["peaks"] == n_peaks else " (py4DSTEM: MISMATCH)"
        vs = f"; {ref['seconds'] / ours_s:.1f}x py4DSTEM's loop" if ref else ""
        out.append(
            Row(
                f"find_peaks '{label}', threads",
                ours_s,
                nbytes,
                f"{n / ours_s:,.0f} frames/s, {n_peaks / n:.0f} peaks/frame{same}; "
                f"{loop_s / ours_s:.2f}x our plain loop{vs}",
            )
        )
        if label == "poly":
            npy = ctx.workdir / "peaks_scan.npy"
            np.save(npy, sub)
            cluster_s = _on_process_workers(npy, params, ctx.repeats)
            out.append(
                Row(
                    f"find_peaks '{label}', 2 process workers, from .npy",
                    cluster_s,
                    nbytes,
                    f"{n / cluster_s:,.0f} frames/s; {loop_s / cluster_s:.2f}x our plain loop"
                    + (f"; {ref['seconds'] / cluster_s:.1f}x py4DSTEM's loop" if ref else ""),
                )
            )
        limited = _one_blas_thread(found.compute) if label == "multicorr" else None
        if limited is not None:
            one_s = median_time(limited, ctx.repeats)
            out.append(
                Row(
                    f"find_peaks '{label}', threads, 1 BLAS thread",
                    one_s,
                    nbytes,
                    f"{n / one_s:,.0f} frames/s; {loop_s / one_s:.2f}x our plain loop"
                    + (f"; {ref['seconds'] / one_s:.1f}x py4DSTEM's loop" if ref else ""),
                )
            )
        out.append(
            Row(
                f"get_maxima_2D_chunk '{label}', no dask",
                chunk_s,
                nbytes,
                f"{n / chunk_s:,.0f} frames/s; {loop_s / chunk_s:.2f}x our plain loop"
                + (f"; {ref['seconds'] / chunk_s:.1f}x py4DSTEM's loop" if ref else ""),
            )
        )
        out.append(
            Row(
                f"get_maxima_2D '{label}', our kernel, plain loop",
                loop_s,
                nbytes,
                f"{n / loop_s:,.0f} frames/s"
                + (f"; {ref['seconds'] / loop_s:.1f}x py4DSTEM's loop" if ref else ""),
            )
        )
        if ref:
            out.append(
                Row(
                    f"get_maxima_2D '{label}', py4DSTEM 0.14.18 loop",
                    ref["seconds"],
                    ref["nbytes"],
                    f"{n / ref['seconds']:,.0f} frames/s",
                )
            )
    return out
