"""``crop_data_diffraction``, ``crop_data_real`` and ``median_filter_masked_pixels_2D``: values
(a numpy slice; the datacube repair on one frame), py4DSTEM parity on committed fixtures
(``fixtures/preprocess_py4dstem.npz``), the crop's place kept in the coords, laziness on a huge
file, inputs untouched, complex crops, every bad argument refused by name."""

import tracemalloc
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from strictcupy import installed
from test_laziness import HUGE, huge_npy, no_reads  # noqa: F401  (no_reads: a fixture)

import stem4d_dask as s4
from stem4d_dask import preprocess as pp
from stem4d_dask.datacube import DIMS, check_datacube
from stem4d_dask.device import to_host
from stem4d_dask.preprocess.crop import crop_Q, crop_R
from stem4d_dask.values import value_range

FIX = np.load(Path(__file__).parents[1] / "fixtures" / "preprocess_py4dstem.npz")
U16, F32 = FIX["in__u16"], FIX["in__f32"]  # (3, 4, 11, 9) uint16, (3, 4, 10, 13) float32


def calibrated(data, **kw):
    """As the fixtures' py4DSTEM cubes: Q pixel 0.5, R pixel 2.0 (plus origins/units here)."""
    return s4.from_array(data, r_pixel_size=2.0, q_pixel_size=0.5, **kw)


def boom(block):
    raise AssertionError("computed while building the graph")


# --- crops: values, place, parity ------------------------------------------------------------

CROPS = [  # (fixture case, function, input, bounds)
    ("cropQ_u16", pp.crop_data_diffraction, U16, (2, 9, 1, 7)),
    ("cropQ_u16_full", pp.crop_data_diffraction, U16, (0, 11, 0, 9)),
    ("cropR_f32", pp.crop_data_real, F32, (1, 3, 1, 4)),
    ("cropR_f32_one", pp.crop_data_real, F32, (2, 3, 0, 1)),
]


@pytest.mark.oracle
@pytest.mark.parametrize(("case", "crop", "cube", "bounds"), CROPS, ids=[c[0] for c in CROPS])
def test_crop_values_equal_numpy_slice_and_py4dstem(case, crop, cube, bounds):
    out = crop(calibrated(cube), *bounds)
    x0, x1, y0, y1 = bounds
    sliced = cube[:, :, x0:x1, y0:y1] if crop is pp.crop_data_diffraction else cube[x0:x1, y0:y1]
    np.testing.assert_array_equal(out.values, sliced)
    np.testing.assert_array_equal(out.values, FIX[case])
    assert out.dtype == cube.dtype == np.dtype(str(FIX[f"{case}__dtype"]))
    assert out.attrs["q_pixel_size"] == FIX[f"{case}__qpix"] == 0.5
    assert out.attrs["r_pixel_size"] == FIX[f"{case}__rpix"] == 2.0


@pytest.mark.oracle
@pytest.mark.parametrize(("case", "crop", "cube", "bounds"), CROPS, ids=[c[0] for c in CROPS])
def test_crop_keeps_its_place_where_py4dstem_restarts_at_zero(case, crop, cube, bounds):
    dc = calibrated(cube)
    out = crop(dc, *bounds)
    dims = ("Qx", "Qy") if crop is pp.crop_data_diffraction else ("Rx", "Ry")
    for d, first in zip(dims, bounds[::2], strict=True):
        i = DIMS.index(d)
        step = 0.5 if d[0] == "Q" else 2.0
        np.testing.assert_allclose(FIX[f"{case}__dim{i}"], np.arange(out.sizes[d]) * step)
        np.testing.assert_allclose(out[d].values, FIX[f"{case}__dim{i}"] + first * step)


