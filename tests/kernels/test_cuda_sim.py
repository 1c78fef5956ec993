"""The numba.cuda kernels (``kernels/cuda_com.py``, ``cuda_binning.py``, ``cuda_counting.py``)
under numba's CUDA simulator, against the CPU kernels: integers exactly, floats to 1e-12.

``NUMBA_ENABLE_CUDASIM=1`` must be set before numba.cuda is first imported, which the main test
process does (or may do) for other reasons; so the cases (functions named ``sim_case_*``, which
the main run does not collect) run in one pytest subprocess started with the variable set, and
:func:`test_cuda_kernels_under_the_simulator` checks that every one of them passed. Under the
simulator each CUDA thread is a Python thread: inputs are tiny. The kernels are reached through
the operations' own dispatch (:mod:`kernels.com`, :mod:`kernels.binning`,
:mod:`kernels.counting` with numpy standing in for cupy), so the code that a cupy chunk takes on a
GPU is the code tested here; the launchers take numpy arrays under the simulator.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fakecupy import FakeCupy

from stem4d_dask.kernels import binning, com, counting
from stem4d_dask.kernels.binning import accumulator_dtype, bin_frames
from stem4d_dask.kernels.com import center_of_mass_frames
from stem4d_dask.kernels.counting import count_frames

REPO = Path(__file__).resolve().parents[2]


def _n_cases() -> int:
    """How many ``sim_case_*`` runs there are (each parametrized case once per parameter)."""
    total = 0
    for name, function in globals().items():
        if name.startswith("sim_case_"):
            runs = 1
            for mark in getattr(function, "pytestmark", []):
                if mark.name == "parametrize":
                    runs *= len(mark.args[1])
            total += runs
    return total


def test_cuda_kernels_under_the_simulator():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    env.pop("STEM4D_CUDA_KERNELS", None)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "python_functions=sim_case_*",
            str(Path(__file__).relative_to(REPO)),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, report
    passed = re.search(r"(\d+) passed", report)
    assert passed and int(passed.group(1)) == _n_cases(), report


def test_the_switch_between_cuda_kernels_and_array_operations(monkeypatch):
    from stem4d_dask.kernels import cuda_launch

    decide = cuda_launch.enabled.__wrapped__  # uncached: enabled() decides once per process
    monkeypatch.setenv("STEM4D_CUDA_KERNELS", "0")
    assert decide() is False

    def no_device():
        raise RuntimeError("numba.cuda finds no CUDA device")

    monkeypatch.setenv("STEM4D_CUDA_KERNELS", "1")
    monkeypatch.setattr(cuda_launch, "probe", no_device)
    with pytest.warns(RuntimeWarning, match="no CUDA device.*cupy array operations instead"):
        assert decide() is False
    monkeypatch.setattr(cuda_launch, "probe", lambda: None)
    assert decide() is True


# ---- the cases: run only in the simulator subprocess ---------------------------------------


@pytest.fixture
def gpu_path(monkeypatch):
    """The kernels' cupy branch (numpy standing in for cupy) with the numba.cuda kernels on,
    and a record of the CUDA launchers called (proof that they, not the array operations,
    ran)."""
    from stem4d_dask.kernels import cuda_binning, cuda_com, cuda_counting, cuda_launch

    if not cuda_launch.simulated():
        pytest.fail("sim_case_* run only with NUMBA_ENABLE_CUDASIM=1 (see the module docstring)")
    assert cuda_launch.enabled()
    calls = []
    for module, name in (
        (cuda_com, "com_sums"),
        (cuda_binning, "bin_frames_cuda"),
        (cuda_counting, "count_events_cuda"),
    ):
        original = getattr(module, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    fake = FakeCupy()
    for module in (com, binning, counting):
        monkeypatch.setattr(module, "array_module", lambda x, fake=fake: fake)
    return calls


def sim_case_launcher_takes_numpy_under_the_simulator():
    from stem4d_dask.kernels import cuda_launch

    assert cuda_launch.simulated() and cuda_launch.enabled()
    strided = np.arange(6.0)[::2]
    (copy,) = cuda_launch.device_arrays(strided)  # the simulator's transfers: contiguous only
    assert copy.flags.c_contiguous and np.array_equal(copy, strided)
    out = np.zeros(3)
    assert cuda_launch.device_arrays(out)[0] is out  # outputs are written where they lie
    with pytest.raises(TypeError, match="take numpy arrays"):
        cuda_launch.device_arrays([0.0, 1.0])


def sim_case_center_of_mass_integer_exact(gpu_path):
    rng = np.random.default_rng(0)
    block = rng.integers(0, 60000, (1, 3, 7, 6)).astype(np.uint16)
    block[0, 1] = 0  # an empty pattern: NaN centre of mass
    mask = rng.random((7, 6)) > 0.3
    results = []
    for frames, weights in ((block, None), (block, mask), (block > 30000, None)):
        results.append(center_of_mass_frames(frames, weights))
        cpu = _cpu(center_of_mass_frames, frames, weights)
        np.testing.assert_array_equal(results[-1], cpu)  # int64 sums on both: bit for bit
    assert np.isnan(results[0][0, 1, 1:]).all() and results[0][0, 1, 0] == 0
    assert gpu_path.count("com_sums") == 3


def sim_case_center_of_mass_float_and_strided(gpu_path):
    rng = np.random.default_rng(1)
    block = rng.random((1, 4, 6, 5)).astype(np.float32) * 100
    weights = rng.random((6, 5))
    stepped = block[:, ::2]  # a stepped selection: frames read where they lie
    for frames, w in ((block, weights), (stepped, None), (block.astype(np.int16) - 50, weights)):
        np.testing.assert_allclose(
            center_of_mass_frames(frames, w), _cpu(center_of_mass_frames, frames, w), rtol=1e-12
        )
    assert gpu_path.count("com_sums") == 3


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64, bool])
def sim_case_binning_exact(gpu_path, dtype):
    rng = np.random.default_rng(2)
    block = rng.integers(0, 255 if dtype is not bool else 2, (1, 2, 7, 8)).astype(dtype)
    for factor in (1, 2, 3):
        for out_dtype in (None, np.float32):
            with_gpu = bin_frames(block, factor, out_dtype)
            cpu = _cpu(bin_frames, block, factor, out_dtype)
            assert with_gpu.dtype == cpu.dtype
            if out_dtype is None:
                assert cpu.dtype == accumulator_dtype(block.dtype, factor**2)
            np.testing.assert_array_equal(with_gpu, cpu)  # same order, same casts: exact
    assert gpu_path.count("bin_frames_cuda") == 6


def sim_case_binning_float32_sums_of_float64_and_strided(gpu_path):
    rng = np.random.default_rng(3)
    block = rng.random((2, 2, 6, 6)) * 1e4  # float64 summed into float32: rounding per step
    for frames in (block, block[:, :, ::-1]):
        np.testing.assert_array_equal(
            bin_frames(frames, 2, np.float32), _cpu(bin_frames, frames, 2, np.float32)
        )
    assert gpu_path.count("bin_frames_cuda") == 2


def sim_case_counting_exact(gpu_path):
    block, dark = _counting_frames()
    for sub_pixel in (False, True):
        for binfactor in (1, 2):
            options = dict(sub_pixel=sub_pixel, binfactor=binfactor, centroid_floor=2.5)
            with_gpu = count_frames(block, dark, 12.0, 600.0, **options)
            cpu = _cpu(count_frames, block, dark, 12.0, 600.0, **options)
            np.testing.assert_array_equal(with_gpu.indptr, cpu.indptr)
            assert with_gpu.qx.dtype == cpu.qx.dtype and with_gpu.qy.dtype == cpu.qy.dtype
            np.testing.assert_array_equal(with_gpu.qx, cpu.qx)  # float32 bits
            np.testing.assert_array_equal(with_gpu.qy, cpu.qy)
    assert cpu.indptr[-1] >= 6 and cpu.indptr[2] == cpu.indptr[3]  # events; an empty frame
    assert gpu_path.count("count_events_cuda") == 4


def _counting_frames():
    """Four 9 x 8 frames: noise, electrons (some at edges and corners), a tie between two equal
    neighbours, an X-ray pixel next to an electron, and one frame without any event."""
    rng = np.random.default_rng(4)
    dark = np.rint(100 + rng.normal(0, 2, (9, 8))).astype(np.float32)  # integers: ties exist
    frames = np.repeat(dark[None], 4, axis=0) + rng.normal(0, 2, (4, 9, 8))
    for i, (x, y) in enumerate([(0, 0), (8, 7), (0, 5), (4, 3), (6, 1)]):
        frames[i % 2, x, y] += 60 + 5 * i
    # ties of equal w = frame - dark: the first pixel in C order wins (beside, below, diagonal)
    for i, (x, y), (u, v) in ((1, (3, 3), (3, 4)), (1, (6, 5), (7, 5)), (3, (5, 2), (6, 3))):
        frames[i, x, y] = dark[x, y] + 300
        frames[i, u, v] = dark[u, v] + 300
    frames[0, 5, 5] += 3000  # an X-ray hit ...
    frames[0, 5, 6] += 80  # ... next to an electron, which is then no event
    frames[3, 2, 2] += 70
    frames[3, 7, 6] += 45.5
    frames[2] = dark  # no event
    block = np.clip(np.rint(frames), 0, 65535).astype(np.uint16).reshape(2, 2, 9, 8)
    return block, dark


def _cpu(kernel, *args, **kwargs):
    """``kernel`` on the CPU path, whatever the gpu_path fixture patched."""
    patched = {m: m.array_module for m in (com, binning, counting)}
    try:
        for module in patched:
            module.array_module = lambda x: np
        return kernel(*args, **kwargs)
    finally:
        for module, original in patched.items():
            module.array_module = original
