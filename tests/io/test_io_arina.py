"""DECTRIS ARINA / EIGER NeXus reader: the shared test file against RosettaSciIO, our own
multi-file acquisitions (values, laziness, graph size, process workers), bad files."""

import json
import warnings

import cloudpickle
import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from writers_hdf5 import corrupt_chunk, store_unfiltered, truncate, write_arina

import stem4d_dask as s4
from stem4d_dask.io import detect
from stem4d_dask.io.arina import ArinaBlockLoader, is_arina, read_arina, read_arina_masks
from stem4d_dask.values import value_range

SCAN = (16, 16)
FRAME = (64, 48)  # rows != cols, so a transpose would show


@pytest.fixture(scope="module")
def cube():
    rng = np.random.default_rng(11)
    data = rng.poisson(3.0, size=SCAN + FRAME).astype(np.uint16)
    data[3, 5, 7, 9] = 4095  # the 12-bit maximum
    return data


@pytest.fixture(scope="module")
def acquisition(tmp_path_factory, cube):
    """A 16 x 16 scan in three data files (100 + 100 + 56 frames) with a side-car."""
    folder = tmp_path_factory.mktemp("arina")
    return write_arina(folder, cube, frames_per_file=100, bit_depth=12)


@pytest.fixture
def no_reads(monkeypatch):
    def refuse(self, *args):
        raise AssertionError("pixel data was read while opening")

    monkeypatch.setattr(ArinaBlockLoader, "__call__", refuse)


# --- the shared ARINA file ------------------------------------------------------------------


def shared_master(shared_data):
    path = shared_data / "arina" / "test_00_master.h5"
    if not path.is_file():
        pytest.skip(f"{path} not in the shared data folder")
    return path


def test_shared_file_against_rosettasciio(shared_data):
    from rsciio.arina import file_reader

    path = shared_master(shared_data)
    dc = read_arina(path)  # the side-car test_00.h5 gives the scan: no warning
    assert dc.shape == (4, 4, 192, 192) and dc.dtype == np.uint32  # RSciIO: uint16
    with h5py.File(path.with_name("test_00_data_000001.h5"), "r") as f:
        stored = f["entry/data/data"][()]
    values = dc.values
    assert np.array_equal(values.reshape(16, 192, 192), stored)
    ref = file_reader(str(path))[0]
    assert ref["data"].shape == (4, 4, 192, 192) and ref["data"].dtype == np.uint16
    assert np.array_equal(values, ref["data"])  # the file is all zeros: no wrap to see
    assert int(values.sum()) == 0
    # RSciIO: Pixel Size (nm) x 10 in A; ours keeps nm
    assert ref["axes"][0]["units"] == "A" and dc.attrs["r_units"] == "nm"
    assert ref["axes"][0]["scale"] == pytest.approx(dc.attrs["r_pixel_size"] * 10)
    assert dc.attrs["r_pixel_size"] == pytest.approx(0.13915206)
    assert dc.attrs["energy"] == 300000.0
    assert dc.attrs["q_units"] == "mrad"
    assert dc.attrs["q_pixel_size"] == pytest.approx(1e-4 / 0.115 * 1e3)  # 0.8696 mrad
    assert "value_range" not in dc.attrs  # 32-bit counter in uint32: the dtype's own range
    assert value_range(dc) == (0, 2**32 - 1)
    meta = dc.attrs["metadata"]
    json.dumps(meta)
    assert meta["detector"]["bit_depth_image"] == 32
    assert meta["detector"]["saturation_value"] == 8352
    assert meta["detector"]["detectorSpecific"]["ntrigger"] == 16
    assert meta["detector"]["count_time"] == {"value": pytest.approx(9.95e-5), "units": "s"}
    assert meta["stem_metadata"]["NumPixelsX"] == 4 and meta["stem_metadata"][
        "Camera Length"
    ] == pytest.approx(0.115)
    assert meta["scan_shape_source"] == "test_00.h5 NumPixelsY x NumPixelsX"
    assert meta["decoder"].startswith("bslz4")


