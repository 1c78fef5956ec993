"""get_maxima_2D / filter_2D_maxima / upsampled_correlation: py4DSTEM 0.14.18 parity (fixtures
from tests/fixtures/make_maxima_fixtures.py), ground truth, the guarded parabola, validation,
no mutation, and the device (cupy-like) code path; get_maxima_2D_chunk: every frame of a chunk
bit for bit what get_maxima_2D gives it."""

import json
import platform
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
from fakecupy import FakeCupy

import stem4d_dask.kernels.maxima as km
import stem4d_dask.kernels.maxima_chunk as kmc
from stem4d_dask.kernels.maxima import (
    MAXIMA_DTYPE,
    filter_2D_maxima,
    get_maxima_2D,
    to_host,
    upsampled_correlation,
)
from stem4d_dask.kernels.maxima_chunk import get_maxima_2D_chunk
from stem4d_dask.kernels.maxima_filter import spacing_keep_frames

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


# --------------------------------------------------------------------------------------------
# the chunk kernel: every frame exactly what get_maxima_2D gives it

FILTERS = [
    dict(
        minSpacing=spacing,
        minRelativeIntensity=rel,
        relativeToPeak=ref,
        minAbsoluteIntensity=absolute,
        maxNumPeaks=n,
        edgeBoundary=edge,
    )
    for spacing in (0, 3.5)
    for rel, ref in ((0, 0), (0.4, 0), (0.7, 2))
    for absolute in (0, 22)
    for n in (None, 1, 5)
    for edge in (0, 1, 4)
]


def chunk_frames(dtype, seed=0, shape=(2, 4), q=(24, 31)):
    """``(*shape, *q)`` frames of ``dtype`` (8 of them): Poisson noise (many maxima), spots on
    noise, a constant frame (ties everywhere: no maxima), zeros, two-pixel plateaus (the tie
    rule), noise with NaN and +-inf pixels (float dtypes; noise for integers), a dim frame and
    a bright one (the relative threshold works per frame)."""
    rng = np.random.default_rng(seed)
    xx, yy = np.mgrid[: q[0], : q[1]].astype(float)
    spots = sum(
        a * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 4)
        for a, cx, cy in ((90, 6.3, 7.8), (60, 15.5, 20.2), (40, 9.7, 25.1), (40, 18.2, 4.4))
    )
    plateaus = np.zeros(q)
    plateaus[5, 6] = plateaus[5, 7] = 30.0  # along y
    plateaus[12, 9] = plateaus[13, 10] = 30.0  # diagonal
    plateaus[16, 20] = plateaus[17, 19] = 30.0  # anti-diagonal
    odd = rng.poisson(20, q).astype(float)
    if np.dtype(dtype).kind == "f":
        odd[3, 4] = odd[10, 11] = odd[10, 12] = np.nan
        odd[15, 15] = np.inf
        odd[7, 20] = -np.inf
    frames = [
        rng.poisson(20, q),
        spots + rng.poisson(3, q),
        np.full(q, 7.0),
        np.zeros(q),
        plateaus,
        odd,
        rng.poisson(2, q),
        rng.poisson(200, q),
    ]
    return np.stack(frames).astype(dtype).reshape(*shape, *q)


def assert_same_fields(ours, ref):
    assert ours.shape == ref.shape
    for field in ("x", "y", "intensity"):  # NaN positions ('multicorr') equal too
        np.testing.assert_array_equal(ours[field], ref[field], err_msg=field)


