"""Complex datacubes: every accessor operation either means something for complex numbers and
keeps them (reshapes, crops, thinning, zarr, your own functions), or refuses them at once with
a TypeError saying so, never dropping the imaginary part silently."""

import numpy as np
import pytest
from test_gpu_device import NOT_DATA, OPS

import stem4d_dask as s4
from stem4d_dask.accessor import METHODS

# operations that mean something for complex numbers (they move or select values)
KEEP_COMPLEX = {
    "set_scan_shape",
    "swap_RQ",
    "swap_Rxy",
    "swap_Qxy",
    "thin_data_real",
    "crop_data_diffraction",
    "crop_data_real",
    "crop_Q",
    "crop_R",
    "to_zarr",
}
# users' own functions: tested with complex data in tests/ops/test_frame_functions.py (the
# functions of the table here compare values, which complex numbers do not order)
OWN_FUNCTIONS = {"map_frames", "map_frames_ragged", "reduce_frames"}

RNG = np.random.default_rng(5)
CUBE = RNG.random((6, 5, 16, 16)) + 1j * RNG.random((6, 5, 16, 16))


@pytest.fixture
def cube():
    return s4.from_array(
        CUBE,
        chunks=(2, 5),
        r_pixel_size=1.5,
        r_units="A",
        q_pixel_size=0.5,
        q_units="mrad",
        energy=300e3,
    )


@pytest.mark.parametrize("name", sorted(set(OPS) - OWN_FUNCTIONS))
def test_each_operation_keeps_or_refuses_complex_data(name, cube, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    operation, _ = OPS[name]
    if name not in KEEP_COMPLEX:
        with pytest.raises((TypeError, ValueError), match="means nothing for complex numbers"):
            operation(cube)
        return
    out = operation(cube)
    assert out.dtype == CUBE.dtype
    values = out.values  # now: the writers reuse their file name below
    options = dict(r_pixel_size=1.5, r_units="A", q_pixel_size=0.5, q_units="mrad", energy=3e5)
    parts = [
        operation(s4.from_array(part, chunks=(2, 5), **options)).values  # computed in turn
        for part in (CUBE.real, CUBE.imag)
    ]
    np.testing.assert_array_equal(values, parts[0] + 1j * parts[1])


def test_every_data_operation_is_classified():
    assert set(METHODS) - NOT_DATA <= set(OPS)
    assert KEEP_COMPLEX | OWN_FUNCTIONS <= set(OPS)


def test_descriptions_and_calibration_take_complex_cubes(cube):
    assert cube.stem4d.describe()["dtype"] == "complex128"
    moved = cube.stem4d.with_calibration(r_pixel_size=3.0)
    assert moved.dtype == np.complex128 and moved.attrs["r_pixel_size"] == 3.0
