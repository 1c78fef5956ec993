"""Sparse counted electrons (``stem4d_dask.events``): ElectronEvents, its zarr store and
py4DSTEM's two converters, against dense computations on the same counted datacube.

Counted cubes are random sparse uint8 counts (Poisson, so some pixels hold 2+ electrons) on
non-square scans and detectors. Units: detector pixels, electrons.
"""

import json
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

import stem4d_dask as s4
from stem4d_dask.events import ElectronEvents
from stem4d_dask.io.events_store import FORMAT
from stem4d_dask.kernels.counting import EventBlock
from stem4d_dask.kernels.events import dense_to_events
from stem4d_dask.phase import center_of_mass
from stem4d_dask.preprocess.electroncount import (
    counted_datacube_to_pointlistarray,
    counted_pointlistarray_to_datacube,
)
from stem4d_dask.virtual import virtual_image

CAL = dict(r_pixel_size=1.5, r_units="A", q_pixel_size=0.25, q_units="mrad", energy=300e3)

# (scan, detector, scan chunks): non-square everything, regular and ragged chunkings
CASES = [
    ((5, 7), (6, 9), (2, 3)),
    ((5, 7), (6, 9), (5, 7)),
    ((5, 7), (11, 4), ((1, 4), (3, 1, 3))),
    ((7, 3), (9, 6), (1, 3)),
    ((7, 3), (4, 10), (3, 2)),
]


def sparse_cube(scan, detector, rate=0.3, seed=0):
    return np.random.default_rng(seed).poisson(rate, scan + detector).astype(np.uint8)


def datacube(cube, chunks):
    return s4.from_array(cube, chunks=chunks, **CAL)


def blocks_equal(a, b):
    """Bit-for-bit equality of two computed EventBlocks (values, dtypes, scan shape)."""
    return a.scan_shape == b.scan_shape and all(
        x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)
        for x, y in zip(a[:3], b[:3], strict=True)
    )


def raising_datacube(scan, detector, chunks):
    def boom(block):
        raise AssertionError("pixel data read while building a graph")

    zeros = da.zeros(scan + detector, chunks=chunks + detector, dtype=np.uint8)
    return s4.from_array(da.map_blocks(boom, zeros, dtype=np.uint8), chunks=None)


