"""NanoMegas .blo reader: the shared test files against RosettaSciIO and their header, files
written by tests/writers_frames.py (v1.2 8-bit, v1.3 16-bit), laziness, a process cluster,
corrupt records and truncated files."""

import datetime
import json

import cloudpickle
import numpy as np
import pytest
from writers_frames import blo_cube, write_blo

import stem4d_dask as s4
from stem4d_dask.io import detect
from stem4d_dask.io.blo import is_blo, read_blo, read_blo_vbf

SCAN = (16, 12)  # Rx = NY (slow) != Ry = NX (fast)


@pytest.fixture(scope="module")
def cube8():
    return blo_cube(SCAN, dp=64, dtype=np.uint8)


@pytest.fixture(scope="module")
def cube16():
    return blo_cube(SCAN, dp=64, dtype=np.uint16, seed=1)


def _rsciio(path):
    pytest.importorskip("skimage", reason="rsciio.blockfile needs scikit-image")
    from rsciio.blockfile import file_reader

    return file_reader(str(path), lazy=True)[0]


@pytest.mark.parametrize(
    "name, shape, step_nm, vbf",
    [
        ("test1", (3, 2, 144, 144), 12.8, [[169, 173], [173, 174], [170, 173]]),
        ("test2", (2, 3, 5, 5), 64.0, [[18, 21, 21], [19, 15, 21]]),
    ],
)
def test_shared_files_match_rosettasciio(shared_data, name, shape, step_nm, vbf):
    path = shared_data / "blockfile" / f"{name}.blo"
    dc = s4.read(path)
    assert dc.attrs["format"] == "blo" and dc.shape == shape and dc.dtype == np.uint8
    ref = _rsciio(path)
    np.testing.assert_array_equal(dc.values, np.asarray(ref["data"]))  # (NY, NX), no flips
    assert [a["name"] for a in ref["axes"]] == ["y", "x", "dy", "dx"]
    assert ref["axes"][0]["scale"] == ref["axes"][1]["scale"] == step_nm
    assert dc.attrs["r_units"] == "A" and dc.attrs["r_pixel_size"] == step_nm * 10
    assert dc.attrs["q_units"] == "pixels"
    assert dc.attrs["energy"] == 200000.0  # Beam_energy 200000 V
    md = dc.attrs["metadata"]
    for key, value in ref["original_metadata"]["blockfile_header"].items():
        if key == "ID":
            assert md[key] == value.decode()
        else:
            assert md[key] == value, key
    assert md["version"] == "1.2" and md["bit_depth"] == 8 and md["scan_rotation_deg"] == 25.0
    assert md["note_items"]["Camera gamma"] == "on"
    assert json.loads(json.dumps(md)) == md
    when = ref["metadata"]["General"]
    assert datetime.datetime.fromisoformat(
        md["acquisition_time_iso"]
    ) == datetime.datetime.fromisoformat(f"{when['date']}T{when['time']}")
    image = read_blo_vbf(path)
    assert image.dims == ("Rx", "Ry") and image.dtype == np.uint8
    np.testing.assert_array_equal(image.values, vbf)
    np.testing.assert_array_equal(image.Ry.values, dc.Ry.values)
    if name == "test2":  # synthetic: the stored image is the truncated mean of each frame
        np.testing.assert_array_equal(image.values, dc.values.mean(axis=(2, 3)).astype(np.uint8))


def test_v12_8bit_round_trip(tmp_path, cube8):
    path = write_blo(tmp_path / "a.blo", cube8, sx=1.5, beam_energy=300000)
    dc = s4.read(path)
    assert dc.shape == (16, 12, 64, 64) and dc.dtype == np.uint8
    np.testing.assert_array_equal(dc.values, cube8)
    assert dc.attrs["r_pixel_size"] == 15.0 and dc.attrs["energy"] == 300000.0
    np.testing.assert_array_equal(
        read_blo_vbf(path).values, cube8.mean(axis=(2, 3)).astype(np.uint8)
    )
    np.testing.assert_array_equal(np.asarray(_rsciio(path)["data"]), cube8)


