"""Conversion of many scans to zarr stores, the processing steps applied in the one pass that
writes, each store recording its provenance (docs/convert.md).

:func:`convert`: inputs (paths or glob patterns, any format :func:`stem4d_dask.read` opens) ->
one store per scan in an output folder, ``<name>.zarr`` (:func:`stem4d_dask.to_zarr`,
resumable shard by shard) or ``<name>.events.zarr`` after ``electron_count``; a failed input is
reported and the others go on; a :class:`ConversionSummary` prints as a table. The steps
(:mod:`stem4d_dask.steps`) run inside the graph that writes: one task reads, processes and
writes each chunk. The provenance (:func:`stem4d_dask.steps.provenance_record`: steps, package
version, source file) is JSON in the store's attrs, with no clock time, so a resumed conversion
gives the same bytes as an uninterrupted one; :func:`read_provenance` reads it back.

``resume=True``: a finished store of the same conversion (source, read options, steps, package
version) is skipped, a partial one resumed; events stores are written again (whole); a store of
another conversion is refused, naming what differs.
"""

from __future__ import annotations

import glob
import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import xarray as xr
import zarr

from .io import detect, read, to_h5, to_zarr
from .io.storage import completed_at, compressor_codecs, partial_path
from .io.zarr_store import is_url
from .steps import parse_steps, provenance_record, run_steps

H5_SUFFIXES = (".h5", ".hdf5", ".emd")
GLOB_CHARACTERS = "*?["


@dataclass(frozen=True)
class ConversionResult:
    """One input: ``status`` ``"done"``, ``"resumed"`` (a partial store finished), ``"skipped"``
    (converted before) or ``"failed"`` (``reason``: the error); ``nbytes`` uncompressed,
    ``stored`` on disk, ``seconds`` of wall time."""

    input: str
    output: str | None
    status: str
    reason: str = ""
    nbytes: int = 0
    stored: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status != "failed"


class ConversionSummary(list):
    """The :class:`ConversionResult` of every input, in order; ``str()`` is the table."""

    @property
    def ok(self) -> bool:
        """True when no input failed."""
        return all(r.ok for r in self)

    @property
    def failed(self) -> list:
        return [r for r in self if not r.ok]

    def table(self) -> str:
        """Columns input, output, size (on disk), time, status (with a failure's reason); then
        the totals."""
        rows = [("input", "output", "size", "time", "status")]
        for r in self:
            status = r.status if r.ok else f"failed: {r.reason}"
            size = human_bytes(r.stored) if r.ok else "-"
            rows.append((r.input, r.output or "-", size, f"{r.seconds:.1f} s", status))
        widths = [max(len(row[i]) for row in rows) for i in range(4)] + [6]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        done = sum(r.ok for r in self)
        lines.append(f"{done} of {len(self)} converted, {len(self) - done} failed")
        return "\n".join(line.rstrip() for line in lines)

    def __str__(self) -> str:
        return self.table()


def convert(
    inputs,
    out_dir,
    steps=None,
    *,
    read_options: dict | None = None,
    chunks=None,
    compressor: str | None = None,
    clevel: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    on_result=None,
) -> ConversionSummary:
    """Convert every input to a store in ``out_dir`` (created if missing).

    inputs : path(s) or glob pattern(s) (one matching nothing is a failed input).
    steps : e.g. ``[("subtract_dark", {"darkref": "dark.npy"}), ("bin_data_diffraction",
        {"bin_factor": 2})]`` (:mod:`stem4d_dask.steps`), or a provenance record to repeat.
    read_options : keyword arguments of :func:`stem4d_dask.read` for every input.
    chunks, compressor, clevel : :func:`stem4d_dask.to_zarr`'s (None: its defaults).
    resume, overwrite : keep what an earlier run of this conversion finished, or replace
        existing stores (else an existing store fails its input).
    progress : progress bars; ``on_result(result)`` is called after each input.

    Bad arguments (unknown steps, a file as ``out_dir``, two inputs for one store) raise
    ``ValueError`` before anything is read; a failing input is a ``"failed"`` row.
    """
    parsed = parse_steps(steps)
    _store_settings(compressor, clevel)
    entries = expand_inputs(inputs)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"out_dir: {out_dir} is a file, not a folder")
    events = bool(parsed) and parsed[-1].function == "electron_count"
    outputs = {}
    for path, _ in entries:
        name = output_name(path, events)
        if name in outputs:
            raise ValueError(
                f"inputs: {outputs[name]} and {path} would both be written to {out_dir / name}; "
                "convert them into separate folders"
            )
        outputs[name] = path
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = ConversionSummary()
    for path, problem in entries:
        output = out_dir / output_name(path, events)
        start = time.perf_counter()
        try:
            if problem:
                raise FileNotFoundError(problem)
            result = convert_file(
                path,
                output,
                parsed,
                read_options=read_options,
                chunks=chunks,
                compressor=compressor,
                clevel=clevel,
                resume=resume,
                overwrite=overwrite,
                progress=progress,
            )
        except Exception as exc:  # one input's failure is reported, the others go on
            reason = str(exc).splitlines()[0] if str(exc) else ""
            result = ConversionResult(
                path,
                str(output),
                "failed",
                f"{type(exc).__name__}: {reason}".rstrip(": "),
                seconds=time.perf_counter() - start,
            )
        summary.append(result)
        if on_result is not None:
            on_result(result)
    return summary


