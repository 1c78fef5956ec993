"""Options the ``stem4d`` commands share: how to read the input, where to run
(``--scheduler``, progress), and the conversion steps the flags ask for."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path


def ints(text: str, parameter: str, count: int | None = None) -> tuple:
    """``"4,5"`` -> ``(4, 5)``; ``count``: how many there must be."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = None
    if values is None or (count is not None and len(values) != count):
        many = "" if count is None else f"{count} "
        raise ValueError(f"{parameter}: expected {many}comma-separated integers, got {text!r}")
    return values


def check_convert_output(output: str, store_suffixes: tuple) -> bool:
    """True when ``stem4d convert``'s OUT names a store by its suffix (``.zarr``, ``.h5`` ...).
    Refused: OUT in a folder that does not exist (nothing is created along the way), and a
    suffix that is neither a store's nor an existing folder's (``out.txt`` is no folder to
    convert into)."""
    path = Path(output)
    parent = path.parent
    if not parent.is_dir():
        raise FileNotFoundError(
            f"OUT: the folder {parent} of {output} does not exist; create it first"
        )
    a_store = path.suffix.lower() in store_suffixes
    if not a_store and path.suffix and not path.is_dir() and not (path / "zarr.json").is_file():
        raise ValueError(
            "OUT must end in .zarr or .h5, or be a folder (an existing one, or a name without "
            f"a suffix); got {output}"
        )
    return a_store


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


# --- errors in the command line's own words ----------------------------------------------------

READ_OPTIONS = {
    "format": "--format",
    "dataset": "--dataset",
    "sync_offset": "--sync-offset",
    "shape": "--shape",
    "dtype": "--dtype",
    "offset": "--offset",
    "scan_shape": "--scan-shape",
    "on_error": "--on-error",
}
RUN_OPTIONS = {"scheduler": "--scheduler", "memory_limit": "--memory-limit"}
WRITE_OPTIONS = {"overwrite": "--overwrite"}
# the library's parameter spellings -> each command's options
OPTION_NAMES = {
    "info": READ_OPTIONS,
    "convert": {
        **READ_OPTIONS,
        **RUN_OPTIONS,
        **WRITE_OPTIONS,
        "resume": "--resume",
        "chunks": "--chunks",
        "compressor": "--compressor",
        "clevel": "--clevel",
        "darkref": "--dark",
        "darkreference": "--dark",
        "thresh": "--hot-pixels",
        "thinning_factor": "--thin-r",
        "fit_function": "--center",
        "sample": "--sample",
        "Nsamples": "--samples",
        "binfactor": "--bin-q",
        "sub_pixel": "--sub-pixel",
        "seed": "--seed",
        "out_dir": "OUT",
    },
    "dpc": {
        **READ_OPTIONS,
        **RUN_OPTIONS,
        "energy": "--energy",
        "fit_function": "--fit",
        "padding_factor": "--padding",
        "max_iter": "--max-iter",
    },
    "count": {
        **READ_OPTIONS,
        **RUN_OPTIONS,
        **WRITE_OPTIONS,
        "darkreference": "--dark",
        "Nsamples": "--samples",
        "binfactor": "--bin",
        "sub_pixel": "--sub-pixel",
        "seed": "--seed",
    },
    "peaks": {
        **READ_OPTIONS,
        **RUN_OPTIONS,
        **WRITE_OPTIONS,
        "subpixel": "--subpixel",
        "sigma": "--sigma",
        "minAbsoluteIntensity": "--min-absolute-intensity",
        "minRelativeIntensity": "--min-relative-intensity",
        "minSpacing": "--min-spacing",
        "edgeBoundary": "--edge",
        "maxNumPeaks": "--max-peaks",
        "sampling": "--bvm-sampling",
    },
    "demo": {
        **RUN_OPTIONS,
        "seed": "--seed",
        "scan_shape": "--scan",
        "detector_shape": "--detector",
    },
}
# a processing step's parameter -> the convert option that sets it
STEP_OPTIONS = {
    ("bin_data_diffraction", "bin_factor"): "--bin-q",
    ("bin_data_real", "bin_factor"): "--bin-r",
    ("thin_data_real", "thinning_factor"): "--thin-r",
    ("filter_hot_pixels", "thresh"): "--hot-pixels",
    ("filter_hot_pixels", "sample"): "--sample",
    ("center_patterns", "fit_function"): "--center",
    ("center_patterns", "sample"): "--sample",
    ("subtract_dark", "darkref"): "--dark",
    ("electron_count", "darkreference"): "--dark",
    ("electron_count", "Nsamples"): "--samples",
    ("electron_count", "binfactor"): "--bin-q",
    ("electron_count", "sub_pixel"): "--sub-pixel",
    ("electron_count", "seed"): "--seed",
}


def cli_reason(command: str, reason: str) -> str:
    """A library error message in the words of ``stem4d COMMAND``: its parameter spellings
    (``Nsamples``, ``overwrite=True`` ...) replaced by the command's options (``--samples``,
    ``--overwrite``). Plain words (``shape``, ``sample``) are replaced only where they name the
    parameter: leading the message, or as ``name=``; spellings no English word has
    (``scan_shape``, ``minSpacing``) wherever they stand alone."""
    import re

    names = OPTION_NAMES.get(command, {})

    def step(match):
        option = STEP_OPTIONS.get((match[1], match[2]))
        return option if option else match[0]

    reason = re.sub(r"^steps\[\d+\] (\w+): (\w+)\b", step, reason)

    def assigned(match):
        option = names.get(match[2])
        if option is None:
            return match[0]
        if match[3] in ("None", "False"):
            return f"{match[1]}leave out {option}"
        return f"{match[1]}{option}" + ("" if match[3] == "True" else f" {match[3]}")

    reason = re.sub(r"(^|[\s(;,])(\w+)=(True|False|None|\S*)", assigned, reason)
    reason = re.sub(r"\bpass leave out\b", "leave out", reason)

    def word(match):
        return names.get(match[0], match[0])

    reason = re.sub(r"^\w+(?=[: ])", word, reason)
    unusual = [n for n in names if "_" in n or any(c.isupper() for c in n)]
    if unusual:
        pattern = r"(?<![\w.-])(" + "|".join(map(re.escape, unusual)) + r")(?![\w(])"
        reason = re.sub(pattern, word, reason)
    return reason


def metadata_lines(metadata: dict, everything: bool, limit: int = 30) -> list:
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


def failed(command: str, exc: BaseException) -> int:
    """Say why ``stem4d COMMAND`` failed, in one line of its own words; exit code 2."""
    if os.environ.get("STEM4D_DEBUG"):
        raise exc
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    print(f"stem4d {command}: error: {cli_reason(command, reason)}", file=sys.stderr)
    return 2


def stdout_closed() -> bool:
    """True when writing to stdout fails with a broken pipe (its reader has gone)."""
    import select

    try:
        sys.stdout.flush()  # what failed to go out is still buffered: it fails again
        fd = sys.stdout.fileno()
    except BrokenPipeError:
        return True
    except (OSError, ValueError):
        return False
    if not hasattr(select, "poll"):
        return False
    poll = select.poll()
    poll.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poll.poll(0))