def test_crop_coords_are_the_kept_pixels_and_attrs_agree():
    dc = s4.from_array(
        U16,
        r_pixel_size=2.5,
        r_units="nm",
        r_origin=(10, -4),
        q_pixel_size=0.25,
        q_units="mrad",
        q_origin=-1.0,
        energy=300e3,
    )
    for out, ref in (
        (pp.crop_data_diffraction(dc, 2, 9, 1, 7), dc.isel(Qx=slice(2, 9), Qy=slice(1, 7))),
        (pp.crop_data_real(dc, 1, 3, 2, 4), dc.isel(Rx=slice(1, 3), Ry=slice(2, 4))),
    ):
        for d in DIMS:
            np.testing.assert_array_equal(out[d].values, ref[d].values)
            assert out[d].attrs == ref[d].attrs
        assert {
            k: out.attrs[k] for k in ("r_pixel_size", "r_units", "q_pixel_size", "q_units")
        } == {"r_pixel_size": 2.5, "r_units": "nm", "q_pixel_size": 0.25, "q_units": "mrad"}
        assert out.attrs["energy"] == 300e3
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no StaleCalibrationWarning: the attrs agree
            assert check_datacube(out) is out
    out = pp.crop_data_diffraction(dc, 2, 9, 1, 7)
    assert out.stem4d.describe()["q_origin"] == pytest.approx((-1.0 + 2 * 0.25, -1.0 + 0.25))


def test_one_pixel_crop_keeps_the_pixel_size_and_irregular_scans_crop():
    dc = calibrated(F32, r_units="A")
    one = pp.crop_data_real(dc, 2, 3, 0, 1)
    assert one.shape[:2] == (1, 1) and one.attrs["r_pixel_size"] == 2.0
    irregular = dc.isel(Ry=[0, 1, 3])  # a scan with a gap: no pixel size, a crop needs none
    out = pp.crop_data_real(irregular, 0, 3, 1, 3)
    np.testing.assert_array_equal(out.Ry.values, [2.0, 6.0])
    np.testing.assert_array_equal(out.values, F32[:, [1, 3]])


def test_crop_keeps_the_value_range_record_and_the_chunks():
    dc = s4.from_array(U16.astype(np.uint16), value_range=(0, 4095), chunks=(2, 2))
    out = pp.crop_data_diffraction(dc, 0, 8, 0, 8)
    assert value_range(out) == (0, 4095)
    assert pp.bin_data_diffraction(out, 2).dtype == np.uint16  # 4 x 4095 fits: as uncropped
    assert out.data.chunks[:2] == dc.data.chunks[:2] and out.data.numblocks[2:] == (1, 1)
    real = pp.crop_data_real(dc, 1, 3, 0, 4)
    assert value_range(real) == (0, 4095)
    assert real.data.chunks[:2] == ((1, 1), (2, 2))  # sliced, never merged or rechunked


def test_crops_of_a_huge_file_read_nothing(tmp_path, no_reads):  # noqa: F811
    dc = s4.read(huge_npy(tmp_path))
    tracemalloc.start()
    q = pp.crop_data_diffraction(dc, 64, 192, 32, 224)
    r = pp.crop_data_real(dc, 100, 300, 0, 512)
    both = pp.crop_data_real(q, 0, 256, 256, 512)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert q.shape == (*HUGE[:2], 128, 192) and r.shape == (200, 512, *HUGE[2:])
    assert both.shape == (256, 256, 128, 192)
    assert peak < 20 * 2**20, f"building allocated {peak / 2**20:.1f} MiB"
    assert q.data.numblocks[2:] == (1, 1)


def test_crop_of_a_small_file_computes_the_slice(tmp_path):
    cube = np.random.default_rng(0).integers(0, 1000, (6, 5, 8, 7)).astype(np.uint16)
    np.save(tmp_path / "c.npy", cube)
    dc = s4.read(tmp_path / "c.npy")
    out = pp.crop_data_real(pp.crop_data_diffraction(dc, 1, 6, 2, 7), 2, 5, 1, 4)
    np.testing.assert_array_equal(out.values, cube[2:5, 1:4, 1:6, 2:7])


def test_crops_leave_the_input_untouched():
    cube = U16.copy()
    dc = calibrated(cube, value_range=(0, 3000))
    before = dc.copy(deep=True)
    for out in (pp.crop_data_diffraction(dc, 1, 5, 2, 6), pp.crop_data_real(dc, 0, 2, 1, 3)):
        out.values  # noqa: B018  (computed)
    xr.testing.assert_identical(dc, before)
    np.testing.assert_array_equal(cube, U16)
    assert value_range(dc) == (0, 3000)


