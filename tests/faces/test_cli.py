import subprocess
import sys

import numpy as np
import pytest

import stem4d_dask as s4
from stem4d_dask.cli import main


def test_info_prints_shape_calibration_and_size(tmp_path, capsys, dc_u16):
    s4.to_zarr(dc_u16, tmp_path / "c.zarr", progress=False)
    assert main(["info", str(tmp_path / "c.zarr")]) == 0
    out = capsys.readouterr().out
    assert "(7, 9, 12, 10)" in out and "uint16" in out
    assert "1.5 A" in out and "0.25 mrad" in out and "300000 eV" in out
    assert "on disk" in out


def test_convert_npy_to_zarr_with_chunks(tmp_path, capsys, cube_u16):
    np.save(tmp_path / "c.npy", cube_u16)
    out = tmp_path / "c.zarr"
    assert (
        main(
            ["convert", str(tmp_path / "c.npy"), str(out), "--chunks", "2,9", "--compressor", "lz4"]
        )
        == 0
    )
    dc = s4.read(out)
    assert dc.data.chunks[0] == (2, 2, 2, 1)
    assert np.array_equal(dc.values, cube_u16)
    assert "wrote" in capsys.readouterr().out


def test_convert_raw_with_shape(tmp_path, cube_u16):
    (tmp_path / "r.bin").write_bytes(cube_u16.tobytes())
    assert (
        main(
            [
                "convert",
                str(tmp_path / "r.bin"),
                str(tmp_path / "r.zarr"),
                "--shape",
                "63,12,10",
                "--scan-shape",
                "7,9",
                "--dtype",
                "uint16",
            ]
        )
        == 0
    )
    assert np.array_equal(s4.read(tmp_path / "r.zarr").values, cube_u16)


def test_convert_with_binning_matches_the_functions(tmp_path, cube_u16):
    from stem4d_dask.preprocess import bin_data_diffraction, bin_data_real, thin_data_real

    np.save(tmp_path / "c.npy", cube_u16)
    assert (
        main(
            [
                "convert",
                str(tmp_path / "c.npy"),
                str(tmp_path / "b.zarr"),
                "--bin-q",
                "2",
                "--bin-r",
                "2",
                "--thin-r",
                "1",
            ]
        )
        == 0
    )
    out = s4.read(tmp_path / "b.zarr")
    ref = bin_data_diffraction(bin_data_real(thin_data_real(s4.read(tmp_path / "c.npy"), 1), 2), 2)
    assert out.shape == (3, 4, 6, 5) and out.dtype == np.uint32  # 16 x 65535 fits uint32
    np.testing.assert_array_equal(out.values, ref.values)
    assert out.attrs["q_pixel_size"] == 2 and out.attrs["r_pixel_size"] == 2


@pytest.mark.parametrize(
    "args",
    [
        ["info", "missing.npy"],
        ["convert", "notes.txt", "o.zarr"],
        ["convert", "c.npy", "o.zarr", "--chunks", "a,b"],
        ["convert", "c.npy", "o.zarr", "--bin-q", "0"],
    ],
)
def test_errors_exit_nonzero_with_one_line(tmp_path, capsys, monkeypatch, cube_u16, args):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not a datacube")
    np.save(tmp_path / "c.npy", cube_u16)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"stem4d {args[0]}: error:") and "\n" not in err
    assert not (tmp_path / "o.zarr").exists()


