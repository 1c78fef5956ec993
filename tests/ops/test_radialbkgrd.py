"""Radial (polar-elliptical) background: parity with py4DSTEM 0.14.18 on committed fixtures
(``fixtures/radialbkgrd_py4dstem.npz``, made by ``fixtures/make_radialbkgrd_fixtures.py`` in
the py4DSTEM venv), a test for each documented difference (module docstring of
``stem4d_dask.preprocess.radialbkgrd``), recovery of a known background, and the lazy datacube
forms.
"""

import json
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import stem4d_dask as s4
from stem4d_dask.kernels.polar import (
    cartesian_to_polarelliptical_transform,
    elliptical_radius,
    masked_median,
    polar_plan,
)
from stem4d_dask.preprocess.radialbkgrd import (
    get_1D_polar_background,
    get_2D_polar_background,
    subtract_polar_background,
)
from stem4d_dask.virtual import mean_diffraction_pattern

FIXTURES = np.load(Path(__file__).parents[1] / "fixtures" / "radialbkgrd_py4dstem.npz")
EXACT = dict(rtol=1e-12, atol=0)


def pattern(name):
    return FIXTURES[f"in__{name}"]


def p_of(name):
    return tuple(float(v) for v in FIXTURES[f"in__{name}__p"])


def args(kind, case):
    kw = json.loads(str(FIXTURES[f"args__{kind}__{case}"]))
    return kw.pop("pattern"), kw


def fixture_cases(kind, has=""):
    prefix = f"args__{kind}__"
    return [
        k[len(prefix) :]
        for k in FIXTURES.files
        if k.startswith(prefix) and f"{kind}__{k[len(prefix) :]}{has}" in FIXTURES.files
    ]


# ---- parity with py4DSTEM where it is right -------------------------------------------------


def test_fixture_script_recorded_only_the_known_error():
    assert "errors" not in FIXTURES.files
    (known,) = FIXTURES["known_errors"]  # B17: the default smoothing parameters raise
    assert "a_smooth_defaults" in known and "polyorder must be less than" in known


@pytest.mark.parametrize("case", fixture_cases("tr", "__data"))
def test_transform_parity(case):
    """Data, mask, rr and pp agree exactly on the columns both grids have (all of them where
    py4DSTEM's r_max is right; see test_r_max_uses_all_four_corners)."""
    name, kw = args("tr", case)
    if "mask" in kw:
        kw["mask"] = pattern(kw["mask"])
    polar, rr, pp = cartesian_to_polarelliptical_transform(pattern(name), p_of(name), **kw)
    ref = FIXTURES[f"tr__{case}__data"]
    n = ref.shape[1]
    assert isinstance(polar, np.ma.MaskedArray) and polar.dtype == np.float64
    assert polar.shape[0] == ref.shape[0] and polar.shape[1] >= n
    if case != "b_dphi10":
        assert polar.shape == ref.shape
    np.testing.assert_array_equal(polar.data[:, :n], ref)
    np.testing.assert_array_equal(np.ma.getmaskarray(polar)[:, :n], FIXTURES[f"tr__{case}__mask"])
    np.testing.assert_array_equal(rr[:, :n], FIXTURES[f"tr__{case}__rr"])
    np.testing.assert_array_equal(pp[:, :n], FIXTURES[f"tr__{case}__pp"])


ITER0_CASES = [
    c
    for c in fixture_cases("bg1d")
    if args("bg1d", c)[1].get("maskUpdateIter") == 0 or "smooth" in c
]


@pytest.mark.parametrize("case", ITER0_CASES)
def test_background_1d_parity_without_mask_updates(case):
    """py4DSTEM's background never depends on maskUpdateIter (B17), so it is ours with
    maskUpdateIter=0, on the r bins both keep (we keep one more where py4DSTEM crops)."""
    name, kw = args("bg1d", case)
    kw.update(maskUpdateIter=0, return_polararr=False)
    bg, r = get_1D_polar_background(pattern(name), p_of(name), **kw)
    ref, ref_r = FIXTURES[f"bg1d__{case}"], FIXTURES[f"bg1d__{case}__r"]
    n = ref.shape[0]
    if kw.get("smoothing"):  # the Savitzky-Golay edge fit spans the last window
        n -= kw["smoothingWindowSize"] if r.shape[0] != ref.shape[0] else 0
    assert type(bg) is np.ndarray and bg.dtype == np.float64
    np.testing.assert_array_equal(r[: ref_r.shape[0]], ref_r)
    np.testing.assert_allclose(bg[:n], ref[:n], **EXACT)


