"""The ``stem4d`` command: ``info``, ``convert``, ``dpc``, ``count`` and ``demo``. Each command
only parses its arguments and calls the library; errors exit non-zero with a one-line reason."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .cli_options import (
    add_read_arguments,
    add_run_arguments,
    chunks_option,
    conversion_steps,
    ints,
    read_options,
    running,
)


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
    for line in _metadata_lines(dc.attrs.get("metadata") or {}, args.all):
        print(line)
    from .steps import provenance_lines

    for line in provenance_lines(dc.attrs.get("provenance")):
        print(line)
    return 0


def _metadata_lines(metadata: dict, everything: bool, limit: int = 30) -> list:
    """``metadata`` (nested JSON-able dicts) as indented ``key  value`` lines; the first
    ``limit`` entries unless ``everything``; long values shortened."""
    lines = []

    def walk(node, indent):
        for key, value in node.items():
            if isinstance(value, dict):
                lines.append(f"{' ' * indent}{key}:")
                walk(value, indent + 2)
            else:
                text = str(value)
                text = text if everything or len(text) <= 70 else text[:67] + "..."
                lines.append(f"{' ' * indent}{key:<{max(28 - indent, 1)}} {text}")

    walk(metadata, 2)
    if lines:
        head = ["metadata"]
        if not everything and len(lines) > limit:
            return head + lines[:limit] + [f"  ... {len(lines) - limit} more lines (--all)"]
        return head + lines
    return lines


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
    a_store = Path(output).suffix.lower() in (".zarr", *H5_SUFFIXES)
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
        f"final error {dpc.error:.3e} after {len(dpc.error_iterations)} iterations"
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


def cmd_demo(args) -> int:
    from .demo import run_demo

    with running(args):
        run_demo(
            Path(args.out),
            seed=args.seed,
            scan_shape=ints(args.scan, "--scan"),
            detector_shape=ints(args.detector, "--detector"),
            progress=not args.quiet,
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stem4d", description="Lazy 4D-STEM processing.")
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
        help="descan model (default: plane)",
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
        return args.func(args)
    except (ValueError, TypeError, OSError, KeyError) as exc:
        if os.environ.get("STEM4D_DEBUG"):
            raise
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"stem4d {args.command}: error: {reason}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"stem4d {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
