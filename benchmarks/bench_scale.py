"""Scale: bounded worker memory and time against scan size and worker count (issue 14).

    python -m benchmarks.bench_scale memory            # 3 GiB scan, 2 process workers of 600 MiB
    python -m benchmarks.bench_scale sizes             # 0.5, 1, 2, 4 GiB: time and peak memory
    python -m benchmarks.bench_scale workers           # 1 and 2 process workers, 2 GiB
    python -m benchmarks.bench_scale memory --gib 1 --repeats 3 --workdir /tmp/scale

Scans are ``.npy`` files of synthetic counting frames (uint16, 128 x 128 detector, 256
positions a row: Gaussian read noise on a dark level of 100 counts, ~82 electrons of ~60
counts a frame), written chunk by chunk into the work folder (``/tmp`` by default) and deleted
afterwards. Each worker's memory is sampled by a thread inside the worker (psutil): RSS (what
the nanny compares with the limit: it counts mapped file pages, which are page cache) and
anonymous RSS (RSS less file-backed pages: the heap, private) every 10 ms, USS and PSS every
200 ms (reading smaps costs ~4 ms); the workers' CPU seconds are summed; a restarted worker
is reported.
``rows(ctx)`` (for ``benchmarks.run``) runs centre of mass and counting on the run's scan on a
2-worker process cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

import stem4d_dask as s4
from stem4d_dask.phase import center_of_mass
from stem4d_dask.preprocess.electroncount import electron_count

from .common import Row

MiB = 2**20
GiB = 2**30
DETECTOR = 128
ROW = 256  # scan positions per row
DARK = 100.0
KINDS = ("rss", "anon", "uss", "pss")  # MiB peaks; anon: RSS less file-backed pages


# --- scans ---------------------------------------------------------------------------------


def write_scan(path: Path, nbytes: int, seed: int = 0) -> tuple[int, ...]:
    """A uint16 ``.npy`` counting scan of about ``nbytes`` (whole rows of 256 positions), one
    row at a time from a pool of 2048 distinct frames (no scan in memory). Returns its shape."""
    q = DETECTOR
    rows = max(int(nbytes) // (ROW * q * q * 2), 1)
    rng = np.random.default_rng(seed)
    pool = np.rint(rng.normal(DARK, 3.0, size=(2048, q, q))).astype(np.uint16)
    for frame, n in zip(pool, rng.poisson(0.005 * q * q, size=len(pool)), strict=True):
        x, y = rng.integers(2, q - 2, (2, n))
        frame[x, y] += np.rint(rng.lognormal(np.log(60.0), 0.15, n)).astype(np.uint16)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=(rows, ROW, q, q))
    for i in range(rows):
        start = (i * 97) % (len(pool) - ROW)
        out[i] = pool[start : start + ROW]
    out.flush()
    del out
    return (rows, ROW, q, q)


# --- worker memory -------------------------------------------------------------------------


def _start_sampler(dask_worker, interval=0.01, full_every=20):
    """Start sampling this worker's memory: RSS and anonymous RSS every ``interval`` s (cheap),
    USS and PSS every ``full_every`` samples (reading smaps costs ~4 ms)."""
    import psutil

    process = psutil.Process()
    peaks = dict.fromkeys(KINDS, 0)
    stop = threading.Event()

    def loop():
        n = 0
        while not stop.is_set():
            for k, v in _memory(process, full=n % full_every == 0).items():
                peaks[k] = max(peaks[k], v)
            n += 1
            stop.wait(interval)

    thread = threading.Thread(target=loop, name="stem4d-memory-sampler", daemon=True)
    dask_worker._stem4d_sampler = (stop, thread, peaks, _cpu(process))
    thread.start()
    return {"pid": process.pid, **_memory(process, full=True)}


def _memory(process, full: bool = False) -> dict:
    """RSS, anonymous RSS (the heap: RSS less file-backed and shared pages) and, when ``full``,
    USS and PSS."""
    m = process.memory_info()
    out = {"rss": m.rss, "anon": m.rss - m.shared}
    if full:
        f = process.memory_full_info()
        out |= {"uss": f.uss, "pss": f.pss}
    return out


def _stop_sampler(dask_worker):
    import psutil

    stop, thread, peaks, cpu = dask_worker._stem4d_sampler
    stop.set()
    thread.join()
    process = psutil.Process()
    return {"pid": process.pid, "cpu": _cpu(process) - cpu, **peaks}


def _cpu(process) -> float:
    return process.cpu_times().user + process.cpu_times().system


def measured(client, job) -> dict:
    """One run of ``job``: seconds, the workers' CPU seconds (summed), their peak memory
    (:data:`KINDS`, MiB, the highest over the workers, sampled inside them), how many were
    restarted meanwhile (a new process: killed by the nanny), and the error of a failed job."""
    before = client.run(_start_sampler)
    error, t0 = None, time.perf_counter()
    try:
        job()
    except Exception as err:  # e.g. KilledWorker: reported, not raised
        error = f"{type(err).__name__}: {str(err)[:120]}"
    seconds = time.perf_counter() - t0
    now = [p for p in client.run(_stop_sampler, on_error="return").values() if isinstance(p, dict)]
    pids = {p["pid"] for p in before.values()}
    out = {k: max((p[k] for p in now), default=float("nan")) / MiB for k in KINDS}
    restarted = len(before) - sum(p["pid"] in pids for p in now)
    cpu = sum(p["cpu"] for p in now)
    return out | {"seconds": seconds, "cpu": cpu, "restarted": restarted, "error": error}


@contextlib.contextmanager
def cluster(n_workers: int, memory_limit: str | None = "600MiB", threads: int = 1):
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads,
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=None,
        ) as c,
        Client(c) as client,
    ):
        yield client


def warm(client) -> None:
    """Import the package in every worker and run one small operation (the baseline)."""
    noise = np.random.default_rng(0).normal(DARK, 3.0, (4, 4, 32, 32))
    dc = s4.from_array(np.rint(noise).astype(np.uint16))
    center_of_mass(dc).compute()
    electron_count(dc, DARK, Nsamples=4, seed=0).compute()


# --- operations ----------------------------------------------------------------------------


def operations(path: Path, workdir: Path, rows: int | None = None) -> dict:
    """Name -> job on the scan at ``path`` (each job cleans up what it writes); ``rows``: scan
    rows per chunk (None: ``"auto"``)."""
    chunks = "auto" if rows is None else {"Rx": rows}

    def read():
        return s4.read(path, chunks=chunks)

    def com():
        center_of_mass(read()).compute()

    def count():
        electron_count(read(), DARK, seed=0).compute()

    def count_store():
        out = workdir / "events.zarr"
        try:
            electron_count(read(), DARK, seed=0).to_zarr(out, progress=False)
        finally:
            shutil.rmtree(out, ignore_errors=True)

    def count_dense():
        counted = electron_count(read(), DARK, seed=0, output="datacube")
        counted.data.sum(axis=(0, 1)).compute()

    def converted(steps):
        def job():
            out = workdir / "converted"
            try:
                options = {"read_options": {"chunks": chunks}}
                summary = s4.convert(path, out, steps, progress=False, **options)
                if not summary.ok:
                    raise RuntimeError(summary.table())
            finally:
                shutil.rmtree(out, ignore_errors=True)

        return job

    def to_zarr():
        out = workdir / "scan.zarr"
        try:
            s4.to_zarr(read(), out, progress=False)
        finally:
            shutil.rmtree(out, ignore_errors=True)

    return {
        "center_of_mass": com,
        "electron_count (events)": count,
        "electron_count -> events store": count_store,
        "electron_count (dense, summed)": count_dense,
        "bin_data_diffraction 2 -> zarr": converted([("bin_data_diffraction", {"bin_factor": 2})]),
        "bin_data_real 2 -> zarr": converted([("bin_data_real", {"bin_factor": 2})]),
        "npy -> zarr (to_zarr)": to_zarr,
        "subtract_dark + electron_count -> events": converted(
            [
                ("subtract_dark", {"darkref": np.full((DETECTOR, DETECTOR), DARK, np.float32)}),
                ("electron_count", {"darkreference": np.zeros((DETECTOR, DETECTOR), np.float32)}),
            ]
        ),
    }


def summary(runs: list) -> dict:
    """Runs of :func:`measured` as one: median times, highest peaks, restarts summed."""
    out = {k: statistics.median(r[k] for r in runs) for k in ("seconds", "cpu")}
    out |= {k: max(r[k] for r in runs) for k in KINDS}
    out["restarted"] = sum(r["restarted"] for r in runs)
    out["error"] = next((r["error"] for r in runs if r["error"]), None)
    return out


def interleaved(client, jobs: dict, repeats: int) -> dict:
    """name -> :func:`summary` of ``repeats`` runs of each of ``jobs`` (name -> job), the jobs
    taken in turn in each round so that each sees the same load."""
    runs: dict = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, job in jobs.items():
            runs[name].append(measured(client, job))
    return {name: summary(rs) for name, rs in runs.items()}


def line(label: str, m: dict, nbytes: int, kinds=("rss", "anon")) -> str:
    gib = nbytes / GiB
    mem = "".join(f" {m[k]:6.0f}" for k in kinds)
    note = f"restarted {m['restarted']} " if m["restarted"] else ""
    return (
        f"{label} {m['seconds']:7.2f} {m['seconds'] / gib:6.2f} {nbytes / m['seconds'] / 1e9:6.2f} "
        f"{m['cpu'] / gib:7.2f}{mem}  {note}{m['error'] or ''}"
    )


def header(label: str, kinds=("rss", "anon")) -> str:
    columns = ("s", "s/GiB", "GB/s", "cpu/GiB", *kinds)
    return label + "".join(f" {c:>{max(6, len(c))}s}" for c in columns)


def _baseline():
    import psutil

    return _memory(psutil.Process(), full=True)


# --- the three measurements -----------------------------------------------------------------

SCALING = ("center_of_mass", "electron_count (events)", "electron_count -> events store")


def memory_run(
    workdir: Path, gib: float, repeats: int, limit: str | None = "600MiB", rows: int | None = None
) -> None:
    """Every operation on a ``gib`` scan with 2 process workers of ``limit`` (None: no limit),
    chunks of ``rows`` scan rows (None: ``"auto"``), the operations in turn in each round."""
    path = workdir / f"scan-{gib}g.npy"
    shape = write_scan(path, int(gib * GiB))
    try:
        with cluster(2, limit) as client:
            warm(client)
            base = ", ".join(
                f"RSS {m['rss'] / MiB:.0f} / anon {m['anon'] / MiB:.0f} MiB"
                for m in client.run(_baseline).values()
            )
            data = s4.read(path, chunks="auto" if rows is None else {"Rx": rows}).data
            print(
                f"scan {shape} uint16, {path.stat().st_size / GiB:.2f} GiB; 2 process workers of "
                f"{limit}, 1 thread; chunks {data.chunksize[:2]} "
                f"({data.nbytes / data.npartitions / MiB:.0f} MiB); baseline after one "
                f"operation: {base}; median of {repeats} rounds"
            )
            print(header(f"{'operation':44s}", KINDS))
            results = interleaved(client, operations(path, workdir, rows), repeats)
            for name, m in results.items():
                print(line(f"{name:44s}", m, path.stat().st_size, KINDS))
    finally:
        path.unlink(missing_ok=True)


def sizes_run(workdir: Path, sizes, repeats: int, limit: str | None = "600MiB") -> None:
    """Centre of mass and counting against scan size on 2 process workers of ``limit``: time
    (median of ``repeats`` rounds, the sizes in turn in each) and the peak worker memory."""
    paths = {gib: workdir / f"scan-{gib}g.npy" for gib in sizes}
    try:
        for gib, path in paths.items():
            write_scan(path, int(gib * GiB))
        with cluster(2, limit) as client:
            warm(client)
            jobs = {
                (gib, name): operations(path, workdir)[name]
                for gib, path in paths.items()
                for name in SCALING
            }
            chunks = s4.read(paths[sizes[0]]).data.chunksize
            print(f"2 process workers of {limit}, 1 thread; chunks {chunks[:2]}; {repeats} rounds")
            print(header(f"{'GiB':>5s} {'operation':30s}"))
            for (gib, name), m in interleaved(client, jobs, repeats).items():
                print(line(f"{gib:5.1f} {name:30s}", m, paths[gib].stat().st_size))
    finally:
        for path in paths.values():
            path.unlink(missing_ok=True)


def workers_run(workdir: Path, gib: float, repeats: int, limit: str | None = "600MiB") -> None:
    """Centre of mass and counting on 1 and 2 process workers (1 thread each), the two clusters
    taking turns in each of ``repeats`` rounds."""
    path = workdir / f"scan-{gib}g.npy"
    write_scan(path, int(gib * GiB))
    print(f"scan {gib} GiB; process workers of {limit}, 1 thread; {repeats} rounds")
    print(header(f"{'workers':>7s} {'operation':30s}"))
    runs: dict = {}
    try:
        for _ in range(repeats):
            for n in (1, 2):
                with cluster(n, limit) as client:
                    warm(client)
                    ops = operations(path, workdir)
                    for name in SCALING:
                        runs.setdefault((n, name), []).append(measured(client, ops[name]))
        for (n, name), rs in runs.items():
            print(line(f"{n:7d} {name:30s}", summary(rs), path.stat().st_size))
    finally:
        path.unlink(missing_ok=True)


def rows(ctx) -> list[Row]:
    """For ``benchmarks.run``: centre of mass and counting on the run's scan on 2 process
    workers (no memory limit), with the peak worker memory in the note."""
    path = ctx.workdir / "scale.npy"
    np.save(path, ctx.cube)
    out = []
    try:
        with cluster(2, None) as client:
            warm(client)
            ops = operations(path, ctx.workdir)
            for name in SCALING[:2]:
                m = summary([measured(client, ops[name]) for _ in range(ctx.repeats)])
                note = f"peak worker RSS {m['rss']:.0f}, anon {m['anon']:.0f} MiB"
                out.append(Row(f"{name}, 2 process workers", m["seconds"], ctx.nbytes, note))
    finally:
        path.unlink(missing_ok=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("memory", "sizes", "workers"))
    parser.add_argument("--gib", type=float, default=None, help="scan size (memory, workers)")
    parser.add_argument("--sizes", default="0.5,1,2,4", help="scan sizes in GiB (sizes)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", default="600MiB", help="memory limit per worker ('none')")
    parser.add_argument("--rows", type=int, help="scan rows per chunk (default: auto)")
    parser.add_argument("--workdir", help="scratch folder (default: a temporary one in /tmp)")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="stem4d-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    limit = None if args.limit.lower() == "none" else args.limit
    try:
        if args.what == "memory":
            memory_run(workdir, args.gib or 3.0, args.repeats, limit, args.rows)
        elif args.what == "sizes":
            sizes = [float(v) for v in args.sizes.split(",")]
            sizes_run(workdir, sizes, args.repeats, limit)
        else:
            workers_run(workdir, args.gib or 2.0, args.repeats, limit)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
