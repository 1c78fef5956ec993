"""Quantum Detectors Merlin ``.mib`` reader: the real files of ``shared/data/merlin`` against
RosettaSciIO and against each other (RAW vs processed), and files written by
``writers_mib.write_mib`` (depths, RAW, quad, scan shapes, sync offsets, damage)."""

import mmap
import zipfile
from contextlib import nullcontext

import cloudpickle
import dask
import numpy as np
import pytest
from writers_mib import stride, write_hdr, write_mib

import stem4d_dask as s4
from stem4d_dask.io import detect
from stem4d_dask.io.mib import MibLoader, is_mib, read_mib
from stem4d_dask.phase import center_of_mass

ROI = "002_merlin_test_roi_sig256x128_nav4x2_hot_pixel_52x_39y.mib"
ROI64 = "003_merlin_test_roi_sig256x64_nav4x2_hot_pixel_52x_39y.mib"


@pytest.fixture(scope="module")
def merlin(tmp_path_factory):
    """The Merlin test zips extracted into a temporary folder (never into the repository)."""
    from conftest import shared_data_dir

    folder = shared_data_dir() / "merlin"
    if not folder.is_dir():
        pytest.skip(f"shared detector data folder not found at {folder} (set STEM4D_SHARED_DATA)")
    out = tmp_path_factory.mktemp("merlin")
    for archive in sorted(folder.glob("*.zip")):
        with zipfile.ZipFile(archive) as z:
            z.extractall(out)
    return out


def read_quiet(path, **options):
    """Read a real file, expecting the 'scan shape unknown' warning where the .hdr cannot say
    (pixel-triggered 9-frame files)."""
    unknown = "scan_shape" not in options and (
        path.name.startswith("Quad_9") or path.name.startswith("Single_9_Frame_CounterDepth_24")
    )
    with pytest.warns(UserWarning, match="scan_shape=") if unknown else nullcontext():
        return s4.read(path, **options)


# --- real files ------------------------------------------------------------------------------

EXPECTED = {  # name part -> (scan shape, frame shape, dtype, value range)
    "Single_1_Frame_CounterDepth_1_": ((1, 1), (256, 256), "uint8", (0, 1)),
    "Single_1_Frame_CounterDepth_6_": ((1, 1), (256, 256), "uint8", (0, 63)),
    "Single_1_Frame_CounterDepth_12_": ((1, 1), (256, 256), ">u2", (0, 4095)),
    "Single_1_Frame_CounterDepth_24_": ((1, 1), (256, 256), ">u4", (0, 2**24 - 1)),
    "Single_9_Frame_CounterDepth_1_": ((1, 9), (256, 256), "uint8", (0, 1)),
    "Single_9_Frame_CounterDepth_6_": ((1, 9), (256, 256), "uint8", (0, 63)),
    "Single_9_Frame_CounterDepth_12_": ((1, 9), (256, 256), ">u2", (0, 4095)),
    "Single_9_Frame_CounterDepth_24_": ((9, 1), (256, 256), ">u4", (0, 2**24 - 1)),
    "Quad_1_Frame_CounterDepth_1_": ((1, 1), (512, 512), "uint8", (0, 1)),
    "Quad_1_Frame_CounterDepth_6_": ((1, 1), (512, 512), "uint8", (0, 63)),
    "Quad_1_Frame_CounterDepth_12_": ((1, 1), (512, 512), ">u2", (0, 4095)),
    "Quad_1_Frame_CounterDepth_24_": ((1, 1), (512, 512), ">u4", (0, 2**24 - 1)),
    "Quad_9_Frame_CounterDepth_1_": ((9, 1), (512, 512), "uint8", (0, 1)),
    "Quad_9_Frame_CounterDepth_6_": ((9, 1), (512, 512), "uint8", (0, 63)),
    "Quad_9_Frame_CounterDepth_12_": ((9, 1), (512, 512), ">u2", (0, 4095)),
    "Quad_9_Frame_CounterDepth_24_": ((9, 1), (512, 512), ">u4", (0, 2**24 - 1)),
    "002_merlin": ((2, 4), (128, 256), ">u2", (0, 4095)),
    "003_merlin": ((2, 4), (64, 256), ">u2", (0, 4095)),
}


def expected_of(name):
    (key,) = [k for k in EXPECTED if name.startswith(k)]
    return EXPECTED[key]


