"""Binning, thinning, resampling, padding and shifting of datacubes: values, calibration,
dtypes, chunks, bad input and inputs left untouched."""

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import stem4d_dask as s4
from stem4d_dask import preprocess as pp
from stem4d_dask.preprocess import preprocess as pp_module


def test_seed_names_importable_from_both_modules():
    for name in (
        "bin_data_diffraction",
        "bin_data_mmap",
        "bin_data_real",
        "thin_data_real",
        "resample_data_diffraction",
        "pad_data_diffraction",
        "datacube_diffraction_shift",
    ):
        assert getattr(pp, name) is getattr(pp_module, name)
    from stem4d_dask.preprocess.utils import bin2D, get_shifted_ar  # noqa: F401


def test_bin_q_values_dtype_calibration(cube_u16, dc_u16):
    out = pp.bin_data_diffraction(dc_u16, 3)
    assert out.shape == (7, 9, 4, 3) and out.dtype == np.uint32
    ref = cube_u16[..., :12, :9].reshape(7, 9, 4, 3, 3, 3).sum(axis=(3, 5), dtype=np.uint64)
    np.testing.assert_array_equal(out.values, ref)
    assert out.attrs["q_pixel_size"] == 0.75 and out.attrs["r_pixel_size"] == 1.5
    # each bin sits at the mean coordinate of its three pixels: 0.25 = (0 + 0.25 + 0.5) / 3
    np.testing.assert_allclose(out.Qx.values, 0.25 + np.arange(4) * 0.75)
    assert out.Qx.attrs["units"] == "mrad" and out.attrs["energy"] == 300e3
    assert out.data.chunks[:2] == dc_u16.data.chunks[:2]


def test_bin_q_never_wraps_and_checks_explicit_dtype():
    cube = np.full((2, 3, 4, 4), 250, np.uint8)
    dc = s4.from_array(cube)
    out = pp.bin_data_diffraction(dc, 2)
    assert out.dtype == np.uint16 and int(out.max()) == 1000  # py4DSTEM: 1000 % 256 = 232
    with pytest.raises(OverflowError, match="scan rows 0:2"):
        pp.bin_data_diffraction(dc, 2, dtype=np.uint8).compute()
    assert pp.bin_data_diffraction(dc, 2, dtype="float32").dtype == np.float32
    same = pp.bin_data_diffraction(dc, 1)
    assert same is dc
    assert pp.bin_data_diffraction(dc, 1, dtype=np.float64).dtype == np.float64


def test_bin_mmap_nonsquare_scan(cube_u16, dc_u16):
    out = pp.bin_data_mmap(dc_u16, 2)
    assert out.dtype == np.float32 and out.shape == (7, 9, 6, 5)
    ref = cube_u16.reshape(7, 9, 6, 2, 5, 2).sum(axis=(3, 5), dtype=np.float64)
    np.testing.assert_allclose(out.values, ref, rtol=1e-6)
    assert (out.values[6] > 0).all()  # py4DSTEM leaves rows >= R_Ny at zero (B9)


@pytest.mark.parametrize("chunks", [(3, 9), (2, 4), (7, 9), (1, 5)])
def test_bin_real_aligns_chunks(cube_u16, chunks):
    dc = s4.from_array(cube_u16, chunks=chunks, r_pixel_size=1.5)
    out = pp.bin_data_real(dc, 2)
    assert out.shape == (3, 4, 12, 10) and out.dtype == np.uint32
    assert out.attrs["r_pixel_size"] == 3.0
    assert out.data.numblocks[2:] == (1, 1)  # Q never split
    ref = cube_u16[:6, :8].reshape(3, 2, 4, 2, 12, 10).sum(axis=(1, 3), dtype=np.uint64)
    np.testing.assert_array_equal(out.values, ref)


def test_bin_real_aligned_chunks_add_no_rechunk(cube_u16):
    dc = s4.from_array(cube_u16, chunks=(2, 4))
    out = pp.bin_data_real(dc, 2)
    n_in = len(dict(dc.data.__dask_graph__()))
    assert len(dict(out.data.__dask_graph__())) <= n_in + dc.data.npartitions + 2


def test_thin_real(cube_u16, dc_u16):
    out = pp.thin_data_real(dc_u16, 3)
    assert out.shape == (2, 3, 12, 10) and out.dtype == np.uint16
    np.testing.assert_array_equal(out.values, cube_u16[0:6:3, 0:9:3])
    assert out.attrs["r_pixel_size"] == 4.5
    np.testing.assert_allclose(out.Ry.values, [0, 4.5, 9.0])


