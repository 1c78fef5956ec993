"""EMPAD .raw + .xml reader: files written by tests/writers_frames.py (newer and older XML
styles, "acquire"/"search" scan parameters, series), checked value by value, against
RosettaSciIO's EMPAD reader where it reads them, for laziness, on a process cluster, and for
truncated, mismatched and EMPAD-G2 files."""

import json

import cloudpickle
import numpy as np
import pytest
from writers_frames import empad_cube, write_empad, write_empad_g2, write_empad_raw

import stem4d_dask as s4
from stem4d_dask.io import UnsupportedFormatError, detect
from stem4d_dask.io.empad import STRIDE, is_empad, read_empad

SCAN = (16, 12)  # Rx (slow) != Ry (fast), so a swapped scan cannot pass


@pytest.fixture(scope="module")
def cube():
    return empad_cube(SCAN)


def _rsciio(path):
    empad = pytest.importorskip("rsciio.empad")
    return empad.file_reader(str(path), lazy=True)[0]


def _nm(axis):
    """An RSciIO axis scale in nm (it picks compact units)."""
    return axis["scale"] * {"nm": 1.0, "µm": 1e3, "um": 1e3, "pm": 1e-3, "m": 1e9}[axis["units"]]


def test_new_style_acquire(tmp_path, cube):
    xml, raw = write_empad(tmp_path, cube, fov=1.2e-7, scale_factor=0.72, high_voltage=300000.0)
    for path in (xml, raw):
        dc = s4.read(path)
        assert dc.dims == ("Rx", "Ry", "Qx", "Qy") and dc.shape == (16, 12, 128, 128)
        assert dc.dtype == np.float32 and dc.attrs["format"] == "empad"
        np.testing.assert_array_equal(dc.values, cube)  # footer rows (-1e30) dropped
        step = 1.2e-7 / 0.72 / 16 * 1e10  # fov of the larger axis / scale_factor / 16, in A
        assert dc.attrs["r_units"] == "A" and dc.attrs["r_pixel_size"] == pytest.approx(step)
        np.testing.assert_allclose(dc.Ry.values, np.arange(12) * step)
        assert dc.attrs["q_units"] == "pixels" and dc.attrs["energy"] == 300000.0
        md = dc.attrs["metadata"]
        assert md["scan_source"] == 'scan_parameters mode="acquire"'
        assert md["raw_file"] == raw.name and md["xml_file"] == xml.name
        assert md["xml"]["iom_measurements"]["nominal_camera_length"] == 0.369
        assert [p["mode"] for p in md["xml"]["scan_parameters"]] == ["search", "acquire"]
        assert json.loads(json.dumps(md)) == md
    ref = _rsciio(xml)  # RSciIO takes the shape from the name scan_x12_y16.raw
    assert [a["name"] for a in ref["axes"]] == ["scan_y", "scan_x", "height", "width"]
    np.testing.assert_array_equal(np.asarray(ref["data"]), dc.values)
    assert _nm(ref["axes"][0]) * 10 == pytest.approx(dc.attrs["r_pixel_size"])


def test_new_style_search_when_the_size_fits_it(tmp_path, cube):
    xml, raw = write_empad(tmp_path, cube, mode="search", other=(32, 32))
    dc = s4.read(xml)
    assert dc.shape == (16, 12, 128, 128)
    assert dc.attrs["metadata"]["scan_source"] == 'scan_parameters mode="search"'
    np.testing.assert_array_equal(dc.values, cube)
    assert dc.attrs["r_pixel_size"] == pytest.approx(1.2e-7 / 0.72 / 16 * 1e10)
    np.testing.assert_array_equal(np.asarray(_rsciio(xml)["data"]), cube)


def test_old_style_pix_and_legacy_calibration(tmp_path):
    square = empad_cube((6, 6), seed=2)
    xml, _ = write_empad(
        tmp_path,
        square,
        style="old",
        scan_parameters=False,
        fov=(3e-8, 3e-8),
        calibrated_pixelsize=1.826537e-10,
    )
    dc = s4.read(xml)
    assert dc.attrs["metadata"]["scan_source"] == "pix_x/pix_y"
    np.testing.assert_array_equal(dc.values, square)
    assert dc.attrs["r_pixel_size"] == pytest.approx(3e-8 / 6 * 1e10)  # 50 A
    assert dc.attrs["q_units"] == "A^-1"
    assert dc.attrs["q_pixel_size"] == pytest.approx(0.01826537)  # 0.1826537 1/nm
    ref = _rsciio(xml)
    np.testing.assert_array_equal(np.asarray(ref["data"]), square)
    assert _nm(ref["axes"][0]) * 10 == pytest.approx(dc.attrs["r_pixel_size"])
    assert ref["axes"][2]["units"] == "1/nm"
    assert ref["axes"][2]["scale"] / 10 == pytest.approx(dc.attrs["q_pixel_size"])


def test_old_style_non_square_steps_per_axis(tmp_path):
    cube = empad_cube((6, 4), seed=3)
    xml, _ = write_empad(tmp_path, cube, style="old", scan_parameters=True, fov=(2e-8, 6e-8))
    dc = s4.read(xml)
    assert dc.attrs["metadata"]["scan_source"] == 'scan_parameters mode="acquire"'
    np.testing.assert_allclose(np.diff(dc.Rx.values), 6e-8 / 6 * 1e10)  # y field / Rx
    np.testing.assert_allclose(np.diff(dc.Ry.values), 2e-8 / 4 * 1e10)  # x field / Ry
    assert "r_pixel_size" not in dc.attrs  # the coords hold two steps
    # RosettaSciIO divides the x field by the y resolution (same data, other steps)
    ref = _rsciio(xml)
    np.testing.assert_array_equal(np.asarray(ref["data"]), cube)
    assert _nm(ref["axes"][0]) == pytest.approx(2e-8 / 6 * 1e9)


