"""Which codecs read and write our zarr stores, and how many threads they use.

One place decides it for every zarr array stem4d_dask opens (datacube stores, events stores).
``STEM4D_ZARR_PIPELINE`` chooses (read when a graph is built; it travels in the graph, so
workers do what the process that built it chose):

- ``fast`` (the default): a task that reads or writes exactly one whole shard of a sharded
  blosc (or uncompressed) array decodes or encodes it itself (:mod:`.zarr_shards`: numcodecs'
  blosc, straight into the block); everything else goes through ``zarrs`` (a Rust codec
  pipeline for zarr-python 3, PyPI ``zarrs``) where it is installed, else zarr-python's default
  ``BatchedCodecPipeline``; stores at URLs go through the default pipeline (zarrs swaps fsspec's
  store for its own HTTP client, which needs range requests and blocks holding the GIL);
- ``zarrs``: every read and write through the ``zarrs`` pipeline;
- ``default``: every read and write through zarr-python's default pipeline.

Stores are plain zarr v3 whichever is chosen: it changes the speed, never what can be read.

- **Threads**: our shard codec runs single-threaded in the dask thread that owns the shard
  (dask's threads are the only ones). zarrs decodes and encodes on rayon's global pool (one per
  process, as many threads as cores), shared by every dask thread of the process, so the two do
  not oversubscribe the cores in the process running dask's threaded scheduler. In a child
  process (a ``distributed`` worker, dask's ``processes`` scheduler) several processes share
  the cores, so each zarrs call is capped at the process's task slots (``distributed``: the
  worker's ``nthreads``; other children: 1) through zarr's ``threading.max_workers``. That
  option also sizes zarr-python's own executor when it is first created, which is why it is
  never set in the main process (a 1-thread executor there would serialise every dask thread).
- **Settings are applied when an array is opened**, inside the task that reads or writes it, and
  the handle is cached for the process (:func:`cached_array`): a spawned worker needs no plugin
  or environment, and each worker opens an array once, not once per task.
- **fork**: rayon's threads do not survive ``fork()``: a process forked after its parent used
  zarrs deadlocks in its first zarrs call (zarrs-python #171). Our forked children therefore use
  the default pipeline (with one warning); the ``stem4d --scheduler processes`` command and the
  ``distributed`` workers use ``spawn``, where zarrs runs at full speed.
- **Byte order**: zarrs reads and writes native byte order only; arrays stored big-endian (by
  other writers: ours swap to native) are opened with the default pipeline.

zarr-python's configuration is global (``zarr.config``), so settings are applied under a lock
and only while an array is constructed: its pipeline and threads are fixed then.
"""

from __future__ import annotations

import functools
import importlib.util
import multiprocessing
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import zarr

ZARRS = "zarrs.ZarrsCodecPipeline"
DEFAULT = "zarr.core.codec_pipeline.BatchedCodecPipeline"
PATHS = {"zarrs": ZARRS, "default": DEFAULT}
CHOICES = ("fast", "zarrs", "default")
ENV = "STEM4D_ZARR_PIPELINE"

_LOCK = threading.RLock()
_state = {"zarrs_used": False, "forked_after_zarrs": False, "warned_fork": False}


@functools.cache
def zarrs_available() -> bool:
    """True when the ``zarrs`` codec pipeline is installed."""
    return importlib.util.find_spec("zarrs") is not None


def chosen(choice: str | None = None) -> str:
    """``choice`` (one of :data:`CHOICES`), else ``$STEM4D_ZARR_PIPELINE``, else ``"fast"``."""
    name = choice if choice is not None else os.environ.get(ENV) or "fast"
    if name not in CHOICES:
        where = "choice" if choice is not None else f"${ENV}"
        raise ValueError(f"{where} must be one of {list(CHOICES)}, got {name!r}")
    if name == "zarrs" and not zarrs_available():
        raise ValueError(
            f"{ENV}: 'zarrs' is not installed (pip install zarrs); use 'fast' or 'default'"
        )
    return name


