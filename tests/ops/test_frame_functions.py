"""map_frames / reduce_frames: users' own per-frame functions equal a plain numpy loop (fixed,
several and ragged outputs; per-position arguments), on threads and a process cluster; building
reads nothing; one task per chunk; errors name the scan position."""

import pickle
import threading

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from test_laziness import huge_npy, no_reads  # noqa: F401  (fixture)

import stem4d_dask as s4
from stem4d_dask import FrameFunctionError, RaggedFrames, map_frames, reduce_frames
from stem4d_dask.phase.com import center_of_mass

RNG = np.random.default_rng(7)
CUBE = RNG.poisson(3.0, (7, 6, 12, 10)).astype(np.uint16)


@pytest.fixture
def dc():
    return s4.from_array(CUBE, chunks=(3, 4), r_pixel_size=2.0, r_units="A")


def loop(func, *per_position):
    """The plain numpy loop a map_frames result must equal."""
    return np.array(
        [
            [func(CUBE[i, j], *(p[i, j] for p in per_position)) for j in range(CUBE.shape[1])]
            for i in range(CUBE.shape[0])
        ]
    )


def profile(frame):
    return frame.sum(axis=1) / 2.0


def bright(frame):
    """Ragged: the pixels above 5 counts, with their values."""
    xs, ys = np.nonzero(frame > 5)
    return {"qx": xs.astype(np.uint16), "qy": ys.astype(np.uint16), "value": frame[xs, ys]}


# --- fixed and several outputs --------------------------------------------------------------


def test_fixed_outputs_equal_a_numpy_loop(dc):
    total = map_frames(dc, np.sum)
    assert total.dims == ("Rx", "Ry") and total.name == "sum"
    np.testing.assert_array_equal(total.values, loop(np.sum))
    prof = dc.stem4d.map_frames(profile, dims=("k",), coords={"k": np.arange(12) * 0.5})
    assert prof.dims == ("Rx", "Ry", "k") and prof.dtype == np.float64
    np.testing.assert_allclose(prof.values, loop(profile))
    np.testing.assert_array_equal(prof.k.values, np.arange(12) * 0.5)
    np.testing.assert_array_equal(prof.Rx.values, dc.Rx.values)  # the scan coords, in A
    assert prof.attrs["r_pixel_size"] == 2.0
    image = map_frames(dc, lambda f: f[:4, :3].astype(np.float32), name="corner")
    assert image.dims == ("Rx", "Ry", "corner_0", "corner_1") and image.dtype == np.float32
    np.testing.assert_array_equal(image.values, CUBE[:, :, :4, :3])


def test_several_outputs_make_a_dataset(dc):
    ds = map_frames(dc, lambda f: {"peak": f.max(), "row": f.mean(axis=0)}, dims={"row": ("y",)})
    assert isinstance(ds, xr.Dataset) and ds.row.dims == ("Rx", "Ry", "y")
    np.testing.assert_array_equal(ds.peak.values, CUBE.max(axis=(2, 3)))
    np.testing.assert_allclose(ds.row.values, CUBE.mean(axis=2))


def test_per_position_and_whole_arguments(dc):
    weight = xr.DataArray(RNG.random((7, 6)), dims=("Rx", "Ry"), coords={"Rx": dc.Rx, "Ry": dc.Ry})
    offsets = xr.DataArray(RNG.random((6, 7, 3)), dims=("Ry", "Rx", "c"))  # transposed: aligned
    mask = RNG.random((12, 10)) > 0.5  # plain array: passed whole

    def func(frame, w, off, mask, scale=1.0):
        return (frame[mask].sum() * w + off) * scale

    out = map_frames(dc, func, weight, offsets, mask, scale=xr.DataArray(2.0))
    expected = loop(
        lambda f, w, o: (f[mask].sum() * w + o) * 2.0,
        weight.values,
        offsets.values.transpose(1, 0, 2),
    )
    np.testing.assert_allclose(out.values, expected)
    lazy_mask = da.from_array(mask, chunks=(6, 5))  # dask: one shared key, computed by tasks
    out = map_frames(dc, lambda f, m: f[m].sum(), lazy_mask)
    np.testing.assert_array_equal(out.values, loop(lambda f: f[mask].sum()))


