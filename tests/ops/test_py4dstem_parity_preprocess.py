"""Parity with py4DSTEM 0.14.18 on committed fixtures (``fixtures/preprocess_py4dstem.npz``,
made by ``fixtures/make_preprocess_fixtures.py`` in the py4DSTEM venv).

Where py4DSTEM has a documented bug (``docs/py4dstem-differences.md``) the test shows the
difference and that everything else agrees.
"""

from pathlib import Path

import numpy as np
import pytest

import stem4d_dask as s4
from stem4d_dask import preprocess as pp
from stem4d_dask.coords import axis

FIXTURES = np.load(Path(__file__).parents[1] / "fixtures" / "preprocess_py4dstem.npz")
R_PIX, Q_PIX = 2.0, 0.5


def cube(name):
    return s4.from_array(
        FIXTURES[f"in__{name}"], r_pixel_size=R_PIX, q_pixel_size=Q_PIX, chunks=(2, 3)
    )


def expect(case, out, *, rtol=1e-6, atol=0.0, check_calibration=True):
    ref = FIXTURES[case]
    assert out.shape == ref.shape, case
    values = out.values if hasattr(out, "values") else np.asarray(out)
    np.testing.assert_allclose(values, ref, rtol=rtol, atol=atol, err_msg=case)
    if check_calibration and f"{case}__qpix" in FIXTURES:
        # py4DSTEM records one pixel size per space, the x axis's where x and y scale apart;
        # ours are the coordinate steps (q_pixel_size is absent for non-square pixels)
        for dim, key in (("Qx", "qpix"), ("Rx", "rpix")):
            step = axis(out, dim).step or out.attrs[f"{key[0]}_pixel_size"]
            assert step == pytest.approx(float(FIXTURES[f"{case}__{key}"])), (case, dim)


def test_fixture_script_recorded_no_errors():
    assert "errors" not in FIXTURES.files or len(FIXTURES["errors"]) == 0


@pytest.mark.parametrize(
    "case, name, factor, dtype",
    [
        ("binQ_u16_b2", "u16", 2, None),
        ("binQ_u16_b3", "u16", 3, None),
        ("binQ_f32_b2", "f32", 2, None),
        ("binQ_f32_b4", "f32", 4, None),
        ("binQ_u16_b2_f32", "u16", 2, np.float32),
    ],
)
def test_bin_q_parity(case, name, factor, dtype):
    out = pp.bin_data_diffraction(cube(name), factor, dtype)
    expect(case, out)
    if dtype is not None or name == "f32":
        assert out.dtype == np.dtype(str(FIXTURES[f"{case}__dtype"]))
    else:  # py4DSTEM keeps uint16 (and would wrap); we widen
        assert out.dtype == np.uint32


def test_bin_q_uint8_differs_only_by_wraparound():
    out = pp.bin_data_diffraction(cube("u8"), 2).values
    ref = FIXTURES["binQ_u8_b2"]
    assert ref.dtype == np.uint8 and out.dtype == np.uint16
    assert out.max() > 255  # sums py4DSTEM cannot hold
    np.testing.assert_array_equal(out % 256, ref)


def test_numpy_integer_factors_accepted():
    expect("binQ_u16_b2", pp.bin_data_diffraction(cube("u16"), np.int64(2)))


@pytest.mark.parametrize(
    "case, factor, dtype", [("binmmap_sq_b2", 2, np.float32), ("binmmap_sq_b3_f64", 3, np.float64)]
)
def test_bin_mmap_parity(case, factor, dtype):
    out = pp.bin_data_mmap(cube("sq"), factor, dtype)
    assert out.dtype == dtype
    expect(case, out)


@pytest.mark.parametrize(
    "case, name, factor", [("binR_u16_b2", "u16", 2), ("binR_f32_b3", "f32", 3)]
)
def test_bin_real_parity(case, name, factor):
    out = pp.bin_data_real(cube(name), factor)
    expect(case, out)
    if name == "u16":
        assert FIXTURES[f"{case}__dtype"] == "uint64" and out.dtype == np.uint32


