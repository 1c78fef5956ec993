"""find_peaks and BraggPeaks: spots found where they were drawn (clean and at a realistic dose),
py4DSTEM 0.14.18's get_maxima_2D frame by frame (fixtures from
tests/fixtures/make_peaks_fixtures.py), calibrated positions, the Bragg vector map, laziness,
process workers, the store round trip, slicing and argument checks; one chunk-kernel call per
scan chunk giving get_maxima_2D's peaks bit for bit."""

import json
import tracemalloc
from pathlib import Path

import dask
import numpy as np
import pytest
from scipy.spatial import cKDTree

import stem4d_dask as s4
from stem4d_dask.kernels.maxima import get_maxima_2D
from stem4d_dask.lazy import RawFileLoader
from stem4d_dask.peaks import PEAK_FIELDS, BraggPeaks, find_peaks
from stem4d_dask.ragged import RaggedFrames

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "peaks_py4dstem.npz"
with np.load(FIXTURE) as _z:
    FIX = {k: _z[k] for k in _z.files}
CASES = {c["name"]: c for c in json.loads(str(FIX["cases"]))}

Q = 64  # detector pixels of the synthetic spot scans
WIDTH = 1.5  # Gaussian sigma of a spot, pixels


def spot_scan(seed, scan=(8, 8), n_spots=6, min_separation=8.0, margin=6):
    """float64 ``(*scan, Q, Q)`` frames of ``n_spots`` Gaussian spots each (sigma ``WIDTH``,
    amplitudes 0.4-1), at uniform random sub-pixel positions at least ``min_separation`` px apart
    (> 5 sigma) and ``margin`` px from the edges; returns ``(frames, {(rx, ry): (n, 2) centres},
    {(rx, ry): (n,) amplitudes})``."""
    rng = np.random.default_rng(seed)
    xx, yy = np.mgrid[:Q, :Q].astype(np.float64)
    frames = np.zeros((*scan, Q, Q))
    centres, amplitudes = {}, {}
    for rx, ry in np.ndindex(scan):
        points = []
        while len(points) < n_spots:
            p = rng.uniform(margin, Q - 1 - margin, 2)
            if all(np.hypot(*(p - o)) > min_separation for o in points):
                points.append(p)
        points = np.array(points)
        amps = rng.uniform(0.4, 1.0, n_spots)
        for (x0, y0), a in zip(points, amps, strict=True):
            frames[rx, ry] += a * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * WIDTH**2))
        centres[rx, ry], amplitudes[rx, ry] = points, amps
    return frames, centres, amplitudes


def score(peaks, centres, tolerance=1.0):
    """``(recall, precision, rms error px, matched (found index, true index) per position)``:
    each true spot matched to its nearest found peak within ``tolerance`` px."""
    tp = fn = fp = 0
    errors, matches = [], {}
    for pos, truth in centres.items():
        found = peaks[pos]
        xy = np.column_stack([found["qx"], found["qy"]])
        if len(xy) == 0:
            fn += len(truth)
            continue
        dist, nearest = cKDTree(xy).query(truth)
        ok = dist <= tolerance
        tp += int(ok.sum())
        fn += int((~ok).sum())
        fp += len(xy) - len(set(nearest[ok].tolist()))
        errors.extend(dist[ok])
        matches[pos] = (nearest[ok], np.flatnonzero(ok))
    rms = float(np.sqrt(np.mean(np.square(errors)))) if errors else np.inf
    return tp / (tp + fn), tp / max(tp + fp, 1), rms, matches


def as_dict(peaks, positions):
    return {pos: peaks[pos] for pos in positions}


def assert_same_peaks(a, b):
    assert a.dtype.names == b.dtype.names
    assert a.shape == b.shape
    for field in a.dtype.names:
        np.testing.assert_array_equal(a[field], b[field], err_msg=field)


# --------------------------------------------------------------------------------------------
# accuracy on synthetic spots


