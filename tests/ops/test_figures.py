"""The figures a new user sees: colour maps and limits, colour bars sized to their images and
clear of their neighbours, one units style, the colour wheel's scale, the phase in radians,
the detector radius in a virtual image's title, pyplot integration (``plt.savefig`` after
``visualize()``), and the reconstruction's stop (information, not a warning; counts that
match; no NaN success)."""

import os
import subprocess
import sys
import textwrap
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.image import imread

from stem4d_dask.detectors import circle_mask
from stem4d_dask.phase import DPC, plots
from stem4d_dask.phase.dpc_results import ReconstructionError
from stem4d_dask.plotting import radius_text, save_image_png
from stem4d_dask.synthetic import dpc_scan
from stem4d_dask.virtual import virtual_image

QUIET = {"plot_center_of_mass": False, "plot_rotation": False}


def scan(**kwargs):
    """A small non-square calibrated scan: Å scan, mrad detector at 300 kV."""
    kw = {"q_pixel_size": 0.25, "q_units": "mrad", "energy": 300e3, "seed": 0}
    return dpc_scan((24, 16), (32, 32), **(kw | kwargs))


@pytest.fixture(scope="module")
def dpc():
    d = DPC(scan().datacube, verbose=False).preprocess(**QUIET)
    return d.reconstruct(progress_bar=False)


@pytest.fixture(autouse=True)
def close_pyplot():
    yield
    plt.close("all")


def images(fig):
    """``[(axes, AxesImage)]`` of the image panels of ``fig`` (colour bars excluded)."""
    return [(ax, ax.images[0]) for ax in fig.axes if ax.images]


def colorbar_of(im):
    return im.colorbar


# ---- 1: colour maps


def test_raw_com_sequential_signed_com_diverging_centred(dpc):
    fig = plots.dpc_com_figure(dpc, all_fields=True, fig=plots.new_figure((9, 11), False))
    panels = {ax.get_title(): im for ax, im in images(fig)}
    for title in ("Measured CoM_x", "Measured CoM_y"):
        im = panels[title]
        assert im.get_cmap().name == "viridis"
        values = im.get_array()
        assert im.norm.vmin == pytest.approx(values.min()) and im.norm.vmin > 0
    signed = [t for t in panels if t.startswith(("Normalized", "Corrected"))]
    assert len(signed) == 4
    for title in signed:
        im = panels[title]
        assert im.get_cmap().name == "RdBu_r"
        assert im.norm.vmin == -im.norm.vmax
        assert im.norm.vmax == pytest.approx(np.abs(im.get_array()).max())


# ---- 2: colour bars as tall as their images, labels clear of the neighbours


@pytest.mark.parametrize("shape", [(24, 16), (16, 40)])
def test_colorbars_match_images_and_labels_do_not_collide(shape):
    d = DPC(dpc_scan(shape, (32, 32), seed=1).datacube, verbose=False).preprocess(**QUIET)
    fig = plots.dpc_com_figure(d, all_fields=True, fig=plots.new_figure((9, 11), False))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    rows = {}
    for ax, im in images(fig):
        cax = im.colorbar.ax
        img, bar = ax.get_position(), cax.get_position()
        assert bar.y0 == pytest.approx(img.y0, abs=2e-3)
        assert bar.height == pytest.approx(img.height, abs=2e-3)
        rows.setdefault(round(img.y0, 2), []).append((ax, cax))
    for row in rows.values():
        row.sort(key=lambda pair: pair[0].get_position().x0)
        for (_, cax), (right, _) in zip(row, row[1:], strict=False):
            label = cax.yaxis.label.get_window_extent(renderer)
            neighbour = right.yaxis.label.get_window_extent(renderer)
            ticks = right.get_yaxis().get_tightbbox(renderer)
            assert label.x1 < neighbour.x0 and label.x1 < ticks.x0
    width = fig.bbox.width
    for ax in fig.axes:  # nothing clipped at the figure's edge
        assert ax.get_tightbbox(renderer).x1 <= width + 1


