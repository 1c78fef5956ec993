"""Big-endian datacubes (``>u2``: the Merlin reader's pixels, kept as the file stores them, and
``read_raw(dtype='>u2')``) give every operation the same result as the native datacube, whether
the chunks are contiguous or strided views of frames with headers between them (as the Merlin
reader's are)."""

import dask
import numpy as np
import pytest
import xarray as xr

import stem4d_dask as s4
from stem4d_dask import preprocess as pp
from stem4d_dask import virtual
from stem4d_dask.detectors import annulus_mask, segmented_masks
from stem4d_dask.events import ElectronEvents
from stem4d_dask.kernels import frame_rows, native, native_dtype
from stem4d_dask.kernels.com import center_of_mass_frames
from stem4d_dask.phase import DPC, center_of_mass, monolithic_com, segmented_com
from stem4d_dask.preprocess.electroncount import electron_count
from stem4d_dask.synthetic import dpc_scan
from stem4d_dask.synthetic_counting import counting_scan

CAL = dict(r_pixel_size=2.0, r_units="A", q_pixel_size=0.5, q_units="mrad", energy=300e3)


def strided(values, header_items=192):
    """``values`` as big-endian frames with ``header_items`` items between them (a view)."""
    n = int(np.prod(values.shape[:2]))
    records = np.zeros((n, header_items + values[0, 0].size), ">" + values.dtype.str[1:])
    records[:, header_items:] = values.reshape(n, -1)
    return records[:, header_items:].reshape(values.shape)


def twins(values, chunks=(3, 5)):
    """The native datacube and its big-endian twins: contiguous and strided chunks."""
    big = values.astype(values.dtype.newbyteorder(">"))
    cubes = [s4.from_array(v, chunks=chunks, **CAL) for v in (values, big, strided(values))]
    assert cubes[1].dtype.str == ">u2" and cubes[2].dtype.str == ">u2"
    contiguous = cubes[2].data.map_blocks(
        lambda b: np.full((1,) * 4, b.flags.c_contiguous), chunks=(1,) * 4, dtype=bool
    )
    assert not contiguous.any().compute(scheduler="sync")  # views, headers between frames
    return cubes


@pytest.fixture(scope="module")
def dpc_values():
    return dpc_scan((6, 10), (24, 20), disk_radius=4, seed=3).datacube.values


@pytest.fixture(scope="module")
def counting_values():
    return counting_scan((6, 5), (32, 32), electrons_per_pixel=0.02, seed=2).datacube.values


def arrays(result):
    """Every array a result holds, computed, as a flat list of numpy arrays."""
    if isinstance(result, xr.Dataset):
        return [np.asarray(result[k].values) for k in sorted(result.data_vars)]
    if isinstance(result, xr.DataArray):
        return [np.asarray(result.values)]
    if isinstance(result, ElectronEvents):
        dense = result.compute().to_datacube(dtype=np.uint16)
        return [dense.values]
    if isinstance(result, DPC):
        return [result.object_phase.values, result.com_x.values, result.com_y.values]
    if isinstance(result, tuple | list):
        return [a for r in result for a in arrays(r)]
    if hasattr(result, "compute"):
        return [np.asarray(result.compute())]
    return [np.asarray(result)]


def same(a, b):
    a, b = arrays(a), arrays(b)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape
        assert native_dtype(x.dtype) == native_dtype(y.dtype), (x.dtype, y.dtype)
        np.testing.assert_array_equal(x, y)


MASK = np.zeros((24, 20), bool)
MASK[3, 4] = MASK[10, 11] = True