def test_shared_file_detection_and_masks(shared_data):
    path = shared_master(shared_data)
    data_file = path.with_name("test_00_data_000001.h5")
    assert is_arina(path) and is_arina(data_file)
    assert not is_arina(path.with_name("test_00.h5"))  # the side-car
    assert detect(path).name == "arina" and detect(data_file).name == "arina"
    dc = s4.read(data_file)  # a data file finds its master: same datacube
    assert dc.attrs["format"] == "arina" and dc.shape == (4, 4, 192, 192)
    assert dc.attrs["metadata"]["master"] == "test_00_master.h5"
    masks = read_arina_masks(path)
    assert masks.pixel_mask.dtype == np.uint32 and masks.flatfield.dtype == np.float32
    assert int(masks.pixel_mask.sum()) == 0 and float(masks.flatfield.mean()) == 1.0
    assert np.array_equal(masks.Qx, dc.Qx) and masks.Qy.attrs["units"] == "mrad"


# --- our own acquisitions -------------------------------------------------------------------


def test_multi_file_values_and_calibration(acquisition, cube):
    dc = s4.read(acquisition)
    assert dc.attrs["format"] == "arina"
    assert dc.shape == SCAN + FRAME and dc.dtype == np.uint16
    assert np.array_equal(dc.values, cube)
    assert dc.attrs["r_pixel_size"] == 0.25 and dc.attrs["r_units"] == "nm"
    assert dc.attrs["q_pixel_size"] == pytest.approx(0.75) and dc.attrs["q_units"] == "mrad"
    assert dc.attrs["energy"] == 200e3
    assert value_range(dc) == (0, 4095)  # bit_depth_image 12 in uint16
    meta = dc.attrs["metadata"]
    assert meta["data_files"] == [f"scan_00_data_00000{i}.h5" for i in (1, 2, 3)]
    assert meta["frames"] == meta["frames_expected"] == 256


@pytest.mark.parametrize("chunks", [(3, 5), (6, 16), (1, 16), {"Rx": 16}])
def test_chunks_across_files(acquisition, cube, chunks):
    dc = read_arina(acquisition, chunks=chunks)  # (6, 16): rows 6..11 span files 1 and 2
    assert np.array_equal(dc.values, cube)
    assert np.array_equal(dc[5:9, 2:11].values, cube[5:9, 2:11])


def test_open_reads_nothing_and_graph_is_small(acquisition, no_reads, monkeypatch):
    dc = read_arina(acquisition, chunks=(2, 16))
    graph = dict(dc.data.__dask_graph__())
    assert len(graph) == dc.data.npartitions == 8  # one task per chunk
    payload = cloudpickle.dumps(graph)
    assert len(payload) < 20_000, len(payload)  # paths, offsets, sizes: 4 B/frame
    (task,) = [v for k, v in graph.items() if k[1:] == (3, 0, 0, 0)]  # rows 6-7: frames 96-127
    assert [(run.count, run.first) for run in task[0].loader.runs] == [(4, 96), (28, 0)]
    with pytest.raises(AssertionError, match="pixel data was read"):
        dc.data.sum().compute(scheduler="sync")


def test_masks_are_lazy(acquisition, monkeypatch):
    from stem4d_dask.io import arina

    def refuse(self, slices):
        raise AssertionError("mask read")

    monkeypatch.setattr(arina._MaskLoader, "__call__", refuse)
    masks = read_arina_masks(acquisition)
    assert masks.pixel_mask.shape == FRAME
    monkeypatch.undo()
    mask = masks.pixel_mask.values
    assert mask[1, 2] == 2 and mask[63, 0] == 8 and np.count_nonzero(mask) == 2
    assert masks.flatfield.values[0, 0] == 1.0
    assert np.array_equal(masks.Qy, read_arina(acquisition).Qy)