def assert_chunk_equals_frames(block, **kwargs):
    """The chunk kernel against get_maxima_2D frame by frame: same peaks, same order, same bits;
    returns the number of peaks."""
    before = block.copy()
    indptr, found = get_maxima_2D_chunk(block, **kwargs)
    np.testing.assert_array_equal(block, before)  # not modified
    frames = block.reshape(int(np.prod(block.shape[:-2])), *block.shape[-2:])
    assert found.dtype == MAXIMA_DTYPE and indptr.dtype == np.int64
    assert indptr.shape == (len(frames) + 1,) and indptr[0] == 0 and indptr[-1] == len(found)
    for k, frame in enumerate(frames):
        ref = get_maxima_2D(frame, **kwargs)
        ours = found[indptr[k] : indptr[k + 1]]
        assert ours.shape == ref.shape, (kwargs, k)
        for field in ("x", "y", "intensity"):
            np.testing.assert_array_equal(ours[field], ref[field], err_msg=f"{kwargs} {k} {field}")
    return int(indptr[-1])


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("subpixel", ["pixel", "poly"])
@pytest.mark.parametrize("sigma", [0, 1.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
def test_chunk_equals_frame_by_frame(dtype, sigma, subpixel):
    block = chunk_frames(dtype)
    total = 0
    for kwargs in FILTERS:
        total += assert_chunk_equals_frames(block, subpixel=subpixel, sigma=sigma, **kwargs)
    assert total > 1000  # the filters leave plenty to compare


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("sigma", [0, 1.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
def test_chunk_multicorr_equals_frame_by_frame(dtype, sigma):
    block = chunk_frames(dtype, seed=1)
    for kwargs in (
        dict(maxNumPeaks=5, minSpacing=3.5),
        dict(maxNumPeaks=3, minRelativeIntensity=0.4, relativeToPeak=2, upsample_factor=5),
    ):
        assert assert_chunk_equals_frames(block, subpixel="multicorr", sigma=sigma, **kwargs)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize(
    "dtype", [np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint64, ">f4", ">u2", np.bool_]
)
@pytest.mark.parametrize("sigma", [0, 0.1, 1e-20, 2.5, 9.0])
def test_chunk_other_dtypes_and_widths(dtype, sigma):
    """Integer dtypes (scipy truncates after each pass), big-endian and bool frames (scipy's
    gaussian_filter of the chunk and whole-chunk slices instead of the compiled loops), widths
    under 1/8 px (a kernel of one tap), under 1e-15 (scipy copies) and wider than the frame
    (reflected more than once)."""
    block = chunk_frames(np.float64, seed=2, q=(18, 22))
    if np.dtype(dtype).kind in "iu":
        block = np.where(np.isfinite(block), block, 0) - 40 * (np.dtype(dtype).kind == "i")
    block = block.astype(dtype)
    for kwargs in (dict(maxNumPeaks=None), dict(minSpacing=2, maxNumPeaks=4)):
        assert_chunk_equals_frames(block, sigma=sigma, **kwargs)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_chunk_scipy_smoothing_fallback_equals_frame_by_frame(monkeypatch):
    """scipy's gaussian_filter of the whole chunk (sigma 0 on the frame axis), used when the
    compiled loop does not match scipy's bits, filters each frame as the per-frame call does."""
    monkeypatch.setattr(kmc, "_compiled_matches_scipy", lambda dtype: False)
    for dtype in (np.float32, np.uint16):
        assert_chunk_equals_frames(chunk_frames(dtype), sigma=1.5, maxNumPeaks=None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16, np.int16, np.uint8])
def test_compiled_gaussian_is_scipys(dtype):
    """The compiled Gaussian against scipy's, frame by frame, on shapes down to 1 pixel and
    widths up to more than the frame."""
    matches = kmc._compiled_matches_scipy(np.dtype(dtype))
    if platform.machine().lower() in ("x86_64", "amd64"):  # no fused multiply-adds in scipy
        assert matches, "the compiled Gaussian is not scipy's: the chunk kernel falls back"
    elif not matches:  # pragma: no cover - e.g. an aarch64 scipy built with FMA contraction
        pytest.skip("this scipy's gaussian_filter differs from the compiled loop; scipy is used")
    rng = np.random.default_rng(5)
    for nx, ny in ((1, 1), (1, 9), (7, 2), (16, 33), (40, 25)):
        raw = rng.normal(100, 60, (3, nx, ny))
        frames = np.clip(raw, 0, 255).astype(dtype) if dtype is np.uint8 else raw.astype(dtype)
        for sigma in (0.3, 1.0, 1.5, 2.0, 3.7, 12.0):
            out = np.empty_like(frames)
            kmc._gaussian_frames(frames, kmc._half_kernel(sigma), out)
            for frame, smooth in zip(frames, out, strict=True):
                np.testing.assert_array_equal(smooth, ndi.gaussian_filter(frame, sigma))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_chunk_shapes_strides_and_tiny_frames():
    """Any leading axes, one frame, strided and read-only chunks, frames of 0 to 4 pixels."""
    block = chunk_frames(np.float32, seed=3)
    # any leading axes, one frame, a strided (non-contiguous) chunk
    assert_chunk_equals_frames(block.reshape(8, 24, 31), sigma=1.0, maxNumPeaks=None)
    assert_chunk_equals_frames(block[1, 1], maxNumPeaks=None)
    assert_chunk_equals_frames(block[:, ::2, 1:-1:2, ::3], sigma=0.8, maxNumPeaks=None)
    read_only = block.copy()
    read_only.setflags(write=False)  # e.g. a chunk of a memory-mapped file
    assert_chunk_equals_frames(read_only, sigma=1.0, minSpacing=3, maxNumPeaks=None)
    for q in ((2, 2), (3, 4), (1, 7), (0, 5)):
        tiny = np.random.default_rng(0).random((2, 3, *q)).astype(np.float32)
        for sigma in (0, 1.0):
            assert_chunk_equals_frames(tiny, sigma=sigma, maxNumPeaks=None)
    indptr, found = get_maxima_2D_chunk(np.zeros((0, 3, 8, 8)), sigma=1.0)
    assert indptr.tolist() == [0] and found.shape == (0,) and found.dtype == MAXIMA_DTYPE


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_chunk_min_spacing_huge_and_infinite():
    """A spacing wider than any detector, or infinite: one peak per frame (frame by frame)."""
    block = chunk_frames(np.float64, seed=4)
    for spacing in (1e9, np.inf):
        assert_chunk_equals_frames(block, minSpacing=spacing, maxNumPeaks=None)
        indptr, _ = get_maxima_2D_chunk(block, minSpacing=spacing, maxNumPeaks=None)
        assert np.diff(indptr).max() == 1


def test_spacing_keep_frames_equals_per_frame_greedy():
    """One k-d tree over every frame's peaks (and frame by frame where a position is NaN) gives
    filter_2D_maxima's greedy suppression of each frame."""
    rng = np.random.default_rng(6)
    f = np.sort(rng.integers(0, 9, 600))
    x, y = rng.uniform(0, 30, 600), rng.uniform(0, 30, 600)
    for nan in (False, True):
        if nan:
            x[::7] = np.nan
        for spacing in (0.5, 1.7, 3, 10):
            keep = spacing_keep_frames(f, x, y, spacing)
            assert 0 < keep.sum() < len(keep)
            for k in range(9):
                maxima = np.zeros((f == k).sum(), MAXIMA_DTYPE)
                maxima["x"], maxima["y"] = x[f == k], y[f == k]
                expected = filter_2D_maxima(maxima, minSpacing=spacing, maxNumPeaks=None)
                np.testing.assert_array_equal(x[f == k][keep[f == k]], expected["x"])


RUN_CHUNK_CASES = [
    n for n in CASES if CASES[n]["func"] == "get_maxima_2D" and CASES[n]["ft_of"] is None
]


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("name", RUN_CHUNK_CASES)
def test_chunk_parity_with_py4dstem_fixtures(name):
    """Each fixture image in a chunk beside a blank frame and a copy of itself: both copies
    get py4DSTEM's maxima (where py4DSTEM has an answer) and the blank gets none."""
    case = CASES[name]
    image = FIX[f"in__{case['input']}"]
    block = np.stack([image, np.zeros_like(image), image])
    indptr, found = get_maxima_2D_chunk(block, **case["kwargs"])
    assert indptr[2] - indptr[1] == 0
    first, last = found[indptr[0] : indptr[1]], found[indptr[2] : indptr[3]]
    assert_same_fields(first, last)
    assert_same_fields(first, get_maxima_2D(image, **case["kwargs"]))
    if name in RUN_CASES:
        assert_same_maxima(first, FIX[f"out__{name}"])


def test_chunk_bad_parameters_raise():
    block = np.zeros((2, 8, 8))
    for kwargs, name in (
        ({"subpixel": "gauss"}, "subpixel"),
        ({"subpixel": "multicorr", "upsample_factor": 2}, "upsample_factor"),
        ({"relativeToPeak": -1}, "relativeToPeak"),
        ({"edgeBoundary": 2.5}, "edgeBoundary"),
        ({"maxNumPeaks": -1}, "maxNumPeaks"),
    ):
        with pytest.raises(ValueError, match=name):
            get_maxima_2D_chunk(block, **kwargs)
    with pytest.raises(ValueError, match="block"):
        get_maxima_2D_chunk(np.zeros(5))


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("subpixel", ["pixel", "poly", "multicorr"])
def test_chunk_device_path_equals_numpy_path(subpixel, monkeypatch):
    """The cupy code path (whole-chunk slices, the device's gaussian_filter with sigma 0 on the
    frame axis, neighbourhoods gathered on the device) gives the numpy path's bits."""
    block = chunk_frames(np.float32, seed=7)
    kwargs = dict(subpixel=subpixel, sigma=1.5, minSpacing=3, maxNumPeaks=6)
    expected = get_maxima_2D_chunk(block, **kwargs)
    fake = FakeCupy()
    monkeypatch.setattr(kmc, "array_module", lambda x: fake)
    monkeypatch.setattr(km, "array_module", lambda x: fake)
    ours = get_maxima_2D_chunk(block, **kwargs)
    assert fake.calls > 0
    np.testing.assert_array_equal(ours[0], expected[0])
    assert_same_fields(ours[1], expected[1])
