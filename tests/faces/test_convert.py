"""Batch conversion: many scans, one store each, steps applied on the way, provenance recorded,
failures reported, killed batches resumed to the same bytes."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import dask
import numpy as np
import pytest
from writers_mib import write_mib

import stem4d_dask as s4
from stem4d_dask import lazy
from stem4d_dask import preprocess as pp
from stem4d_dask.cli import main
from stem4d_dask.convert import convert_file, output_name
from stem4d_dask.phase.com import center_of_mass
from stem4d_dask.phase.fit import fit_descan
from stem4d_dask.synthetic import dpc_scan

SCAN, DETECTOR = (8, 6), (16, 16)


def scan_values(seed, descan=(0.0, 0.0), max_shift=2.0):
    """A small uint16 DPC scan (values < 4096, so a 12-bit .mib holds it)."""
    scan = dpc_scan(SCAN, DETECTOR, disk_radius=4, descan=descan, max_shift=max_shift, seed=seed)
    return scan.datacube.values


def store_files(path: Path) -> dict:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


@pytest.fixture
def dark(tmp_path):
    values = np.random.default_rng(3).uniform(0, 2, DETECTOR).astype(np.float32)
    np.save(tmp_path / "dark.npy", values)
    return values


def test_batch_converts_every_readable_scan_and_reports_the_bad_ones(tmp_path, capsys, dark):
    cubes = {name: scan_values(seed) for seed, name in enumerate(("a", "b", "c"))}
    np.save(tmp_path / "a.npy", cubes["a"])
    write_mib(tmp_path / "b.mib", cubes["b"], depth=12)
    s4.to_zarr(s4.from_array(cubes["c"]), tmp_path / "c.zarr", progress=False)
    (tmp_path / "notes.txt").write_text("not a scan")
    np.save(tmp_path / "short.npy", cubes["a"])
    with open(tmp_path / "short.npy", "r+b") as f:  # a truncated file fails at open
        f.truncate(os.path.getsize(tmp_path / "short.npy") - 100)
    out = tmp_path / "out"
    args = [str(tmp_path / n) for n in ("a.npy", "b.mib", "c.zarr", "notes.txt", "short.npy")]
    code = main(["convert", *args, str(out), "--dark", str(tmp_path / "dark.npy")])
    assert code == 1
    table = capsys.readouterr().out
    assert "3 of 5 converted, 2 failed" in table
    assert "notes.txt" in table and "UnsupportedFormatError" in table
    assert "short.npy" in table and "bytes missing" in table
    assert sorted(p.name for p in out.iterdir()) == ["a.zarr", "b.zarr", "c.zarr"]
    for name, cube in cubes.items():
        stored = s4.read(out / f"{name}.zarr")
        np.testing.assert_array_equal(stored.values, cube.astype(np.float32) - dark)
        steps = s4.read_provenance(out / f"{name}.zarr")["steps"]
        assert steps[0]["function"] == "subtract_dark"
    source = s4.read_provenance(out / "b.zarr")["source"]
    assert source["path"] == str((tmp_path / "b.mib").resolve()) and source["format"] == "merlin"
    assert source["size"] == os.path.getsize(tmp_path / "b.mib")
    assert source["mtime_ns"] == os.stat(tmp_path / "b.mib").st_mtime_ns
    # a pattern matching nothing fails its row; all good: exit 0
    summary = s4.convert([tmp_path / "a.npy", tmp_path / "x*.none"], tmp_path / "o3")
    assert [r.status for r in summary] == ["done", "failed"] and not summary.ok
    assert "no file matches" in summary[1].reason
    assert main(["convert", str(tmp_path / "a.npy"), str(tmp_path / "o4"), "--quiet"]) == 0


def test_steps_give_the_values_of_the_functions(tmp_path, dark):
    cube = scan_values(4, descan=(0.3, -0.2), max_shift=0.2)  # mostly descan
    cube[:, :, 5, 9] += 900  # a hot pixel in every frame
    np.save(tmp_path / "s.npy", cube)
    steps = [
        ("subtract_dark", {"darkref": tmp_path / "dark.npy"}),
        ("filter_hot_pixels", {"thresh": 300, "sample": None}),
        ("bin_data_diffraction", {"bin_factor": 2}),
        ("center_patterns", {"fit_function": "plane", "sample": None}),
    ]
    options = {"read_options": {"chunks": (2, 6)}, "progress": False}
    assert s4.convert(tmp_path / "s.npy", tmp_path / "out", steps, **options).ok
    dc = s4.read(tmp_path / "s.npy", chunks=(2, 6))
    ref = pp.bin_data_diffraction(pp.filter_hot_pixels(pp.subtract_dark(dc, dark), 300), 2)
    com = center_of_mass(ref)
    ref = pp.center_patterns(ref, *fit_descan(com.com_x.values, com.com_y.values, "plane"))
    out = s4.read(tmp_path / "out" / "s.zarr")
    np.testing.assert_array_equal(out.values, ref.values)
    assert out.attrs["q_pixel_size"] == 2 and out.dtype == np.float32
    recorded = s4.read_provenance(tmp_path / "out" / "s.zarr")["steps"]
    assert recorded[1]["measured"]["hot_pixels"] == [[5, 9]]

    # sampled measurement (2 of the 4 bands of scan chunks): the same hot pixel, a close fit
    steps[1][1]["sample"] = steps[3][1]["sample"] = 2
    sampled = s4.apply_steps(dc, steps)
    measured = sampled.attrs["provenance"]["steps"]
    assert measured[1]["measured"] == {"positions": 24, "n_hot_pixels": 1, "hot_pixels": [[5, 9]]}
    full = recorded[3]["measured"]
    for key in ("qx0", "qy0"):
        np.testing.assert_allclose(measured[3]["measured"][key], full[key], atol=0.1)
    np.testing.assert_allclose(sampled.values, ref.values, atol=0.05 * float(ref.max()))

    # scan thinning and binning, as the functions do them
    steps = [("thin_data_real", {"thinning_factor": 2}), ("bin_data_real", {"bin_factor": 2})]
    result = s4.apply_steps(dc, steps)
    np.testing.assert_array_equal(
        result.values, pp.bin_data_real(pp.thin_data_real(dc, 2), 2).values
    )


def test_provenance_round_trips_and_reapplies_to_another_scan(tmp_path, capsys, dark):
    for seed, name in enumerate(("a", "b")):
        np.save(tmp_path / f"{name}.npy", scan_values(seed, descan=(0.2, 0.1)))
    steps = [
        ("subtract_dark", {"darkref": str(tmp_path / "dark.npy")}),
        ("bin_data_diffraction", {"bin_factor": 2}),
        ("center_patterns", {"fit_function": "parabola", "bilinear": True}),
    ]
    s4.convert(tmp_path / "a.npy", tmp_path / "out", steps, progress=False)
    record = s4.read_provenance(tmp_path / "out" / "a.zarr")
    assert record == json.loads(json.dumps(record))  # plain JSON
    assert record["package"]["version"] == s4.__version__
    assert [s["function"] for s in record["steps"]] == [
        "subtract_dark",
        "bin_data_diffraction",
        "center_patterns",
    ]
    assert record["steps"][2]["parameters"]["bilinear"] is True

    again = s4.apply_steps(s4.read(tmp_path / "b.npy"), record)
    s4.convert(tmp_path / "b.npy", tmp_path / "out", record["steps"], progress=False)
    np.testing.assert_array_equal(again.values, s4.read(tmp_path / "out" / "b.zarr").values)
    strip = [{k: v for k, v in s.items() if k != "measured"} for s in record["steps"]]
    b_steps = s4.read_provenance(tmp_path / "out" / "b.zarr")["steps"]
    assert [{k: v for k, v in s.items() if k != "measured"} for s in b_steps] == strip

    assert main(["info", str(tmp_path / "out" / "a.zarr")]) == 0
    text = capsys.readouterr().out
    assert "provenance   stem4d_dask" in text and "a.npy (npy" in text
    assert "2. bin_data_diffraction(bin_factor=2, dtype=None)" in text and "measured:" in text

    np.save(tmp_path / "dark.npy", dark + 1)  # the recorded dark changed: refused
    with pytest.raises(ValueError, match="darkref: .*dark.npy has changed"):
        s4.apply_steps(s4.read(tmp_path / "b.npy"), record)
    in_memory = s4.apply_steps(s4.read(tmp_path / "b.npy"), [("subtract_dark", {"darkref": dark})])
    with pytest.raises(ValueError, match="darkref: the record is of an array given in memory"):
        s4.apply_steps(s4.read(tmp_path / "a.npy"), in_memory.attrs["provenance"])


def test_a_batch_failing_mid_way_resumes_to_identical_stores(tmp_path, monkeypatch, dark):
    for seed, name in enumerate(("a", "b", "c")):
        np.save(tmp_path / f"{name}.npy", scan_values(seed))
    inputs = [tmp_path / f"{n}.npy" for n in ("a", "b", "c")]
    steps = [
        ("subtract_dark", {"darkref": tmp_path / "dark.npy"}),
        ("bin_data_real", {"bin_factor": 2}),
    ]
    options = {"read_options": {"chunks": (2, 2)}, "progress": False}
    reads = []
    original = lazy.RawFileLoader.__call__

    def failing(self, slices):
        reads.append(Path(self.path).name)
        if reads[-1] == "b.npy" and reads.count("b.npy") == 3:
            raise OSError("detector server went away")
        return original(self, slices)

    monkeypatch.setattr(lazy.RawFileLoader, "__call__", failing)
    with dask.config.set(scheduler="synchronous"):
        first = s4.convert(inputs, tmp_path / "out", steps, **options)
    assert [r.status for r in first] == ["done", "failed", "done"]
    reason = first[1].reason  # the file and the chunk's scan positions, then the cause
    assert reason.startswith(f"ChunkReadError: {inputs[1]}: the chunk at Rx 6:8, Ry 0:2"), reason
    assert reason.endswith("detector server went away")
    assert (tmp_path / "out" / "b.zarr.partial").is_dir()

    monkeypatch.setattr(lazy.RawFileLoader, "__call__", original)
    second = s4.convert(inputs, tmp_path / "out", steps, resume=True, **options)
    assert [r.status for r in second] == ["skipped", "resumed", "skipped"]
    clean = s4.convert(inputs, tmp_path / "clean", steps, **options)
    assert clean.ok
    for name in ("a", "b", "c"):
        done = store_files(tmp_path / "out" / f"{name}.zarr")
        assert done == store_files(tmp_path / "clean" / f"{name}.zarr")
    # another conversion under the same name is not resumed over
    with pytest.raises(ValueError, match="differs in steps"):
        convert_file(inputs[0], tmp_path / "out" / "a.zarr", steps[:1], resume=True, **options)


KILLED_CHILD = r"""
import os, signal, sys
import dask
from stem4d_dask import lazy
from stem4d_dask.cli import main