def test_clean_spots_found_at_their_subpixel_positions():
    frames, centres, amplitudes = spot_scan(0)
    dc = s4.from_array(frames.astype(np.float32), chunks=(4, 4, Q, Q))
    positions = list(centres)
    poly = as_dict(find_peaks(dc, subpixel="poly").compute(), positions)
    recall, precision, rms, matches = score(poly, centres)
    assert recall >= 0.98 and precision >= 0.98, (recall, precision)  # measured 1.0, 1.0
    assert rms <= 0.1, rms  # measured 0.022 px
    # the intensity is the frame's, bilinear at the refined position: at most the amplitude,
    # at least its value half a pixel off along both axes
    for pos, (found, true) in matches.items():
        got, amp = poly[pos]["intensity"][found], amplitudes[pos][true]
        assert np.all(got <= amp * (1 + 1e-6)) and np.all(got >= amp * 0.88), pos

    pixel = as_dict(find_peaks(dc, subpixel="pixel").compute(), positions)
    for pos in positions:  # py4DSTEM's order: brightest pixel maximum first, then refined
        assert np.all(np.diff(pixel[pos]["intensity"]) <= 0)
        assert np.all(np.abs(poly[pos]["qx"] - pixel[pos]["qx"]) <= 0.5)
        assert np.all(np.abs(poly[pos]["qy"] - pixel[pos]["qy"]) <= 0.5)
    recall, precision, rms, _ = score(pixel, centres)
    assert recall == precision == 1.0
    assert 0.3 < rms < 0.5, rms  # integer positions: sqrt(2 / 12) = 0.41 px expected
    multicorr = as_dict(find_peaks(dc, subpixel="multicorr").compute(), positions)
    recall, precision, rms, _ = score(multicorr, centres)
    assert recall == precision == 1.0
    assert rms <= 0.01, rms  # measured 2e-5 px


def test_noisy_spots_at_a_realistic_dose():
    """Poisson counts, spots of 20-50 electrons at their peak on 1 electron per pixel of
    background: smoothing and a relative threshold keep every spot and nothing else."""
    frames, centres, _ = spot_scan(1)
    counts = np.random.default_rng(2).poisson(frames * 50 + 1.0).astype(np.float32)
    dc = s4.from_array(counts, chunks=(4, 4, Q, Q))
    positions = list(centres)
    found = as_dict(find_peaks(dc, sigma=1.5, minRelativeIntensity=0.2).compute(), positions)
    recall, precision, rms, _ = score(found, centres)
    assert recall >= 0.98 and precision >= 0.98, (recall, precision)  # measured 1.0, 1.0
    assert 0.03 < rms <= 0.2, rms  # measured 0.13 px (0.126-0.138 over 6 other seeds)
    # without them the noise's own maxima swamp the spots
    raw = as_dict(find_peaks(dc).compute(), positions)
    recall, precision, _, _ = score(raw, centres)
    assert precision < 0.3, precision  # measured 0.085
    assert all(len(p) == 70 for p in raw.values())  # the default maxNumPeaks


# --------------------------------------------------------------------------------------------
# py4DSTEM 0.14.18, frame by frame


def test_py4dstem_fixture_complete():
    assert sorted(CASES) == [
        "multicorr_u8",
        "pixel_n70",
        "poly_filters",
        "poly_rel1_all",
        "u16_poly_sigma",
    ]
    assert not [k for k in FIX if k.endswith("__err")]
    assert FIX["scan"].shape == (4, 4, 48, 48) and FIX["scan"].dtype == np.float32


@pytest.mark.parametrize("name", sorted(CASES))
def test_equals_py4dstem_get_maxima_2D_frame_by_frame(name):
    case = CASES[name]
    scan = FIX["scan"].astype(case["dtype"])
    dc = s4.from_array(scan, chunks=(3, 2, 48, 48))  # uneven scan chunks
    peaks = find_peaks(dc, **case["kwargs"])
    computed = peaks.compute()
    indptr = FIX[f"{name}__indptr"]
    np.testing.assert_array_equal(computed.counts().values.ravel(), np.diff(indptr))
    assert computed.n_items == indptr[-1]
    for k, (rx, ry) in enumerate(np.ndindex(scan.shape[:2])):
        ours = computed[rx, ry]
        ref = slice(indptr[k], indptr[k + 1])
        assert len(ours) == ref.stop - ref.start, (rx, ry)
        for field, ref_field in (("qx", "x"), ("qy", "y"), ("intensity", "intensity")):
            np.testing.assert_allclose(
                ours[field],
                FIX[f"{name}__{ref_field}"][ref],
                rtol=1e-12,
                atol=1e-9,
                err_msg=f"{field} at ({rx}, {ry})",
            )
        # an uncalibrated detector: the calibrated positions are the pixel ones
        np.testing.assert_array_equal(ours["qx_cal"], ours["qx"])
        np.testing.assert_array_equal(ours["qy_cal"], ours["qy"])
    assert_same_peaks(peaks[3, 1], computed[3, 1])  # lazy access: the same


