"""Electron counting: the kernel's rules (thresholds, strict maxima, ties, X-ray suppression,
sub-pixel centroids, binning), thresholds, laziness, the GPU entry points and bad input.
Accuracy on a realistic synthetic scan is in test_counting_accuracy.py."""

import dask.array as da
import numpy as np
import pytest
from fakecupy import FakeCupy

import stem4d_dask as s4
from stem4d_dask.kernels import counting
from stem4d_dask.kernels.binning import bin_frames
from stem4d_dask.kernels.counting import count_frames, events_to_dense, fit_thresholds
from stem4d_dask.preprocess.electroncount import (
    calculate_thresholds,
    electron_count,
    electron_count_GPU,
    torch_bin,
)


def frame_with(values, shape=(9, 10), base=0.0):
    frame = np.full(shape, base, np.float32)
    for (x, y), v in values.items():
        frame[x, y] = v
    return frame[None, None]


def positions(events):
    return sorted(zip(events.qx.tolist(), events.qy.tolist(), strict=True))


def test_rules_of_an_event():
    dark = np.zeros((9, 10), np.float32)
    block = frame_with(
        {
            (2, 3): 50,
            (2, 4): 20,  # a maximum with a lower neighbour
            (6, 6): 40,
            (6, 7): 40,  # a tie: the first in C order wins
            (0, 9): 30,  # a corner pixel counts
            (4, 0): 500,
            (4, 1): 45,  # next to an X-ray: rejected
            (8, 2): 5,
        }
    )  # below the background threshold
    events = count_frames(block, dark, 10, 200, sub_pixel=False)
    assert positions(events) == [(0, 9), (2, 3), (6, 6)]
    assert events.qx.dtype == np.uint16 and list(events.indptr) == [0, 3]


def test_sub_pixel_centroid():
    dark = np.zeros((9, 10), np.float32)
    block = frame_with({(4, 4): 60, (4, 5): 20, (5, 4): 20})
    events = count_frames(block, dark, 10, 200, sub_pixel=True)
    assert events.qx.dtype == np.float32
    np.testing.assert_allclose(
        [events.qx[0], events.qy[0]], [4 + 20 / 100, 4 + 20 / 100], rtol=1e-6
    )


def test_binning_maps_and_crops():
    dark = np.zeros((9, 10), np.float32)
    block = frame_with({(1, 1): 50, (3, 7): 50, (8, 2): 50})  # row 8 is cropped by 2
    events = count_frames(block, dark, 10, 200, sub_pixel=False, binfactor=2)
    assert positions(events) == [(0, 0), (1, 3)]
    sub = count_frames(block, dark, 10, 200, sub_pixel=True, binfactor=2)
    np.testing.assert_allclose(sorted(sub.qx.tolist()), [0.25, 1.25])


def test_vectorised_gpu_path_equals_compiled(monkeypatch):
    rng = np.random.default_rng(0)
    dark = (100 + rng.normal(0, 2, (24, 20))).astype(np.float32)
    frames = dark + rng.normal(0, 3, (3, 4, 24, 20))
    for idx in np.ndindex(3, 4):
        x, y = rng.integers(0, 24, 12), rng.integers(0, 20, 12)
        frames[idx][x, y] += 60
        frames[idx][5, 5] += 3000
    block = np.clip(np.rint(frames), 0, 65535).astype(np.uint16)

    for sub_pixel in (False, True):
        for b in (1, 2):
            ref = count_frames(block, dark, 12, 600, sub_pixel=sub_pixel, binfactor=b)
            with monkeypatch.context() as m:
                m.setattr(counting, "array_module", lambda x: FakeCupy())
                out = count_frames(block, dark, 12, 600, sub_pixel=sub_pixel, binfactor=b)
            np.testing.assert_array_equal(out.indptr, ref.indptr)
            np.testing.assert_allclose(out.qx, ref.qx, atol=1e-5)
            np.testing.assert_allclose(out.qy, ref.qy, atol=1e-5)


def test_fit_thresholds_on_known_noise():
    rng = np.random.default_rng(1)
    noise = np.rint(rng.normal(0, 3, 200_000))
    strikes = rng.normal(60, 8, 2_000)
    tb, tx, counts, edges, (a, mu, sigma) = fit_thresholds(np.concatenate([noise, strikes]))
    assert abs(mu) < 0.1 and abs(sigma - 3) < 0.1
    assert tb == pytest.approx(mu + 4 * sigma)
    assert tx > 40 and len(edges) == len(counts) + 1