def hand_blocks(subpixel=False):
    """Scan (3, 5) in chunks ((2, 1), (3, 2)), detector (4, 6), built by hand.

    Returns (blocks, scan_chunks, detector, per-position event lists)."""
    dtype = np.float32 if subpixel else np.uint16
    rng = np.random.default_rng(5)
    chunks = ((2, 1), (3, 2))
    detector = (4, 6)
    per_position = np.empty((3, 5), dtype=object)
    blocks = np.empty((2, 2), dtype=object)
    r0 = 0
    for i, n1 in enumerate(chunks[0]):
        c0 = 0
        for j, n2 in enumerate(chunks[1]):
            counts = rng.integers(0, 5, n1 * n2)
            counts[0] = 0  # a position without events
            n = int(counts.sum())
            if subpixel:
                qx = rng.uniform(-0.49, detector[0] - 0.51, n).astype(dtype)
                qy = rng.uniform(-0.49, detector[1] - 0.51, n).astype(dtype)
            else:
                qx = rng.integers(0, detector[0], n).astype(dtype)
                qy = rng.integers(0, detector[1], n).astype(dtype)
            indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            blocks[i, j] = EventBlock(indptr, qx, qy, (n1, n2))
            for k in range(n1 * n2):
                a, b = indptr[k], indptr[k + 1]
                per_position[r0 + k // n2, c0 + k % n2] = (qx[a:b], qy[a:b])
            c0 += n2
        r0 += n1
    return blocks, chunks, detector, per_position


# --- hand-built blocks ----------------------------------------------------------------------


@pytest.mark.parametrize("lazy", [False, True])
def test_hand_built_blocks_give_the_dense_results(lazy):
    blocks, chunks, detector, per_position = hand_blocks()
    if lazy:
        blocks = np.vectorize(lambda b: dask.delayed(lambda: b)(), otypes=[object])(blocks)
    ev = ElectronEvents.from_blocks(blocks, chunks, detector, False, CAL)
    dense = np.zeros((3, 5) + detector, np.uint8)
    for (rx, ry), (qx, qy) in np.ndenumerate(per_position):
        np.add.at(dense[rx, ry], (qx.astype(int), qy.astype(int)), 1)
    assert ev.scan_shape == (3, 5) and ev.numblocks == (2, 2) and ev.is_computed != lazy
    np.testing.assert_array_equal(ev.to_datacube(np.uint8).values, dense)
    np.testing.assert_array_equal(ev.to_datacube().values, dense > 0)
    np.testing.assert_array_equal(ev.counts().values, dense.sum(axis=(2, 3)))
    np.testing.assert_array_equal(ev.sum_diffraction().values, dense.sum(axis=(0, 1)))
    assert int(ev.n_events) == dense.sum()
    assert ev.to_datacube().data.chunks == chunks + ((4,), (6,))


def test_subpixel_events_round_to_pixels_and_keep_their_coordinates():
    blocks, chunks, detector, per_position = hand_blocks(subpixel=True)
    ev = ElectronEvents.from_blocks(blocks, chunks, detector, True, {})
    assert ev.dtype == np.float32 and ev.subpixel
    dense = np.zeros((3, 5) + detector, np.uint8)
    com = np.full((3, 5, 2), np.nan)
    for (rx, ry), (qx, qy) in np.ndenumerate(per_position):
        np.add.at(dense[rx, ry], (np.rint(qx).astype(int), np.rint(qy).astype(int)), 1)
        if qx.size:
            com[rx, ry] = qx.astype(np.float64).mean(), qy.astype(np.float64).mean()
    np.testing.assert_array_equal(ev.to_datacube(np.uint8).values, dense)
    np.testing.assert_array_equal(ev.sum_diffraction().values, dense.sum(axis=(0, 1)))
    mask = np.random.default_rng(2).random(detector)
    np.testing.assert_allclose(
        ev.virtual_image(mask).values, virtual_image(s4.from_array(dense), mask).values, rtol=1e-12
    )
    result = ev.center_of_mass()
    np.testing.assert_allclose(result.com_x.values, com[..., 0], rtol=1e-12)
    np.testing.assert_allclose(result.com_y.values, com[..., 1], rtol=1e-12)
    assert np.isnan(result.com_x.values[0, 0]) and result.intensity.values[0, 0] == 0
    assert "com_qx" not in result  # uncalibrated detector


# --- from_datacube and the dense equivalents ------------------------------------------------


@pytest.mark.parametrize(("scan", "detector", "chunks"), CASES)
def test_counted_cube_round_trips_and_dense_equivalents(scan, detector, chunks):
    cube = sparse_cube(scan, detector, seed=sum(scan + detector))
    assert cube.max() > 1  # repeated events are exercised
    dc = datacube(cube, chunks)
    ev = ElectronEvents.from_datacube(dc)
    assert ev.scan_chunks == dc.data.chunks[:2] and ev.detector_shape == detector
    assert ev.attrs == dc.attrs and not ev.subpixel

    counts = ev.to_datacube(np.uint8)
    assert counts.dtype == np.uint8 and counts.data.chunks == dc.data.chunks
    np.testing.assert_array_equal(counts.values, cube)
    assert counts.attrs == dc.attrs
    xr.testing.assert_identical(counts.coords.to_dataset(), dc.coords.to_dataset())
    hits = ev.to_datacube()
    assert hits.dtype == bool
    np.testing.assert_array_equal(hits.values, cube > 0)

    np.testing.assert_array_equal(ev.counts().values, cube.sum(axis=(2, 3)))
    xr.testing.assert_equal(ev.sum_scan(), ev.counts())
    np.testing.assert_array_equal(ev.sum_diffraction().values, cube.sum(axis=(0, 1)))
    assert ev.sum_diffraction().dims == ("Qx", "Qy")
    assert int(ev.n_events) == int(cube.sum())

    rng = np.random.default_rng(1)
    for mask in (rng.random(detector), rng.random(detector) > 0.5):
        ours, dense = ev.virtual_image(mask), virtual_image(dc, mask)
        np.testing.assert_allclose(ours.values, dense.values, rtol=1e-12)
        assert ours.dims == dense.dims and ours.attrs == dense.attrs

    ours, dense = ev.center_of_mass(), center_of_mass(dc)
    assert (
        set(ours.data_vars)
        == set(dense.data_vars)
        == {"com_x", "com_y", "intensity", "com_qx", "com_qy"}
    )
    xr.testing.assert_identical(ours, dense.compute())  # pixel events: bit for bit
    bool_mask = rng.random(detector) > 0.3
    xr.testing.assert_identical(
        ev.center_of_mass(bool_mask), center_of_mass(dc, bool_mask).compute()
    )
    float_mask = rng.random(detector)
    xr.testing.assert_allclose(
        ev.center_of_mass(float_mask), center_of_mass(dc, float_mask).compute(), rtol=1e-12
    )


def test_empty_positions_give_nan_center_of_mass():
    cube = np.zeros((3, 4, 5, 6), np.uint8)
    cube[1, 2, 3, 4] = 2
    cube[0, 0, 1, 1] = 1
    dc = datacube(cube, (2, 4))
    ours, dense = ElectronEvents.from_datacube(dc).center_of_mass(), center_of_mass(dc)
    xr.testing.assert_identical(ours, dense.compute())
    assert np.isnan(ours.com_x.values[2, 3]) and ours.com_x.values[1, 2] == 3


def test_bool_cube_and_subpixel_flag():
    cube = sparse_cube((4, 6), (5, 3), seed=3) > 0
    ev = ElectronEvents.from_datacube(datacube(cube, (3, 4)), subpixel=True)
    block = ev.compute().blocks[0, 0]
    assert ev.subpixel and block.qx.dtype == np.float32 and block.indptr.dtype == np.int64
    np.testing.assert_array_equal(ev.to_datacube().values, cube)


def test_compute_and_persist_materialise_in_one_call():
    cube = sparse_cube((5, 7), (6, 9))
    ev = ElectronEvents.from_datacube(datacube(cube, (2, 3)))
    assert not ev.is_computed and "lazy" in repr(ev)
    done = ev.compute()
    assert done.is_computed and isinstance(done.n_events, int)
    assert done.n_events == cube.sum() and f"{cube.sum()} events" in repr(done)
    assert all(isinstance(b, EventBlock) for b in done.blocks.flat)
    assert done.blocks[1, 2].scan_shape == (2, 1)
    for (i, j), block in np.ndenumerate(done.blocks):
        part = cube[2 * i : 2 * i + 2, 3 * j : 3 * j + 3]
        assert blocks_equal(block, dense_to_events(part))
    kept = ev.persist()
    np.testing.assert_array_equal(kept.to_datacube(np.uint8).values, cube)
    np.testing.assert_array_equal(done.to_datacube(np.uint8).values, cube)
    calls = []

    def counting(block):
        calls.append(block.size)  # dask may call it once on an empty array for the meta
        return block

    source = datacube(cube, (2, 3))
    traced = s4.from_array(source.data.map_blocks(counting, dtype=np.uint8), chunks=None)
    ElectronEvents.from_datacube(traced).compute()
    assert len([n for n in calls if n]) == 9  # each of the 3 x 3 chunks read once


# --- laziness -------------------------------------------------------------------------------


def test_building_reads_nothing_and_makes_one_task_per_chunk():
    dc = raising_datacube((6, 5), (8, 7), (2, 5))
    n_chunks = dc.data.npartitions
    ev = counted_datacube_to_pointlistarray(dc)
    cube = ev.to_datacube(np.uint8)
    results = [
        cube,
        ev.counts(),
        ev.virtual_image(np.ones((8, 7))),
        ev.center_of_mass()["com_x"],
        ev.sum_diffraction(),
        ev.n_events,
    ]
    repr(ev)
    assert cube.shape == (6, 5, 8, 7) and cube.data.chunks == dc.data.chunks
    n_source = len(dict(dc.data.__dask_graph__()))
    # events: one task per chunk; dense: one more per chunk
    assert len(dict(cube.data.__dask_graph__())) == n_source + 2 * n_chunks
    assert len(cube.data.dask.layers[cube.data.name]) == n_chunks
    assert len(dict(ev.counts().data.__dask_graph__())) == n_source + 2 * n_chunks
    with pytest.raises(AssertionError, match="read while building"):
        results[1].compute()


def test_from_zarr_reads_nothing_until_computed(tmp_path):
    cube = sparse_cube((5, 7), (6, 9))
    ElectronEvents.from_datacube(datacube(cube, (2, 3))).to_zarr(
        tmp_path / "e.zarr", progress=False
    )
    ev = ElectronEvents.from_zarr(tmp_path / "e.zarr")
    assert ev.n_events == cube.sum()  # from the metadata
    for block in (tmp_path / "e.zarr" / "blocks").iterdir():
        for field in ("indptr", "qx", "qy"):
            for chunk in (block / field / "c").glob("*"):
                chunk.unlink()  # data gone: building must still work
    dense = ev.to_datacube(np.uint8)
    image = ev.virtual_image(np.ones((6, 9)))
    assert len(dense.data.dask.layers[dense.data.name]) == 9
    assert len(dict(dense.data.__dask_graph__())) == 2 * 9
    with pytest.raises(ValueError, match=r"scan chunk \(\d, \d\)"):
        image.compute()


# --- zarr store -----------------------------------------------------------------------------


@pytest.mark.parametrize(("scan", "detector", "chunks"), CASES)
def test_zarr_round_trip_is_bit_exact(tmp_path, scan, detector, chunks):
    cube = sparse_cube(scan, detector, seed=7)
    ev = ElectronEvents.from_datacube(datacube(cube, chunks)).compute()
    path = ev.to_zarr(tmp_path / "e.zarr", progress=False)
    assert path == tmp_path / "e.zarr" and not (tmp_path / "e.zarr.partial").exists()
    back = ElectronEvents.from_zarr(path)
    assert back.scan_chunks == ev.scan_chunks and back.detector_shape == detector
    assert back.attrs == ev.attrs and back.subpixel is False
    done = back.compute()
    assert all(blocks_equal(a, b) for a, b in zip(done.blocks.flat, ev.blocks.flat, strict=True))
    np.testing.assert_array_equal(back.to_datacube(np.uint8).values, cube)
    assert not any(p.name.startswith("datacube") for p in path.rglob("*"))


def test_zarr_round_trip_subpixel_and_empty_blocks(tmp_path):
    blocks, chunks, detector, _ = hand_blocks(subpixel=True)
    blocks[1, 1] = EventBlock(
        np.zeros(3, np.int64), np.empty(0, np.float32), np.empty(0, np.float32), (1, 2)
    )
    ev = ElectronEvents.from_blocks(
        blocks, chunks, detector, True, {"r_units": "nm", "r_pixel_size": 0.4}
    )
    ev.to_zarr(tmp_path / "s.zarr", progress=False)
    back = ElectronEvents.from_zarr(tmp_path / "s.zarr").compute()
    assert back.subpixel and back.attrs == {"r_units": "nm", "r_pixel_size": 0.4}
    assert all(blocks_equal(a, b) for a, b in zip(back.blocks.flat, blocks.flat, strict=True))


def test_store_layout_and_metadata(tmp_path):
    cube = sparse_cube((5, 7), (6, 9))
    ev = ElectronEvents.from_datacube(datacube(cube, (2, 3)))
    ev.to_zarr(tmp_path / "e.zarr", progress=False)
    meta = json.loads((tmp_path / "e.zarr" / "zarr.json").read_text())
    attrs = meta["attributes"]
    assert meta["zarr_format"] == 3
    assert attrs["format"] == FORMAT and attrs["format_version"] == 1
    assert attrs["scan_shape"] == [5, 7] and attrs["scan_chunks"] == [[2, 2, 1], [3, 3, 1]]
    assert attrs["detector_shape"] == [6, 9] and attrs["position_dtype"] == "uint16"
    assert attrs["n_events"] == cube.sum() and attrs["attrs"]["energy"] == 300e3
    assert np.array(attrs["block_events"]).sum() == cube.sum()
    qx = json.loads((tmp_path / "e.zarr" / "blocks" / "2.1" / "qx" / "zarr.json").read_text())
    assert qx["data_type"] == "uint16"
    assert any(c["name"] == "blosc" and c["configuration"]["cname"] == "zstd" for c in qx["codecs"])


def test_zarr_overwrite_partial_and_failed_write(tmp_path):
    ev = ElectronEvents.from_datacube(datacube(sparse_cube((5, 7), (6, 9)), (2, 3)))
    target = tmp_path / "e.zarr"
    (tmp_path / "e.zarr.partial").mkdir()  # stale leftovers of a crashed write
    ev.to_zarr(target, progress=False)
    with pytest.raises(FileExistsError, match="e.zarr"):
        ev.to_zarr(target, progress=False)
    ev.to_zarr(target, overwrite=True, progress=False)
    assert ElectronEvents.from_zarr(target).n_events == int(ev.n_events)
    bad = np.empty((1, 1), dtype=object)
    bad[0, 0] = dask.delayed(
        lambda: EventBlock(
            np.array([0, 1], np.int64), np.array([9], np.uint16), np.array([0], np.uint16), (1, 1)
        )
    )()
    broken = ElectronEvents.from_blocks(bad, ((1,), (1,)), (4, 4), False)
    with pytest.raises(ValueError, match="qx positions"):
        broken.to_zarr(tmp_path / "b.zarr", progress=False)
    assert not (tmp_path / "b.zarr").exists()
    assert not (tmp_path / "b.zarr.partial").exists()  # removed on failure, as to_h5 does


def test_compression_of_a_sparse_counted_scan(tmp_path):
    """32 x 32 scan, 128 x 128 detector, 0.01 electrons per pixel (~164 per frame): the event
    store is at least 20x smaller than the raw uint16 frames (2 bytes per pixel)."""
    scan, detector = (32, 32), (128, 128)
    cube = np.random.default_rng(0).poisson(0.01, scan + detector).astype(np.uint8)
    ev = ElectronEvents.from_datacube(datacube(cube, (16, 32)))
    ev.to_zarr(tmp_path / "e.zarr", progress=False)
    stored = sum(p.stat().st_size for p in (tmp_path / "e.zarr").rglob("*") if p.is_file())
    raw = cube.size * 2
    ratio = raw / stored
    print(
        f"\nevents: {cube.sum()} ({cube.sum() / 1024:.0f} per frame); raw uint16 "
        f"{raw / 2**20:.1f} MiB, events store {stored / 2**10:.0f} KiB: {ratio:.0f}x smaller"
    )
    assert ratio >= 20, f"only {ratio:.1f}x smaller"
    # events in random order within each frame (no sorted rows to help the compressor)
    block = dense_to_events(cube)
    rng = np.random.default_rng(1)
    order = np.concatenate(
        [
            rng.permutation(np.arange(a, b))
            for a, b in zip(block.indptr[:-1], block.indptr[1:], strict=True)
        ]
    )
    shuffled = EventBlock(block.indptr, block.qx[order], block.qy[order], scan)
    blocks = np.empty((1, 1), dtype=object)
    blocks[0, 0] = shuffled
    ElectronEvents.from_blocks(blocks, ((32,), (32,)), detector).to_zarr(
        tmp_path / "r.zarr", progress=False
    )
    stored = sum(p.stat().st_size for p in (tmp_path / "r.zarr").rglob("*") if p.is_file())
    print(f"unsorted events: {raw / stored:.0f}x smaller")
    assert raw / stored >= 20


# --- py4DSTEM converters --------------------------------------------------------------------


@pytest.mark.parametrize("scan", [(2, 6), (6, 2), (5, 7), (7, 3), (4, 4)])
def test_converters_are_inverses_for_any_scan_shape(scan):
    """py4DSTEM 0.14.18 allocated (R_Nx, R_Nx, ...): wrong or IndexError when Rx != Ry."""
    counted = sparse_cube(scan, (6, 5), seed=scan[0]) > 0  # a numpy bool cube
    events = counted_datacube_to_pointlistarray(counted)
    assert isinstance(events, ElectronEvents) and events.scan_shape == scan
    back = counted_pointlistarray_to_datacube(events, counted.shape)
    assert back.dims == s4.DIMS and back.dtype == bool and back.shape == counted.shape
    np.testing.assert_array_equal(back.values, counted)
    counts = sparse_cube(scan, (6, 5), seed=1)  # integer cube: counts come back with dtype
    events = counted_datacube_to_pointlistarray(counts, subpixel=True)
    assert events.subpixel
    np.testing.assert_array_equal(
        counted_pointlistarray_to_datacube(events, counts.shape, dtype=np.uint8).values, counts
    )


def test_converter_accepts_datacubes_and_checks_shape():
    cube = sparse_cube((5, 7), (6, 9))
    events = counted_datacube_to_pointlistarray(datacube(cube, (2, 3)))
    with pytest.raises(ValueError, match=r"shape \(7, 5, 6, 9\)"):
        counted_pointlistarray_to_datacube(events, (7, 5, 6, 9))
    with pytest.raises(ValueError, match="shape"):
        counted_pointlistarray_to_datacube(events, (5, 7, 6))
    with pytest.raises(TypeError, match="counted_pointlistarray"):
        counted_pointlistarray_to_datacube(cube, cube.shape)
    out = counted_pointlistarray_to_datacube(events, (5, 7, 6, 9))
    assert out.attrs["q_units"] == "mrad"


def test_electron_count_pointlist_matches_its_datacube():
    from stem4d_dask.preprocess.electroncount import electron_count

    rng = np.random.default_rng(0)
    frames = 100 + rng.normal(0, 3, (3, 5, 20, 18))
    for idx in np.ndindex(3, 5):
        frames[idx][rng.integers(1, 19, 4), rng.integers(1, 17, 4)] += 70
    cube = np.clip(np.rint(frames), 0, 65535).astype(np.uint16)
    dc = s4.from_array(cube, chunks=(2, 5), q_pixel_size=0.5, q_units="mrad")
    dark = np.full((20, 18), 100.0)
    for b, dtype in ((1, None), (3, np.uint8)):
        kw = dict(Nsamples=12, seed=0, binfactor=b)
        events = electron_count(dc, dark, output="pointlist", sub_pixel=False, **kw)
        dense = electron_count(dc, dark, output="datacube", **kw)
        # the counted cube also records its value range (at most b * b per binned pixel)
        assert dense.stem4d.value_range() == (0, b * b)
        unranged = dense.copy()
        unranged.attrs = {
            k: v for k, v in dense.attrs.items() if k not in ("value_range", "value_range_of")
        }
        xr.testing.assert_identical(events.to_datacube(dtype), unranged)


# --- bad input ------------------------------------------------------------------------------


def test_bad_input_names_the_parameter():
    blocks, chunks, detector, _ = hand_blocks()
    with pytest.raises(ValueError, match="blocks must have shape"):
        ElectronEvents.from_blocks(blocks[:1], chunks, detector)
    with pytest.raises(ValueError, match="scan_chunks"):
        ElectronEvents.from_blocks(blocks, ((2, 0), (3, 2)), detector)
    with pytest.raises(ValueError, match="scan_chunks"):
        ElectronEvents.from_blocks(blocks, "auto", detector)
    with pytest.raises(ValueError, match="detector_shape"):
        ElectronEvents.from_blocks(blocks, chunks, (4, 70000))
    with pytest.raises(ValueError, match="subpixel"):
        ElectronEvents.from_blocks(blocks, chunks, detector, "no")
    with pytest.raises(ValueError, match="qx must be a 1D float32"):
        ElectronEvents.from_blocks(blocks, chunks, detector, True)  # uint16 positions
    with pytest.raises(ValueError, match=r"scan_shape is \(2, 3\)"):
        ElectronEvents.from_blocks(blocks, ((1, 2), (3, 2)), detector)
    with pytest.raises(ValueError, match="qy positions"):
        ElectronEvents.from_blocks(blocks, chunks, (4, 3))
    with pytest.raises(ValueError, match=r"blocks\[0, 0\]"):
        ElectronEvents.from_blocks([[1, 2], [3, 4]], chunks, detector)
    with pytest.raises(ValueError, match="attrs"):
        ElectronEvents.from_blocks(blocks, chunks, detector, False, {"r_units": "furlong"})
    bad = blocks.copy()
    b = bad[0, 0]
    bad[0, 0] = EventBlock(b.indptr[::-1].copy(), b.qx, b.qy, b.scan_shape)
    with pytest.raises(ValueError, match="indptr"):
        ElectronEvents.from_blocks(bad, chunks, detector)

    ev = ElectronEvents.from_blocks(blocks, chunks, detector)
    with pytest.raises(ValueError, match="mask"):
        ev.virtual_image(np.ones((6, 4)))
    with pytest.raises(ValueError, match="mask"):
        ev.center_of_mass(np.full(detector, np.nan))
    with pytest.raises(ValueError, match="dtype"):
        ev.to_datacube("U4")

    with pytest.raises(ValueError, match="counted_datacube"):
        counted_datacube_to_pointlistarray(np.ones((2, 3, 4, 5), np.float32))
    with pytest.raises(ValueError, match="counted_datacube"):
        counted_datacube_to_pointlistarray(np.ones((3, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="subpixel"):
        counted_datacube_to_pointlistarray(np.ones((2, 3, 4, 5), np.uint8), subpixel=None)


def test_data_problems_raise_with_the_scan_chunk(tmp_path):
    cube = np.zeros((4, 6, 5, 5), np.int16)
    cube[3, 5, 1, 1] = -1
    ev = counted_datacube_to_pointlistarray(s4.from_array(cube, chunks=(2, 3)))
    with pytest.raises(ValueError, match=r"scan chunk \(1, 1\).*negative"):
        ev.compute()
    many = np.zeros((2, 2, 3, 3), np.uint16)
    many[1, 0, 2, 2] = 300
    ev = counted_datacube_to_pointlistarray(many)
    with pytest.raises(ValueError, match="dtype uint8 cannot hold 300"):
        ev.to_datacube(np.uint8).compute()
    assert ev.to_datacube(np.uint16).values[1, 0, 2, 2] == 300
    (tmp_path / "other.zarr").mkdir()
    s4.to_zarr(s4.from_array(many), tmp_path / "dense.zarr", progress=False)
    with pytest.raises(ValueError, match="path.*not an electron-events store"):
        ElectronEvents.from_zarr(tmp_path / "dense.zarr")
    with pytest.raises(FileNotFoundError, match="path"):
        ElectronEvents.from_zarr(Path(tmp_path / "missing.zarr"))
