"""DPC: py4DSTEM 0.14.18 parity (fixtures from tests/fixtures/make_dpc_fixtures.py), ground
truth on synthetic scans, a real backtracking revert (B21), one read of the datacube and no
mutation (B20), input validation, figures, and the device (cupy-like) code path."""

import json
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from fakecupy import FakeCupy
from matplotlib.figure import Figure

import stem4d_dask as s4
import stem4d_dask.phase.dpc as dpc_module
import stem4d_dask.phase.integrate as integrate
from stem4d_dask.phase.dpc import DPC, NotComputedError
from stem4d_dask.synthetic import dpc_scan

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "dpc_py4dstem.npz"
with np.load(FIXTURE) as _z:
    _FIX = {k: _z[k] for k in _z.files}
_ALIASES = json.loads(str(_FIX["aliases"]))
CASES = {c["name"]: c for c in json.loads(str(_FIX["cases"]))}
FIELDS = [
    "com_measured_x",
    "com_measured_y",
    "com_fitted_x",
    "com_fitted_y",
    "com_normalized_x",
    "com_normalized_y",
    "com_x",
    "com_y",
]
RECONS = [
    (c, r["name"])
    for c in CASES
    for r in CASES[c]["reconstruct"]
    if not r["kwargs"].get("backtrack", False)
]


def get(name):
    return _FIX[_ALIASES.get(name, name)]


def derive_input(name):
    """The exact operations of make_dpc_fixtures.derive_input."""
    base = get("in__base")
    if name.startswith("f32"):
        data = base.astype(np.float32) * np.float32(0.125)
    else:
        data = base.astype(np.uint16)
    if name.endswith("_empty"):
        for i, j in get("empty"):
            data[i, j] = 0
    if name.endswith("_swap"):
        data = np.ascontiguousarray(np.swapaxes(data, 2, 3))
    return data


def resolve(value):
    if isinstance(value, str) and value.startswith("@"):
        return np.array(get(f"in__{value[1:]}"), copy=True)
    if isinstance(value, list):
        return tuple(resolve(v) for v in value)
    return value


def datacube_of(case, chunks=(5, 7)):
    if case["input"] is None:
        return None
    return s4.from_array(derive_input(case["input"]), chunks=chunks, **case["calibration"])


def run_preprocess(name, **extra):
    case = CASES[name]
    kwargs = {k: resolve(v) for k, v in case["preprocess"].items()}
    dpc = DPC(datacube_of(case), energy=case["energy"], verbose=False, **extra)
    return dpc.preprocess(plot_rotation=False, plot_center_of_mass=False, **kwargs)


_PRE = {}


def preprocessed(name):
    if name not in _PRE:
        _PRE[name] = run_preprocess(name)
    return _PRE[name]


def rel_err(ours, ref):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    scale = np.abs(ref).max() if ref.size and np.abs(ref).max() > 0 else 1.0
    return np.abs(ours - ref).max() / scale if ref.size else 0.0