def test_every_real_file_opens_and_matches_rosettasciio(merlin):
    from rsciio.quantumdetector import file_reader

    files = sorted(merlin.glob("*.mib"))
    assert len(files) == 22
    for path in files:
        dc = read_quiet(path)
        if "RAW" in path.name:
            continue
        scan, frame, dtype, value_range = expected_of(path.name)
        assert dc.shape == scan + frame, path.name
        assert dc.dtype == np.dtype(dtype), path.name
        assert tuple(dc.attrs["value_range"]) == value_range
        assert dc.attrs["format"] == "merlin" and dc.attrs["q_units"] == "pixels"
        ours = dc.values.reshape(-1, *frame)
        ref = file_reader(str(path), lazy=True)[0]["data"]
        ref = np.asarray(ref).reshape(-1, *frame)
        # RosettaSciIO flips every frame up-down; we keep the file's row order
        np.testing.assert_array_equal(np.flip(ours, axis=-2), ref, err_msg=path.name)
        assert ours.max() <= value_range[1]


def test_hot_pixel_of_the_roi_files_is_at_qx39_qy52(merlin):
    for name in (ROI, ROI64):
        dc = s4.read(merlin / name)
        mean = dc.mean(("Rx", "Ry")).values
        assert np.unravel_index(np.argmax(mean), mean.shape) == (39, 52)
        assert dc.attrs["metadata"]["scan_shape_from"] == ".hdr ScanY x ScanX"
        assert dc.attrs["metadata"]["hdr"]["ScanX"] == "4"


@pytest.mark.parametrize("kind, frames", [("Single", 1), ("Single", 9), ("Quad", 1), ("Quad", 9)])
def test_raw_frames_equal_the_processed_frames_of_the_same_acquisition(merlin, kind, frames):
    """The RAW and processed files recorded the same test pattern (noise aside): the decoded
    RAW frames match pixel for pixel except a few noisy pixels, chip by chip, and a wrong quad
    assembly (bottom chips not turned) would not."""
    stem = f"{kind}_{frames}_Frame_CounterDepth_1_Rows_256"
    raw = read_quiet(merlin / f"{stem}RAW.mib")
    processed = read_quiet(merlin / f"{stem}.mib")
    assert raw.shape == processed.shape and raw.dtype == processed.dtype == np.uint8
    assert tuple(raw.attrs["value_range"]) == (0, 1) and raw.attrs["metadata"]["raw"]
    a, b = raw.values.sum(axis=(0, 1)), processed.values.sum(axis=(0, 1))
    assert (raw.values != processed.values).mean() < 1e-3
    half = a.shape[0] // 2
    quarters = [
        (slice(0, half), slice(0, half)),
        (slice(0, half), slice(half, None)),
        (slice(half, None), slice(0, half)),
        (slice(half, None), slice(half, None)),
    ]
    for chip in quarters if kind == "Quad" else [(slice(None), slice(None))]:
        assert np.corrcoef(a[chip].ravel(), b[chip].ravel())[0, 1] > 0.95
    if kind == "Quad":
        unturned = a.copy()
        unturned[half:] = a[half:][::-1, ::-1]
        assert np.corrcoef(unturned.ravel(), b.ravel())[0, 1] < 0.8


def test_scan_shapes_and_metadata_of_real_files(merlin):
    dc = s4.read(merlin / "Single_9_Frame_CounterDepth_12_Rows_256.mib")
    meta = dc.attrs["metadata"]
    assert dc.shape[:2] == (1, 9)
    assert meta["scan_shape_from"] == ".hdr Frames in Acquisition / Frames per Trigger"
    assert meta["header"]["pixel_type"] == "U16" and meta["header"]["counter_depth"] == 12
    assert meta["header"]["header_bytes"] == 384 and meta["frames_in_files"] == 9
    assert meta["header"]["chip_select"] == "01" and meta["header"]["sensor_layout"] == "1x1"
    assert meta["hdr"]["Counter Depth (number)"] == "12"
    assert meta["header"]["thresholds_keV"][:2] == [2.0, 511.0]
    # a pixel-triggered quad scan (Frames per Trigger 1, no line pause): a 1D stack + warning
    with pytest.warns(UserWarning, match=r"pass scan_shape=\(Rx, Ry\)"):
        quad = s4.read(merlin / "Quad_9_Frame_CounterDepth_12_Rows_256.mib")
    assert quad.shape == (9, 1, 512, 512) and quad.attrs["metadata"]["quad"]
    square = s4.read(merlin / "Quad_9_Frame_CounterDepth_12_Rows_256.mib", scan_shape=(3, 3))
    np.testing.assert_array_equal(square.values.reshape(quad.shape), quad.values)
    # the .hdr file names the acquisition too
    by_hdr = s4.read(merlin / "Single_9_Frame_CounterDepth_12_Rows_256.hdr")
    np.testing.assert_array_equal(by_hdr.values, dc.values)


