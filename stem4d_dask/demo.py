"""``stem4d demo``: a synthetic DPC scan through the lazy pipeline, end to end.

Builds the scan with :func:`stem4d_dask.synthetic.dpc_scan`, writes it to zarr, reopens it,
computes the mean diffraction pattern and a virtual bright-field image in one pass over the
store, then runs DPC (centre of mass, scan rotation, phase) and prints the rotation it recovers
beside the true one. Everything is drawn as PNG.
"""

from __future__ import annotations

from pathlib import Path

from .io import read, to_zarr
from .phase import DPC
from .plotting import save_image_png
from .progress import compute
from .synthetic import dpc_scan
from .virtual import circle_mask, mean_diffraction_pattern, virtual_image


def run_demo(
    out: Path,
    *,
    seed: int = 0,
    scan_shape=(64, 64),
    detector_shape=(64, 64),
    progress: bool | None = None,
) -> dict:
    """Run the demo into folder ``out``; returns the paths written and the scan's parameters."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scan = dpc_scan(tuple(scan_shape), tuple(detector_shape), seed=seed)
    dc = scan.datacube
    print(
        f"synthetic DPC scan {dc.shape} {dc.dtype}: scan rotation {scan.rotation_deg:g} deg, "
        f"transpose {scan.transpose}, seed {seed}"
    )
    store = to_zarr(dc, out / "demo.zarr", overwrite=True, progress=progress)
    dc = read(store)
    bright_field = circle_mask(dc, scan.model.disk_radius)
    mean, vbf = compute(
        mean_diffraction_pattern(dc), virtual_image(dc, bright_field), progress=progress
    )
    paths = {
        "store": store,
        "mean_pattern": save_image_png(
            mean, out / "mean_pattern.png", title="mean diffraction pattern", log=True
        ),
        "virtual_bf": save_image_png(
            vbf, out / "virtual_bright_field.png", title="virtual bright field"
        ),
    }
    dpc = DPC(dc, verbose=False).preprocess(plot_center_of_mass=False, plot_rotation=False)
    dpc.reconstruct(progress_bar=progress)
    for path in dpc.save_figures(out):
        paths[path.stem] = path
    print(
        f"DPC: recovered scan rotation {dpc.rotation_deg:g} deg (true {scan.rotation_deg:g}), "
        f"transpose {dpc.transpose} (true {scan.transpose})"
    )
    for name, path in paths.items():
        print(f"wrote {name:18s} {path}")
    return {
        "paths": paths,
        "rotation_deg": scan.rotation_deg,
        "transpose": scan.transpose,
        "recovered_rotation_deg": dpc.rotation_deg,
        "recovered_transpose": dpc.transpose,
    }