def test_per_position_coords_must_match(dc):
    shifted = xr.DataArray(
        np.ones((7, 6)), dims=("Rx", "Ry"), coords={"Rx": dc.Rx.values + 1.0, "Ry": dc.Ry.values}
    )
    shifted.Rx.attrs["units"] = "A"
    with pytest.raises(ValueError, match=r"args\[0\].*Rx coordinate"):
        map_frames(dc, lambda f, w: f.sum() * w, shifted)


def test_vectorized_chunks_equal_frames(dc):
    out = map_frames(dc, lambda b: b.sum(axis=(2, 3)), vectorized=True, name="total")
    np.testing.assert_array_equal(out.values, CUBE.sum(axis=(2, 3)))
    ragged = map_frames(dc, _vectorized_bright, vectorized=True, ragged=True)
    _assert_bright(ragged)


def _vectorized_bright(block):
    n1, n2 = block.shape[:2]
    frames = [bright(block[i, j]) for i in range(n1) for j in range(n2)]
    indptr = np.concatenate([[0], np.cumsum([f["qx"].size for f in frames])])
    return indptr, {k: np.concatenate([f[k] for f in frames]) for k in ("qx", "qy", "value")}


# --- ragged outputs -------------------------------------------------------------------------


def _assert_bright(ragged):
    assert isinstance(ragged, RaggedFrames)
    assert ragged.fields == {"qx": np.uint16, "qy": np.uint16, "value": np.uint16}
    for i, j in np.ndindex(CUBE.shape[:2]):
        want = bright(CUBE[i, j])
        got = ragged[i, j]
        for k in ("qx", "qy", "value"):
            np.testing.assert_array_equal(got[k], want[k])
    np.testing.assert_array_equal(ragged.counts().values, (CUBE > 5).sum(axis=(2, 3)))


def test_ragged_outputs_equal_a_numpy_loop(dc):
    ragged = dc.stem4d.map_frames(bright, ragged=True, units={"value": "counts"})
    assert ragged.scan_chunks == ((3, 3, 1), (4, 2)) and not ragged.is_computed
    _assert_bright(ragged)
    _assert_bright(ragged.compute())
    assert int(ragged.n_items) == int((CUBE > 5).sum()) and ragged.units == {"value": "counts"}


def test_ragged_structured_array_output_and_region(dc):
    dtype = [("x", np.float32), ("v", np.int64)]

    def items(frame):
        xs = np.flatnonzero(frame.max(axis=1) > 8)
        out = np.zeros(xs.size, dtype)
        out["x"], out["v"] = xs, frame.max(axis=1)[xs]
        return out

    ragged = map_frames(dc, items, ragged=True)
    region = ragged[1:6:2, 2:]
    assert region.scan_shape == (3, 4)
    np.testing.assert_array_equal(region.counts().values, ragged.counts().values[1:6:2, 2:])
    np.testing.assert_array_equal(region[2, 1]["x"], items(CUBE[5, 3])["x"])
    np.testing.assert_array_equal(
        region.isel(Rx=0).counts().values, ragged.counts().values[1:2, 2:]
    )
    assert "r_pixel_size" not in region.attrs  # Rx step 2, Ry step 1: pixels not square
    assert ragged[::2, ::2].attrs["r_pixel_size"] == 4.0
    np.testing.assert_array_equal(ragged[::2, ::2].counts().Rx.values, dc.Rx.values[::2])


def test_ragged_store_round_trip(dc, tmp_path):
    ragged = map_frames(dc, bright, ragged=True, units={"value": "counts"})
    path = ragged.to_zarr(tmp_path / "bright.zarr")
    back = RaggedFrames.from_zarr(path)
    assert back.n_items == int((CUBE > 5).sum()) and back.units == {"value": "counts"}
    _assert_bright(back)
    np.testing.assert_array_equal(back.counts().Rx.values, dc.Rx.values)
    with pytest.raises(FileExistsError):
        ragged.to_zarr(path)


def test_ragged_access_errors(dc):
    ragged = map_frames(dc, bright, ragged=True)
    np.testing.assert_array_equal(ragged[-1, -1]["qx"], bright(CUBE[6, 5])["qx"])
    for key, match in (
        ((7, 0), "Rx index 7"),
        ((0, -7), "Ry index -7"),
        ((1,), "two ints"),
        ((slice(0, 3, -1), 0), "steps"),
        ((slice(5, 2), 0), "selects no"),
    ):
        with pytest.raises(IndexError, match=match):
            ragged[key]