def convert_file(
    path,
    output,
    steps=None,
    *,
    read_options: dict | None = None,
    chunks=None,
    compressor: str | None = None,
    clevel: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
) -> ConversionResult:
    """Convert one scan at ``path`` to ``output`` (a zarr store, or an events store after
    ``electron_count``; or a py4DSTEM ``.h5`` file, without provenance and without
    ``chunks``/``compressor``/``clevel``/``resume``). Errors raise; see :func:`convert`."""
    start = time.perf_counter()
    parsed = parse_steps(steps)
    output, read_options = Path(output), dict(read_options or {})
    events = bool(parsed) and parsed[-1].function == "electron_count"
    if output.suffix.lower() in H5_SUFFIXES:
        if events:
            raise ValueError(f"output: electron counting writes a zarr events store, not {output}")
        given = {"chunks": chunks, "compressor": compressor, "clevel": clevel, "resume": resume}
        for name, value in given.items():
            if value not in (None, False):
                raise ValueError(f"{name}: applies to zarr output only, not {output.suffix} files")
    _store_settings(compressor, clevel)
    if not is_url(os.fspath(path)) and output.resolve() == Path(path).resolve():
        raise ValueError(f"output: {output} is the input itself")
    dc = read(path, **read_options)
    source = source_info(path, dc, read_options)
    expected = provenance_record([s.record() for s in parsed], source=source)
    status = "done"
    if output.exists() and not overwrite:
        if not resume:
            raise FileExistsError(
                f"output: {output} already exists (overwrite=True replaces it; resume=True keeps "
                "it when it holds this same conversion)"
            )
        _same_conversion(read_provenance(output), expected, output)
        return _result(path, output, "skipped", dc.nbytes, start)
    resumable = resume and not overwrite and not events and partial_path(output).is_dir()
    if resumable:
        try:
            started = read_provenance(partial_path(output))
        except (ValueError, OSError):  # killed before its metadata: to_zarr starts afresh
            started = None
        if started is not None:
            _same_conversion(started, expected, partial_path(output))
            status = "resumed"
    result, records = run_steps(dc, parsed)
    record = provenance_record(records, source=source)
    settings = {k: v for k, v in (("compressor", compressor), ("clevel", clevel)) if v is not None}
    if events:
        with completed_at(output, overwrite=overwrite) as tmp:
            result.to_zarr(tmp, progress=progress)
            zarr.open_group(tmp, mode="r+").attrs["provenance"] = record
    elif output.suffix.lower() in H5_SUFFIXES:
        to_h5(result, output, overwrite=overwrite, progress=progress)
    else:
        result = result.copy()
        result.attrs["provenance"] = record
        options = dict(chunks=chunks, resume=resumable, overwrite=overwrite, progress=progress)
        to_zarr(result, output, **options, **settings)
    return _result(path, output, status, dc.nbytes, start)


def _result(path, output, status, nbytes, start) -> ConversionResult:
    stored = disk_usage(output)[0]
    return ConversionResult(
        str(path), str(output), status, "", int(nbytes), stored, time.perf_counter() - start
    )


def _store_settings(compressor, clevel) -> None:
    """Check ``compressor`` and ``clevel`` now (None: to_zarr's defaults), before any input."""
    if compressor is not None or clevel is not None:
        compressor_codecs(compressor or "zstd", 3 if clevel is None else clevel)