# ---- 3: one units style


def test_units_written_in_parentheses(dpc, tmp_path):
    figs = plots.dpc_figures(dpc, phase=True)
    figs["image"] = plots.new_figure((4, 4), False)
    texts = []
    for fig in figs.values():
        fig.canvas.draw()
        for ax in fig.axes:
            texts += [ax.get_xlabel(), ax.get_ylabel(), ax.get_title()]
    joined = " ".join(texts)
    assert "[" not in joined and "]" not in joined
    assert "Rx (A)" in texts and "Ry (A)" in texts and "rotation (deg)" in texts
    assert "position (pixels)" in texts and "shift (A^-1)" in texts


# ---- 4: the colour wheel's axes and magnitude scale


def test_colour_wheel_has_both_components_and_magnitude_scale(dpc):
    fig = plots.dpc_complex_figure(dpc, vmax=0.02)
    wheel = fig.axes[1]
    assert wheel.get_xlabel() == "CoM y (A^-1)" and wheel.get_ylabel() == "CoM x (A^-1)"
    assert list(wheel.get_xticks()) == [-0.02, 0.0, 0.02]
    assert wheel.images[0].get_extent() == [-0.02, 0.02, 0.02, -0.02]
    assert "0.02" in wheel.get_title()
    default = plots.dpc_complex_figure(dpc).axes[1]
    vmax = plots.complex_vmax(dpc.com_x.values, dpc.com_y.values)
    assert default.get_xticks()[-1] == pytest.approx(vmax)


# ---- 5: the phase in radians


def test_phase_colorbar_in_radians(dpc):
    assert dpc.object_phase.attrs["units"] == "rad/(2 pi)"
    np.testing.assert_allclose(dpc.phase_rad, 2 * np.pi * dpc.object_phase.values, rtol=1e-6)
    fig = plots.dpc_phase_figure(dpc)
    (_, im), *_ = images(fig)
    assert im.colorbar.ax.get_ylabel() == "phase (rad)"
    np.testing.assert_allclose(im.get_array(), dpc.phase_rad.values, rtol=1e-6)


def test_uncalibrated_phase_says_arbitrary_units():
    d = DPC(dpc_scan((12, 12), (32, 32), seed=0).datacube, verbose=False)
    d.preprocess(**QUIET).reconstruct(progress_bar=False, max_iter=3)
    assert d.object_phase.attrs["units"] == "arb. units"
    with pytest.raises(ValueError, match="arbitrary units"):
        d.phase_rad  # noqa: B018
    (_, im), *_ = images(plots.dpc_phase_figure(d))
    assert "rad" not in im.colorbar.ax.get_ylabel()


# ---- 6: the virtual detector's radius in the title


def test_virtual_image_title_says_the_radius(tmp_path, monkeypatch):
    dc = scan().datacube
    vbf = virtual_image(dc, circle_mask(dc, 8)).compute()
    titles = []
    monkeypatch.setattr("matplotlib.axes.Axes.set_title", lambda ax, t, *a, **k: titles.append(t))
    path = save_image_png(
        vbf,
        tmp_path / "vbf.png",
        title="virtual bright field",
        radius=8,
        q_pixel_size=0.25,
        q_units="mrad",
    )
    assert titles == ["virtual bright field, r = 8 px (2.0 mrad)"]
    assert imread(path).std() > 0.05
    assert radius_text(8) == "r = 8 px" and radius_text(8, 1.0, "pixels") == "r = 8 px"


# ---- 7: pyplot sees the figures


