"""Any HDF5 dataset by path (3D/4D/5D, contiguous, chunked, compressed) and legacy EMD 0.x /
py4DSTEM <= 0.13 files: values, calibration, laziness, graph size, process workers, errors."""

import subprocess

import cloudpickle
import h5py
import numpy as np
import pytest
from py4dstem_oracle import PYTHON, SKIP_REASON, available, py4dstem_read
from writers_hdf5 import write_dataset, write_emd_v02, write_py4dstem_v12, write_py4dstem_v13

import stem4d_dask as s4
from stem4d_dask.io import detect
from stem4d_dask.io.emd import is_emd, read_emd, to_h5
from stem4d_dask.io.hdf5 import H5BlockLoader, is_legacy_emd, read_hdf5, read_legacy_emd
from stem4d_dask.lazy import RawFileLoader

SHAPE = (12, 10, 32, 24)


@pytest.fixture(scope="module")
def cube():
    rng = np.random.default_rng(5)
    return rng.integers(0, 60000, size=SHAPE, dtype=np.uint16)


@pytest.fixture(scope="module")
def plain(tmp_path_factory, cube):
    """One file, many layouts of the same scan."""
    path = tmp_path_factory.mktemp("hdf5") / "plain.h5"
    frames = cube.reshape(-1, *SHAPE[2:])
    write_dataset(path, "cube/contiguous", cube, mode="w")
    write_dataset(path, "cube/gzip", cube, chunks=(2, 5, 32, 24), compression="gzip")
    write_dataset(path, "frames/bslz4", frames, chunks=(1, 32, 24), compression="bslz4")
    write_dataset(path, "frames/zstd", frames, chunks=(20, 32, 24), compression="zstd")
    write_dataset(path, "frames/contiguous", frames)
    write_dataset(path, "rgb/last", cube[..., None], chunks=(4, 10, 32, 24, 1))
    write_dataset(path, "rgb/first", cube[None])
    write_dataset(path, "big_endian", cube.astype(">u2"), chunks=(3, 10, 32, 24))
    write_dataset(path, "image", cube[0, 0])
    write_dataset(path, "five", np.zeros((2, 2, 2, 2, 2)))
    with h5py.File(path, "a") as f:
        f["words"] = np.array([b"a", b"b", b"c"] * 4).reshape(2, 2, 3)
        f["cube/gzip"].attrs["note"] = "hello"
    return path


@pytest.fixture
def no_reads(monkeypatch):
    def refuse(self, slices):
        raise AssertionError("pixel data was read while opening")

    monkeypatch.setattr(RawFileLoader, "__call__", refuse)
    monkeypatch.setattr(H5BlockLoader, "__call__", refuse)


# --- any dataset ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dataset, scan_shape",
    [
        ("cube/contiguous", None),
        ("cube/gzip", None),
        ("frames/bslz4", (12, 10)),
        ("frames/zstd", (12, 10)),
        ("frames/contiguous", (12, 10)),
        ("rgb/last", None),
        ("rgb/first", None),
        ("big_endian", None),
        ("/cube/gzip", (12, 10)),
    ],
)
def test_datasets_read_as_stored(plain, cube, dataset, scan_shape):
    dc = s4.read(plain, dataset=dataset, scan_shape=scan_shape)
    assert dc.attrs["format"] == "hdf5" and dc.shape == SHAPE
    assert dc.dtype == np.dtype("uint16")  # native byte order, whatever the file's
    assert np.array_equal(dc.values, cube)
    assert np.array_equal(dc[3:7, 2:9].values, cube[3:7, 2:9])


@pytest.mark.parametrize("chunks", [(5, 3), (1, 10), {"Ry": 4}])
def test_partial_rows_of_frame_stacks(plain, cube, chunks):
    for dataset in ("frames/bslz4", "frames/contiguous"):
        dc = read_hdf5(plain, dataset=dataset, scan_shape=(12, 10), chunks=chunks)
        assert np.array_equal(dc.values, cube)


