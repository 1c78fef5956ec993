"""The argument checks are made once (stem4d_dask.checks): the same input gets the same answer
everywhere. Each test is a divergence that existed before they were."""

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import stem4d_dask as s4
from stem4d_dask import checks
from stem4d_dask.detectors import circle_mask, segmented_masks
from stem4d_dask.phase import DPC, center_of_mass


@pytest.fixture
def dc():
    cube = np.random.default_rng(0).integers(0, 50, (4, 5, 8, 8), dtype=np.uint16)
    return s4.from_array(cube, q_pixel_size=0.5, q_units="mrad", energy=200e3)


def test_non_finite_weights_are_refused_by_every_mask_taker(dc):
    bad = np.ones((8, 8))
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match="mask holds 1 NaN"):
        center_of_mass(dc, mask=bad)
    with pytest.raises(ValueError, match="dp_mask holds 1 NaN"):
        DPC(dc, verbose=False).preprocess(
            dp_mask=bad, plot_center_of_mass=False, plot_rotation=False
        )
    with pytest.raises(ValueError, match="mask must be finite"):
        dc.stem4d.virtual_image(bad)
    events = dc.stem4d.electron_count(np.zeros((8, 8)), Nsamples=5, seed=0)
    with pytest.raises(ValueError, match="mask holds 1 NaN"):
        events.virtual_image(bad)


def test_lazy_masks_stay_lazy(dc):
    mask = da.from_array(np.ones((8, 8)), chunks=-1)
    com = center_of_mass(dc, mask=mask)
    assert isinstance(com.com_x.data, da.Array)
    np.testing.assert_allclose(com.com_x.values, center_of_mass(dc).com_x.values)


@pytest.mark.parametrize("value", ["3", True, None, [1.0]])
def test_numbers_are_numbers_everywhere(dc, value):
    with pytest.raises(ValueError, match="must be a real number"):
        segmented_masks((8, 8), 4, 1, 3, rotation_offset_deg=value)
    if value is not None:  # None: DPC searches the rotation
        with pytest.raises(ValueError, match="must be a real number"):
            DPC(dc, verbose=False).preprocess(
                force_com_rotation=value, plot_center_of_mass=False, plot_rotation=False
            )
    with pytest.raises(ValueError, match="must be a real number"):
        circle_mask((8, 8), value)


def test_pixel_sizes_and_energies_raise_value_errors():
    for bad in ("0.5", None, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="r_pixel_size"):
            s4.from_array(np.zeros((2, 2, 4, 4)), r_pixel_size=bad)
    with pytest.raises(ValueError, match="energy"):
        s4.from_array(np.zeros((2, 2, 4, 4)), energy="300 kV")
    assert checks.check_energy(np.float32(300e3)) == 300e3


def test_integers_flags_and_scan_shapes():
    assert checks.checked_int(np.int64(3), "n") == 3
    for bad in (3.0, True, "3", 0):
        with pytest.raises(ValueError, match="n must be an integer >= 1"):
            checks.checked_int(bad, "n")
    assert checks.flag(np.bool_(True), "f") is True
    with pytest.raises(ValueError, match="f must be True or False"):
        checks.flag(1, "f")
    assert checks.checked_scan_shape((np.int32(2), 3)) == (2, 3)
    with pytest.raises(ValueError, match="scan_shape must be two positive integers"):
        checks.checked_scan_shape(6)


def test_detector_arrays_align_and_check_the_same_way(dc):
    dark = xr.DataArray(np.ones((8, 8)), dims=("Qy", "Qx"))
    assert checks.detector_array(dark, dc, "darkref").shape == (8, 8)
    with pytest.raises(ValueError, match="darkref must have the detector shape"):
        checks.detector_array(np.ones((8, 7)), dc, "darkref")
    with pytest.raises(ValueError, match="darkref must hold real numbers"):
        checks.detector_array(np.ones((8, 8), complex), dc, "darkref")
