"""Property test: chains of plain xarray operations (steps, crops, reversals, transposes,
concatenations, label lists, arithmetic) never leave a wrong calibration behind.

For every chain drawn, the test keeps its own record of which original pixel each remaining
pixel is (an index vector per dim); the true coordinate of a pixel is ``index * pixel size``.
The datacube after the chain must then behave exactly like one built directly with
``from_array`` from the same pixels and the true calibration: binning, centre of mass,
virtual images, DPC and zarr/h5 round trips give the same numbers, or both refuse with a
``ValueError`` (an irregular or non-square grid where a pixel size is needed).
"""

import warnings

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import stem4d_dask as s4
from stem4d_dask import synthetic
from stem4d_dask.detectors import circle_mask
from stem4d_dask.phase import DPC, center_of_mass
from stem4d_dask.preprocess import bin_data_diffraction, bin_data_real

DIMS = s4.DIMS
PIXEL = {"Rx": 0.5, "Ry": 0.5, "Qx": 1.5, "Qy": 1.5}
UNITS = {"Rx": "nm", "Ry": "nm", "Qx": "mrad", "Qy": "mrad"}
ENERGY = 200e3
MIN_SIZE = {"Rx": 3, "Ry": 3, "Qx": 6, "Qy": 6}

pytestmark = pytest.mark.filterwarnings(
    "ignore::stem4d_dask.datacube.StaleCalibrationWarning",
    "ignore:Iterative reconstruction will not be quantitative",
)


@pytest.fixture(scope="module")
def base():
    dc = synthetic.dpc_scan((12, 10), (16, 16), disk_radius=3.0, max_shift=1.0, seed=3).datacube
    return dc.values


def _cube(values):
    return s4.from_array(
        values,
        r_pixel_size=PIXEL["Rx"],
        r_units="nm",
        q_pixel_size=PIXEL["Qx"],
        q_units="mrad",
        energy=ENERGY,
        chunks=(4, 5),
    )


# --- the operations drawn, each on (DataArray, {dim: original indices}) -------------------


def _isel(state, dim, key):
    t, idx = state
    return t.isel({dim: key}), {**idx, dim: idx[dim][key]}