# --------------------------------------------------------------------------------------------
# calibration


def test_calibrated_positions_follow_the_coords():
    frames, centres, _ = spot_scan(3, scan=(3, 4))
    dc = s4.from_array(
        frames, chunks=(2, 3, Q, Q), q_pixel_size=0.5, q_units="mrad", q_origin=(-16.0, -15.5)
    )
    cropped = dc.isel(Qx=slice(2, None), Qy=slice(3, None))
    for cube, shift in ((dc, (0, 0)), (cropped, (2, 3))):
        peaks = find_peaks(cube, maxNumPeaks=None).compute()
        assert peaks.units == {"qx": "pixels", "qy": "pixels", "qx_cal": "mrad", "qy_cal": "mrad"}
        origin = (float(cube.Qx[0]), float(cube.Qy[0]))
        for pos in centres:
            p = peaks[pos]
            assert len(p) == 6
            np.testing.assert_allclose(p["qx_cal"], origin[0] + p["qx"] * 0.5, rtol=0, atol=1e-12)
            np.testing.assert_allclose(p["qy_cal"], origin[1] + p["qy"] * 0.5, rtol=0, atol=1e-12)
        # the same spots, in the crop's pixels, at the same calibrated places
        full = find_peaks(dc, maxNumPeaks=None).compute()
        for pos in centres:
            a, b = full[pos], peaks[pos]
            np.testing.assert_allclose(b["qx"], a["qx"] - shift[0], atol=1e-12)
            np.testing.assert_allclose(b["qy"], a["qy"] - shift[1], atol=1e-12)
            np.testing.assert_allclose(b["qx_cal"], a["qx_cal"], atol=1e-12)
        assert origin == ((-16.0, -15.5) if shift == (0, 0) else (-15.0, -14.0))
        assert peaks.detector_coords["Qx"].attrs["units"] == "mrad"
        np.testing.assert_array_equal(peaks.detector_coords["Qy"].values, cube.Qy.values)


# --------------------------------------------------------------------------------------------
# Bragg vector map


@pytest.fixture(scope="module")
def spots():
    frames, _, _ = spot_scan(4, scan=(4, 6))
    dc = s4.from_array(frames, chunks=(3, 4, Q, Q), q_pixel_size=0.25, q_units="A^-1")
    return find_peaks(dc, maxNumPeaks=None).compute()


def test_bragg_vector_map_totals(spots):
    everything = np.concatenate([spots[pos] for pos in np.ndindex(spots.scan_shape)])
    assert len(everything) == 4 * 6 * 6
    linear = spots.bragg_vector_map()
    assert linear.dims == ("Qx", "Qy") and linear.shape == (Q, Q)
    assert linear.dtype == np.float64
    assert float(linear.sum()) == pytest.approx(everything["intensity"].sum(), rel=1e-12)
    counted = spots.bragg_vector_map(weights=None)
    assert float(counted.sum()) == pytest.approx(len(everything), rel=1e-12)
    for sampling in (1, 2, 3):
        nearest = spots.bragg_vector_map(sampling=sampling, weights=None, mode="nearest")
        values = nearest.values
        assert values.sum() == len(everything)
        assert set(np.unique(values)) <= set(range(len(everything) + 1))  # whole counts
        # each peak in the grid point nearest its position
        gx = np.rint(everything["qx"] * sampling).astype(int)
        gy = np.rint(everything["qy"] * sampling).astype(int)
        expected = np.zeros(values.shape)
        np.add.at(expected, (gx, gy), 1)
        np.testing.assert_array_equal(values, expected)
    # bilinear: the weighted centre of each spot's four grid points is the peak position
    x, y = everything["qx"][0], everything["qy"][0]
    window = counted.values[int(x) : int(x) + 2, int(y) : int(y) + 2]
    assert window.sum() == pytest.approx(1.0)
    assert (window[1].sum(), window[:, 1].sum()) == pytest.approx((x % 1, y % 1))


