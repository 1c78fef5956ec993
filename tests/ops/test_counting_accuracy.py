"""Electron counting against known strikes: the synthetic counting scan (its determinism and its
ground truth) and the accuracy of ``electron_count`` / ``calculate_thresholds`` on it.

Scan for the accuracy tests: 32 x 32 frames of 64 x 64 px, the generator's defaults (0.01
e-/px/frame, 60 counts per electron, read noise 3, 30 % spread strikes, 5 % placed next to
another electron, 0.2 X-rays of 1500 counts per frame, dark 100 with 5-count streaks), counted
at the default thresholds with the true dark and with a dark estimated by
``get_darkreference``. A detected event matches a true strike when it is its nearest unused
partner within 1 px (greedy one-to-one, closest pairs first). Units: counts and detector px.
"""

import dataclasses

import numpy as np
import pytest
from scipy.spatial import cKDTree

from stem4d_dask.preprocess import get_darkreference
from stem4d_dask.preprocess.electroncount import calculate_thresholds, electron_count
from stem4d_dask.synthetic_counting import EDGE, _CountingModel, counting_scan

SCAN, DETECTOR, SEED = (32, 32), (64, 64), 7
READ_NOISE, SIGNAL, XRAY = 3.0, 60.0, 1500.0  # the generator's defaults
MATCH_PX = 1.0  # an event within this of a strike detects it
ISOLATION_PX = 3.0  # an isolated strike has no other strike (or X-ray) within this
FRAME_GAP = 1000.0  # frames laid side by side along qx for one KD-tree over the scan


# --- helpers --------------------------------------------------------------------------------


def events_by_position(result, scan_shape):
    """Per-scan-position events of a computed pointlist: ``result.blocks`` (2D object array of
    ``EventBlock``, CSR over the positions of one scan chunk in C order) and
    ``result.scan_chunks`` -> ``(Rx, Ry)`` object array of ``(n, 2)`` float64 ``(qx, qy)``."""
    out = np.empty(scan_shape, dtype=object)
    starts = [np.cumsum((0,) + tuple(c)) for c in result.scan_chunks]
    for (i, j), block in np.ndenumerate(result.blocks):
        n1, n2 = block.scan_shape
        assert (n1, n2) == (result.scan_chunks[0][i], result.scan_chunks[1][j])
        assert len(block.indptr) == n1 * n2 + 1
        for k in range(n1 * n2):
            a, b = block.indptr[k], block.indptr[k + 1]
            out[starts[0][i] + k // n2, starts[1][j] + k % n2] = (
                np.column_stack([block.qx[a:b], block.qy[a:b]]).astype(np.float64).reshape(-1, 2)
            )
    assert all(v is not None for v in out.flat), "some scan positions have no event list"
    return out


def laid_out(frame_index, positions):
    """Positions of many frames in one plane (frame ``f`` shifted by ``f * FRAME_GAP``)."""
    return np.column_stack([positions[:, 0] + frame_index * FRAME_GAP, positions[:, 1]])


@dataclasses.dataclass
class Matched:
    """Detected events matched to the true strikes of the whole scan."""

    events: np.ndarray  # (n_events, 2) laid-out positions
    strikes: np.ndarray  # (n_strikes, 2) laid-out positions
    event_strike: np.ndarray  # strike row of each event, -1 when unmatched
    strike_event: np.ndarray  # event row of each strike, -1 when missed
    isolated: np.ndarray  # bool per strike
    nearest_strike: np.ndarray  # (distance, row) of each event's nearest strike
    per_position: np.ndarray  # the events, (Rx, Ry) object array

    def error(self, strikes):
        """``(k, 2)`` event minus true position of the given (matched) strike rows, px."""
        return self.events[self.strike_event[strikes]] - self.strikes[strikes]


def match(scan, truth, per_position):
    ny = scan.datacube.sizes["Ry"]
    counts = np.array([len(p) for p in per_position.ravel()])
    frame = np.repeat(np.arange(counts.size), counts)
    events = laid_out(frame, np.concatenate(per_position.ravel()).reshape(-1, 2))
    strikes = laid_out(truth.rx * ny + truth.ry, truth.position)
    xrays = scan.all_xrays()
    xray_points = laid_out(xrays[:, 0] * ny + xrays[:, 1], xrays[:, 2:].astype(np.float64))
    strike_tree, event_tree = cKDTree(strikes), cKDTree(events)
    crowded = strike_tree.query_ball_point(strikes, ISOLATION_PX, return_length=True) > 1
    if len(xray_points):
        crowded |= (
            cKDTree(xray_points).query_ball_point(strikes, ISOLATION_PX, return_length=True) > 0
        )
    close = event_tree.sparse_distance_matrix(strike_tree, MATCH_PX, output_type="ndarray")
    event_strike = np.full(len(events), -1)
    strike_event = np.full(len(strikes), -1)
    for k in np.argsort(close["v"], kind="stable"):
        e, s = close["i"][k], close["j"][k]
        if event_strike[e] < 0 and strike_event[s] < 0:
            event_strike[e], strike_event[s] = s, e
    nearest = strike_tree.query(events) if len(events) else (np.zeros(0), np.zeros(0, int))
    return Matched(
        events, strikes, event_strike, strike_event, ~crowded, np.array(nearest), per_position
    )