def test_contiguous_datasets_are_mapped_not_read_through_h5py(plain, cube, monkeypatch):
    def refuse(self, slices):
        raise AssertionError("read through h5py")

    monkeypatch.setattr(H5BlockLoader, "__call__", refuse)
    for dataset, scan_shape in (
        ("cube/contiguous", None),
        ("frames/contiguous", (12, 10)),
        ("rgb/first", None),
    ):
        dc = read_hdf5(plain, dataset=dataset, scan_shape=scan_shape, chunks=(5, 10))
        assert np.array_equal(dc.values, cube)
    with pytest.raises(AssertionError, match="through h5py"):
        read_hdf5(plain, dataset="cube/gzip").data.compute()


def test_chunks_are_whole_hdf5_chunks(plain):
    dc = read_hdf5(plain, dataset="cube/gzip", chunks={"Rx": 3, "Ry": 4})
    assert dc.data.chunks[:2] == ((3,) * 4, (4, 4, 2))  # as asked
    auto = read_hdf5(plain, dataset="cube/gzip")
    assert all(c % 2 == 0 for c in auto.data.chunks[0][:-1])
    assert all(c % 5 == 0 for c in auto.data.chunks[1])
    zstd = read_hdf5(plain, dataset="frames/zstd", scan_shape=(12, 10))  # 20 frames a chunk
    assert all(c % 2 == 0 for c in zstd.data.chunks[0][:-1])


def test_metadata(plain):
    dc = read_hdf5(plain, dataset="cube/gzip")
    assert dc.attrs["metadata"] == {
        "dataset": "/cube/gzip",
        "stored_shape": list(SHAPE),
        "dtype": "<u2",
        "attrs": {"note": "hello"},
    }
    assert dc.attrs["r_units"] == "pixels" and dc.attrs["q_units"] == "pixels"
    calibrated = s4.read(plain, dataset="cube/gzip", r_pixel_size=2.0, r_units="A")
    assert calibrated.attrs["r_pixel_size"] == 2.0


def test_open_reads_nothing_and_graph_is_small(plain, no_reads):
    for dataset in ("cube/contiguous", "cube/gzip", "frames/bslz4"):
        dc = s4.read(plain, dataset=dataset, scan_shape=(12, 10), chunks=(2, 10))
        graph = dict(dc.data.__dask_graph__())
        assert dc.data.npartitions == 6
        assert len(graph) <= dc.data.npartitions + 1  # one task per chunk (+ the loader)
        assert len(cloudpickle.dumps(graph)) < 20_000
        with pytest.raises(AssertionError, match="pixel data was read"):
            dc.data.sum().compute(scheduler="sync")


def test_process_workers_equal_threads(plain, process_client, cube):
    for dataset in ("cube/gzip", "frames/contiguous"):
        dc = read_hdf5(plain, dataset=dataset, scan_shape=(12, 10), chunks=(4, 5))
        image = dc.data.sum(axis=(2, 3), dtype="uint64")
        distributed = process_client.compute(image).result()
        assert np.array_equal(distributed, image.compute(scheduler="threads"))
        assert np.array_equal(distributed, cube.sum(axis=(2, 3), dtype="uint64"))


