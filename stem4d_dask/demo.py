"""``stem4d demo``: the whole pipeline on built-in synthetic data, end to end.

1. *synthesize*: a DPC scan (:func:`stem4d_dask.synthetic.dpc_scan`: a bright-field disk of
   radius ``Q / 8`` px deflected by a known potential, scan rotation 15 deg) on a detector
   with a dark offset (a level plus per-column streaks), Gaussian read noise and a few planted
   hot pixels, as uint16 counts;
2. *write .mib*: a Quantum Detectors Merlin file (12-bit, :mod:`stem4d_dask.io.mib_write`),
   then read back lazily with :func:`stem4d_dask.read`;
3. *dark reference*: :func:`~stem4d_dask.preprocess.get_darkreference` from detector rows the
   beam never reaches (checked against the true dark);
4. *hot pixels*: the mask of :func:`~stem4d_dask.preprocess.filter_hot_pixels` (checked against
   the planted pixels) and the mean pattern, in one pass;
5. *convert*: :func:`stem4d_dask.convert` to zarr with the steps ``subtract_dark`` ->
   ``filter_hot_pixels`` -> ``bin_data_diffraction(2)``, provenance recorded in the store;
6. *virtual images + CoM*: virtual bright field and centre of mass (within the disk's reach)
   of the converted store, in one pass;
7. *DPC*: scan rotation, transpose and phase (:class:`stem4d_dask.phase.DPC`) from that centre
   of mass; the recovered rotation is printed beside the true one;
8. *electron counting*: a sparse counting-regime scan
   (:func:`stem4d_dask.synthetic_counting.counting_scan`) with a dark recorded from blank
   frames, counted to an events store (``electron_count(..., output='pointlist').to_zarr``) and
   read back; the counted electrons are compared with the true ones;
9. *figures*: at least 10 PNGs in ``out`` (:mod:`stem4d_dask.demo_figures`, ``DPC.save_figures``).

Every step is timed; the summary gives seconds and, for the steps that pass over a scan, GB/s
of the raw uint16 scan those results stand for (the converted store is smaller: binned).
"""

from __future__ import annotations

import time
from pathlib import Path

import dask.array as da
import numpy as np

from . import preprocess as pp
from .convert import convert, read_provenance
from .datacube import from_array
from .demo_figures import save_counting_figures, save_scan_figures
from .events import ElectronEvents
from .io import read
from .io.mib_write import write_mib
from .phase import DPC
from .phase.com import center_of_mass
from .progress import compute
from .synthetic import dpc_scan
from .synthetic_counting import counting_scan
from .virtual import circle_mask, mean_diffraction_pattern, virtual_image

DARK_LEVEL = 20.0  # counts: mean dark offset of the DPC detector
STREAK_SIGMA = 3.0  # counts: standard deviation of the per-column dark streaks
READ_NOISE = 1.5  # counts: Gaussian read noise of the DPC detector
HOT_COUNTS = 400.0  # counts: mean extra signal of a planted hot pixel in every frame
HOT_THRESH = 50.0  # counts: filter_hot_pixels threshold (the disk edge steps ~10 counts)
HOT_PLACES = ((0.1, 0.2), (0.3, 0.85), (0.5, 0.5), (0.52, 0.1), (0.7, 0.6))  # x (Qx, Qy)
BIN = 2  # detector binning of the converted store
BLANK_FRAMES = 64  # frames averaged into the counting detector's recorded dark
STEPS = (
    "synthesize",
    "write .mib",
    "dark reference",
    "hot pixels",
    "convert to zarr",
    "virtual images + CoM",
    "DPC",
    "electron counting",
    "figures",
)


