"""The coords are the calibration's truth (issue 10): each reproduction of a silent wrong result
after a plain xarray operation, and the rules that fix it."""

import warnings

import numpy as np
import pytest
import xarray as xr

import stem4d_dask as s4
from stem4d_dask import synthetic
from stem4d_dask.cli import main
from stem4d_dask.coords import pixel_size
from stem4d_dask.datacube import StaleCalibrationWarning
from stem4d_dask.phase import DPC, center_of_mass
from stem4d_dask.preprocess import (
    bin_data_diffraction,
    bin_data_real,
    center_patterns,
    datacube_diffraction_shift,
    subtract_dark,
    thin_data_real,
)
from stem4d_dask.preprocess.electroncount import electron_count

pytestmark = pytest.mark.filterwarnings("ignore::stem4d_dask.datacube.StaleCalibrationWarning")


@pytest.fixture(scope="module")
def scan():
    """The issue's scan, in memory (so every test reads the same numbers fast)."""
    dc = synthetic.dpc_scan(
        (32, 32),
        (64, 64),
        r_pixel_size=0.5,
        r_units="nm",
        q_pixel_size=1.0,
        q_units="mrad",
        energy=200e3,
    ).datacube
    return s4.from_array(
        dc.values,
        r_pixel_size=0.5,
        r_units="nm",
        q_pixel_size=1.0,
        q_units="mrad",
        energy=200e3,
        chunks=(16, 32),
    )


def _phase(dc):
    dpc = DPC(dc, verbose=False).preprocess(plot_center_of_mass=False, plot_rotation=False)
    return dpc.reconstruct(max_iter=8, progress_bar=False).object_phase.values


# --- 1. a stepped isel --------------------------------------------------------------------


def test_stepped_isel_gives_the_thinned_calibration_and_phase(scan):
    t = scan.isel(Rx=slice(None, None, 2), Ry=slice(None, None, 2))
    assert t.attrs["r_pixel_size"] == 0.5  # xarray leaves the attrs stale ...
    assert pixel_size(t, "r", "test") == 1.0  # ... the coords say 1 nm
    thinned = scan.stem4d.thin_R(2)
    assert thinned.attrs["r_pixel_size"] == 1.0
    np.testing.assert_allclose(_phase(t), _phase(thinned), rtol=1e-6, atol=1e-6)
    assert np.ptp(_phase(t)) == pytest.approx(np.ptp(_phase(thinned)))


def test_stale_attrs_warn_and_the_checked_cube_carries_the_coords(scan):
    t = scan.isel(Rx=slice(None, None, 2), Ry=slice(None, None, 2))
    with pytest.warns(StaleCalibrationWarning, match=r"r_pixel_size 0.5 \(coords: 1\)"):
        checked = t.stem4d.checked()
    assert checked.attrs["r_pixel_size"] == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        checked.stem4d.checked()  # in agreement: no warning
    # a hand edit of the attrs is caught too (the coords still win, and say so)
    edited = scan.copy()
    edited.attrs["q_pixel_size"] = 2.0
    with pytest.warns(StaleCalibrationWarning, match="q_pixel_size 2.0"):
        assert center_of_mass(edited)["com_qx"].attrs["units"] == "mrad"


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_stepped_and_cropped_coords_survive_writing(scan, tmp_path, suffix):
    t = scan.isel(Rx=slice(10, 20, 2), Ry=slice(3, None, 2), Qx=slice(4, 40))
    s4.write(t, tmp_path / f"t{suffix}", progress=False)
    back = s4.read(tmp_path / f"t{suffix}")
    for d in s4.DIMS:
        np.testing.assert_allclose(back[d].values, t[d].values, err_msg=d)
        assert back[d].attrs["units"] == t[d].attrs["units"]
    assert back.attrs["r_pixel_size"] == pytest.approx(1.0)  # x2 step ... of 0.5 nm
    assert back.attrs["energy"] == 200e3
    np.testing.assert_array_equal(back.values, t.values)


# --- 2. a crop keeps its origin ----------------------------------------------------------


def test_crop_origin_round_trips(scan, tmp_path):
    c = scan.isel(Rx=slice(10, 20))
    assert c.Rx.values[0] == 5.0
    s4.to_zarr(c, tmp_path / "c.zarr", progress=False)
    s4.to_h5(c, tmp_path / "c.h5", progress=False)
    assert s4.read(tmp_path / "c.zarr").Rx.values[0] == 5.0
    assert s4.read(tmp_path / "c.h5").Rx.values[0] == 5.0
    assert s4.describe(c)["r_origin"] == (5.0, 0.0)