def test_dataset_errors(plain, tmp_path):
    with pytest.raises(
        ValueError,
        match=r"dataset: 'nope' is missing in .*plain.h5; its "
        r"datasets are: /big_endian \(12, 10, 32, 24\) >u2",
    ):
        read_hdf5(plain, dataset="nope")
    with pytest.raises(ValueError, match="'cube' is a group"):
        read_hdf5(plain, dataset="cube")
    with pytest.raises(ValueError, match=r"/image .* is 2D \(32, 24\); expected 3D"):
        read_hdf5(plain, dataset="image")
    with pytest.raises(
        ValueError,
        match=r"scan_shape: /frames/bslz4 .* 3D stack of 120 "
        r"frames \(32, 24\); pass scan_shape=\(Rx, Ry\)",
    ):
        read_hdf5(plain, dataset="frames/bslz4")
    with pytest.raises(
        ValueError,
        match=r"holds 120 whole frames but the scan \(11, 11\) "
        "needs 121",
    ):
        read_hdf5(plain, dataset="frames/bslz4", scan_shape=(11, 11))
    with pytest.raises(ValueError, match="takes 110 of the 120 frames"):
        read_hdf5(plain, dataset="frames/bslz4", scan_shape=(11, 10))
    with pytest.raises(ValueError, match=r"scan_shape: \(10, 12\) differs from the scan"):
        read_hdf5(plain, dataset="cube/gzip", scan_shape=(10, 12))
    with pytest.raises(ValueError, match="5D .* no single length-1 axis"):
        read_hdf5(plain, dataset="five")
    with pytest.raises(TypeError, match="/words .* holds \\|S1"):
        read_hdf5(plain, dataset="words")
    truncated = tmp_path / "cut.h5"
    truncated.write_bytes(plain.read_bytes()[:5000])
    with pytest.raises(ValueError, match="cut.h5 is not a readable HDF5 file; it may be truncated"):
        read_hdf5(truncated, dataset="cube/gzip")


def test_corrupt_chunk_error_names_file_and_block(tmp_path, cube):
    path = write_dataset(
        tmp_path / "gz.h5", "d", cube, chunks=(1, 1, 32, 24), compression="gzip", mode="w"
    )
    with h5py.File(path, "r") as f:
        info = f["d"].id.get_chunk_info_by_coord((5, 7, 0, 0))
    with open(path, "r+b") as f:
        f.seek(info.byte_offset + 2)
        f.write(b"\xff" * 40)
    dc = read_hdf5(path, dataset="d", chunks=(2, 10))
    assert np.array_equal(dc[:4].values, cube[:4])
    with pytest.raises(
        ValueError,
        match=r"gz.h5:/d: the block of scan positions Rx \(4, 5\), "
        r"Ry \(0, 9\) could not be read",
    ):
        dc.data.compute()


# --- legacy EMD / py4DSTEM ------------------------------------------------------------------


def calibration(dc):
    return {k: dc.attrs.get(k) for k in ("r_pixel_size", "r_units", "q_pixel_size", "q_units")}


def test_py4dstem_v13(tmp_path, cube):
    path = tmp_path / "v13.h5"
    write_py4dstem_v13(
        path,
        cube,
        r_pixel_size=2.5,
        r_units="A",
        q_pixel_size=0.1,
        q_units="A^-1",
        extra={"bf": cube[..., 0, 0]},
    )
    assert is_legacy_emd(path) and not is_emd(path)
    assert detect(path).name == "emd-legacy"
    dc = s4.read(path)
    assert dc.attrs["format"] == "emd-legacy"
    assert np.array_equal(dc.values, cube)
    assert calibration(dc) == {
        "r_pixel_size": 2.5,
        "r_units": "A",
        "q_pixel_size": 0.1,
        "q_units": "A^-1",
    }
    meta = dc.attrs["metadata"]
    assert meta["layout"] == "py4DSTEM 0.13.17 (root group '4DSTEM')"
    assert meta["group"] == "/4DSTEM/datacube" and meta["version"] == "0.13.17"
    assert meta["calibration"]["sources"]["r"] == "/4DSTEM/datacube/calibration/R_pixel_size"
    back = read_emd(path)  # read_emd reads legacy files instead of refusing them
    assert np.array_equal(back.values, cube) and calibration(back) == calibration(dc)


