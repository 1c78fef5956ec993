"""Run every benchmark module (``benchmarks/bench_*.py``) and print GB/s beside the floor.

    python -m benchmarks.run                 # 128x128x128x128 uint16 (512 MiB), 3 repeats
    python -m benchmarks.run --shape 64,64,128,128 --repeats 5 --only io

Each module exposes ``rows(ctx) -> list[Row]``. Throughput is raw (uncompressed) bytes per
second; the ``x floor`` column divides by the numpy-sum floor measured in the same run. A module
that fails is reported (its error) and the others still run. :func:`run_all` is the one loop;
``python -m benchmarks.report`` writes its results as markdown and a bar plot.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import dask

from .common import Context, Row, floor_row, libertem_available, make_cube, py4dstem_available


@dataclass
class ModuleResult:
    """One benchmark module's rows, or the error that stopped it (``error``: one line;
    ``rows`` then holds what it returned before failing: nothing), and its wall time, s."""

    name: str
    rows: list = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


def module_names(only: str | None = None) -> list:
    """The ``bench_*`` module names, sorted; ``only``: just ``bench_<only>``."""
    names = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    return [n for n in names if n == f"bench_{only}"] if only else names


def parse_shape(text: str) -> tuple:
    """``"Rx,Ry,Qx,Qy"`` -> a 4-tuple of ints."""
    shape = tuple(int(v) for v in text.split(","))
    if len(shape) != 4 or min(shape) < 1:
        raise SystemExit(f"--shape must be four positive ints Rx,Ry,Qx,Qy, got {text!r}")
    return shape


def machine() -> str:
    """One line: CPU model, cores, memory, OS, Python, and which comparison venvs exist."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        memory = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        memory = "? GiB"
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory} RAM; {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}; py4DSTEM venv: "
        f"{'yes' if py4dstem_available() else 'no'}; LiberTEM venv: "
        f"{'yes' if libertem_available() else 'no'}"
    )


def run_all(ctx: Context, names, on_row=None, on_error=None) -> tuple:
    """Measure the floor, then every module of ``names`` under the threaded scheduler.

    ``on_row(row, floor)`` is called as each row arrives, ``on_error(name, message)`` when a
    module fails (its traceback is not re-raised). Returns ``(floor Row, [ModuleResult])``.
    """
    floor = floor_row(ctx)
    if on_row is not None:
        on_row(floor, floor)
    results = []
    with dask.config.set(scheduler="threads"):
        for name in names:
            result = ModuleResult(name)
            start = time.perf_counter()
            try:
                for row in importlib.import_module(f"benchmarks.{name}").rows(ctx):
                    result.rows.append(row)
                    if on_row is not None:
                        on_row(row, floor)
            except Exception as exc:  # one module's failure is reported, the others go on
                lines = traceback.format_exception_only(type(exc), exc)
                result.error = lines[-1].strip().splitlines()[0]
                if on_error is not None:
                    on_error(name, result.error)
            result.seconds = time.perf_counter() - start
            results.append(result)
    return floor, results


def format_row(row: Row, floor: Row) -> str:
    return f"{row.name:48s} {row.gbps:7.2f} {row.gbps / floor.gbps:8.2f}  {row.note}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="128,128,128,128")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", help="run only benchmarks/bench_<ONLY>.py")
    parser.add_argument("--workdir", help="scratch folder (default: a temporary folder)")
    args = parser.parse_args(argv)

    shape = parse_shape(args.shape)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="stem4d-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = Context(make_cube(shape), workdir, args.repeats)
    print(
        f"scan {shape} uint16, {ctx.nbytes / 2**20:.0f} MiB; {machine()}; median of {args.repeats}"
    )
    print(f"{'benchmark':48s} {'GB/s':>7s} {'x floor':>8s}  note")
    try:
        run_all(
            ctx,
            module_names(args.only),
            on_row=lambda row, floor: print(format_row(row, floor), flush=True),
            on_error=lambda name, message: print(f"{name}: FAILED: {message}", flush=True),
        )
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
