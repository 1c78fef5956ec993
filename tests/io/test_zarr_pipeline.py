"""Codec paths of our zarr stores (``STEM4D_ZARR_PIPELINE``): the choice, bit-exact round trips
across writers and readers, our whole-shard codec against zarr-python, URL reads, process
workers, the read fused into a mapping task, and forked processes."""

import functools
import http.server
import json
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import fsspec
import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, BytesCodec, ZstdCodec

import stem4d_dask as s4
from stem4d_dask.io import zarr_pipeline
from stem4d_dask.io.zarr_shards import ShardCodec
from stem4d_dask.io.zarr_store import ZarrBlockLoader
from stem4d_dask.lazy import chunk_reader_of
from stem4d_dask.phase import center_of_mass

CHOICES = ("fast", "zarrs", "default")
DEFAULT_PIPELINE = {"codec_pipeline.path": zarr_pipeline.DEFAULT}
SHAPE = (6, 5, 16, 12)
SCAN_CHUNKS = (2, 2)  # shards (2, 2, 16, 12): Rx 2+2+2, Ry 2+2+1 -> 6 whole shards, 3 edge ones
WHOLE_SHARDS, EDGE_SHARDS = 6, 3


def cube_of(dtype) -> np.ndarray:
    """A small cube with one inner chunk and one whole shard of fill value (zarr stores
    neither), and for floats NaN, -0.0 and +-inf among the values (float fill value: NaN)."""
    rng = np.random.default_rng(7)
    if np.dtype(dtype).kind == "u":
        cube = rng.integers(1, 2**16, SHAPE, dtype=dtype)
        fill = 0
    else:
        cube = rng.normal(0, 100, SHAPE).astype(dtype)
        cube[1, 3, 2, :5] = [np.nan, -0.0, np.inf, -np.inf, 0.0]
        cube[4, 0:2] = -0.0  # a whole inner chunk of -0.0: stored, read back with its sign
        fill = np.nan
    cube[0, 0:2] = fill  # inner chunk (Rx 0) of shard (0, 0)
    cube[2:4, 2:4] = fill  # the whole shard (1, 1)
    return cube


def write(cube, path, choice, monkeypatch) -> Path:
    monkeypatch.setenv(zarr_pipeline.ENV, choice)
    dc = s4.from_array(
        cube, r_pixel_size=0.5, r_units="nm", q_pixel_size=0.1, q_units="mrad", chunks=SCAN_CHUNKS
    )
    return s4.to_zarr(dc, path, progress=False)


def assert_bits_equal(got, expected):
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    if expected.dtype.kind == "f":
        got, expected = got.view(f"u{got.itemsize}"), expected.view(f"u{expected.itemsize}")
    np.testing.assert_array_equal(got, expected)


# --- the choice ------------------------------------------------------------------------------


def test_choice_from_env_and_fallbacks(monkeypatch):
    monkeypatch.delenv(zarr_pipeline.ENV, raising=False)
    assert zarr_pipeline.chosen() == "fast"
    monkeypatch.setenv(zarr_pipeline.ENV, "")
    assert zarr_pipeline.chosen() == "fast"
    for name in CHOICES:
        monkeypatch.setenv(zarr_pipeline.ENV, name)
        assert zarr_pipeline.chosen() == name
    assert zarr_pipeline.chosen("default") == "default"  # an explicit choice wins
    monkeypatch.setenv(zarr_pipeline.ENV, "rust")
    with pytest.raises(ValueError, match="STEM4D_ZARR_PIPELINE") as err:
        zarr_pipeline.chosen()
    assert "'rust'" in str(err.value)
    with pytest.raises(ValueError, match="choice must be one of"):
        zarr_pipeline.chosen("Fast")

    assert zarr_pipeline.zarrs_available()  # installed in the test environment
    expected = "zarrs" if zarr_pipeline.zarrs_available() else "default"
    assert zarr_pipeline.pipeline_of("fast") == expected
    assert zarr_pipeline.pipeline_of("zarrs") == "zarrs"
    assert zarr_pipeline.pipeline_of("default") == "default"
    # in the main process zarr's thread setting is never touched
    assert zarr_pipeline.settings("zarrs") == {"codec_pipeline.path": zarr_pipeline.ZARRS}
    assert zarr_pipeline.settings("default") == DEFAULT_PIPELINE

    monkeypatch.setattr(zarr_pipeline, "zarrs_available", lambda: False)
    assert zarr_pipeline.pipeline_of("fast") == "default"
    assert zarr_pipeline.settings("fast") == DEFAULT_PIPELINE
    monkeypatch.setenv(zarr_pipeline.ENV, "fast")
    assert zarr_pipeline.chosen() == "fast"
    with pytest.raises(ValueError, match="'zarrs' is not installed"):
        zarr_pipeline.chosen("zarrs")
    monkeypatch.setenv(zarr_pipeline.ENV, "zarrs")
    with pytest.raises(ValueError, match="STEM4D_ZARR_PIPELINE"):
        zarr_pipeline.chosen()