def test_h5_refuses_coords_py4dstem_cannot_hold(scan, tmp_path):
    pieces = xr.concat([scan.isel(Rx=slice(0, 4)), scan.isel(Rx=slice(8, 12))], dim="Rx")
    with pytest.raises(ValueError, match="to_h5.*not evenly spaced"):
        s4.to_h5(pieces, tmp_path / "p.h5")
    s4.to_zarr(pieces, tmp_path / "p.zarr", progress=False)  # zarr keeps any coords
    np.testing.assert_allclose(s4.read(tmp_path / "p.zarr").Rx.values, pieces.Rx.values)


# --- 3. calibrated outputs in the frame of the data ---------------------------------------


def test_cropped_detector_gives_the_same_calibrated_com(scan):
    full = center_of_mass(scan)
    crop = center_of_mass(scan.sel(Qx=slice(4, 59), Qy=slice(4, 59)))
    np.testing.assert_allclose(crop["com_qx"].values, full["com_qx"].values, rtol=1e-9)
    np.testing.assert_allclose(crop["com_qy"].values, full["com_qy"].values, rtol=1e-9)
    # the py4DSTEM-compatible pixel output stays counted from the corner of the data given
    np.testing.assert_allclose(crop["com_x"].values, full["com_x"].values - 4, rtol=1e-9)


def test_stepped_detector_scales_calibrated_radii(scan):
    from stem4d_dask.detectors import circle_mask

    stepped = scan.isel(Qx=slice(None, None, 2), Qy=slice(None, None, 2))
    assert (
        circle_mask(stepped, 8, units="mrad").sum() == circle_mask((32, 32), 4).sum()
    )  # 8 mrad = 4 pixels of 2 mrad
    rad = 8 / 1000 / s4.electron_wavelength_angstrom(200e3)  # 8 mrad in 1/A
    assert circle_mask(stepped, rad, units="A^-1").sum() == circle_mask((32, 32), 4).sum()


def test_shifts_and_centres_in_calibrated_units(scan):
    crop = scan.isel(Qx=slice(8, 56), Qy=slice(8, 56))
    com = center_of_mass(crop)
    # the centre of mass given as coordinates lands on the same pixels as given as pixels
    by_coords = center_patterns(crop, com["com_qx"], com["com_qy"], units="mrad")
    by_pixels = center_patterns(crop, com["com_x"], com["com_y"])
    np.testing.assert_allclose(by_coords.values, by_pixels.values, atol=1e-3)
    stepped = scan.isel(Qx=slice(None, None, 2), Qy=slice(None, None, 2))
    a = datacube_diffraction_shift(stepped, 4.0, -2.0, units="mrad")  # 2, -1 pixels
    b = datacube_diffraction_shift(stepped, 2.0, -1.0)
    np.testing.assert_allclose(a.values, b.values, atol=1e-3)


# --- 4. DataArray arguments are aligned by name -------------------------------------------


def test_dataarray_arguments_align_by_dim_name(scan):
    dark = np.random.default_rng(0).random((64, 64))
    plain = subtract_dark(scan, dark).values
    named = subtract_dark(scan, xr.DataArray(dark.T, dims=("Qy", "Qx"))).values
    np.testing.assert_array_equal(named, plain)
    with pytest.raises(ValueError, match="darkref: a DataArray argument needs the dims"):
        subtract_dark(scan, xr.DataArray(dark, dims=("a", "b")))
    # coords select the part a cropped datacube covers
    full = xr.DataArray(dark, dims=("Qx", "Qy"), coords={d: scan[d] for d in ("Qx", "Qy")})
    crop = scan.isel(Qx=slice(5, 30))
    np.testing.assert_array_equal(
        subtract_dark(crop, full).values, subtract_dark(crop, dark[5:30]).values
    )
    with pytest.raises(ValueError, match="does not match the datacube"):
        subtract_dark(scan, full.assign_coords(Qx=full.Qx + 100))
    shifts = xr.DataArray(np.full((32, 32), 1.5), dims=("Ry", "Rx"))
    np.testing.assert_allclose(
        datacube_diffraction_shift(scan, shifts, shifts.T.values).values,
        datacube_diffraction_shift(scan, 1.5, 1.5).values,
        atol=1e-4,
    )