@pytest.mark.parametrize("case", fixture_cases("bg1d", "__polmask"))
def test_mask_update_matches_py4dstem_peak_mask(case):
    """py4DSTEM's loop builds the right peak mask but never takes the median again. Ours with
    one update builds the same mask and returns the median under it."""
    name, kw = args("bg1d", case)
    ref_mask = FIXTURES[f"bg1d__{case}__polmask"]
    n = ref_mask.shape[1]
    bg, r, polar = get_1D_polar_background(
        pattern(name), p_of(name), **{**kw, "maskUpdateIter": min(kw["maskUpdateIter"], 1)}
    )
    np.testing.assert_array_equal(np.ma.getmaskarray(polar)[:, :n], ref_mask)
    data, _, _ = cartesian_to_polarelliptical_transform(pattern(name), p_of(name))
    expected = np.ma.median(np.ma.array(data.data[:, :n], mask=ref_mask), axis=0)
    np.testing.assert_allclose(bg[:n], np.maximum(expected.filled(np.nan), 1e-3), **EXACT)


@pytest.mark.parametrize("case", fixture_cases("bg2d"))
def test_background_2d_parity(case):
    kw = json.loads(str(FIXTURES[f"args__bg2d__{case}"]))
    name = kw["pattern"]
    bg, r = FIXTURES[f"bg1d__{kw['bg1d']}"], FIXTURES[f"bg1d__{kw['bg1d']}__r"]
    out = get_2D_polar_background(pattern(name), bg, r, p_of(name), center=kw["center"])
    assert type(out) is np.ndarray and out.dtype == np.float64
    np.testing.assert_allclose(out, FIXTURES[f"bg2d__{case}"], **EXACT)


def test_background_2d_extrapolates_linearly():
    bg, r = np.array([10.0, 8.0, 7.0]), np.array([2.0, 3.0, 4.0])
    out = get_2D_polar_background(np.zeros((11, 13)), bg, r, (5, 6, 1, 1, 0))
    rad = elliptical_radius((11, 13), (5, 6, 1, 1, 0))
    np.testing.assert_allclose(
        out, np.where(rad < 3, 10 - 2 * (rad - 2), 8 - (rad - 3)), rtol=1e-12
    )
    assert out[5, 6] == pytest.approx(14.0)  # r = 0: extrapolated from the first segment


# ---- the documented differences -------------------------------------------------------------


def test_center_overrides_p_ellipse():
    """py4DSTEM raises TypeError for any center (tuple[...]); ours replaces the centre."""
    data, p = pattern("a"), p_of("a")
    moved = (21.0, 30.5)
    bg, r = get_1D_polar_background(data, p, center=moved)
    ref, ref_r = get_1D_polar_background(data, moved + p[2:])
    np.testing.assert_array_equal(bg, ref)
    np.testing.assert_array_equal(r, ref_r)
    assert not np.allclose(
        bg[: min(len(bg), 20)], get_1D_polar_background(data, p)[0][: min(len(bg), 20)]
    )