OPERATIONS = {
    "isel": lambda d: d.isel(Rx=slice(1, 5), Qy=slice(2, 17, 3)),
    "sum": lambda d: d.sum(("Rx", "Ry")),
    "mean": lambda d: d.mean(("Qx", "Qy")),
    "max": lambda d: d.max(),
    "astype float": lambda d: d.astype(np.float32),
    "arithmetic": lambda d: d * 2 - 7,
    "set_scan_shape": lambda d: pp.set_scan_shape(d, 12, 5),
    "swap_RQ": pp.swap_RQ,
    "swap_Rxy": pp.swap_Rxy,
    "swap_Qxy": pp.swap_Qxy,
    "bin_Q": lambda d: pp.bin_data_diffraction(d, 2),
    "bin_Q 3 float": lambda d: pp.bin_data_diffraction(d, 3, dtype=np.float32),
    "bin_Q of a stepped selection": lambda d: pp.bin_data_diffraction(
        d.isel(Rx=slice(None, None, 2), Ry=slice(1, None, 2)), 2
    ),
    "bin_Q of swapped Q": lambda d: pp.bin_data_diffraction(pp.swap_Qxy(d), 2),
    "bin_mmap": lambda d: pp.bin_data_mmap(d, 2),
    "bin_R": lambda d: pp.bin_data_real(d, 2),
    "thin_R": lambda d: pp.thin_data_real(d, 2),
    "resample bilinear": lambda d: pp.resample_data_diffraction(d, 1.5),
    "resample fourier": lambda d: pp.resample_data_diffraction(
        d, output_size=(30, 26), method="fourier"
    ),
    "pad": lambda d: pp.pad_data_diffraction(d, output_size=(30, 26)),
    "shift fourier": lambda d: pp.datacube_diffraction_shift(d, 0.7, -1.3),
    "shift bilinear": lambda d: pp.datacube_diffraction_shift(
        d, 0.7, -1.3, bilinear=True, periodic=False
    ),
    "center_patterns": lambda d: pp.center_patterns(d, 11.2, 9.6),
    "filter_hot_pixels": lambda d: pp.filter_hot_pixels(d, 5, return_mask=True),
    "median_filter_masked_pixels": lambda d: pp.median_filter_masked_pixels(d, MASK),
    "get_darkreference": lambda d: pp.get_darkreference(d, 20, width_x=3, width_y=2, seed=1),
    "background streaks": lambda d: pp.get_background_streaks(d, 10, 2, seed=4),
    "get_bksbtr_DP": lambda d: pp.get_bksbtr_DP(d, np.ones((24, 20)), 2, 3),
    "subtract_dark": lambda d: pp.subtract_dark(d, np.full((24, 20), 1.5)),
    "1D polar background": lambda d: pp.get_1D_polar_background(d, (12, 10, 5, 4, 0.3))[0],
    "1D polar background of a frame": lambda d: pp.get_1D_polar_background(
        d.values[1, 2], (12, 10, 5, 4, 0.3)
    )[0],
    "subtract_polar_background": lambda d: pp.subtract_polar_background(d, (12, 10, 5, 4, 0.3)),
    "subtract fixed polar background": lambda d: pp.subtract_polar_background(
        d, (12, 10, 5, 4, 0.3), per_pattern=False
    ),
    "center_of_mass": center_of_mass,
    "center_of_mass, bool mask": lambda d: center_of_mass(d, annulus_mask(d, 2, 7)),
    "center_of_mass, float mask": lambda d: center_of_mass(d, annulus_mask(d, 2, 7) * 0.5),
    "center_of_mass of a stepped selection": lambda d: center_of_mass(
        d.isel(Ry=slice(None, None, -2), Qx=slice(1, 23))
    ),
    "mean_diffraction_pattern": virtual.mean_diffraction_pattern,
    "virtual_image": lambda d: virtual.virtual_image(d, annulus_mask(d, 2, 7)),
    "virtual_images": lambda d: virtual.virtual_images(d, segmented_masks(d, 4, 1, 8)),
    "segmented_com": lambda d: segmented_com(d, segmented_masks(d, 4, 1, 8)),
    "monolithic_com": lambda d: monolithic_com(d, segmented_masks(d, 4, 1, 8)),
    "DPC": lambda d: (
        DPC(d, verbose=False)
        .preprocess(plot_rotation=False, plot_center_of_mass=False)
        .reconstruct(max_iter=3, progress_bar=False)
    ),
    "get_maxima_2D of a frame": lambda d: pp.get_maxima_2D(d.values[2, 3], sigma=1),
    "bin2D of a frame": lambda d: pp.bin2D(d.values[2, 3], 2),
    "get_shifted_ar of a frame": lambda d: pp.get_shifted_ar(d.values[2, 3], 0.5, 1.5),
    "events from a datacube": lambda d: ElectronEvents.from_datacube((d > 2000).astype(np.uint8)),
    "describe": lambda d: np.array(
        sorted(str(kv) for kv in s4.describe(d).items() if kv[0] != "dtype")
    ),
}


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_operation_on_big_endian_datacube(name, dpc_values):
    native_dc, big, views = twins(dpc_values)
    with dask.config.set(scheduler="sync"):
        expected = OPERATIONS[name](native_dc)
        same(expected, OPERATIONS[name](big))
        same(expected, OPERATIONS[name](views))