def count(scan, dark, **kwargs):
    result = electron_count(scan.datacube, dark, seed=1, **kwargs).compute()
    return events_by_position(result, scan.datacube.shape[:2])


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scan():
    s = counting_scan(SCAN, DETECTOR, seed=SEED, chunks=(8, 16))
    return dataclasses.replace(s, datacube=s.datacube.persist())  # generated once


@pytest.fixture(scope="module")
def truth(scan):
    return scan.all_strikes()


@pytest.fixture(scope="module")
def estimated_dark(scan):
    dark = get_darkreference(scan.datacube, SCAN[0] * SCAN[1], width_x=EDGE, width_y=EDGE, seed=0)
    return dark.values


@pytest.fixture(scope="module", params=["true dark", "estimated dark"])
def matched(request, scan, truth, estimated_dark):
    dark = scan.dark if request.param == "true dark" else estimated_dark
    return match(scan, truth, count(scan, dark))


# --- the generator --------------------------------------------------------------------------


def test_lazy_calibrated_and_generates_nothing_at_build(monkeypatch):
    def refuse(self, slices):
        raise AssertionError("a frame was generated at build time")

    monkeypatch.setattr(_CountingModel, "__call__", refuse)
    big = counting_scan((1024, 1024), (128, 128))
    assert big.datacube.nbytes == 1024**2 * 128**2 * 2 and big.datacube.dtype == np.uint16
    s = counting_scan((6, 5), (20, 24), q_pixel_size=0.5, q_units="mrad", energy=300e3)
    dc = s.datacube
    assert dc.dims == ("Rx", "Ry", "Qx", "Qy") and dc.shape == (6, 5, 20, 24)
    assert dc.attrs["q_units"] == "mrad" and dc.attrs["energy"] == 300e3
    assert s.dark.shape == (20, 24) and s.dark.dtype == np.float64


def test_seeded_and_independent_of_chunking():
    a = counting_scan((6, 7), (24, 20), seed=3, chunks=(6, 7))
    b = counting_scan((6, 7), (24, 20), seed=3, chunks=(1, 3))
    c = counting_scan((6, 7), (24, 20), seed=4)
    assert np.array_equal(a.datacube.values, b.datacube.values)
    assert not np.array_equal(a.datacube.values, c.datacube.values)
    np.testing.assert_array_equal(a.dark, b.dark)
    np.testing.assert_array_equal(a.strikes(5, 6), b.strikes(5, 6))
    np.testing.assert_array_equal(a.all_strikes().position, b.all_strikes().position)


def test_dark_is_level_plus_row_and_column_streaks():
    s = counting_scan((2, 2), (64, 48), dark_level=100.0, streak_amplitude=5.0, seed=2)
    d = s.dark
    rows, cols = d.mean(axis=1) - d.mean(), d.mean(axis=0) - d.mean()
    np.testing.assert_allclose(d, d.mean() + rows[:, None] + cols[None, :], atol=1e-9)
    assert 2.5 < rows.std() < 7.5 and 2.5 < cols.std() < 7.5  # streaks of ~5 counts
    assert abs(d.mean() - 100.0) < 3


def test_frames_are_truth_plus_dark_plus_read_noise():
    s = counting_scan((6, 6), DETECTOR, seed=11, xrays_per_frame=1.0)
    frames = s.datacube.values.astype(np.float64)
    for rx, ry in np.ndindex(6, 6):
        e, xr_ = s.electrons(rx, ry), s.xrays(rx, ry)
        deposits = s.deposits(rx, ry)
        # every electron's signal lands on the detector; X-rays add xray_signal each
        assert deposits.sum() == pytest.approx(e.signal.sum() + len(xr_) * XRAY, rel=1e-9)
        for qx, qy in xr_:
            assert deposits[qx, qy] >= XRAY
        np.testing.assert_array_equal(s.strikes(rx, ry), e.position)
    residual = (
        frames - s.dark - np.stack([s.deposits(*p) for p in np.ndindex(6, 6)]).reshape(frames.shape)
    )
    assert abs(residual.mean()) < 0.05
    assert residual.std() == pytest.approx(np.hypot(READ_NOISE, np.sqrt(1 / 12)), rel=0.02)