def detrend(a):
    """``a`` minus its least-squares plane."""
    a = np.asarray(a, dtype=np.float64)
    u, v = np.meshgrid(np.arange(a.shape[0]), np.arange(a.shape[1]), indexing="ij")
    basis = np.stack([u.ravel(), v.ravel(), np.ones(a.size)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, a.ravel(), rcond=None)
    return a - (basis @ coef).reshape(a.shape)


# --------------------------------------------------------------------------------------------
# parity with py4DSTEM 0.14.18


@pytest.fixture(autouse=True)
def _close_pyplot_figures():
    """Figures go through pyplot once it is imported (test_figures_and_save_figures)."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


# fit_function=None: a documented difference (test_fit_none_is_no_descan_fit)
@pytest.mark.parametrize("name", [c for c in CASES if c != "fit_none"])
def test_preprocess_matches_py4dstem(name):
    dpc = preprocessed(name)
    shape = dpc._grid_scan_shape
    for field in FIELDS:
        ref = np.broadcast_to(get(f"{name}__{field}"), shape).astype(np.float64)
        ours = getattr(dpc, field)
        assert isinstance(ours, xr.DataArray) and ours.dims == ("Rx", "Ry")
        ours = ours.values.astype(np.float64)
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref), err_msg=field)
        fin = np.isfinite(ref)
        # measured/fitted: float32 CoM sums; the differences lose a few bits more
        tol = 1e-6 if field.startswith(("com_measured", "com_fitted")) else 1e-5
        assert rel_err(ours[fin], ref[fin]) < tol, field
    assert dpc.transpose == bool(get(f"{name}__transpose"))
    assert dpc._rotation_best_rad == pytest.approx(float(get(f"{name}__rotation_rad")), abs=1e-7)
    assert dpc.rotation_deg == pytest.approx(
        np.rad2deg(float(get(f"{name}__rotation_rad"))), abs=1e-5
    )
    np.testing.assert_allclose(dpc._scan_sampling, get(f"{name}__scan_sampling"), rtol=1e-12)
    np.testing.assert_allclose(
        dpc._reciprocal_sampling, get(f"{name}__reciprocal_sampling"), rtol=1e-12
    )


@pytest.mark.parametrize(("name", "recon"), RECONS, ids=[f"{c}-{r}" for c, r in RECONS])
def test_reconstruct_without_backtracking_matches_py4dstem(name, recon):
    dpc = preprocessed(name)
    kwargs = {r["name"]: r["kwargs"] for r in CASES[name]["reconstruct"]}[recon]
    dpc.reconstruct(reset=True, progress_bar=False, backtrack=False, **kwargs)
    key = f"{name}__{recon}"
    ref = get(f"{key}__object_phase")
    assert dpc.object_phase.dtype == np.float32 and dpc.object_phase.shape == ref.shape
    assert rel_err(dpc.object_phase.values, ref) < 1e-5
    ref_errors = get(f"{key}__error_iterations")
    assert len(dpc.error_iterations) == len(ref_errors)
    np.testing.assert_allclose(dpc.error_iterations, ref_errors, rtol=1e-5)
    assert dpc.error == pytest.approx(float(get(f"{key}__error")), rel=1e-5)
    assert dpc._step_size == float(get(f"{key}__step_size"))


@pytest.mark.parametrize("name", ["maxdiv", "maxdiv_swap"])
def test_divergence_curves_match_py4dstem(name):
    curve = preprocessed(name).rotation_curve
    assert curve.attrs["metric"] == "divergence"
    np.testing.assert_allclose(curve["untransposed"], get(f"{name}__rotation_div"), rtol=1e-5)
    np.testing.assert_allclose(
        curve["transposed"], get(f"{name}__rotation_div_transpose"), rtol=1e-5
    )


def test_continuing_equals_one_run():
    dpc = run_preprocess("default")
    dpc.reconstruct(max_iter=10, backtrack=False, progress_bar=False)
    with pytest.warns(UserWarning, match="Continuing reconstruction"):
        dpc.reconstruct(max_iter=54, backtrack=False, progress_bar=False)
    assert len(dpc.error_iterations) == 64
    assert rel_err(dpc.object_phase.values, get("default__default__object_phase")) < 1e-5


def test_initial_object_guess_and_stored_iterations():
    first = run_preprocess("default").reconstruct(
        progress_bar=False, backtrack=False, max_iter=10, store_iterations=True
    )
    assert len(first.object_phase_iterations) == 10
    np.testing.assert_array_equal(first.object_phase_iterations[-1], first.object_phase)
    guess = first.object_phase.values
    again = run_preprocess("default", initial_object_guess=guess)
    again.reconstruct(progress_bar=False, max_iter=0)
    np.testing.assert_array_equal(again.object_phase, guess)
    assert again.error_iterations == [] and again.error == np.inf


# --------------------------------------------------------------------------------------------
# backtracking really reverts (py4DSTEM's does not: B21)


def padded_error(dpc):
    com_x, com_y = dpc._com_x, dpc._com_y
    norm = integrate.error_norm(com_x, com_y)
    return float(integrate.residual(dpc._padded_object_phase, com_x, com_y, dpc.sampling, norm)[2])


@pytest.mark.parametrize("recon", ["bt_step15", "bt_gaussian"])
def test_backtracking_reverts_to_the_best_object(recon):
    kwargs = {r["name"]: r["kwargs"] for r in CASES["default"]["reconstruct"]}[recon]
    dpc = run_preprocess("default").reconstruct(progress_bar=False, **kwargs)
    # ours: the returned object is the best seen, and `error` is its error
    assert dpc.error <= min(dpc.error_iterations)
    assert padded_error(dpc) == dpc.error
    assert np.all(np.diff(dpc.error_iterations) <= 0)  # accepted errors never increase
    # py4DSTEM keeps the object that raised the error: worse than the best it had seen
    py_errors = get(f"default__{recon}__error_iterations")
    py_final = float(get(f"default__{recon}__final_object_error"))
    assert py_final > min(py_errors)
    assert dpc.error <= min(py_errors) < py_final


def test_backtracking_recovers_from_a_too_large_step():
    dpc = run_preprocess("default").reconstruct(step_size=1.5, progress_bar=False)
    assert float(get("default__bt_step15__final_object_error")) > 1  # py4DSTEM: worse than 0
    assert len(get("default__bt_step15__error_iterations")) == 1  # and it stopped at once
    assert len(dpc.error_iterations) > 10 and dpc.error < 0.01
    best = run_preprocess("default").reconstruct(progress_bar=False, backtrack=False)
    assert (
        np.corrcoef(dpc.object_phase.values.ravel(), best.object_phase.values.ravel())[0, 1] > 0.999
    )


# --------------------------------------------------------------------------------------------
# ground truth on synthetic scans


@pytest.mark.parametrize(
    ("rotation", "transpose", "descan"),
    [
        (15.0, False, (0.02, -0.03)),
        (-35.0, False, (0.0, 0.0)),
        (50.0, True, (0.03, 0.01)),
        (-70.0, True, (0.01, 0.02)),
    ],
)
def test_ground_truth(rotation, transpose, descan):
    scan = dpc_scan(
        (40, 36),
        (32, 32),
        disk_radius=7,
        max_shift=1.5,
        rotation_deg=rotation,
        transpose=transpose,
        descan=descan,
        seed=3,
        r_pixel_size=0.5,
    )
    dpc = DPC(scan.datacube, verbose=False).preprocess(
        plot_rotation=False, plot_center_of_mass=False
    )
    assert abs(dpc.rotation_deg - rotation) <= 1.0
    assert dpc.transpose is transpose
    dpc.reconstruct(progress_bar=False)
    r = np.corrcoef(detrend(dpc.object_phase).ravel(), detrend(scan.potential).ravel())[0, 1]
    assert r >= 0.9
    assert dpc.object_phase.coords["Rx"].attrs["units"] == "A"
    np.testing.assert_array_equal(dpc.object_phase.coords["Ry"], scan.datacube.coords["Ry"])


# --------------------------------------------------------------------------------------------
# one read of the datacube, no mutation


def test_preprocess_reads_every_chunk_exactly_once():
    scan = dpc_scan(
        (24, 20), (24, 24), disk_radius=5, max_shift=1.0, rotation_deg=10, seed=1, chunks=(5, 7)
    )
    dc = scan.datacube
    loads = []

    def count(block, block_info=None):
        if block_info is not None and block.size:
            loads.append(tuple(block_info[0]["chunk-location"]))
        return block

    counted = dc.data.map_blocks(count, dtype=dc.dtype, meta=np.empty((0,) * 4, dc.dtype))
    cube = s4.from_array(counted, chunks=None, r_pixel_size=1.0, r_units="A")
    dpc = DPC(cube, verbose=False).preprocess(plot_rotation=False, plot_center_of_mass=False)
    assert Counter(loads) == Counter(np.ndindex(*dc.data.numblocks))
    dpc.reconstruct(progress_bar=False, max_iter=5).show_complex_CoM()
    assert len(loads) == int(np.prod(dc.data.numblocks))


def test_datacube_and_mask_are_not_modified():
    data = derive_input("f32")
    before = data.copy()
    mask = get("in__mask_bool")
    cube = s4.from_array(data, chunks=(24, 20))
    dpc = DPC(cube, verbose=False).preprocess(
        dp_mask=mask, plot_rotation=False, plot_center_of_mass=False
    )
    dpc.reconstruct(progress_bar=False)
    np.testing.assert_array_equal(data, before)
    # a float mask of the same values gives the same CoM (bool and float masks both work)
    fdpc = DPC(cube, verbose=False).preprocess(
        dp_mask=mask.astype(np.float32), plot_rotation=False, plot_center_of_mass=False
    )
    np.testing.assert_allclose(fdpc._com_measured_x, dpc._com_measured_x, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# calibrations and documented differences


def test_energy_from_datacube_attrs():
    case = CASES["mrad"]
    cube = s4.from_array(derive_input("f32"), energy=case["energy"], **case["calibration"])
    dpc = DPC(cube, verbose=False).preprocess(plot_rotation=False, plot_center_of_mass=False)
    np.testing.assert_allclose(dpc._reciprocal_sampling, get("mrad__reciprocal_sampling"))
    assert dpc.com_x.attrs["units"] == "A^-1" and dpc.sampling == (0.5, 0.5)


def test_constant_fit_ignores_empty_patterns():
    cube = s4.from_array(derive_input("u16_empty"))
    dpc = DPC(cube, verbose=False).preprocess(
        fit_function="constant", plot_rotation=False, plot_center_of_mass=False
    )
    measured = dpc.com_measured_x.values
    assert np.isnan(measured).sum() == len(get("empty"))
    np.testing.assert_allclose(dpc.com_fitted_x, np.nanmean(measured.astype(np.float64)), rtol=1e-6)
    assert np.abs(dpc.com_normalized_x).max() > 0.1  # py4DSTEM's NaN mean zeroes it all


def verbose_preprocess(**kwargs):
    """A verbose preprocess of the f32 fixture input and the messages it warned."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dpc = DPC(s4.from_array(derive_input("f32")), verbose=True).preprocess(
            plot_rotation=False, plot_center_of_mass=False, **kwargs
        )
    return dpc, [str(w.message) for w in caught]


