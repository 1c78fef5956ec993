"""``stem4d demo`` on a small scan: the whole pipeline runs, recovers the scan rotation and
leaves readable files and figures behind."""

import numpy as np
from matplotlib.image import imread

import stem4d_dask as s4
from stem4d_dask.cli import main
from stem4d_dask.demo import STEPS
from stem4d_dask.events import ElectronEvents


def test_demo_runs_the_pipeline(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--scan", "24,24", "--detector", "32,32", "--quiet"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "scan rotation 15 deg" in text

    line = next(t for t in text.splitlines() if t.startswith("DPC: recovered scan rotation"))
    recovered = float(line.split("rotation ")[1].split(" deg")[0])
    assert abs(recovered - 15) <= 2 and "transpose False (true False)" in line

    summary = text.split("summary:")[1].splitlines()
    for step in STEPS:  # every step: its time, and GB/s where it passes over the scan
        row = next(t for t in summary if t.strip().startswith(step))
        assert "s " in row
    assert "5 of 5 planted" in text

    raw = s4.read(out / "demo.mib")  # the detector file, read back lazily
    assert raw.shape == (24, 24, 32, 32)
    assert raw.dtype.itemsize == 2 and int(raw.max()) <= 4095  # 12-bit counts
    store = out / "converted" / "demo.zarr"
    converted = s4.read(store)
    assert converted.shape == (24, 24, 16, 16)  # binned 2x
    totals = converted.values.sum(axis=(2, 3))  # dark subtracted, hot pixels repaired
    assert 1800 < totals.mean() < 2100  # 2000 e- per pattern less a little absorption
    steps = [s["function"] for s in s4.read_provenance(store)["steps"]]
    assert steps == ["subtract_dark", "filter_hot_pixels", "bin_data_diffraction"]
    events = ElectronEvents.from_zarr(out / "events.zarr")
    assert events.detector_shape == (32, 32) and int(events.n_events) > 0
    assert np.load(out / "dark.npy").shape == (32, 32)

    figures = sorted(out.glob("*.png"))
    assert len(figures) >= 6, figures
    for path in figures:
        image = imread(path)
        assert image.shape[0] > 200 and image.std() > 0.05, path  # a picture, not blank
    names = {p.name for p in figures}
    assert {"mean_pattern.png", "hot_pixel_mask.png", "virtual_bright_field.png"} <= names
    assert {"dpc_phase.png", "dpc_center_of_mass.png", "counted_pattern.png"} <= names