@pytest.mark.parametrize("method", ["bilinear", "fourier"])
def test_resample_calibration_follows_actual_size(dc_u16, method):
    # 12 x 1.3 = 15.6 -> 16 pixels (py4DSTEM's Fourier path floors to 15 and divides the pixel
    # size by the nominal 1.3 in both paths)
    out = pp.resample_data_diffraction(dc_u16, 1.3, method=method)
    assert out.shape[2:] == (16, 13)
    # each axis keeps its own step (Qx 12 -> 16, Qy 10 -> 13): the pixels are not square, so
    # there is no single q_pixel_size
    steps = [float(np.diff(out[d].values).mean()) for d in ("Qx", "Qy")]
    assert steps == pytest.approx([0.25 * 12 / 16, 0.25 * 10 / 13])
    assert "q_pixel_size" not in out.attrs
    assert out.dtype == np.float32 and out.data.chunks[:2] == dc_u16.data.chunks[:2]
    out = pp.resample_data_diffraction(dc_u16, output_size=(24, 20), method=method)
    assert out.attrs["q_pixel_size"] == pytest.approx(0.25 * 12 / 24)
    # bilinear samples pixel centres (output pixel j at input (j + 0.5) / 2 - 0.5), Fourier
    # samples from the first pixel on
    first = -0.25 * 0.25 if method == "bilinear" else 0.0
    assert out.Qx.values[0] == pytest.approx(first)


def test_resample_conserve_sums(cube_u16, dc_u16):
    out = pp.resample_data_diffraction(
        dc_u16, output_size=(24, 20), method="fourier", conserve_array_sums=True
    )
    np.testing.assert_allclose(out.sum(axis=(2, 3)).values, cube_u16.sum(axis=(2, 3)), rtol=1e-5)


def test_pad_sizes_and_values(cube_u16, dc_u16):
    out = pp.pad_data_diffraction(dc_u16, output_size=(15, 13))
    assert out.shape[2:] == (15, 13) and out.dtype == np.uint16
    np.testing.assert_array_equal(out.values[..., 1:13, 1:11], cube_u16)
    assert int(out.sum()) == int(cube_u16.sum(dtype=np.uint64))
    odd = s4.from_array(cube_u16[..., :5, :5])
    assert pp.pad_data_diffraction(odd, pad_factor=2).shape[2:] == (10, 10)  # py4DSTEM: 9
    assert out.attrs["q_pixel_size"] == 0.25


def test_shift_forms_agree(cube_u16, dc_u16):
    rng = np.random.default_rng(0)
    xs, ys = rng.uniform(-2, 2, (7, 9)), rng.uniform(-2, 2, (7, 9))
    as_numpy = pp.datacube_diffraction_shift(dc_u16, xs, ys).values
    as_lazy = pp.datacube_diffraction_shift(
        dc_u16,
        xr.DataArray(da.from_array(xs.T, chunks=(4, 2)), dims=("Ry", "Rx")),
        xr.DataArray(ys, dims=("Rx", "Ry")),
    ).values
    as_list = pp.datacube_diffraction_shift(dc_u16, xs.tolist(), ys).values
    np.testing.assert_array_equal(as_numpy, as_list)
    np.testing.assert_allclose(as_lazy, as_numpy, atol=1e-3)
    assert as_numpy.dtype == np.float32
    ref = pp.get_shifted_ar(cube_u16[3, 4], xs[3, 4], ys[3, 4])
    np.testing.assert_allclose(as_numpy[3, 4], ref, atol=2e-3 * ref.max())
    scalar = pp.datacube_diffraction_shift(dc_u16, 1, -2).values
    np.testing.assert_allclose(scalar, np.roll(cube_u16, (1, -2), axis=(2, 3)), atol=0.05)


def test_center_patterns_puts_origins_at_center():
    rng = np.random.default_rng(2)
    qx0, qy0 = rng.uniform(5, 9, (4, 5)), rng.uniform(6, 10, (4, 5))
    qx, qy = np.mgrid[:16, :16]
    cube = np.exp(-((qx - qx0[..., None, None]) ** 2 + (qy - qy0[..., None, None]) ** 2) / 4)
    out = pp.center_patterns(s4.from_array(cube), qx0, qy0, bilinear=False).values
    com = (
        (out * qx).sum(axis=(2, 3)) / out.sum(axis=(2, 3)),
        (out * qy).sum(axis=(2, 3)) / out.sum(axis=(2, 3)),
    )
    np.testing.assert_allclose(com[0], 8, atol=1e-3)
    np.testing.assert_allclose(com[1], 8, atol=1e-3)


def test_inputs_not_mutated(cube_u16, dc_u16):
    before = cube_u16.copy()
    attrs = dict(dc_u16.attrs)
    xs = np.ones((7, 9))
    for out in (
        pp.bin_data_diffraction(dc_u16, 2),
        pp.bin_data_real(dc_u16, 2),
        pp.thin_data_real(dc_u16, 2),
        pp.resample_data_diffraction(dc_u16, 2),
        pp.pad_data_diffraction(dc_u16, 2),
        pp.datacube_diffraction_shift(dc_u16, xs, xs, periodic=False),
    ):
        out.compute()
    np.testing.assert_array_equal(cube_u16, before)
    np.testing.assert_array_equal(xs, 1)
    assert dc_u16.attrs == attrs


