"""Zarr codec rows (issue 13), every variant timed in the same rounds (round robin, median):
read + sum through zarr-python's default pipeline, plain reads and centre of mass through
``zarrs`` and through our whole-shard codec (``fast``, the default), ``.npy`` -> zarr
conversion, and centre of mass on a 2-worker process cluster.

    python -m benchmarks.run --only zarr            # the rows, in the benchmark table
    python -m benchmarks.bench_zarr --sweep         # codec / level / inner chunk / shard size

``STEM4D_ZARR_PIPELINE`` (``fast``, ``zarrs``, ``default``) chooses the codecs when a graph is
built (:mod:`stem4d_dask.io.zarr_pipeline`); each variant sets it while its graph is built.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from contextlib import contextmanager

import dask.array as da
import numpy as np
import xarray as xr

import stem4d_dask as s4
from stem4d_dask.io.zarr_pipeline import ENV
from stem4d_dask.phase import center_of_mass

from .common import Context, Row


@contextmanager
def choice(name: str):
    """Build graphs with ``STEM4D_ZARR_PIPELINE=name``."""
    old = os.environ.get(ENV)
    os.environ[ENV] = name
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = old


def _discard(dc):
    """Read (and decompress) every chunk, keep nothing: a pure read."""
    return da.map_blocks(lambda b: np.zeros((1,) * 4, b.dtype), dc.data, chunks=(1,) * 4).sum()


def _graphs(store, name):
    with choice(name):
        dc = s4.read(store)
    return {"read": _discard(dc), "sum": dc.data.sum(dtype="uint64"), "com": center_of_mass(dc)}


def interleaved(jobs: dict, repeats: int, setup=None) -> dict:
    """Median wall time of every ``jobs[name]()``, run round robin ``repeats`` times (after one
    untimed warm-up each), so that every variant sees the same machine load."""
    times: dict = {name: [] for name in jobs}
    for r in range(repeats + 1):
        for name, job in jobs.items():
            if setup is not None:
                setup(name)
            t0 = time.perf_counter()
            job()
            if r:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def rows(ctx: Context) -> list[Row]:
    dc = s4.from_array(ctx.cube)
    store = ctx.workdir / "codecs.zarr"
    shutil.rmtree(store, ignore_errors=True)
    s4.to_zarr(dc, store, progress=False)
    graphs = {name: _graphs(store, name) for name in ("default", "zarrs", "fast")}
    jobs = {
        "default read+sum": graphs["default"]["sum"].compute,
        "zarrs read": graphs["zarrs"]["read"].compute,
        "zarrs com": graphs["zarrs"]["com"].compute,
        "fast read": graphs["fast"]["read"].compute,
        "fast com": graphs["fast"]["com"].compute,
    }
    t = interleaved(jobs, max(ctx.repeats, 5))
    base = t["default read+sum"]
    out = [Row("zarr read + sum, zarr-python default pipeline", base, ctx.nbytes)]
    for name in ("zarrs", "fast"):
        read, com = t[f"{name} read"], t[f"{name} com"]
        out.append(Row(f"zarr read (decompress, discard), {name}", read, ctx.nbytes))
        out.append(
            Row(
                f"center_of_mass from zarr, {name}",
                com,
                ctx.nbytes,
                f"{base / com:.2f}x default read+sum, {read / com:.2f}x the plain read",
            )
        )
    out += _conversion_rows(ctx, store)
    out += _cluster_rows(ctx, store)
    return out


def _conversion_rows(ctx, store) -> list[Row]:
    npy = ctx.workdir / "codecs.npy"
    np.save(npy, ctx.cube)
    target = ctx.workdir / "converted.zarr"

    def convert(name):
        def job():
            with choice(name):
                s4.to_zarr(s4.read(npy), target, progress=False)

        return job

    names = ("default", "zarrs", "fast")
    t = interleaved(
        {n: convert(n) for n in names},
        ctx.repeats,
        setup=lambda _: shutil.rmtree(target, ignore_errors=True),
    )
    return [Row(f"npy -> zarr conversion, {n}", t[n], ctx.nbytes) for n in names]


def _cluster_rows(ctx, store) -> list[Row]:
    """Centre of mass from zarr on a 2-worker process cluster against the threaded scheduler on
    the same graph, interleaved in the same rounds: on the scan's store (one 64 MiB shard per
    task) and on one 4x larger, read one and two shards per task. Each task costs the
    scheduler ~1.5 ms here (its process shares the two cores with the workers; a graph of 160
    empty tasks takes ~0.25 s), so larger tasks suit a cluster better."""
    from distributed import Client, LocalCluster

    big = ctx.workdir / "codecs-4x.zarr"
    shutil.rmtree(big, ignore_errors=True)
    scan = s4.read(store)
    s4.to_zarr(xr.concat([scan] * 4, "Rx"), big, progress=False)
    shard_rows = scan.data.chunks[0][0]
    cases = [(store, 1, 1), (big, 4, 1), (big, 4, 2)]
    out = []
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        for path, factor, shards in cases:
            dc = s4.read(path, chunks=(shards * shard_rows, scan.sizes["Ry"]))
            com = center_of_mass(dc)
            t = interleaved(
                {
                    "threads": lambda c=com: c.compute(scheduler="threads"),
                    "cluster": lambda c=com: c.compute(scheduler=client),
                },
                ctx.repeats,
            )
            task = dc.data.nbytes / dc.data.npartitions / 2**20
            out.append(
                Row(
                    f"center_of_mass from zarr, 2-worker process cluster, "
                    f"{factor * ctx.nbytes / 2**20:.0f} MiB, {task:.0f} MiB tasks",
                    t["cluster"],
                    factor * ctx.nbytes,
                    f"{t['threads'] / t['cluster']:.2f}x threaded",
                )
            )
    shutil.rmtree(big, ignore_errors=True)
    return out


# --- the measurements behind the defaults (docs/benchmarks.md) ------------------------------


def sweep(shape=(128, 128, 128, 128), repeats=5) -> None:
    """Print ratio, encode and decode speed per core of one 64 MiB shard for each codec, level
    and inner chunk (our shard codec, in a non-main thread as in dask), then centre of mass
    from zarr and conversion for shards of 32, 64 and 128 MiB (2 dask threads)."""
    import tempfile
    import threading

    from stem4d_dask.io.storage import compressor_codecs
    from stem4d_dask.io.zarr_shards import ShardCodec

    from .common import make_cube

    cube = make_cube(shape)
    block = np.ascontiguousarray(cube[:16])
    lines = []

    def cpu(fn):
        ts = []
        for _ in range(repeats):
            c0 = time.thread_time()
            fn()
            ts.append(time.thread_time() - c0)
        return statistics.median(ts)

    def codecs():
        for cname, clevel in (("lz4", 1), ("lz4", 5), ("lz4", 9), ("zstd", 1), ("zstd", 3)):
            for frames in (32, 64, 128):
                (blosc,) = compressor_codecs(cname, clevel)
                codec = ShardCodec.of(_meta(block, blosc, frames))
                enc = codec.encode(block)
                te, td = (
                    cpu(lambda c=codec: c.encode(block)),
                    cpu(lambda c=codec, e=enc: c.decode(e)),
                )
                lines.append(
                    f"{cname} {clevel} inner {frames * block[0, 0].nbytes / 2**20:.0f} MiB: "
                    f"ratio {block.nbytes / len(enc):.2f}, encode {block.nbytes / te / 1e9:.2f}"
                    f" GB/s/core, decode {block.nbytes / td / 1e9:.2f} GB/s/core"
                )

    worker = threading.Thread(target=codecs)
    worker.start()
    worker.join()
    print("\n".join(lines))
    with tempfile.TemporaryDirectory() as tmp:
        npy = f"{tmp}/c.npy"
        np.save(npy, cube)
        for rows_per_shard in (8, 16, 32):
            store = f"{tmp}/s{rows_per_shard}.zarr"
            dc = s4.read(npy, chunks=(rows_per_shard, shape[1]))
            t = interleaved(
                {
                    "convert": lambda d=dc, s=store: s4.to_zarr(d, s, progress=False),
                    "com": lambda s=store: center_of_mass(s4.read(s)).compute(),
                },
                repeats,
                setup=lambda name, s=store: name == "convert" and shutil.rmtree(s, True),
            )
            mib = rows_per_shard * cube[0].nbytes / 2**20
            print(
                f"shard {mib:.0f} MiB: convert {cube.nbytes / t['convert'] / 1e9:.2f} GB/s, "
                f"com from zarr {cube.nbytes / t['com'] / 1e9:.2f} GB/s"
            )


def _meta(block, blosc, frames) -> dict:
    inner = [1, frames, *block.shape[2:]]
    config = blosc.to_dict()["configuration"] | {"typesize": block.dtype.itemsize}
    little = {"name": "bytes", "configuration": {"endian": "little"}}
    return {
        "zarr_format": 3,
        "shape": list(block.shape),
        "data_type": block.dtype.name,
        "fill_value": 0,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(block.shape)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "codecs": [
            {
                "name": "sharding_indexed",
                "configuration": {
                    "chunk_shape": inner,
                    "codecs": [little, {"name": "blosc", "configuration": config}],
                    "index_codecs": [little, {"name": "crc32c"}],
                    "index_location": "end",
                },
            }
        ],
    }


if __name__ == "__main__":
    if "--sweep" in sys.argv:
        sweep()
