"""Shared benchmark helpers: timing, test data, the numpy-sum floor and the py4DSTEM venv."""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PY4DSTEM_PYTHON = ROOT / ".venv-py4dstem" / "bin" / "python"
LIBERTEM_PYTHON = ROOT / ".venv-libertem" / "bin" / "python"


@dataclass
class Row:
    """One benchmark line: ``seconds`` is the median over repeats for ``nbytes`` of raw data."""

    name: str
    seconds: float
    nbytes: int
    note: str = ""

    @property
    def gbps(self) -> float:
        return self.nbytes / self.seconds / 1e9


@dataclass
class Context:
    """What every benchmark module gets: the scan, a scratch folder and the repeat count."""

    cube: np.ndarray  # (Rx, Ry, Qx, Qy) uint16, in memory
    workdir: Path
    repeats: int

    @property
    def nbytes(self) -> int:
        return self.cube.nbytes


def median_time(fn, repeats: int, setup=None) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs (``setup()`` runs untimed before each)."""
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_cube(shape, seed=0) -> np.ndarray:
    """Detector-like uint16 scan: Poisson counts around a bright disk, deterministic."""
    rng = np.random.default_rng(seed)
    qx, qy = shape[2:]
    yy, xx = np.mgrid[:qx, :qy]
    disk = ((yy - qx / 2) ** 2 + (xx - qy / 2) ** 2 < (min(qx, qy) / 6) ** 2) * 40.0 + 2.0
    frames = rng.poisson(disk, size=(shape[1],) + disk.shape).astype(np.uint16)
    cube = np.empty(shape, dtype=np.uint16)
    for i in range(shape[0]):  # vary rows cheaply without drawing all the noise again
        cube[i] = np.roll(frames, i, axis=0)
    return cube


def floor_row(ctx: Context) -> Row:
    """The machine's floor: a plain numpy sum over the same in-memory array."""
    seconds = median_time(lambda: ctx.cube.sum(dtype=np.uint64), ctx.repeats)
    return Row("floor: numpy sum (1 thread)", seconds, ctx.nbytes)


def py4dstem_available() -> bool:
    return PY4DSTEM_PYTHON.exists()


def run_py4dstem(script: str, *args) -> dict:
    """Run ``script`` in the py4DSTEM venv; it prints one JSON object on its last line."""
    out = subprocess.run(
        [str(PY4DSTEM_PYTHON), "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def libertem_available() -> bool:
    return LIBERTEM_PYTHON.exists()


def run_libertem(script: str, *args) -> dict:
    """Run ``benchmarks/<script>`` in the LiberTEM venv; it prints one JSON object on its last
    line."""
    out = subprocess.run(
        [str(LIBERTEM_PYTHON), str(ROOT / "benchmarks" / script), *map(str, args)],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def format_writers(name: str):
    """The test-only format writer ``tests/<name>.py`` (benchmarks write their files with the
    same writers the tests check), imported from its path."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it runs
    spec.loader.exec_module(module)
    return module