def test_fit_none_is_no_descan_fit():
    """py4DSTEM 0.14.18 fits the measured CoM with itself: zero signal, a 0/0 (NaN) error and a
    blank phase. Ours removes only the mean beam position (the 'constant' model)."""
    dpc, messages = verbose_preprocess(fit_function=None)
    assert not any("fit_function" in m for m in messages)
    np.testing.assert_allclose(dpc.com_measured_x, get("fit_none__com_measured_x"), rtol=1e-6)
    assert not np.any(get("fit_none__com_normalized_x"))  # py4DSTEM: nothing to integrate
    constant = run_preprocess("fit_constant")
    for field in FIELDS:
        np.testing.assert_array_equal(getattr(dpc, field), getattr(constant, field))
    dpc.reconstruct(progress_bar=False)
    assert np.isfinite(dpc.error) and dpc.error < 0.1


def test_verbose_warnings_say_calibration_and_print_rotation(capsys):
    _, messages = verbose_preprocess()
    assert any("real-space calibrations" in m for m in messages)
    assert any("reciprocal-space calibrations" in m for m in messages)
    assert not any("rotation" in m for m in messages)  # information, not a warning
    assert "Best fit rotation = 20 degrees." in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# validation


def _cube():
    return s4.from_array(derive_input("u16"))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: DPC(np.zeros((4, 4, 4, 4))), "datacube"),
        (lambda: DPC().preprocess(), "datacube"),
        (lambda: DPC(_cube(), energy=-1), "energy"),
        (lambda: DPC(_cube(), device="tpu"), "device"),
        (lambda: DPC(_cube()).preprocess(fit_function="cubic"), "fit_function"),
        (lambda: DPC(_cube()).preprocess(dp_mask=np.ones((32, 27))), "dp_mask"),
        (lambda: DPC(_cube()).preprocess(dp_mask=np.ones((32, 28), dtype=complex)), "dp_mask"),
        (lambda: DPC(_cube()).preprocess(padding_factor=0.5), "padding_factor"),
        (lambda: DPC(_cube()).preprocess(padding_factor=np.nan), "padding_factor"),
        (lambda: DPC(_cube()).preprocess(padding_factor="2"), "padding_factor"),
        (lambda: DPC(_cube()).preprocess(rotation_angles_deg=[]), "rotation_angles_deg"),
        (lambda: DPC(_cube()).preprocess(force_com_rotation=np.inf), "force_com_rotation"),
        (lambda: DPC(_cube()).preprocess(force_com_transpose="yes"), "force_com_transpose"),
        (
            lambda: DPC(_cube()).preprocess(force_com_shifts=(np.zeros((3, 3)), 0)),
            "force_com_shifts",
        ),
        (
            lambda: DPC(_cube()).preprocess(force_com_measured=np.zeros((24, 20))),
            "force_com_measured",
        ),
        (lambda: DPC(_cube()).preprocess(plot_center_of_mass="some"), "plot_center_of_mass"),
        (
            lambda: DPC(
                s4.from_array(derive_input("u16"), q_pixel_size=0.5, q_units="mrad")
            ).preprocess(),
            "energy",
        ),
        (
            lambda: DPC(_cube(), initial_object_guess=np.zeros((3, 3))).preprocess(),
            "initial_object_guess",
        ),
    ],
)
def test_bad_input_raises_value_error_naming_it(call, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=match):
            call()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_iter": -1}, "max_iter"),
        ({"max_iter": 2.5}, "max_iter"),
        ({"step_size": 0}, "step_size"),
        ({"q_lowpass": -0.1}, "q_lowpass"),
        ({"q_highpass": np.nan}, "q_highpass"),
        ({"gaussian_filter_sigma": -1}, "gaussian"),
        ({"butterworth_order": 0}, "butterworth_order"),
        ({"reset": "yes"}, "reset"),
        ({"stopping_criterion": -1.0}, "stopping_criterion"),
    ],
)
def test_bad_reconstruct_input(kwargs, match):
    dpc = preprocessed("default")
    with pytest.raises(ValueError, match=match):
        dpc.reconstruct(progress_bar=False, **kwargs)


