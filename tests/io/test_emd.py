"""py4DSTEM / EMD 1.0 .h5: read py4DSTEM's files, write files py4DSTEM reads, stay lazy."""

import hashlib
import json
import tracemalloc

import cloudpickle
import dask.array as da
import h5py
import numpy as np
import pytest
from py4dstem_oracle import FIXTURES, SKIP_REASON, available, py4dstem_read

import stem4d_dask as s4
from stem4d_dask.chunks import auto_chunks
from stem4d_dask.io.emd import _write_layout, is_emd, read_emd, to_h5
from stem4d_dask.io.h5 import H5BlockLoader
from stem4d_dask.io.hdf5 import is_legacy_emd

EXPECTED = json.loads((FIXTURES / "py4dstem_written.json").read_text())
HUGE = (512, 512, 256, 256)  # uint16: 32 GiB logical


def calibration(dc):
    return {
        k: dc.attrs.get(k) for k in ("r_pixel_size", "r_units", "q_pixel_size", "q_units", "energy")
    }


def make_dc(dtype, shape=(5, 7, 6, 4), chunks=(2, 3), **cal):
    rng = np.random.default_rng(7)
    if np.dtype(dtype).kind == "f":
        data = rng.normal(size=shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        data = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    cal = {
        "r_pixel_size": 1.25,
        "r_units": "A",
        "q_pixel_size": 0.02,
        "q_units": "A^-1",
        "energy": 200e3,
        **cal,
    }
    return s4.from_array(data, chunks=chunks, **cal), data


def tree(path):
    """{hdf5 path: (kind, dtype, shape, attrs)} without the per-file UUID/authoring_program."""
    out = {}
    with h5py.File(path, "r") as f:

        def visit(name, obj):
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Dataset):
                out[name] = ("dataset", obj.dtype.str, obj.shape, attrs)
            else:
                out[name] = ("group", None, None, attrs)

        visit("/", f)
        f.visititems(visit)
    for key in ("UUID", "authoring_program"):
        out["/"][3].pop(key)
    return out


# --- reading py4DSTEM's files ---------------------------------------------------------------


def test_read_shared_py4dstem_file(shared_data):
    path = shared_data / "py4dstem" / "py4DSTEM_size2x3x4x5.h5"
    if not path.is_file():
        pytest.skip(f"{path} not in the shared data folder")
    assert is_emd(path)
    dc = read_emd(path)
    assert dc.shape == (2, 3, 4, 5) and dc.dtype == np.float32
    assert calibration(dc) == {
        "r_pixel_size": 0.126796875,
        "r_units": "nm",
        "q_pixel_size": 0.044251566616087125,
        "q_units": "A^-1",
        "energy": None,
    }
    np.testing.assert_allclose(dc.Rx.values, [0, 0.126796875])
    assert dc.Qy.attrs["units"] == "A^-1"
    with h5py.File(path, "r") as f:
        raw = f["datacube_root/datacube/data"][()]
    assert np.array_equal(dc.values, raw)
    assert raw.ravel()[0] == np.float32(472.5212)
    assert np.array_equal(s4.read(path).values, raw)  # format detection


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_read_py4dstem_written_fixture(name):
    expected = EXPECTED[name]
    dc = read_emd(FIXTURES / name)
    values = dc.values
    assert list(dc.shape) == expected["shape"] and dc.dtype.str == expected["dtype"]
    assert hashlib.sha256(values.tobytes()).hexdigest() == expected["sha256"]
    np.testing.assert_array_equal(values.ravel()[:5], expected["first"])
    np.testing.assert_array_equal(values.ravel()[-5:], expected["last"])
    assert calibration(dc) == {k: expected.get(k) for k in calibration(dc)}


# --- writing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["uint16", "int32", "float32", "float64"])
def test_round_trip_bit_exact(tmp_path, dtype):
    dc, data = make_dc(dtype, q_units="mrad", q_pixel_size=0.37, r_units="nm")
    path = to_h5(dc, tmp_path / "rt.h5", progress=False)
    back = read_emd(path)
    assert back.dtype == data.dtype and np.array_equal(back.values, data)
    assert calibration(back) == calibration(dc)
    np.testing.assert_allclose(back.Qx.values, dc.Qx.values)
    again = s4.read(path)  # through the format-detecting front door
    assert np.array_equal(again.values, data) and again.attrs == dc.attrs


