"""Run every benchmark module (``benchmarks/bench_*.py``) and print GB/s beside the floor.

    python -m benchmarks.run                 # 128x128x128x128 uint16 (512 MiB), 3 repeats
    python -m benchmarks.run --shape 64,64,128,128 --repeats 5 --only io

Each module exposes ``rows(ctx) -> list[Row]``. Throughput is raw (uncompressed) bytes per
second; the ``x floor`` column divides by the numpy-sum floor measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import shutil
import tempfile
from pathlib import Path

import dask

from .common import Context, floor_row, make_cube, py4dstem_available


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="128,128,128,128")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", help="run only benchmarks/bench_<ONLY>.py")
    parser.add_argument("--workdir", help="scratch folder (default: a temporary folder)")
    args = parser.parse_args(argv)

    shape = tuple(int(v) for v in args.shape.split(","))
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="stem4d-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    names = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    if args.only:
        names = [n for n in names if n == f"bench_{args.only}"]
    ctx = Context(make_cube(shape), workdir, args.repeats)
    print(
        f"scan {shape} uint16, {ctx.nbytes / 2**20:.0f} MiB; {os.cpu_count()} cores; "
        f"{platform.processor() or platform.machine()}; median of {args.repeats}; "
        f"py4DSTEM venv: {'yes' if py4dstem_available() else 'no'}"
    )
    floor = floor_row(ctx)
    print(f"{'benchmark':48s} {'GB/s':>7s} {'x floor':>8s}  note")
    try:
        for row in [floor]:
            print(f"{row.name:48s} {row.gbps:7.2f} {row.gbps / floor.gbps:8.2f}  {row.note}")
        with dask.config.set(scheduler="threads"):
            for name in names:
                for row in importlib.import_module(f"benchmarks.{name}").rows(ctx):
                    print(
                        f"{row.name:48s} {row.gbps:7.2f} {row.gbps / floor.gbps:8.2f}  {row.note}",
                        flush=True,
                    )
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