class _Summary(list):
    """Timed steps: ``(name, what, seconds, raw bytes or 0)`` rows, printed as a table."""

    def run(self, name, what, nbytes, fn):
        """Time ``fn()`` and record it; returns what ``fn`` returns."""
        start = time.perf_counter()
        result = fn()
        self.append((name, what, time.perf_counter() - start, nbytes))
        return result

    def note(self, what: str) -> None:
        """Set what the last step did (known once it has run)."""
        self[-1] = (self[-1][0], what, *self[-1][2:])

    def lines(self) -> list:
        rows = [f"{'step':22s} {'time':>7s} {'GB/s':>6s}  what"]
        for name, what, seconds, nbytes in self:
            rate = f"{nbytes / seconds / 1e9:6.3f}" if nbytes and seconds > 0 else f"{'-':>6s}"
            rows.append(f"{name:22s} {seconds:6.2f}s {rate}  {what}")
        rows.append(f"{'total':22s} {sum(r[2] for r in self):6.2f}s")
        return rows


def detector_model(detector_shape, seed: int) -> tuple:
    """The DPC detector's true dark ``(Qx, Qy)`` float64 counts (``DARK_LEVEL`` plus a streak
    per column, constant along Qx) and the planted hot pixels, an ``(n, 2)`` int array of
    ``(qx, qy)``."""
    qx, qy = detector_shape
    rng = np.random.default_rng([seed, 0xDA4C])
    dark = DARK_LEVEL + np.broadcast_to(rng.normal(0.0, STREAK_SIGMA, qy)[None, :], (qx, qy))
    hot = np.array([(int(a * qx), int(b * qy)) for a, b in HOT_PLACES])
    return np.array(dark), hot


def _raw_block(block, dark, hot, seed, block_info=None):
    """One chunk of detector frames: signal + dark + read noise + hot pixels, rounded and
    clipped to uint16 (12-bit: at most 4095 counts); the noise is keyed by the chunk's place."""
    where = tuple(s for s, _ in block_info[0]["array-location"][:2])
    rng = np.random.default_rng([seed, 0x5EED, *where])
    frames = block + dark + rng.normal(0.0, READ_NOISE, block.shape)
    frames[..., hot[:, 0], hot[:, 1]] += rng.poisson(HOT_COUNTS, block.shape[:2] + (len(hot),))
    return np.clip(np.rint(frames), 0, 4095).astype(np.uint16)


def _synthesize(scan_shape, detector_shape, count_shape, seed, progress):
    """The DPC scan, its raw detector frames ``(Rx, Ry, Qx, Qy)`` uint16 in memory, the true
    dark and the hot pixels; the counting scan (``count_shape`` positions) and its frames."""
    radius = min(detector_shape) / 8
    scan = dpc_scan(scan_shape, detector_shape, disk_radius=radius, max_shift=radius / 4, seed=seed)
    dark, hot = detector_model(detector_shape, seed)
    raw = da.map_blocks(_raw_block, scan.datacube.data, dark, hot, seed, dtype=np.uint16)
    cscan = counting_scan(count_shape, detector_shape, seed=seed, electrons_per_pixel=0.005)
    frames, cframes = compute(raw, cscan.datacube.data, progress=progress)
    return scan, frames, dark, hot, cscan, cframes


