"""Faults (issue 14): a chunk that cannot be read names its store or file and its scan positions
(ChunkReadError, raised from the task, the original error as __cause__, across process workers
too); on_error="mask" makes it NaN exactly there, warns and records it (bad_chunks, also from
process workers); a worker killed mid-job gives the same result; a conversion whose client is
killed mid-way on a process cluster resumes to a byte-identical store."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from writers_hdf5 import corrupt_chunk, write_arina
from writers_mib import stride, write_mib

import stem4d_dask as s4
from stem4d_dask import faults
from stem4d_dask.faults import BadChunk, BadChunkWarning, ChunkReadError
from stem4d_dask.io import zarr_pipeline
from stem4d_dask.phase.com import center_of_mass
from stem4d_dask.virtual import virtual_image

SHAPE = (16, 12, 8, 8)
BAD = slice(8, 12)  # the scan rows of the corrupted shard (shards of 4 x 12 positions)
SHARD = "datacube/c/2/0/0/0"


def make_cube(shape=SHAPE, seed=7):
    return np.random.default_rng(seed).integers(1, 1000, size=shape, dtype=np.uint16)


def shard_index(shard: Path) -> np.ndarray:
    """``(offset, nbytes)`` of each inner chunk of a shard written by to_zarr (index at the end,
    then its crc32c)."""
    meta = json.loads((shard.parents[4] / "zarr.json").read_text())
    config = meta["codecs"][0]["configuration"]
    outer = meta["chunk_grid"]["configuration"]["chunk_shape"]
    n = int(np.prod([s // c for s, c in zip(outer, config["chunk_shape"], strict=True)]))
    data = shard.read_bytes()
    return np.frombuffer(data[len(data) - 4 - 16 * n : len(data) - 4], "<u8").reshape(n, 2)


def corrupt_shard(shard: Path, where: str) -> None:
    """Damage a shard file in place: ``"chunk"`` zeroes the blosc header of its second inner
    chunk (its crc32c no longer matches), ``"index"`` flips a byte of its index (the index
    checksum fails)."""
    data = bytearray(shard.read_bytes())
    if where == "chunk":
        offset = int(shard_index(shard)[1, 0])
        data[offset : offset + 16] = bytes(16)
    else:
        data[-10] ^= 0xFF
    shard.write_bytes(bytes(data))


@pytest.fixture
def store(tmp_path):
    """A uint16 store of 4 shards (scan rows 0:4, 4:8, 8:12, 12:16) with shard 2 corrupt."""
    cube = make_cube()
    path = s4.to_zarr(s4.from_array(cube, chunks=(4, 12)), tmp_path / "scan.zarr", progress=False)
    corrupt_shard(path / SHARD, "chunk")
    return path, cube


def assert_nan_exactly_at(values, cube, bad):
    """``values`` NaN at the scan positions ``bad`` (bool ``(Rx, Ry)``, every pixel) and equal
    to ``cube`` elsewhere."""
    nan = np.isnan(values)
    assert (nan.all(axis=(2, 3)) == bad).all() and (nan.any(axis=(2, 3)) == bad).all()
    np.testing.assert_array_equal(values[~bad], cube[~bad])


def rows(r0, r1, shape=SHAPE):
    bad = np.zeros(shape[:2], bool)
    bad[r0:r1] = True
    return bad


# --- the error names the store or file and the scan positions ----------------------------------


@pytest.mark.parametrize("pipeline", ["fast", "default"])
@pytest.mark.parametrize("where", ["chunk", "index"])
def test_corrupt_shard_names_store_positions_and_shard(tmp_path, monkeypatch, pipeline, where):
    monkeypatch.setenv(zarr_pipeline.ENV, pipeline)
    cube = make_cube()
    path = s4.to_zarr(s4.from_array(cube, chunks=(4, 12)), tmp_path / "scan.zarr", progress=False)
    corrupt_shard(path / SHARD, where)
    dc = s4.read(path)
    np.testing.assert_array_equal(dc[:8].values, cube[:8])  # the other shards read
    message = f"{path}: the chunk at Rx 8:12, Ry 0:12 cannot be read (zarr shard {SHARD}): "
    for compute in (lambda: dc.values, lambda: center_of_mass(dc).compute()):
        with pytest.raises(ChunkReadError) as info:
            compute()
        err = info.value
        assert str(err).startswith(message), str(err)
        assert isinstance(err, OSError) and isinstance(err, ValueError)
        assert err.__cause__ is not None and str(err.__cause__) in str(err)
        assert (err.source, err.rx, err.ry) == (str(path), (8, 12), (0, 12))
    if pipeline == "fast" and where == "chunk":
        assert "the checksum of inner chunk (1, 0, 0, 0) does not match" in str(err)


def test_error_pickles_with_its_fields_and_cause():
    try:
        try:
            raise RuntimeError("error during blosc decompression: -1")
        except RuntimeError as cause:
            raise faults.chunk_error(object(), (slice(4, 8),) * 4, (16,) * 4, cause) from cause
    except ChunkReadError as raised:
        err = raised
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ChunkReadError and str(back) == str(err)
    assert str(back) == "object: the chunk at Rx 4:8, Ry 4:8 cannot be read: " + (
        "error during blosc decompression: -1"
    )
    assert (back.rx, back.ry, back.reason) == ((4, 8), (4, 8), err.reason)
    assert isinstance(back.__cause__, RuntimeError)


def test_truncated_npy_names_file_positions_and_bytes(tmp_path):
    cube = make_cube()
    path = tmp_path / "scan.npy"
    np.save(path, cube)
    dc = s4.read(path, chunks=(2, 12))
    masked = s4.read(path, chunks=(2, 12), on_error="mask")
    frame = 8 * 8 * 2
    header = path.stat().st_size - cube.nbytes
    os.truncate(path, header + 11 * 12 * frame + 100)  # after opening: rows 0-10 whole, 11 cut
    with pytest.raises(ChunkReadError) as info:
        dc[10:12].compute()  # the first chunk cut short
    start = header + 10 * 12 * frame
    assert str(info.value).startswith(
        f"{path}: the chunk at Rx 10:12, Ry 0:12 cannot be read "
        f"(bytes {start}-{start + 2 * 12 * frame}): "
    )
    assert masked.dtype == np.float32
    with pytest.warns(BadChunkWarning):
        values = masked.values
    assert_nan_exactly_at(values, cube.astype(np.float32), rows(10, 16))
    assert [(c.rx, c.ry) for c in faults.bad_chunks(masked)] == [
        ((r, r + 2), (0, 12)) for r in (10, 12, 14)
    ]


def test_corrupt_mib_frame_names_file_frames_and_bytes(tmp_path):
    cube = make_cube((4, 5, 16, 16))
    path = write_mib(tmp_path / "s.mib", cube)
    size = stride(path)
    with open(path, "r+b") as f:
        f.seek(13 * size)  # frame 13: scan position (2, 3)
        f.write(b"XXXX")
    with pytest.raises(ChunkReadError) as info:
        s4.read(path, chunks=(2, 5)).compute()
    assert str(info.value).startswith(
        f"{path}: the chunk at Rx 2:4, Ry 0:5 cannot be read (s.mib frames 10-19, bytes "
        f"{10 * size}-{20 * size}): {path}: frame 13 (scan position (2, 3)) has a corrupt header"
    )
    masked = s4.read(path, chunks=(2, 5), on_error="mask")
    assert masked.dtype == np.float32 and "value_range" not in masked.attrs
    with pytest.warns(BadChunkWarning, match=r"s\.mib: the chunk at Rx 2:4, Ry 0:5"):
        values = masked.values
    assert_nan_exactly_at(values, cube, rows(2, 4, cube.shape))


def test_corrupt_arina_chunk_masked(tmp_path):
    """The ARINA reader's one-loader-per-block graph (frames.block_array) is wrapped too."""
    cube = make_cube((12, 16, 16, 12))
    master = write_arina(tmp_path, cube, frames_per_file=100)
    corrupt_chunk(tmp_path / "scan_00_data_000002.h5", 37, "lz4")  # frame 137: (8, 9)
    with pytest.raises(ChunkReadError) as info:
        s4.read(master, chunks=(4, 16)).compute()
    message = str(info.value)
    assert message.startswith(
        f"{tmp_path / 'scan_00_data_000002.h5'}: the chunk at Rx 8:12, Ry 0:16 cannot be read "
        "(scan_00_data_000002.h5 frames 28-"
    )
    assert message.endswith(
        "frame 37 (scan position (8, 9)) is corrupt: its bitshuffle-LZ4 "
        "chunk does not decode (an LZ4 block is corrupt)"
    )
    masked = s4.read(master, chunks=(4, 16), on_error="mask")
    with pytest.warns(BadChunkWarning):
        values = masked.values
    assert_nan_exactly_at(values, cube, rows(8, 12, cube.shape))