@pytest.mark.parametrize(
    "case, name, factor", [("thinR_u16_t2", "u16", 2), ("thinR_f32_t3", "f32", 3)]
)
def test_thin_real_parity(case, name, factor):
    out = pp.thin_data_real(cube(name), factor)
    assert out.dtype == FIXTURES[case].dtype
    expect(case, out, rtol=0)


@pytest.mark.parametrize(
    "case, name, kwargs",
    [
        ("resbil_f32_f2", "f32", dict(resampling_factor=2)),
        ("resbil_f32_f15_05", "f32", dict(resampling_factor=(1.5, 0.5))),
        ("resbil_u16_os14_6", "u16", dict(output_size=(14, 6))),
        ("resfou_f32_os20_26", "f32", dict(output_size=(20, 26), method="fourier")),
        ("resfou_f32_os7_9", "f32", dict(output_size=(7, 9), method="fourier")),
        ("resfou_u16_os16_12", "u16", dict(output_size=(16, 12), method="fourier")),
        (
            "resfou_f32_f2_cons",
            "f32",
            dict(resampling_factor=2, method="fourier", conserve_array_sums=True),
        ),
    ],
)
@pytest.mark.filterwarnings("ignore:resampling")
def test_resample_parity(case, name, kwargs):
    out = pp.resample_data_diffraction(cube(name), **kwargs)
    # py4DSTEM's bilinear path interpolates float32 frames; its Fourier path is complex64
    ref_scale = np.abs(FIXTURES[case]).max()
    # calibrations agree here because every size produced is factor x size exactly, except
    # where py4DSTEM uses only the first factor (the (1.5, 0.5) case): Qx's scale is used by both
    expect(case, out, rtol=0, atol=2e-6 * ref_scale)


@pytest.mark.filterwarnings("ignore:resampling")
def test_bilinear_conserve_sums_uses_the_size_produced():
    # (10, 13) x 0.5 -> (5, 6): py4DSTEM divides by the nominal 0.25, we by 30 / 130
    ref = FIXTURES["resbil_f32_f05_cons"]
    out = pp.resample_data_diffraction(cube("f32"), 0.5, conserve_array_sums=True).values
    np.testing.assert_allclose(out * (30 / 130) / 0.25, ref, rtol=2e-6)
    sums = FIXTURES["in__f32"].sum(axis=(2, 3), dtype=np.float64)
    ours_err = np.abs(out.sum(axis=(2, 3)) / sums - 1).max()
    theirs_err = np.abs(ref.sum(axis=(2, 3)) / sums - 1).max()
    assert ours_err < 0.5 * theirs_err  # bilinear sums are approximate; ours 2.5%, theirs 8%


@pytest.mark.parametrize(
    "case, kwargs",
    [("pad_u16_f3", dict(pad_factor=3)), ("pad_u16_os15_12", dict(output_size=(15, 12)))],
)
def test_pad_parity(case, kwargs):
    out = pp.pad_data_diffraction(cube("u16"), **kwargs)
    assert out.dtype == np.uint16
    expect(case, out, rtol=0)


def test_pad_parity_float():
    expect("pad_f32_os13_16", pp.pad_data_diffraction(cube("f32"), output_size=(13, 16)), rtol=0)


def test_pad_factor_differs_only_where_rounding_did():
    ref = FIXTURES["pad_u16_f2"]  # (11, 9) -> py4DSTEM (23, 17); round(2 * Q) = (22, 18)
    out = pp.pad_data_diffraction(cube("u16"), pad_factor=2).values
    assert ref.shape[2:] == (23, 17) and out.shape[2:] == (22, 18)
    data = FIXTURES["in__u16"]
    np.testing.assert_array_equal(out[..., 5:16, 4:13], data)
    np.testing.assert_array_equal(ref[..., 6:17, 4:13], data)
    assert out.sum() == ref.sum()


