"""Gatan DM4/DM3 4D-STEM reader: files written by tests/writers_mrc_dm.py in both 4D layouts
(contiguous frames with ``Data Order Swapped = 1``, and the older scan-fastest layout), DM3 and
big-endian variants and every real data type, checked value by value, against RosettaSciIO's
DM reader, for calibration, laziness, a process cluster and truncated or corrupt files."""

import json
import warnings

import cloudpickle
import numpy as np
import pytest
from writers_mrc_dm import write_dm

import stem4d_dask as s4
from stem4d_dask.io import detect
from stem4d_dask.io.dm import ScanFastestLoader, is_dm, read_dm, read_tags
from stem4d_dask.io.frames import FrameStack

SCAN = (12, 10)  # Rx (slow, DM y) != Ry (fast, DM x)
FRAME = (32, 24)  # Qx (rows, DM ky) != Qy (columns, DM kx)


@pytest.fixture(scope="module")
def cube():
    rng = np.random.default_rng(5)
    out = rng.integers(0, 2**16, size=(*SCAN, *FRAME), dtype=np.uint16)
    out[:, :, 0, 0] = np.arange(SCAN[0] * SCAN[1]).reshape(SCAN)  # position label
    out[:, :, 1, 0] = 7  # first column: Qx varies
    return out


@pytest.fixture
def no_reads(monkeypatch):
    def refuse(self, *args):
        raise AssertionError("pixel data was read while opening")

    monkeypatch.setattr(FrameStack, "read", refuse)
    monkeypatch.setattr(ScanFastestLoader, "__call__", refuse)


def _rsciio(path):
    dm = pytest.importorskip("rsciio.digitalmicrograph")
    return dm.file_reader(str(path), lazy=True)[0]