def test_results_before_their_step():
    dpc = DPC(_cube(), verbose=False)
    with pytest.raises(NotComputedError, match="preprocess"):
        dpc.reconstruct()
    with pytest.raises(NotComputedError, match="preprocess"):
        dpc.com_x  # noqa: B018
    dpc.preprocess(plot_rotation=False, plot_center_of_mass=False)
    with pytest.raises(NotComputedError, match="reconstruct"):
        dpc.object_phase  # noqa: B018


@pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("cupy") is not None, reason="cupy is installed"
)
def test_gpu_without_cupy_says_so():
    with pytest.raises(ImportError, match="cupy"):
        DPC(_cube(), device="gpu")


# --------------------------------------------------------------------------------------------
# figures


def test_figures_and_save_figures(tmp_path):
    import matplotlib.pyplot as plt

    dpc = run_preprocess("default")
    dpc.preprocess(plot_center_of_mass="all", plot_rotation=True)
    assert isinstance(dpc.figures["center_of_mass"], Figure)
    assert len(dpc.figures["center_of_mass"].axes) >= 6
    assert isinstance(dpc.figures["rotation"], Figure)
    assert dpc.show_complex_CoM() is None and isinstance(dpc.figures["complex_com"], Figure)
    assert dpc.reconstruct(progress_bar=False, store_iterations=True).visualize() is dpc
    assert isinstance(dpc.figures["phase"], Figure)
    dpc.visualize(iterations_grid=(2, 3))
    # pyplot is imported: the figures are pyplot's (plt.show / plt.savefig see them) ...
    assert plt.gcf() is dpc.figures["phase"]
    assert {f.number for f in dpc.figures.values()} <= set(plt.get_fignums())
    open_before = plt.get_fignums()
    paths = dpc.save_figures(tmp_path / "figs")
    assert plt.get_fignums() == open_before  # ... but save_figures' figures never are
    names = sorted(p.name for p in paths)
    assert names == [
        "dpc_center_of_mass.png",
        "dpc_complex_com.png",
        "dpc_phase.png",
        "dpc_rotation.png",
    ]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    curve = dpc.rotation_curve
    assert curve["angle"].size == 179 and curve.attrs["rotation_deg"] == 20.0


