"""Direct Electron 4D MRC reader: the shared DE files (a raster movie whose frame k is all k,
an ROI random scan with its coordinates CSV and DE-Server's own sum image) against
RosettaSciIO, and movies written by tests/writers_mrc_dm.py (raster, ROI, repeats, frames per
point, random scans with unvisited and revisited positions, big-endian, extended headers) for
values, calibration, laziness, a process cluster and truncated or unsupported files."""

import json
import warnings

import cloudpickle
import numpy as np
import pytest
from writers_mrc_dm import de_info, info_text, write_de_movie, write_de_scan, write_mrc

import stem4d_dask as s4
from stem4d_dask.io import detect, frames
from stem4d_dask.io.frames import FrameStack
from stem4d_dask.io.mrc import is_mrc, read_mrc, scan_visits

DE = "de_mrc"


def _refuse(*args):
    raise AssertionError("pixel data was read while opening")


@pytest.fixture
def no_reads(monkeypatch):
    monkeypatch.setattr(FrameStack, "read", _refuse)
    monkeypatch.setattr(frames, "_map_frames", _refuse)


@pytest.fixture(scope="module")
def cube():
    """A 16x16 scan (Rx != Ry in calibration) of 64x48 uint16 frames, each position labelled."""
    rng = np.random.default_rng(7)
    out = rng.integers(0, 2**16, size=(16, 12, 64, 48), dtype=np.uint16)
    out[:, :, 0, 0] = np.arange(16 * 12).reshape(16, 12)
    return out


def _rsciio(path, **kw):
    mrc = pytest.importorskip("rsciio.mrc")
    return mrc.file_reader(str(path), lazy=True, **kw)[0]


# --- the shared DE files ---------------------------------------------------------------------


def test_shared_raster_movie(shared_data):
    path = shared_data / DE / "20241021_00405_movie.mrc"
    assert is_mrc(path) and detect(path).name == "mrc"
    dc = s4.read(path)
    assert dc.dims == ("Rx", "Ry", "Qx", "Qy") and dc.shape == (4, 8, 4, 8)
    assert dc.dtype == np.uint16 and dc.attrs["format"] == "mrc"
    values = dc.values
    # DE's simulator writes frame k as all k: position (rx, ry) is frame rx * 8 + ry
    expected = np.arange(32, dtype=np.uint16).reshape(4, 8)
    np.testing.assert_array_equal(values, np.broadcast_to(expected[:, :, None, None], values.shape))
    ref = _rsciio(path)
    np.testing.assert_array_equal(np.asarray(ref["data"]), values)  # same (y, x, ky, kx)
    # Specimen Pixel Size X = 0.1 nm (fast, Ry), Y = 0.2 nm (slow, Rx)
    np.testing.assert_allclose(dc.Ry.values, np.arange(8) * 0.1)
    np.testing.assert_allclose(dc.Rx.values, np.arange(4) * 0.2)
    assert dc.Rx.attrs["units"] == "nm" and "r_pixel_size" not in dc.attrs
    assert dc.attrs["q_units"] == "pixels" and dc.attrs["energy"] == 300000.0
    md = dc.attrs["metadata"]
    assert md["info_file"] == "20241021_00405_info.txt"
    assert md["info"]["Camera Model"] == "DESim" and md["info"]["Scan - Size X"] == 8
    assert md["header"]["mode"] == 6 and md["scan"]["repeats"] == 1
    assert json.loads(json.dumps(md)) == md
    # the info file's Diffraction Pixel Size (0.1) in the units the caller names
    q = read_mrc(path, diffraction_units="1/nm")
    assert q.attrs["q_units"] == "A^-1" and q.attrs["q_pixel_size"] == pytest.approx(0.01)
    assert read_mrc(path, diffraction_units="mrad").attrs["q_pixel_size"] == pytest.approx(0.1)