def test_process_workers_equal_threads(acquisition, process_client, cube):
    dc = read_arina(acquisition, chunks=(4, 16))
    image = dc.data.sum(axis=(2, 3), dtype="uint64")
    threaded = image.compute(scheduler="threads")
    distributed = process_client.compute(image).result()
    assert np.array_equal(threaded, distributed)
    assert np.array_equal(threaded, cube.sum(axis=(2, 3), dtype="uint64"))


def test_uint32_kept_where_rosettasciio_wraps(tmp_path):
    from rsciio.arina import file_reader

    data = np.arange(4 * 6 * 8 * 8, dtype=np.uint32).reshape(4, 6, 8, 8) * 1000  # > 65535
    master = write_arina(tmp_path, data)  # side-car: NumPixelsX = 6 (fast), NumPixelsY = 4
    dc = read_arina(master)
    assert dc.dtype == np.uint32 and np.array_equal(dc.values, data)
    # RSciIO's navigation_shape is documented as (x, y), but it reshapes frames in C order:
    # the same scan comes out only with (slow, fast) = (Rx, Ry) = (NumPixelsY, NumPixelsX)
    ref = file_reader(str(master), navigation_shape=(4, 6))[0]["data"]
    assert ref.dtype == np.uint16
    assert np.array_equal(ref, data.astype(np.uint16)) and not np.array_equal(ref, data)


@pytest.mark.parametrize("compression", ["gzip", None])
def test_other_filters_go_through_h5py(tmp_path, cube, compression):
    master = write_arina(tmp_path, cube, frames_per_file=100, compression=compression)
    dc = read_arina(master, chunks=(5, 16))
    assert dc.attrs["metadata"]["decoder"] == "h5py"
    assert np.array_equal(dc.values, cube)


def test_unfiltered_chunk(tmp_path, cube):
    master = write_arina(tmp_path, cube)
    store_unfiltered(tmp_path / "scan_00_data_000001.h5", 37)
    assert np.array_equal(read_arina(master).values, cube)


def test_scan_shape_without_sidecar(tmp_path, cube):
    master = write_arina(tmp_path, cube, sidecar=False)
    with pytest.warns(UserWarning, match=r"square scan \(16, 16\).*scan_shape="):
        dc = read_arina(master)
    assert np.array_equal(dc.values, cube)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dc = read_arina(master, scan_shape=(32, 8))
    assert np.array_equal(dc.values, cube.reshape(32, 8, *FRAME))
    odd = write_arina(tmp_path, cube.reshape(256, *FRAME)[:250], prefix="odd", sidecar=False)
    with pytest.warns(UserWarning, match=r"\(250, 1\)"):
        assert read_arina(odd).shape == (250, 1, *FRAME)
    head = read_arina(master, scan_shape=(10, 16))  # fewer frames than stored: the first ones
    assert np.array_equal(head.values, cube[:10])


def test_data_file_without_master(tmp_path, cube):
    master = write_arina(tmp_path, cube, frames_per_file=100)
    master.unlink()
    with pytest.warns(UserWarning, match="no master file"):
        dc = read_arina(tmp_path / "scan_00_data_000002.h5", scan_shape=(10, 10))
    assert np.array_equal(dc.values.reshape(100, *FRAME), cube.reshape(256, *FRAME)[100:200])


# --- bad files ------------------------------------------------------------------------------


def test_sidecar_scan_larger_than_files(tmp_path, cube):
    master = write_arina(tmp_path, cube, scan_xy=(16, 17))  # 272 positions, 256 frames
    with pytest.raises(
        ValueError,
        match=r"holds 256 whole frames but the scan \(17, 16\) "
        r"needs 272.*scan_shape=\(rows, 16\) for 16 whole rows",
    ):
        read_arina(master)
    with pytest.raises(ValueError, match="needs 289"):
        read_arina(master, scan_shape=(17, 17))


