"""Centre of mass: values, NaN for empty patterns, masks, calibration, one pass, laziness."""

import dask.array as da
import numpy as np
import pytest
from fakecupy import FakeCupy

import stem4d_dask as s4
from stem4d_dask.kernels import com as com_kernel
from stem4d_dask.phase import center_of_mass
from stem4d_dask.synthetic import dpc_scan


def reference_com(cube, mask=None):
    frames = cube.astype(np.float64) * (1 if mask is None else mask)
    total = frames.sum(axis=(2, 3))
    x = np.arange(cube.shape[2])[:, None]
    y = np.arange(cube.shape[3])[None, :]
    with np.errstate(invalid="ignore"):
        return total, (frames * x).sum(axis=(2, 3)) / total, (frames * y).sum(axis=(2, 3)) / total


@pytest.mark.parametrize("dtype", [np.uint16, np.uint8, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("mask_kind", [None, "bool", "float"])
def test_com_equals_reference(dtype, mask_kind):
    rng = np.random.default_rng(0)
    cube = rng.integers(0, 200, (5, 7, 12, 10)).astype(dtype)
    cube[1, 2] = 0  # an empty pattern
    mask = {None: None, "bool": rng.random((12, 10)) > 0.3, "float": rng.random((12, 10))}[
        mask_kind
    ]
    com = center_of_mass(s4.from_array(cube, chunks=(2, 7)), mask=mask).compute()
    total, cx, cy = reference_com(cube, mask)
    np.testing.assert_allclose(com.intensity.values, total, rtol=1e-12)
    np.testing.assert_allclose(com.com_x.values, cx, rtol=1e-12)
    np.testing.assert_allclose(com.com_y.values, cy, rtol=1e-12)
    assert np.isnan(com.com_x.values[1, 2]) and np.isnan(com.com_y.values[1, 2])
    assert np.isfinite(np.delete(com.com_x.values.ravel(), 1 * 7 + 2)).all()


def test_cupy_path_with_numpy_standing_in(monkeypatch):
    monkeypatch.setattr(com_kernel, "array_module", lambda x: FakeCupy())
    cube = np.random.default_rng(1).integers(0, 50, (3, 4, 9, 8)).astype(np.uint16)
    cube[0, 0] = 0
    out = com_kernel.center_of_mass_frames(cube, np.ones((9, 8), bool))
    total, cx, cy = reference_com(cube)
    np.testing.assert_allclose(out[..., 0], total)
    np.testing.assert_allclose(out[..., 1], cx)
    np.testing.assert_allclose(out[..., 2], cy)


def test_calibrated_units_and_coords():
    cube = np.random.default_rng(2).integers(0, 50, (4, 5, 8, 8)).astype(np.uint16)
    dc = s4.from_array(cube, r_pixel_size=2.0, r_units="A", q_pixel_size=0.5, q_units="mrad")
    com = center_of_mass(dc)
    assert com.com_x.attrs["units"] == "pixels" and com.com_qx.attrs["units"] == "mrad"
    np.testing.assert_allclose(com.com_qx.values, 0.5 * com.com_x.values)
    np.testing.assert_allclose(com.Ry.values, np.arange(5) * 2.0)
    assert "com_qx" not in center_of_mass(s4.from_array(cube))


def test_synthetic_disk_shift_recovered():
    scan = dpc_scan((12, 10), (40, 40), disk_radius=8, electrons_per_pattern=20000, seed=3)
    com = center_of_mass(scan.datacube).compute()
    np.testing.assert_allclose(com.com_x.values - 19.5, scan.shift_x.values, atol=0.1)
    np.testing.assert_allclose(com.com_y.values - 19.5, scan.shift_y.values, atol=0.1)


def test_one_pass_one_task_per_chunk_and_lazy():
    loads = []

    def load(block, block_info=None):
        loads.append(block_info[0]["chunk-location"])
        return block

    cube = np.random.default_rng(4).integers(0, 9, (6, 8, 10, 10)).astype(np.uint16)
    source = da.map_blocks(load, da.from_array(cube, chunks=(2, 4, 10, 10)), dtype=cube.dtype)
    dc = s4.from_array(source, chunks=None)
    com = center_of_mass(dc)
    assert loads == []  # building read nothing
    com.compute()
    assert sorted(loads) == sorted(set(loads)) and len(loads) == dc.data.npartitions

    def boom(block):
        raise AssertionError("read while building")

    huge = s4.from_array(
        da.map_blocks(
            boom,
            da.zeros((512, 512, 256, 256), dtype=np.uint16, chunks=(1, 512, 256, 256)),
            dtype=np.uint16,
        ),
        chunks=None,
    )
    lazy = center_of_mass(huge)
    assert lazy.com_x.shape == (512, 512)
    stacked = lazy.com_x.data.dask
    n_com = sum(
        1
        for k in dict(stacked)
        if str(k[0] if isinstance(k, tuple) else k).startswith("center_of_mass")
    )
    assert n_com == huge.data.npartitions  # one task per chunk


@pytest.mark.parametrize(
    "mask, match", [(np.ones((3, 3)), "mask"), (np.array([["a"] * 10] * 10), "mask")]
)
def test_bad_mask(mask, match):
    dc = s4.from_array(np.zeros((2, 2, 10, 10), np.uint16))
    with pytest.raises(ValueError, match=match):
        center_of_mass(dc, mask)


def test_accessor_faces():
    import xarray as xr

    from stem4d_dask.phase import DPC

    scan = dpc_scan((12, 12), (24, 24), seed=1)
    dc = scan.datacube
    xr.testing.assert_identical(dc.stem4d.center_of_mass().compute(), center_of_mass(dc).compute())
    ours = dc.stem4d.DPC(verbose=False).preprocess(plot_center_of_mass=False, plot_rotation=False)
    ref = DPC(dc, verbose=False).preprocess(plot_center_of_mass=False, plot_rotation=False)
    assert ours.rotation_deg == ref.rotation_deg and ours.transpose == ref.transpose