def test_write_front_door_and_overwrite(tmp_path):
    dc, data = make_dc(
        "uint16", energy=None, r_units="pixels", r_pixel_size=1, q_units="pixels", q_pixel_size=1
    )
    path = tmp_path / "w.h5"
    s4.write(dc, path, progress=False)
    with pytest.raises(FileExistsError, match="w.h5"):
        to_h5(dc, path, progress=False)
    dc2, data2 = make_dc("float32")
    to_h5(dc2, path, overwrite=True, progress=False)
    assert np.array_equal(read_emd(path).values, data2)
    assert not (tmp_path / "w.h5.partial").exists()


def test_layout_matches_py4dstem(tmp_path):
    name = "py4dstem_written.h5"
    theirs = read_emd(FIXTURES / name)
    ours = to_h5(theirs, tmp_path / "ours.h5", progress=False)
    assert tree(ours) == tree(FIXTURES / name)
    with h5py.File(ours, "r") as f:
        cal = f["datacube_root/metadatabundle/calibration"]
        assert cal["R_pixel_units"].dtype == h5py.string_dtype("ascii")  # vlen bytes, as emdfile
        assert cal["R_pixel_units"][()] == b"A"
        assert f["datacube_root/datacube/dim1"][()].tolist() == [0.0, 2.5]


def test_energy_and_custom_name_layout(tmp_path):
    dc, _ = make_dc("uint16")
    path = to_h5(dc, tmp_path / "e.h5", name="scan", progress=False)
    with h5py.File(path, "r") as f:
        assert f["scan_root"].attrs["python_class"] == "Root"
        assert f["scan_root/scan"].attrs["python_class"] == "DataCube"
        cal = f["scan_root/metadatabundle/calibration"]
        assert cal["energy"][()] == 200e3 and cal["_target_paths/0"][()] == b"/scan"
    assert read_emd(path, name="scan").attrs["energy"] == 200e3


@pytest.mark.skipif(not available(), reason=SKIP_REASON)
def test_py4dstem_reads_our_files(tmp_path):
    cases = [
        make_dc("uint16"),
        make_dc("float32", r_units="nm", r_pixel_size=0.4, q_units="mrad", energy=None),
        make_dc("int32", r_units="pixels", r_pixel_size=1, q_units="pixels", q_pixel_size=1),
    ]
    paths = [to_h5(dc, tmp_path / f"ours{i}.h5", progress=False) for i, (dc, _) in enumerate(cases)]
    for (dc, data), seen in zip(cases, py4dstem_read(paths, tmp_path), strict=True):
        assert seen["class_name"] == "DataCube" and seen["name"] == "datacube"
        assert seen["data"].dtype == data.dtype and np.array_equal(seen["data"], data)
        for key in ("r_pixel_size", "r_units", "q_pixel_size", "q_units"):
            assert seen[key] == dc.attrs[key], key
        energy = dc.attrs.get("energy")
        assert seen["energy"] == energy if energy else np.isnan(seen["energy"])
        np.testing.assert_allclose(seen["dim3"], dc.Qy.values)
        assert list(seen["dim_units"]) == [dc.attrs["r_units"]] * 2 + [dc.attrs["q_units"]] * 2


def test_progress_bar(tmp_path, capsys):
    dc, _ = make_dc("uint16")
    to_h5(dc, tmp_path / "p.h5", progress=True)
    assert "100% Completed" in capsys.readouterr().err


def test_failed_write_leaves_no_file(tmp_path):
    dc, _ = make_dc("uint16")

    def boom(block, block_info=None):
        if block_info[0]["chunk-location"][:2] == (1, 1):
            raise RuntimeError("disk on fire")
        return block

    bad = dc.copy(data=dc.data.map_blocks(boom, dtype=dc.dtype))
    path = tmp_path / "bad.h5"
    with pytest.raises(RuntimeError, match="disk on fire"):
        to_h5(bad, path, progress=False)
    assert not path.exists() and not (tmp_path / "bad.h5.partial").exists()
    good, data = make_dc("uint16", energy=None)
    to_h5(good, path, progress=False)
    with pytest.raises(RuntimeError, match="disk on fire"):
        to_h5(bad, path, overwrite=True, progress=False)
    assert np.array_equal(read_emd(path).values, data)  # the old file survives


