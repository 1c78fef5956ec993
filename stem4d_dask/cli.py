"""The ``stem4d`` command: ``info``, ``convert``, ``dpc``, ``count``, ``peaks`` and ``demo``. Each
command only parses its arguments and calls the library; errors (a user function's included:
:class:`~stem4d_dask.frame_tasks.FrameFunctionError`) exit non-zero with a one-line reason."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from pathlib import Path

from .cli_options import (
    add_read_arguments,
    add_run_arguments,
    check_convert_output,
    chunks_option,
    conversion_steps,
    failed,
    ints,
    metadata_lines,
    read_options,
    running,
    stdout_closed,
)
from .frame_tasks import FrameFunctionError


def _size_on_disk(path: Path) -> int:
    from .convert import disk_usage

    return disk_usage(path)[0]


def _human(nbytes: float) -> str:
    from .convert import human_bytes

    return human_bytes(nbytes)


def cmd_info(args) -> int:
    from . import describe, read
    from .values import value_range_of_dtype

    path = Path(args.path)
    if _item_store_lines(path):
        return 0
    dc = read(path, **read_options(args))
    d = describe(dc)
    energy = f"{d['energy']:g} eV" if d["energy"] else "unknown"
    print(f"path         {path}")
    print(f"shape        {d['shape']}  (Rx, Ry, Qx, Qy)")
    print(f"dtype        {d['dtype']}")
    print(f"chunks       {d['chunks']}  ({d['n_chunks']} chunks of {d['chunk_MiB']} MiB)")
    for label, space in (("scan step   ", "r"), ("detector px ", "q")):
        size, unit = d[f"{space}_pixel_size"], d[f"{space}_units"]
        origin = ", ".join(f"{o:g}" for o in d[f"{space}_origin"])
        step = f"{size:g} {unit}" if size is not None else f"none ({d[f'{space}_grid']})"
        print(f"{label} {step}, first pixel at ({origin}) {unit}")
    print(f"beam energy  {energy}")
    if d["value_range"] is not None and d["value_range"] != value_range_of_dtype(dc.dtype):
        print(
            f"values       {d['value_range'][0]} .. {d['value_range'][1]} (narrower than "
            f"{d['dtype']})"
        )
    print(f"size         {_human(d['nbytes'])} uncompressed, {_human(_size_on_disk(path))} on disk")
    if "format" in dc.attrs:
        print(f"format       {dc.attrs['format']}")
    for line in metadata_lines(dc.attrs.get("metadata") or {}, args.all):
        print(line)
    from .steps import provenance_lines

    for line in provenance_lines(dc.attrs.get("provenance")):
        print(line)
    return 0


def _item_store_lines(path: Path) -> bool:
    """Describe an events or per-frame items store (peaks, a user function's ragged output)
    at ``path``; False when ``path`` is not one."""
    import json

    meta_path = path / "zarr.json"
    if not meta_path.is_file():
        return False
    attrs = json.loads(meta_path.read_text()).get("attributes") or {}
    kinds = {"stem4d_dask.electron_events": "electron events", "stem4d_dask.ragged_frames": None}
    if attrs.get("format") not in kinds:
        return False
    kind = kinds[attrs["format"]] or attrs.get("kind", "RaggedFrames")
    count = attrs.get("n_events", attrs.get("n_items"))
    chunks = [len(c) for c in attrs["scan_chunks"]]
    fields = attrs.get("fields") or {f: attrs.get("position_dtype") for f in ("qx", "qy")}
    units = attrs.get("units") or {}
    print(f"path         {path}")
    print(f"kind         {kind} ({attrs['format']} v{attrs['format_version']})")
    print(f"scan         {tuple(attrs['scan_shape'])}  in {chunks[0]} x {chunks[1]} chunks")
    if "detector_shape" in attrs:
        print(f"detector     {tuple(attrs['detector_shape'])}")
    described = [f"{f} {d}" + (f" [{units[f]}]" if f in units else "") for f, d in fields.items()]
    print(f"fields       {', '.join(described)}")
    n = attrs["scan_shape"][0] * attrs["scan_shape"][1]
    print(f"items        {count} ({count / n:.3g} per scan position)")
    for key, value in (attrs.get("attrs") or {}).items():
        print(f"{key:12s} {value}")
    print(f"size         {_human(_size_on_disk(path))} on disk")
    return True


def cmd_convert(args) -> int:
    from .convert import H5_SUFFIXES, convert, convert_file

    *inputs, output = args.paths
    options = dict(
        read_options=read_options(args),
        chunks=None if args.chunks is None else chunks_option(args.chunks),
        compressor=args.compressor,
        clevel=args.clevel,
        resume=args.resume,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    single = len(inputs) == 1 and not any(c in inputs[0] for c in "*?[")
    a_store = check_convert_output(output, (".zarr", *H5_SUFFIXES))
    if single and (a_store or (Path(output) / "zarr.json").is_file()):
        with running(args):
            done = convert_file(inputs[0], output, conversion_steps(args), **options)
        print(f"wrote {output} ({_human(done.stored)} on disk, {_human(done.nbytes)} uncompressed)")
        return 0

    def report(result):
        if not args.quiet:
            print(f"{result.input}: {result.status} {result.reason}".rstrip(), file=sys.stderr)

    with running(args):
        summary = convert(inputs, output, conversion_steps(args), on_result=report, **options)
    print(summary.table())
    return 0 if summary.ok else 1


def cmd_dpc(args) -> int:
    from . import read
    from .phase import DPC

    with running(args):  # read there: chunks fit the workers of a cluster
        dc = read(args.input, **read_options(args))
        dpc = DPC(dc, energy=args.energy, verbose=False).preprocess(
            fit_function=None if args.fit == "none" else args.fit,
            padding_factor=args.padding,
            plot_center_of_mass=False,
            plot_rotation=False,
        )
    dpc.reconstruct(max_iter=args.max_iter, progress_bar=not args.quiet)
    paths = dpc.save_figures(args.out)
    phase_path = Path(args.out) / "dpc_phase.npy"
    import numpy as np

    np.save(phase_path, dpc.object_phase.values)
    print(
        f"rotation {dpc.rotation_deg:g} deg, transpose {dpc.transpose}, "
        f"final error {dpc.error:.3e}; {dpc.stop_reason}"
    )
    for path in [*paths, phase_path]:
        print(f"wrote {path}")
    return 0


def cmd_count(args) -> int:
    import numpy as np

    from . import read
    from .preprocess.electroncount import electron_count

    with running(args):  # read there: chunks fit the workers of a cluster
        dc = read(args.input, **read_options(args))
        dark_path = Path(args.dark)
        if dark_path.suffix.lower() != ".npy":
            raise ValueError(f"--dark: expected a (Qx, Qy) .npy file, got {dark_path}")
        dark = np.load(dark_path)
        n_frames = dc.shape[0] * dc.shape[1]
        samples = min(40, n_frames) if args.samples is None else args.samples
        events = electron_count(
            dc, dark, Nsamples=samples, binfactor=args.bin, sub_pixel=args.sub_pixel, seed=args.seed
        )
        events.to_zarr(args.output, overwrite=args.overwrite, progress=not args.quiet)
    out = Path(args.output)
    print(
        f"wrote {out}: {_human(_size_on_disk(out))} on disk for {_human(dc.nbytes)} of raw frames"
    )
    return 0


def cmd_peaks(args) -> int:
    from . import read
    from .peaks import find_peaks

    if args.max_peaks < 0:
        raise ValueError(
            f"--max-peaks: expected 0 (keep every peak) or a count, got {args.max_peaks}"
        )

    with running(args):  # read there: chunks fit the workers of a cluster
        dc = read(args.input, **read_options(args))
        peaks = find_peaks(
            dc,
            subpixel=args.subpixel,
            sigma=args.sigma,
            minAbsoluteIntensity=args.min_absolute_intensity,
            minRelativeIntensity=args.min_relative_intensity,
            minSpacing=args.min_spacing,
            edgeBoundary=args.edge,
            maxNumPeaks=None if args.max_peaks == 0 else args.max_peaks,
        )
        out = peaks.to_zarr(args.output, overwrite=args.overwrite, progress=not args.quiet)
    stored = type(peaks).from_zarr(out)
    n = stored.n_items
    print(f"wrote {out}: {n} peaks ({n / (dc.shape[0] * dc.shape[1]):.3g} per frame)")
    if args.bvm:
        from .plotting import save_image_png

        bvm = stored.bragg_vector_map(sampling=args.bvm_sampling).compute()
        bvm.attrs["units"] = "intensity"
        print(f"wrote {save_image_png(bvm, args.bvm, title='Bragg vector map', log=True)}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    with running(args):
        run_demo(
            Path(args.out),
            seed=args.seed,
            scan_shape=ints(args.scan, "--scan", 2),
            detector_shape=ints(args.detector, "--detector", 2),
            progress=not args.quiet,
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="stem4d", description="Lazy 4D-STEM processing.")
    parser.add_argument("--version", action="version", version=f"stem4d {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "info", help="shape, dtype, chunks, calibration, size and metadata of a dataset"
    )
    p.add_argument("path")
    p.add_argument("--all", action="store_true", help="show every metadata entry in full")
    add_read_arguments(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser(
        "convert",
        help="convert scans to zarr stores (or one to .h5), processing steps applied on the way",
        description="stem4d convert IN OUT.zarr|OUT.h5 converts one scan; stem4d convert IN... "
        "DIR converts every input (paths or glob patterns) to DIR/<name>.zarr, one store per "
        "scan, prints a summary table and exits 0 when all succeeded, 1 when some failed.",
    )
    p.add_argument("paths", nargs="+", metavar="IN... OUT", help="inputs, then the output")
    p.add_argument("--chunks", help="scan chunk Rx,Ry (frames are never split), or 'auto'")
    p.add_argument("--compressor", choices=["lz4", "zstd", "none"], help="default: lz4")
    p.add_argument("--clevel", type=int, metavar="N", help="compression level 0-9")
    p.add_argument("--resume", action="store_true", help="continue an interrupted conversion")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_run_arguments(p)
    p.add_argument("--dark", metavar="DARK.npy", help="subtract this (Qx, Qy) dark reference")
    p.add_argument("--hot-pixels", type=float, metavar="THRESH", help="repair hot pixels")
    p.add_argument("--bin-q", type=int, metavar="N", help="sum N x N detector pixels")
    p.add_argument("--bin-r", type=int, metavar="N", help="sum N x N scan positions")
    p.add_argument("--thin-r", type=int, metavar="N", help="keep every N-th scan position")
    p.add_argument(
        "--center",
        choices=["plane", "parabola", "bezier_two", "constant"],
        help="shift every pattern's origin, the descan fitted to the centre of mass, to the middle",
    )
    p.add_argument(
        "--sample",
        type=int,
        default=3,
        metavar="N",
        help="bands of scan chunks measured for --hot-pixels and --center (default 3; 0: the "
        "whole scan, read twice)",
    )
    p.add_argument("--count", action="store_true", help="electron counting -> events store")
    p.add_argument("--sub-pixel", action="store_true", help="--count: sub-pixel positions")
    p.add_argument("--samples", type=int, help="--count: frames sampled for the thresholds")
    p.add_argument("--seed", type=int, default=0, help="--count: seed of the threshold sample")
    add_read_arguments(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("dpc", help="centre of mass, scan rotation and DPC phase from a dataset")
    p.add_argument("input")
    p.add_argument("--out", default="stem4d_dpc", help="output folder (default: stem4d_dpc)")
    p.add_argument(
        "--energy",
        type=float,
        help="beam energy in eV (needed for mrad data unless the file records it)",
    )
    p.add_argument(
        "--fit",
        default="plane",
        choices=["plane", "parabola", "bezier_two", "constant", "none"],
        help="descan model (default: plane; none: no descan fit, only the mean beam position "
        "removed)",
    )
    p.add_argument("--padding", type=float, default=2.0, help="padding factor (default 2)")
    p.add_argument("--max-iter", type=int, default=64, help="iterations (default 64)")
    add_run_arguments(p)
    add_read_arguments(p)
    p.set_defaults(func=cmd_dpc)

    p = sub.add_parser("count", help="electron counting -> sparse events store (zarr)")
    p.add_argument("input")
    p.add_argument("output", help="zarr store for the events")
    p.add_argument("--dark", required=True, help="dark reference, a (Qx, Qy) .npy file")
    p.add_argument("--sub-pixel", action="store_true", help="sub-pixel (centroid) positions")
    p.add_argument("--bin", type=int, default=1, metavar="N", help="bin the detector by N")
    p.add_argument(
        "--samples",
        type=int,
        help="frames sampled for the thresholds (default: 40, or every frame of a smaller scan)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the threshold sample")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_run_arguments(p)
    add_read_arguments(p)
    p.set_defaults(func=cmd_count)

    p = sub.add_parser("peaks", help="Bragg peaks of every frame (get_maxima_2D) -> zarr store")
    p.add_argument("input")
    p.add_argument("output", help="zarr store for the peaks")
    p.add_argument("--subpixel", default="poly", choices=("pixel", "poly", "multicorr"))
    p.add_argument("--sigma", type=float, default=0, help="Gaussian smoothing, pixels")
    p.add_argument("--min-spacing", type=float, default=0, help="pixels between peaks")
    p.add_argument("--min-relative-intensity", type=float, default=0)
    p.add_argument("--min-absolute-intensity", type=float, default=0)
    p.add_argument("--edge", type=int, default=1, help="ignore maxima this close to an edge")
    p.add_argument("--max-peaks", type=int, default=70, help="per frame; 0 keeps every one")
    p.add_argument("--bvm", metavar="PNG", help="also draw the Bragg vector map to PNG")
    p.add_argument("--bvm-sampling", type=int, default=2, help="BVM grid points per pixel")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    add_run_arguments(p)
    add_read_arguments(p)
    p.set_defaults(func=cmd_peaks)

    p = sub.add_parser("demo", help="synthetic DPC scan -> zarr, DPC phase and PNG figures")
    p.add_argument("--out", default="stem4d_demo", help="output folder (default: stem4d_demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scan", default="64,64", help="scan shape Rx,Ry (default 64,64)")
    p.add_argument("--detector", default="64,64", help="detector shape Qx,Qy (default 64,64)")
    add_run_arguments(p)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed stdout shows here, not at exit
        return code
    except BrokenPipeError:
        if not stdout_closed():
            return failed(args.command, OSError(errno.EPIPE, "Broken pipe"))
        # the reader went away (stem4d info X | head -1): end quietly, as the Python docs
        # recommend; stdout goes to devnull so that the flush at exit fails no more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, TypeError, OSError, KeyError, FrameFunctionError) as exc:
        return failed(args.command, exc)
    except KeyboardInterrupt:
        print(f"stem4d {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