import importlib
convert = importlib.import_module("stem4d_dask.convert")
read = convert.read
convert.read = lambda path, **options: read(path, chunks=(1, 6), **options)  # 8 chunks a scan
original, calls = lazy.RawFileLoader.__call__, []
def read_then_die(self, slices):
    calls.append(1)
    if len(calls) == 11:  # a.npy whole (8 chunks), then 3 of b.npy
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, slices)
lazy.RawFileLoader.__call__ = read_then_die
dask.config.set(scheduler="synchronous")
main(sys.argv[1:])
"""


def test_a_killed_batch_resumes_from_the_command_line(tmp_path, capsys):
    for seed, name in enumerate(("a", "b")):
        np.save(tmp_path / f"{name}.npy", scan_values(seed))
    args = ["convert", str(tmp_path / "*.npy"), "--chunks", "1,6", "--bin-q", "2", "--quiet"]
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_CHILD, *args[:2], str(tmp_path / "out"), *args[2:]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (tmp_path / "out" / "a.zarr").is_dir() and not (tmp_path / "out" / "b.zarr").exists()
    assert main([*args[:2], str(tmp_path / "out"), *args[2:], "--resume"]) == 0
    assert "skipped" in capsys.readouterr().out
    assert main([*args[:2], str(tmp_path / "clean"), *args[2:]]) == 0
    for name in ("a", "b"):
        done = store_files(tmp_path / "out" / f"{name}.zarr")
        assert done == store_files(tmp_path / "clean" / f"{name}.zarr")


def test_counting_writes_an_events_store_with_its_provenance(tmp_path):
    from stem4d_dask.events import ElectronEvents
    from stem4d_dask.preprocess.electroncount import electron_count
    from stem4d_dask.synthetic_counting import counting_scan

    scan = counting_scan((6, 5), (32, 32), seed=1)
    np.save(tmp_path / "raw.npy", scan.datacube.values)
    np.save(tmp_path / "dark.npy", scan.dark)
    args = ["convert", str(tmp_path / "raw.npy"), str(tmp_path / "out"), "--quiet"]
    assert main([*args, "--count", "--dark", str(tmp_path / "dark.npy"), "--bin-q", "2"]) == 0
    store = tmp_path / "out" / output_name("raw.npy", events=True)
    stored = ElectronEvents.from_zarr(store).compute()
    ref = electron_count(
        s4.read(tmp_path / "raw.npy"), scan.dark, Nsamples=30, binfactor=2, sub_pixel=False, seed=0
    ).compute()
    assert stored.n_events == ref.n_events > 0 and stored.detector_shape == (16, 16)
    for a, b in zip(stored.blocks.ravel(), ref.blocks.ravel(), strict=True):
        np.testing.assert_array_equal(a.qx, b.qx)
    (step,) = s4.read_provenance(store)["steps"]
    assert step["function"] == "electron_count" and step["measured"] == {"Nsamples": 30}
    assert step["parameters"]["binfactor"] == 2 and step["parameters"]["sub_pixel"] is False


@pytest.mark.parametrize(
    "extra",
    [
        ["--count"],  # no dark
        ["--count", "--dark", "dark.npy", "--center", "plane"],
        ["--dark", "dark.txt"],
        ["--bin-q", "0"],
        ["--hot-pixels", "-1"],
        ["--compressor", "lz4", "--clevel", "12"],
    ],
)
def test_bad_arguments_exit_2_before_anything_is_written(tmp_path, monkeypatch, capsys, extra):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "a.npy", scan_values(0))
    np.save(tmp_path / "dark.npy", np.zeros(DETECTOR))
    assert main(["convert", "a.npy", "out", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stem4d convert: error:") and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_bad_steps_and_folders_name_the_problem(tmp_path):
    np.save(tmp_path / "a.npy", scan_values(0))
    write_mib(tmp_path / "a.mib", scan_values(1), depth=12)
    cases = [
        ([("bin", {})], "steps\\[0\\]: unknown function 'bin'"),
        ([("bin_data_diffraction", {"factor": 2})], "unknown parameter.*'factor'"),
        ([("bin_data_real", {})], "bin_factor is required"),
        ([("center_patterns", {"fit_function": "cubic"})], "fit_function must be one of"),
        (
            [
                ("electron_count", {"darkreference": np.zeros(DETECTOR)}),
                ("bin_data_real", {"bin_factor": 2}),
            ],
            "electron_count .* must be the last step",
        ),
    ]
    for steps, match in cases:
        with pytest.raises(ValueError, match=match):
            s4.convert(tmp_path / "a.npy", tmp_path / "out", steps)
    with pytest.raises(ValueError, match="both be written to"):
        s4.convert([tmp_path / "a.npy", tmp_path / "a.mib"], tmp_path / "out")
    with pytest.raises(ValueError, match="out_dir: .* is a file"):
        s4.convert(tmp_path / "a.npy", tmp_path / "a.npy")
    assert not (tmp_path / "out").exists()
    # a sample too small for the fit names the parameter, at conversion time
    one_band = s4.convert(
        tmp_path / "a.npy",
        tmp_path / "out",
        [("center_patterns", {"fit_function": "parabola", "sample": 1})],
        read_options={"chunks": (2, 6)},
        progress=False,
    )
    assert "sample: 1 band(s) of scan chunks hold 2 scan row(s)" in one_band[0].reason


def test_single_scan_form_records_provenance(tmp_path, capsys):
    np.save(tmp_path / "a.npy", scan_values(0))
    assert (
        main(["convert", str(tmp_path / "a.npy"), str(tmp_path / "a.zarr"), "--thin-r", "2"]) == 0
    )
    assert "wrote" in capsys.readouterr().out
    record = s4.read_provenance(tmp_path / "a.zarr")
    assert record["steps"] == [{"function": "thin_data_real", "parameters": {"thinning_factor": 2}}]
    assert s4.read(tmp_path / "a.zarr").shape == (4, 3, 16, 16)


def test_process_cluster_converts_as_threads_do(tmp_path, process_client, dark):
    np.save(tmp_path / "a.npy", scan_values(2, descan=(0.2, 0.1)))
    steps = [
        ("subtract_dark", {"darkref": tmp_path / "dark.npy"}),
        ("filter_hot_pixels", {"thresh": 40}),
        ("center_patterns", {"fit_function": "plane"}),
    ]
    options = {"read_options": {"chunks": (2, 6)}, "progress": False}
    with process_client.as_current():
        assert s4.convert(tmp_path / "a.npy", tmp_path / "remote", steps, **options).ok
    with dask.config.set(scheduler="threads"):
        assert s4.convert(tmp_path / "a.npy", tmp_path / "threads", steps, **options).ok
    remote, threads = (s4.read(tmp_path / d / "a.zarr") for d in ("remote", "threads"))
    np.testing.assert_array_equal(remote.values, threads.values)
    assert remote.attrs["provenance"] == threads.attrs["provenance"]