def test_bragg_vector_map_places_peaks_and_refines_coords():
    frames = np.zeros((2, 3, 20, 22), np.float32)
    frames[:, :, 7, 9] = 5.0  # an isolated pixel: found at exactly (7, 9)
    frames[:, :, 12, 4] = frames[:, :, 13, 4] = 2.0  # a plateau: 'poly' puts it at (12.5, 4)
    dc = s4.from_array(frames, chunks=(1, 2, 20, 22), q_pixel_size=0.5, q_units="mrad")
    dc = dc.isel(Qx=slice(1, None))  # origin 0.5 mrad
    peaks = find_peaks(dc, maxNumPeaks=None)
    p = peaks[1, 2]
    np.testing.assert_array_equal(p["qx"], [6.0, 11.5])
    np.testing.assert_array_equal(p["qy"], [9.0, 4.0])
    np.testing.assert_array_equal(p["intensity"], [5.0, 2.0])
    for mode in ("nearest", "linear"):
        bvm = peaks.bragg_vector_map(mode=mode).values
        assert bvm[6, 9] == 6 * 5.0
        if mode == "linear":  # the half-pixel peak split evenly between its two pixels
            assert bvm[11, 4] == bvm[12, 4] == 6 * 1.0
            assert np.count_nonzero(bvm) == 3
        else:  # rint: half to even
            assert bvm[12, 4] == 6 * 2.0 and np.count_nonzero(bvm) == 2
    fine = peaks.bragg_vector_map(sampling=2)
    assert fine.shape == (38, 44)
    np.testing.assert_allclose(fine.Qx.values, 0.5 + np.arange(38) * 0.25)
    np.testing.assert_allclose(fine.Qy.values, np.arange(44) * 0.25)
    assert fine.Qx.attrs["units"] == "mrad"
    assert fine.attrs["q_pixel_size"] == 0.25 and fine.attrs["q_units"] == "mrad"
    # the isolated peak on its fine grid point, at the same calibrated place
    assert fine.values[12, 18] == 30.0
    assert (float(fine.Qx[12]), float(fine.Qy[18])) == (float(dc.Qx[6]), float(dc.Qy[9]))
    assert fine.values.sum() == pytest.approx(6 * 7.0)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"sampling": 0}, "sampling"),
        ({"sampling": 1.5}, "sampling"),
        ({"sampling": True}, "sampling"),
        ({"weights": "counts"}, "weights"),
        ({"weights": np.ones(3)}, "weights"),
        ({"mode": "cubic"}, "mode"),
        ({"mode": None}, "mode"),
    ],
)
def test_bragg_vector_map_bad_arguments(spots, kwargs, parameter):
    with pytest.raises(ValueError, match=parameter):
        spots.bragg_vector_map(**kwargs)


# --------------------------------------------------------------------------------------------
# laziness and schedulers

HUGE = (512, 512, 256, 256)  # uint16: 32 GiB


@pytest.fixture
def no_reads(monkeypatch):
    def refuse(self, slices):
        raise AssertionError("pixel data was read while building a graph")

    monkeypatch.setattr(RawFileLoader, "__call__", refuse)


def test_building_on_a_huge_scan_reads_nothing(tmp_path, no_reads):
    path = tmp_path / "huge.npy"  # sparse: 32 GiB logical, nothing on disk
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": "<u2", "fortran_order": False, "shape": HUGE}
        )
        f.truncate(f.tell() + int(np.prod(HUGE)) * 2)
    dc = s4.read(path)
    tracemalloc.start()
    peaks = find_peaks(dc, subpixel="multicorr", sigma=1, minSpacing=3)
    bvm = peaks.bragg_vector_map(sampling=2)
    counts = peaks.counts()
    region = peaks[100:300:2, 7]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 30 * 2**20, f"building allocated {peak / 2**20:.1f} MiB"
    assert bvm.shape == (512, 512) and counts.shape == HUGE[:2]
    assert region.scan_shape == (100, 1)
    n_chunks = dc.data.npartitions
    assert peaks.numblocks == dc.data.numblocks[:2]
    graph = peaks.blocks[0, 0].__dask_graph__()
    (layer,) = graph.layers  # the peaks read their own chunks: one layer, nothing before it
    assert layer.startswith("find_peaks-") and len(graph.layers[layer]) == n_chunks
    layers = bvm.data.__dask_graph__().layers
    assert len(layers[layer]) == n_chunks
    (histograms,) = [name for name in layers if name.startswith("bragg-vector-map-")]
    assert len(layers[histograms]) == n_chunks
    # every find_peaks key of the map's graph is one of the n_chunks chunk tasks
    keys = [k for k in dict(bvm.data.__dask_graph__()) if k[0] == layer]
    assert len(keys) == n_chunks