SHIFTS = {
    "shift_f32_scalar": (1.3, -2.7, {}),
    "shift_f32_arr": ("xs", "ys", {}),
    "shift_f32_arr_np": ("xs", "ys", dict(periodic=False)),
    "shift_f32_arr_bil": ("xs", "ys", dict(bilinear=True)),
    "shift_f32_arr_bil_np": ("xs", "ys", dict(bilinear=True, periodic=False)),
    "shift_f32_half": (0.5, 2.5, dict(periodic=False)),
    "shift_f32_neg_np": (-1.6, -0.4, dict(periodic=False)),
}


@pytest.mark.parametrize("case", list(SHIFTS))
def test_shift_parity(case):
    xs, ys, kwargs = SHIFTS[case]
    xs = FIXTURES["in__xs_f32"] if xs == "xs" else xs
    ys = FIXTURES["in__ys_f32"] if ys == "ys" else ys
    data = FIXTURES["in__f32"].astype(np.float64)
    dc = s4.from_array(data, chunks=(2, 3), r_pixel_size=R_PIX, q_pixel_size=Q_PIX)
    out = pp.datacube_diffraction_shift(dc, xs, ys, **kwargs)
    assert out.dtype == np.float64
    expect(case, out, rtol=0, atol=1e-9 * np.abs(FIXTURES[case]).max())
    out32 = pp.datacube_diffraction_shift(cube("f32"), xs, ys, **kwargs)
    assert out32.dtype == np.float32
    expect(case, out32, rtol=0, atol=1e-5 * np.abs(FIXTURES[case]).max())


def test_utils_parity():
    img = FIXTURES["in__img"]
    np.testing.assert_allclose(pp.bin2D(img, 2), FIXTURES["bin2D_img_f2"], rtol=1e-12)
    frame = FIXTURES["in__u16"][0, 0]
    out = pp.bin2D(frame, 3, dtype=np.float32)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, FIXTURES["bin2D_u16frame_f3_f32"], rtol=1e-6)
    np.testing.assert_allclose(
        np.stack(pp.make_Fourier_coords2D(7, 10, pixelSize=(0.5, 2))),
        FIXTURES["fcoords_7_10"],
        rtol=1e-15,
    )
    np.testing.assert_allclose(
        np.stack(pp.make_Fourier_coords2D(8, 8)), FIXTURES["fcoords_8_8"], rtol=1e-15
    )
    for case, args, kwargs in [
        ("gsa_img", (1.3, -2.7), {}),
        ("gsa_img_bil", (1.3, -2.7), dict(bilinear=True)),
        ("gsa_img_np", (1.3, -2.7), dict(periodic=False)),
        ("gsa_img_bil_np", (1.3, -2.7), dict(bilinear=True, periodic=False)),
        ("gsa_img_half_np", (0.5, -2.5), dict(periodic=False)),
    ]:
        out = pp.get_shifted_ar(img, *args, **kwargs)
        assert out.dtype == np.float64
        np.testing.assert_allclose(out, FIXTURES[case], atol=1e-12, err_msg=case)
    xy = FIXTURES["in__lin2d_xy"]
    values = [pp.linear_interpolation_2D(img, x, y) for x, y in xy]
    np.testing.assert_allclose(values, FIXTURES["lin2d_img"], rtol=1e-12)
    np.testing.assert_allclose(
        pp.linear_interpolation_2D(img, xy[:, 0], xy[:, 1]), FIXTURES["lin2d_img"], rtol=1e-12
    )


def test_get_shifted_ar_gpu_without_cupy_raises(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_cupy(name, *args, **kwargs):
        if name == "cupy":
            raise ImportError("no cupy here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cupy)
    # every GPU path answers the same way (stem4d_dask.backend): py4DSTEM silently computes
    # on the CPU instead
    with pytest.raises(ImportError, match=r"get_shifted_ar\(device='gpu'\) needs cupy"):
        pp.get_shifted_ar(FIXTURES["in__img"], 1.3, -2.7, device="gpu")
    out = pp.get_shifted_ar(FIXTURES["in__img"], 1.3, -2.7, device="cpu")
    np.testing.assert_allclose(out, FIXTURES["gsa_img"], atol=1e-12)
    with pytest.raises(ValueError, match="device"):
        pp.get_shifted_ar(FIXTURES["in__img"], 1, 1, device="tpu")
