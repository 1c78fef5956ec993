import json

import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr

import stem4d_dask as s4
from stem4d_dask.io.storage import completed_at, compressor_codecs


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int32", "float32", "float64"])
def test_zarr_round_trip_bit_exact_with_calibration(tmp_path, dtype):
    rng = np.random.default_rng(3)
    cube = (rng.normal(0, 1000, (5, 7, 11, 6))).astype(dtype)
    dc = s4.from_array(
        cube,
        r_pixel_size=0.8,
        r_units="nm",
        q_pixel_size=0.02,
        q_units="A^-1",
        energy=80e3,
        chunks=(2, 7),
    )
    s4.to_zarr(dc, tmp_path / "c.zarr", progress=False)
    back = s4.read(tmp_path / "c.zarr")
    assert back.dtype == cube.dtype
    assert np.array_equal(back.values, cube)
    assert back.attrs == dc.attrs
    xr.testing.assert_identical(back.coords.to_dataset(), dc.coords.to_dataset())
    assert back.data.chunks == dc.data.chunks  # one shard per task


def test_store_is_sharded_compressed_v3(tmp_path, dc_u16):
    s4.to_zarr(dc_u16, tmp_path / "c.zarr", progress=False)
    meta = json.loads((tmp_path / "c.zarr" / "datacube" / "zarr.json").read_text())
    assert meta["zarr_format"] == 3
    assert meta["dimension_names"] == ["Rx", "Ry", "Qx", "Qy"]
    shard = meta["codecs"][0]
    assert shard["name"] == "sharding_indexed"
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [3, 9, 12, 10]
    blosc = [c for c in shard["configuration"]["codecs"] if c["name"] == "blosc"][0]
    assert blosc["configuration"]["cname"] == "lz4"
    assert blosc["configuration"]["shuffle"] == "bitshuffle"


def test_plain_xarray_opens_our_store(tmp_path, dc_u16, cube_u16):
    s4.to_zarr(dc_u16, tmp_path / "c.zarr", progress=False)
    ds = xr.open_zarr(tmp_path / "c.zarr")
    assert ds["datacube"].dims == ("Rx", "Ry", "Qx", "Qy")
    assert np.array_equal(ds["datacube"].values, cube_u16)
    assert ds["datacube"].attrs["q_units"] == "mrad"
    assert ds["Qx"].attrs["units"] == "mrad"
    np.testing.assert_allclose(ds["Rx"].values, np.arange(7) * 1.5)


def test_reads_store_written_by_plain_xarray(tmp_path):
    cube = np.arange(4 * 6 * 8 * 8, dtype="float32").reshape(4, 6, 8, 8)
    da_ = xr.DataArray(
        cube,
        dims=("Rx", "Ry", "Qx", "Qy"),
        name="frames",
        coords={
            "Rx": ("Rx", np.arange(4) * 3.0, {"units": "A"}),
            "Qx": ("Qx", np.arange(8) * 0.5, {"units": "mrad"}),
        },
    )
    da_.to_dataset().to_zarr(tmp_path / "x.zarr", encoding={"frames": {"chunks": (1, 3, 8, 8)}})
    dc = s4.read(tmp_path / "x.zarr")
    assert np.array_equal(dc.values, cube)
    assert dc.attrs["r_pixel_size"] == 3.0 and dc.attrs["r_units"] == "A"
    assert dc.attrs["q_pixel_size"] == 0.5 and dc.attrs["q_units"] == "mrad"
    assert dc.data.chunks == ((4,), (6,), (8,), (8,))  # small storage chunks grouped


def test_reads_transposed_xarray_store_and_names(tmp_path):
    cube = np.random.default_rng(0).random((8, 8, 3, 4))
    ds = xr.Dataset({"a": (("Qx", "Qy", "Rx", "Ry"), cube), "b": (("Qx", "Qy", "Rx", "Ry"), cube)})
    ds.to_zarr(tmp_path / "t.zarr")
    with pytest.raises(ValueError, match="name"):
        s4.read(tmp_path / "t.zarr")
    dc = s4.read(tmp_path / "t.zarr", name="b")
    assert np.array_equal(dc.values, cube.transpose(2, 3, 0, 1))


def test_existing_output_needs_overwrite(tmp_path, dc_u16, cube_u16):
    s4.to_zarr(dc_u16, tmp_path / "c.zarr", progress=False)
    with pytest.raises(FileExistsError, match="c.zarr"):
        s4.to_zarr(dc_u16, tmp_path / "c.zarr", progress=False)
    s4.to_zarr(dc_u16[:2], tmp_path / "c.zarr", overwrite=True, progress=False)
    assert s4.read(tmp_path / "c.zarr").shape == (2, 9, 12, 10)


def test_failed_write_leaves_no_complete_looking_store(tmp_path, cube_u16):
    def fail(block):
        raise RuntimeError("disk on fire")

    arr = da.from_array(cube_u16, chunks=(3, 9, 12, 10)).map_blocks(fail, dtype="uint16")
    dc = s4.from_array(arr)
    with pytest.raises(RuntimeError, match="disk on fire"):
        s4.to_zarr(dc, tmp_path / "c.zarr", progress=False)
    assert not (tmp_path / "c.zarr").exists()
    assert (tmp_path / "c.zarr.partial").exists()


