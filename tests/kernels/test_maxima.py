"""get_maxima_2D / filter_2D_maxima / upsampled_correlation: py4DSTEM 0.14.18 parity (fixtures
from tests/fixtures/make_maxima_fixtures.py), ground truth, the guarded parabola, validation,
no mutation, and the device (cupy-like) code path."""

import json
from pathlib import Path

import numpy as np
import pytest
from fakecupy import FakeCupy

import stem4d_dask.kernels.maxima as km
from stem4d_dask.kernels.maxima import (
    MAXIMA_DTYPE,
    filter_2D_maxima,
    get_maxima_2D,
    to_host,
    upsampled_correlation,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "maxima_py4dstem.npz"
with np.load(FIXTURE) as _z:
    FIX = {k: _z[k] for k in _z.files}
CASES = {c["name"]: c for c in json.loads(str(FIX["cases"]))}
RUN_CASES = [n for n in CASES if f"err__{n}" not in FIX]
FAILED_CASES = [n for n in CASES if f"err__{n}" in FIX]


def run_ours(case):
    inp = np.array(FIX[f"in__{case['input']}"], copy=True)
    kwargs = dict(case["kwargs"])
    ft = None if case["ft_of"] is None else np.fft.fft2(FIX[f"in__{case['ft_of']}"])
    if case["func"] == "get_maxima_2D":
        return get_maxima_2D(inp, _ar_FT=ft, **kwargs)
    if case["func"] == "filter_2D_maxima":
        return filter_2D_maxima(inp, **kwargs)
    return upsampled_correlation(ft, kwargs["upsampleFactor"], kwargs["xyShift"])


def assert_same_maxima(ours, ref, atol=1e-9):
    assert ours.dtype.names == ("x", "y", "intensity")
    assert ours.shape == ref.shape, (ours, ref)
    for field in ("x", "y", "intensity"):
        np.testing.assert_allclose(ours[field], ref[field], rtol=1e-12, atol=atol, err_msg=field)


# --------------------------------------------------------------------------------------------
# parity with py4DSTEM 0.14.18


def test_fixture_cases_present():
    assert len(RUN_CASES) >= 60
    # exactly the cases where py4DSTEM's unguarded parabola gives NaN (tested below)
    assert sorted(FAILED_CASES) == ["huge_poly_all", "loginf_multicorr_all", "loginf_poly_all"]


@pytest.mark.parametrize("name", RUN_CASES)
def test_parity_with_py4dstem(name):
    case = CASES[name]
    ours = run_ours(case)
    ref = FIX[f"out__{name}"]
    if case["func"] == "upsampled_correlation":
        assert ours.shape == (2,)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)
    else:
        assert_same_maxima(ours, ref)


def test_tie_rule_and_sort_ties_in_fixture():
    """The plateaus of the 'peaks' image: one pixel of each pair survives, py4DSTEM's way, and
    equal intensities are ordered by descending x then y."""
    ours = get_maxima_2D(FIX["in__peaks"], subpixel="pixel", maxNumPeaks=None)
    at3 = ours[ours["intensity"] == 3.0]
    assert [(int(r["x"]), int(r["y"])) for r in at3] == [(31, 22), (17, 8), (13, 36), (5, 30)]
    at25 = ours[ours["intensity"] == 2.5]
    assert [(int(r["x"]), int(r["y"])) for r in at25] == [(36, 40), (20, 3)]


@pytest.mark.parametrize(
    ("pair", "winner"),
    [
        (((3, 3), (3, 4)), (3, 3)),  # along y: lower y wins
        (((3, 3), (4, 3)), (3, 3)),  # along x: lower x wins
        (((3, 3), (4, 4)), (3, 3)),  # diagonal: lower index wins
        (((3, 4), (4, 3)), (4, 3)),  # anti-diagonal: (x+1, y-1) wins
    ],
)
def test_tie_rule(pair, winner):
    ar = np.zeros((8, 8))
    for p in pair:
        ar[p] = 1.0
    out = get_maxima_2D(ar, subpixel="pixel", maxNumPeaks=None)
    assert [(out["x"][0], out["y"][0])] == [winner] and len(out) == 1


def test_upsampled_correlation_does_not_round_xyshift_in_place():
    case = CASES["uc_u10_unrounded"]
    xy = np.array(case["kwargs"]["xyShift"])
    before = xy.copy()
    F = np.fft.fft2(FIX[f"in__{case['ft_of']}"])
    F_before = F.copy()
    out = upsampled_correlation(F, 10, xy)
    np.testing.assert_array_equal(xy, before)
    np.testing.assert_array_equal(F, F_before)
    np.testing.assert_allclose(out, FIX["out__uc_u10_unrounded"], atol=1e-9)
    # py4DSTEM rounds its argument to 1/u in place
    np.testing.assert_allclose(FIX["xy_after__uc_u10_unrounded"], [8.4, 11.6])


# --------------------------------------------------------------------------------------------
# ground truth