# --- on_error="mask" ------------------------------------------------------------------------


def test_mask_gives_nan_exactly_at_the_bad_chunk(store):
    path, cube = store
    dc = s4.read(path, on_error="mask")
    assert dc.dtype == np.float32 and dc.attrs.get("value_range") is None
    with pytest.warns(BadChunkWarning, match=r"Rx 8:12, Ry 0:12 cannot be read \(zarr shard"):
        values = dc.values
    bad = rows(8, 12)
    assert_nan_exactly_at(values, cube, bad)
    reason = "zarr shard: the checksum of inner chunk (1, 0, 0, 0) does not match (corrupt data)"
    expected = [BadChunk(str(path), (8, 12), (0, 12), reason, "")]
    found = faults.bad_chunks(dc)
    assert [c._replace(detail="") for c in found] == expected
    assert found[0].detail == f"zarr shard {SHARD}"
    assert (faults.bad_positions(dc) == bad).all()

    # NaN propagates: centre of mass, virtual images and sums are NaN there, right elsewhere
    clean = s4.from_array(cube, chunks=(4, 12))
    com, ref = center_of_mass(dc).compute(), center_of_mass(clean).compute()
    for name in ("com_x", "com_y", "intensity"):
        assert (np.isnan(com[name].values) == bad).all()
        np.testing.assert_allclose(com[name].values[~bad], ref[name].values[~bad], rtol=1e-12)
    mask = np.zeros(SHAPE[2:], bool)
    mask[2:6, 3:7] = True
    image = virtual_image(dc, mask).values
    assert (np.isnan(image) == bad).all()
    np.testing.assert_array_equal(image[~bad], virtual_image(clean, mask).values[~bad])
    sums = dc.sum(("Qx", "Qy"), skipna=False).values
    assert (np.isnan(sums) == bad).all()

    with pytest.raises(ChunkReadError):  # the same store read again without the option
        s4.read(path).compute()