def test_choice_travels_in_the_graph(tmp_path, monkeypatch):
    cube = cube_of("uint16")
    store = write(cube, tmp_path / "c.zarr", "fast", monkeypatch)
    monkeypatch.setenv(zarr_pipeline.ENV, "default")
    dc = s4.read(store)
    loader = loader_of(dc.data)
    assert isinstance(loader, ZarrBlockLoader)
    assert loader.choice == "default" and loader.shards is None
    monkeypatch.setenv(zarr_pipeline.ENV, "rust")  # read when the graph is built, not computed
    assert_bits_equal(dc.values, cube)
    monkeypatch.setenv(zarr_pipeline.ENV, "fast")
    fast = loader_of(s4.read(store).data)
    assert fast.choice == "fast" and fast.shards.shard_shape == (*SCAN_CHUNKS, 16, 12)


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
@pytest.mark.parametrize("writer", CHOICES)
def test_round_trip_bit_exact_across_pipelines(tmp_path, monkeypatch, dtype, writer):
    cube = cube_of(dtype)
    encoded, decoded = [], []
    encode, decode = ShardCodec.encode, ShardCodec.decode

    def counting_encode(self, block):
        encoded.append(block.shape)
        return encode(self, block)

    def counting_decode(self, data, *args, **kwargs):
        decoded.append(data is None)
        return decode(self, data, *args, **kwargs)

    monkeypatch.setattr(ShardCodec, "encode", counting_encode)
    monkeypatch.setattr(ShardCodec, "decode", counting_decode)
    store = write(cube, tmp_path / "c.zarr", writer, monkeypatch)
    # our codec writes exactly the whole shards; edge shards go through zarr
    assert encoded == ([(*SCAN_CHUNKS, 16, 12)] * WHOLE_SHARDS if writer == "fast" else [])
    shards = store / "datacube" / "c"
    assert not (shards / "1" / "1" / "0" / "0").exists()  # all fill value: no shard stored
    assert len([p for p in shards.rglob("*") if p.is_file()]) == WHOLE_SHARDS + EDGE_SHARDS - 1
    meta = json.loads((store / "datacube" / "zarr.json").read_text())
    codec = ShardCodec.of(meta)
    assert codec is not None and codec.inner_shape == (1, 2, 16, 12)
    assert codec.blosc == ("lz4", 5, 2, cube.itemsize, 0)
    first = (shards / "0" / "0" / "0" / "0").read_bytes()
    index = np.frombuffer(first[-(16 * 2 + 4) : -4], "<u8").reshape(2, 2)
    assert index[0].tolist() == [2**64 - 1] * 2  # inner chunk Rx 0 of shard (0, 0): fill
    assert index[1, 0] == 0 and index[1, 1] == len(first) - 36

    for reader in CHOICES:
        decoded.clear()
        monkeypatch.setenv(zarr_pipeline.ENV, reader)
        dc = s4.read(store)
        assert dc.data.chunks == ((2, 2, 2), (2, 2, 1), (16,), (12,))
        assert_bits_equal(dc.values, cube)
        if reader == "fast":  # every shard decoded by our codec: edge and missing ones too
            assert sorted(decoded) == [False] * (WHOLE_SHARDS + EDGE_SHARDS - 1) + [True]
        else:
            assert decoded == []
        # blocks of several shards (cut at the edge), and blocks that split shards
        for chunks, expected, aligned in (
            ((4, 4), ((4, 2), (4, 1)), True),
            ((6, 5), ((6,), (5,)), True),
            ((3, 2), ((3, 3), (2, 2, 1)), False),
            ((1, 3), ((1,) * 6, (3, 2)), False),
        ):
            decoded.clear()
            dc = s4.read(store, chunks=chunks)
            assert dc.data.chunks[:2] == expected
            assert_bits_equal(dc.values, cube)
            ours = reader == "fast" and aligned
            assert len(decoded) == (WHOLE_SHARDS + EDGE_SHARDS if ours else 0)
        np.testing.assert_allclose(dc.Rx.values, np.arange(6) * 0.5, rtol=0)
        assert dc.attrs["q_units"] == "mrad"

    with zarr.config.set(DEFAULT_PIPELINE):
        assert_bits_equal(zarr.open_array(store / "datacube", mode="r")[:], cube)
    assert_bits_equal(xr.open_zarr(store)["datacube"].values, cube)