def gaussian_image(shape=(20, 24), centre=(8.3, 11.7), height=100.0, width=2.0):
    xx, yy = np.mgrid[: shape[0], : shape[1]].astype(float)
    return height * np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * width**2))


def test_gaussian_centre_recovered():
    ar = gaussian_image()
    pix = get_maxima_2D(ar, subpixel="pixel")
    poly = get_maxima_2D(ar, subpixel="poly")
    mc = get_maxima_2D(ar, subpixel="multicorr", upsample_factor=16)
    assert (pix["x"][0], pix["y"][0]) == (8.0, 12.0)
    assert abs(poly["x"][0] - 8.3) < 0.03 and abs(poly["y"][0] - 11.7) < 0.03
    assert abs(mc["x"][0] - 8.3) < 1e-3 and abs(mc["y"][0] - 11.7) < 1e-3
    # multicorr keeps the 'poly' intensity (py4DSTEM)
    assert mc["intensity"][0] == poly["intensity"][0]


# --------------------------------------------------------------------------------------------
# the guarded parabola (differs from py4DSTEM on purpose)


@pytest.mark.parametrize("name", ["loginf_poly_all", "huge_poly_all"])
def test_guard_gives_finite_positions_where_py4dstem_fails(name):
    """py4DSTEM computes delta = NaN here (a -inf neighbour from log(0), or 4 I overflowing)
    and then raises in its bilinear re-read; we set delta = 0 on that axis instead."""
    assert "cannot convert float NaN to integer" in str(FIX[f"err__{name}"])
    ours = run_ours(CASES[name])
    pixel = FIX[f"out__{name.replace('_poly', '_pixel')}"]
    assert len(ours) == len(pixel) >= 1
    for field in ("x", "y"):
        assert np.all(np.isfinite(ours[field]))
        assert np.all(np.abs(ours[field] - pixel[field]) <= 1)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_multicorr_on_non_finite_image_gives_nan_positions():
    """log(0) = -inf makes the whole FFT NaN: no DFT-upsampled position exists. py4DSTEM
    raises earlier (in its poly step); its upsampled_correlation alone would return a patch
    corner."""
    assert "cannot convert float NaN to integer" in str(FIX["err__loginf_multicorr_all"])
    ours = run_ours(CASES["loginf_multicorr_all"])
    poly = get_maxima_2D(FIX["in__loginf"], maxNumPeaks=None)
    assert len(ours) == len(poly) == 1
    assert np.isnan(ours["x"]).all() and np.isnan(ours["y"]).all()
    np.testing.assert_array_equal(ours["intensity"], poly["intensity"])


def test_guard_sets_delta_zero_only_on_the_bad_axis():
    ar = FIX["in__loginf"]
    out = get_maxima_2D(ar, subpixel="poly", maxNumPeaks=None)
    assert len(out) == 1
    x, y = 6, 7
    assert ar[x, y - 1] == -np.inf
    assert out["y"][0] == y  # guarded: py4DSTEM's delta_y is inf/inf = NaN
    im, i0, ip = ar[x - 1, y], ar[x, y], ar[x + 1, y]
    assert out["x"][0] == pytest.approx(x + (ip - im) / (4 * i0 - 2 * ip - 2 * im), abs=1e-12)
    assert np.isfinite(out["intensity"][0])


def test_upsampled_correlation_flat_and_nan():
    """Flat image: constant patch, argmax at its corner, no parabola (as py4DSTEM, which gives
    (2.75, 3.25) here). NaN in the transform: (NaN, NaN), where py4DSTEM gives that corner too."""
    F = np.fft.fft2(np.ones((8, 8)))
    np.testing.assert_array_equal(upsampled_correlation(F, 16, (3.5, 4.0)), [2.75, 3.25])
    F[0, 0] = np.nan
    assert np.isnan(upsampled_correlation(F, 16, (3.5, 4.0))).all()


# --------------------------------------------------------------------------------------------
# edge cases, filters


@pytest.mark.parametrize("subpixel", ["pixel", "poly", "multicorr"])
def test_flat_and_tiny_images_give_empty(subpixel):
    for ar in (
        np.full((10, 11), 3.0),
        np.zeros((2, 2)),
        np.arange(12.0).reshape(3, 4),
        np.ones((0, 5)),
    ):
        out = get_maxima_2D(ar, subpixel=subpixel, maxNumPeaks=None)
        assert out.shape == (0,) and out.dtype == MAXIMA_DTYPE


def test_filters_all_away_returns_empty():
    ar = gaussian_image()
    for sub in ("pixel", "poly", "multicorr"):
        out = get_maxima_2D(ar, subpixel=sub, minAbsoluteIntensity=1e6)
        assert out.shape == (0,) and out.dtype == MAXIMA_DTYPE