def _same_conversion(found: dict, expected: dict, where) -> None:
    """``ValueError`` naming what differs unless ``found`` records the conversion ``expected``
    describes (what the steps measured is not compared: it is measured again)."""

    def comparable(record):
        steps = [{k: v for k, v in s.items() if k != "measured"} for s in record.get("steps", [])]
        return json.loads(json.dumps({**record, "steps": steps}))

    found, expected = comparable(found), comparable(expected)
    keys = []
    for key in sorted(set(found) | set(expected)):
        a, b = found.get(key), expected.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += [f"{key}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            keys.append(key)
    if keys:
        raise ValueError(
            f"resume: {where} holds another conversion (differs in {', '.join(keys)}); pass "
            "overwrite=True to replace it"
        )


# --- inputs, outputs, sources ------------------------------------------------------------------


def expand_inputs(inputs) -> list[tuple[str, str | None]]:
    """``(path, problem)`` for every input: glob patterns expanded (sorted), repeats dropped;
    ``problem`` says why a pattern gave nothing (else None). ``ValueError`` for no inputs."""
    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    entries: dict[str, str | None] = {}
    for item in inputs:
        text = os.fspath(item)
        if not is_url(text) and any(c in text for c in GLOB_CHARACTERS):
            matches = sorted(glob.glob(text))
            for match in matches:
                entries.setdefault(match, None)
            if not matches:
                entries.setdefault(text, f"inputs: no file matches the pattern {text}")
        else:
            entries.setdefault(text, None)
    if not entries:
        raise ValueError("inputs: no input given")
    return list(entries.items())


def output_name(path, events: bool = False) -> str:
    """The store name for input ``path``: its name with the suffix replaced by ``.zarr``
    (``.events.zarr`` for electron events)."""
    name = Path(str(path).rstrip("/")).name
    stem = Path(name).stem or name
    return stem + (".events.zarr" if events else ".zarr")


def disk_usage(path) -> tuple[int, int]:
    """``(bytes, latest modification in ns)`` of a file, or of every file under a directory."""
    path = Path(path)
    if path.is_file():
        stat = path.stat()
        return stat.st_size, stat.st_mtime_ns
    size, mtime = 0, 0
    for root, _, files in os.walk(path):
        for name in files:
            stat = os.stat(os.path.join(root, name))
            size, mtime = size + stat.st_size, max(mtime, stat.st_mtime_ns)
    return size, mtime or (path.stat().st_mtime_ns if path.exists() else 0)


def human_bytes(nbytes: float) -> str:
    """``nbytes`` as ``"12 B"``, ``"3.4 MiB"`` ..."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1024
    return f"{nbytes:.1f} TiB"


def source_info(path, datacube=None, read_options: dict | None = None) -> dict:
    """What a conversion read: ``path`` (absolute), ``size`` (bytes; a directory's files
    summed), ``mtime`` (ISO 8601, UTC) and ``mtime_ns`` (the latest file's), ``format``, the
    ``read_options`` (JSON values), and ``provenance`` when ``datacube`` carries one."""
    info: dict = {"path": os.fspath(path)}
    if not is_url(os.fspath(path)):
        size, mtime_ns = disk_usage(path)
        stamp = datetime.fromtimestamp(mtime_ns / 1e9, tz=UTC).isoformat(timespec="seconds")
        info = {"path": str(Path(path).resolve()), "size": size, "mtime": stamp}
        info["mtime_ns"] = mtime_ns
        info["format"] = _format_name(path, read_options or {})
    if datacube is not None and isinstance(datacube.attrs.get("format"), str):
        info["format"] = datacube.attrs["format"]
    info["read_options"] = json.loads(json.dumps(read_options or {}, default=_plain))
    prior = datacube.attrs.get("provenance") if datacube is not None else None
    if isinstance(prior, dict):
        info["provenance"] = prior
    return info


def _format_name(path, read_options: dict) -> str | None:
    if "format" in read_options:
        return read_options["format"]
    if "dataset" in read_options:
        return "hdf5"
    if "shape" in read_options or "dtype" in read_options:
        return "raw"
    fmt = detect(path)
    return None if fmt is None else fmt.name


def _plain(value):
    """JSON form of the numpy scalars, tuples and dtypes of read options."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def read_provenance(store) -> dict:
    """The provenance recorded in a store written by :func:`convert` (a datacube store, an
    events store, or their ``.partial`` while being written), or in a datacube's attrs.
    ``ValueError`` naming ``store`` when none is recorded."""
    if isinstance(store, xr.DataArray):
        record = store.attrs.get("provenance")
    else:
        group = zarr.open_group(os.fspath(store), mode="r")
        record = group.attrs.get("provenance")  # events stores
        if record is None:  # datacube stores: the datacube array's attrs
            found = (a.attrs.get("provenance") for _, a in group.arrays())
            record = next((r for r in found if r is not None), None)
    if not isinstance(record, dict):
        raise ValueError(f"store: no provenance recorded in {store}")
    return json.loads(json.dumps(record))


__all__ = [
    "ConversionResult",
    "ConversionSummary",
    "convert",
    "convert_file",
    "disk_usage",
    "expand_inputs",
    "human_bytes",
    "output_name",
    "read_provenance",
    "source_info",
]