def test_mask_updates_iterate():
    """py4DSTEM returns the same background for every maskUpdateIter; ours converges away
    from the peak-biased first median and its polar mask hides the peaks."""
    ref0, ref3 = FIXTURES["bg1d__a_it0"], FIXTURES["bg1d__a_it3"]
    np.testing.assert_array_equal(ref0, ref3)  # the py4DSTEM bug
    data, p = pattern("a"), p_of("a")
    bgs = [get_1D_polar_background(data, p, maskUpdateIter=k)[0] for k in (0, 1, 3)]
    np.testing.assert_allclose(bgs[0], ref0, **EXACT)
    assert not np.array_equal(bgs[0], bgs[1])
    assert np.all(bgs[1] <= bgs[0] + 1e-9)  # masking bright cells only lowers the median
    _, _, polar = get_1D_polar_background(data, p, maskUpdateIter=3, return_polararr=True)
    geometric = ~polar_plan(data.shape, p).inside[:, : polar.shape[1]]
    assert np.all(polar.mask >= geometric) and polar.mask.sum() > geometric.sum()
    assert not polar.mask.all(axis=0).any()  # never a whole column
    assert np.all(polar.filled(0) <= 4 * bgs[2] + 1e-9)  # no bright cell left unmasked


def test_default_smoothing_parameters_work():
    """py4DSTEM raises for smoothing=True with the defaults (window 3, polyorder 4: see
    known_errors); ours smooths with polyorder = window - 1."""
    data, p = pattern("a"), p_of("a")
    smoothed, _ = get_1D_polar_background(data, p, smoothing=True)
    quadratic, _ = get_1D_polar_background(data, p, smoothing=True, smoothingPolyOrder=2)
    np.testing.assert_array_equal(smoothed, quadratic)
    raw, _ = get_1D_polar_background(data, p)
    assert not np.array_equal(smoothed, raw)
    ones, _ = get_1D_polar_background(data, p, smoothing=True, smoothingWindowSize=1)
    np.testing.assert_allclose(ones, raw, rtol=1e-12)  # a one-bin window is the identity


def test_crop_keeps_last_valid_column():
    """Pattern c has r bins entirely outside the frame: py4DSTEM drops those and one more."""
    data, p = pattern("c"), p_of("c")
    bg, r = get_1D_polar_background(data, p, maskUpdateIter=0)
    ref_r = FIXTURES["bg1d__c_it0__r"]
    assert r.shape[0] == ref_r.shape[0] + 1
    np.testing.assert_array_equal(r[:-1], ref_r)
    plan = polar_plan(data.shape, p)
    assert plan.inside[:, r.shape[0] - 1].any()  # the bin py4DSTEM drops has samples
    assert not plan.inside[:, r.shape[0] :].any()  # and every later bin is empty
    assert np.isfinite(bg[-1])


def test_r_max_uses_all_four_corners():
    """Pattern b's centre is near (0, Ny): the farthest corner is (Nx, 0), which py4DSTEM's
    corner list lacks, so its grid stops short of pixels that are in the frame."""
    data, p = pattern("b"), p_of("b")
    nx, ny = data.shape
    far = np.hypot(nx - p[0], 0 - p[1])
    assert far > max(np.hypot(x - p[0], y - p[1]) for x, y in ((0, 0), (0, ny), (nx, ny)))
    polar, rr, _ = cartesian_to_polarelliptical_transform(data, p, dphi=np.radians(10))
    assert rr[0, -1] == int(np.ceil(far)) - 0.5
    n_ref = FIXTURES["tr__b_dphi10__rr"].shape[1]
    assert rr.shape[1] > n_ref and not polar.mask[:, n_ref:].all()  # data py4DSTEM misses
    bg, r = get_1D_polar_background(data, p, maskUpdateIter=0)
    assert r.shape[0] > FIXTURES["bg1d__b_it0__r"].shape[0]


def test_background1d_is_a_plain_array():
    assert str(FIXTURES["bg1d__a_it0__type"]) == "MaskedArray"  # py4DSTEM
    bg, _ = get_1D_polar_background(pattern("a"), p_of("a"))
    assert type(bg) is np.ndarray
    # a centre outside the frame: the bins with no sample inside it are NaN
    bg, r = get_1D_polar_background(pattern("a"), (-6.0, -4.0, 1.0, 1.0, 0.0))
    empty = ~polar_plan(pattern("a").shape, (-6.0, -4.0, 1.0, 1.0, 0.0)).inside.any(axis=0)
    assert empty[0] and not empty[r.shape[0] - 1]
    np.testing.assert_array_equal(np.isnan(bg), empty[: r.shape[0]])