def test_min_spacing_equals_sequential_greedy():
    rng = np.random.default_rng(3)
    m = np.zeros(400, dtype=MAXIMA_DTYPE)
    m["x"] = rng.uniform(0, 30, 400)
    m["y"] = rng.uniform(0, 30, 400)
    m["x"][::7] = np.nan  # never "close" to anything, as in py4DSTEM
    m["intensity"] = np.sort(rng.uniform(0, 1, 400))[::-1]
    for spacing in (0.5, 1.7, 3, 10):
        delete = np.zeros(len(m), dtype=bool)  # py4DSTEM's loop
        for i in range(len(m)):
            if not delete[i]:
                close = (m["x"] - m["x"][i]) ** 2 + (m["y"] - m["y"][i]) ** 2 < spacing**2
                close[: i + 1] = False
                delete[close] = True
        expected = m[~delete]
        out = filter_2D_maxima(m, minSpacing=spacing, maxNumPeaks=None)
        assert len(expected) < len(m)
        for field in ("x", "y", "intensity"):
            np.testing.assert_array_equal(out[field], expected[field])


def test_filter_returns_a_new_array():
    m = FIX["in__hand"].copy()
    before = m.copy()
    out = filter_2D_maxima(m, maxNumPeaks=None)
    np.testing.assert_array_equal(out, before)
    out["x"][0] = -1
    np.testing.assert_array_equal(m, before)


# --------------------------------------------------------------------------------------------
# validation


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"subpixel": "gauss"}, "subpixel"),
        ({"subpixel": "multicorr", "upsample_factor": 2}, "upsample_factor"),
        ({"relativeToPeak": 1.0}, "relativeToPeak"),
        ({"relativeToPeak": -1}, "relativeToPeak"),
        ({"edgeBoundary": 2.5}, "edgeBoundary"),
        ({"maxNumPeaks": -1}, "maxNumPeaks"),
        ({"maxNumPeaks": 2.0}, "maxNumPeaks"),
        ({"subpixel": "multicorr", "_ar_FT": np.zeros((3, 3), complex)}, "_ar_FT"),
    ],
)
def test_bad_parameters_raise(kwargs, name):
    with pytest.raises(ValueError, match=name) as err:
        get_maxima_2D(gaussian_image(), **kwargs)
    bad = next(iter(v for k, v in kwargs.items() if k == name))
    if not isinstance(bad, np.ndarray):
        assert repr(bad) in str(err.value)


@pytest.mark.parametrize("ar", [np.zeros(10), np.zeros((3, 4, 5)), 5.0])
def test_ar_not_2d_raises(ar):
    with pytest.raises(ValueError, match="ar must be a 2D array"):
        get_maxima_2D(ar)


def test_filter_and_upsampled_correlation_validate():
    with pytest.raises(ValueError, match="relativeToPeak"):
        filter_2D_maxima(FIX["in__hand"], minRelativeIntensity=0.5, relativeToPeak=0.5)
    with pytest.raises(ValueError, match="maxima"):
        filter_2D_maxima(np.zeros(3))
    with pytest.raises(ValueError, match="upsampleFactor"):
        upsampled_correlation(np.zeros((4, 4), complex), 2, (1.0, 1.0))
    with pytest.raises(ValueError, match="imageCorr"):
        upsampled_correlation(np.zeros(4, complex), 16, (1.0, 1.0))


# --------------------------------------------------------------------------------------------
# no mutation


@pytest.mark.parametrize("subpixel", ["pixel", "poly", "multicorr"])
def test_inputs_not_modified(subpixel):
    ar = FIX["in__peaks"].copy()
    ft = np.fft.fft2(ar)
    ar0, ft0 = ar.copy(), ft.copy()
    get_maxima_2D(ar, subpixel=subpixel, sigma=1.0, maxNumPeaks=None, _ar_FT=ft)
    get_maxima_2D(ar, subpixel=subpixel, maxNumPeaks=None)
    np.testing.assert_array_equal(ar, ar0)
    np.testing.assert_array_equal(ft, ft0)


# --------------------------------------------------------------------------------------------
# device code path (a numpy stand-in for cupy: xp is not numpy)


class HostArray(np.ndarray):
    """An ndarray with cupy's ``.get()``."""

    def get(self):
        return np.asarray(self).copy()


def test_to_host_calls_get():
    a = np.arange(4.0).view(HostArray)
    out = to_host(a)
    assert type(out) is np.ndarray
    np.testing.assert_array_equal(out, np.arange(4.0))


@pytest.mark.parametrize(
    "name",
    [
        "pixel_all",
        "poly_all",
        "multicorr_all",
        "poly_sigma1_5_all",
        "multicorr_sigma1_all",
        "multicorr_ft_blur_all",
        "poly_combo",
        "u16_poly_sigma1_all",
        "f32_multicorr_all",
        "flat_poly_all",
        "uc_u16_half",
    ],
)
def test_device_path_equals_numpy_path(name, monkeypatch):
    case = CASES[name]
    expected = run_ours(case)
    fake = FakeCupy()
    monkeypatch.setattr(km, "array_module", lambda x: fake)
    ours = run_ours(case)
    assert fake.calls > 0
    np.testing.assert_array_equal(ours, expected)