def test_converted_to_zarr_with_metadata(merlin, tmp_path):
    dc = s4.read(merlin / ROI)
    s4.write(dc, tmp_path / "roi.zarr", progress=False)
    back = s4.read(tmp_path / "roi.zarr")
    assert back.dtype == np.uint16 and back.dtype.isnative  # stores are native
    np.testing.assert_array_equal(back.values, dc.values)
    assert back.attrs["format"] == "merlin" and tuple(back.attrs["value_range"]) == (0, 4095)
    assert back.attrs["metadata"] == dc.attrs["metadata"]


def test_real_files_are_detected(merlin):
    assert detect(merlin / ROI).name == "merlin"
    assert detect(merlin / ROI.replace(".mib", ".hdr")).name == "merlin"
    assert is_mib(merlin / ROI) and not is_mib(merlin / "nothing.mib")


# --- written files -------------------------------------------------------------------------


def scan(shape=(16, 16, 64, 64), depth=12, seed=0):
    rng = np.random.default_rng(seed)
    values = rng.poisson(3, size=shape)
    values[..., 5, 9] = 2**depth - 1  # a saturated pixel
    return np.minimum(values, 2**depth - 1).astype(np.uint32 if depth == 24 else np.uint16)


@pytest.mark.parametrize(
    "depth, raw, quad",
    [
        (depth, raw, quad)
        for depth in (1, 6, 12, 24)
        for raw in (False, True)
        for quad in (False, True)
        if not (raw and quad and depth == 24)
    ],
)  # refused, see below
def test_written_files_read_back(tmp_path, depth, raw, quad):
    shape = (4, 6, 512, 512) if quad else (16, 16, 64, 64)
    if quad and not raw:
        shape = (2, 3, 512, 512)
    values = scan(shape, depth)
    path = write_mib(tmp_path / "scan.mib", values, depth=depth, raw=raw, quad=quad)
    dc = s4.read(path)
    assert dc.shape == values.shape
    expected_dtype = {1: "u1", 6: "u1", 12: "<u2" if raw else ">u2", 24: "<u4" if raw else ">u4"}
    assert dc.dtype == np.dtype(expected_dtype[depth])
    assert tuple(dc.attrs["value_range"]) == (0, 2**depth - 1)
    np.testing.assert_array_equal(dc.values, values)


def test_raw_quad_24_bit_is_refused(tmp_path):
    path = write_mib(tmp_path / "q.mib", scan((1, 2, 512, 512), 24), depth=24, raw=True, quad=True)
    with pytest.raises(ValueError, match="not supported"):
        s4.read(path)


def test_header_size_is_read_from_the_header(tmp_path):
    values = scan((3, 4, 32, 48))
    path = write_mib(tmp_path / "big_header.mib", values, header_size=1000)
    assert stride(path) == 1000 + 32 * 48 * 2
    np.testing.assert_array_equal(s4.read(path).values, values)


def test_roi_frames_are_rows_by_columns(tmp_path):
    values = scan((2, 4, 20, 64))  # 20 rows (field 5) of 64 columns (field 4)
    path = write_mib(tmp_path / "roi.mib", values)
    dc = s4.read(path)
    assert dc.shape == (2, 4, 20, 64)
    np.testing.assert_array_equal(dc.values, values)


def test_open_reads_no_pixels_and_the_graph_is_small(tmp_path, monkeypatch):
    values = scan((16, 16, 64, 64))
    path = write_mib(tmp_path / "scan.mib", values)

    def refuse(self, slices):
        raise AssertionError("pixel data was read while opening or building a graph")

    monkeypatch.setattr(MibLoader, "__call__", refuse)
    dc = s4.read(path, chunks=(4, 16))
    com = center_of_mass(dc)
    graph = dict(dc.data.__dask_graph__())
    assert len(graph) == dc.data.npartitions == 4  # one task per chunk
    assert len(cloudpickle.dumps(graph)) < 20_000  # paths and numbers, not pixels
    assert com.com_x.shape == (16, 16)
    monkeypatch.undo()
    np.testing.assert_array_equal(dc.values, values)