def test_masked_median_matches_numpy_ma():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(9, 7))
    values[2, 3] = np.nan  # an unmasked NaN makes its column NaN, as np.ma.median
    mask = rng.uniform(size=values.shape) < 0.4
    mask[:, 5] = True
    mask[:, 1] = False
    expected = np.ma.median(np.ma.array(values, mask=mask), axis=0).filled(np.nan)
    np.testing.assert_array_equal(masked_median(values, mask), expected)


# ---- recovery of a known background ---------------------------------------------------------

GT_SHAPE, GT_P = (96, 104), (47.3, 51.6, 20.0, 18.0, 0.3)  # b/a = 0.9, theta = 0.3 rad


def gt_profile(r):
    return 1e5 * np.exp(-r / 15.0) + 2000.0


def gt_pattern(seed=0, spacing=14.0, sigma=1.0, brightness=30.0):
    """Known profile at the elliptical radius, a hexagonal lattice of Gaussian Bragg spots
    (peak = brightness x the profile at their distance), Poisson noise."""
    img = gt_profile(elliptical_radius(GT_SHAPE, GT_P))
    xx, yy = np.meshgrid(np.arange(GT_SHAPE[0]), np.arange(GT_SHAPE[1]), indexing="ij")
    u = spacing * np.array([np.cos(0.2), np.sin(0.2)])
    v = spacing * np.array([np.cos(0.2 + np.pi / 3), np.sin(0.2 + np.pi / 3)])
    for i in range(-10, 11):
        for j in range(-10, 11):
            cx, cy = np.array(GT_P[:2]) + i * u + j * v
            if (i or j) and -3 < cx < GT_SHAPE[0] + 3 and -3 < cy < GT_SHAPE[1] + 3:
                peak = brightness * gt_profile(np.hypot(cx - GT_P[0], cy - GT_P[1]))
                img = img + peak * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
    return np.random.default_rng(seed).poisson(img).astype(np.float64)


def test_recovers_known_background():
    """Within 2% of the true profile from r = 3 px to the largest fully sampled radius with
    the default maskUpdateIter=3 (measured: 1.1%); the single median py4DSTEM takes
    (maskUpdateIter=0) is biased by the spots (measured: 9.7%)."""
    data = gt_pattern()
    r_full = polar_plan(GT_SHAPE, GT_P).r_full
    assert r_full > 40
    errors = {}
    for iterations in (0, 3):
        bg, r = get_1D_polar_background(data, GT_P, maskUpdateIter=iterations)
        sel = (r >= 3) & (r <= r_full)
        errors[iterations] = np.max(np.abs(bg[sel] / gt_profile(r[sel]) - 1))
    assert errors[3] < 0.02
    assert errors[0] > 0.05 and errors[0] > 3 * errors[3]
    bg, r = get_1D_polar_background(data, GT_P)
    background = get_2D_polar_background(data, bg, r, GT_P)
    truth = gt_profile(elliptical_radius(GT_SHAPE, GT_P))
    inner = elliptical_radius(GT_SHAPE, GT_P) <= r_full
    assert np.max(np.abs(background[inner] / truth[inner] - 1)) < 0.03


# ---- datacubes: lazy, one task per chunk, equal to the per-frame functions ------------------

CUBE_P = (19.6, 21.3, 2.0, 2.3, 1.1)


@pytest.fixture(scope="module")
def np_cube():
    base = gt_profile(3 * elliptical_radius((40, 46), CUBE_P)) / 50
    rng = np.random.default_rng(7)
    cube = rng.poisson(np.broadcast_to(base, (3, 4, 40, 46))).astype(np.uint16)
    cube[:, :, 12, 30] = 60000  # a bright spot in every frame
    cube[1, 2, 25:27, 10:12] = 50000
    return cube


def _boom(block_info=None):
    raise AssertionError("pixel data was read while building a graph")


