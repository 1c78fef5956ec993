"""GPU rows: centre of mass, binning, electron counting and a virtual image on cupy chunks, in
GB/s of raw uint16 beside the GPU's floors (a cupy sum of the scan already on the device, and
the host -> device copy) and the same operations on the CPU.

    python -m benchmarks.bench_gpu                      # 128x128x128x128 uint16, 3 repeats
    python -m benchmarks.bench_gpu --shape 64,64,256,256 --repeats 5
    python -m benchmarks.bench_gpu --stand-in           # no GPU: checks the script only

Each operation runs twice on the GPU: through our numba.cuda kernels (centre of mass, binning,
counting) and through the kernels' cupy array operations (``STEM4D_CUDA_KERNELS=0``), from host
memory (``to_device`` inside the graph: one transfer per chunk) and from chunks already on the
device (``persist``), so the kernels and the transfers can be told apart. Without cupy and a
CUDA device it prints "no GPU" and exits 0 (``benchmarks.run`` gets no rows from it).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from contextlib import contextmanager

import dask
import numpy as np

import stem4d_dask as s4
from stem4d_dask import device
from stem4d_dask.kernels import cuda_launch

from .bench_counting import sparse_scan
from .common import ROOT, Context, Row, floor_row, make_cube, median_time

_KEPT: list = []


def gpu_module(stand_in: bool = False):
    """``(cupy, None)`` with a device, else ``(None, why)``; the stand-in of the tests (numpy
    posing as cupy: figures meaningless) with ``stand_in``."""
    if stand_in:
        sys.path.insert(0, str(ROOT / "tests"))
        from strictcupy import installed

        _KEPT.append(installed())  # kept installed for the rest of the run
        cuda_launch.enabled = lambda: False  # numba.cuda cannot take the stand-in's arrays
        return _KEPT[-1].__enter__(), None
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None, "cupy sees no CUDA device"
    except Exception as err:  # ImportError, CUDARuntimeError
        return None, f"{type(err).__name__}: {err}"
    return cupy, None


@contextmanager
def array_operations():
    """cupy chunks through the kernels' cupy array operations instead of numba.cuda."""
    enabled = cuda_launch.enabled
    cuda_launch.enabled = lambda: False
    try:
        yield
    finally:
        cuda_launch.enabled = enabled


def warm_median(fn, repeats: int) -> float:
    """:func:`median_time` after one untimed call (numba and numba.cuda compile on first use)."""
    fn()
    return median_time(fn, repeats)


def _sync(cp) -> None:
    runtime = cp.cuda.runtime
    if hasattr(runtime, "deviceSynchronize"):
        runtime.deviceSynchronize()


def _operations(dark):
    """name -> operation on a datacube giving a small host result (computed when timed)."""
    return {
        "center_of_mass": lambda d: device.to_host(d.stem4d.center_of_mass()),
        "bin_Q(4)": lambda d: device.to_host(d.stem4d.bin_Q(4)),
        "virtual_image (disk)": lambda d: device.to_host(
            d.stem4d.virtual_image(s4.virtual.circle_mask(d, d.shape[2] / 6))
        ),
        "electron_count (sub-pixel)": lambda d: d.stem4d.electron_count(dark, seed=0),
    }


def rows(ctx: Context, stand_in: bool = False) -> list[Row]:
    cp, why = gpu_module(stand_in)
    if cp is None:
        print(f"bench_gpu: no GPU ({why}); no rows")
        return []
    kernels = "numba.cuda" if cuda_launch.enabled() else "unavailable: cupy array operations"
    print(f"bench_gpu: {_device_name(cp)}; our CUDA kernels: {kernels}")
    out = _floors(cp, ctx)
    dc = s4.from_array(ctx.cube)
    counting, dark = sparse_scan(ctx.cube.shape)
    sparse = s4.from_array(counting)
    for name, operation in _operations(dark).items():
        cube = sparse if name.startswith("electron_count") else dc
        cpu_s = warm_median(lambda op=operation, c=cube: op(c).compute(), ctx.repeats)
        out.append(Row(f"{name}, CPU threads", cpu_s, ctx.nbytes))
        resident = cube.stem4d.to_device().persist()
        for path, switch in (("CUDA kernels", _no_switch), ("cupy array ops", array_operations)):
            if path == "CUDA kernels" and not cuda_launch.enabled():
                continue
            with switch():
                moved = warm_median(
                    lambda op=operation, c=cube: op(c.stem4d.to_device()).compute(), ctx.repeats
                )
                there = warm_median(lambda op=operation, r=resident: op(r).compute(), ctx.repeats)
            out.append(Row(f"{name}, GPU {path}, from host", moved, ctx.nbytes, _x(cpu_s, moved)))
            out.append(Row(f"{name}, GPU {path}, on device", there, ctx.nbytes, _x(cpu_s, there)))
    return out


def _floors(cp, ctx: Context) -> list[Row]:
    """The GPU's floors: a cupy sum of the scan on the device, and the host -> device copy."""
    on_device = cp.asarray(ctx.cube)
    _sync(cp)
    sum_s = warm_median(lambda: (on_device.sum(dtype=np.uint64), _sync(cp)), ctx.repeats)
    copy_s = warm_median(lambda: (cp.asarray(ctx.cube), _sync(cp)), ctx.repeats)
    return [
        Row("GPU floor: cupy sum, scan on the device", sum_s, ctx.nbytes),
        Row("GPU floor: host -> device copy", copy_s, ctx.nbytes),
    ]


@contextmanager
def _no_switch():
    yield


def _x(cpu_s: float, gpu_s: float) -> str:
    return f"{cpu_s / gpu_s:.1f}x the CPU"


def _device_name(cp) -> str:
    try:
        name = cp.cuda.runtime.getDeviceProperties(0)["name"]
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # the stand-in, or an older runtime
        return "stand-in (numpy posing as cupy)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="128,128,128,128")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stand-in", action="store_true", help="numpy posing as cupy (no GPU)")
    args = parser.parse_args(argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    ctx = Context(make_cube(shape), ROOT, args.repeats)
    print(
        f"scan {shape} uint16, {ctx.nbytes / 2**20:.0f} MiB; {os.cpu_count()} cores; "
        f"{platform.processor() or platform.machine()}; median of {args.repeats}"
    )
    floor = floor_row(ctx)
    with dask.config.set(scheduler="threads"):
        found = rows(ctx, stand_in=args.stand_in)
    if not found:
        return 0
    print(f"{'benchmark':60s} {'GB/s':>7s} {'x floor':>8s}  note")
    for row in [floor, *found]:
        print(f"{row.name:60s} {row.gbps:7.2f} {row.gbps / floor.gbps:8.2f}  {row.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