def test_transposed_datacubes_are_read_by_name(scan):
    flipped = scan.transpose("Qy", "Ry", "Qx", "Rx")
    np.testing.assert_array_equal(
        bin_data_diffraction(flipped, 2).values, bin_data_diffraction(scan, 2).values
    )
    np.testing.assert_allclose(
        center_of_mass(flipped)["com_x"].values, center_of_mass(scan)["com_x"].values
    )


# --- 5. validation at construction --------------------------------------------------------


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(r_units="mrad"), "r_units must be one of"),
        (dict(q_units="A"), "q_units must be one of"),
        (dict(r_origin=(0, np.nan)), "r_origin"),
    ],
)
def test_from_array_refuses_units_of_the_other_space(kw, match):
    with pytest.raises(ValueError, match=match):
        s4.from_array(np.zeros((2, 2, 4, 4)), **kw)


@pytest.mark.parametrize("dtype", ["U2", object, "M8[s]"])
def test_from_array_refuses_data_that_are_not_real_numbers(dtype):
    with pytest.raises(TypeError, match=r"data: dtype .* is not supported"):
        s4.from_array(np.zeros((2, 2, 4, 4), dtype=dtype))


def test_coords_in_the_wrong_units_or_disagreeing_are_refused(scan):
    wrong = scan.assign_coords(
        Qx=scan.Qx.assign_attrs(units="nm"), Qy=scan.Qy.assign_attrs(units="nm")
    )
    with pytest.raises(ValueError, match="detector units must be one of"):
        center_of_mass(wrong)
    mixed = scan.assign_coords(Ry=scan.Ry.assign_attrs(units="A"))
    with pytest.raises(ValueError, match=r"Rx and Ry coordinates have different units"):
        bin_data_real(mixed, 2)


# --- 6. files whose size or scan does not match -------------------------------------------


def test_npy_scan_shape_that_differs_is_refused(tmp_path):
    np.save(tmp_path / "cube.npy", np.zeros((16, 12, 8, 8), np.uint16))
    with pytest.raises(
        ValueError,
        match=r"scan_shape: \(12, 16\) differs from the scan "
        r"\(16, 12\)",
    ):
        s4.read(tmp_path / "cube.npy", scan_shape=(12, 16))
    assert s4.read(tmp_path / "cube.npy", scan_shape=(16, 12)).shape == (16, 12, 8, 8)


def test_raw_size_mismatch_is_refused_with_both_sizes(tmp_path, capsys):
    np.zeros((16, 12, 32, 32), np.uint16).tofile(tmp_path / "cube.raw")
    assert main(["info", str(tmp_path / "cube.raw"), "--shape", "16,12,32,31"]) == 2
    err = capsys.readouterr().err
    assert "holds 393216 bytes" in err and "needs 380928" in err and "12288 bytes left" in err
    with pytest.raises(ValueError, match="bytes missing"):
        s4.read(tmp_path / "cube.raw", shape=(16, 12, 32, 33), dtype="uint16")
    assert s4.read(tmp_path / "cube.raw", shape=(16, 12, 32, 32), dtype="uint16").shape == (
        16,
        12,
        32,
        32,
    )


# --- 7. repeated binning keeps the smallest dtype -----------------------------------------


def test_repeated_binning_knows_the_value_range(tmp_path):
    u16 = s4.from_array(np.full((8, 8, 16, 16), 65535, np.uint16))
    twice = bin_data_diffraction(bin_data_diffraction(u16, 2), 2)
    assert twice.dtype == np.uint32 and twice.stem4d.value_range() == (0, 16 * 65535)
    assert int(twice.max()) == 16 * 65535
    assert bin_data_real(bin_data_diffraction(u16, 2), 2).dtype == np.uint32
    # --bin-q 2 --bin-r 2, through a store
    np.save(tmp_path / "c.npy", np.full((8, 8, 16, 16), 65535, np.uint16))
    assert (
        main(
            [
                "convert",
                str(tmp_path / "c.npy"),
                str(tmp_path / "b.zarr"),
                "--bin-q",
                "2",
                "--bin-r",
                "2",
            ]
        )
        == 0
    )
    binned = s4.read(tmp_path / "b.zarr")
    assert binned.dtype == np.uint32 and binned.stem4d.value_range() == (0, 16 * 65535)
    assert bin_data_diffraction(binned, 2).dtype == np.uint32  # 64 x 65535 still fits