def test_process_workers_equal_threads(tmp_path, process_client):
    frames, _, _ = spot_scan(5, scan=(4, 6))
    counts = np.random.default_rng(6).poisson(frames * 50 + 1.0).astype(np.float32)
    np.save(tmp_path / "spots.npy", counts)
    dc = s4.read(tmp_path / "spots.npy", chunks=(2, 3), q_pixel_size=0.5, q_units="mrad")
    peaks = find_peaks(dc, subpixel="multicorr", sigma=1.5, minRelativeIntensity=0.2)
    with dask.config.set(scheduler="threads"):
        threaded = peaks.compute()
        bvm = peaks.bragg_vector_map(sampling=2).values
    with process_client.as_current():
        on_cluster = peaks.compute()
        assert on_cluster.is_computed
        cluster_bvm = process_client.compute(peaks.bragg_vector_map(sampling=2).data).result()
    np.testing.assert_array_equal(cluster_bvm, bvm)
    for rx, ry in np.ndindex(counts.shape[:2]):
        assert_same_peaks(on_cluster[rx, ry], threaded[rx, ry])
        # and what our kernel gives on the frame, in a plain loop
        ref = get_maxima_2D(
            counts[rx, ry],
            subpixel="multicorr",
            sigma=1.5,
            minRelativeIntensity=0.2,
            maxNumPeaks=70,
        )
        np.testing.assert_array_equal(threaded[rx, ry]["qx"], ref["x"])
        np.testing.assert_array_equal(threaded[rx, ry]["intensity"], ref["intensity"])
        assert len(ref) == 6


# --------------------------------------------------------------------------------------------
# store and slicing


def test_store_round_trip(tmp_path, spots):
    lazy = find_peaks(
        s4.from_array(
            spot_scan(4, scan=(4, 6))[0],
            chunks=(3, 4, Q, Q),
            q_pixel_size=0.25,
            q_units="A^-1",
            r_pixel_size=2.0,
            r_units="nm",
            q_origin=-8.0,
        ),
        maxNumPeaks=None,
    )
    path = lazy.to_zarr(tmp_path / "peaks.zarr")
    assert_same_peaks(BraggPeaks.from_zarr(path)[3, 5], lazy[3, 5])  # one chunk read lazily
    expected = lazy.compute()
    for opened in (BraggPeaks.from_zarr(path), RaggedFrames.from_zarr(path)):
        assert type(opened) is BraggPeaks
        assert opened.fields == PEAK_FIELDS
        assert opened.units == lazy.units
        assert opened.attrs == lazy.attrs
        assert opened.attrs["r_units"] == "nm" and opened.attrs["q_pixel_size"] == 0.25
        assert opened.scan_chunks == ((3, 1), (4, 2))
        assert opened.n_items == 4 * 6 * 6
        for q in ("Qx", "Qy"):
            np.testing.assert_array_equal(
                opened.detector_coords[q].values, lazy.detector_coords[q].values
            )
            assert opened.detector_coords[q].attrs["units"] == "A^-1"
        counts = opened.counts()
        np.testing.assert_array_equal(counts.Rx.values, np.arange(4) * 2.0)
        assert counts.Rx.attrs["units"] == "nm"
        opened = opened.compute()
        assert type(opened) is BraggPeaks and opened.is_computed
        for pos in np.ndindex(4, 6):
            assert_same_peaks(opened[pos], expected[pos])
            for field in ("qx", "qy", "intensity"):  # the same frames as ``spots``
                np.testing.assert_array_equal(opened[pos][field], spots[pos][field])
            np.testing.assert_allclose(opened[pos]["qx_cal"], -8.0 + 0.25 * spots[pos]["qx"])
        np.testing.assert_array_equal(
            opened.bragg_vector_map().values, expected.bragg_vector_map().values
        )
        np.testing.assert_array_equal(
            opened.bragg_vector_map().Qx.values, -8.0 + np.arange(Q) * 0.25
        )