PYPLOT_SCRIPT = """
import sys
import matplotlib.pyplot as plt
from stem4d_dask.phase import DPC
from stem4d_dask.synthetic import dpc_scan

dpc = DPC(dpc_scan((16, 16), (32, 32), seed=0).datacube, verbose=False)
dpc.preprocess(plot_center_of_mass=False, plot_rotation=False)
dpc.reconstruct(progress_bar=False).visualize()
assert plt.gcf() is dpc.figures["phase"]
plt.savefig(sys.argv[1])
plt.show()  # Agg: returns at once
"""


def test_visualize_then_plt_savefig_writes_the_figure(tmp_path):
    path = tmp_path / "phase.png"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    script = textwrap.dedent(PYPLOT_SCRIPT)
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    image = imread(path)
    assert image.shape[0] > 300 and image[..., :3].std() > 0.05  # not blank


def test_figures_without_pyplot_are_not_pyplot_figures(dpc, tmp_path):
    fig = plots.new_figure((3, 3), pyplot=False)
    assert fig.canvas.manager is None
    before = plt.get_fignums()
    dpc.save_figures(tmp_path)  # never through pyplot
    assert plt.get_fignums() == before
    dpc.visualize()  # pyplot is imported here: a pyplot figure
    assert plt.gcf() is dpc.figures["phase"]


# ---- 8, 9: a normal stop is information; counts that match


def test_normal_stop_is_no_warning_and_is_recorded(capsys):
    d = DPC(scan().datacube, verbose=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d.preprocess(**QUIET)
        caught.clear()  # calibration warnings are not the point here
        d.reconstruct(progress_bar=True, stopping_criterion=0.05)
    assert [str(w.message) for w in caught] == []
    assert d.stop_reason.startswith("step size") and "stopping_criterion 0.05" in d.stop_reason
    assert d.iterations_kept == len(d.error_iterations)
    assert d.iterations_run > d.iterations_kept
    assert f"({d.iterations_kept} updates kept" in d.stop_reason
    out, err = capsys.readouterr()
    assert f"Reconstruction stopped: {d.stop_reason}." in out
    final = err.split("\r")[-1].strip()
    n = d.iterations_run
    assert final == f"Reconstructing phase ({d.iterations_kept} kept): {n}/{n} iter"


def test_max_iter_stop_and_quiet_run(capsys):
    d = DPC(scan().datacube, verbose=False).preprocess(**QUIET)
    d.reconstruct(max_iter=5, progress_bar=False)
    assert d.stop_reason == "max_iter reached: 5 iterations (5 updates kept)"
    assert (d.iterations_run, d.iterations_kept) == (5, 5)
    assert capsys.readouterr().out == ""


# ---- 10: fit_function=None reconstructs; NaN is never a success


def test_fit_none_reconstructs_a_finite_phase():
    s = scan()
    d = DPC(s.datacube, verbose=False).preprocess(fit_function=None, **QUIET)
    d.reconstruct(progress_bar=False)
    assert np.isfinite(d.error) and d.error < 0.2
    assert np.abs(d.object_phase.values).max() > 0
    r = np.corrcoef(d.object_phase.values.ravel(), np.ravel(s.potential))[0, 1]
    assert r > 0.9


def test_zero_signal_refused_and_nan_error_raised(monkeypatch):
    s = scan()
    d = DPC(s.datacube, verbose=False).preprocess(**QUIET)
    measured = (d.com_measured_x.values, d.com_measured_y.values)
    zero = DPC(verbose=False).preprocess(
        force_com_measured=measured, force_com_shifts=measured, **QUIET
    )
    with pytest.raises(ValueError, match="zero everywhere"):
        zero.reconstruct(progress_bar=False)
    import stem4d_dask.phase.integrate as integrate

    real = integrate.fourier_integrate

    def nan_error(*args, **kwargs):
        result = real(*args, **kwargs)
        result.error = float("nan")
        return result

    monkeypatch.setattr(integrate, "fourier_integrate", nan_error)
    with pytest.raises(ReconstructionError, match="NaN"):
        d.reconstruct(progress_bar=False, reset=True)