def test_default_chunks_are_whole_rows_of_32_to_128_mib(tmp_path):
    values = np.zeros((8, 40, 256, 256), np.uint16)
    path = write_mib(tmp_path / "scan.mib", values)
    dc = s4.read(path)
    assert dc.data.chunks[1] == (40,) and dc.data.chunks[2:] == ((256,), (256,))
    assert 32 * 2**20 <= dc.data.chunks[0][0] * 40 * 256 * 256 * 2 <= 128 * 2**20


def test_chunks_are_views_of_the_file(tmp_path):
    """Processed 12-bit chunks are the file's big-endian bytes mapped from the page cache, not
    copies."""
    values = scan((4, 5, 16, 16))
    path = write_mib(tmp_path / "scan.mib", values)

    def mapped(block):
        owner = block
        while isinstance(owner, np.ndarray) and owner.base is not None:
            owner = owner.base
        return np.full((1,) * 4, block.dtype == ">u2" and isinstance(owner, mmap.mmap))

    dc = s4.read(path, chunks=(2, 5))
    assert dc.data.map_blocks(mapped, chunks=(1,) * 4, dtype=bool).all().compute()


def test_center_of_mass_equals_the_native_one(tmp_path):
    values = scan((16, 16, 64, 64))
    path = write_mib(tmp_path / "scan.mib", values)
    ours = center_of_mass(s4.read(path, chunks=(4, 8))).compute()
    ref = center_of_mass(s4.from_array(values)).compute()
    for name in ("com_x", "com_y", "intensity"):
        np.testing.assert_array_equal(ours[name].values, ref[name].values)


def test_process_cluster_equals_threads(tmp_path, process_client):
    values = scan((16, 16, 64, 64))
    path = write_mib(tmp_path / "scan.mib", values, depth=6, raw=True)
    dc = s4.read(path, chunks=(4, 16))
    com = center_of_mass(s4.read(write_mib(tmp_path / "b.mib", values), chunks=(4, 16)))
    with dask.config.set(scheduler="threads"):
        threaded = (dc.sum(("Qx", "Qy")).values, com.com_x.values)
    remote = process_client.compute([dc.sum(("Qx", "Qy")).data, com.com_x.data])
    np.testing.assert_array_equal(remote[0].result(), threaded[0])
    np.testing.assert_array_equal(remote[1].result(), threaded[1])


# --- scan shapes -------------------------------------------------------------------------


def test_scan_shape_from_frames_per_trigger(tmp_path):
    values = scan((5, 6, 16, 16))
    path = write_mib(tmp_path / "s.mib", values, scan_xy=None)
    dc = s4.read(path)
    assert dc.shape[:2] == (5, 6)
    assert dc.attrs["metadata"]["scan_shape_from"].startswith(".hdr Frames in Acquisition")


def test_scan_shape_from_line_pauses_in_the_time_stamps(tmp_path):
    values = scan((5, 7, 16, 16))
    path = write_mib(
        tmp_path / "s.mib",
        values.reshape(35, 16, 16),
        frames_per_trigger=7,
        line_pause_ns=150_000,
        hdr=False,
    )
    dc = s4.read(path)
    assert dc.shape[:2] == (5, 7)
    assert dc.attrs["metadata"]["scan_shape_from"].startswith("frame time stamps")
    np.testing.assert_array_equal(dc.values, values)
    # the same with a pixel-triggered .hdr (Frames per Trigger 1)
    write_hdr(
        tmp_path / "s.hdr", depth=12, quad=False, frames_in_acquisition=35, frames_per_trigger=1
    )
    assert s4.read(path).shape[:2] == (5, 7)


def test_unknown_scan_shape_is_a_1d_stack_with_a_warning(tmp_path):
    values = scan((5, 7, 16, 16))
    path = write_mib(tmp_path / "s.mib", values.reshape(35, 16, 16), hdr=False)
    with pytest.warns(UserWarning, match=r"pass scan_shape=\(Rx, Ry\)"):
        dc = s4.read(path)
    assert dc.shape == (35, 1, 16, 16)
    assert s4.read(path, scan_shape=(5, 7)).shape == (5, 7, 16, 16)
    with pytest.raises(ValueError, match=r"scan_shape\[0\] must be an integer >= 1"):
        s4.read(path, scan_shape=(0, 35))