def test_scan_region_slices_the_per_position_results(spots):
    region = spots[2:5, ::2]
    assert isinstance(region, BraggPeaks)
    assert region.scan_shape == (2, 3)
    for a, b in np.ndindex(2, 3):
        assert_same_peaks(region[a, b], spots[2 + a, 2 * b])
    np.testing.assert_array_equal(region.counts().Rx.values, spots.counts().Rx.values[2:4])
    np.testing.assert_array_equal(region.counts().values, spots.counts().values[2:5, ::2])
    assert_same_peaks(spots[-1, -2], spots[3, 4])
    row = spots[1, 1:4]
    assert row.scan_shape == (1, 3)
    assert_same_peaks(row[0, 2], spots[1, 3])
    assert float(region.bragg_vector_map(weights=None).sum()) == region.counts().values.sum()
    with pytest.raises(IndexError):
        spots[4, 0]


# --------------------------------------------------------------------------------------------
# arguments


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"subpixel": "x"}, "subpixel"),
        ({"subpixel": None}, "subpixel"),
        ({"maxNumPeaks": -1}, "maxNumPeaks"),
        ({"maxNumPeaks": 2.5}, "maxNumPeaks"),
        ({"relativeToPeak": -1}, "relativeToPeak"),
        ({"edgeBoundary": 1.5}, "edgeBoundary"),
        ({"subpixel": "multicorr", "upsample_factor": 2}, "upsample_factor"),
        ({"subpixel": "multicorr", "upsample_factor": "16"}, "upsample_factor"),
        ({"sigma": -1}, "sigma"),
        ({"sigma": "1"}, "sigma"),
        ({"minSpacing": np.nan}, "minSpacing"),
        ({"minSpacing": -2}, "minSpacing"),
        ({"minAbsoluteIntensity": None}, "minAbsoluteIntensity"),
        ({"minRelativeIntensity": np.inf}, "minRelativeIntensity"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, parameter):
    dc = s4.from_array(np.zeros((2, 2, 8, 8), np.float32))
    with pytest.raises(ValueError, match=parameter):
        find_peaks(dc, **kwargs)


def test_complex_datacube_refused():
    dc = s4.from_array(np.zeros((2, 2, 8, 8), np.float32))
    with pytest.raises(TypeError, match="complex"):
        find_peaks(dc.astype(np.complex64))


# --------------------------------------------------------------------------------------------
# one chunk kernel call per scan chunk, bit for bit get_maxima_2D's peaks


@pytest.mark.parametrize(
    "kwargs",
    [
        {"subpixel": "pixel", "maxNumPeaks": None},
        {"sigma": 1.5, "minRelativeIntensity": 0.2, "minSpacing": 4, "edgeBoundary": 3},
        {"sigma": 1.0, "minAbsoluteIntensity": 2.0, "relativeToPeak": 2, "maxNumPeaks": 5},
        {"subpixel": "multicorr", "sigma": 1.0, "maxNumPeaks": 4, "upsample_factor": 8},
    ],
)
@pytest.mark.parametrize("dtype", ["float32", "uint16"])
def test_each_chunk_in_one_call_equals_get_maxima_2D_exactly(kwargs, dtype, monkeypatch):
    import stem4d_dask.peaks as peaks_module

    calls = []
    chunk_kernel = peaks_module.get_maxima_2D_chunk

    def counted(block, **params):
        calls.append(block.shape)
        return chunk_kernel(block, **params)

    monkeypatch.setattr(peaks_module, "get_maxima_2D_chunk", counted)
    scan = (FIX["scan"] * (40 if dtype == "uint16" else 1)).astype(dtype)
    dc = s4.from_array(scan, chunks=(3, 2, 48, 48))  # 6 uneven chunks
    with dask.config.set(scheduler="sync"):
        computed = find_peaks(dc, **kwargs).compute()
    assert sorted(calls) == [(1, 2, 48, 48)] * 2 + [(3, 2, 48, 48)] * 2  # a call per chunk
    full = {"maxNumPeaks": 70, **kwargs}
    n_peaks = 0
    for rx, ry in np.ndindex(scan.shape[:2]):
        ref = get_maxima_2D(scan[rx, ry], **full)
        ours = computed[rx, ry]
        assert len(ours) == len(ref), (rx, ry)
        for field, ref_field in (("qx", "x"), ("qy", "y"), ("intensity", "intensity")):
            np.testing.assert_array_equal(ours[field], ref[ref_field], err_msg=f"{field} {rx} {ry}")
        n_peaks += len(ref)
    assert n_peaks >= 16
