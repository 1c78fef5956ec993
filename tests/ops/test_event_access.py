"""ElectronEvents per position and by scan region: ``events[rx, ry]`` is that frame's events,
``events[a:b, c:d]`` / ``isel`` the events of a region, lazily, equal to the dense datacube's
slices, whether the blocks are lazy, computed or read from a store."""

import dask
import numpy as np
import pytest

import stem4d_dask as s4
from stem4d_dask.events import ElectronEvents

RNG = np.random.default_rng(11)
COUNTED = (RNG.random((9, 8, 16, 12)) < 0.03).astype(np.uint8)
COUNTED[4, 5, 3, 3] = 2  # two electrons on one pixel


@pytest.fixture(params=["lazy", "computed", "stored"])
def events(request, tmp_path):
    dc = s4.from_array(COUNTED, chunks=(4, 3), r_pixel_size=1.5, r_units="A")
    ev = ElectronEvents.from_datacube(dc)
    if request.param == "computed":
        ev = ev.compute()
    if request.param == "stored":
        ev = ElectronEvents.from_zarr(ev.to_zarr(tmp_path / "ev.zarr", progress=False))
    return ev


def frame_events(rx, ry):
    """The events of one dense frame, C order, a doubled pixel twice."""
    counts = COUNTED[rx, ry].ravel()
    pixels = np.repeat(np.arange(counts.size), counts)
    return np.divmod(pixels, COUNTED.shape[3])


def test_per_position_access(events):
    for rx, ry in [(0, 0), (4, 5), (8, 7), (-1, -2), (3, 6)]:
        got = events[rx, ry]
        qx, qy = frame_events(rx % 9, ry % 8)
        assert got.dtype.names == ("qx", "qy") and got.dtype["qx"] == np.uint16
        np.testing.assert_array_equal(got["qx"], qx)
        np.testing.assert_array_equal(got["qy"], qy)
    assert events[4, 5].size == COUNTED[4, 5].sum()


@pytest.mark.parametrize(
    "rows, cols",
    [(slice(2, 7), slice(1, 5)), (slice(None, None, 2), slice(1, None, 3)), (3, slice(None))],
)
def test_region_equals_the_dense_slice(events, rows, cols):
    region = events[rows, cols]
    dense = COUNTED[rows if not isinstance(rows, int) else slice(rows, rows + 1), cols]
    assert region.scan_shape == dense.shape[:2]
    np.testing.assert_array_equal(region.to_datacube(np.uint8).values, dense)
    np.testing.assert_array_equal(region.counts().values, dense.sum(axis=(2, 3)))
    assert int(region.n_events) == int(dense.sum())
    full = s4.from_array(COUNTED, r_pixel_size=1.5, r_units="A")
    picked = full.isel(Rx=rows if not isinstance(rows, int) else [rows], Ry=cols)
    np.testing.assert_array_equal(region.counts().Rx.values, picked.Rx.values)
    np.testing.assert_array_equal(region.counts().Ry.values, picked.Ry.values)


def test_region_is_lazy_and_a_task_per_new_chunk():
    ev = ElectronEvents.from_datacube(s4.from_array(COUNTED, chunks=(4, 3)))
    region = ev.isel(Rx=slice(1, 9, 2), Ry=slice(2, 8))
    assert not region.is_computed
    assert region.scan_chunks == ((2, 2), (1, 3, 2))  # rows 1,3 | 5,7; columns 2 | 3:6 | 6:8
    layer = region.blocks[0, 0].key[0]
    assert all(b.key[0] == layer for b in region.blocks.flat)
    (block,) = dask.compute(region.blocks[1, 1])
    assert block.scan_shape == (2, 3)


def test_region_calibration_follows_the_step(events):
    assert events[::3, ::3].attrs["r_pixel_size"] == 4.5
    assert events[1:5, 2:4].attrs["r_pixel_size"] == 1.5
    assert "r_pixel_size" not in events[::2, :].attrs  # pixels no longer square
    np.testing.assert_array_equal(events[::3, ::3].counts().Rx.values, [0.0, 4.5, 9.0])


def test_region_stores_and_reopens(events, tmp_path):
    region = events[2:8:2, 1:7]
    back = ElectronEvents.from_zarr(region.to_zarr(tmp_path / "region.zarr", progress=False))
    np.testing.assert_array_equal(back.to_datacube(np.uint8).values, COUNTED[2:8:2, 1:7])
    np.testing.assert_array_equal(back.counts().Rx.values, region.counts().Rx.values)


def test_bad_indices_are_refused(events):
    for key, match in [
        ((9, 0), "Rx index 9 is out of range"),
        ((0, 8), "Ry index 8"),
        ((slice(None, None, 0), 0), "steps must be ints >= 1"),
        ((slice(3, 3), slice(None)), "selects no position"),
        ((0.5, 1), "int or a slice"),
        (0, "two ints or slices"),
    ]:
        with pytest.raises(IndexError, match=match):
            events[key]