@st.composite
def steps(draw, state):
    dim = draw(st.sampled_from(DIMS))
    n = len(state[1][dim])
    step = draw(st.sampled_from([1, 2, 3, -1, -2]))
    start = draw(st.integers(0, max(n // 3, 0)))
    key = slice(start, None, step) if step > 0 else slice(n - 1 - start, None, step)
    return _isel(state, dim, key)


@st.composite
def label_crops(draw, state):
    t, idx = state
    dim = draw(st.sampled_from(DIMS))
    labels = np.sort(t[dim].values)
    lo = draw(st.integers(0, max(len(labels) // 3, 0)))
    hi = draw(st.integers(min(lo + MIN_SIZE[dim], len(labels)) - 1, len(labels) - 1))
    if not (np.diff(t[dim].values) > 0).all():  # sel with a slice needs sorted labels
        return state
    keep = (t[dim].values >= labels[lo]) & (t[dim].values <= labels[hi])
    return t.sel({dim: slice(labels[lo], labels[hi])}), {**idx, dim: idx[dim][keep]}


@st.composite
def label_lists(draw, state):
    t, idx = state
    dim = draw(st.sampled_from(DIMS))
    n = len(idx[dim])
    picks = sorted(draw(st.sets(st.integers(0, n - 1), min_size=min(MIN_SIZE[dim], n), max_size=n)))
    labels = t[dim].values[picks]
    if len(set(labels.tolist())) != len(labels):
        return state
    return t.reindex({dim: labels}), {**idx, dim: idx[dim][picks]}


@st.composite
def concatenations(draw, state):
    t, idx = state
    dim = draw(st.sampled_from(("Rx", "Ry")))
    n = len(idx[dim])
    k = draw(st.integers(1, n - 1))
    swap = draw(st.booleans())
    a, b = _isel(state, dim, slice(0, k)), _isel(state, dim, slice(k, None))
    first, second = (b, a) if swap else (a, b)
    joined = xr.concat([first[0], second[0].transpose(*first[0].dims)], dim=dim)
    return joined, {**idx, dim: np.concatenate([first[1][dim], second[1][dim]])}


@st.composite
def transposes(draw, state):
    t, idx = state
    order = draw(st.permutations(DIMS))
    return t.transpose(*order), idx


@st.composite
def arithmetic(draw, state):
    t, idx = state
    return (t * 1 if draw(st.booleans()) else t + 0), idx


OPERATIONS = [steps, label_crops, label_lists, concatenations, transposes, arithmetic]


@st.composite
def chains(draw, base):
    state = (_cube(base), {d: np.arange(n) for d, n in zip(DIMS, base.shape, strict=True)})
    names = []
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(OPERATIONS))
        new = draw(op(state))
        if all(len(new[1][d]) >= MIN_SIZE[d] for d in DIMS):
            state = new
            names.append(op.__name__)
    return state[0], state[1], names


# --- the datacube a user would have built directly ----------------------------------------


def _equivalent(t, idx):
    """``from_array`` of the same pixels with the true calibration; where a space is not a
    regular increasing square grid, its true (irregular) coords are assigned instead."""
    values = t.transpose(*DIMS).values
    kw, irregular = {}, {}
    for space, dims in (("r", ("Rx", "Ry")), ("q", ("Qx", "Qy"))):
        strides = [np.diff(idx[d]) for d in dims]
        regular = (
            all(s.size and (s == s[0]).all() and s[0] > 0 for s in strides)
            and strides[0][0] == strides[1][0]
        )
        if regular:
            stride = int(strides[0][0])
            kw[f"{space}_pixel_size"] = PIXEL[dims[0]] * stride
            kw[f"{space}_origin"] = tuple(float(idx[d][0] * PIXEL[d]) for d in dims)
        else:
            kw[f"{space}_pixel_size"] = PIXEL[dims[0]]
            irregular.update({d: idx[d] * PIXEL[d] for d in dims})
    dc = s4.from_array(values, r_units="nm", q_units="mrad", energy=ENERGY, **kw)
    for d, c in irregular.items():
        dc = dc.assign_coords({d: (d, c, {"units": UNITS[d]})})
    return dc


def _same(run, t, e, rtol=1e-6):
    """``run`` gives the same numbers on both datacubes, or both refuse with ValueError."""
    try:
        expected = run(e)
    except ValueError as err:
        with pytest.raises(ValueError):
            run(t)
        return str(err)
    got = run(t)
    for key in expected:
        np.testing.assert_allclose(
            np.asarray(got[key], dtype=float),
            np.asarray(expected[key], dtype=float),
            rtol=rtol,
            atol=1e-9,
            err_msg=key,
        )
    return None


def _coords(dc):
    c = dc.stem4d.checked()
    return {d: c[d].values for d in DIMS}


def _binned_q(dc):
    out = bin_data_diffraction(dc, 2).stem4d.checked()
    return {"values": out.values, **{d: out[d].values for d in DIMS}}


def _binned_r(dc):
    out = bin_data_real(dc, 2).stem4d.checked()
    return {"values": out.values, "Rx": out.Rx.values, "Ry": out.Ry.values}


def _com(dc):
    ds = center_of_mass(dc).compute()
    return {k: ds[k].transpose("Rx", "Ry").values for k in ds.data_vars}


def _virtual(dc):
    mask = circle_mask(dc, 4.5, units="mrad")
    return {"mask": mask, "image": dc.stem4d.virtual_image(mask).values}


def _dpc(dc):
    dpc = DPC(dc, verbose=False).preprocess(plot_center_of_mass=False, plot_rotation=False)
    dpc.reconstruct(max_iter=4, progress_bar=False)
    return {"phase": dpc.object_phase.values, "rotation": dpc.rotation_deg}


def _round_trip(path):
    def run(dc):
        s4.write(dc, path, progress=False, overwrite=True)
        back = s4.read(path)
        return {
            "values": back.values,
            **{d: back[d].values for d in DIMS},
            "energy": back.attrs["energy"],
        }

    return run


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
def test_any_chain_of_xarray_operations_keeps_the_calibration(base, tmp_path, data):
    t, idx, names = data.draw(chains(base), label="chain")
    e = _equivalent(t, idx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        truth = {d: idx[d] * PIXEL[d] for d in DIMS}
        for d in DIMS:  # the checked datacube's coords are the true ones
            np.testing.assert_allclose(_coords(t)[d], truth[d], rtol=1e-12, err_msg=d)
        _same(_binned_q, t, e)
        _same(_binned_r, t, e)
        _same(_com, t, e)
        _same(_virtual, t, e)
        refused = _same(_dpc, t, e, rtol=1e-4)
        regular = refused is None
        _same(_round_trip(tmp_path / "c.zarr"), t, e)
        _same(_round_trip(tmp_path / "c.h5"), t, e)
    event("DPC ran" if regular else "DPC refused")
    for name in names:
        event(name)
    assert regular or "pixel" in refused, refused