@pytest.mark.skipif(not available(), reason=SKIP_REASON)
def test_py4dstem_v13_agrees_with_py4dstem(tmp_path, cube):
    """py4DSTEM 0.14.18 reads our 0.13 layout with the same data and calibration; and a file
    written by py4DSTEM's own 0.13 classes reads here the same."""
    ours = tmp_path / "ours13.h5"
    write_py4dstem_v13(
        ours, cube, r_pixel_size=0.7, r_units="nm", q_pixel_size=1.25, q_units="mrad"
    )
    theirs = tmp_path / "theirs13.h5"
    script = (
        "import sys, h5py, numpy as np\n"
        "from py4DSTEM.io.legacy.legacy13.v13_py4dstem_classes.datacube import DataCube\n"
        "data = np.load(sys.argv[2])\n"
        "dc = DataCube(data=data, name='scan', R_pixel_size=0.7, R_pixel_units='nm',\n"
        "              Q_pixel_size=1.25, Q_pixel_units='mrad')\n"
        "with h5py.File(sys.argv[1], 'w') as f:\n"
        "    g = f.create_group('4DSTEM_experiment')\n"
        "    g.attrs.create('emd_group_type', 'root')\n"
        "    for k, v in zip(('version_major', 'version_minor', 'version_release'),\n"
        "                    ('0', '13', '17')):\n"
        "        g.attrs.create(k, v)\n"
        "    dc.to_h5(g)\n"
        "    dc.calibration.to_h5(g['scan'])\n"
    )
    np.save(tmp_path / "cube.npy", cube)
    subprocess.run(
        [str(PYTHON), "-c", script, str(theirs), str(tmp_path / "cube.npy")],
        check=True,
        capture_output=True,
        timeout=300,
    )
    ref = py4dstem_read([ours, theirs], tmp_path)
    expected = {"r_pixel_size": 0.7, "r_units": "nm", "q_pixel_size": 1.25, "q_units": "mrad"}
    for path, seen in zip((ours, theirs), ref, strict=True):
        dc = s4.read(path)
        assert dc.attrs["format"] == "emd-legacy"
        assert np.array_equal(dc.values, seen["data"]) and np.array_equal(seen["data"], cube)
        assert calibration(dc) == expected
        assert {k: seen[k] for k in expected} == expected


def test_py4dstem_v12_and_v05(tmp_path, cube):
    v12 = tmp_path / "v12.h5"
    write_py4dstem_v12(v12, cube, chunks=(1, 1, 32, 24), compression="gzip")
    dc = s4.read(v12)
    assert np.array_equal(dc.values, cube)
    assert calibration(dc) == {
        "r_pixel_size": 1.0,
        "r_units": "pixels",
        "q_pixel_size": 1.0,
        "q_units": "pixels",
    }
    assert dc.attrs["metadata"]["layout"] == "py4DSTEM 0.12.3 (top group '4DSTEM_experiment')"
    v05 = tmp_path / "v05.h5"
    write_py4dstem_v12(
        v05,
        cube,
        version=(0, 5, 1),
        dataset="datacube",
        name="scan",
        calibration={
            "R_pixel_size": 1.5,
            "R_pixel_units": "nm",
            "Q_pixel_size": 0.02,
            "Q_pixel_units": "A^-1",
        },
    )
    dc = read_legacy_emd(v05)
    assert np.array_equal(dc.values, cube)
    assert calibration(dc) == {
        "r_pixel_size": 1.5,
        "r_units": "nm",
        "q_pixel_size": 0.02,
        "q_units": "A^-1",
    }
    assert dc.attrs["metadata"]["dataset"] == "/4DSTEM_experiment/data/datacubes/scan/datacube"


def test_emd_v02_dim_vectors(tmp_path, cube):
    path = tmp_path / "old.emd"
    dims = [
        (np.array([3.0, 3.5]), "x", "[n_m]"),
        (np.array([0.0, 0.5]), "y", "[n_m]"),
        (np.arange(32) * 0.2 - 3.2, "qx", "[n_m^-1]"),
        (np.arange(24) * 0.2, "qy", "[n_m^-1]"),
    ]
    write_emd_v02(path, cube, dims=dims)
    assert is_legacy_emd(path) and detect(path).name == "emd-legacy"
    dc = s4.read(path)
    assert np.array_equal(dc.values, cube)
    assert dc.attrs["r_pixel_size"] == 0.5 and dc.attrs["r_units"] == "nm"
    assert dc.attrs["q_pixel_size"] == pytest.approx(0.02) and dc.attrs["q_units"] == "A^-1"
    assert dc.Rx.values[0] == 3.0 and dc.Ry.values[0] == 0.0
    assert dc.Qx.values[0] == pytest.approx(-0.32)  # 1/nm -> 1/A
    assert dc.attrs["metadata"]["layout"] == "EMD 0.2"
    pixels = tmp_path / "pixels.emd"
    write_emd_v02(pixels, cube)
    assert calibration(s4.read(pixels))["r_units"] == "pixels"