# --- our shard codec against zarr-python -----------------------------------------------------

VALUES_SHAPE = (5, 6, 8, 8)  # shards (2, 6, 8, 8): the last one cut by the array's edge
SHARD = (2, 6, 8, 8)
INNER = (1, 3, 4, 8)  # 8 inner chunks per shard, split along Qx too (non-contiguous views)
FILL = 3


def zarr_values():
    rng = np.random.default_rng(2)
    values = rng.integers(0, 1000, VALUES_SHAPE, dtype="uint16")
    values[0, 0:3, 0:4] = FILL  # one inner chunk of fill value
    values[2:4] = FILL  # one whole shard
    return values


def zarr_array(path, compressor, index_location, values):
    compressors = BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle") if compressor else None
    with zarr.config.set(DEFAULT_PIPELINE):
        arr = zarr.create_array(
            path,
            shape=values.shape,
            dtype=values.dtype,
            shards={"shape": SHARD, "index_location": index_location},
            chunks=INNER,
            compressors=compressors,
            fill_value=FILL,
        )
        arr[:] = values
    return ShardCodec.of(json.loads((path / "zarr.json").read_text()))


def reopened(path):
    with zarr.config.set(DEFAULT_PIPELINE):
        return zarr.open_array(path, mode="r")[:]


@pytest.mark.parametrize("index_location", ["end", "start"])
@pytest.mark.parametrize("compressor", [True, False], ids=["blosc", "uncompressed"])
def test_shard_codec_reads_and_writes_zarr_python_shards(tmp_path, compressor, index_location):
    values = zarr_values()
    path = tmp_path / "a.zarr"
    codec = zarr_array(path, compressor, index_location, values)
    assert codec == ShardCodec(
        SHARD,
        INNER,
        "<u2",
        FILL,
        ("lz4", 5, 2, 2, 0) if compressor else None,
        index_location == "end",
        "/",
    )
    assert codec.per_shard == (2, 2, 2, 1)
    assert sorted(p.name for p in (path / "c").iterdir()) == ["0", "2"]  # shard 1: all fill

    new = np.random.default_rng(4).integers(0, 1000, VALUES_SHAPE, dtype="uint16")
    new[1, 3:6, 4:8] = FILL
    for i in range(3):
        rows = slice(2 * i, min(2 * i + 2, VALUES_SHAPE[0]))
        n = rows.stop - rows.start
        file = path / codec.key((i, 0, 0, 0))
        assert codec.key((i, 0, 0, 0)) == f"c/{i}/0/0/0"
        stored = file.read_bytes() if file.exists() else None
        decoded = codec.decode(stored)
        assert decoded.shape == SHARD and decoded.dtype == np.uint16
        np.testing.assert_array_equal(decoded[:n], values[rows])
        np.testing.assert_array_equal(decoded[n:], FILL)  # beyond the edge: fill value
        into = np.zeros((2, *SHARD), dtype="uint16")[1]  # a view of a bigger block
        assert codec.decode(stored, out=into) is into
        np.testing.assert_array_equal(into, decoded)
        # encoding the same values gives zarr-python's very bytes (None: no shard stored)
        assert codec.encode(decoded) == stored
        assert (stored is None) == (i == 1)

        block = np.full(SHARD, FILL, dtype="uint16")
        block[:n] = new[rows]
        encoded = codec.encode(block)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(encoded)
    np.testing.assert_array_equal(reopened(path), new)
    assert codec.encode(np.full(SHARD, FILL, dtype="uint16")) is None
    with pytest.raises(ValueError, match="whole shard"):
        codec.encode(new[:1])
    with pytest.raises(ValueError, match="out"):
        codec.decode(None, out=np.empty(SHARD, dtype="int16"))


