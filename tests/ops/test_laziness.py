"""Opening and building graphs reads no pixel data and allocates nothing scan-sized."""

import tracemalloc

import cloudpickle
import numpy as np
import pytest
import zarr

import stem4d_dask as s4
from stem4d_dask.lazy import RawFileLoader
from stem4d_dask.preprocess import set_scan_shape, swap_Qxy, swap_RQ, swap_Rxy

HUGE = (512, 512, 256, 256)  # uint16: 32 GiB, far beyond what a test may allocate


@pytest.fixture
def no_reads(monkeypatch):
    def refuse(self, slices):
        raise AssertionError("pixel data was read while building a graph")

    monkeypatch.setattr(RawFileLoader, "__call__", refuse)


def huge_npy(tmp_path):
    """A sparse .npy file of logical size 32 GiB occupying almost no disk."""
    path = tmp_path / "huge.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<u2", "fortran_order": False, "shape": HUGE}
        )
        f.truncate(f.tell() + int(np.prod(HUGE)) * 2)
    return path


def test_open_huge_npy_reads_nothing(tmp_path, no_reads):
    path = huge_npy(tmp_path)
    tracemalloc.start()
    dc = s4.read(path)
    graph = [
        f(dc) for f in (swap_Rxy, swap_Qxy, lambda d: d.stem4d.with_calibration(r_pixel_size=2.0))
    ]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert dc.shape == HUGE and len(graph) == 3
    assert peak < 20 * 2**20, f"building allocated {peak / 2**20:.1f} MiB"
    assert 256 <= dc.data.npartitions <= 1024  # 32-128 MiB chunks, not kilobytes


def test_reshapes_of_huge_cube_stay_lazy(tmp_path, no_reads):
    dc = s4.read(huge_npy(tmp_path))
    tracemalloc.start()
    out = set_scan_shape(dc, 1024, 256)
    swapped = swap_RQ(dc)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert out.shape == (1024, 256, 256, 256) and swapped.shape == (256, 256, 512, 512)
    assert peak < 100 * 2**20


def test_graph_pickles_small(tmp_path):
    dc = s4.read(huge_npy(tmp_path))
    payload = cloudpickle.dumps(dict(dc.data.__dask_graph__()))
    assert len(payload) < 2 * 2**20  # paths and slices, not data


def test_open_huge_zarr_reads_nothing(tmp_path, monkeypatch):
    path = tmp_path / "huge.zarr"
    # a 32 GiB logical store with no chunks written: opening must not touch them
    import dask.array as dask_array
    import xarray as xr

    lazy = s4.from_array(dask_array.zeros(HUGE, dtype="uint16", chunks=(16, 512, 256, 256)))
    lazy.to_dataset(name="datacube").to_zarr(path, compute=False, zarr_format=3)
    calls = []
    original = zarr.core.array.Array.__getitem__
    monkeypatch.setattr(
        zarr.core.array.Array,
        "__getitem__",
        lambda self, sel: calls.append(self.shape) or original(self, sel),
    )
    tracemalloc.start()
    dc = s4.read(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert dc.shape == HUGE
    assert all(len(shape) == 1 for shape in calls)  # only 1D coords were read
    assert peak < 50 * 2**20
    assert xr.open_zarr(path)["datacube"].shape == HUGE


def _n_tasks(arr) -> int:
    return len(dict(arr.__dask_graph__()))


def test_preprocess_graphs_are_lazy_and_one_task_per_chunk(tmp_path, no_reads):
    """Binning, thinning, resampling, padding and shifting a 32 GiB scan: nothing read, nothing
    scan-sized allocated, one task per input chunk (plus a constant), Q never rechunked."""
    import dask.array as dask_array
    import xarray as xr

    from stem4d_dask import preprocess as pp

    dc = s4.read(huge_npy(tmp_path), chunks=(2, 256))  # chunks aligned for bin_data_real(2)
    n_in, n_chunks = _n_tasks(dc.data), dc.data.npartitions
    rng = np.random.default_rng(0)
    shifts = rng.uniform(-2, 2, HUGE[:2])  # whole-scan arrays: one graph key each
    lazy = xr.DataArray(dask_array.from_array(shifts, chunks=dc.data.chunks[:2]), dims=("Rx", "Ry"))
    builders = {
        "bin_Q": lambda: pp.bin_data_diffraction(dc, 2),
        "bin_mmap": lambda: pp.bin_data_mmap(dc, 4),
        "bin_R": lambda: pp.bin_data_real(dc, 2),
        "thin_R": lambda: pp.thin_data_real(dc, 2),
        "resample_bilinear": lambda: pp.resample_data_diffraction(dc, 0.5),
        "resample_fourier": lambda: pp.resample_data_diffraction(
            dc, output_size=(300, 300), method="fourier"
        ),
        "pad": lambda: pp.pad_data_diffraction(dc, 2),
        "shift_scalar": lambda: pp.datacube_diffraction_shift(dc, 0.5, -1.2),
        "shift_numpy": lambda: pp.datacube_diffraction_shift(dc, shifts, shifts, bilinear=True),
        "center": lambda: pp.center_patterns(dc, shifts, shifts, periodic=False),
    }
    tracemalloc.start()
    outs = {name: build() for name, build in builders.items()}
    lazy_shift = pp.datacube_diffraction_shift(dc, lazy, 0.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 40 * 2**20, f"building allocated {peak / 2**20:.1f} MiB"
    for name, out in outs.items():
        assert out.data.numblocks[2:] == (1, 1), name
        assert out.data.npartitions == n_chunks, name
        assert _n_tasks(out.data) <= n_in + n_chunks + 3, (name, _n_tasks(out.data) - n_in)
    assert _n_tasks(lazy_shift.data) <= n_in + 2 * n_chunks + 3


def test_xarray_chains_and_coordinate_checks_read_nothing(tmp_path, no_reads):
    """The calibration checks read coords only: a stepped, cropped, transposed and
    concatenated huge cube builds every graph without reading a pixel."""
    import warnings

    import xarray as xr

    from stem4d_dask.phase import center_of_mass
    from stem4d_dask.preprocess import bin_data_diffraction, bin_data_real, subtract_dark

    dc = s4.read(huge_npy(tmp_path)).stem4d.with_calibration(q_pixel_size=0.1, q_units="mrad")
    tracemalloc.start()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stepped = dc.isel(Rx=slice(None, None, 2), Ry=slice(None, None, 2), Qx=slice(8, 248))
        joined = xr.concat(
            [stepped.isel(Rx=slice(0, 64)), stepped.isel(Rx=slice(64, None))], dim="Rx"
        ).transpose("Qy", "Qx", "Ry", "Rx")
        dark = xr.DataArray(
            np.zeros((256, 256)), dims=("Qx", "Qy"), coords={d: dc[d] for d in ("Qx", "Qy")}
        )
        outs = [
            bin_data_real(bin_data_diffraction(joined, 2), 2),
            center_of_mass(joined),
            subtract_dark(joined, dark),
        ]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert outs[0].attrs["r_pixel_size"] == 4.0 and outs[2].shape == (256, 256, 240, 256)
    assert peak < 100 * 2**20, f"building allocated {peak / 2**20:.1f} MiB"
