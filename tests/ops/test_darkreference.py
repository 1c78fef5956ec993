"""Dark references and dark subtraction: py4DSTEM parity (true means where it floors), seeds,
laziness (only chunks with a drawn frame are read), bad input."""

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import stem4d_dask as s4
from stem4d_dask import preprocess as pp

FIX = np.load(Path(__file__).parents[1] / "fixtures" / "dark_pixels_py4dstem.npz")
DARK = FIX["in__dark"]  # (4, 5, 12, 10) uint16 with row and column streaks
N = 20


@pytest.fixture
def dc():
    return s4.from_array(DARK, chunks=(1, 5), q_pixel_size=0.3, q_units="mrad")


def strip_mean(side, width, direction):
    frames = DARK.reshape(-1, 12, 10).astype(np.float64)
    edge = slice(0, width) if side == "start" else slice(-width, None)
    if direction == "x":
        return np.broadcast_to(frames[:, edge, :].mean(axis=(0, 1))[None, :], (12, 10))
    return np.broadcast_to(frames[:, :, edge].mean(axis=(0, 2))[:, None], (12, 10))


@pytest.mark.parametrize(
    "case, call, side, width, direction",
    [
        (
            "streaks_x_start_w3",
            lambda d: pp.get_background_streaks_x(d, 3, N, "start"),
            "start",
            3,
            "x",
        ),
        ("streaks_x_end_w2", lambda d: pp.get_background_streaks_x(d, 2, N, "end"), "end", 2, "x"),
        (
            "streaks_y_start_w2",
            lambda d: pp.get_background_streaks_y(d, N, 2, "start"),
            "start",
            2,
            "y",
        ),
        ("streaks_y_end_w4", lambda d: pp.get_background_streaks_y(d, N, 4, "end"), "end", 4, "y"),
        (
            "streaks_dispatch_y",
            lambda d: pp.get_background_streaks(d, N, 3, direction="y"),
            "end",
            3,
            "y",
        ),
    ],
)
def test_streaks_are_true_means_py4dstem_floors(dc, case, call, side, width, direction):
    out = call(dc)
    assert out.dims == ("Qx", "Qy") and out.dtype == np.float64
    assert out.Qx.attrs["units"] == "mrad"
    values = out.values
    np.testing.assert_allclose(values, strip_mean(side, width, direction), rtol=1e-12)
    np.testing.assert_array_equal(np.floor(values), FIX[case])  # py4DSTEM: floor(mean)
    assert not np.array_equal(values, FIX[case])  # the means here are not integers


def test_darkreference_combination_matches_py4dstem_formula(dc):
    x = pp.get_darkreference(dc, N, width_x=2).values
    np.testing.assert_array_equal(np.floor(x), FIX["darkref_x"])
    both = pp.get_darkreference(dc, N, width_x=2, width_y=3).values
    fx, fy = strip_mean("end", 2, "x"), strip_mean("end", 3, "y")
    np.testing.assert_allclose(both, fx + fy - (fx.mean() * 2 + fy.mean() * 3) / 5, rtol=1e-12)
    # py4DSTEM applies the same combination to its floored profiles
    px, py = np.floor(fx), np.floor(fy)
    np.testing.assert_allclose(FIX["darkref_both"], px + py - (px.mean() * 2 + py.mean() * 3) / 5)


def test_dark_reference_recovers_streaks():
    rng = np.random.default_rng(0)
    columns, rows = rng.uniform(0, 30, 24), rng.uniform(0, 10, 20)
    signal = np.zeros((20, 24))
    signal[6:14, 7:17] = 500  # the beam, away from the edge strips
    cube = rng.poisson(signal + columns[None, :] + rows[:, None] + 5, (16, 16, 20, 24))
    dc = s4.from_array(cube.astype(np.uint16))
    dark = pp.get_darkreference(dc, 256, width_x=4, width_y=4, seed=3).values
    truth = columns[None, :] + rows[:, None]
    residual = (dark - truth)[:, :]
    assert np.abs(residual - residual.mean()).max() < 1.0  # streaks recovered up to a level


