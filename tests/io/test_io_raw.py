import numpy as np
import pytest

import stem4d_dask as s4
from stem4d_dask.io import UnsupportedFormatError


def test_npy_round_trip(tmp_path, cube_u16):
    np.save(tmp_path / "c.npy", cube_u16)
    dc = s4.read(tmp_path / "c.npy", chunks=(2, 9), q_pixel_size=0.5, q_units="mrad")
    assert dc.data.numblocks == (4, 1, 1, 1)
    assert np.array_equal(dc.values, cube_u16)
    assert dc.attrs["q_pixel_size"] == 0.5
    s4.to_zarr(dc, tmp_path / "c.zarr", progress=False)
    back = s4.read(tmp_path / "c.zarr")
    assert np.array_equal(back.values, cube_u16) and back.attrs == dc.attrs


def test_npy_fortran_order(tmp_path, cube_u16):
    np.save(tmp_path / "f.npy", np.asfortranarray(cube_u16))
    assert np.array_equal(s4.read(tmp_path / "f.npy").values, cube_u16)


def test_npy_3d_with_scan_shape(tmp_path, cube_u16):
    np.save(tmp_path / "s.npy", cube_u16.reshape(63, 12, 10))
    dc = s4.read(tmp_path / "s.npy", scan_shape=(7, 9))
    assert np.array_equal(dc.values, cube_u16)
    with pytest.raises(ValueError, match="scan_shape"):
        s4.read(tmp_path / "s.npy", scan_shape=(8, 8))
    with pytest.raises(ValueError, match="scan_shape"):
        s4.read(tmp_path / "s.npy")


def test_raw_with_header_and_big_endian(tmp_path, cube_u16):
    path = tmp_path / "frames.raw"
    path.write_bytes(b"H" * 384 + cube_u16.astype(">u2").tobytes())
    dc = s4.read(path, shape=(63, 12, 10), scan_shape=(7, 9), dtype=">u2", offset=384)
    assert np.array_equal(dc.values, cube_u16)


def test_raw_too_small_file_names_shape(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"\0" * 100)
    with pytest.raises(ValueError, match="shape"):
        s4.read(path, shape=(2, 2, 8, 8), dtype="uint16")


def test_unknown_format_lists_supported(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(UnsupportedFormatError, match="Supported: zarr"):
        s4.read(path)


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        s4.read(tmp_path / "nope.npy")


def test_raw_without_dtype_names_dtype_and_guesses_nothing(tmp_path, cube_u16):
    path = tmp_path / "frames.raw"
    path.write_bytes(cube_u16.tobytes())
    with pytest.raises(ValueError, match=r"^dtype: a raw file has no header"):
        s4.read(path, shape=(63, 12, 10), scan_shape=(7, 9))


def test_an_option_raw_files_do_not_have_is_named(tmp_path, cube_u16):
    np.save(tmp_path / "c.npy", cube_u16)
    with pytest.raises(TypeError, match=r"^sync_offset: not an option of raw or \.npy files"):
        s4.read(tmp_path / "c.npy", sync_offset=2)