def test_resume_rejects_other_settings(tmp_path, dc_u16):
    partial = tmp_path / "c.zarr.partial" / ".stem4d-progress"
    s4.to_zarr(dc_u16, tmp_path / "c.zarr", progress=False)
    (tmp_path / "c.zarr").rename(tmp_path / "c.zarr.partial")
    partial.mkdir()
    (partial / "settings.json").write_text(json.dumps({"shape": [1, 1, 1, 1]}))
    with pytest.raises(ValueError, match="resume"):
        s4.to_zarr(dc_u16, tmp_path / "c.zarr", resume=True, progress=False)


@pytest.mark.parametrize(
    "kwargs,match", [({"compressor": "gzip"}, "compressor"), ({"clevel": 12}, "clevel")]
)
def test_bad_writer_options(tmp_path, dc_u16, kwargs, match):
    with pytest.raises(ValueError, match=match):
        s4.to_zarr(dc_u16, tmp_path / "c.zarr", progress=False, **kwargs)


@pytest.mark.parametrize("compressor", ["lz4", "none"])
def test_other_compressors_round_trip(tmp_path, dc_u16, cube_u16, compressor):
    s4.to_zarr(dc_u16, tmp_path / "c.zarr", compressor=compressor, progress=False)
    assert np.array_equal(s4.read(tmp_path / "c.zarr").values, cube_u16)


def test_rechunk_on_write_and_inner_chunks(tmp_path, dc_u16, cube_u16):
    s4.to_zarr(dc_u16, tmp_path / "c.zarr", chunks=(7, 3), progress=False)
    arr = zarr.open_array(tmp_path / "c.zarr" / "datacube")
    assert arr.shards == (7, 3, 12, 10)
    assert arr.chunks[0] == 1 and 3 % arr.chunks[1] == 0
    assert np.array_equal(s4.read(tmp_path / "c.zarr").values, cube_u16)


# --- storage helpers shared by every writer (zarr stores, events stores, EMD files) ----------


def test_completed_at_renames_only_a_complete_write(tmp_path):
    target = tmp_path / "out.bin"
    with completed_at(target) as tmp:
        assert tmp == tmp_path / "out.bin.partial" and not target.exists()
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new" and not tmp.exists()
    with pytest.raises(FileExistsError, match="out.bin"):
        with completed_at(target):
            raise AssertionError("the block must not run")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with completed_at(target, overwrite=True) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk on fire")
    assert target.read_bytes() == b"new" and not tmp.exists()  # old kept, partial removed
    (tmp_path / "out.bin.partial").mkdir()  # a stale partial directory is replaced
    with completed_at(target, overwrite=True) as tmp:
        tmp.write_bytes(b"newer")
    assert target.read_bytes() == b"newer"


def test_completed_at_resumable_keeps_the_partial(tmp_path):
    target = tmp_path / "out.zarr"
    (tmp_path / "out.zarr.partial").mkdir()
    (tmp_path / "out.zarr.partial" / "done").touch()
    with pytest.raises(KeyboardInterrupt):
        with completed_at(target, resumable=True) as tmp:
            assert (tmp / "done").exists()  # kept for the writer to resume from
            raise KeyboardInterrupt
    assert (tmp / "done").exists() and not target.exists()
    with completed_at(target, resumable=True) as tmp:
        pass
    assert (target / "done").exists() and not tmp.exists()


def test_compressor_codecs_built_once():
    zstd, crc = compressor_codecs()
    assert (zstd.cname.value, zstd.clevel, zstd.shuffle.value) == ("zstd", 3, "bitshuffle")
    assert crc.to_dict() == {"name": "crc32c"}
    (events,) = compressor_codecs("zstd", 5, shuffle="shuffle", checksum=False)
    assert (events.clevel, events.shuffle.value) == (5, "shuffle")
    assert [c.to_dict() for c in compressor_codecs("none")] == [{"name": "crc32c"}]
    assert compressor_codecs("none", checksum=False) == ()
    for kwargs, match in (
        ({"clevel": True}, "clevel"),
        ({"clevel": "3"}, "clevel"),
        ({"shuffle": "bits"}, "shuffle"),
        ({"compressor": "gzip"}, "compressor"),
    ):
        with pytest.raises(ValueError, match=match):
            compressor_codecs(**kwargs)


@pytest.mark.parametrize("choice", ["fast", "zarrs", "default"])
def test_a_corrupt_chunk_is_refused_not_decoded(tmp_path, monkeypatch, choice):
    """Every stored chunk carries its crc32c: a byte flipped in compressed data (which blosc
    often decodes without complaint, into wrong values) is refused by every pipeline."""
    rng = np.random.default_rng(3)
    cube = rng.poisson(3.0, (4, 4, 16, 16)).astype(np.uint16)
    s4.to_zarr(s4.from_array(cube, chunks=(2, 4)), tmp_path / "c.zarr", progress=False)
    shard = tmp_path / "c.zarr" / "datacube" / "c" / "1" / "0" / "0" / "0"
    stored = bytearray(shard.read_bytes())
    stored[len(stored) // 3] ^= 0x10  # inside the first inner chunk's compressed bytes
    shard.write_bytes(bytes(stored))
    monkeypatch.setenv("STEM4D_ZARR_PIPELINE", choice)
    dc = s4.read(tmp_path / "c.zarr")
    np.testing.assert_array_equal(dc[:2].values, cube[:2])  # the other shard is intact
    with pytest.raises(Exception, match="(?i)checksum|crc"):
        _ = dc[2:].values
