from matplotlib.image import imread

import stem4d_dask as s4
from stem4d_dask.cli import main


def test_demo_writes_store_and_figures(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--scan", "16,20", "--detector", "32,32"]) == 0
    text = capsys.readouterr().out
    assert "scan rotation 15 deg" in text
    dc = s4.read(out / "demo.zarr")
    assert dc.shape == (16, 20, 32, 32)
    totals = dc.values.sum(axis=(2, 3))
    assert 1800 < totals.mean() < 2100  # 2000 e- per pattern less a little absorption
    line = next(t for t in text.splitlines() if t.startswith("DPC: recovered scan rotation"))
    recovered = float(line.split("rotation ")[1].split(" deg")[0])
    assert abs(recovered - 15) <= 1 and "transpose False (true False)" in line
    for name in (
        "mean_pattern.png",
        "virtual_bright_field.png",
        "dpc_phase.png",
        "dpc_rotation.png",
        "dpc_center_of_mass.png",
        "dpc_complex_com.png",
    ):
        image = imread(out / name)
        assert image.shape[0] > 200 and image.std() > 0.05  # a real picture, not blank