@pytest.mark.parametrize(
    "binfactor, sub_pixel, output", [(1, True, "pointlist"), (2, False, "datacube")]
)
def test_electron_count_on_big_endian_datacube(counting_values, binfactor, sub_pixel, output):
    cubes = twins(counting_values)
    dark = np.full(counting_values.shape[2:], 100.0)
    results = [
        electron_count(
            d, dark, Nsamples=10, binfactor=binfactor, sub_pixel=sub_pixel, output=output, seed=5
        )
        for d in cubes
    ]
    same(results[0], results[1])
    same(results[0], results[2])


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_written_stores_are_native(tmp_path, dpc_values, suffix):
    native_dc, big, views = twins(dpc_values)
    for i, dc in enumerate((big, views)):
        path = tmp_path / f"cube{i}{suffix}"
        s4.write(dc, path, progress=False)
        back = s4.read(path)
        assert back.dtype == np.uint16 and back.dtype.isnative
        np.testing.assert_array_equal(back.values, dpc_values)
        assert back.attrs["r_pixel_size"] == 2.0


def test_native_helpers():
    big = np.arange(12, dtype=">u2").reshape(3, 4)
    out = native(big)
    assert out.dtype == np.uint16 and out.dtype.isnative
    np.testing.assert_array_equal(out, big)
    same_array = np.arange(4, dtype=np.uint16)
    assert native(same_array) is same_array
    assert native_dtype(">u4") == np.uint32 and native_dtype("|u1") == np.uint8


def test_frame_rows_are_views_of_strided_frames():
    values = np.random.default_rng(0).integers(0, 4096, (2, 3, 5, 6), dtype=np.uint16)
    frames = strided(values).reshape(6, 5, 6)
    flat, stride, swap = frame_rows(frames)
    assert swap and stride == 192 + 30 and np.shares_memory(flat, frames)
    for i in range(6):
        rows = flat[i * stride : i * stride + 30].byteswap()
        np.testing.assert_array_equal(rows.reshape(5, 6), values.reshape(6, 5, 6)[i])
    flat, stride, swap = frame_rows(values.reshape(6, 5, 6))
    assert not swap and stride == 30 and np.shares_memory(flat, values)
    # rows that are not contiguous (a transposed frame) are copied, in native order
    flat, stride, swap = frame_rows(strided(values).reshape(6, 5, 6).transpose(0, 2, 1))
    assert not swap and stride == 30
    np.testing.assert_array_equal(flat.reshape(6, 6, 5), values.reshape(6, 5, 6).transpose(0, 2, 1))


@pytest.mark.parametrize("dtype", [">u2", ">u4", ">i2", ">i4", ">f4", "<u2", "u1", "<i4"])
def test_center_of_mass_kernel_on_any_byte_order(dtype):
    rng = np.random.default_rng(4)
    values = rng.integers(0 if dtype[1] in "uf" else -300, 3000, (4, 5, 9, 7))
    values = values.astype(dtype)
    expected = center_of_mass_frames(np.ascontiguousarray(values.astype(native_dtype(dtype))))
    views = strided(values) if values.dtype.itemsize > 1 else values[:, :, :, :]
    np.testing.assert_allclose(center_of_mass_frames(views), expected, rtol=1e-12)
    np.testing.assert_allclose(center_of_mass_frames(values), expected, rtol=1e-12)