def test_progress_bar_writes_to_stderr(capsys):
    preprocessed("default").reconstruct(reset=True, max_iter=3, progress_bar=True)
    assert "Reconstructing phase (3 kept): 3/3 iter" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# device code path (numpy standing in for cupy: single-precision FFTs, xp is not numpy)


def test_device_path_agrees_with_cpu(monkeypatch):
    expected = preprocessed("default")
    expected.reconstruct(reset=True, progress_bar=False, backtrack=False, q_lowpass=0.3)
    fake = FakeCupy()
    monkeypatch.setattr(dpc_module, "device_module", lambda device, what: fake)
    monkeypatch.setattr(integrate, "array_module", lambda x: fake)
    dpc = run_preprocess("default", device="gpu")
    dpc.reconstruct(progress_bar=False, backtrack=False, q_lowpass=0.3)
    assert fake.calls > 0
    assert rel_err(dpc.object_phase.values, expected.object_phase.values) < 1e-5


def test_preprocess_again_clears_the_reconstruction():
    """py4DSTEM 0.14.18 keeps the previous object, error history and step size, so the next
    reconstruct() continues from it and mixes both runs; ours starts again."""
    dpc = run_preprocess("default")
    first = dpc.reconstruct(max_iter=4, progress_bar=False).object_phase.values.copy()
    assert len(dpc.error_iterations) >= 1
    dpc.preprocess(plot_rotation=False, plot_center_of_mass=False)
    with pytest.raises(AttributeError):
        dpc.error  # noqa: B018 - cleared with the rest of the previous reconstruction
    again = dpc.reconstruct(max_iter=4, progress_bar=False).object_phase.values
    np.testing.assert_array_equal(again, first)  # the same start gives the same result