def _dark_reference(dc, dark_true, out, seed):
    """Dark from the last ``Qx / 8`` rows (the beam never reaches them), saved as
    ``dark.npy`` (float64 counts) for the conversion's provenance."""
    width = max(2, dc.shape[2] // 8)
    n_frames = min(128, dc.shape[0] * dc.shape[1])
    dark = np.asarray(pp.get_darkreference(dc, n_frames, width_x=width, seed=seed).values)
    np.save(out / "dark.npy", dark)
    error = float(np.abs(dark - dark_true).max())
    return dark, f"{width} rows x {n_frames} frames, max error {error:.2f} counts"


def _count_electrons(cscan, cframes, out, seed, progress):
    """Counting scan -> dark recorded from blank frames -> events store, read back: ``(events,
    counted)``. ``cframes``: the scan's ``(Rx, Ry, Qx, Qy)`` uint16 frames, in memory."""
    detector_shape = cframes.shape[2:]
    blank = counting_scan(
        (1, BLANK_FRAMES), detector_shape, seed=seed, electrons_per_pixel=0, xrays_per_frame=0
    )
    (dark,) = compute(blank.datacube.astype(np.float64).mean(("Rx", "Ry")), progress=False)
    dark = np.asarray(dark.values)  # (Qx, Qy) counts: the blank frames hold no electrons
    dc = from_array(cframes, chunks={"Rx": max(1, cframes.shape[0] // 4)})
    events = pp.electron_count(dc, dark, output="pointlist", seed=seed)
    path = events.to_zarr(out / "events.zarr", overwrite=True, progress=progress)
    back = ElectronEvents.from_zarr(path)
    return back, int(back.n_events)


def run_demo(
    out: Path,
    *,
    seed: int = 0,
    scan_shape=(64, 64),
    detector_shape=(64, 64),
    progress: bool | None = None,
) -> dict:
    """Run the demo into folder ``out`` (module docstring).

    scan_shape, detector_shape : ``(Rx, Ry)`` and ``(Qx, Qy)`` of the DPC scan; the detector
        at least 16 px and even (binned by 2). The counting scan is at most 32 x 32 positions
        on the same detector.
    progress : progress bars on stderr (None: as :func:`stem4d_dask.progress.showing` says).

    Returns ``{"paths": {name: Path}, "figures": [Path], "summary": [(step, what, seconds,
    raw bytes)], "rotation_deg", "transpose", "recovered_rotation_deg", "recovered_transpose",
    "hot_pixels" (planted, (n, 2)), "found_hot_pixels", "events" (counted), "electrons"
    (true)}``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scan_shape, detector_shape = tuple(map(int, scan_shape)), tuple(map(int, detector_shape))
    if min(detector_shape) < 16 or any(n % BIN for n in detector_shape):
        raise ValueError(f"detector_shape must be even and >= 16 px, got {detector_shape}")
    summary = _Summary()
    n = scan_shape[0] * scan_shape[1]
    nbytes = n * detector_shape[0] * detector_shape[1] * 2
    count_shape = (min(scan_shape[0], 32), min(scan_shape[1], 32))
    scan, frames, dark_true, hot, cscan, cframes = summary.run(
        "synthesize",
        f"DPC scan {scan_shape} x {detector_shape} uint16, {len(HOT_PLACES)} hot pixels "
        f"planted; counting scan {count_shape}",
        nbytes,
        lambda: _synthesize(scan_shape, detector_shape, count_shape, seed, progress),
    )
    print(
        f"synthetic DPC scan {frames.shape} {frames.dtype} ({nbytes / 2**20:.1f} MiB): scan "
        f"rotation {scan.rotation_deg:g} deg, transpose {scan.transpose}, seed {seed}"
    )
    mib = summary.run(
        "write .mib",
        "Merlin 12-bit demo.mib (+ .hdr), read back lazily",
        nbytes,
        lambda: write_mib(out / "demo.mib", frames, depth=12),
    )
    dc = read(mib)
    dark, what = summary.run(
        "dark reference", "", 0, lambda: _dark_reference(dc, dark_true, out, seed)
    )
    summary.note(f"get_darkreference: {what}")

    def hot_pass():
        _, mask = pp.filter_hot_pixels(pp.subtract_dark(dc, dark), HOT_THRESH, return_mask=True)
        return compute(mean_diffraction_pattern(dc), mask, progress=progress)

    mean_raw, mask = summary.run("hot pixels", "", nbytes, hot_pass)
    found = np.argwhere(np.asarray(mask.values))
    planted = {tuple(p) for p in hot.tolist()}
    summary.note(
        f"filter_hot_pixels mask + mean pattern: {len(found)} found, "
        f"{len(planted & {tuple(p) for p in found.tolist()})} of {len(planted)} planted"
    )
    steps = [
        ("subtract_dark", {"darkref": str(out / "dark.npy")}),
        ("filter_hot_pixels", {"thresh": HOT_THRESH}),
        ("bin_data_diffraction", {"bin_factor": BIN}),
    ]
    result = summary.run(
        "convert to zarr",
        "subtract_dark -> filter_hot_pixels -> bin_data_diffraction(2), with provenance",
        nbytes,
        lambda: convert(mib, out / "converted", steps, overwrite=True, progress=progress)[0],
    )
    if not result.ok:
        raise RuntimeError(f"demo: the conversion failed: {result.reason}")
    store = Path(result.output)
    recorded = [s["function"] for s in read_provenance(store)["steps"]]
    zdc = read(store)
    radius = scan.model.disk_radius / BIN
    reach = scan.model.disk_radius + float(np.hypot(scan.shift_x, scan.shift_y).max())
    com_radius = float(np.ceil(reach / BIN)) + 1  # px, binned: the disk never leaves it

    def image_pass():  # CoM inside the disk's reach: the read noise outside stays out
        com = center_of_mass(zdc, mask=circle_mask(zdc, com_radius))
        return compute(
            virtual_image(zdc, circle_mask(zdc, radius)),
            com["com_x"],
            com["com_y"],
            progress=progress,
        )

    vbf, com_x, com_y = summary.run(
        "virtual images + CoM",
        f"from {store.name}: virtual BF (r = {radius:g} px), CoM (r <= {com_radius:g} px)",
        nbytes,
        image_pass,
    )

    def dpc_steps():
        dpc = DPC(zdc, verbose=False).preprocess(
            force_com_measured=(com_x.values, com_y.values),
            plot_center_of_mass=False,
            plot_rotation=False,
        )
        dpc.reconstruct(progress_bar=progress)
        return dpc

    dpc = summary.run("DPC", "", 0, dpc_steps)
    rotation = (
        f"recovered scan rotation {dpc.rotation_deg:g} deg (true {scan.rotation_deg:g}), "
        f"transpose {dpc.transpose} (true {scan.transpose})"
    )
    summary.note(f"rotation, phase: {rotation}")
    print(f"DPC: {rotation}")
    events, counted = summary.run(
        "electron counting",
        "",
        cframes.nbytes,
        lambda: _count_electrons(cscan, cframes, out, seed, progress),
    )
    true = sum(len(cscan.strikes(rx, ry)) for rx, ry in np.ndindex(*count_shape))
    summary.note(
        f"{count_shape} scan, dark from {BLANK_FRAMES} blank frames: {counted} events in "
        f"events.zarr ({true} true electrons, {100 * (counted - true) / max(true, 1):+.1f}%)"
    )
    figures = summary.run(
        "figures",
        "PNGs: mean pattern, hot pixels, dark, virtual BF, counted pattern, CoM, DPC",
        0,
        lambda: (
            save_scan_figures(
                out,
                mean_raw,
                mask,
                dark,
                vbf,
                radius,
                BIN,
                zdc.attrs.get("q_pixel_size"),
                zdc.attrs.get("q_units"),
            )
            + save_counting_figures(out, events)
            + list(dpc.save_figures(out))
        ),
    )
    paths = {"mib": mib, "dark": out / "dark.npy", "store": store, "events": out / "events.zarr"}
    print(f"provenance of {store.name}: {' -> '.join(recorded)}")
    print("summary:")
    for line in summary.lines():
        print("  " + line)
    for name, path in paths.items():
        print(f"wrote {name:8s} {path}")
    print(f"wrote {len(figures)} figures in {out}")
    return {
        "paths": paths,
        "figures": figures,
        "summary": list(summary),
        "rotation_deg": scan.rotation_deg,
        "transpose": scan.transpose,
        "recovered_rotation_deg": dpc.rotation_deg,
        "recovered_transpose": dpc.transpose,
        "hot_pixels": hot,
        "found_hot_pixels": found,
        "events": counted,
        "electrons": true,
    }