def test_complex_datacubes_are_cropped():
    dc = calibrated(F32)
    z = dc * (1 - 2j) + 0.5j
    assert z.dtype.kind == "c"
    out = pp.crop_data_diffraction(z, 1, 4, 2, 9)
    assert out.dtype == z.dtype
    np.testing.assert_array_equal(out.values, z.values[:, :, 1:4, 2:9])
    np.testing.assert_allclose(out.values.imag, (F32 * -2 + 0.5)[:, :, 1:4, 2:9], rtol=1e-6)
    np.testing.assert_array_equal(out.Qx.values, dc.Qx.values[1:4])
    real = pp.crop_data_real(z.astype(np.complex64), 1, 2, 0, 4)
    assert real.dtype == np.complex64 and real.shape == (1, 4, 10, 13)
    with pytest.raises((TypeError, ValueError), match="datacube: dtype complex"):
        pp.bin_data_diffraction(z, 2)  # operations that mean nothing for complex refuse it


BAD_BOUNDS = [  # (index of the bad argument, value, parameter named)
    (0, -1, "_min"),
    (0, 11, "_min"),  # == N
    (0, True, "_min"),
    (0, np.bool_(False), "_min"),
    (0, 1.0, "_min"),
    (0, "1", "_min"),
    (0, None, "_min"),
    (1, 12, "_max"),
    (1, 0, "_max"),
    (1, 2.5, "_max"),
    (1, 2, "_max"),  # == min
    (1, 1, "_max"),  # < min
    (2, -3, "_min"),
    (3, 10, "_max"),
    (3, np.float64(4), "_max"),
]


@pytest.mark.parametrize("space", ["Q", "R"])
@pytest.mark.parametrize(("index", "value", "suffix"), BAD_BOUNDS)
def test_bad_bounds_raise_naming_the_parameter(space, index, value, suffix):
    cube = np.zeros((11, 9, 11, 9), np.uint8)  # both spaces 11 x 9
    dc = s4.from_array(cube)
    crop = pp.crop_data_diffraction if space == "Q" else pp.crop_data_real
    bounds = [2, 8, 1, 7]
    bounds[index] = value
    name = f"crop_{space}{'xy'[index // 2]}{suffix}"
    with pytest.raises(ValueError, match=name) as err:
        crop(dc, *bounds)
    assert repr(value) in str(err.value)


def test_numpy_integer_bounds_and_bad_datacubes():
    dc = s4.from_array(U16)
    out = pp.crop_data_diffraction(dc, np.int64(1), np.uint8(4), np.int32(0), np.int16(9))
    assert out.shape == (3, 4, 3, 9)
    with pytest.raises(TypeError, match="datacube"):
        pp.crop_data_real(U16, 0, 1, 0, 1)
    with pytest.raises(ValueError, match="datacube"):
        pp.crop_data_real(dc.isel(Qx=0), 0, 1, 0, 1)


def test_datacube_method_forms_take_one_roi():
    """py4DSTEM's ``DataCube.crop_Q(ROI)`` / ``crop_R(ROI)``: the four bounds as one ROI."""
    dc = calibrated(U16)
    xr.testing.assert_identical(crop_Q(dc, (2, 9, 1, 7)), pp.crop_data_diffraction(dc, 2, 9, 1, 7))
    xr.testing.assert_identical(
        crop_R(dc, np.array([1, 3, 0, 2])), pp.crop_data_real(dc, 1, 3, 0, 2)
    )
    for bad in [(1, 2, 3), 5, "abcd", None, (1, 2, 3, 4, 5)]:
        with pytest.raises(ValueError, match="ROI"):
            crop_Q(dc, bad)
    with pytest.raises(ValueError, match="crop_Ry_max"):
        crop_R(dc, (0, 1, 2, 9))


@pytest.mark.gpu
def test_crops_of_gpu_chunks_stay_on_the_gpu():
    dc = calibrated(F32, chunks=(1, 2))
    with installed() as cupy:
        gpu = dc.stem4d.to_device()
        for out, ref in (
            (pp.crop_data_diffraction(gpu, 1, 4, 2, 9), F32[:, :, 1:4, 2:9]),
            (pp.crop_data_real(gpu, 1, 3, 1, 4), F32[1:3, 1:4]),
        ):
            assert type(out.data._meta) is cupy.ndarray
            np.testing.assert_array_equal(to_host(out).values, ref)