def test_shared_raster_movie_with_scan_shape(shared_data):
    path = shared_data / DE / "20241021_00405_movie.mrc"
    dc = s4.read(path, scan_shape=(2, 16))
    np.testing.assert_array_equal(dc.values[:, :, 0, 0], np.arange(32).reshape(2, 16))
    assert dc.attrs["r_units"] == "pixels"  # scan calibration only for the info file's scan
    ref = _rsciio(path, navigation_shape=(16, 2))
    np.testing.assert_array_equal(np.asarray(ref["data"]), dc.values)


def test_every_shared_mrc_opens(shared_data):
    files = sorted((shared_data / DE).glob("*.mrc"))
    assert len(files) == 4
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            dc = s4.read(path)
        assert dc.attrs["format"] == "mrc" and dc.dtype.isnative
    # the single images: DE's sum of the raster movie (frame k is all k), and of the ROI scan
    dc = s4.read(shared_data / DE / "20241021_00405_final.mrc")
    assert dc.shape == (1, 1, 4, 8) and dc.dtype == np.float32
    np.testing.assert_array_equal(dc.values[0, 0], np.full((4, 8), 496.0))  # sum of 0..31
    dc = s4.read(shared_data / DE / "ROI_Random_Scan_Sum.mrc")
    assert dc.shape == (1, 1, 29, 12) and "info" not in dc.attrs["metadata"]
    raw = np.fromfile(shared_data / DE / "ROI_Random_Scan_Sum.mrc", "<f4", offset=1024)
    np.testing.assert_array_equal(dc.values.ravel(), raw)


def test_shared_random_roi_scan(shared_data):
    folder = shared_data / DE
    path = folder / "ROI_Random_Scan_movie.mrc"
    dc = s4.read(path, chunks=(7, 5))  # chunks gather frames from all over the file
    assert dc.shape == (29, 12, 16, 16) and dc.dtype == np.uint16
    assert dc.data.npartitions == 5 * 3
    values = dc.values
    ref = _rsciio(
        path,
        metadata_file=str(folder / "ROI_Random_Scan_info.txt"),
        scan_file=str(folder / "ROI_Random_Scan_scan_coordinates.csv"),
    )
    np.testing.assert_array_equal(np.asarray(ref["data"]), values)
    # DE-Server's own sum image of the same scan (float32, 12 x 29)
    total = np.fromfile(folder / "ROI_Random_Scan_Sum.mrc", dtype="<f4", offset=1024)
    diff = np.abs(values.sum(axis=(2, 3), dtype=np.float64) - total.reshape(29, 12))
    assert diff.max() < 15 and diff.mean() < 5  # acquisition order would give ~18 on average
    # the ROI (offset 3, 3 in the 16 x 32 scan) keeps its place; no scan step is known
    np.testing.assert_array_equal(dc.Rx.values, np.arange(3, 32))
    np.testing.assert_array_equal(dc.Ry.values, np.arange(3, 15))
    md = dc.attrs["metadata"]["scan_coordinates"]
    assert md == {
        "file": "ROI_Random_Scan_scan_coordinates.csv",
        "type": "Random",
        "frames": 348,
        "positions": 348,
        "visited": 348,
        "most_visits": 1,
        "repeat": 0,
        "unvisited_read_as": 0,
    }
    np.testing.assert_array_equal(scan_visits(path).values, np.ones((29, 12)))


# --- written raster movies -------------------------------------------------------------------


def test_written_raster_movie(tmp_path, cube):
    info = {
        **de_info(scan=(12, 16), frame=(64, 48), scan_step=(0.3, 0.5), voltage=200000),
        "Note": "a = b",
    }
    path = write_de_movie(tmp_path, "20250101_00001", cube, info)
    dc = s4.read(path)
    assert dc.shape == cube.shape and dc.dtype == np.uint16
    np.testing.assert_array_equal(dc.values, cube)
    np.testing.assert_allclose(dc.Rx.values, np.arange(16) * 0.5)
    np.testing.assert_allclose(dc.Ry.values, np.arange(12) * 0.3)
    assert dc.attrs["energy"] == 200000.0 and dc.attrs["metadata"]["info"]["Note"] == "a = b"
    ref = _rsciio(path)  # RosettaSciIO finds the info file by the DE name
    np.testing.assert_array_equal(np.asarray(ref["data"]), cube)