def test_shard_codec_of_other_layouts_is_none(tmp_path):
    def meta_of(name, **kwargs):
        with zarr.config.set(DEFAULT_PIPELINE):
            zarr.create_array(tmp_path / name, shape=(4, 8), dtype="uint16", **kwargs)
        return json.loads((tmp_path / name / "zarr.json").read_text())

    sharded = {"shards": (2, 8), "chunks": (1, 8)}
    blosc = BloscCodec(cname="zstd", clevel=3, shuffle="noshuffle")
    meta = meta_of("blosc.zarr", compressors=blosc, **sharded)
    assert ShardCodec.of(meta).blosc == ("zstd", 3, 0, 2, 0)  # blosc with any cname: ours
    assert ShardCodec.of(meta_of("default.zarr", **sharded)) is None  # zarr's default: zstd
    assert ShardCodec.of(meta_of("unsharded.zarr", chunks=(2, 8))) is None
    assert ShardCodec.of(meta_of("zstd.zarr", compressors=ZstdCodec(level=3), **sharded)) is None
    big = meta_of("big.zarr", serializer=BytesCodec(endian="big"), compressors=None, **sharded)
    assert ShardCodec.of(big) is None
    little = meta_of(
        "little.zarr", serializer=BytesCodec(endian="little"), compressors=None, **sharded
    )
    assert ShardCodec.of(little).blosc is None
    assert ShardCodec.of({"zarr_format": 2}) is None
    assert ShardCodec.of({}) is None


def test_corrupt_shard_index_raises(tmp_path):
    values = zarr_values()
    codec = zarr_array(tmp_path / "a.zarr", True, "end", values)
    stored = bytearray((tmp_path / "a.zarr" / "c" / "0" / "0" / "0" / "0").read_bytes())
    np.testing.assert_array_equal(codec.decode(bytes(stored))[:2], values[:2])
    stored[-2] ^= 0x40
    with pytest.raises(ValueError, match="checksum"):
        codec.decode(bytes(stored))


# --- URLs ------------------------------------------------------------------------------------


@pytest.fixture
def memory_store(tmp_path, monkeypatch):
    cube = cube_of("uint16")
    store = write(cube, tmp_path / "s.zarr", "fast", monkeypatch)
    fs = fsspec.filesystem("memory")
    if fs.exists("/s.zarr"):
        fs.rm("/s.zarr", recursive=True)
    fs.put(str(store), "/s.zarr", recursive=True)
    try:
        yield cube, store
    finally:
        fs.rm("/s.zarr", recursive=True)


def test_read_memory_url_equals_local(memory_store, monkeypatch):
    cube, store = memory_store
    assert fsspec.filesystem("memory").exists("/s.zarr/datacube/zarr.json")
    for choice in CHOICES:
        monkeypatch.setenv(zarr_pipeline.ENV, choice)
        remote = s4.read("memory://s.zarr")
        assert loader_of(remote.data).shards is None  # URLs always go through zarr
        local = s4.read(store)
        assert remote.data.chunks == local.data.chunks
        xr.testing.assert_identical(remote.compute(), local.compute())
        assert_bits_equal(remote.values, cube)