# --- median_filter_masked_pixels_2D ----------------------------------------------------------


def frame_and_mask(dtype=np.float64, seed=5):
    rng = np.random.default_rng(seed)
    frame = rng.normal(200, 20, (13, 11))
    mask = np.zeros((13, 11), bool)
    mask[[3, 7, 7, 0, 12, 6], [4, 5, 6, 0, 10, 9]] = True  # isolated, a pair, corners
    frame[mask] += 3000
    return frame.astype(dtype), mask


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint16])
@pytest.mark.parametrize("width", [1, 3, 4, 5])
def test_median2d_equals_the_datacube_repair_on_one_frame(dtype, width):
    frame, mask = frame_and_mask(dtype)
    before = frame.copy()
    out = pp.median_filter_masked_pixels_2D(frame, mask, width)
    ref = pp.median_filter_masked_pixels(s4.from_array(frame[None, None]), mask, width)
    assert type(out) is np.ndarray and out.dtype == dtype and out.shape == frame.shape
    np.testing.assert_array_equal(out, ref.values[0, 0])
    np.testing.assert_array_equal(out[~mask], frame[~mask])
    assert np.abs(out[mask].astype(float) - 200).max() < 100  # the bad values never vote
    np.testing.assert_array_equal(frame, before)  # input untouched


@pytest.mark.oracle
@pytest.mark.parametrize("width", [3, 5])
def test_median2d_equals_py4dstem_on_isolated_pixels_with_odd_kernels(width):
    """py4DSTEM's window median includes the bad pixel; on these isolated pixels the good
    neighbours' middle values tie, so it cannot move the result and both agree exactly."""
    frame, mask = FIX["in__med2d"], FIX["in__med2d_mask"]
    out = pp.median_filter_masked_pixels_2D(frame, mask, width)
    np.testing.assert_array_equal(out, FIX[f"med2d_k{width}"])
    assert (frame[mask] == 5000).all()  # py4DSTEM repairs in place; we did not


def test_median2d_dask_is_lazy_and_dataarrays_keep_coords():
    frame, mask = frame_and_mask()
    expected = pp.median_filter_masked_pixels_2D(frame, mask)
    lazy = pp.median_filter_masked_pixels_2D(
        da.from_array(frame, chunks=5).map_blocks(boom, dtype=frame.dtype),
        da.from_array(mask, chunks=4).map_blocks(boom, dtype=bool),
    )
    assert isinstance(lazy, da.Array) and lazy.shape == frame.shape  # built, nothing computed
    out = pp.median_filter_masked_pixels_2D(da.from_array(frame, chunks=5), mask)
    assert isinstance(out, da.Array) and out.dtype == frame.dtype
    np.testing.assert_array_equal(out.compute(), expected)

    coords = {"Qx": 0.5 * np.arange(13), "Qy": 0.5 * np.arange(11) - 2}
    arr = xr.DataArray(frame, dims=("Qx", "Qy"), coords=coords, name="dp", attrs={"a": 1})
    for d in coords:
        arr[d].attrs["units"] = "mrad"
    before = arr.copy(deep=True)
    got = pp.median_filter_masked_pixels_2D(arr, mask)
    assert isinstance(got, xr.DataArray) and got.name == "dp" and got.attrs == {"a": 1}
    xr.testing.assert_identical(got.coords.to_dataset(), arr.coords.to_dataset())
    np.testing.assert_array_equal(got.values, expected)
    xr.testing.assert_identical(arr, before)
    backed = pp.median_filter_masked_pixels_2D(arr.chunk(4), mask)
    assert isinstance(backed.data, da.Array)
    np.testing.assert_array_equal(backed.values, expected)
    flipped = pp.median_filter_masked_pixels_2D(arr.T, xr.DataArray(mask.T, dims=("Qy", "Qx")))
    assert flipped.dims == ("Qy", "Qx")
    np.testing.assert_array_equal(flipped.values, expected.T)