def exploding(shape, dtype):
    chunks = da.core.normalize_chunks((2, 3) + shape[2:], shape)
    data = da.map_blocks(_boom, chunks=chunks, dtype=dtype, meta=np.empty((0,) * 4, dtype))
    return s4.from_array(data, chunks=None)


def _tasks(arr):
    return len(dict(arr.__dask_graph__()))


def test_datacube_graphs_read_nothing(np_cube):
    dc = exploding(np_cube.shape, np_cube.dtype)
    n_in, n_chunks = _tasks(dc.data), dc.data.npartitions
    bg, r = get_1D_polar_background(dc, CUBE_P)
    assert isinstance(bg.data, da.Array) and bg.dims == ("Rx", "Ry", "r")
    assert bg.shape == (3, 4, r.shape[0]) and bg.dtype == np.float64
    assert bg.data.chunks[:2] == dc.data.chunks[:2]
    assert _tasks(bg.data) == n_in + n_chunks  # one task per chunk
    np.testing.assert_array_equal(bg["r"].values, r)
    bg2 = get_2D_polar_background(dc, bg, r, CUBE_P)
    assert bg2.dims == dc.dims and bg2.data.chunks == dc.data.chunks
    assert bg2.dtype == np.float32 and _tasks(bg2.data) == n_in + 2 * n_chunks
    sub = subtract_polar_background(dc, CUBE_P)
    assert sub.dtype == np.float32 and sub.data.chunks == dc.data.chunks
    assert _tasks(sub.data) == n_in + n_chunks
    mean_sub = subtract_polar_background(dc, CUBE_P, per_pattern=False)
    assert mean_sub.data.chunks == dc.data.chunks
    keys = [k for k in mean_sub.data.__dask_graph__() if "mean_background" in str(k)]
    assert len(keys) == 1  # the background is one graph key
    mean_bg, _ = get_1D_polar_background(mean_diffraction_pattern(dc), CUBE_P)
    assert isinstance(mean_bg.data, da.Array) and mean_bg.dims == ("r",)
    assert isinstance(get_2D_polar_background(dc, mean_bg, r, CUBE_P).data, da.Array)
    with pytest.raises(AssertionError, match="was read"):
        bg.compute()


def test_per_pattern_background_equals_frame_loop(np_cube):
    dc = s4.from_array(np_cube, chunks=(2, 3))
    before = np_cube.copy()
    bg, r = get_1D_polar_background(dc, CUBE_P, smoothing=True, smoothingWindowSize=5)
    values = bg.values
    bg2 = get_2D_polar_background(dc, bg, r, CUBE_P).values
    sub = subtract_polar_background(dc, CUBE_P, smoothing=True, smoothingWindowSize=5).values
    for i, j in np.ndindex(*np_cube.shape[:2]):
        one, r1 = get_1D_polar_background(
            np_cube[i, j], CUBE_P, smoothing=True, smoothingWindowSize=5
        )
        np.testing.assert_array_equal(values[i, j], one)
        np.testing.assert_array_equal(r, r1)
        two = get_2D_polar_background(np_cube[i, j], one, r1, CUBE_P)
        np.testing.assert_allclose(bg2[i, j], two.astype(np.float32), rtol=1e-6)
        np.testing.assert_allclose(
            sub[i, j], (np_cube[i, j] - two).astype(np.float32), rtol=1e-6, atol=1e-3
        )
    assert not np.array_equal(values[1, 2], values[0, 0])  # a background per pattern
    np.testing.assert_array_equal(np_cube, before)


