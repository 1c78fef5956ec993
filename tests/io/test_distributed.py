"""Readers ship to process-based workers: a distributed read equals the threaded one."""

import numpy as np
import pytest

import stem4d_dask as s4

distributed = pytest.importorskip("distributed")


@pytest.fixture
def client(process_client):
    return process_client  # the session's process cluster (tests/conftest.py)


def test_distributed_reads_equal_threaded(tmp_path, client, cube_u16):
    np.save(tmp_path / "c.npy", cube_u16)
    dc = s4.read(tmp_path / "c.npy", chunks=(2, 9))
    s4.to_zarr(dc, tmp_path / "c.zarr", progress=False)  # written by the cluster
    for path in (tmp_path / "c.npy", tmp_path / "c.zarr"):
        cube = s4.read(path, chunks=(2, 9)) if path.suffix == ".npy" else s4.read(path)
        threaded = cube.sum(("Qx", "Qy")).compute(scheduler="threads")
        on_cluster = client.compute(cube.sum(("Qx", "Qy"))).result()
        np.testing.assert_array_equal(on_cluster.values, threaded.values)
        np.testing.assert_array_equal(threaded.values, cube_u16.sum(axis=(2, 3)))
    assert np.array_equal(s4.read(tmp_path / "c.zarr").values, cube_u16)


def test_cli_convert_on_a_scheduler_address(tmp_path, client, cube_u16):
    from stem4d_dask.cli import main

    np.save(tmp_path / "c.npy", cube_u16)
    address = client.scheduler.address
    assert (
        main(
            [
                "convert",
                str(tmp_path / "c.npy"),
                str(tmp_path / "c.zarr"),
                "--chunks",
                "3,9",
                "--scheduler",
                address,
            ]
        )
        == 0
    )
    assert np.array_equal(s4.read(tmp_path / "c.zarr").values, cube_u16)


def test_preprocess_kernels_run_on_process_workers(client, dc_u16):
    """numba loops, FFTW plans and whole-scan shift arrays travel to worker processes."""
    from stem4d_dask import preprocess as pp

    xs = np.random.default_rng(0).uniform(-2, 2, dc_u16.shape[:2])
    for op in (
        lambda d: pp.bin_data_diffraction(d, 2),
        lambda d: pp.bin_data_real(d, 2),
        lambda d: pp.datacube_diffraction_shift(d, xs, -xs),
        lambda d: pp.resample_data_diffraction(d, 0.5, method="fourier"),
    ):
        out = op(dc_u16)
        np.testing.assert_array_equal(
            client.compute(out).result().values, out.compute(scheduler="threads").values
        )