def test_v13_16bit_round_trip(tmp_path, cube16):
    path = write_blo(tmp_path / "b.blo", cube16)
    dc = s4.read(path)
    assert dc.dtype == np.uint16 and dc.shape == (16, 12, 64, 64)
    assert dc.attrs["metadata"]["version"] == "1.3" and dc.attrs["metadata"]["bit_depth"] == 16
    np.testing.assert_array_equal(dc.values, cube16)
    assert cube16.max() > 255  # values an 8-bit reading cannot hold
    with pytest.warns(UserWarning, match="unrecognized header signature"):
        ref = _rsciio(path)  # RosettaSciIO knows only 0x0102 and reads 8 bits
    assert ref["data"].dtype == np.uint8


def test_non_square_scan_steps_and_kv_energy(tmp_path, cube8):
    path = write_blo(tmp_path / "c.blo", cube8[:4, :3], sx=2.0, sy=3.0, beam_energy=200)
    dc = s4.read(path)
    np.testing.assert_allclose(dc.Rx.values, np.arange(4) * 30.0)  # SY (nm) along Rx
    np.testing.assert_allclose(dc.Ry.values, np.arange(3) * 20.0)  # SX (nm) along Ry
    assert "r_pixel_size" not in dc.attrs and dc.attrs["r_units"] == "A"
    assert dc.attrs["energy"] == 200000.0  # 200 read as kV
    np.testing.assert_allclose(read_blo_vbf(path).Rx.values, dc.Rx.values)


def test_opening_reads_no_pixels_and_graph_is_small(tmp_path, cube8, no_frame_reads):
    path = write_blo(tmp_path / "d.blo", cube8)
    dc = s4.read(path, chunks=(4, 12))
    assert dc.data.numblocks == (4, 1, 1, 1)
    graph = dict(dc.data.__dask_graph__())
    assert len(graph) == dc.data.npartitions
    assert len(cloudpickle.dumps(graph)) < 20_000


def test_chunks_inside_rows(tmp_path, cube16):
    path = write_blo(tmp_path / "e.blo", cube16)
    np.testing.assert_array_equal(s4.read(path, chunks=(3, 5)).values, cube16)


def test_process_cluster_equals_threads(tmp_path, cube16, process_client):
    path = write_blo(tmp_path / "f.blo", cube16)
    dc = s4.read(path, chunks=(5, 12))
    threaded = dc.sum(("Qx", "Qy")).compute(scheduler="threads")
    on_cluster = process_client.compute(dc.sum(("Qx", "Qy"))).result()
    np.testing.assert_array_equal(on_cluster.values, threaded.values)
    np.testing.assert_array_equal(threaded.values, cube16.sum(axis=(2, 3)))


@pytest.mark.parametrize("corrupt", ["bad_index_at", "bad_sync_at"])
def test_corrupt_record_named_at_read(tmp_path, cube8, corrupt):
    k = 7 * 12 + 5  # scan position (7, 5)
    path = write_blo(tmp_path / "g.blo", cube8, **{corrupt: k})
    dc = s4.read(path, chunks=(4, 12))  # opening does not read records
    np.testing.assert_array_equal(dc[:4].values, cube8[:4])  # other chunks are fine
    with pytest.raises(
        ValueError,
        match=r"g\.blo: the record of scan position \(7, 5\) "
        r"\(frame 89\).*corrupt",
    ):
        dc[4:8].compute()


def test_truncated_file_error_at_open(tmp_path, cube8):
    path = write_blo(tmp_path / "h.blo", cube8, drop_frames=5, drop_bytes=10)  # 186 whole
    with pytest.raises(
        ValueError,
        match=r"holds 186 whole frames but the scan \(16, 12\) "
        r"needs 192.*scan_shape=\(rows, 12\) for 15",
    ):
        s4.read(path)
    dc = s4.read(path, scan_shape=(15, 12))
    np.testing.assert_array_equal(dc.values, cube8[:15])


def test_unknown_magic_and_not_a_blo(tmp_path, cube8):
    path = write_blo(tmp_path / "i.blo", cube8[:2, :2], magic=0x0200)
    with pytest.raises(ValueError, match="magic 0x0200"):
        s4.read(path)
    other = tmp_path / "j.blo"
    other.write_bytes(b"NOTBLO" + bytes(300))
    assert not is_blo(other)
    with pytest.raises(ValueError, match="not a NanoMegas"):
        read_blo(other)


def test_detected_by_read(tmp_path, cube8):
    path = write_blo(tmp_path / "k.dat", cube8[:2, :2])  # by the magic, not the name
    assert detect(path).name == "blo"