def test_mean_pattern_background(np_cube):
    dc = s4.from_array(np_cube.astype(np.float64), chunks=(2, 3))
    out = subtract_polar_background(dc, CUBE_P, per_pattern=False, maskUpdateIter=1)
    assert out.dtype == np.float64 and out.attrs == dc.attrs
    mean = np_cube.astype(np.float64).mean(axis=(0, 1))
    bg, r = get_1D_polar_background(mean, CUBE_P, maskUpdateIter=1)
    expected = np_cube - get_2D_polar_background(mean, bg, r, CUBE_P)
    np.testing.assert_allclose(out.values, expected, rtol=1e-10, atol=1e-9)
    lazy_bg, lazy_r = get_1D_polar_background(
        mean_diffraction_pattern(dc), CUBE_P, maskUpdateIter=1
    )
    np.testing.assert_allclose(lazy_bg.values, bg, rtol=1e-10)
    one_for_all = get_2D_polar_background(dc, lazy_bg, lazy_r, CUBE_P)
    np.testing.assert_allclose(
        one_for_all.values[2, 3], get_2D_polar_background(mean, bg, r, CUBE_P), rtol=1e-10
    )
    lazy_2d = get_2D_polar_background(mean_diffraction_pattern(dc), lazy_bg, lazy_r, CUBE_P)
    assert lazy_2d.dims == ("Qx", "Qy") and isinstance(lazy_2d.data, da.Array)


def test_per_pattern_background_accepts_numpy_and_rechunks(np_cube):
    dc = s4.from_array(np_cube, chunks=(2, 3))
    bg, r = get_1D_polar_background(dc, CUBE_P)
    ref = get_2D_polar_background(dc, bg, r, CUBE_P).values
    as_numpy = get_2D_polar_background(dc, bg.values, r, CUBE_P)
    other_chunks = get_2D_polar_background(dc, bg.chunk({"Rx": 1, "Ry": 4}), r, CUBE_P)
    assert other_chunks.data.chunks == dc.data.chunks
    np.testing.assert_array_equal(as_numpy.values, ref)
    np.testing.assert_array_equal(other_chunks.values, ref)


def test_inputs_not_mutated():
    data = pattern("c").copy()
    p = list(p_of("c"))
    bg, r = get_1D_polar_background(data, p, center=[18.0, 22.0], smoothing=True)
    bg_copy, r_copy = bg.copy(), r.copy()
    get_2D_polar_background(data, bg, r, p, center=(18.0, 22.0))
    cartesian_to_polarelliptical_transform(data, p, mask=np.ones(data.shape, bool))
    np.testing.assert_array_equal(data, pattern("c"))
    assert p == list(p_of("c"))
    np.testing.assert_array_equal(bg, bg_copy)
    np.testing.assert_array_equal(r, r_copy)


# ---- bad input -------------------------------------------------------------------------------

