"""A conversion killed mid-write resumes to a store identical to an uninterrupted write."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

import stem4d_dask as s4

CHILD = r"""
import os, signal, sys
import dask
import stem4d_dask as s4
from stem4d_dask.io import zarr_store

done = []
original = zarr_store._write_shard
def write_then_die(*args):
    original(*args)
    done.append(1)
    if len(done) == 3:
        os.kill(os.getpid(), signal.SIGKILL)
zarr_store._write_shard = write_then_die
dask.config.set(scheduler="synchronous")
dc = s4.read(sys.argv[1], q_pixel_size=0.3, q_units="mrad")
s4.to_zarr(dc, sys.argv[2], chunks=(1, 9), progress=False)
"""


def store_files(path: Path) -> dict:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


def test_killed_write_resumes_identically(tmp_path, cube_u16):
    np.save(tmp_path / "in.npy", cube_u16)
    out = tmp_path / "out.zarr"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "in.npy"), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    partial = tmp_path / "out.zarr.partial"
    assert not out.exists() and partial.is_dir()
    markers = [m for m in os.listdir(partial / ".stem4d-progress") if m != "settings.json"]
    assert len(markers) == 3

    dc = s4.read(tmp_path / "in.npy", q_pixel_size=0.3, q_units="mrad")
    written = []
    from stem4d_dask.io import zarr_store

    original = zarr_store._write_shard

    def counting(*args):
        written.append(args[2])
        original(*args)

    zarr_store._write_shard = counting
    try:
        s4.to_zarr(dc, out, chunks=(1, 9), resume=True, progress=False)
    finally:
        zarr_store._write_shard = original
    assert len(written) == 7 - 3  # finished shards skipped
    s4.to_zarr(dc, tmp_path / "clean.zarr", chunks=(1, 9), progress=False)
    assert store_files(out) == store_files(tmp_path / "clean.zarr")
    assert np.array_equal(s4.read(out).values, cube_u16)


def test_resume_keeps_a_finished_store_and_refuses_one_that_differs(tmp_path, dc_u16):
    import pytest

    out = s4.to_zarr(dc_u16, tmp_path / "done.zarr", chunks=(2, 9), progress=False)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert s4.to_zarr(dc_u16, out, chunks=(2, 9), resume=True, progress=False) == out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing rewritten
    with pytest.raises(ValueError, match=r"resume: .* differs .* in dtype uint16 \(stored\)"):
        s4.to_zarr(dc_u16.astype("float32"), out, chunks=(2, 9), resume=True)
    with pytest.raises(ValueError, match=r"in chunks \(2, 9, 12, 10\) \(stored\) != \(3, 9"):
        s4.to_zarr(dc_u16, out, chunks=(3, 9), resume=True)
    with pytest.raises(ValueError, match=r"in shape \(7, 9, 12, 10\) \(stored\) != \(2, 9"):
        s4.to_zarr(dc_u16.isel(Rx=slice(0, 2)), out, chunks=(2, 9), resume=True)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