def test_to_h5_does_not_mutate_and_checks_input(tmp_path):
    dc, data = make_dc("uint16")
    attrs, chunks = dict(dc.attrs), dc.data.chunks
    to_h5(dc, tmp_path / "a.h5", progress=False)
    assert dc.attrs == attrs and dc.data.chunks == chunks and np.array_equal(dc.values, data)
    with pytest.raises(TypeError, match="dc"):
        to_h5(data, tmp_path / "b.h5")
    with pytest.raises(ValueError, match="name"):
        to_h5(dc, tmp_path / "b.h5", name="a/b")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        to_h5(dc, tmp_path / "nowhere" / "b.h5")


# --- laziness --------------------------------------------------------------------------------


def huge_h5(tmp_path):
    """A 32 GiB logical, HDF5-chunked DataCube with no chunk allocated (a few kB on disk)."""
    path = tmp_path / "huge.h5"
    attrs = {"r_pixel_size": 2.0, "r_units": "A", "q_pixel_size": 0.1, "q_units": "mrad"}
    with h5py.File(path, "w") as f:
        _write_layout(f, "datacube", HUGE, "uint16", attrs, chunks=(4, 16, 256, 256))
    return path


def test_read_huge_file_reads_no_pixels(tmp_path, monkeypatch):
    path = huge_h5(tmp_path)
    assert path.stat().st_size < 100_000

    def refuse(self, slices):
        raise AssertionError("pixel data was read while building a graph")

    monkeypatch.setattr(H5BlockLoader, "__call__", refuse)
    tracemalloc.start()
    dc = read_emd(path)
    summed = dc.sum(("Qx", "Qy"))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 20 * 2**20, f"building allocated {peak / 2**20:.1f} MiB"
    assert dc.shape == HUGE and summed.shape == HUGE[:2]
    assert dc.data.chunksize == (4, 128, 256, 256)  # 64 MiB, whole HDF5 chunks
    assert dc.attrs["q_units"] == "mrad" and dc.attrs["r_pixel_size"] == 2.0
    assert len(cloudpickle.dumps(dict(dc.data.__dask_graph__()))) < 1_000_000


def test_unreadable_block_names_file_and_scan_positions(tmp_path):
    dc, _ = make_dc("uint16")
    path = s4.to_h5(dc, tmp_path / "gone.h5", progress=False)
    lazy = read_emd(path)
    path.write_bytes(b"not an HDF5 file any more")  # replaced after the graph was built
    with pytest.raises(
        ValueError,
        match=r"gone.h5:/datacube_root/datacube/data: the block of "
        r"scan positions Rx \(0, \d\)",
    ):
        lazy.compute()


def test_scan_chunks_policy():
    assert auto_chunks(HUGE, 2, multiple_of=(4, 16)) == (4, 128, 256, 256)
    assert auto_chunks(HUGE, 2, multiple_of=(1, 1)) == auto_chunks(HUGE, 2)
    assert auto_chunks((64, 4096, 256, 256), 2, multiple_of=(3, 1)) == (3, 170, 256, 256)


def test_read_chunked_file_and_explicit_chunks(tmp_path):
    dc, data = make_dc("uint16", shape=(9, 10, 6, 4))
    path = tmp_path / "c.h5"
    with h5py.File(path, "w") as f:
        _write_layout(f, "datacube", data.shape, data.dtype, dc.attrs, chunks=(2, 3, 6, 4))[...] = (
            data
        )
    auto = read_emd(path)
    assert auto.data.chunksize == (9, 10, 6, 4) and np.array_equal(auto.values, data)
    explicit = read_emd(path, chunks=(2, 5))
    assert explicit.data.chunks[:2] == ((2, 2, 2, 2, 1), (5, 5))
    assert np.array_equal(explicit.values, data)
    remote = cloudpickle.loads(cloudpickle.dumps(explicit.data))
    assert np.array_equal(remote.compute(scheduler="processes"), data)


# --- calibration fall-backs, several datacubes, bad inputs ----------------------------------