def test_roi_raster_scan_keeps_its_place(tmp_path, cube):
    path = write_de_movie(
        tmp_path,
        "roi",
        cube,
        de_info(scan=(40, 30), roi=(5, 2, 12, 16), frame=(64, 48), scan_step=(0.25, 0.25)),
    )
    dc = s4.read(path)
    np.testing.assert_array_equal(dc.values, cube)
    np.testing.assert_allclose(dc.Rx.values, (2 + np.arange(16)) * 0.25)
    np.testing.assert_allclose(dc.Ry.values, (5 + np.arange(12)) * 0.25)
    assert dc.attrs["r_pixel_size"] == 0.25


def test_opening_reads_no_pixels_and_graph_is_small(tmp_path, cube, no_reads):
    path = write_de_scan(tmp_path, "lazy", cube)
    dc = s4.read(path, chunks=(4, 12))
    assert dc.data.npartitions == 4  # one task per chunk
    graph = dict(dc.data.__dask_graph__())
    assert len(graph) == 4
    assert len(cloudpickle.dumps(graph)) < 8000


def test_process_cluster_equals_threads(tmp_path, cube, process_client):
    path = write_de_scan(tmp_path, "proc", cube, scan_step=(0.1, 0.1))
    dc = s4.read(path, chunks=(3, 12))
    total = dc.data.sum(axis=(2, 3), dtype=np.uint64)
    np.testing.assert_array_equal(process_client.compute(total).result(), total.compute())
    np.testing.assert_array_equal(total.compute(), cube.sum(axis=(2, 3), dtype=np.uint64))