def test_truth_follows_the_model(scan, truth):
    nx, ny = SCAN
    qx, qy = DETECTOR
    n_frames = nx * ny
    pos = truth.position
    assert pos.min() >= EDGE and pos[:, 0].max() <= qx - 1 - EDGE
    assert pos[:, 1].max() <= qy - 1 - EDGE
    # Poisson(0.01 * 64 * 64 = 40.96) electrons per frame
    assert len(pos) / n_frames == pytest.approx(0.01 * qx * qy, abs=0.8)
    one = ~truth.spread
    np.testing.assert_array_equal(pos[one], np.rint(pos[one]))  # one-pixel strikes: centres
    assert truth.spread.mean() == pytest.approx(0.3, abs=0.02)
    frac = np.modf(pos[truth.spread])[0]
    assert 0.4 < frac.mean() < 0.6  # spread strikes: sub-pixel positions
    assert truth.signal.mean() == pytest.approx(SIGNAL, rel=0.01)
    assert np.log(truth.signal).std() == pytest.approx(0.15, rel=0.05)
    # pairs: ~5 % of electrons placed next to another one, 1-1.5 px away, partners mutual
    paired = np.flatnonzero(truth.partner >= 0)
    assert 0.08 < paired.size / len(pos) < 0.11
    np.testing.assert_array_equal(truth.partner[truth.partner[paired]], paired)
    np.testing.assert_array_equal(truth.rx[paired], truth.rx[truth.partner[paired]])
    np.testing.assert_array_equal(truth.ry[paired], truth.ry[truth.partner[paired]])
    d = np.hypot(*(pos[paired] - pos[truth.partner[paired]]).T)
    assert d.min() >= 1 - 1e-9 and d.max() <= 1.5 + 1e-9
    xrays = scan.all_xrays()
    assert len(xrays) / n_frames == pytest.approx(0.2, abs=0.05)
    # the frame sum minus the dark is the deposited signal, on average over the scan
    frames = scan.datacube.values.astype(np.float64) - scan.dark
    sums = frames.sum(axis=(2, 3)).ravel()
    expected = np.bincount(truth.rx * ny + truth.ry, truth.signal, minlength=n_frames)
    expected += np.bincount(xrays[:, 0] * ny + xrays[:, 1], minlength=n_frames) * XRAY
    noise = READ_NOISE * np.sqrt(qx * qy)  # of one frame's sum
    assert abs((sums - expected).mean()) < 5 * noise / np.sqrt(n_frames)
    assert (sums - expected).std() == pytest.approx(noise, rel=0.1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scan_shape": (0, 4)},
        {"detector_shape": (6, 64)},
        {"electrons_per_pixel": -0.1},
        {"spread_fraction": 1.5},
        {"pair_fraction": np.nan},
        {"electron_signal": 0},
        {"xray_signal": -1},
        {"read_noise": -1},
        {"seed": -1},
        {"seed": 1.5},
        {"dtype": "c8"},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        counting_scan(**kwargs)


# --- counting accuracy ----------------------------------------------------------------------


def test_isolated_strikes_recall_and_precision(matched):
    recall = (matched.strike_event[matched.isolated] >= 0).mean()
    distance, nearest = matched.nearest_strike
    # events near an isolated strike, or near none (false positives from noise)
    judged = (distance > ISOLATION_PX) | matched.isolated[nearest.astype(int)]
    precision = (matched.event_strike[judged] >= 0).mean()
    assert matched.isolated.sum() > 20000
    assert recall >= 0.98, f"recall {recall:.4f}"
    assert precision >= 0.98, f"precision {precision:.4f}"


def test_sub_pixel_error_of_spread_strikes(matched, truth):
    found = matched.isolated & (matched.strike_event >= 0)
    spread = np.flatnonzero(found & truth.spread)
    one = np.flatnonzero(found & ~truth.spread)
    rms_spread = np.sqrt((matched.error(spread) ** 2).sum(axis=1).mean())
    rms_one = np.sqrt((matched.error(one) ** 2).sum(axis=1).mean())
    assert spread.size > 5000
    assert rms_spread <= 0.2, f"RMS of spread strikes {rms_spread:.3f} px"
    assert rms_one <= 0.15, f"RMS of one-pixel strikes {rms_one:.3f} px"
    # the centroid does find the sub-pixel offset: far better than the nearest pixel centre
    pixel = matched.strikes[spread] - np.rint(matched.strikes[spread])
    assert rms_spread < 0.7 * np.sqrt((pixel**2).sum(axis=1).mean())


@pytest.mark.parametrize("offset", [-5.0, 5.0])
def test_a_dark_off_by_a_constant_changes_nothing(scan, truth, offset):
    """``get_darkreference`` on this model is off by a constant of up to ~6 counts (the
    strip-mean combination; -5.8 to +5.4 over seeds 0-5), and thresholds follow the fitted noise
    peak, so detection must not care; sub-pixel centroids must not either (weights taken from
    ``w > 0`` instead of from the noise peak pick up more or less noise as the offset varies)."""
    m = match(scan, truth, count(scan, scan.dark - offset))  # w shifted by +offset
    recall = (m.strike_event[m.isolated] >= 0).mean()
    spread = np.flatnonzero(m.isolated & (m.strike_event >= 0) & truth.spread)
    rms_spread = np.sqrt((m.error(spread) ** 2).sum(axis=1).mean())
    assert recall >= 0.98, f"recall {recall:.4f}"
    assert rms_spread <= 0.2, f"RMS of spread strikes {rms_spread:.3f} px"


def test_xrays_are_rejected(scan, matched):
    xrays = scan.all_xrays()
    assert len(xrays) > 100
    hits = 0
    for rx, ry, qx, qy in xrays:
        events = matched.per_position[rx, ry]
        # no event on the X-ray pixel or any of its 8 neighbours
        hits += bool(len(events)) and np.hypot(events[:, 0] - qx, events[:, 1] - qy).min() < 1.5
    assert hits <= 0.01 * len(xrays), f"{hits} of {len(xrays)} X-rays gave an event"


def test_strikes_next_to_each_other(matched, truth):
    """Two strikes 1-1.5 px apart make one blob, and a strict 3x3 local maximum finds one
    event in it: about half the strikes of a pair are recalled (the brighter one; the event
    lies between the two), while nearly every pair gives an event. We measure 0.50 per strike
    and 0.999 per pair on this scan (clean pairs: no third strike within 3 px)."""
    partner = truth.partner
    tree = cKDTree(matched.strikes)
    near = tree.query_ball_point(matched.strikes, ISOLATION_PX, return_length=True)
    first = np.flatnonzero((partner >= 0) & (np.arange(len(partner)) < partner))
    clean = first[(near[first] == 2) & (near[partner[first]] == 2)]
    members = np.concatenate([clean, partner[clean]])
    found = matched.strike_event >= 0
    per_strike = found[members].mean()
    per_pair = (found[clean] | found[partner[clean]]).mean()
    assert clean.size > 500
    assert per_strike >= 0.45, f"per-strike recall in pairs {per_strike:.3f}"
    assert per_pair >= 0.98, f"pairs giving an event {per_pair:.3f}"


def test_thresholds_from_the_noise_peak(scan, estimated_dark):
    dc = scan.datacube
    noise = np.hypot(READ_NOISE, np.sqrt(1 / 12))  # read noise + rounding to integer counts
    tb, tx, counts, edges, (_, mu, sigma) = calculate_thresholds(
        dc, scan.dark, seed=0, return_params=True
    )
    assert abs(mu) < 0.3 and sigma == pytest.approx(noise, rel=0.05)
    assert 3 * READ_NOISE < tb < SIGNAL / 2
    assert SIGNAL < tx < XRAY
    assert tb == pytest.approx(mu + 4 * sigma)
    assert counts.sum() > 0.99 * 20 * DETECTOR[0] * DETECTOR[1]  # 20 pooled frames
    # the estimated dark is off by a constant (py4DSTEM's combination of the two strips): the
    # fitted noise peak moves with it, and the threshold with the peak
    offset = (scan.dark - estimated_dark).mean()
    assert (scan.dark - estimated_dark).std() < 1.0
    tb_e, tx_e, _, _, (_, mu_e, sigma_e) = calculate_thresholds(
        dc, estimated_dark, seed=0, return_params=True
    )
    assert mu_e == pytest.approx(offset, abs=0.3)
    assert sigma_e == pytest.approx(noise, rel=0.1)
    assert 3 * READ_NOISE < tb_e - mu_e < SIGNAL / 2
    assert SIGNAL < tx_e - mu_e < XRAY


def test_counted_datacube_agrees_with_the_pointlist(scan):
    per_position = count(scan, scan.dark, sub_pixel=False)
    counted = electron_count(scan.datacube, scan.dark, seed=1, output="datacube")
    assert counted.dtype == np.bool_ and counted.shape == scan.datacube.shape
    dense = counted.values
    for rx, ry in np.ndindex(SCAN):
        events = per_position[rx, ry].astype(np.int64)
        assert dense[rx, ry].sum() == len(events)
        assert dense[rx, ry][events[:, 0], events[:, 1]].all()
