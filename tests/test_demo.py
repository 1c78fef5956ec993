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
    for name in ("mean_pattern.png", "virtual_bright_field.png"):
        image = imread(out / name)
        assert image.shape[0] > 200 and image.std() > 0.05  # a real picture, not blank