def test_repeats_and_frames_per_point(tmp_path):
    rng = np.random.default_rng(3)
    # 2 repeats of a 3 x 5 (Y x X) scan with 2 frames per point, in acquisition order
    frames = rng.integers(0, 255, size=(2, 3, 5, 2, 4, 6), dtype=np.uint8)
    path = write_de_movie(
        tmp_path,
        "rep",
        frames.reshape(-1, 4, 6),
        de_info(scan=(5, 3), frame=(4, 6), repeats=2, per_point=2),
    )
    with pytest.warns(UserWarning) as record:
        dc = s4.read(path)
    messages = " ".join(str(w.message) for w in record)
    assert "2 repeats of the scan" in messages and "2 movie frames per scan point" in messages
    assert dc.dtype == np.uint8  # DE counted movies: mode 0 is uint8
    np.testing.assert_array_equal(dc.values, frames[0, :, :, 0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        other = read_mrc(path, repeat=1, point_frame=1)
    np.testing.assert_array_equal(other.values, frames[1, :, :, 1])
    with pytest.raises(ValueError, match=r"repeat must be an integer in \[0, 2\)"):
        read_mrc(path, repeat=2, point_frame=0)
    # a movie summing 2 camera frames into one holds 1 frame per point
    path = write_de_movie(
        tmp_path,
        "sum",
        frames[0, :, :, 0],
        de_info(scan=(5, 3), frame=(4, 6), per_point=2, sum_count=2),
    )
    np.testing.assert_array_equal(read_mrc(path).values, frames[0, :, :, 0])


def test_big_endian_and_extended_header(tmp_path, cube):
    path = write_de_movie(
        tmp_path,
        "be",
        cube[:2].astype(np.int16),
        de_info(scan=(12, 2), frame=(64, 48)),
        big_endian=True,
        next_bytes=3072,
    )
    dc = s4.read(path)
    # the file's byte order is kept (read in place); values are the same
    assert dc.dtype == np.dtype(">i2") and dc.stem4d.bin_Q(2).dtype.isnative
    assert dc.attrs["metadata"]["header"]["next"] == 3072
    np.testing.assert_array_equal(dc.values, cube[:2].astype(np.int16))


@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32", "uint16", "float16"])
def test_modes(tmp_path, dtype):
    frames = (np.arange(6 * 5 * 7) % 200).reshape(6, 5, 7).astype(dtype)
    dc = s4.read(write_mrc(tmp_path / "m.mrc", frames))
    assert dc.shape == (6, 1, 5, 7) and dc.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(dc.values[:, 0], frames)
    np.testing.assert_array_equal(
        read_mrc(tmp_path / "m.mrc", scan_shape=(2, 3)).values, frames.reshape(2, 3, 5, 7)
    )


# --- random scans ----------------------------------------------------------------------------


def _random_scan(tmp_path, name="rnd"):
    """A 5 x 7 (Y x X) random scan: position (y=1, x=2) never visited, (y=3, x=4) twice."""
    rng = np.random.default_rng(11)
    xy = [(x, y) for y in range(5) for x in range(7) if (x, y) != (2, 1)] + [(4, 3)]
    xy = np.array(xy)[rng.permutation(len(xy))]
    frames = rng.integers(1, 2**16, size=(len(xy), 6, 8), dtype=np.uint16)
    frames[:, 0, 0] = np.arange(len(xy))  # frame number in the corner
    path = write_de_movie(
        tmp_path, name, frames, de_info(scan=(7, 5), frame=(6, 8), kind="Random"), positions=xy
    )
    return path, xy, frames


def test_random_scan_unvisited_and_revisited(tmp_path):
    path, xy, frames = _random_scan(tmp_path)
    with pytest.warns(UserWarning, match="1 of the 35 scan positions have no frame"):
        with pytest.warns(UserWarning, match="2 visits of some scan positions"):
            dc = s4.read(path, chunks=(2, 3))
    values = dc.values
    twice = np.flatnonzero((xy == (4, 3)).all(axis=1))
    for k, (x, y) in enumerate(xy):
        if k != twice[1]:
            np.testing.assert_array_equal(values[y, x], frames[k])  # (Rx, Ry) = (y, x)
    np.testing.assert_array_equal(values[1, 2], 0)  # never visited: zeros
    np.testing.assert_array_equal(values[3, 4], frames[twice[0]])  # first visit
    with pytest.warns(UserWarning, match="34 of the 35"):
        second = read_mrc(path, repeat=1)
    np.testing.assert_array_equal(second.values[3, 4], frames[twice[1]])
    assert second.values.sum(axis=(2, 3)).astype(bool).sum() == 1
    visits = scan_visits(path).values
    assert visits[1, 2] == 0 and visits[3, 4] == 2 and visits.sum() == len(xy)
    # RosettaSciIO stacks the visits on a repeat axis (y, x, visit, ky, kx)
    ref = np.asarray(
        _rsciio(
            path,
            metadata_file=str(tmp_path / "rnd_info.txt"),
            scan_file=str(tmp_path / "rnd_scan_coordinates.csv"),
        )["data"]
    )
    assert ref.shape == (5, 7, 2, 6, 8)
    np.testing.assert_array_equal(ref[:, :, 0], values)
    np.testing.assert_array_equal(ref[:, :, 1], second.values)


def test_random_scan_lazy_small_graph_and_processes(tmp_path, process_client, monkeypatch):
    monkeypatch.setattr(frames, "_map_frames", _refuse)
    path, _, _ = _random_scan(tmp_path, "lazy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dc = read_mrc(path, chunks=(2, 7))
    graph = dict(dc.data.__dask_graph__())
    assert len(graph) == dc.data.npartitions == 3
    assert len(cloudpickle.dumps(graph)) < 6000  # each task holds its own frame numbers
    monkeypatch.undo()
    total = dc.data.sum(axis=(2, 3), dtype=np.uint64)
    np.testing.assert_array_equal(process_client.compute(total).result(), total.compute())


def test_random_scan_errors(tmp_path):
    path, xy, frames = _random_scan(tmp_path, "err")
    (tmp_path / "err_scan_coordinates.csv").unlink()
    with pytest.raises(ValueError, match="'Random' scan needs its scan coordinates file"):
        s4.read(path)
    with warnings.catch_warnings():  # or read the frames in acquisition order
        warnings.simplefilter("ignore")
        assert s4.read(path, scan_shape=(35, 1)).shape == (35, 1, 6, 8)
    bad = xy.copy()
    bad[5] = (7, 0)
    write_de_movie(tmp_path, "err", frames, positions=bad)
    with pytest.raises(ValueError, match="frame 5 is at x=7, y=0, outside the 7 x 5"):
        s4.read(path)
    write_de_movie(tmp_path, "err", frames[:30], positions=xy)
    with pytest.raises(
        ValueError,
        match=r"holds 30 whole frames but err_scan_coordinates.csv "
        r"lists 35; .*scan_shape=\(30, 1\)",
    ):
        s4.read(path)


# --- truncated and unsupported files ---------------------------------------------------------


def test_truncated_movie_says_how_many_frames(tmp_path, cube):
    frame = 64 * 48 * 2
    path = write_de_movie(
        tmp_path, "cut", cube, de_info(scan=(12, 16), frame=(64, 48)), truncate=2 * frame + 100
    )
    with pytest.raises(
        ValueError,
        match=r"holds 189 whole frames but the scan \(16, 12\) "
        r"needs 192.*scan_shape=\(rows, 12\) for 15 whole",
    ):
        s4.read(path)
    dc = s4.read(path, scan_shape=(15, 12))
    np.testing.assert_array_equal(dc.values, cube[:15])
    (tmp_path / "cut_info.txt").unlink()  # no scan: the frames it has, with a warning
    with pytest.warns(UserWarning, match="holds 189 whole frames but its header says NZ=192"):
        assert s4.read(path).shape == (189, 1, 64, 48)


def test_more_frames_than_the_scan_warns(tmp_path, cube):
    path = write_de_movie(tmp_path, "more", cube, de_info(scan=(12, 15), frame=(64, 48)))
    with pytest.warns(UserWarning, match="12 more than"):
        dc = s4.read(path)
    np.testing.assert_array_equal(dc.values, cube[:15])


def test_unsupported_and_not_mrc(tmp_path):
    path = write_mrc(tmp_path / "c.mrc", np.zeros((2, 4, 4), np.float32))
    raw = bytearray(path.read_bytes())
    raw[12:16] = np.int32(4).tobytes()  # complex float32
    path.write_bytes(bytes(raw))
    with pytest.raises(TypeError, match="complex float32 pixels"):
        s4.read(path)
    raw[12:16] = np.int32(101).tobytes()  # 4-bit packed
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="MRC mode 101"):
        s4.read(path)
    raw[208:212] = b"XXXX"
    path.write_bytes(bytes(raw))
    assert not is_mrc(path) and detect(path) is None
    with pytest.raises(ValueError, match="not an MRC file"):
        read_mrc(path)
    with pytest.raises(ValueError, match="diffraction_units must be one of"):
        read_mrc(
            write_mrc(tmp_path / "d.mrc", np.zeros((2, 4, 4), np.uint8)), diffraction_units="nm"
        )
    info = tmp_path / "x_info.txt"
    info.write_text(info_text(de_info(scan=(2, 1), frame=(4, 4), q_step=(-1, -1))))
    with pytest.raises(ValueError, match="no positive Diffraction Pixel Size"):
        read_mrc(
            write_mrc(tmp_path / "x_movie.mrc", np.zeros((2, 4, 4), np.uint8)),
            diffraction_units="mrad",
        )