def test_masked_dtype():
    promoted = {"u1": "f4", "<u2": "f4", ">u2": "f4", "i2": "f4", "bool": "f4", "u4": "f8"}
    for dtype, expected in {**promoted, "i8": "f8", "f4": "f4", "f8": "f8"}.items():
        assert faults.masked_dtype(dtype) == np.dtype(expected)
        assert faults.masked_dtype(dtype).isnative


def test_mask_keeps_float_values_and_good_stores_unchanged(tmp_path):
    cube = make_cube().astype(np.float64) / 7
    path = s4.to_zarr(s4.from_array(cube, chunks=(4, 12)), tmp_path / "f.zarr", progress=False)
    dc = s4.read(path, on_error="mask")
    assert dc.dtype == np.float64
    with warnings.catch_warnings():
        warnings.simplefilter("error", BadChunkWarning)
        np.testing.assert_array_equal(dc.values, cube)
    assert faults.bad_chunks(dc) == []


def test_on_error_is_checked(store):
    with pytest.raises(
        ValueError, match=r"on_error must be one of \['raise', 'mask'\], got 'skip'"
    ):
        s4.read(store[0], on_error="skip")


def test_mask_refused_where_xarray_reads_the_chunks(tmp_path):
    cube = make_cube().astype(np.float32)
    ds = xr.Dataset({"datacube": (s4.DIMS, cube)})
    encoding = {"datacube": {"scale_factor": 0.5, "dtype": "int16", "_FillValue": -1}}
    ds.to_zarr(tmp_path / "cf.zarr", zarr_format=3, encoding=encoding, consolidated=False)
    assert s4.read(tmp_path / "cf.zarr").dtype.kind == "f"  # read as xarray decodes it
    with pytest.raises(ValueError, match="on_error: 'mask' needs every chunk read by"):
        s4.read(tmp_path / "cf.zarr", on_error="mask")


