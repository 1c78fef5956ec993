"""Options the ``stem4d`` commands share: how to read the input, where to run
(``--scheduler``, progress), and the conversion steps the flags ask for."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path


def ints(text: str, parameter: str) -> tuple:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{parameter}: expected comma-separated integers, got {text!r}") from None


def read_options(args) -> dict:
    opts = {}
    if args.format:
        opts["format"] = args.format
    if args.dataset:
        opts["dataset"] = args.dataset
    if args.sync_offset:
        opts["sync_offset"] = args.sync_offset
    if args.shape:
        opts["shape"] = ints(args.shape, "--shape")
        opts["dtype"] = args.dtype or "uint16"
        opts["offset"] = args.offset
    elif args.dtype:
        raise ValueError("--dtype: only meaningful for raw files, together with --shape")
    if args.scan_shape:
        opts["scan_shape"] = ints(args.scan_shape, "--scan-shape")
    if args.on_error != "raise":
        opts["on_error"] = args.on_error
    return opts


def add_read_arguments(p):
    from .io import FORMATS

    p.add_argument(
        "--format",
        choices=[f.name for f in FORMATS],
        help="the file's format (default: detected from the file)",
    )
    p.add_argument("--dataset", help="HDF5 files: the dataset to read, e.g. entry/data/data")
    p.add_argument(
        "--sync-offset",
        type=int,
        default=0,
        metavar="N",
        help="Merlin: frames to skip (N > 0) or blank frames to pad (N < 0) at the start",
    )
    p.add_argument("--shape", help="raw files: Rx,Ry,Qx,Qy (or N,Qx,Qy with --scan-shape)")
    p.add_argument("--dtype", help="raw files: numpy dtype, e.g. uint16 or >u2 (default uint16)")
    p.add_argument("--offset", type=int, default=0, help="raw files: header bytes to skip")
    p.add_argument("--scan-shape", help="Rx,Ry for a 3D stack of frames")
    p.add_argument(
        "--on-error",
        choices=["raise", "mask"],
        default="raise",
        help="a chunk that cannot be read: stop (default), or mask: NaN at its scan positions, "
        "named in a warning, and go on (docs/faults.md)",
    )


@contextlib.contextmanager
def running(args):
    """Computations on ``--scheduler`` (a cluster described on stderr), progress unless quiet."""
    from . import cluster, progress

    report = None if args.quiet else sys.stderr
    with cluster.scheduler(args.scheduler, memory_limit=args.memory_limit, report=report):
        with progress.showing(not args.quiet):
            yield


def add_run_arguments(p):
    p.add_argument(
        "--scheduler",
        metavar="WHERE",
        help="threads (default), processes, synchronous, local:N (N process workers here), a "
        "scheduler address (tcp://host:8786, host:8786) or a scheduler file (.json)",
    )
    p.add_argument("--memory-limit", metavar="SIZE", help="per local:N worker, e.g. 2GiB")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def conversion_steps(args) -> list:
    """The processing steps the flags ask for, in the order they run: dark subtraction, hot
    pixels, thinning, binning in R then Q, centring; with ``--count``, electron counting last
    (the dark and the Q binning then go to ``electron_count``)."""
    if args.count and not args.dark:
        raise ValueError("--count: needs --dark DARK.npy, the dark reference of the counting")
    if args.count and args.center:
        raise ValueError("--center: cannot be combined with --count (it interpolates the counts)")
    if args.dark and Path(args.dark).suffix.lower() != ".npy":
        raise ValueError(f"--dark: expected a (Qx, Qy) .npy file, got {args.dark}")
    sample = None if args.sample == 0 else args.sample
    steps = []
    if args.dark and not args.count:
        steps.append(("subtract_dark", {"darkref": args.dark}))
    if args.hot_pixels is not None:
        steps.append(("filter_hot_pixels", {"thresh": args.hot_pixels, "sample": sample}))
    if args.thin_r is not None:
        steps.append(("thin_data_real", {"thinning_factor": args.thin_r}))
    if args.bin_r is not None:
        steps.append(("bin_data_real", {"bin_factor": args.bin_r}))
    if args.bin_q is not None and not args.count:
        steps.append(("bin_data_diffraction", {"bin_factor": args.bin_q}))
    if args.center:
        steps.append(("center_patterns", {"fit_function": args.center, "sample": sample}))
    if args.count:
        count = {"darkreference": args.dark, "binfactor": args.bin_q or 1, "seed": args.seed}
        count.update(sub_pixel=args.sub_pixel, Nsamples=args.samples)
        steps.append(("electron_count", count))
    return steps


def chunks_option(text: str):
    return "auto" if text == "auto" else ints(text, "--chunks")