def small_scan(shape=(2, 6), q=(20, 18), seed=0):
    rng = np.random.default_rng(seed)
    dark = (100 + rng.normal(0, 2, q)).astype(np.float32)
    frames = dark + rng.normal(0, 3, shape + q)
    for idx in np.ndindex(*shape):
        frames[idx][rng.integers(1, q[0] - 1, 4), rng.integers(1, q[1] - 1, 4)] += 70
    return np.clip(np.rint(frames), 0, 65535).astype(np.uint16), dark


def test_thresholds_any_scan_shape_float_dark_and_seed():
    for shape in ((2, 6), (6, 2)):
        cube, dark = small_scan(shape)
        dc = s4.from_array(cube, chunks=(1, shape[1]))
        tb, tx = calculate_thresholds(dc, dark, Nsamples=12, seed=0)  # every frame drawn
        assert 8 < tb < 20 and tx > tb
        assert calculate_thresholds(dc, dark, Nsamples=5, seed=3) == calculate_thresholds(
            dc, dark, Nsamples=5, seed=3
        )


def test_dense_output_matches_events_and_binning():
    cube, dark = small_scan((3, 4), (20, 18))
    dc = s4.from_array(cube, chunks=(2, 4), q_pixel_size=0.5, q_units="mrad")
    dense = electron_count(dc, dark, Nsamples=12, output="datacube", seed=0)
    assert dense.dtype == bool and dense.shape == cube.shape
    tb, tx = calculate_thresholds(dc, dark, Nsamples=12, seed=0)
    ref = events_to_dense(count_frames(cube, dark, tb, tx, sub_pixel=False), (20, 18))
    np.testing.assert_array_equal(dense.values, ref)
    binned = electron_count(dc, dark, Nsamples=12, output="datacube", binfactor=3, seed=0)
    assert binned.dtype == np.uint8 and binned.shape == (3, 4, 6, 6)
    assert binned.attrs["q_pixel_size"] == 1.5
    np.testing.assert_array_equal(binned.values, bin_frames(ref, 3, np.uint8))


def test_building_reads_nothing():
    def boom(block):
        raise AssertionError("read while building")

    source = da.map_blocks(
        boom, da.zeros((8, 8, 32, 32), chunks=(2, 8, 32, 32), dtype=np.uint16), dtype=np.uint16
    )
    dc = s4.from_array(source, chunks=None)
    out = electron_count(dc, np.zeros((32, 32)), output="datacube")
    assert out.shape == (8, 8, 32, 32)
    n_in = len(dict(dc.data.__dask_graph__()))
    assert len(dict(out.data.__dask_graph__())) <= n_in + dc.data.npartitions + 8


def test_gpu_entry_points():
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
        has_gpu = True
    except Exception:
        has_gpu = False
    cube, dark = small_scan()
    dc = s4.from_array(cube)
    if not has_gpu:
        with pytest.raises(ImportError, match="cupy and a CUDA GPU"):
            electron_count_GPU(dc, dark)
        with pytest.raises(ImportError, match="cupy and a CUDA GPU"):
            torch_bin(cube, "cuda")
    np.testing.assert_array_equal(torch_bin(cube, "cpu"), bin_frames(cube, 2))
    with pytest.raises(ValueError, match="device"):
        torch_bin(cube, "tpu")


BAD = [
    (dict(output="list"), "output"),
    (dict(binfactor=0), "binfactor"),
    (dict(binfactor=100), "binfactor"),
    (dict(Nsamples=13), "Nsamples"),
    (dict(thresh_bkgrnd_Nsigma=-1), "thresh_bkgrnd_Nsigma"),
    (dict(thresh_xray_Nsigma=np.nan), "thresh_xray_Nsigma"),
]


@pytest.mark.parametrize("kwargs, name", BAD)
def test_bad_input(kwargs, name):
    cube, dark = small_scan()
    with pytest.raises(ValueError, match=name):
        electron_count(s4.from_array(cube), dark, **kwargs)
    with pytest.raises(ValueError, match="darkreference"):
        electron_count(s4.from_array(cube), np.zeros((3, 3)))
