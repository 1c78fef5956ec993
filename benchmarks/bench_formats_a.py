"""EMPAD and NanoMegas .blo rows: files written from the benchmark scan by the test writers
(tests/writers_frames.py) and read back lazily: open + map each chunk (the readers return views
of the page cache, so this touches no pixel) and read + sum, in GB/s of the file's bytes (frame
headers and footers included), beside the dask sum of the same scan in memory. Warm page
cache: the files were just written.

EMPAD frames are 128 x 128 float32 (+ a 1 KiB footer): the scan's frames are cropped/padded to
128 x 128 and cast, on as many scan rows as fill about the scan's own size.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

import stem4d_dask as s4

from .common import Context, Row, format_writers, median_time


def _discard(dc):
    return da.map_blocks(lambda b: np.zeros((1,) * 4, b.dtype), dc.data, chunks=(1,) * 4).sum()


def _frames_128(cube):
    """``cube``'s frames cropped / zero-padded to 128 x 128, as float32."""
    out = np.zeros(cube.shape[:2] + (128, 128), dtype=np.float32)
    qx, qy = min(cube.shape[2], 128), min(cube.shape[3], 128)
    out[..., :qx, :qy] = cube[..., :qx, :qy]
    return out


def _read_rows(label, path, nbytes, repeats, dtype, **options):
    dc = s4.read(path, **options)
    read_s = median_time(lambda: _discard(s4.read(path, **options)).compute(), repeats)
    sum_s = median_time(lambda: s4.read(path, **options).data.sum(dtype=dtype).compute(), repeats)
    chunks = f"{dc.data.npartitions} chunks of {dc.data.chunksize[:2]}"
    return [
        Row(f"{label} open+map", read_s, nbytes, chunks),
        Row(f"{label} read + sum", sum_s, nbytes),
    ]


def rows(ctx: Context) -> list[Row]:
    w = format_writers("writers_frames")
    cube = ctx.cube
    mem = s4.from_array(cube)
    out = [
        Row(
            "dask sum, threads (same-scheduler floor)",
            median_time(lambda: mem.data.sum(dtype=np.uint64).compute(), ctx.repeats),
            ctx.nbytes,
        )
    ]

    ry = cube.shape[1]
    rx = max(1, min(cube.shape[0], ctx.nbytes // (ry * w.EMPAD_ROWS * w.EMPAD_COLS * 4)))
    folder = ctx.workdir / "empad"
    folder.mkdir(exist_ok=True)
    xml, raw = w.write_empad(folder, _frames_128(cube[:rx]))
    out += _read_rows(
        f"EMPAD {rx}x{ry}x128x128 f32", xml, raw.stat().st_size, ctx.repeats, np.float64
    )
    raw.unlink()

    q = min(cube.shape[2:])
    square = cube[..., :q, :q]
    for label, data in (("u16", square), ("u8", np.minimum(square, 255).astype(np.uint8))):
        path = w.write_blo(ctx.workdir / f"bench_{label}.blo", data)
        out += _read_rows(
            f".blo {label} {q}x{q} frames", path, path.stat().st_size, ctx.repeats, np.uint64
        )
        path.unlink()
    return out
