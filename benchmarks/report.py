"""Run every benchmark module and write a report: ``report.md`` and ``report.png``.

    python -m benchmarks.report                                   # 128^4 uint16, 3 repeats
    python -m benchmarks.report --shape 64,64,128,128 --repeats 3 --out bench-report

``report.md``: the machine, the date, the scan, then one table row per measurement (GB/s of raw
data, x the numpy-sum floor of the same run, the module's note: py4DSTEM / LiberTEM ratios where
their venvs exist) and the modules that failed, with their errors. ``report.png``: GB/s per
operation as horizontal bars, the floor as a vertical line. The loop is
:func:`benchmarks.run.run_all`.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import tempfile
import textwrap
from pathlib import Path

from .common import Context, Row, floor_row, make_cube
from .run import format_row, machine, module_names, parse_shape, run_all


def markdown(shape, repeats, floor: Row, results, when, where, seconds, end_floor=None) -> str:
    """The report's text. ``results``: :class:`benchmarks.run.ModuleResult` list; ``when``: a
    date string; ``where``: :func:`benchmarks.run.machine`; ``seconds``: the run's wall time;
    ``end_floor``: the floor measured again after the modules (shows a busy machine)."""
    mib = floor.nbytes / 2**20
    lines = [
        "# stem4d_dask benchmark report",
        "",
        f"- date: {when}",
        f"- machine: {where}",
        f"- scan: {'x'.join(map(str, shape))} uint16 ({mib:.1f} MiB), median of {repeats} "
        f"run(s), threaded dask scheduler; whole report took {seconds:.0f} s",
        "- GB/s: raw (uncompressed) bytes per second; x floor: divided by a single-thread numpy "
        "sum over the same in-memory array in the same run. Compare ratios across machines.",
    ]
    if end_floor is not None:
        lines.append(
            f"- floor at the start {floor.gbps:.2f} GB/s, measured again at the end "
            f"{end_floor.gbps:.2f} GB/s (a large difference: the machine was busy)"
        )
    lines += [
        "",
        "| module | benchmark | GB/s | x floor | note |",
        "|---|---|---|---|---|",
        f"| (floor) | {floor.name} | {floor.gbps:.2f} | 1.00 | |",
    ]
    for result in results:
        module = result.name.removeprefix("bench_")
        for row in result.rows:
            note = row.note.replace("|", "\\|")
            lines.append(
                f"| {module} | {row.name} | {row.gbps:.2f} | {row.gbps / floor.gbps:.2f} | {note} |"
            )
    failed = [r for r in results if r.error]
    if failed:
        lines += ["", "## Modules that failed", ""]
        lines += [f"- `{r.name}`: {r.error.replace('|', '/')}" for r in failed]
    lines += ["", "## Time per module", ""]
    lines += [f"- `{r.name}`: {r.seconds:.1f} s, {len(r.rows)} row(s)" for r in results]
    return "\n".join(lines) + "\n"


def bar_plot(path, floor: Row, results, title: str) -> Path:
    """GB/s of every row as horizontal bars (log scale), the floor as a dashed line; PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [
        (f"{r.name.removeprefix('bench_')}: {row.name}", row.gbps)
        for r in results
        for row in r.rows
    ]
    rows = [(name[:70], gbps) for name, gbps in rows if gbps > 0]
    fig = Figure(figsize=(10, 1.2 + 0.22 * max(len(rows), 1)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if rows:
        names, values = zip(*rows, strict=True)
        top = 100 * floor.gbps  # rows beyond (no data read, e.g. a coord check) are clipped
        ax.barh(range(len(rows)), [min(v, top) for v in values], color="tab:blue")
        for i, v in enumerate(values):
            if v > top:
                ax.text(
                    top,
                    i,
                    f"{v:,.0f} GB/s (clipped) ",
                    va="center",
                    ha="right",
                    fontsize=6,
                    color="w",
                )
        ax.set_yticks(range(len(rows)), names, fontsize=7)
        ax.set_xscale("log")
        ax.set_xlim(min(min(values), floor.gbps) / 1.5, top * 1.5)
    ax.invert_yaxis()
    ax.axvline(
        floor.gbps, color="tab:red", ls="--", label=f"floor: numpy sum {floor.gbps:.2f} GB/s"
    )
    ax.set_xlabel("GB/s of raw data (log scale)")
    ax.set_title("\n".join(textwrap.wrap(title, 90)), fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    return path


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="128,128,128,128", help="scan Rx,Ry,Qx,Qy")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", help="run only benchmarks/bench_<ONLY>.py")
    parser.add_argument("--out", default="bench-report", help="folder for report.md/.png")
    args = parser.parse_args(argv)

    shape = parse_shape(args.shape)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="stem4d-report-"))
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    where = machine()
    print(f"scan {shape} uint16; {where}; median of {args.repeats}", flush=True)
    start = datetime.datetime.now()
    try:
        ctx = Context(make_cube(shape), workdir, args.repeats)
        floor, results = run_all(
            ctx,
            module_names(args.only),
            on_row=lambda row, floor: print(format_row(row, floor), flush=True),
            on_error=lambda name, message: print(f"{name}: FAILED: {message}", flush=True),
        )
        end_floor = floor_row(ctx)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    seconds = (datetime.datetime.now() - start).total_seconds()
    text = markdown(shape, args.repeats, floor, results, when, where, seconds, end_floor)
    (out / "report.md").write_text(text)
    title = f"{'x'.join(map(str, shape))} uint16, {when}; {where}"
    bar_plot(out / "report.png", floor, results, title)
    print(f"wrote {out / 'report.md'} and {out / 'report.png'}")
    return out / "report.md"


if __name__ == "__main__":
    main()
