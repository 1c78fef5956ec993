import numpy as np
import pytest

import stem4d_dask as s4
from stem4d_dask.preprocess import set_scan_shape, swap_Qxy, swap_RQ, swap_Rxy
from stem4d_dask.preprocess.preprocess import set_scan_shape as set_scan_shape_direct


def test_importable_from_both_modules():
    assert set_scan_shape is set_scan_shape_direct


def test_set_scan_shape_c_order(cube_u16, dc_u16):
    out = set_scan_shape(dc_u16, 3, 21)
    assert out.shape == (3, 21, 12, 10)
    assert np.array_equal(out.values, cube_u16.reshape(63, 12, 10).reshape(3, 21, 12, 10))
    np.testing.assert_allclose(out.Ry.values, np.arange(21) * 1.5)
    assert out.attrs == dc_u16.attrs
    assert dc_u16.shape == (7, 9, 12, 10)
    assert out.data.numblocks[2:] == (1, 1)


def test_set_scan_shape_impossible_raises(dc_u16):
    with pytest.raises(ValueError, match="R_Nx, R_Ny"):
        set_scan_shape(dc_u16, 4, 4)
    with pytest.raises(ValueError, match="R_Nx"):
        set_scan_shape(dc_u16, 0, 63)
    with pytest.raises(ValueError, match="R_Ny"):
        set_scan_shape(dc_u16, 63, 1.0)


def test_swap_RQ_keeps_each_space_calibration(cube_u16, dc_u16):
    out = swap_RQ(dc_u16)
    assert np.array_equal(out.values, cube_u16.transpose(2, 3, 0, 1))
    # as py4DSTEM: the scan calibration stays with the scan (units per space stay valid)
    assert (out.attrs["r_pixel_size"], out.attrs["r_units"]) == (1.5, "A")
    assert (out.attrs["q_pixel_size"], out.attrs["q_units"]) == (0.25, "mrad")
    np.testing.assert_allclose(out.Rx.values, np.arange(12) * 1.5)
    np.testing.assert_allclose(out.Qy.values, np.arange(9) * 0.25)
    assert out.data.numblocks[2:] == (1, 1)
    back = swap_RQ(out)
    assert back.attrs == dc_u16.attrs
    assert np.array_equal(back.values, cube_u16)


def test_swap_Rxy_and_Qxy(cube_u16, dc_u16):
    assert np.array_equal(swap_Rxy(dc_u16).values, cube_u16.transpose(1, 0, 2, 3))
    q = swap_Qxy(dc_u16)
    assert np.array_equal(q.values, cube_u16.transpose(0, 1, 3, 2))
    assert q.sizes["Qx"] == 10 and q.Qx.attrs["units"] == "mrad"


def test_lazy_and_input_untouched(dc_u16):
    before = dc_u16.copy()
    for f in (swap_RQ, swap_Rxy, swap_Qxy, lambda d: set_scan_shape(d, 9, 7)):
        out = f(dc_u16)
        assert out.chunks is not None  # still dask-backed
    assert dc_u16.identical(before)


def test_rejects_non_datacube():
    with pytest.raises(TypeError, match="datacube"):
        swap_Rxy(np.zeros((2, 2, 2, 2)))
    with pytest.raises(TypeError, match="datacube"):
        s4.preprocess.set_scan_shape([1, 2], 1, 2)