def _quiet_read(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return s4.read(path, **kw)


def test_frames_layout_dm4(tmp_path, cube):
    path = write_dm(tmp_path / "c.dm4", cube)
    assert is_dm(path) and detect(path).name == "dm"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no layout warning for a tagged frames file
        dc = s4.read(path)
    assert dc.dims == ("Rx", "Ry", "Qx", "Qy") and dc.shape == cube.shape
    assert dc.dtype == np.uint16 and dc.attrs["format"] == "dm"
    np.testing.assert_array_equal(dc.values, cube)
    ref = _rsciio(path)  # RosettaSciIO: reversed Dimensions, C order: the same array
    np.testing.assert_array_equal(np.asarray(ref["data"]), cube)
    # DM x scale 0.5 nm -> Ry, y 0.25 nm -> Rx; kx 0.02 1/nm -> Qy in A^-1 (origin 4 px)
    np.testing.assert_allclose(dc.Ry.values, np.arange(10) * 0.5)
    np.testing.assert_allclose(dc.Rx.values, np.arange(12) * 0.25)
    q = np.float32(0.02) / 10
    np.testing.assert_allclose(dc.Qy.values, (np.arange(24) - 4) * q, rtol=1e-6)
    np.testing.assert_allclose(dc.Qx.values, (np.arange(32) - 3) * q, rtol=1e-6)
    assert dc.Qx.attrs["units"] == "A^-1" and dc.attrs["q_pixel_size"] == pytest.approx(q)
    assert "r_pixel_size" not in dc.attrs and dc.attrs["energy"] == 200000.0
    axes = ref["axes"]
    assert [a["units"] for a in axes] == ["nm", "nm", "1/nm", "1/nm"]
    assert axes[0]["scale"] == pytest.approx(dc.Rx.values[1])
    assert axes[3]["scale"] / 10 == pytest.approx(dc.attrs["q_pixel_size"])
    assert axes[3]["offset"] / 10 == pytest.approx(dc.Qy.values[0])
    md = dc.attrs["metadata"]
    assert md["layout"] == "frames" and md["layout_from"] == "Data Order Swapped tag"
    assert md["image"] == 1 and md["dimensions"] == [24, 32, 10, 12] and md["dm_version"] == 4
    assert md["name"] == "4D-STEM"
    assert md["image_tags"]["Microscope Info"]["Operator"] == "test µ"
    assert md["image_tags"]["Meta Data"]["Data Order Swapped"] is True
    assert md["calibrations"]["Dimension"][2]["Units"] == "nm"
    assert md["images"][0] == {
        "index": 0,
        "name": "thumbnail",
        "dimensions": [16, 8],
        "data_type": 23,
    }
    assert md["tags"]["Thumbnails"][0]["ImageIndex"] == 0 and "ImageList" not in md["tags"]
    assert md["tags"]["Page Behavior"]["Points"].startswith("<2 values")
    assert json.loads(json.dumps(md)) == md


def test_scan_fastest_layout(tmp_path, cube):
    path = write_dm(tmp_path / "h.dm4", cube, layout="scan-fastest")
    with pytest.warns(UserWarning, match="stores the scan fastest .*to_zarr"):
        dc = s4.read(path)
    assert dc.shape == cube.shape and dc.attrs["metadata"]["layout"] == "scan-fastest"
    np.testing.assert_array_equal(dc.values, cube)
    # RosettaSciIO ignores the ordering tag: its "navigation" axes are the detector's
    ref = _rsciio(path)
    assert ref["data"].shape == (*FRAME, *SCAN)
    np.testing.assert_array_equal(np.asarray(ref["data"]).transpose(2, 3, 0, 1), cube)
    np.testing.assert_allclose(dc.Ry.values, np.arange(10) * 0.5)
    np.testing.assert_allclose(dc.Qx.values, (np.arange(32) - 3) * np.float32(0.02) / 10, rtol=1e-6)
    # chunks that cut scan rows read each row's runs
    part = _quiet_read(path, chunks=(5, 3))
    assert part.data.numblocks == (3, 4, 1, 1)
    np.testing.assert_array_equal(part.values, cube)
    np.testing.assert_array_equal(
        _quiet_read(path, scan_shape=(24, 5)).values, cube.reshape(24, 5, *FRAME)
    )


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("layout", ["frames", "scan-fastest"])
def test_versions_and_byte_orders(tmp_path, cube, version, big_endian, layout):
    path = write_dm(
        tmp_path / f"v.dm{version}",
        cube[:5, :4],
        version=version,
        big_endian=big_endian,
        layout=layout,
    )
    dc = _quiet_read(path)
    # frames are read in place in the file's byte order; the scan-fastest layout is copied
    # (transposed) into native order
    keeps = big_endian and layout == "frames"
    assert dc.dtype == np.dtype(">u2" if keeps else "=u2")
    assert dc.attrs["metadata"]["dm_version"] == version
    np.testing.assert_array_equal(dc.values, cube[:5, :4])
    ref = np.asarray(_rsciio(path)["data"])
    if big_endian:  # RosettaSciIO maps the pixels as native-endian whatever the header says
        ref = ref.byteswap()
    np.testing.assert_array_equal(
        ref if layout == "frames" else ref.transpose(2, 3, 0, 1), cube[:5, :4]
    )


@pytest.mark.parametrize(
    "dtype", ["uint8", "int8", "int16", "int32", "uint32", "float32", "float64", "bool"]
)
def test_data_types(tmp_path, dtype):
    data = (np.arange(3 * 4 * 5 * 6) % 100 - 20).reshape(3, 4, 5, 6).astype(dtype)
    dc = s4.read(write_dm(tmp_path / "t.dm4", data))
    assert dc.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(dc.values, data)


def test_layout_without_the_tag(tmp_path, cube):
    frames = write_dm(tmp_path / "f.dm4", cube, layout_tag=None)
    hybrid = write_dm(tmp_path / "h.dm4", cube, layout="scan-fastest", layout_tag=None)
    dc = s4.read(frames)  # the reciprocal units mark the detector axes
    assert dc.attrs["metadata"]["layout_from"] == "calibration units"
    np.testing.assert_array_equal(dc.values, cube)
    dc = _quiet_read(hybrid)
    assert dc.attrs["metadata"]["layout"] == "scan-fastest"
    np.testing.assert_array_equal(dc.values, cube)
    bare = write_dm(
        tmp_path / "b.dm4", cube, layout_tag=None, r_cal=[(1, "", 0)] * 2, q_cal=[(1, "", 0)] * 2
    )
    with pytest.warns(UserWarning) as record:
        assert s4.read(bare).attrs["metadata"]["layout"] == "scan-fastest"
    assert "assuming the older scan-fastest layout" in str(record[0].message)
    dc = s4.read(bare, layout="frames")
    assert dc.attrs["r_units"] == "pixels" and dc.attrs["q_units"] == "pixels"
    np.testing.assert_array_equal(dc.values, cube)
    with pytest.raises(ValueError, match="layout must be one of"):
        read_dm(bare, layout="C")


def test_calibration_units(tmp_path, cube):
    path = write_dm(
        tmp_path / "u.dm4",
        cube[:3, :3],
        r_cal=[(0.002, "µm", 0)] * 2,
        q_cal=[(0.5, "mrad", 12.0)] * 2,
        voltage=None,
    )
    dc = s4.read(path)
    assert dc.attrs["r_units"] == "nm" and dc.attrs["r_pixel_size"] == pytest.approx(2.0)
    assert dc.attrs["q_units"] == "mrad" and dc.attrs["q_pixel_size"] == 0.5
    assert dc.Qx.values[0] == -6.0 and "energy" not in dc.attrs
    path = write_dm(
        tmp_path / "a.dm4", cube[:3, :3], r_cal=[(1.5, "Å", 0)] * 2, q_cal=[(1.0, "counts", 0)] * 2
    )
    dc = s4.read(path)
    assert dc.attrs["r_units"] == "A" and dc.attrs["q_units"] == "pixels"


def test_opening_reads_no_pixels_and_graph_is_small(tmp_path, cube, no_reads):
    for layout in ("frames", "scan-fastest"):
        path = write_dm(tmp_path / f"{layout}.dm4", cube, layout=layout)
        dc = _quiet_read(path, chunks=(4, 10))
        graph = dict(dc.data.__dask_graph__())
        assert len(graph) == dc.data.npartitions == 3  # one task per chunk
        assert len(cloudpickle.dumps(graph)) < 8000


def test_process_cluster_equals_threads(tmp_path, cube, process_client):
    for layout in ("frames", "scan-fastest"):
        dc = _quiet_read(write_dm(tmp_path / f"{layout}.dm4", cube, layout=layout), chunks=(3, 10))
        total = dc.data.sum(axis=(2, 3), dtype=np.uint64)
        np.testing.assert_array_equal(
            process_client.compute(total).result(), cube.sum(axis=(2, 3), dtype=np.uint64)
        )
        np.testing.assert_array_equal(total.compute(), cube.sum(axis=(2, 3), dtype=np.uint64))


def test_3d_stack_with_scan_shape(tmp_path, cube):
    path = write_dm(tmp_path / "s.dm4", cube.reshape(-1, *FRAME))
    with pytest.raises(ValueError, match=r"holds no 4D image .*scan_shape=\(Rx, Ry\)"):
        s4.read(path)
    dc = s4.read(path, scan_shape=SCAN)
    np.testing.assert_array_equal(dc.values, cube)
    assert dc.attrs["q_units"] == "A^-1" and dc.attrs["r_units"] == "pixels"


def test_truncated_frames_file(tmp_path, cube):
    frame = FRAME[0] * FRAME[1] * 2
    path = write_dm(tmp_path / "t.dm4", cube, data_last=True, truncate=8 + 13 * frame + 50)
    with pytest.raises(
        ValueError,
        match=r"holds 106 whole frames but the scan \(12, 10\) "
        r"needs 120.*scan_shape=\(rows, 10\) for 10 whole",
    ):
        s4.read(path)
    dc = s4.read(path, scan_shape=(10, 10))
    np.testing.assert_array_equal(dc.values, cube[:10])
    assert dc.attrs["metadata"]["truncated"] == "ImageList.1.ImageData.Data"
    hybrid = write_dm(
        tmp_path / "h.dm4", cube, layout="scan-fastest", data_last=True, truncate=1000
    )
    with pytest.raises(ValueError, match="stores the scan fastest: every frame needs bytes"):
        s4.read(hybrid)


def test_truncated_before_the_dimensions(tmp_path, cube):
    path = write_dm(tmp_path / "t.dm4", cube)  # Data comes before DataType and Dimensions
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    tree_error = r"truncated: it ends at byte \d+, inside ImageList.1.ImageData.Data .*offset="
    with pytest.raises(ValueError, match=tree_error):
        s4.read(path)


def test_corrupt_and_unsupported(tmp_path, cube):
    path = write_dm(tmp_path / "c.dm4", cube[:2, :2])
    raw = bytearray(path.read_bytes())
    at = raw.index(b"%%%%")
    raw[at : at + 4] = b"%%%#"
    bad = tmp_path / "bad.dm4"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"is corrupt: tag 'ApplicationBounds' lacks its"):
        s4.read(bad)
    bad.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="is truncated: the file ends at byte 40"):
        read_tags(bad)
    other = tmp_path / "o.dm4"
    other.write_bytes(b"\x00\x00\x00\x05" + bytes(40))
    assert not is_dm(other) and detect(other) is None
    with pytest.raises(ValueError, match="DM version 5"):
        read_dm(other)
    complex_ = write_dm(tmp_path / "z.dm4", cube[:2, :2].astype(np.float32), data_type=3)
    with pytest.raises(TypeError, match="holds complex64 pixels"):
        s4.read(complex_)
    flat = write_dm(tmp_path / "i.dm4", cube[0, 0, None, None])  # a 4D image of one frame
    assert s4.read(flat).shape == (1, 1, *FRAME)
    with pytest.raises(ValueError, match="image: .* has no image 5"):
        read_dm(flat, image=5)
    with pytest.raises(ValueError, match=r"scan_shape: \(2, 1\) must hold exactly the 4"):
        _quiet_read(
            write_dm(tmp_path / "h.dm4", cube[:2, :2], layout="scan-fastest"), scan_shape=(2, 1)
        )