def test_choosing_among_datacubes(tmp_path, cube):
    path = tmp_path / "two.h5"
    write_emd_v02(path, cube, group="data/first")
    with h5py.File(path, "a") as f:
        g = f.create_group("data/second")
        g.attrs["emd_group_type"] = 1
        g["data"] = cube[::-1]
    with pytest.raises(
        ValueError,
        match=r"several datacubes \['/data/first', '/data/second'\];"
        " pass name=",
    ):
        read_legacy_emd(path)
    assert np.array_equal(read_legacy_emd(path, name="second").values, cube[::-1])
    assert np.array_equal(s4.read(path, name="/data/first").values, cube)
    with pytest.raises(ValueError, match="name: 'third' matches 0"):
        read_legacy_emd(path, name="third")


def test_legacy_errors_and_detection(tmp_path, cube):
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        g = f.create_group("4DSTEM_experiment")
        g.attrs.update(emd_group_type=2, version_major=0, version_minor=12)
        g["data/realslices/bf/data"] = np.zeros((3, 4))
    assert is_legacy_emd(empty)
    with pytest.raises(
        ValueError,
        match=r"py4DSTEM 0.12 .* holds no 4D datacube.*"
        r"/4DSTEM_experiment/data/realslices/bf/data \(3, 4\)",
    ):
        s4.read(empty)
    emd1 = to_h5(s4.from_array(cube[:2, :2]), tmp_path / "new.h5", progress=False)
    assert is_emd(emd1) and not is_legacy_emd(emd1)
    with pytest.raises(ValueError, match="EMD 1.0 file; read it with read_emd"):
        read_legacy_emd(emd1)
    plain = write_dataset(tmp_path / "plain.h5", "x", cube, mode="w")
    assert not is_legacy_emd(plain) and detect(plain) is None
    text = tmp_path / "notes.emd"
    text.write_text("hello")
    assert not is_legacy_emd(text) and not is_legacy_emd(tmp_path / "missing.h5")


def test_legacy_open_reads_nothing(tmp_path, cube, no_reads):
    path = tmp_path / "v13.h5"
    write_py4dstem_v13(path, cube, chunks=(1, 1, 32, 24))
    dc = read_legacy_emd(path, chunks=(3, 10))
    assert dc.data.npartitions == 4
    assert len(cloudpickle.dumps(dict(dc.data.__dask_graph__()))) < 20_000


def test_unusable_legacy_calibration_warns(tmp_path, cube):
    path = tmp_path / "odd.h5"
    write_py4dstem_v13(path, cube, r_pixel_size=2.0, r_units="A", q_pixel_size=0.5, q_units="mrad")
    with h5py.File(path, "a") as f:
        cal = f["4DSTEM/datacube/calibration"]
        del cal["R_pixel_size"]
        cal["R_pixel_size"] = [2.0, 3.0]  # different steps along Rx and Ry
        del cal["Q_pixel_units"]
        cal["Q_pixel_units"] = np.bytes_("furlongs")
        f["4DSTEM/datacube/dim2"].attrs["units"] = "furlongs"
    with pytest.warns(UserWarning) as record:
        dc = read_legacy_emd(path)
    assert (
        "unusable R calibration (/4DSTEM/datacube/calibration/R_pixel_size = [2.0, 3.0]); "
        "using pixels" in str(record[0].message)
    )
    assert calibration(dc) == {
        "r_pixel_size": 1.0,
        "r_units": "pixels",
        "q_pixel_size": 1.0,
        "q_units": "pixels",
    }
    assert "unusable Q calibration (/4DSTEM/datacube/dim2 has unknown units)" in str(
        record[1].message
    )  # unknown units: the dims are tried, whose units are unknown too
    assert np.array_equal(dc.values, cube)