def test_calibration_falls_back_to_dims_then_pixels(tmp_path):
    dc, data = make_dc("uint16", r_units="nm", r_pixel_size=0.5, q_units="mrad")
    path = to_h5(dc, tmp_path / "f.h5", progress=False)
    with h5py.File(path, "r+") as f:
        del f["datacube_root/metadatabundle"]
    with_dims = read_emd(path)
    assert calibration(with_dims) == {**calibration(dc), "energy": None}
    with h5py.File(path, "r+") as f:
        for i in range(4):
            del f[f"datacube_root/datacube/dim{i}"]
    bare = read_emd(path)
    assert (bare.attrs["r_units"], bare.attrs["q_units"]) == ("pixels", "pixels")
    assert np.array_equal(bare.values, data)


def test_unknown_units_warn_and_use_pixels(tmp_path):
    dc, _ = make_dc("uint16")
    path = to_h5(dc, tmp_path / "u.h5", progress=False)
    with h5py.File(path, "r+") as f:
        cal = f["datacube_root/metadatabundle/calibration"]
        del cal["Q_pixel_units"]
        cal.create_dataset("Q_pixel_units", data=b"furlongs")
        del cal["energy"]
        cal.create_dataset("energy", data=-1.0)
    with pytest.warns(UserWarning) as record:
        dc = read_emd(path)
    messages = " | ".join(str(w.message) for w in record)
    assert "furlongs" in messages and "energy" in messages
    assert (dc.attrs["q_units"], dc.attrs["q_pixel_size"]) == ("pixels", 1.0)
    assert dc.attrs["r_units"] == "A" and "energy" not in dc.attrs


def test_several_datacubes_need_name(tmp_path):
    a, data_a = make_dc("uint16")
    path = to_h5(a, tmp_path / "two.h5", name="first", progress=False)
    b, data_b = make_dc("float32", shape=(2, 3, 4, 5))
    to_h5(b, tmp_path / "b.h5", name="second", progress=False)
    with h5py.File(path, "a") as f, h5py.File(tmp_path / "b.h5", "r") as g:
        g.copy("second_root", f)
    with pytest.raises(ValueError, match="first_root/first.*second_root/second"):
        read_emd(path)
    assert np.array_equal(read_emd(path, name="second").values, data_b)
    assert np.array_equal(read_emd(path, name="/first_root/first").values, data_a)
    with pytest.raises(ValueError, match="'third'"):
        read_emd(path, name="third")


def test_bad_inputs(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    assert not is_emd(text) and not is_emd(tmp_path / "missing.h5")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        read_emd(text)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        read_emd(tmp_path / "missing.h5")
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["frames"] = np.zeros((2, 2, 3, 3))
    assert not is_emd(plain)
    with pytest.raises(ValueError, match="no py4DSTEM DataCube.*frames"):
        read_emd(plain)
    legacy = tmp_path / "legacy.h5"
    with h5py.File(legacy, "w") as f:
        g = f.create_group("4DSTEM_experiment")
        g.attrs.update(emd_group_type=2, version_major=0, version_minor=12)
    assert not is_emd(legacy) and is_legacy_emd(legacy)  # read by io.hdf5, not refused
    with pytest.raises(ValueError, match="py4DSTEM 0.12 .*holds no 4D datacube"):
        read_emd(legacy)
    with h5py.File(legacy, "a") as f:  # a datacube group, as py4DSTEM <= 0.12 wrote it
        g = f.create_group("4DSTEM_experiment/data/datacubes/dc")
        g.attrs["emd_group_type"] = 1
        g["data"] = np.arange(16.0).reshape(2, 2, 2, 2)
    assert np.array_equal(read_emd(legacy).values, np.arange(16.0).reshape(2, 2, 2, 2))


def test_distributed_write(tmp_path):
    distributed = pytest.importorskip("distributed")
    dc, data = make_dc("uint16", shape=(6, 5, 4, 3), chunks=(1, 2))
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
    ):
        path = to_h5(dc, tmp_path / "d.h5", progress=False)
        back = read_emd(path)
        assert np.array_equal(back.data.compute(), data)
    assert np.array_equal(da.asarray(read_emd(path).data).compute(), data)
