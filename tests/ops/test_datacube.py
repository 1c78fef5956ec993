import dask.array as da
import numpy as np
import pytest
import xarray as xr

import stem4d_dask as s4
from stem4d_dask.chunks import MAX_CHUNK_BYTES, MIN_CHUNK_BYTES, auto_chunks


def test_from_array_dims_coords_attrs(cube_u16):
    dc = s4.from_array(
        cube_u16, r_pixel_size=2, r_units="Å", q_pixel_size=0.1, q_units="1/Å", energy=200e3
    )
    assert dc.dims == ("Rx", "Ry", "Qx", "Qy")
    assert isinstance(dc.data, da.Array)
    np.testing.assert_allclose(dc.Ry.values, np.arange(9) * 2.0)
    np.testing.assert_allclose(dc.Qx.values, np.arange(12) * 0.1)
    assert dc.Rx.attrs["units"] == "A" and dc.Qy.attrs["units"] == "A^-1"
    assert dc.attrs == {
        "r_pixel_size": 2.0,
        "r_units": "A",
        "q_pixel_size": 0.1,
        "q_units": "A^-1",
        "energy": 200e3,
    }
    assert np.array_equal(dc.values, cube_u16)


def test_energy_absent_when_unknown(cube_u16):
    assert "energy" not in s4.from_array(cube_u16).attrs


def test_from_array_does_not_copy_numpy(cube_u16):
    dc = s4.from_array(cube_u16)
    cube_u16[0, 0, 0, 0] = 12345
    assert int(dc[0, 0, 0, 0]) == 12345  # a view of the caller's array, not a copy


def test_from_memmap_reads_per_chunk(tmp_path, cube_u16):
    np.save(tmp_path / "c.npy", cube_u16)
    mm = np.load(tmp_path / "c.npy", mmap_mode="r")
    for view, expected in ((mm, cube_u16), (mm[3:], cube_u16[3:])):
        dc = s4.from_array(view, chunks=(2, 9))
        layers = list(dc.data.dask.layers)
        assert len(layers) == 1 and layers[0].startswith("memmap-")
        assert np.array_equal(dc.values, expected)


@pytest.mark.parametrize(
    "shape,itemsize",
    [
        ((256, 256, 256, 256), 2),
        ((128, 128, 128, 128), 2),
        ((64, 64, 512, 512), 4),
        ((32, 4096, 128, 128), 2),
        ((1000, 3, 1024, 1024), 4),
    ],
)
def test_auto_chunks_whole_frames_and_sized(shape, itemsize):
    chunks = auto_chunks(shape, itemsize)
    assert chunks[2:] == shape[2:]
    nbytes = np.prod(chunks) * itemsize
    assert MIN_CHUNK_BYTES <= nbytes <= MAX_CHUNK_BYTES
    ntasks = np.prod([-(-n // c) for n, c in zip(shape, chunks, strict=True)])
    assert ntasks <= 2 * np.prod(shape) * itemsize / MIN_CHUNK_BYTES


def test_small_data_is_one_chunk(cube_u16):
    assert s4.from_array(cube_u16).data.numblocks == (1, 1, 1, 1)


def test_dask_input_keeps_chunks_or_warns_on_split_frames():
    arr = da.zeros((8, 8, 16, 16), chunks=(2, 8, 16, 16), dtype="f4")
    assert s4.from_array(arr).data.chunks == arr.chunks
    split = da.zeros((8, 8, 16, 16), chunks=(8, 8, 8, 8), dtype="f4")
    with pytest.warns(UserWarning, match="detector axes"):
        dc = s4.from_array(split)
    assert dc.data.numblocks[2:] == (1, 1)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"r_pixel_size": 0}, "r_pixel_size"),
        ({"q_pixel_size": -1}, "q_pixel_size"),
        ({"q_pixel_size": float("nan")}, "q_pixel_size"),
        ({"r_units": "furlongs"}, "r_units"),
        ({"q_units": "degrees"}, "q_units"),
        ({"energy": -5}, "energy"),
        ({"chunks": {"Qz": 3}}, "chunks"),
        ({"chunks": (0, 2)}, "chunks"),
    ],
)
def test_bad_parameters_name_themselves(cube_u16, kwargs, match):
    with pytest.raises(ValueError, match=match):
        s4.from_array(cube_u16, **kwargs)


def test_wrong_ndim_raises():
    with pytest.raises(ValueError, match="4D"):
        s4.from_array(np.zeros((3, 4, 5)))


def test_check_datacube_rejects_wrong_dims():
    bad = xr.DataArray(np.zeros((2, 2, 2, 2)), dims=("a", "b", "c", "d"))
    with pytest.raises(ValueError, match="dims"):
        s4.with_calibration(bad, r_pixel_size=2)


def test_with_calibration_and_q_units(cube_u16):
    dc = s4.from_array(cube_u16, q_pixel_size=0.5, q_units="mrad", energy=200e3)
    inv = dc.stem4d.with_q_units("A^-1")
    lam = s4.electron_wavelength_angstrom(200e3)
    assert inv.attrs["q_pixel_size"] == pytest.approx(0.5e-3 / lam)
    np.testing.assert_allclose(inv.Qx.values, np.arange(12) * 0.5e-3 / lam)
    back = inv.stem4d.with_q_units("mrad")
    assert back.attrs["q_pixel_size"] == pytest.approx(0.5)
    assert dc.attrs["q_units"] == "mrad"  # input untouched
    with pytest.raises(ValueError, match="energy"):
        s4.from_array(cube_u16, q_units="mrad").stem4d.with_q_units("A^-1")
    with pytest.raises(ValueError, match="pixels"):
        s4.from_array(cube_u16).stem4d.with_q_units("mrad")


def test_electron_wavelength_matches_py4dstem():
    # py4DSTEM 0.14.18 values (reference/py4dstem-behaviour.md section 6.5)
    assert s4.electron_wavelength_angstrom(300e3) == pytest.approx(0.019687486388, abs=1e-12)
    assert s4.electron_wavelength_angstrom(200e3) == pytest.approx(0.025079337357, abs=1e-12)
    lam = s4.electron_wavelength_angstrom(np.array([80e3, 200e3]))
    np.testing.assert_allclose(lam, [0.041757156203, 0.025079337357], atol=1e-12)
    with pytest.raises(ValueError, match="E_eV"):
        s4.electron_wavelength_angstrom(0)


def test_mrad_inverse_angstrom_round_trip():
    q = s4.mrad_to_inv_angstrom(np.array([1.0, 20.0]), 300e3)
    np.testing.assert_allclose(s4.inv_angstrom_to_mrad(q, 300e3), [1.0, 20.0])
    assert q[0] == pytest.approx(1e-3 / 0.019687486388, rel=1e-9)


def test_accessor_only_delegates(dc_u16):
    from stem4d_dask.preprocess import swap_Rxy

    a = dc_u16.stem4d.swap_Rxy()
    b = swap_Rxy(dc_u16)
    xr.testing.assert_identical(a, b)