# An HTTP server with byte ranges (as real servers and object stores have; Python's own
# http.server has none), run in another process: under "fast" and "zarrs" the zarrs pipeline
# fetches shards over HTTP itself (its own client, not fsspec), blocking while it holds the GIL,
# so a server thread in the test's own process would never answer it.
RANGE_SERVER = """
import http.server, io, os, sys

class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass

    def send_head(self):
        spec = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not spec or not os.path.isfile(path):
            return super().send_head()
        with open(path, "rb") as f:
            data = f.read()
        first, last = spec.strip().removeprefix("bytes=").split("-")
        if first:
            start, stop = int(first), int(last) + 1 if last else len(data)
        else:
            start, stop = max(len(data) - int(last), 0), len(data)
        body = data[start : min(stop, len(data))]
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{start + len(body) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)

handler = lambda *a, **k: Handler(*a, directory=sys.argv[1], **k)
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@pytest.fixture
def http_root(tmp_path):
    """``(directory, base URL)`` of a range-serving HTTP server in another process."""
    pytest.importorskip("aiohttp", reason="fsspec's HTTP filesystem needs aiohttp")
    server = subprocess.Popen(
        [sys.executable, "-c", RANGE_SERVER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        port = int(server.stdout.readline())
        yield tmp_path, f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)
        server.stdout.close()


def test_read_http_url_equals_local(http_root, monkeypatch):
    root, base = http_root
    cube = cube_of("uint16")
    store = write(cube, root / "s.zarr", "fast", monkeypatch)
    lazy = s4.read(store)
    local = lazy.compute()
    for choice in CHOICES:
        monkeypatch.setenv(zarr_pipeline.ENV, choice)
        remote = s4.read(f"{base}/s.zarr")
        assert loader_of(remote.data).shards is None
        assert remote.data.chunks == lazy.data.chunks
        xr.testing.assert_identical(remote.compute(), local)
        assert_bits_equal(remote.values, cube)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def test_read_http_without_ranges_in_this_process(tmp_path, monkeypatch):
    """Python's http.server (no byte ranges) in a thread of this process, read with the default
    choice ("fast"): URLs go through zarr-python's pipeline, where fsspec reads whole files and
    cuts the ranges itself (zarrs' own client would need ranges and would block the server's
    thread)."""
    pytest.importorskip("aiohttp", reason="fsspec's HTTP filesystem needs aiohttp")
    cube = cube_of("uint16")
    store = write(cube, tmp_path / "s.zarr", "default", monkeypatch)
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv(zarr_pipeline.ENV, "fast")
        remote = s4.read(f"http://127.0.0.1:{server.server_address[1]}/s.zarr")
        xr.testing.assert_identical(remote.compute(), s4.read(store).compute())
        assert_bits_equal(remote.values, cube)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- process workers and the fused read ------------------------------------------------------


def test_center_of_mass_on_process_cluster_equals_threaded(tmp_path, monkeypatch, process_client):
    store = write(cube_of("uint16"), tmp_path / "c.zarr", "fast", monkeypatch)
    ds = center_of_mass(s4.read(store))
    on_cluster = process_client.compute(ds).result()
    threaded = ds.compute(scheduler="threads")
    assert set(on_cluster.data_vars) == {"com_x", "com_y", "com_qx", "com_qy", "intensity"}
    for name in threaded.data_vars:
        np.testing.assert_array_equal(on_cluster[name].values, threaded[name].values)
    np.testing.assert_array_equal(threaded.intensity.values, cube_of("uint16").sum(axis=(2, 3)))


def numpy_com(cube):
    frames = cube.astype(np.float64)
    total = frames.sum(axis=(2, 3))
    qx = np.arange(cube.shape[2])[:, None]
    qy = np.arange(cube.shape[3])[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (
            total,
            (frames * qx).sum(axis=(2, 3)) / total,
            (frames * qy).sum(axis=(2, 3)) / total,
        )


def layer_names(ds):
    return list(ds.com_x.data.__dask_graph__().layers)


def test_map_frames_reads_inside_the_mapping_task(tmp_path, monkeypatch):
    cube = cube_of("uint16")
    store = write(cube, tmp_path / "c.zarr", "fast", monkeypatch)

    def refuse(*args, **kwargs):
        raise AssertionError("pixel data read while building the graph")

    monkeypatch.setattr(ShardCodec, "decode", refuse)
    monkeypatch.setattr(ZarrBlockLoader, "__call__", refuse)
    dc = s4.read(store)
    fused = center_of_mass(dc)
    unfused = center_of_mass(dc.copy(data=dc.data * 1))
    stepped = center_of_mass(dc.isel(Rx=slice(None, None, 2)))
    for ds in (fused, unfused, stepped):
        ds.com_x.data.__dask_graph__()
    monkeypatch.undo()  # reads allowed again

    names = layer_names(fused)
    com_layers = [n for n in names if n.startswith("center_of_mass-")]
    assert len(com_layers) == 1
    graph = fused.com_x.data.__dask_graph__()
    assert len(graph.layers[com_layers[0]]) == 3 * 3  # one task per scan chunk
    assert not [n for n in names if n.startswith("zarr-")]
    assert loader_of(dc.data) is not None and loader_of(dc.data * 1) is None
    assert [n for n in layer_names(unfused) if n.startswith("zarr-")]  # read, then mapped
    assert [n for n in layer_names(stepped) if n.startswith("zarr-")]

    fused, unfused, stepped = (ds.compute(scheduler="threads") for ds in (fused, unfused, stepped))
    total, com_x, com_y = numpy_com(cube)
    for name in fused.data_vars:
        np.testing.assert_array_equal(fused[name].values, unfused[name].values)
        np.testing.assert_array_equal(stepped[name].values, fused[name].values[::2])
    np.testing.assert_array_equal(fused.intensity.values, total)
    np.testing.assert_array_equal(stepped.intensity.values, total[::2])
    assert np.isnan(fused.com_x.values[2:4, 2:4]).all()  # empty patterns (the missing shard)
    np.testing.assert_allclose(fused.com_x.values, com_x, rtol=1e-12)
    np.testing.assert_allclose(fused.com_y.values, com_y, rtol=1e-12)
    np.testing.assert_allclose(stepped.com_y.values, com_y[::2], rtol=1e-12)
    np.testing.assert_allclose(fused.com_qx.values, com_x * 0.1, rtol=1e-12)


# --- byte order and fork ---------------------------------------------------------------------


def test_effective_pipeline_for_byte_order_and_after_fork(monkeypatch):
    assert zarr_pipeline.effective("zarrs", np.dtype(">u2")) == "default"
    assert zarr_pipeline.effective("zarrs", np.dtype("<u2")) == "zarrs"
    assert zarr_pipeline.effective("fast", ">f4") == "default"
    assert zarr_pipeline.effective("default", "<u2") == "default"
    for key in ("zarrs_used", "forked_after_zarrs", "warned_fork"):  # restored afterwards
        monkeypatch.setitem(zarr_pipeline._state, key, False)
    zarr_pipeline._after_fork_in_child()
    assert zarr_pipeline.effective("zarrs") == "zarrs"  # the parent never used zarrs
    monkeypatch.setitem(zarr_pipeline._state, "zarrs_used", True)
    zarr_pipeline._after_fork_in_child()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert zarr_pipeline.effective("zarrs") == "default"
        assert zarr_pipeline.effective("fast", "<u2") == "default"
        assert zarr_pipeline.effective("zarrs", "<u2") == "default"
    assert [w.category for w in caught] == [RuntimeWarning]
    assert "forked" in str(caught[0].message)
    assert zarr_pipeline.settings("zarrs") == {"codec_pipeline.path": zarr_pipeline.ZARRS}


def loader_of(array):
    """The reader's loader of a dask array straight from a reader, else None."""
    reader = chunk_reader_of(array)
    return None if reader is None else reader.loader


def test_urls_name_what_is_missing(memory_store):
    with pytest.raises(FileNotFoundError, match="no zarr store at memory://nothing.zarr"):
        s4.read("memory://nothing.zarr")
    with pytest.raises(ValueError, match="format: only zarr"):
        s4.read("memory://s.zarr", format="mib")
