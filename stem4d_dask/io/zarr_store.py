"""Zarr v3 stores: sharded, compressed, readable with plain ``xarray.open_zarr``.

Layout of a store written by :func:`to_zarr`::

    out.zarr/
      zarr.json            group metadata (consolidated)
      datacube/            (Rx, Ry, Qx, Qy) array; one shard = one dask chunk (32-128 MiB),
                           inner chunks of up to 4 MiB of whole frames, blosc lz4 level 5
                           with bitshuffle
      Rx/ Ry/ Qx/ Qy/      calibrated coords with attrs["units"], stored as they are (origin,
                           steps and irregular spacings included) and read back unchanged

The defaults were chosen by measurement on 2 cores (``benchmarks/bench_zarr.py --sweep``,
``docs/benchmarks.md``, a 128^4 uint16 detector-like scan, our shard codec):

- **lz4 over zstd**: lz4 encodes at ~1.7 GB/s per core and decodes at ~2.4 against zstd's
  0.5-0.8 and 1.0-1.5, for stores 11-13% larger (compression 4.4x against 4.9-5.0x). A 2-core
  conversion cannot reach 1 GB/s with zstd's encoder; reading and centre of mass from zarr are
  bound by decoding.
- **level 5**: levels 1, 5 and 9 encode and decode within 8% of each other (1 fastest, 9
  slowest) for compression 4.41x, 4.44x, 4.54x; 5 is the middle.
- **inner chunks of 4 MiB** (whole frames): 1, 2 and 4 MiB decode and encode at the same speed;
  reading one pattern of a datacube costs ~30 ms either way (dask and xarray, not decoding), and
  fewer inner chunks mean less per-chunk work for readers without our codec.
- **shards of 64 MiB** (the chunk policy's target, one shard per task): shards of 32, 64 and
  128 MiB converted at 1.83, 1.87 and 1.77 GB/s and gave centre of mass from zarr at 2.6, 2.7
  and 3.4 GB/s (one sweep, noisy); 64 MiB keeps each task's memory at half of 128 for workers
  with memory limits, and a reader can still take several shards per task (``chunks=``),
  decoded by our codec all the same.

Reads and writes go through :mod:`stem4d_dask.io.zarr_pipeline` (our whole-shard codec,
``zarrs``, or zarr-python's default pipeline): each task reads or writes its own shard, with an
array handle opened once per process.

Writes go to ``out.zarr.partial`` and are renamed to ``out.zarr`` only when every shard is
written (:func:`stem4d_dask.io.storage.completed_at`), so a store at the final name is always
complete. Each finished shard leaves a marker in
``out.zarr.partial/.stem4d-progress``; ``resume=True`` skips marked shards and rewrites the rest
(every shard is written whole, so a shard cut short by a crash is simply written again).
"""

from __future__ import annotations

import json
import mmap
import warnings
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr
import zarr
from dask.base import tokenize

from ..chunks import auto_chunks, normalize_chunks
from ..datacube import DIMS, NAME, as_datacube, check_datacube, pick_variable
from ..device import to_host
from ..graph import delayed_chunks
from ..kernels import native
from ..lazy import lazy_from_loader
from ..progress import compute
from ..values import VALUE_RANGE_OF, value_range, value_range_of_dtype, with_value_range
from .storage import check_finished, check_resumable, completed_at, compressor_codecs, remove
from .zarr_pipeline import cached_array, chosen, configured
from .zarr_shards import ShardCodec

PROGRESS_DIR = ".stem4d-progress"
STORED = "stored"  # value_range_of in a store: the range describes the stored array
INNER_CHUNK_BYTES = 4 * 2**20
METADATA_FILES = ("zarr.json", ".zgroup", ".zarray")


def _regular_chunks(dc, chunks):
    """Shard shape ``(cRx, cRy, Qx, Qy)`` for writing: the datacube's own chunks when they are
    regular and hold whole frames, else ``chunks`` (``None`` meaning the default policy)."""
    if chunks is None:
        own = dc.data.chunks
        regular = all(len(set(c[:-1])) <= 1 and c[-1] <= c[0] for c in own)
        if regular and len(own[2]) == 1 and len(own[3]) == 1:
            return tuple(c[0] for c in own)
        chunks = "auto"
    norm = normalize_chunks(chunks, dc.shape, dc.dtype)
    return tuple(c[0] for c in norm)


