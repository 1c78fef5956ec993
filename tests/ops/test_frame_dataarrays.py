"""The 2D functions of ``preprocess.utils`` take a frame of a datacube as it comes,
``dc.isel(Rx=0, Ry=0)`` (numpy- or dask-backed), with the result they give its array."""

import numpy as np
import pytest

import stem4d_dask as s4
from stem4d_dask.preprocess import bin2D, get_maxima_2D, get_shifted_ar


@pytest.fixture(params=["numpy", "dask"])
def frame(request):
    rng = np.random.default_rng(3)
    cube = rng.random((3, 4, 24, 20)) + 0.0
    cube[:, :, 7, 9] += 5
    cube[:, :, 15, 4] += 3
    dc = s4.from_array(cube, chunks=(1, 2))
    dc = dc.compute() if request.param == "numpy" else dc
    return dc.isel(Rx=1, Ry=2), cube[1, 2]


def test_get_maxima_2D_takes_a_frame(frame):
    da_frame, plain = frame
    found = get_maxima_2D(da_frame, maxNumPeaks=2)
    assert found.dtype == get_maxima_2D(plain, maxNumPeaks=2).dtype
    assert np.array_equal(found, get_maxima_2D(plain, maxNumPeaks=2))
    assert [(round(x), round(y)) for x, y, _ in found] == [(7, 9), (15, 4)]


def test_bin2D_and_get_shifted_ar_take_a_frame(frame):
    da_frame, plain = frame
    assert np.array_equal(bin2D(da_frame, 2), bin2D(plain, 2))
    assert np.array_equal(get_shifted_ar(da_frame, 1.5, -2), get_shifted_ar(plain, 1.5, -2))


def test_a_dataarray_that_is_no_frame_is_refused_by_name():
    dc = s4.from_array(np.zeros((2, 2, 8, 8)))
    with pytest.raises(ValueError, match=r"^ar must be a 2D frame.*dims \('Ry', 'Qx', 'Qy'\)"):
        get_maxima_2D(dc.isel(Rx=0))
    with pytest.raises(ValueError, match=r"^array must be a 2D frame"):
        bin2D(dc, 2)