def test_a_detector_bit_depth_narrows_binning_and_a_stale_record_is_ignored():
    twelve_bit = s4.from_array(np.full((4, 4, 16, 16), 4095, np.uint16), value_range=(0, 4095))
    assert bin_data_diffraction(twelve_bit, 8).dtype == np.uint32  # 64 x 4095 > 65535
    assert bin_data_diffraction(twelve_bit, 4).dtype == np.uint16  # 16 x 4095 fits
    assert int(bin_data_diffraction(twelve_bit, 4).max()) == 16 * 4095
    # arithmetic keeps the attrs but makes new data: the record no longer applies
    scaled = twelve_bit * np.uint16(16)
    assert scaled.attrs["value_range"] == [0, 4095]
    assert scaled.stem4d.value_range() == (0, 65535)
    assert bin_data_diffraction(scaled, 2).dtype == np.uint32


def test_a_wrong_value_range_record_raises_instead_of_wrapping():
    liar = s4.from_array(np.full((2, 2, 4, 4), 60000, np.uint16), value_range=(0, 4095))
    with pytest.raises(OverflowError, match="scan rows 0:2"):
        bin_data_diffraction(liar, 2).compute()


# --- 8. NaN in detector-sized arguments ---------------------------------------------------


def test_nan_in_a_dark_reference_is_named(scan):
    dark = np.zeros((64, 64))
    dark[3, 4] = np.nan
    with pytest.raises(ValueError, match=r"darkreference holds 1 NaN .* first at \(3, 4\)"):
        electron_count(scan, dark)
    with pytest.raises(ValueError, match="darkref holds 1 NaN"):
        subtract_dark(scan, dark)
    lazy = xr.DataArray(dark, dims=("Qx", "Qy")).chunk()
    out = subtract_dark(scan, lazy)  # lazy: found when computed
    with pytest.raises(ValueError, match="darkref holds 1 NaN"):
        out.compute()
    with pytest.raises(ValueError, match="mask must be finite"):
        scan.stem4d.virtual_image(dark)


# --- refusals where a pixel size is needed --------------------------------------------------


def test_irregular_or_non_square_scans_refuse_dpc_but_not_images(scan):
    gap = xr.concat([scan.isel(Rx=slice(0, 8)), scan.isel(Rx=slice(12, 20))], dim="Rx")
    with pytest.raises(
        ValueError, match="DPC needs a scan pixel size, but the Rx coordinate is not evenly spaced"
    ):
        DPC(gap, verbose=False).preprocess(plot_center_of_mass=False, plot_rotation=False)
    assert center_of_mass(gap)["com_qx"].shape == (16, 32)  # needs no scan pixel size
    one_axis = scan.isel(Rx=slice(None, None, 2))
    with pytest.raises(ValueError, match="DPC needs square scan pixels, but the Rx step is 1"):
        DPC(one_axis, verbose=False).preprocess(plot_center_of_mass=False, plot_rotation=False)
    assert "r_pixel_size" not in one_axis.stem4d.checked().attrs
    reverse = scan.isel(Ry=slice(None, None, -1))
    with pytest.raises(ValueError, match="Ry coordinate decreases"):
        DPC(reverse, verbose=False).preprocess(plot_center_of_mass=False, plot_rotation=False)


def test_binning_and_thinning_make_coords_from_the_coords(scan):
    c = scan.isel(Rx=slice(3, 19), Qx=slice(2, 50))
    b = bin_data_real(c, 2)
    np.testing.assert_allclose(b.Rx.values, c.Rx.values.reshape(-1, 2).mean(axis=1))
    t = thin_data_real(c, 3)
    np.testing.assert_allclose(t.Rx.values, c.Rx.values[:15:3])
    q = bin_data_diffraction(c, 4)
    np.testing.assert_allclose(q.Qx.values, c.Qx.values.reshape(-1, 4).mean(axis=1))
    assert q.attrs["q_pixel_size"] == 4.0


def test_with_calibration_keeps_a_crops_place(scan):
    c = scan.isel(Rx=slice(10, 20))  # starts at 5 nm = pixel 10
    r = c.stem4d.with_calibration(r_pixel_size=2.0, r_units="A")
    assert r.Rx.values[0] == 20.0 and r.attrs["r_pixel_size"] == 2.0
    m = scan.stem4d.with_q_units("A^-1").isel(Qx=slice(4, 8))
    back = m.stem4d.with_q_units("mrad")
    np.testing.assert_allclose(back.Qx.values, np.arange(4, 8), rtol=1e-12)