def _inner_chunks(shard, itemsize):
    """Largest run of frames along Ry that divides the shard and fits INNER_CHUNK_BYTES."""
    _, cy, qx, qy = shard
    per = max(INNER_CHUNK_BYTES // (qx * qy * itemsize), 1)
    ci = max(d for d in range(1, cy + 1) if cy % d == 0 and d <= per)
    return (1, ci, qx, qy)


def to_zarr(
    dc,
    path,
    *,
    chunks=None,
    compressor: str = "lz4",
    clevel: int = 5,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
):
    """Write datacube ``dc`` to a zarr v3 store at ``path`` (a local directory).

    Parameters
    ----------
    chunks : shard (= task) shape: None keeps ``dc``'s chunks when regular, else ``"auto"``,
        ``{dim: size}`` or a 2-/4-tuple as in :func:`stem4d_dask.from_array`.
    compressor, clevel : blosc ``"lz4"`` (default, level 5) or ``"zstd"`` with bitshuffle, or
        ``"none"``. lz4 encodes at ~1.7 GB/s per core and decodes at ~2.4; zstd (level 3)
        makes stores ~12% smaller at a third of the encoding and ~60% of the decoding speed.
    resume : continue an interrupted write of the same data and settings at ``path + ".partial"``,
        skipping shards already complete. The finished store is byte-identical to an
        uninterrupted write. A finished store at ``path`` of the same shape, dtype and chunks is
        kept as it is (nothing written); one that differs is refused, saying what differs.
    overwrite : replace an existing store at ``path``.
    progress : show a progress bar (None: as :func:`stem4d_dask.progress.showing` says; off
        unless asked).

    Returns the final ``Path``. cupy chunks are copied to the host, each by its shard's task.
    """
    dc = _stored_attrs(to_host(check_datacube(dc, parameter="dc", complex_ok=True)))
    if resume and not overwrite and Path(path).exists():
        shard = _regular_chunks(dc, chunks)  # as _write_shards stores them
        check_finished(path, NAME, {"shape": dc.shape, "dtype": dc.dtype, "chunks": shard})
        return Path(path)
    # resumable: a failed or killed write keeps its partial store and finished-shard markers
    with completed_at(path, overwrite=overwrite, resumable=True) as tmp:
        _write_shards(dc, tmp, chunks, compressor, clevel, resume, progress)
    return Path(path)


def _write_shards(dc, tmp, chunks, compressor, clevel, resume, progress):
    """Write ``dc`` into the store at ``tmp``: every shard not yet marked done (all of them
    unless ``resume`` finds a partial store started with the same settings), then drop the
    markers."""
    shard = _regular_chunks(dc, chunks)
    inner = _inner_chunks(shard, dc.dtype.itemsize)
    codecs = compressor_codecs(compressor, clevel)
    encoding = {NAME: {"chunks": inner, "shards": shard, "compressors": codecs}}
    dc = dc.copy(data=dc.data.rechunk(normalize_chunks(shard, dc.shape, dc.dtype)))
    settings = {
        "shape": list(dc.shape),
        "dtype": dc.dtype.str,
        "shards": list(shard),
        "chunks": list(inner),
        "compressor": compressor,
        "clevel": int(clevel),
    }
    markers = tmp / PROGRESS_DIR
    if resume and markers.is_dir():
        check_resumable(markers, settings)
    else:
        remove(tmp)
        with configured(chosen()):
            _write_metadata(dc, tmp, encoding)
        markers.mkdir()
        (markers / "settings.json").write_text(json.dumps(settings, sort_keys=True))

    data = dc.data
    blocks = data.to_delayed()
    choice = chosen()
    target = str(tmp / NAME)
    meta = (Path(target) / "zarr.json").read_bytes()
    token = tokenize(meta)
    shards = ShardCodec.of(json.loads(meta)) if choice == "fast" else None
    tasks = {}
    for index, block in np.ndenumerate(blocks):
        marker = markers / "-".join(map(str, index))
        if marker.exists():
            continue
        region = tuple(
            slice(sum(c[:i]), sum(c[:i]) + c[i]) for c, i in zip(data.chunks, index, strict=True)
        )
        tasks[index] = (_write_shard, block.key, target, region, str(marker), choice, token, shards)
    if tasks:
        name = "zarr-write-" + tokenize(str(tmp), [b.key for b in blocks.flat], sorted(tasks))
        writes = delayed_chunks(name, tasks, blocks.flat, blocks.shape)
        compute(*(w for w in writes.flat if w is not None), progress=progress)
    remove(markers)


def _stored_attrs(dc):
    """``dc`` with its attrs as stored: a value range recorded for this very data is marked
    as describing the stored array (the reader re-attaches it); any other record is dropped."""
    known = value_range(dc) if dc.attrs.get("value_range") is not None else None
    out = dc.copy()
    out.attrs.pop("value_range", None)
    out.attrs.pop(VALUE_RANGE_OF, None)
    if known is not None and known != value_range_of_dtype(dc.dtype):
        out.attrs["value_range"] = list(known)
        out.attrs[VALUE_RANGE_OF] = STORED
    return out


def _write_metadata(dc, tmp, encoding):
    ds = dc.to_dataset(name=NAME)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        ds.to_zarr(
            tmp, mode="w", compute=False, zarr_format=3, encoding=encoding, consolidated=True
        )


def _write_shard(block, array_path, region, marker, choice, token, shards=None):
    """Write one whole shard (our shard codec when it applies, else the process's cached handle
    of the array), then mark it done. Stores are native: a big-endian block (the Merlin
    reader's) is swapped here."""
    block = native(block)
    arr = cached_array(array_path, choice, "r+", (), token)
    index = shards.whole_shard(region, arr.shape) if shards is not None else None
    if index is None:
        arr[region] = block
    else:
        path = Path(array_path) / shards.key(index)
        encoded = shards.encode(block)
        if encoded is None:
            path.unlink(missing_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encoded)
    Path(marker).touch()


def is_url(path) -> bool:
    """True when ``path`` is an fsspec URL (``memory://``, ``http://``, ``s3://`` ...), not a
    local path."""
    return isinstance(path, str) and "://" in path


def is_zarr(path, storage_options=None) -> bool:
    """True when ``path`` (a directory or an fsspec URL) holds zarr v3 or v2 metadata."""
    if is_url(path):
        import fsspec

        try:
            fs, root = fsspec.core.url_to_fs(path, **(storage_options or {}))
            return any(fs.exists(f"{root.rstrip('/')}/{f}") for f in METADATA_FILES)
        except (ImportError, OSError, ValueError):
            return False
    path = Path(path)
    return path.is_dir() and any((path / f).exists() for f in METADATA_FILES)


@dataclass(frozen=True)
class ZarrBlockLoader:
    """Read a block of the zarr array at ``url`` (a local path or an fsspec URL) as ``choice``
    says (:mod:`.zarr_pipeline`): a block of whole shards of a local store (those at the array's
    edge included) by ``shards`` (our shard codec) when it applies, else through the array
    opened once per process (:func:`cached_array`)."""

    url: str
    choice: str
    token: str  # the array's metadata (and, for a local store, its modification time)
    storage_options: tuple = ()
    shards: ShardCodec | None = None
    shape: tuple = ()

    def array(self) -> zarr.Array:
        return cached_array(self.url, self.choice, "r", self.storage_options, self.token)

    @property
    def source(self) -> str:
        return self.url.rstrip("/").rpartition("/")[0] or self.url  # the store

    def chunk_detail(self, slices) -> str:
        """The store keys read for ``slices``: ``zarr shard datacube/c/2/0/0/0``."""
        arr = self.array()
        at = zip(map(slice.indices, slices, arr.shape), arr.shards or arr.chunks, strict=True)
        grid = [range(a // g, -(-b // g)) for (a, b, _), g in at]
        keys = [f"{Path(self.url).name}/{arr.metadata.encode_chunk_key(i)}" for i in product(*grid)]
        return f"zarr {'shard' if arr.shards else 'chunk'} {', '.join(keys)}"

    def __call__(self, slices):
        pieces = None if self.shards is None else self.shards.shards_of(slices, self.shape)
        if pieces is None:
            return self.array()[slices]
        codec = self.shards
        if len(pieces) == 1 and pieces[0][2] is None:
            return codec.decode(_read_bytes(Path(self.url) / codec.key(pieces[0][0])))
        sizes = [len(range(*s.indices(n))) for s, n in zip(slices, self.shape, strict=True)]
        block = np.empty(sizes, codec.dtype)
        for index, region, cut in pieces:
            data = _read_bytes(Path(self.url) / codec.key(index))
            if cut is None:  # straight into the block
                codec.decode(data, out=block[region])
            else:  # a shard cut by the array's edge
                block[region] = codec.decode(data)[cut]
        return block


def _read_bytes(path: Path) -> mmap.mmap | None:
    """The shard file mapped read-only (decoded straight from the page cache, no copy), or None
    when no shard is stored (all fill value)."""
    try:
        with open(path, "rb") as f:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        return None


def read_zarr(path, *, name=None, chunks="auto", storage_options=None):
    """Open a zarr store (ours, or any xarray store with dims Rx, Ry, Qx, Qy) as a datacube.

    ``path``: a directory or an fsspec URL (``memory://``, ``http://`` with ``aiohttp``, object
    storage with its fsspec package); ``storage_options`` go to fsspec. ``chunks="auto"`` reads
    one shard per task when the array is sharded, else storage chunks grouped into 32-128 MiB
    whole-frame blocks. Each task reads its block straight through zarr with the pipeline of
    :mod:`stem4d_dask.io.zarr_pipeline`. Reads no pixel data.
    """
    url = path if is_url(path) else str(Path(path))
    options = tuple(sorted((storage_options or {}).items()))
    choice = chosen()
    if is_url(url) and choice == "fast":
        # zarrs replaces fsspec's store by its own client, which needs HTTP range requests and
        # blocks holding the GIL: URLs go through zarr-python's pipeline unless zarrs is chosen
        choice = "default"
    with configured(choice):
        ds = _open_dataset(url, storage_options, chunks=None)
    var = pick_variable(ds, name).name
    loader = _loader(url, var, choice, options)
    arr = loader.array()
    dims = ds[var].dims
    wanted = _read_chunks(arr, dims)
    if chunks != "auto":
        if not isinstance(chunks, dict) and len(chunks) not in (2, 4):
            raise ValueError(f"chunks: expected (Rx, Ry), 4 sizes or a dict, got {chunks!r}")
        given = chunks if isinstance(chunks, dict) else dict(zip(DIMS, chunks, strict=False))
        wanted.update(given)
    if _plain(ds[var], arr):
        blocks = da.core.normalize_chunks(
            tuple(wanted[d] for d in dims), shape=arr.shape, dtype=arr.dtype
        )
        data = lazy_from_loader(loader, arr.shape, arr.dtype, blocks, name=f"zarr-{var}")
        ds[var] = ds[var].copy(data=data)
    else:  # CF-encoded (scaled, masked): xarray decodes it, each task through its zarr array
        with configured(choice):
            ds = _open_dataset(url, storage_options, chunks=wanted)
    dc = as_datacube(ds, name=var)
    if dc.attrs.get(VALUE_RANGE_OF) == STORED and dc.attrs.get("value_range") is not None:
        dc = with_value_range(dc, dc.attrs["value_range"])
    return dc


def _open_dataset(url, storage_options, chunks):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning, message=".*consolidated")
        return xr.open_zarr(url, chunks=chunks, storage_options=storage_options)


def _loader(url, var, choice, options):
    """The loader of variable ``var``, its token made from the array's metadata (and the
    modification time of a local store's metadata file, so a rewritten store gets a new one)."""
    array_url = f"{url.rstrip('/')}/{var}"
    meta = _open_metadata(array_url, options)
    stamp, shards = 0, None
    if not is_url(url):
        files = [Path(array_url) / f for f in METADATA_FILES]
        stamp = max((f.stat().st_mtime_ns for f in files if f.exists()), default=0)
        if choice == "fast" and files[0].exists():
            shards = ShardCodec.of(json.loads(files[0].read_text()))
    token = tokenize(meta, stamp)
    return ZarrBlockLoader(array_url, choice, token, options, shards, tuple(meta["shape"]))


def _open_metadata(array_url, options):
    kwargs = {"storage_options": dict(options)} if options else {}
    return zarr.open_array(array_url, mode="r", **kwargs).metadata.to_dict()


def _plain(variable, arr) -> bool:
    """True when xarray would hand back the stored values unchanged: same dtype, no scale or
    offset, no fill value masking values (NaN in a float array masks nothing)."""
    enc = variable.encoding
    if variable.dtype != arr.dtype or "scale_factor" in enc or "add_offset" in enc:
        return False
    fill = enc.get("_FillValue", variable.attrs.get("_FillValue"))
    return fill is None or (variable.dtype.kind in "fc" and bool(np.isnan(fill)))


def _read_chunks(arr, dims):
    """Chunks per dim name: one shard per task when sharded, else whole-frame blocks of the
    default size made of whole storage chunks."""
    shape = dict(zip(dims, arr.shape, strict=True))
    store = dict(zip(dims, arr.shards or arr.chunks, strict=True))
    if arr.shards:
        return {d: store[d] if d in ("Rx", "Ry") else shape[d] for d in DIMS}
    chunks = auto_chunks(
        [shape[d] for d in DIMS], arr.dtype.itemsize, multiple_of=(store["Rx"], store["Ry"])
    )
    return dict(zip(DIMS, chunks, strict=True))
