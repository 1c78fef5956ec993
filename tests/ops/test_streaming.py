"""Streaming: computing a correction over a scan much larger than a chunk holds memory to a
few chunks per thread, whatever the scan size."""

import tracemalloc

import dask
import dask.array as da
import numpy as np
import pytest

import stem4d_dask as s4
from stem4d_dask import preprocess as pp

SHAPE = (64, 64, 128, 128)  # uint16: 128 MiB on disk


@pytest.fixture(scope="module")
def big_npy(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "scan.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint16, shape=SHAPE)
    frame = np.random.default_rng(0).poisson(30, SHAPE[2:]).astype(np.uint16)
    frame[40, 50] += 2000  # a hot pixel
    for i in range(SHAPE[0]):
        out[i] = np.roll(frame, i, axis=1)[None]
    out.flush()
    del out
    return path


def drained_peak(lazy) -> float:
    """Peak traced MiB while computing every chunk of ``lazy`` and keeping none of them."""
    drain = da.map_blocks(
        lambda b: np.zeros((1,) * b.ndim, b.dtype), lazy.data, chunks=(1,) * lazy.ndim
    ).sum()
    tracemalloc.start()
    with dask.config.set(scheduler="threads", num_workers=2):
        drain.compute()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def test_corrections_stream_in_bounded_memory(big_npy):
    dc = s4.read(big_npy, chunks={"Rx": 2})  # 4 MiB chunks, 32 of them
    assert dc.data.npartitions == 32
    dark = np.full(SHAPE[2:], 3.0)
    for name, lazy in (
        ("subtract_dark", pp.subtract_dark(dc, dark)),
        ("filter_hot_pixels", pp.filter_hot_pixels(dc, 500)),
        ("bin_data_diffraction", pp.bin_data_diffraction(dc, 2)),
        ("datacube_diffraction_shift", pp.datacube_diffraction_shift(dc, 1.5, 0)),
    ):
        peak = drained_peak(lazy)
        assert peak < 64, f"{name}: {peak:.0f} MiB traced for a 128 MiB scan of 4 MiB chunks"