def test_extra_frames_are_left_out_with_a_warning(tmp_path):
    values = scan((3, 4, 16, 16))
    path = write_mib(tmp_path / "s.mib", values.reshape(12, 16, 16), hdr=False)
    write_hdr(
        tmp_path / "s.hdr", depth=12, quad=False, frames_in_acquisition=10, frames_per_trigger=5
    )
    with pytest.warns(UserWarning, match="the last 2 are not read"):
        dc = s4.read(path)
    np.testing.assert_array_equal(dc.values.reshape(10, 16, 16), values.reshape(12, 16, 16)[:10])


# --- sync offsets -------------------------------------------------------------------------


def test_sync_offset_skips_or_pads_frames(tmp_path):
    values = scan((4, 5, 16, 16))
    frames = values.reshape(20, 16, 16)
    path = write_mib(tmp_path / "s.mib", values)
    skip = s4.read(path, sync_offset=3).values.reshape(20, 16, 16)
    np.testing.assert_array_equal(skip[:17], frames[3:])
    assert not skip[17:].any()  # past the end of the file: blank
    with pytest.warns(UserWarning, match="the last 6 are not read"):
        padded = s4.read(path, sync_offset=-6, chunks=(1, 5))
    pad = padded.values.reshape(20, 16, 16)
    assert not pad[:6].any()
    np.testing.assert_array_equal(pad[6:], frames[:14])
    assert padded.attrs["metadata"]["sync_offset"] == -6
    for bad in (20, 2.5, True):
        with pytest.raises(ValueError, match="sync_offset"):
            s4.read(path, sync_offset=bad)


# --- damaged files -------------------------------------------------------------------------


def test_truncated_file_fails_at_open_naming_the_whole_frames(tmp_path):
    values = scan((4, 5, 16, 16))
    path = write_mib(tmp_path / "s.mib", values)
    with open(path, "r+b") as f:
        f.truncate(13 * stride(path) + 100)  # 13 whole frames and a piece
    with pytest.raises(ValueError) as err:
        s4.read(path)
    message = str(err.value)
    assert str(path) in message and "13 whole frames" in message
    assert "scan_shape=(rows, 5)" in message and "scan_shape=(13, 1)" in message
    dc = s4.read(path, scan_shape=(2, 5))
    np.testing.assert_array_equal(dc.values, values[:2])


def test_corrupt_frame_header_fails_at_read_naming_the_scan_position(tmp_path):
    values = scan((4, 5, 16, 16))
    path = write_mib(tmp_path / "s.mib", values)
    with open(path, "r+b") as f:
        f.seek(13 * stride(path))
        f.write(b"XXXX")
    dc = s4.read(path, chunks=(2, 5))  # opening reads the first header only
    np.testing.assert_array_equal(dc[:2].values, values[:2])
    with pytest.raises(
        ValueError,
        match=r"s\.mib: frame 13 \(scan position \(2, 3\)\) has a "
        r"corrupt header",
    ):
        dc.compute()


def test_not_a_mib_file(tmp_path):
    path = tmp_path / "x.mib"
    path.write_bytes(b"HELLO" * 100)
    assert not is_mib(path)
    with pytest.raises(ValueError, match="not a Merlin .mib file"):
        read_mib(path)


# --- multi-file acquisitions -------------------------------------------------------------------


def test_multi_file_acquisition_is_ordered_by_sequence_number(tmp_path):
    values = scan((6, 4, 16, 16))
    frames = values.reshape(24, 16, 16)
    # file names sort differently from the frames' order: the sequence numbers decide
    for name, start, stop in (("run_10.mib", 0, 8), ("run_2.mib", 8, 20), ("run_3.mib", 20, 24)):
        write_mib(tmp_path / name, frames[start:stop], first_sequence=start + 1, hdr=False)
    write_hdr(
        tmp_path / "run_.hdr",
        depth=12,
        quad=False,
        frames_in_acquisition=24,
        frames_per_trigger=4,
        scan_xy=(4, 6),
    )
    dc = s4.read(tmp_path / "run_.hdr")
    assert dc.attrs["metadata"]["files"] == ["run_10.mib", "run_2.mib", "run_3.mib"]
    np.testing.assert_array_equal(dc.values, values)
    (tmp_path / "run_2.mib").unlink()
    with pytest.raises(ValueError, match="a file is missing"):
        s4.read(tmp_path / "run_.hdr")