def test_accessor_and_py4dstem_method_names(dc_u16):
    acc = dc_u16.stem4d
    pairs = [
        (acc.bin_Q(2), pp.bin_data_diffraction(dc_u16, 2)),
        (acc.bin_data_mmap(2), pp.bin_data_mmap(dc_u16, 2)),
        (acc.bin_R(2), pp.bin_data_real(dc_u16, 2)),
        (acc.thin_R(2), pp.thin_data_real(dc_u16, 2)),
        (
            acc.resample_Q(output_size=(6, 5), method="fourier"),
            pp.resample_data_diffraction(dc_u16, None, (6, 5), "fourier"),
        ),
        (acc.pad_Q(output_size=(13, 13)), pp.pad_data_diffraction(dc_u16, None, (13, 13))),
        (acc.datacube_diffraction_shift(0.5, 1), pp.datacube_diffraction_shift(dc_u16, 0.5, 1)),
        (acc.center_patterns(5, 6), pp.center_patterns(dc_u16, 5, 6)),
    ]
    for a, b in pairs:
        xr.testing.assert_identical(a, b)


BAD = [
    (lambda dc: pp.bin_data_diffraction(dc, 2.0), "bin_factor"),
    (lambda dc: pp.bin_data_diffraction(dc, 0), "bin_factor"),
    (lambda dc: pp.bin_data_diffraction(dc, True), "bin_factor"),
    (lambda dc: pp.bin_data_diffraction(dc, 11), "bin_factor"),
    (lambda dc: pp.bin_data_diffraction(dc, 2, dtype="nonsense"), "dtype"),
    (lambda dc: pp.bin_data_real(dc, 1.5), "bin_factor"),
    (lambda dc: pp.bin_data_real(dc, 8), "bin_factor"),
    (lambda dc: pp.thin_data_real(dc, -1), "thinning_factor"),
    (lambda dc: pp.resample_data_diffraction(dc), "exactly one"),
    (lambda dc: pp.resample_data_diffraction(dc, 2, (4, 4)), "exactly one"),
    (lambda dc: pp.resample_data_diffraction(dc, 0), "resampling_factor"),
    (lambda dc: pp.resample_data_diffraction(dc, (1, 2, 3)), "resampling_factor"),
    (lambda dc: pp.resample_data_diffraction(dc, output_size=(4.5, 4)), "output_size"),
    (lambda dc: pp.resample_data_diffraction(dc, 2, method="cubic"), "method"),
    (lambda dc: pp.pad_data_diffraction(dc), "exactly one"),
    (lambda dc: pp.pad_data_diffraction(dc, 0.5), "pad_factor"),
    (lambda dc: pp.pad_data_diffraction(dc, output_size=(4, 40)), "output_size"),
    (lambda dc: pp.datacube_diffraction_shift(dc, np.zeros((9, 7)), 0), "xshifts"),
    (lambda dc: pp.datacube_diffraction_shift(dc, 0, np.zeros(63)), "yshifts"),
    (lambda dc: pp.datacube_diffraction_shift(dc, np.nan, 0), "xshifts"),
    (lambda dc: pp.datacube_diffraction_shift(dc, "left", 0), "xshifts"),
    (
        lambda dc: pp.datacube_diffraction_shift(
            dc, xr.DataArray(np.zeros((7, 9)), dims=("a", "b")), 0
        ),
        "xshifts",
    ),
    (lambda dc: pp.datacube_diffraction_shift(np.zeros((2, 2, 2, 2)), 0, 0), "datacube"),
    (lambda dc: pp.center_patterns(dc, 1, 1, center=(np.nan, 2)), "center"),
]


@pytest.mark.parametrize("call, name", BAD)
def test_bad_input_names_the_parameter(dc_u16, call, name):
    with pytest.raises((ValueError, TypeError), match=name):
        call(dc_u16)


def test_different_parameters_give_different_graph_keys(cube_u16, dc_u16):
    """Computed together, two calls with different parameters must not share output keys."""
    import dask

    xs = np.ones((7, 9))
    pairs = [
        (
            pp.datacube_diffraction_shift(dc_u16, 1.0, 0),
            pp.datacube_diffraction_shift(dc_u16, 2.0, 0),
        ),
        (
            pp.datacube_diffraction_shift(dc_u16, xs, 0),
            pp.datacube_diffraction_shift(dc_u16, 2 * xs, 0),
        ),
        (pp.bin_data_diffraction(dc_u16, 2), pp.bin_data_diffraction(dc_u16, 2, np.float32)),
        (pp.bin_data_real(dc_u16, 2), pp.bin_data_real(dc_u16, 3)),
        (
            pp.resample_data_diffraction(dc_u16, output_size=(6, 5)),
            pp.resample_data_diffraction(dc_u16, output_size=(12, 10)),
        ),
        (
            pp.pad_data_diffraction(dc_u16, output_size=(14, 12)),
            pp.pad_data_diffraction(dc_u16, output_size=(14, 13)),
        ),
        (pp.subtract_dark(dc_u16, np.zeros((12, 10))), pp.subtract_dark(dc_u16, np.ones((12, 10)))),
        (pp.filter_hot_pixels(dc_u16, 10), pp.filter_hot_pixels(dc_u16, 1000)),
    ]
    for a, b in pairs:
        assert a.data.name != b.data.name
        va, vb = dask.compute(a, b)
        assert (va.shape, va.dtype) != (vb.shape, vb.dtype) or not np.array_equal(va, vb)