def test_series(tmp_path):
    cube = empad_cube((5, 1), seed=4)
    xml, _ = write_empad(tmp_path, cube, series=True)
    dc = s4.read(xml)
    assert dc.shape == (5, 1, 128, 128)
    assert dc.attrs["metadata"]["scan_source"] == "type=series count"
    np.testing.assert_array_equal(dc.values, cube)


def test_renamed_raw_read_from_scan_parameters(tmp_path, cube):
    xml, raw = write_empad(tmp_path, cube, raw_name="my data.raw")
    assert is_empad(raw) and is_empad(xml)
    np.testing.assert_array_equal(s4.read(raw).values, cube)
    with pytest.raises((OSError, KeyError)):  # RSciIO parses the shape from the raw's name
        _rsciio(xml)


def test_raw_without_xml_needs_scan_shape(tmp_path, cube):
    raw = write_empad_raw(tmp_path / "lonely.raw", cube)
    assert not is_empad(raw)
    with pytest.raises(UnsupportedFormatError):
        s4.read(raw)
    with pytest.raises(ValueError, match=r"scan_shape: no EMPAD \.xml .* 192 whole frames"):
        read_empad(raw)
    dc = s4.read(raw, format="empad", scan_shape=(16, 12))
    np.testing.assert_array_equal(dc.values, cube)
    assert dc.attrs["r_units"] == "pixels" and "energy" not in dc.attrs
    np.testing.assert_array_equal(read_empad(raw, scan_shape=(4, 12)).values, cube[:4])


def test_missing_raw_named_by_xml(tmp_path, cube):
    xml, raw = write_empad(tmp_path, cube)
    raw.unlink()
    with pytest.raises(FileNotFoundError, match="scan_x12_y16.raw"):
        s4.read(xml)


def test_truncated_file_says_how_many_frames(tmp_path, cube):
    xml, raw = write_empad(tmp_path, cube, drop_bytes=3 * STRIDE + 100)  # 189 frames + 924 B
    with pytest.raises(
        ValueError,
        match=r"holds 189 whole frames but the scan \(16, 12\) "
        r"needs 192.*scan_shape=\(rows, 12\)",
    ):
        s4.read(xml)
    dc = s4.read(xml, scan_shape=(15, 12))  # the whole rows it holds
    np.testing.assert_array_equal(dc.values, cube[:15])
    with pytest.raises(ValueError, match="holds 189 whole frames"):
        s4.read(xml, scan_shape=(16, 12))


def test_size_matching_no_xml_shape_is_refused(tmp_path, cube):
    xml, raw = write_empad(tmp_path, cube, extra_bytes=2 * STRIDE)
    with pytest.raises(
        ValueError,
        match=r"holds 194 frames .* says .*acquire.* \(16, 12\) = "
        r"192 frames.*search.* \(32, 24\) = 768 frames",
    ):
        s4.read(xml)
    np.testing.assert_array_equal(s4.read(xml, scan_shape=(16, 12)).values, cube)


def test_last_footer_cut_still_fits(tmp_path, cube):
    xml, _ = write_empad(tmp_path, cube, drop_bytes=1000)  # pixels whole, footer cut
    np.testing.assert_array_equal(s4.read(xml).values, cube)


def test_empad_g2_is_refused(tmp_path, cube):
    xml, raw = write_empad(tmp_path, cube[:2, :4])
    write_empad_g2(raw, n_frames=8)
    with pytest.raises(ValueError, match="EMPAD-G2"):
        s4.read(xml)


def test_opening_reads_no_pixels_and_graph_is_small(tmp_path, cube, no_frame_reads):
    xml, _ = write_empad(tmp_path, cube)
    dc = s4.read(xml, chunks=(4, 12))
    assert dc.data.numblocks == (4, 1, 1, 1)
    graph = dict(dc.data.__dask_graph__())
    assert len(graph) == dc.data.npartitions  # one task per chunk
    assert len(cloudpickle.dumps(graph)) < 20_000  # paths and numbers, no pixels


def test_chunks_across_rows_and_default_chunks(tmp_path, cube):
    xml, _ = write_empad(tmp_path, cube)
    dc = s4.read(xml, chunks=(3, 5))  # runs of frames inside rows
    np.testing.assert_array_equal(dc.values, cube)
    assert s4.read(xml).data.chunksize == (16, 12, 128, 128)  # 12 MiB: one chunk


def test_process_cluster_equals_threads(tmp_path, cube, process_client):
    xml, _ = write_empad(tmp_path, cube)
    dc = s4.read(xml, chunks=(5, 12))
    threaded = dc.sum(("Qx", "Qy")).compute(scheduler="threads")
    on_cluster = process_client.compute(dc.sum(("Qx", "Qy"))).result()
    np.testing.assert_array_equal(on_cluster.values, threaded.values)
    np.testing.assert_allclose(threaded.values, cube.sum(axis=(2, 3), dtype=np.float32), rtol=1e-6)


def test_detected_by_read(tmp_path, cube):
    xml, raw = write_empad(tmp_path, cube[:2, :3])
    assert detect(xml).name == "empad" and detect(raw).name == "empad"
    other = tmp_path / "notes.xml"
    other.write_text("<config><a>1</a></config>")
    assert not is_empad(other)