def test_median2d_dataarray_masks_are_aligned_by_coords():
    frame, mask = frame_and_mask()
    full = xr.DataArray(frame, dims=("Qx", "Qy"), coords={"Qx": np.arange(13.0)})
    part = full.isel(Qx=slice(2, 10))
    big_mask = xr.DataArray(mask, dims=("Qx", "Qy"), coords={"Qx": np.arange(13.0)})
    got = pp.median_filter_masked_pixels_2D(part, big_mask)  # the full detector's mask serves
    ref = pp.median_filter_masked_pixels_2D(frame[2:10], mask[2:10])
    np.testing.assert_array_equal(got.values, ref)
    shifted = big_mask.assign_coords(Qx=np.arange(13.0) + 100)
    with pytest.raises(ValueError, match="mask"):
        pp.median_filter_masked_pixels_2D(part, shifted)
    # a plain array takes a DataArray mask by dim name, positionally
    flipped = xr.DataArray(mask.T, dims=("Qy", "Qx"), coords={"Qx": np.arange(13.0) + 100})
    np.testing.assert_array_equal(
        pp.median_filter_masked_pixels_2D(frame, flipped),
        pp.median_filter_masked_pixels_2D(frame, mask),
    )


@pytest.mark.gpu
def test_median2d_cupy_in_cupy_out():
    frame, mask = frame_and_mask(np.float32)
    expected = pp.median_filter_masked_pixels_2D(frame, mask)
    with installed() as cupy:
        gpu = cupy.asarray(frame)
        for m in (mask, cupy.asarray(mask)):
            out = pp.median_filter_masked_pixels_2D(gpu, m)
            assert type(out) is cupy.ndarray and out is not gpu
            np.testing.assert_array_equal(out.get(), expected)
        np.testing.assert_array_equal(gpu.get(), frame)
        clean = pp.median_filter_masked_pixels_2D(gpu, np.zeros_like(mask))
        assert type(clean) is cupy.ndarray and clean is not gpu


def test_median2d_without_bad_pixels_returns_a_copy():
    frame, _ = frame_and_mask()
    out = pp.median_filter_masked_pixels_2D(frame, np.zeros(frame.shape, int))
    assert out is not frame and not np.shares_memory(out, frame)
    np.testing.assert_array_equal(out, frame)


BAD_MEDIAN = [  # (array, mask, kernel_width, parameter named)
    (np.zeros((2, 5, 5)), np.zeros((5, 5), bool), 3, "array"),
    (np.zeros(5), np.zeros(5, bool), 1, "array"),
    (np.zeros((0, 5)), np.zeros((0, 5), bool), 1, "array"),
    (np.zeros((5, 5), complex), np.zeros((5, 5), bool), 3, "array"),
    (np.full((5, 5), "a"), np.zeros((5, 5), bool), 3, "array"),
    (xr.DataArray(np.zeros((5, 5)), dims=("x", "y")), np.zeros((5, 5), bool), 3, "array"),
    (np.zeros((5, 5)), np.zeros((5, 4), bool), 3, "mask"),
    (np.zeros((5, 5)), np.zeros((5, 5)), 3, "mask"),  # float masks are refused
    (np.zeros((5, 5)), xr.DataArray(np.zeros((5, 5), bool), dims=("a", "Qy")), 3, "mask"),
    (da.zeros((5, 5)), np.zeros((4, 5), bool), 3, "mask"),
    (np.zeros((5, 5)), np.zeros((5, 5), bool), 0, "kernel_width"),
    (np.zeros((5, 5)), np.zeros((5, 5), bool), 6, "kernel_width"),
    (np.zeros((5, 5)), np.zeros((5, 5), bool), 2.0, "kernel_width"),
    (np.zeros((5, 5)), np.zeros((5, 5), bool), True, "kernel_width"),
]


@pytest.mark.parametrize(("array", "mask", "width", "name"), BAD_MEDIAN)
def test_median2d_bad_arguments_raise_naming_them(array, mask, width, name):
    with pytest.raises(ValueError, match=name):
        pp.median_filter_masked_pixels_2D(array, mask, width)
