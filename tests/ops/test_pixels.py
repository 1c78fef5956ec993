"""Hot-pixel filtering and masked median filtering: planted hot pixels found and repaired,
py4DSTEM parity where it is right, each documented difference shown, laziness, bad input."""

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import stem4d_dask as s4
from stem4d_dask import preprocess as pp
from stem4d_dask.kernels.pixels import hot_pixel_mask, repair_plan

FIX = np.load(Path(__file__).parents[1] / "fixtures" / "dark_pixels_py4dstem.npz")
HOT = FIX["in__hot"]  # (5, 6, 14, 16) float32; hot: (4,5), (9,12), pair (6,9)-(6,10), edge (0,7)
PLANTED = {(4, 5), (9, 12), (6, 9), (6, 10), (0, 7)}


def good_neighbour_median(frames, mask, x, y, h=1):
    """Independent reference: median of the unmasked pixels in the (2h+1) square window."""
    window = frames[..., max(x - h, 0) : x + h + 1, max(y - h, 0) : y + h + 1]
    good = ~mask[max(x - h, 0) : x + h + 1, max(y - h, 0) : y + h + 1]
    return np.median(window[..., good], axis=-1)


def planted_scan(dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    cube = rng.poisson(40, (6, 7, 20, 18)).astype(np.float64)
    hot = [(3, 4), (15, 9), (10, 10), (10, 11), (19, 17), (0, 0)]  # isolated, pair, corners
    for x, y in hot:
        cube[:, :, x, y] += 800
    return cube.astype(dtype), hot


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_planted_hot_pixels_and_pairs_found_and_repaired(dtype):
    cube, hot = planted_scan(dtype)
    before = cube.copy()
    dc = s4.from_array(cube, chunks=(2, 7))
    out, mask = pp.filter_hot_pixels(dc, 200, return_mask=True)
    assert mask.dims == ("Qx", "Qy") and mask.dtype == bool
    assert set(map(tuple, np.argwhere(mask.values))) == set(hot)
    fixed = out.values
    assert fixed.dtype == dtype
    m = mask.values
    for x, y in hot:
        ref = good_neighbour_median(cube.astype(np.float64), m, x, y)
        np.testing.assert_array_equal(
            fixed[:, :, x, y], np.rint(ref) if dtype == np.uint16 else ref
        )
        assert fixed[:, :, x, y].max() < 100  # no longer hot
    untouched = ~m
    np.testing.assert_array_equal(fixed[:, :, untouched], cube[:, :, untouched])
    np.testing.assert_array_equal(cube, before)  # input never mutated


def test_nothing_changes_without_hot_pixels():
    cube = np.random.default_rng(1).poisson(40, (4, 5, 12, 12)).astype(np.uint16)
    out, mask = pp.filter_hot_pixels(s4.from_array(cube), 200, return_mask=True)
    assert not mask.values.any()
    np.testing.assert_array_equal(out.values, cube)


def test_hot_mask_matches_py4dstem_with_ind_compare_shifted():
    """Our ind_compare counts neighbours only: ours(k) == py4DSTEM(k + 1) away from the edges;
    py4DSTEM's k=1 misses the pair our default finds."""
    dc = s4.from_array(HOT)
    interior = np.zeros((14, 16), bool)
    interior[2:-2, 2:-2] = True
    for ours, theirs in ((0, "hot_k1"), (1, "hot_k2")):
        _, mask = pp.filter_hot_pixels(dc, 100, ind_compare=ours, return_mask=True)
        np.testing.assert_array_equal(mask.values[interior], FIX[f"{theirs}__mask"][interior])
    _, default = pp.filter_hot_pixels(dc, 100, return_mask=True)
    found = set(map(tuple, np.argwhere(default.values)))
    assert found == PLANTED  # includes the pair (6,9)-(6,10) and the edge pixel (0,7)
    theirs = set(map(tuple, np.argwhere(FIX["hot_k1__mask"])))
    assert {(6, 9), (6, 10)}.isdisjoint(theirs)


def test_repair_differs_from_py4dstem_only_by_excluding_bad_pixels():
    """py4DSTEM's repaired value is the median of the 3x3 window including the hot pixel; ours
    excludes it. Both checked against independent references on an isolated hot pixel."""
    mask = FIX["hot_k2__mask"]
    out = pp.filter_hot_pixels(s4.from_array(HOT), 100, ind_compare=1).values
    x, y = 4, 5
    window = HOT[:, :, x - 1 : x + 2, y - 1 : y + 2].reshape(5, 6, 9).astype(np.float64)
    np.testing.assert_allclose(FIX["hot_k2"][:, :, x, y], np.median(window, axis=-1))
    np.testing.assert_allclose(
        out[:, :, x, y], good_neighbour_median(HOT.astype(np.float64), mask, x, y)
    )


def test_repair_does_not_depend_on_pixel_order():
    rng = np.random.default_rng(3)
    frames = rng.normal(100, 5, (2, 3, 9, 9))
    mask = np.zeros((9, 9), bool)
    mask[4, 3:6] = True  # a run of three: py4DSTEM's result depends on the visiting order
    out = pp.median_filter_masked_pixels(s4.from_array(frames), mask).values
    flipped = pp.median_filter_masked_pixels(
        s4.from_array(frames[..., ::-1, ::-1].copy()), mask[::-1, ::-1].copy()
    ).values
    np.testing.assert_allclose(out, flipped[..., ::-1, ::-1])
    for y in (3, 4, 5):
        np.testing.assert_allclose(out[:, :, 4, y], good_neighbour_median(frames, mask, 4, y))


def test_median_filter_matches_py4dstem_formula_and_excludes_bad_pixel():
    cube, mask = FIX["in__median"], FIX["in__median_mask"]
    out = pp.median_filter_masked_pixels(s4.from_array(cube), mask, 3).values
    for x, y in np.argwhere(mask):
        window = cube[:, :, x - 1 : x + 2, y - 1 : y + 2].reshape(3, 4, 9)
        np.testing.assert_allclose(FIX["median_k3"][:, :, x, y], np.median(window, axis=-1))
        np.testing.assert_allclose(out[:, :, x, y], good_neighbour_median(cube, mask, x, y))
    np.testing.assert_array_equal(out[:, :, ~mask], FIX["median_k3"][:, :, ~mask])
    assert np.abs(out[:, :, mask] - 100).max() < 40  # the +1000 never leaks into the median


def test_median_filter_widths_and_lazy_masks():
    rng = np.random.default_rng(4)
    frames = rng.normal(100, 5, (2, 2, 11, 11))
    mask = np.zeros((11, 11), bool)
    mask[5, 5] = True
    for width, h in ((3, 1), (4, 2), (5, 2), (1, 1)):  # even widths are centred (width + 1)
        out = pp.median_filter_masked_pixels(s4.from_array(frames), mask, width).values
        np.testing.assert_allclose(out[:, :, 5, 5], good_neighbour_median(frames, mask, 5, 5, h))
    lazy = xr.DataArray(da.from_array(mask, chunks=5), dims=("Qx", "Qy"))
    dc = s4.from_array(frames)
    np.testing.assert_array_equal(
        pp.median_filter_masked_pixels(dc, lazy).values,
        pp.median_filter_masked_pixels(dc, mask).values,
    )


def test_repair_plan_widens_when_all_neighbours_are_bad():
    mask = np.zeros((7, 7), bool)
    mask[2:5, 2:5] = True
    plan = repair_plan(mask, 1)
    counts = {len(t): n.shape[1] for t, n in plan}
    assert sum(len(t) for t, _ in plan) == 9
    centre = [n for t, n in plan if 3 * 7 + 3 in t][0]
    assert centre.shape[1] == 16  # the 5x5 ring around the 3x3 block
    assert all(c > 0 for c in counts.values())


def test_hot_pixel_mask_edges_clip_not_wrap():
    mean = np.full((8, 8), 10.0)
    mean[0, 3] = 500  # hot at the edge
    mean[7, 3] = 500  # and opposite: with wrap-around each would hide the other at k=1
    assert set(map(tuple, np.argwhere(hot_pixel_mask(mean, 100, 0)))) == {(0, 3), (7, 3)}


def test_graph_is_one_pass_per_chunk_and_lazy():
    def boom(block):
        raise AssertionError("data read while building")

    source = da.map_blocks(
        boom, da.zeros((8, 8, 16, 16), chunks=(2, 8, 16, 16), dtype=np.uint16), dtype=np.uint16
    )
    dc = s4.from_array(source, chunks=None)
    out, mask = pp.filter_hot_pixels(dc, 10, return_mask=True)
    assert out.data.npartitions == dc.data.npartitions and mask.shape == (16, 16)
    masked = pp.median_filter_masked_pixels(dc, np.eye(16, dtype=bool))
    n_in = len(dict(dc.data.__dask_graph__()))
    assert len(dict(masked.data.__dask_graph__())) <= n_in + dc.data.npartitions + 3


def test_accessor():
    dc = s4.from_array(HOT)
    xr.testing.assert_identical(dc.stem4d.filter_hot_pixels(100), pp.filter_hot_pixels(dc, 100))
    mask = FIX["hot_k2__mask"]
    xr.testing.assert_identical(
        dc.stem4d.median_filter_masked_pixels(mask), pp.median_filter_masked_pixels(dc, mask)
    )


BAD = [
    (lambda d: pp.filter_hot_pixels(d, -1), "thresh"),
    (lambda d: pp.filter_hot_pixels(d, np.nan), "thresh"),
    (lambda d: pp.filter_hot_pixels(d, 10, ind_compare=20), "ind_compare"),
    (lambda d: pp.filter_hot_pixels(d, 10, ind_compare=1.0), "ind_compare"),
    (lambda d: pp.median_filter_masked_pixels(d, np.zeros((3, 3), bool)), "mask"),
    (lambda d: pp.median_filter_masked_pixels(d, np.zeros((14, 16), float)), "mask"),
    (lambda d: pp.median_filter_masked_pixels(d, np.zeros((14, 16), bool), 15), "kernel_width"),
    (lambda d: pp.median_filter_masked_pixels(d, np.zeros((14, 16), bool), 0), "kernel_width"),
]


@pytest.mark.parametrize("call, name", BAD)
def test_bad_input(call, name):
    with pytest.raises(ValueError, match=name):
        call(s4.from_array(HOT))
