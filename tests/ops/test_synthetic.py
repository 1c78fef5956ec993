import tracemalloc

import numpy as np
import pytest

from stem4d_dask.synthetic import _Model, dpc_scan


def com(frames):
    """Centre of mass (qx, qy) of each frame of an (n, Qx, Qy) stack, in pixels."""
    qx, qy = np.mgrid[: frames.shape[1], : frames.shape[2]]
    total = frames.sum(axis=(1, 2))
    return ((frames * qx).sum(axis=(1, 2)) / total, (frames * qy).sum(axis=(1, 2)) / total)


def test_shape_dtype_calibration():
    scan = dpc_scan(
        (12, 10), (32, 34), r_pixel_size=0.5, q_pixel_size=0.2, q_units="mrad", energy=300e3
    )
    dc = scan.datacube
    assert dc.shape == (12, 10, 32, 34) and dc.dtype == np.uint16
    assert dc.attrs["q_units"] == "mrad" and dc.attrs["energy"] == 300e3
    np.testing.assert_allclose(dc.Ry.values, np.arange(10) * 0.5)
    assert scan.potential.shape == (12, 10) and scan.shift_x.dims == ("Rx", "Ry")


def test_building_a_huge_scan_generates_nothing(monkeypatch):
    def refuse(self, slices):
        raise AssertionError("a pattern was generated at build time")

    monkeypatch.setattr(_Model, "__call__", refuse)
    tracemalloc.start()
    scan = dpc_scan((1024, 1024), (128, 128))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert scan.datacube.nbytes == 1024 * 1024 * 128 * 128 * 2  # 32 GiB logical
    assert peak < 50 * 2**20


def test_seeded_and_independent_of_chunking():
    a = dpc_scan((6, 8), (24, 24), seed=3, chunks=(6, 8)).datacube.values
    b = dpc_scan((6, 8), (24, 24), seed=3, chunks=(1, 3)).datacube.values
    c = dpc_scan((6, 8), (24, 24), seed=4).datacube.values
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_mean_counts_per_pattern():
    dc = dpc_scan((16, 16), (32, 32), electrons_per_pattern=500, absorption=0).datacube
    totals = dc.values.sum(axis=(2, 3))
    assert totals.mean() == pytest.approx(500, rel=0.01)
    assert totals.std() == pytest.approx(np.sqrt(500), rel=0.2)  # Poisson


@pytest.mark.parametrize("transpose", [False, True])
def test_disk_centre_follows_true_shift(transpose):
    scan = dpc_scan(
        (8, 9),
        (40, 40),
        disk_radius=7,
        max_shift=3,
        electrons_per_pattern=1e6,
        descan=(0.1, -0.05),
        transpose=transpose,
        seed=2,
    )
    frames = scan.datacube.values.reshape(-1, 40, 40).astype(float)
    cx, cy = com(frames)
    np.testing.assert_allclose(cx - 19.5, scan.shift_x.values.ravel(), atol=0.05)
    np.testing.assert_allclose(cy - 19.5, scan.shift_y.values.ravel(), atol=0.05)
    assert np.abs(scan.shift_x.values).max() > 1  # the shifts are not trivially small


@pytest.mark.parametrize("rotation_deg,transpose", [(15.0, False), (-40.0, True), (0.0, False)])
def test_py4dstem_rotation_convention_recovers_gradient(rotation_deg, transpose):
    scan = dpc_scan((64, 60), (32, 32), rotation_deg=rotation_deg, transpose=transpose, seed=5)
    nx, ny = scan.shift_x.values, scan.shift_y.values
    if transpose:  # py4DSTEM swaps the measured components first ...
        nx, ny = ny, nx
    t = np.deg2rad(rotation_deg)  # ... then rotates by its _rotation_best_rad
    cx, cy = np.cos(t) * nx - np.sin(t) * ny, np.sin(t) * nx + np.cos(t) * ny
    rx, ry = np.meshgrid(np.arange(64), np.arange(60), indexing="ij")
    gx, gy = scan.model.blobs.gradient(rx, ry)
    np.testing.assert_allclose(cx, gx * scan.model.gradient_scale, atol=1e-12)
    np.testing.assert_allclose(cy, gy * scan.model.gradient_scale, atol=1e-12)
    # and the gradient is that of the published potential
    phi = scan.potential.values
    np.testing.assert_allclose(
        np.gradient(phi, axis=0)[2:-2, 2:-2], gx[2:-2, 2:-2], atol=0.05 * np.abs(gx).max()
    )
    np.testing.assert_allclose(
        np.gradient(phi, axis=1)[2:-2, 2:-2], gy[2:-2, 2:-2], atol=0.05 * np.abs(gy).max()
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"scan_shape": (0, 4)}, "scan_shape"),
        ({"detector_shape": (2, 2)}, "detector_shape"),
        ({"disk_radius": -1}, "disk_radius"),
        ({"disk_radius": 40}, "disk_radius"),
        ({"rotation_deg": 120}, "rotation_deg"),
        ({"electrons_per_pattern": 0}, "electrons_per_pattern"),
        ({"seed": -2}, "seed"),
        ({"electrons_per_pattern": 1e9}, "electrons_per_pattern"),
        ({"absorption": 1.5}, "absorption"),
        ({"descan": (1,)}, "descan"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dpc_scan(**kwargs)