def test_bugs_are_not_masked(tmp_path, monkeypatch):
    from stem4d_dask import lazy

    np.save(tmp_path / "a.npy", make_cube())

    def broken(self, slices):
        raise AssertionError("a bug, not a bad chunk")

    monkeypatch.setattr(lazy.RawFileLoader, "__call__", broken)
    with pytest.raises(AssertionError, match="a bug"):
        s4.read(tmp_path / "a.npy", on_error="mask").compute()


# --- process workers --------------------------------------------------------------------------


def test_process_workers_raise_and_mask(store, process_client):
    path, cube = store
    with pytest.raises(ChunkReadError, match=r"Rx 8:12, Ry 0:12 cannot be read") as info:
        process_client.compute(s4.read(path).data).result()
    assert isinstance(info.value.__cause__, ValueError)  # pickled with the error

    dc = s4.read(path, on_error="mask")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values = process_client.compute(dc.data).result()
        com = process_client.compute(center_of_mass(dc).com_x.data).result()
        deadline = time.monotonic() + 10  # the workers' warnings come as scheduler events
        while not any(w.category is BadChunkWarning for w in caught):
            assert time.monotonic() < deadline, "no BadChunkWarning forwarded from a worker"
            time.sleep(0.05)
    assert "Rx 8:12, Ry 0:12" in str(next(w for w in caught if w.category is BadChunkWarning))
    assert_nan_exactly_at(values, cube, rows(8, 12))
    assert (np.isnan(com) == rows(8, 12)).all()
    assert [(c.source, c.rx, c.ry, c.detail) for c in faults.bad_chunks(dc, process_client)] == [
        (str(path), (8, 12), (0, 12), f"zarr shard {SHARD}")
    ]


# --- a worker killed mid-job, a conversion killed mid-way -----------------------------------


@pytest.fixture(scope="module")
def own_cluster():
    """2 process workers (1 thread each) of our own: the tests kill processes."""
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        yield client


@pytest.mark.slow
def test_worker_killed_mid_job_gives_the_same_result(tmp_path, own_cluster):
    from distributed import futures_of

    client = own_cluster
    client.wait_for_workers(2, timeout=60)
    cube = make_cube((64, 16, 32, 32))
    path = s4.to_zarr(s4.from_array(cube, chunks=(1, 16)), tmp_path / "k.zarr", progress=False)
    expected = center_of_mass(s4.read(path)).compute(scheduler="threads")

    com = client.persist(center_of_mass(s4.read(path)))
    futures = futures_of(com)
    while not any(f.done() for f in futures):  # the first chunk done: kill a worker holding it
        time.sleep(0.002)
    done = {f.key for f in futures if f.done()}
    holder = next(w for ws in client.who_has(list(futures)).values() for w in ws)
    os.kill(client.run(os.getpid)[holder], signal.SIGKILL)
    assert len(done) < len(futures)  # killed mid-job
    result = client.compute(com).result()
    xr.testing.assert_identical(result, expected)