def test_ragged_output_mistakes_are_named(dc):
    out = map_frames(
        dc,
        lambda f: {"a": np.arange(int(f[0, 0] > 3)), "b": np.arange(2)},
        ragged=True,
        template={"a": np.zeros(0, int), "b": np.zeros(0, int)},
    )
    with pytest.raises(FrameFunctionError, match=r"scan position Rx=\d, Ry=\d.*differ in length"):
        out.counts().compute()
    with pytest.raises(ValueError, match="template: a ragged output"):
        map_frames(dc, np.sum, ragged=True)


# --- laziness and tasks ---------------------------------------------------------------------


def test_building_reads_nothing_and_one_task_per_chunk(tmp_path, no_reads):  # noqa: F811
    dc = s4.read(huge_npy(tmp_path))  # 32 GiB of uint16 frames, never read
    total = map_frames(dc, np.sum)
    ragged = map_frames(dc, bright, ragged=True)
    ds = map_frames(dc, lambda f: {"a": f.max(), "b": f.min()})
    reduced = reduce_frames(dc, lambda f: f, np.maximum)
    graph = dict(total.data.__dask_graph__())
    assert len(graph) == total.data.npartitions  # chunk read inside its one task
    assert all(b.key[0] == ragged.blocks[0, 0].key[0] for b in ragged.blocks.flat)
    assert len(dict(ds.a.data.__dask_graph__())) == 2 * ds.a.data.npartitions  # + getitem
    assert reduced.key is not None


def test_func_runs_once_per_frame(dc):
    calls = []
    lock = threading.Lock()

    def counted(frame):
        with lock:
            calls.append(1)
        return frame.sum()

    out = map_frames(dc, counted, template=np.uint64(0))
    assert calls == []  # a template: no blank-frame call at build time
    out.compute(scheduler="threads")
    assert len(calls) == 7 * 6


def test_blank_frame_failure_asks_for_a_template(dc):
    def needs_signal(frame):
        return np.arange(int(frame.max()))[-1]

    with pytest.raises(ValueError, match="give template="):
        map_frames(dc, needs_signal)
    out = map_frames(dc, needs_signal, template=np.int64(0))
    np.testing.assert_array_equal(out.values, CUBE.max(axis=(2, 3)) - 1)


# --- errors ---------------------------------------------------------------------------------


def position_index():
    """A per-position argument: the flat index of every scan position."""
    return xr.DataArray(np.arange(7 * 6).reshape(7, 6), dims=("Rx", "Ry"))


def test_errors_name_the_scan_position(dc):
    rx = xr.DataArray(
        np.broadcast_to(dc.Rx.values[:, None], (7, 6)) + np.arange(6) * 100, dims=("Rx", "Ry")
    )
    bad = rx.values[4, 5]

    def func(frame, r):
        if r == bad:
            raise ZeroDivisionError("boom")
        return frame.sum()

    out = map_frames(dc, func, rx, template=np.int64(0), name="mine")
    with pytest.raises(
        FrameFunctionError,
        match=r"mine at scan position Rx=4, Ry=5: "
        r"ZeroDivisionError: boom",
    ) as info:
        out.compute()
    assert info.value.position == (4, 5)
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    again = pickle.loads(pickle.dumps(info.value))
    assert again.position == (4, 5) and "Rx=4, Ry=5" in str(again)
    shape = map_frames(dc, lambda f: np.zeros(1 + (f[0, 0] > 6)), template=np.zeros(1))
    with pytest.raises(FrameFunctionError, match=r"returned shape \(2,\), expected \(1,\)"):
        shape.compute()
    chunk = map_frames(
        dc,
        lambda b: b[:, :1, 0, 0] if b.shape[:2] == (1, 2) else b[:, :, 0, 0],
        vectorized=True,
        template=np.zeros((1, 1)),
    )
    with pytest.raises(FrameFunctionError, match=r"scan rows 6:7, columns 4:6: returned shape"):
        chunk.compute()