def test_electron_events_keep_the_coordinate_frame(tmp_path):
    from stem4d_dask.events import ElectronEvents

    rng = np.random.default_rng(0)
    frames = 100 + rng.normal(0, 3, (4, 6, 20, 18))
    for idx in np.ndindex(4, 6):
        frames[idx][rng.integers(2, 18, 3), rng.integers(2, 16, 3)] += 70
    cube = s4.from_array(
        np.clip(np.rint(frames), 0, 65535).astype(np.uint16),
        chunks=(2, 6),
        r_pixel_size=2.0,
        r_units="A",
        q_pixel_size=0.5,
        q_units="mrad",
    )
    crop = cube.isel(Rx=slice(1, 4), Qx=slice(2, 20))
    dark = xr.DataArray(
        np.full((20, 18), 100.0), dims=("Qx", "Qy"), coords={d: cube[d] for d in ("Qx", "Qy")}
    )
    events = electron_count(crop, dark, Nsamples=10, sub_pixel=False, seed=0)
    dense = electron_count(crop, dark, Nsamples=10, output="datacube", seed=0)
    for d in s4.DIMS:
        np.testing.assert_array_equal(events.to_datacube()[d].values, crop[d].values)
    np.testing.assert_allclose(
        events.center_of_mass()["com_qx"].values, center_of_mass(dense)["com_qx"].values
    )
    events.to_zarr(tmp_path / "e.zarr", progress=False)
    back = ElectronEvents.from_zarr(tmp_path / "e.zarr")
    assert back.to_datacube().Rx.values[0] == 2.0 and back.to_datacube().Qx.values[0] == 1.0
    binned = electron_count(crop, dark, Nsamples=10, binfactor=2, output="datacube", seed=0)
    np.testing.assert_allclose(binned.Qx.values, crop.Qx.values[:18].reshape(9, 2).mean(1))


def test_kernels_read_stepped_selections_in_place_with_the_same_result():
    from stem4d_dask.kernels import frame_stacks
    from stem4d_dask.kernels.binning import bin_frames
    from stem4d_dask.kernels.com import center_of_mass_frames

    cube = np.random.default_rng(2).integers(0, 4000, (6, 8, 10, 12), dtype=np.uint16)
    for view in (cube[::2, 1::3], cube[1:5, ::-2], cube[:, :, ::2, 1:]):
        stacks = frame_stacks(view)
        assert all(np.shares_memory(s, cube) for s in stacks)  # no copy of the chunk
        assert sum(s.shape[0] for s in stacks) == view.shape[0] * view.shape[1]
        np.testing.assert_array_equal(
            center_of_mass_frames(view), center_of_mass_frames(view.copy())
        )
        np.testing.assert_array_equal(bin_frames(view, 2), bin_frames(view.copy(), 2))


def test_event_masks_align_by_name():
    from stem4d_dask.events import ElectronEvents

    counted = np.zeros((2, 3, 6, 5), bool)
    counted[0, 0, 1, 4] = counted[1, 2, 5, 0] = True
    events = ElectronEvents.from_datacube(s4.from_array(counted, q_pixel_size=0.5, q_units="mrad"))
    weights = np.arange(30.0).reshape(6, 5)
    named = xr.DataArray(weights.T, dims=("Qy", "Qx"))
    np.testing.assert_array_equal(
        events.virtual_image(named).values, events.virtual_image(weights).values
    )
    assert events.virtual_image(weights).values[0, 0] == weights[1, 4]


def test_dpc_field_arguments_align_by_name(scan):
    small = scan.isel(Rx=slice(0, 16), Ry=slice(0, 12))
    com = center_of_mass(small).compute()
    kw = dict(plot_center_of_mass=False, plot_rotation=False)
    plain = DPC(small, verbose=False).preprocess(
        force_com_measured=(com.com_x.values, com.com_y.values), **kw
    )
    named = DPC(small, verbose=False).preprocess(
        force_com_measured=(com.com_x.T, com.com_y.T), **kw
    )  # (Ry, Rx) DataArrays
    assert named.rotation_deg == plain.rotation_deg
    np.testing.assert_array_equal(named.com_x.values, plain.com_x.values)
    alone = DPC(None, verbose=False).preprocess(force_com_measured=(com.com_x.T, com.com_y.T), **kw)
    np.testing.assert_array_equal(alone.com_measured_x.values, plain.com_measured_x.values)