CLIENT = r"""
import sys, time
import distributed
import stem4d_dask as s4

client = distributed.Client(sys.argv[1])
dc = s4.read(sys.argv[2], chunks=(1, 16))

def slow(block):
    time.sleep(0.02)
    return block

s4.to_zarr(dc.copy(data=dc.data.map_blocks(slow, dtype=dc.dtype)), sys.argv[3], progress=False)
"""


def store_files(path: Path) -> dict:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


@pytest.mark.slow
def test_conversion_killed_on_a_cluster_resumes_identically(tmp_path, own_cluster):
    client = own_cluster
    client.wait_for_workers(1, timeout=60)
    cube = make_cube((64, 16, 32, 32))
    np.save(tmp_path / "in.npy", cube)
    out, partial = tmp_path / "out.zarr", tmp_path / "out.zarr.partial"
    markers = partial / ".stem4d-progress"
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT, client.scheduler.address, str(tmp_path / "in.npy"), str(out)]
    )
    deadline = time.monotonic() + 60
    while not (markers.is_dir() and len(os.listdir(markers)) > 10):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    def busy():  # the dead client's tasks forgotten and none still running
        left = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))
        running = client.run(lambda dask_worker: len(dask_worker.state.executing))
        return left or any(running.values())

    while busy():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    written = len(os.listdir(markers)) - 1  # settings.json
    assert not out.exists() and 0 < written < 64

    dc = s4.read(tmp_path / "in.npy", chunks=(1, 16))
    with client.as_current():
        s4.to_zarr(dc, out, resume=True, progress=False)
    s4.to_zarr(dc, tmp_path / "clean.zarr", progress=False)  # threads, uninterrupted
    assert store_files(out) == store_files(tmp_path / "clean.zarr")
    np.testing.assert_array_equal(s4.read(out).values, cube)


def test_command_line_masks_on_request(store, tmp_path, capsys):
    from stem4d_dask.cli import main

    path, cube = store
    assert main(["convert", str(path), str(tmp_path / "out.zarr"), "--quiet"]) == 2
    assert "Rx 8:12, Ry 0:12 cannot be read" in capsys.readouterr().err
    # (the warning itself is checked by test_mask_gives_nan_exactly_at_the_bad_chunk)
    code = main(["convert", str(path), str(tmp_path / "masked.zarr"), "--on-error", "mask"])
    assert code == 0
    assert_nan_exactly_at(s4.read(tmp_path / "masked.zarr").values, cube, rows(8, 12))


def test_counting_a_masked_scan_counts_nothing_at_the_bad_chunk(tmp_path):
    from stem4d_dask.preprocess.electroncount import electron_count
    from stem4d_dask.synthetic_counting import counting_scan

    scan = counting_scan((8, 8), (32, 32), seed=1, chunks=(2, 8))
    path = s4.to_zarr(scan.datacube, tmp_path / "c.zarr", progress=False)
    clean = electron_count(s4.read(path), darkreference=scan.dark, Nsamples=20, seed=0)
    clean_counts = np.asarray(clean.counts().compute())
    corrupt_shard(path / "datacube/c/1/0/0/0", "chunk")
    masked = s4.read(path, on_error="mask")
    with pytest.warns(BadChunkWarning, match="16 frames hold NaN"):
        counts = np.asarray(
            electron_count(masked, darkreference=scan.dark, Nsamples=20, seed=0).counts().compute()
        )
    bad = faults.bad_positions(masked)
    assert bad[2:4].all() and bad.sum() == 16
    assert (counts[bad] == 0).all()
    assert (counts[~bad] > 0).all()  # ~10 electrons a frame elsewhere, not 1024 (every pixel)
    assert np.abs(counts[~bad] - clean_counts[~bad]).max() <= 2  # thresholds from fewer frames