def test_sidecar_scan_smaller_than_files(tmp_path, cube):
    master = write_arina(tmp_path, cube, extra_frames=cube[0, :3])  # 259 frames, 16 x 16 scan
    with pytest.raises(
        ValueError,
        match=r"16 x 16 \(X x Y\) scan, 256 frames, but the data "
        r"files hold 259; pass scan_shape=",
    ):
        read_arina(master)
    assert np.array_equal(read_arina(master, scan_shape=(16, 16)).values, cube)


def test_aborted_acquisition(tmp_path, cube):
    master = write_arina(tmp_path, cube, frames_per_file=100, written=20)  # 220 frames stored
    with pytest.raises(ValueError, match=r"holds 220 whole frames.*frames from 220 on have no"):
        read_arina(master)
    dc = read_arina(master, scan_shape=(13, 16))
    assert np.array_equal(dc.values, cube[:13])


def test_missing_and_truncated_data_files(tmp_path, cube):
    master = write_arina(tmp_path, cube, frames_per_file=100)
    third = tmp_path / "scan_00_data_000003.h5"
    truncate(third, third.stat().st_size // 2)
    with pytest.raises(
        ValueError, match="scan_00_data_000003.h5 is not a readable HDF5 file; it may be truncated"
    ):
        read_arina(master)
    third.unlink()
    with pytest.raises(FileNotFoundError, match="scan_00_data_000003.h5, which does not exist"):
        read_arina(master)


def test_image_numbers_must_stack(tmp_path, cube):
    master = write_arina(tmp_path, cube, frames_per_file=100)
    with h5py.File(tmp_path / "scan_00_data_000002.h5", "r+") as f:
        f["entry/data/data"].attrs["image_nr_low"] = np.uint64(111)
    with pytest.raises(ValueError, match="images 111..200.*image 101 comes next"):
        read_arina(master)


@pytest.mark.parametrize("how", ["sizes", "lz4", "header"])
def test_corrupt_chunk_names_file_and_position(tmp_path, cube, how):
    master = write_arina(tmp_path, cube, frames_per_file=100)
    corrupt_chunk(tmp_path / "scan_00_data_000002.h5", 37, how)  # frame 137 = (8, 9)
    dc = read_arina(master, chunks=(4, 16))  # opening reads no chunk
    assert np.array_equal(dc[:8].values, cube[:8])  # other chunks still read
    with pytest.raises(
        ValueError,
        match=r"scan_00_data_000002.h5: frame 37 \(scan position "
        r"\(8, 9\)\) is corrupt",
    ):
        dc.data.compute()


def test_not_arina(tmp_path):
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["entry/data/x"] = np.zeros(3)
    assert not is_arina(plain) and not is_arina(tmp_path / "missing_master.h5")
    text = tmp_path / "x_master.h5"
    text.write_text("not hdf5")
    assert not is_arina(text)
    with pytest.raises(ValueError, match="not an HDF5 file"):
        read_arina(text)


def test_renamed_files(tmp_path, cube):
    master = write_arina(tmp_path, cube, sidecar=False)
    renamed = master.rename(tmp_path / "experiment.h5")  # a master under another name
    with pytest.warns(UserWarning, match=r"square scan \(16, 16\)"):
        assert np.array_equal(read_arina(renamed).values, cube)
    lone = (tmp_path / "scan_00_data_000001.h5").rename(tmp_path / "frames.h5")
    with pytest.warns(UserWarning, match="no master file beside"):
        dc = read_arina(lone, scan_shape=(16, 16))
    assert np.array_equal(dc.values, cube) and dc.attrs["metadata"]["master"] is None
    empty = tmp_path / "empty_master.h5"
    with h5py.File(empty, "w") as f:
        f.create_group("entry/data")
    with pytest.raises(ValueError, match="links no data files"):
        read_arina(empty)