def test_bad_arguments_are_refused(dc):
    with pytest.raises(TypeError, match="func must be callable"):
        map_frames(dc, 3)
    with pytest.raises(ValueError, match="func returns a tuple"):
        map_frames(dc, lambda f: (f.sum(), f.max()))
    with pytest.raises(ValueError, match="dims: profile has 1 own axes"):
        map_frames(dc, profile, dims=("a", "b"))
    with pytest.raises(ValueError, match="may not reuse the scan dims"):
        map_frames(dc, profile, dims=("Rx",))
    with pytest.raises(ValueError, match=r"kw: a DataArray with one scan dim.*ambiguous"):
        map_frames(dc, lambda f, kw: f.sum(), kw=xr.DataArray(np.ones(7), dims=("Rx",)))
    with pytest.raises(ValueError, match="split_every must be an int >= 2"):
        reduce_frames(dc, np.sum, np.add, split_every=1)


# --- reductions -----------------------------------------------------------------------------


def test_reductions_equal_numpy(dc):
    maximum = dc.stem4d.reduce_frames(lambda f: f, np.maximum, split_every=2)
    np.testing.assert_array_equal(maximum.compute(), CUBE.max(axis=(0, 1)))
    edges = np.arange(0, 16)
    hist = reduce_frames(dc, lambda f, e: np.histogram(f, e)[0], np.add, edges)
    np.testing.assert_array_equal(hist.compute(), np.histogram(CUBE, edges)[0])
    mean = reduce_frames(
        dc,
        lambda b: (b.sum(axis=(0, 1), dtype=np.float64), b.shape[0] * b.shape[1]),
        lambda a, b: (a[0] + b[0], a[1] + b[1]),
        vectorized=True,
        finalize=lambda t: t[0] / t[1],
    )
    np.testing.assert_allclose(mean.compute(), CUBE.mean(axis=(0, 1)))
    layers = maximum.__dask_graph__().layers
    sizes = {name.split("-")[1]: len(layer) for name, layer in layers.items() if "lambda" in name}
    assert sizes == {"chunks": 6, "combine0": 3, "combine1": 2, "combine2": 1}  # task per chunk


def test_reduction_errors_name_the_position(dc):
    def func(frame, k):
        if k == 5 * 6 + 1:
            raise KeyError("nope")
        return frame

    with pytest.raises(FrameFunctionError, match=r"func at scan position Rx=5, Ry=1: KeyError"):
        reduce_frames(dc, func, np.maximum, position_index()).compute()


# --- complex data, process clusters ---------------------------------------------------------


def test_complex_datacubes_map_but_real_operations_refuse():
    cube = s4.from_array(CUBE * (1 + 2j), chunks=(3, 4))
    power = map_frames(cube, lambda f: np.abs(f).sum())
    np.testing.assert_allclose(power.values, np.abs(CUBE * (1 + 2j)).sum(axis=(2, 3)))
    with pytest.raises(TypeError, match="means nothing for complex numbers"):
        center_of_mass(cube)
    with pytest.raises(TypeError, match="means nothing for complex numbers"):
        cube.stem4d.find_peaks()


def test_process_cluster_equals_threads(dc, process_client):
    weight = xr.DataArray(RNG.random((7, 6)), dims=("Rx", "Ry"))
    fixed = map_frames(dc, lambda f, w: f.sum() * w, weight)
    ds = map_frames(dc, lambda f: {"a": f.max(), "b": f.mean(axis=1)})
    ragged = map_frames(dc, bright, ragged=True)
    maximum = reduce_frames(dc, lambda f: f, np.maximum)
    with dask.config.set(scheduler="threads"):
        local = dask.compute(fixed.data, ds.a.data, ds.b.data, ragged.counts().data, maximum)
    remote = process_client.compute(
        [fixed.data, ds.a.data, ds.b.data, ragged.counts().data, maximum], sync=True
    )
    for a, b in zip(local, remote, strict=True):
        np.testing.assert_array_equal(a, b)
    blocks = process_client.compute(list(ragged.blocks.flat), sync=True)
    assert [b.indptr[-1] for b in blocks] == [b.indptr[-1] for b in ragged.compute().blocks.flat]
    bad = map_frames(dc, lambda f, k: 1 // int(k - 9), position_index(), name="inv")
    with pytest.raises(FrameFunctionError, match=r"inv at scan position Rx=1, Ry=3: Zero"):
        process_client.compute(bad.data, sync=True)
