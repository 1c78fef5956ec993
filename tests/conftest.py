import inspect
import os
from functools import cache
from pathlib import Path

import numpy as np
import pytest

import stem4d_dask as s4


def shared_data_dir() -> Path:
    """``$STEM4D_SHARED_DATA`` or ``../shared/data`` beside the checkout."""
    env = os.environ.get("STEM4D_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data():
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared detector data folder not found at {path} (set STEM4D_SHARED_DATA)")
    return path


@pytest.fixture
def cube_u16():
    """Non-square uint16 scan and detector with values spanning the full range."""
    rng = np.random.default_rng(1)
    return rng.integers(0, 2**16, size=(7, 9, 12, 10), dtype=np.uint16)


@pytest.fixture
def dc_u16(cube_u16):
    return s4.from_array(
        cube_u16,
        r_pixel_size=1.5,
        r_units="A",
        q_pixel_size=0.25,
        q_units="mrad",
        energy=300e3,
        chunks=(3, 9),
    )


@pytest.fixture(scope="session")
def process_client():
    """One process-based ``distributed`` cluster (2 workers, 1 thread each) for the whole run:
    readers' graphs must pickle to other processes and give the threaded result there."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        yield client


@pytest.fixture
def no_frame_reads(monkeypatch):
    """Fail the test if any frame-stack loader reads pixel data (opening must read headers
    only)."""
    from stem4d_dask.io.frames import FrameStackLoader

    def refuse(self, slices):
        raise AssertionError("pixel data was read while opening")

    monkeypatch.setattr(FrameStackLoader, "__call__", refuse)


# --- markers, given by what a test uses (so they stay true as tests change) -----------------

ORACLE_WORDS = ("rsciio", "py4dstem", "FIXTURE", "libertem")


@cache
def _source(function) -> str:
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return ""


def pytest_collection_modifyitems(items):
    """``slow``: a process cluster or a hypothesis search; ``oracle``: a comparison with
    py4DSTEM, RosettaSciIO or their fixtures; ``gpu``: a cupy code path (numpy standing in, a
    real device, or numba's CUDA simulator)."""
    for item in items:
        function = getattr(item, "function", None)
        source = _source(function) if function is not None else ""
        module = item.module.__name__ if getattr(item, "module", None) else ""
        if (
            "process_client" in item.fixturenames
            or "client" in item.fixturenames
            or "@given" in source
            or "LocalCluster" in source
        ):
            item.add_marker(pytest.mark.slow)
        if any(word in source or word in module for word in ORACLE_WORDS):
            item.add_marker(pytest.mark.oracle)
        if (
            "FakeCupy" in source
            or "cupy" in item.name.lower()
            or "gpu" in item.name.lower()
            or any(word in module.rsplit(".", 1)[-1] for word in ("gpu", "cuda"))
        ):  # the device and CUDA-simulator test modules: every test in them
            item.add_marker(pytest.mark.gpu)