FRAME = np.ones((20, 24))
GOOD_P = (10.0, 12.0, 1.0, 0.9, 0.3)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: get_1D_polar_background(FRAME, (10, 12, 1, 0.9)), "p_ellipse"),
        (lambda: get_1D_polar_background(FRAME, "abcde"), "p_ellipse"),
        (lambda: get_1D_polar_background(FRAME, (10, 12, 0, 0.9, 0)), "a=0.0"),
        (lambda: get_1D_polar_background(FRAME, (10, 12, 1, -1, 0)), "b=-1.0"),
        (lambda: get_1D_polar_background(FRAME, (10, np.nan, 1, 1, 0)), "p_ellipse"),
        (lambda: get_1D_polar_background(np.ones((3, 20, 24)), GOOD_P), r"data.*\(3, 20, 24\)"),
        (lambda: get_1D_polar_background(np.ones((2, 2, 20, 24)), GOOD_P), "from_array"),
        (lambda: get_1D_polar_background(da.ones((2, 2, 20, 24)), GOOD_P), "from_array"),
        (lambda: get_1D_polar_background(xr.DataArray(np.ones((2, 2, 4, 4))), GOOD_P), "dims"),
        (lambda: get_1D_polar_background(FRAME.astype(complex), GOOD_P), "real"),
        (lambda: get_1D_polar_background(FRAME, GOOD_P, center=(1, 2, 3)), "center"),
        (lambda: get_1D_polar_background(np.ones((1, 24)), GOOD_P), "no polar sample"),
        (lambda: get_1D_polar_background(FRAME, GOOD_P, maskUpdateIter=-1), "maskUpdateIter"),
        (lambda: get_1D_polar_background(FRAME, GOOD_P, maskUpdateIter=1.5), "maskUpdateIter"),
        (
            lambda: get_1D_polar_background(FRAME, GOOD_P, min_relative_threshold=0),
            "min_relative_threshold",
        ),
        (lambda: get_1D_polar_background(FRAME, GOOD_P, smoothing=1), "smoothing"),
        (lambda: get_1D_polar_background(FRAME, GOOD_P, smoothingWindowSize=4), "odd"),
        (
            lambda: get_1D_polar_background(FRAME, GOOD_P, smoothingWindowSize=0),
            "smoothingWindowSize",
        ),
        (
            lambda: get_1D_polar_background(FRAME, GOOD_P, smoothingPolyOrder=-1),
            "smoothingPolyOrder",
        ),
        (
            lambda: get_1D_polar_background(FRAME, GOOD_P, smoothing=True, smoothingWindowSize=99),
            "smoothingWindowSize",
        ),
        (
            lambda: get_1D_polar_background(FRAME, GOOD_P, smoothing=True, min_background_value=0),
            "min_background_value",
        ),
        (lambda: get_1D_polar_background(FRAME, GOOD_P, return_polararr="yes"), "return_polararr"),
        (
            lambda: get_2D_polar_background(FRAME, np.ones(5), np.arange(6.0), GOOD_P),
            r"background1D.*\(5,\).*6",
        ),
        (lambda: get_2D_polar_background(FRAME, np.ones(5), np.ones(5), GOOD_P), "r_bins"),
        (lambda: get_2D_polar_background(FRAME, np.ones(1), np.ones(1), GOOD_P), "r_bins"),
        (
            lambda: get_2D_polar_background(FRAME, np.ones((2, 5)), np.arange(5.0), GOOD_P),
            "background1D",
        ),
        (
            lambda: get_2D_polar_background(FRAME, np.ones(5), np.arange(5.0), (1, 2, 3)),
            "p_ellipse",
        ),
    ],
)
def test_bad_input_names_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_datacube_input(np_cube):
    dc = s4.from_array(np_cube, chunks=(2, 3))
    bg, r = get_1D_polar_background(dc, CUBE_P)
    with pytest.raises(ValueError, match="return_polararr"):
        get_1D_polar_background(dc, CUBE_P, return_polararr=True)
    with pytest.raises(ValueError, match=r"\(Rx, Ry, N_r\)"):
        get_2D_polar_background(dc, bg.values[:2], r, CUBE_P)
    with pytest.raises(ValueError, match="same length"):
        get_2D_polar_background(dc, bg, r[:-1], CUBE_P)
    with pytest.raises(ValueError, match="r_bins must be a numpy"):
        get_2D_polar_background(dc, bg, da.from_array(r), CUBE_P)
    with pytest.raises(TypeError, match="unknown options"):
        subtract_polar_background(dc, CUBE_P, return_polararr=True)
    with pytest.raises(ValueError, match="per_pattern"):
        subtract_polar_background(dc, CUBE_P, per_pattern="no")
    with pytest.raises(ValueError, match="p_ellipse"):
        subtract_polar_background(dc, (1, 2, 3, 0, 0))
    with pytest.raises(TypeError, match="datacube"):
        subtract_polar_background(np_cube, CUBE_P)


def test_accessor_delegates():
    import xarray as xr

    import stem4d_dask as s4
    from stem4d_dask import preprocess as pp

    cube = np.random.default_rng(0).poisson(50, (4, 5, 32, 30)).astype(np.uint16)
    dc = s4.from_array(cube, chunks=(2, 5))
    p = (16, 15, 10, 9, 0.2)
    xr.testing.assert_identical(
        dc.stem4d.subtract_polar_background(p, per_pattern=False),
        pp.subtract_polar_background(dc, p, per_pattern=False),
    )
    ours, r = dc.stem4d.get_1D_polar_background(p, maskUpdateIter=1)
    ref, r_ref = pp.get_1D_polar_background(dc, p, maskUpdateIter=1)
    xr.testing.assert_identical(ours, ref)
    np.testing.assert_array_equal(r, r_ref)