def pipeline_of(choice: str) -> str:
    """The zarr codec pipeline (``"zarrs"`` or ``"default"``) behind ``choice``: ``"fast"``
    uses zarrs where it is installed."""
    if choice == "fast":
        return "zarrs" if zarrs_available() else "default"
    return choice


def codec_threads() -> int | None:
    """Threads one zarrs call may use in this process: None (rayon's pool, shared by every dask
    thread of the process) in the main process; the task slots of this process in a child
    (a ``distributed`` worker's ``nthreads``, else 1)."""
    if multiprocessing.parent_process() is None:
        return None
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):
        return 1


def effective(pipeline: str, dtype=None) -> str:
    """The pipeline actually used for an array of ``dtype`` in this process: ``pipeline``, except
    the default one for non-native byte order or in a process forked after zarrs ran."""
    pipeline = pipeline_of(pipeline)
    if pipeline != "zarrs":
        return pipeline
    if dtype is not None and not np.dtype(dtype).isnative:
        return "default"
    if _state["forked_after_zarrs"]:
        if not _state["warned_fork"]:
            _state["warned_fork"] = True
            warnings.warn(
                "zarr: this process was forked after its parent used the zarrs codec pipeline "
                "(which deadlocks after fork); reading with zarr-python's default pipeline. "
                "Use the 'spawn' start method for full speed.",
                RuntimeWarning,
                stacklevel=3,
            )
        return "default"
    return pipeline


def settings(pipeline: str) -> dict:
    """The ``zarr.config`` settings an array is opened with under ``pipeline`` (a choice)."""
    pipeline = pipeline_of(pipeline)
    out: dict = {"codec_pipeline.path": PATHS[pipeline]}
    threads = codec_threads() if pipeline == "zarrs" else None
    if threads is not None:
        out["threading.max_workers"] = threads
    return out


@contextmanager
def configured(pipeline: str, dtype=None) -> Iterator[str]:
    """Construct zarr arrays inside this block with ``pipeline`` (as :func:`effective` makes it
    for ``dtype``) and its thread settings; yields the pipeline used. Holds a lock: zarr's
    configuration is global to the process."""
    used = effective(pipeline, dtype)
    with _LOCK, warnings.catch_warnings():
        # zarrs falls back to the default pipeline, with this warning, for codecs and stores it
        # lacks (numcodecs.lz4, in-memory stores): the data read are the same
        warnings.filterwarnings("ignore", message=".*unsupported by ZarrsCodecPipeline")
        warnings.filterwarnings("ignore", message="codec .* is not supported")
        with zarr.config.set(settings(used)):
            if used == "zarrs":
                _state["zarrs_used"] = True
            yield used


def open_array(store, pipeline: str, *, mode: str = "r", **kwargs) -> zarr.Array:
    """``zarr.open_array(store, mode=mode, **kwargs)`` with ``pipeline``; an array stored in
    non-native byte order is reopened with the default pipeline (zarrs refuses it)."""
    with configured(pipeline) as used:
        arr = zarr.open_array(store, mode=mode, **kwargs)
    if used == "zarrs" and effective(used, arr.dtype) != used:
        with configured("default"):
            arr = zarr.open_array(store, mode=mode, **kwargs)
    return arr


@functools.lru_cache(maxsize=32)
def cached_array(
    url: str, pipeline: str, mode: str, storage_options: tuple, token: str
) -> zarr.Array:
    """The array at ``url`` opened once per process (per worker) and shared by its tasks.
    ``token`` names the array's metadata: a store rewritten with other metadata at the same
    path gets a new handle. ``storage_options``: sorted ``(key, value)`` pairs for fsspec."""
    kwargs = {"storage_options": dict(storage_options)} if storage_options else {}
    return open_array(url, pipeline, mode=mode, **kwargs)


def _after_fork_in_child() -> None:
    cached_array.cache_clear()
    if _state["zarrs_used"]:
        _state["forked_after_zarrs"] = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


__all__ = [
    "CHOICES",
    "DEFAULT",
    "ENV",
    "ZARRS",
    "cached_array",
    "chosen",
    "codec_threads",
    "configured",
    "effective",
    "open_array",
    "pipeline_of",
    "settings",
    "zarrs_available",
]