def test_seeded_draw_is_reproducible_and_reads_only_drawn_chunks(dc, monkeypatch):
    a = pp.get_darkreference(dc, 3, width_x=2, seed=7).values
    b = pp.get_darkreference(dc, 3, width_x=2, seed=7).values
    c = pp.get_darkreference(dc, 3, width_x=2, seed=8).values
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    rng = np.random.default_rng(7)
    picked = np.unravel_index(rng.permutation(20)[:3], (4, 5))
    frames = DARK[picked].astype(float)
    np.testing.assert_allclose(a[0], frames[:, -2:, :].mean(axis=(0, 1)))
    reads = []

    def load(block, block_info=None):
        reads.append(block_info[0]["chunk-location"][:2])
        return block

    counted = s4.from_array(
        da.map_blocks(load, da.from_array(DARK, chunks=(1, 5, 12, 10)), dtype=DARK.dtype),
        chunks=None,
    )
    pp.get_background_streaks_x(counted, 2, 1, seed=1).compute()  # one frame drawn
    assert len(reads) == 1  # of the 4 chunks, only the one holding it was read


def test_subtract_dark_lazy_float(dc):
    dark = pp.get_darkreference(dc, N, width_x=2, width_y=3)
    out = pp.subtract_dark(dc, dark)
    assert out.dtype == np.float32 and out.shape == DARK.shape
    assert out.attrs["q_pixel_size"] == 0.3
    np.testing.assert_allclose(out.values, DARK - dark.values, rtol=1e-6, atol=1e-4)
    plain = pp.subtract_dark(dc, np.ones((12, 10)))
    np.testing.assert_array_equal(plain.values, DARK.astype(np.float32) - 1)
    n_in = len(dict(dc.data.__dask_graph__()))
    assert len(dict(plain.data.__dask_graph__())) <= n_in + dc.data.npartitions + 2
    f64 = pp.subtract_dark(s4.from_array(DARK.astype(np.float64)), np.ones((12, 10)))
    assert f64.dtype == np.float64


def test_bksbtr_matches_py4dstem(dc):
    out = pp.get_bksbtr_DP(dc, FIX["in__darkref"], 2, 3)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out.values, FIX["bksbtr_2_3"], rtol=1e-12)


def test_accessor(dc):
    xr.testing.assert_identical(
        dc.stem4d.get_darkreference(N, 2, 3), pp.get_darkreference(dc, N, 2, 3)
    )
    xr.testing.assert_identical(
        dc.stem4d.subtract_dark(np.zeros((12, 10))), pp.subtract_dark(dc, np.zeros((12, 10)))
    )


def test_zero_widths_warn_and_give_zeros(dc):
    with pytest.warns(UserWarning, match="both 0"):
        out = pp.get_darkreference(dc, 5)
    assert out.shape == (12, 10) and not out.values.any()


def test_nothing_is_read_when_building(dc):
    def boom(block):
        raise AssertionError("data read while building")

    lazy = s4.from_array(
        da.map_blocks(
            boom, da.zeros(DARK.shape, chunks=(1, 5, 12, 10), dtype=np.uint16), dtype=np.uint16
        ),
        chunks=None,
    )
    out = pp.subtract_dark(lazy, pp.get_darkreference(lazy, 5, 2, 2, seed=0))
    assert out.shape == DARK.shape


BAD = [
    (lambda d: pp.subtract_dark(d, np.zeros((10, 12))), "darkref"),
    (lambda d: pp.get_bksbtr_DP(d, np.zeros((3, 3)), 0, 0), "darkref"),
    (lambda d: pp.get_bksbtr_DP(d, np.zeros((12, 10)), 4, 0), "Rx"),
    (lambda d: pp.get_background_streaks_x(d, 13, 5), "width"),
    (lambda d: pp.get_background_streaks_y(d, 5, 11), "width"),
    (lambda d: pp.get_background_streaks_x(d, 2, 5, side="middle"), "side"),
    (lambda d: pp.get_background_streaks(d, 5, 2, direction="z"), "direction"),
    (lambda d: pp.get_background_streaks_x(d, 2, 21), "N_frames"),
    (lambda d: pp.get_background_streaks_x(d, 2, 0), "N_frames"),
    (lambda d: pp.get_darkreference(d, 5, width_x=20), "width_x"),
    (lambda d: pp.get_darkreference(d, 5, width_y=-1), "width_y"),
    (lambda d: pp.get_darkreference(d, 5, width_x=2, side_x="top"), "side_x"),
]


@pytest.mark.parametrize("call, name", BAD)
def test_bad_input(dc, call, name):
    with pytest.raises(ValueError, match=name):
        call(dc)