def test_console_script_entry_point(tmp_path, cube_u16):
    np.save(tmp_path / "c.npy", cube_u16)
    proc = subprocess.run(
        [sys.executable, "-m", "stem4d_dask.cli", "info", str(tmp_path / "c.npy")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and "(7, 9, 12, 10)" in proc.stdout


def test_info_on_real_py4dstem_file(shared_data, capsys):
    assert main(["info", str(shared_data / "py4dstem" / "py4DSTEM_size2x3x4x5.h5")]) == 0
    out = capsys.readouterr().out
    assert "(2, 3, 4, 5)" in out and "float32" in out and "nm" in out and "A^-1" in out


def test_convert_to_h5_and_back(tmp_path, dc_u16, cube_u16):
    s4.to_zarr(dc_u16, tmp_path / "c.zarr", progress=False)
    assert main(["convert", str(tmp_path / "c.zarr"), str(tmp_path / "c.h5")]) == 0
    back = s4.read(tmp_path / "c.h5")
    assert np.array_equal(back.values, cube_u16) and back.attrs == dc_u16.attrs
    assert main(["convert", str(tmp_path / "c.zarr"), str(tmp_path / "d.h5"), "--resume"]) == 2


def test_convert_resume_finishes_partial_store(tmp_path, cube_u16):
    np.save(tmp_path / "c.npy", cube_u16)
    out = tmp_path / "o.zarr"

    def fail_on_third_block(block, block_info=None):
        if block_info[0]["chunk-location"][0] == 2:
            raise OSError("detector server went away")
        return block

    dc = s4.read(tmp_path / "c.npy", chunks=(2, 9))
    broken = dc.copy(data=dc.data.map_blocks(fail_on_third_block, dtype=dc.dtype))
    with pytest.raises(OSError, match="went away"):
        s4.to_zarr(broken, out, progress=False)
    assert not out.exists()
    assert main(["convert", str(tmp_path / "c.npy"), str(out), "--chunks", "2,9", "--resume"]) == 0
    assert not (tmp_path / "o.zarr.partial").exists()
    assert np.array_equal(s4.read(out).values, cube_u16)


def test_dpc_command_recovers_rotation_and_writes_figures(tmp_path, capsys):
    from stem4d_dask.synthetic import dpc_scan

    scan = dpc_scan((24, 24), (32, 32), rotation_deg=-30, seed=2)
    s4.to_zarr(scan.datacube, tmp_path / "scan.zarr", progress=False)
    assert (
        main(["dpc", str(tmp_path / "scan.zarr"), "--out", str(tmp_path / "dpc"), "--quiet"]) == 0
    )
    text = capsys.readouterr().out
    rotation = float(text.split("rotation ")[1].split(" deg")[0])
    assert abs(rotation + 30) <= 1 and "transpose False" in text
    phase = np.load(tmp_path / "dpc" / "dpc_phase.npy")
    assert phase.shape == (24, 24) and np.isfinite(phase).all()
    for name in ("dpc_phase", "dpc_rotation", "dpc_center_of_mass", "dpc_complex_com"):
        assert (tmp_path / "dpc" / f"{name}.png").stat().st_size > 10_000
    assert main(["dpc", str(tmp_path / "scan.zarr"), "--padding", "0.5"]) == 2


def test_count_command_writes_events_that_match_the_function(tmp_path, capsys):
    from stem4d_dask.events import ElectronEvents
    from stem4d_dask.preprocess.electroncount import electron_count
    from stem4d_dask.synthetic_counting import counting_scan

    scan = counting_scan((6, 5), (32, 32), seed=1)
    s4.to_zarr(scan.datacube, tmp_path / "raw.zarr", progress=False)
    np.save(tmp_path / "dark.npy", scan.dark)
    assert (
        main(
            [
                "count",
                str(tmp_path / "raw.zarr"),
                str(tmp_path / "ev.zarr"),
                "--dark",
                str(tmp_path / "dark.npy"),
                "--sub-pixel",
                "--bin",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    assert "on disk" in capsys.readouterr().out
    stored = ElectronEvents.from_zarr(tmp_path / "ev.zarr").compute()
    ref = electron_count(
        s4.read(tmp_path / "raw.zarr"), scan.dark, Nsamples=30, binfactor=2, sub_pixel=True, seed=0
    ).compute()
    assert stored.n_events == ref.n_events > 0 and stored.detector_shape == (16, 16)
    assert main(["info", str(tmp_path / "ev.zarr")]) == 0
    info = capsys.readouterr().out
    assert "electron events" in info and "detector     (16, 16)" in info
    assert f"items        {stored.n_events} " in info and "qx float32" in info
    for a, b in zip(stored.blocks.ravel(), ref.blocks.ravel(), strict=True):
        np.testing.assert_array_equal(a.indptr, b.indptr)
        np.testing.assert_array_equal(a.qx, b.qx)
    assert (
        main(
            [
                "count",
                str(tmp_path / "raw.zarr"),
                str(tmp_path / "x.zarr"),
                "--dark",
                str(tmp_path / "dark.txt"),
            ]
        )
        == 2
    )


def test_peaks_command_writes_what_find_peaks_finds_and_info_describes_it(tmp_path, capsys):
    from stem4d_dask.peaks import BraggPeaks, find_peaks

    rng = np.random.default_rng(3)
    x, y = np.meshgrid(np.arange(40), np.arange(40), indexing="ij")
    cube = np.zeros((4, 3, 40, 40), np.float32)
    for r in np.ndindex(4, 3):
        for px, py in rng.uniform(6, 34, (3, 2)):
            cube[r] += 50 * np.exp(-((x - px) ** 2 + (y - py) ** 2) / 4)
    np.save(tmp_path / "s.npy", cube)
    args = ["peaks", str(tmp_path / "s.npy"), str(tmp_path / "p.zarr"), "--quiet"]
    assert main([*args, "--min-relative-intensity", "0.2", "--bvm", str(tmp_path / "b.png")]) == 0
    out = capsys.readouterr().out
    stored = BraggPeaks.from_zarr(tmp_path / "p.zarr")
    ref = find_peaks(s4.read(tmp_path / "s.npy"), minRelativeIntensity=0.2)
    assert f"wrote {tmp_path / 'p.zarr'}: {stored.n_items} peaks" in out
    for r in np.ndindex(4, 3):
        np.testing.assert_array_equal(stored[r]["qx"], ref[r]["qx"])
    assert (tmp_path / "b.png").stat().st_size > 1000
    assert main(["info", str(tmp_path / "p.zarr")]) == 0
    info = capsys.readouterr().out
    assert "BraggPeaks" in info and f"items        {stored.n_items}" in info
    assert "qx_cal <f8 [pixels]" in info
    assert main(args) == 2  # exists: refused without --overwrite
    assert main([*args, "--overwrite", "--max-peaks", "-1"]) == 2  # the option named
    assert "--max-peaks" in capsys.readouterr().err


def test_info_shows_value_range_format_and_metadata(tmp_path, capsys):
    dc = s4.from_array(
        np.zeros((2, 2, 4, 4), np.uint16),
        value_range=(0, 4095),
        attrs={"format": "merlin", "metadata": {"header": {"depth": 12, "note": "x" * 100}}},
    )
    s4.to_zarr(dc, tmp_path / "m.zarr", progress=False)
    assert main(["info", str(tmp_path / "m.zarr")]) == 0
    out = capsys.readouterr().out
    assert "values       0 .. 4095" in out and "format       merlin" in out
    assert "depth" in out and "x" * 67 + "..." in out
    assert main(["info", str(tmp_path / "m.zarr"), "--all"]) == 0
    assert "x" * 100 in capsys.readouterr().out
    assert main(["info", str(tmp_path / "m.zarr"), "--format", "npy"]) == 2


@pytest.mark.parametrize(
    "command",
    [
        ["convert", "in.npy", "out.zarr"],
        ["dpc", "in.zarr"],
        ["count", "in", "out", "--dark", "d"],
        ["peaks", "in", "out"],
        ["demo"],
    ],
)
def test_every_computing_command_takes_scheduler_memory_limit_and_quiet(command):
    from stem4d_dask.cli import build_parser

    args = build_parser().parse_args(
        [*command, "--scheduler", "local:2", "--memory-limit", "1GiB", "--quiet"]
    )
    assert (args.scheduler, args.memory_limit, args.quiet) == ("local:2", "1GiB", True)


def test_demo_on_a_named_scheduler_is_quiet_with_quiet(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--scan", "8,8", "--detector", "32,32"]
    assert main([*argv, "--scheduler", "synchronous", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "recovered scan rotation" in captured.out
    assert (out / "dpc_phase.png").is_file()
